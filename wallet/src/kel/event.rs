//! Key events, their canonical binary encoding and their signatures.
//!
//! Encoding (all integers big-endian, every field fixed width or length
//! prefixed and bounded):
//!
//! ```text
//! event       = version:u8(=1) kind:u8 body
//! inception   = signing_key:32 next_key_digest:32 messaging_key:32          (kind 0)
//! rotation    = index:u32(>=1) prev:32 signing_key:32 next_key_digest:32
//!               messaging_key:32                                           (kind 1)
//! interaction = index:u32 seq:u32(>=1) prev:32 timestamp:u64 count:u8
//!               item*count                                                 (kind 2)
//! item        = tag:u8 len:u16 value:len   (items strictly ascending by their
//!               encoded bytes: sorted, no duplicates)
//! signed      = event signature:64        (BIP340 over the event digest)
//! ```

use bitcoin::secp256k1::{schnorr::Signature, Message, XOnlyPublicKey};
use serde::Serialize;

use super::codec::Reader;
use super::DecodeError;
use crate::hash::{tagged_hash, tags};
use crate::keys::SigningKey;
use crate::secp;

/// The only encoding version this build reads and writes.
pub const EVENT_VERSION: u8 = 1;
/// Upper bound on the size of one encoded signed event.
pub const MAX_EVENT_LEN: usize = 4096;
/// Upper bound on the number of items in one interaction event.
pub const MAX_ITEMS: usize = 32;
/// Upper bound on a mailbox address (a libp2p peer id in bytes).
pub const MAX_MAILBOX_LEN: usize = 96;
/// Length of a BIP340 signature.
pub const SIGNATURE_LEN: usize = 64;

const KIND_INCEPTION: u8 = 0;
const KIND_ROTATION: u8 = 1;
const KIND_INTERACTION: u8 = 2;
const TAG_MAILBOX: u8 = 1;
const TAG_PREKEY: u8 = 2;
const PREKEY_LEN: usize = 4 + 32 + 8;

/// A 32-byte digest (event digest or key commitment), shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The commitment to a future signing key (pre-rotation).
pub fn next_key_digest(key: &XOnlyPublicKey) -> Digest {
    Digest(tagged_hash(tags::NEXT_KEY, &[&key.serialize()]))
}

/// An X25519 public messaging key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessagingPublicKey(pub [u8; 32]);

impl std::fmt::Debug for MessagingPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessagingPublicKey({})", Digest(self.0))
    }
}

/// The first establishment event: it fixes the identity id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inception {
    /// Current signing key (rotation index 0).
    pub signing_key: XOnlyPublicKey,
    /// Commitment to the signing key of rotation index 1.
    pub next_key_digest: Digest,
    /// Current messaging key.
    pub messaging_key: MessagingPublicKey,
}

/// A later establishment event: reveals the pre-committed key, commits to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Rotation index (1 for the first rotation).
    pub index: u32,
    /// Digest of the previous establishment event.
    pub prev: Digest,
    /// New signing key; must match the previous `next_key_digest`.
    pub signing_key: XOnlyPublicKey,
    /// Commitment to the signing key of the following rotation.
    pub next_key_digest: Digest,
    /// New messaging key.
    pub messaging_key: MessagingPublicKey,
}

/// An unanchored event signed by the current key: reachability and prekeys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// Rotation index of the key that signs it.
    pub index: u32,
    /// Position within this rotation's interactions, from 1.
    pub seq: u32,
    /// Digest of the previous event of this rotation (the establishment event for seq 1).
    pub prev: Digest,
    /// Unix time in seconds when it was made (never decreasing within a rotation).
    pub timestamp: u64,
    /// What the event says, in canonical order.
    pub items: Vec<Item>,
}

/// A statement in an interaction event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A mailbox node where the identity can be reached (libp2p peer id bytes).
    Mailbox(Vec<u8>),
    /// A signed X25519 prekey for first messages to an offline recipient.
    Prekey {
        /// Prekey id chosen by its owner.
        id: u32,
        /// X25519 public key.
        key: [u8; 32],
        /// Unix time in seconds after which it must not be used.
        expires: u64,
    },
}

/// Any key event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Inception.
    Inception(Inception),
    /// Rotation.
    Rotation(Rotation),
    /// Interaction.
    Interaction(Interaction),
}

/// Why an event could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// Too many items.
    #[error("an interaction event holds at most {MAX_ITEMS} items, not {0}")]
    TooManyItems(usize),
    /// Mailbox value too long.
    #[error("a mailbox address is at most {MAX_MAILBOX_LEN} bytes, not {0}")]
    MailboxTooLong(usize),
    /// An empty mailbox address.
    #[error("a mailbox address cannot be empty")]
    EmptyMailbox,
    /// A prekey that is not a canonical, non-zero X25519 key.
    #[error("a prekey must be a canonical, non-zero X25519 public key")]
    InvalidPrekey,
    /// Two equal items.
    #[error("an interaction event cannot repeat an item")]
    DuplicateItem,
    /// A rotation index of 0 or a sequence number of 0.
    #[error("rotation index and interaction sequence numbers start at 1")]
    ZeroIndex,
    /// The signing key does not belong to this event.
    #[error("the signing key is not the event's current key")]
    WrongKey,
    /// Encoded form too large.
    #[error("encoded event is {0} bytes, more than {MAX_EVENT_LEN}")]
    TooLarge(usize),
}

impl Item {
    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Item::Mailbox(v) => {
                out.push(TAG_MAILBOX);
                out.extend_from_slice(&(v.len() as u16).to_be_bytes());
                out.extend_from_slice(v);
            }
            Item::Prekey { id, key, expires } => {
                out.push(TAG_PREKEY);
                out.extend_from_slice(&(PREKEY_LEN as u16).to_be_bytes());
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&expires.to_be_bytes());
            }
        }
    }

    fn encoded(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode_into(&mut v);
        v
    }

    fn decode(r: &mut Reader<'_>) -> Result<Item, DecodeError> {
        let tag = r.u8()?;
        let len = usize::from(r.u16()?);
        match tag {
            TAG_MAILBOX => {
                if len == 0 {
                    return Err(DecodeError::NonCanonical("empty mailbox address"));
                }
                if len > MAX_MAILBOX_LEN {
                    return Err(DecodeError::FieldTooLarge {
                        field: "mailbox",
                        len,
                        max: MAX_MAILBOX_LEN,
                    });
                }
                Ok(Item::Mailbox(r.take(len)?.to_vec()))
            }
            TAG_PREKEY => {
                if len != PREKEY_LEN {
                    return Err(DecodeError::NonCanonical("prekey item length"));
                }
                let id = r.u32()?;
                let key = r.array()?;
                let expires = r.u64()?;
                check_x25519(&key)?;
                Ok(Item::Prekey { id, key, expires })
            }
            t => Err(DecodeError::UnknownItemTag(t)),
        }
    }
}

/// An X25519 public key must be canonical (little-endian u < 2^255 - 19, top
/// bit clear: one key, one encoding) and not zero.
fn check_x25519(key: &[u8; 32]) -> Result<(), DecodeError> {
    if key.iter().all(|b| *b == 0) {
        return Err(DecodeError::InvalidKey("all-zero X25519 key"));
    }
    if key[31] & 0x80 != 0 {
        return Err(DecodeError::InvalidKey("X25519 key with the top bit set"));
    }
    let at_least_p = key[31] == 0x7f && key[1..31].iter().all(|b| *b == 0xff) && key[0] >= 0xed;
    if at_least_p {
        return Err(DecodeError::InvalidKey(
            "X25519 key not reduced modulo 2^255-19",
        ));
    }
    Ok(())
}

fn read_messaging_key(r: &mut Reader<'_>) -> Result<MessagingPublicKey, DecodeError> {
    let k = r.array()?;
    check_x25519(&k)?;
    Ok(MessagingPublicKey(k))
}

fn xonly(bytes: [u8; 32]) -> Result<XOnlyPublicKey, DecodeError> {
    XOnlyPublicKey::from_slice(&bytes)
        .map_err(|_| DecodeError::InvalidKey("signing key is not a curve point"))
}

impl Interaction {
    /// The mailboxes the event names, in order.
    pub fn mailboxes(&self) -> Vec<Vec<u8>> {
        self.items
            .iter()
            .filter_map(|i| match i {
                Item::Mailbox(m) => Some(m.clone()),
                Item::Prekey { .. } => None,
            })
            .collect()
    }

    /// Builds an interaction event, putting the items in canonical order.
    pub fn new(
        index: u32,
        seq: u32,
        prev: Digest,
        timestamp: u64,
        mut items: Vec<Item>,
    ) -> Result<Self, BuildError> {
        if seq == 0 {
            return Err(BuildError::ZeroIndex);
        }
        if items.len() > MAX_ITEMS {
            return Err(BuildError::TooManyItems(items.len()));
        }
        for it in &items {
            match it {
                Item::Mailbox(v) if v.is_empty() => return Err(BuildError::EmptyMailbox),
                Item::Mailbox(v) if v.len() > MAX_MAILBOX_LEN => {
                    return Err(BuildError::MailboxTooLong(v.len()))
                }
                Item::Prekey { key, .. } if check_x25519(key).is_err() => {
                    return Err(BuildError::InvalidPrekey)
                }
                _ => {}
            }
        }
        items.sort_by_cached_key(Item::encoded);
        if items.windows(2).any(|w| w[0] == w[1]) {
            return Err(BuildError::DuplicateItem);
        }
        Ok(Interaction {
            index,
            seq,
            prev,
            timestamp,
            items,
        })
    }
}

impl Event {
    /// Canonical encoding of the event (without signature).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        out.push(EVENT_VERSION);
        match self {
            Event::Inception(e) => {
                out.push(KIND_INCEPTION);
                out.extend_from_slice(&e.signing_key.serialize());
                out.extend_from_slice(&e.next_key_digest.0);
                out.extend_from_slice(&e.messaging_key.0);
            }
            Event::Rotation(e) => {
                out.push(KIND_ROTATION);
                out.extend_from_slice(&e.index.to_be_bytes());
                out.extend_from_slice(&e.prev.0);
                out.extend_from_slice(&e.signing_key.serialize());
                out.extend_from_slice(&e.next_key_digest.0);
                out.extend_from_slice(&e.messaging_key.0);
            }
            Event::Interaction(e) => {
                out.push(KIND_INTERACTION);
                out.extend_from_slice(&e.index.to_be_bytes());
                out.extend_from_slice(&e.seq.to_be_bytes());
                out.extend_from_slice(&e.prev.0);
                out.extend_from_slice(&e.timestamp.to_be_bytes());
                out.push(e.items.len() as u8);
                for it in &e.items {
                    it.encode_into(&mut out);
                }
            }
        }
        out
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Event, DecodeError> {
        let version = r.u8()?;
        if version != EVENT_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        match r.u8()? {
            KIND_INCEPTION => Ok(Event::Inception(Inception {
                signing_key: xonly(r.array()?)?,
                next_key_digest: Digest(r.array()?),
                messaging_key: read_messaging_key(r)?,
            })),
            KIND_ROTATION => {
                let index = r.u32()?;
                if index == 0 {
                    return Err(DecodeError::NonCanonical("rotation index 0"));
                }
                Ok(Event::Rotation(Rotation {
                    index,
                    prev: Digest(r.array()?),
                    signing_key: xonly(r.array()?)?,
                    next_key_digest: Digest(r.array()?),
                    messaging_key: read_messaging_key(r)?,
                }))
            }
            KIND_INTERACTION => {
                let index = r.u32()?;
                let seq = r.u32()?;
                if seq == 0 {
                    return Err(DecodeError::NonCanonical("interaction sequence 0"));
                }
                let prev = Digest(r.array()?);
                let timestamp = r.u64()?;
                let count = usize::from(r.u8()?);
                if count > MAX_ITEMS {
                    return Err(DecodeError::FieldTooLarge {
                        field: "items",
                        len: count,
                        max: MAX_ITEMS,
                    });
                }
                let mut items = Vec::with_capacity(count);
                let mut last: Option<&[u8]> = None;
                let mut starts = Vec::with_capacity(count);
                for _ in 0..count {
                    let start = r.position();
                    items.push(Item::decode(r)?);
                    starts.push((start, r.position()));
                }
                // Canonical order: strictly ascending encoded items.
                let all = r.all();
                for (s, e) in starts {
                    let cur = &all[s..e];
                    if let Some(prev) = last {
                        if prev >= cur {
                            return Err(DecodeError::NonCanonical("items not in ascending order"));
                        }
                    }
                    last = Some(cur);
                }
                Ok(Event::Interaction(Interaction {
                    index,
                    seq,
                    prev,
                    timestamp,
                    items,
                }))
            }
            k => Err(DecodeError::UnknownKind(k)),
        }
    }

    /// Decodes one event (without signature); rejects trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        if bytes.len() > MAX_EVENT_LEN {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_EVENT_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let e = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(e)
    }

    /// The key that must sign this event, when the event names it itself
    /// (establishment events are signed by the key they establish).
    pub fn own_signing_key(&self) -> Option<&XOnlyPublicKey> {
        match self {
            Event::Inception(e) => Some(&e.signing_key),
            Event::Rotation(e) => Some(&e.signing_key),
            Event::Interaction(_) => None,
        }
    }

    /// Short name of the event type.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Event::Inception(_) => "inception",
            Event::Rotation(_) => "rotation",
            Event::Interaction(_) => "interaction",
        }
    }

    /// Signs the event with `key`. Establishment events must be signed by the key
    /// they establish. Signatures are deterministic (BIP340 without auxiliary
    /// randomness), so establishment events are byte-identical for the same seed.
    pub fn sign(self, key: &SigningKey) -> Result<SignedEvent, BuildError> {
        if let Some(own) = self.own_signing_key() {
            if *own != key.public() {
                return Err(BuildError::WrongKey);
            }
        }
        let encoded = self.encode();
        if encoded.len() + SIGNATURE_LEN > MAX_EVENT_LEN {
            return Err(BuildError::TooLarge(encoded.len() + SIGNATURE_LEN));
        }
        let digest = Digest(tagged_hash(tags::EVENT, &[&encoded]));
        let msg = Message::from_digest(digest.0);
        let signature = secp().sign_schnorr_no_aux_rand(&msg, key.keypair());
        Ok(SignedEvent {
            event: self,
            encoded,
            digest,
            signature,
        })
    }
}

/// An event with its BIP340 signature. Holds its encoding and digest so that
/// verification does not re-encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEvent {
    event: Event,
    encoded: Vec<u8>,
    digest: Digest,
    signature: Signature,
}

impl SignedEvent {
    /// The event.
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The event's canonical encoding (without signature).
    pub fn event_bytes(&self) -> &[u8] {
        &self.encoded
    }

    /// The event digest (tagged hash of its encoding): what the signature signs
    /// and what the next event's `prev` names.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Encoding of the signed event: event bytes then the 64-byte signature.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded.len() + SIGNATURE_LEN);
        v.extend_from_slice(&self.encoded);
        v.extend_from_slice(self.signature.as_ref());
        v
    }

    /// Decodes a signed event; rejects trailing bytes. The signature is parsed,
    /// not verified: that needs the log (see [`super::KeyEventLog::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<SignedEvent, DecodeError> {
        if bytes.len() > MAX_EVENT_LEN {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_EVENT_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        let event = Event::decode_from(&mut r)?;
        let end = r.position();
        let sig = r.array::<SIGNATURE_LEN>()?;
        r.finish()?;
        let signature =
            Signature::from_slice(&sig).map_err(|_| DecodeError::InvalidSignatureEncoding)?;
        let encoded = bytes[..end].to_vec();
        let digest = Digest(tagged_hash(tags::EVENT, &[&encoded]));
        Ok(SignedEvent {
            event,
            encoded,
            digest,
            signature,
        })
    }

    /// Checks the signature against `key`.
    pub fn verify_signature(&self, key: &XOnlyPublicKey) -> bool {
        let msg = Message::from_digest(self.digest.0);
        secp().verify_schnorr(&self.signature, &msg, key).is_ok()
    }
}
