//! A readable JSON view of events and logs (for people and scripts; the binary
//! encoding stays the canonical form).

use serde::Serialize;

use super::{Digest, Event, Item, KeyEventLog, SignedEvent};

/// JSON view of one signed event.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    /// "inception", "rotation" or "interaction".
    pub kind: &'static str,
    /// Rotation index (of the key it establishes or is signed by).
    pub index: u32,
    /// Interaction sequence number (absent on establishment events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u32>,
    /// Event digest, hex.
    pub digest: Digest,
    /// Digest of the event it follows, hex (absent on the inception).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev: Option<Digest>,
    /// Signing key established, hex x-only (establishment events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// Next-key commitment, hex (establishment events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_key_digest: Option<Digest>,
    /// Messaging key, hex (establishment events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaging_key: Option<Digest>,
    /// Unix time (interaction events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    /// Items (interaction events).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemView>,
    /// BIP340 signature, hex.
    pub signature: String,
}

/// JSON view of an interaction item.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ItemView {
    /// A mailbox.
    Mailbox {
        /// Peer id bytes, hex.
        peer: String,
    },
    /// A prekey.
    Prekey {
        /// Prekey id.
        id: u32,
        /// X25519 key, hex.
        key: Digest,
        /// Expiry, Unix time.
        expires: u64,
    },
}

/// JSON view of a log.
#[derive(Debug, Clone, Serialize)]
pub struct LogView {
    /// The events in order.
    pub events: Vec<EventView>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl From<&SignedEvent> for EventView {
    fn from(s: &SignedEvent) -> Self {
        let mut v = EventView {
            kind: s.event().kind_name(),
            index: 0,
            seq: None,
            digest: s.digest(),
            prev: None,
            signing_key: None,
            next_key_digest: None,
            messaging_key: None,
            timestamp: None,
            items: Vec::new(),
            signature: hex(s.signature().as_ref()),
        };
        match s.event() {
            Event::Inception(e) => {
                v.signing_key = Some(hex(&e.signing_key.serialize()));
                v.next_key_digest = Some(e.next_key_digest);
                v.messaging_key = Some(Digest(e.messaging_key.0));
            }
            Event::Rotation(e) => {
                v.index = e.index;
                v.prev = Some(e.prev);
                v.signing_key = Some(hex(&e.signing_key.serialize()));
                v.next_key_digest = Some(e.next_key_digest);
                v.messaging_key = Some(Digest(e.messaging_key.0));
            }
            Event::Interaction(e) => {
                v.index = e.index;
                v.seq = Some(e.seq);
                v.prev = Some(e.prev);
                v.timestamp = Some(e.timestamp);
                v.items = e
                    .items
                    .iter()
                    .map(|i| match i {
                        Item::Mailbox(p) => ItemView::Mailbox { peer: hex(p) },
                        Item::Prekey { id, key, expires } => ItemView::Prekey {
                            id: *id,
                            key: Digest(*key),
                            expires: *expires,
                        },
                    })
                    .collect();
            }
        }
        v
    }
}

impl From<&KeyEventLog> for LogView {
    fn from(l: &KeyEventLog) -> Self {
        LogView {
            events: l.events().iter().map(EventView::from).collect(),
        }
    }
}
