//! Conversations: the node's end of every end-to-end session, the messages
//! sent and received, and their delivery state. Store I/O only (RocksDB);
//! the network moves the envelopes this module makes and hands it those it
//! receives (`crate::delivery`).
//!
//! Everything is kept in the column family `messages`, each value sealed
//! under the store key (`crate::secrets`, bound to its key in the store):
//!
//! ```text
//! "c" ‖ contact id                    → conversation: next message number, where the contact's node is reached, sessions
//! "s" ‖ contact id ‖ number (u32)     → a session (cairn_messaging::Session)
//! "p" ‖ contact id                    → the handshake waiting for its answer, and its first message
//! "m" ‖ contact id ‖ "i"|"o" ‖ seq    → a message received ("i") or sent ("o") and its state
//! "q" ‖ contact id ‖ seq              → (empty) a sent message not yet acknowledged
//! "a" ‖ answer address                → a first message accepted: the contact and the answer, sent again if it comes again
//! ```
//!
//! - A message is durable before [`Conversations::send`] returns (one
//!   synced write) and is sent until the contact's receipt says it was
//!   stored, or it expires after [`MESSAGE_TTL`]; each try is encrypted
//!   anew, so the contact stores it once (by its number) and acknowledges
//!   every copy.
//! - A session's new state is stored (synced) before a message it
//!   encrypted leaves, so that no message key is ever used twice, and
//!   together with what a received message changed, so that a crash
//!   loses or repeats nothing.
//! - An envelope that does not decrypt, or carries a bad payload, changes
//!   nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use cairn_messaging::mailbox::{epoch, prekey_address};
use cairn_messaging::payload::{envelope, split_envelope, Body, Payload, MAX_TEXT};
use cairn_messaging::{accept, open, start, Kind, PeerIdentity, PeerPrekey, Pending, Session};
use cairn_wallet::keystore::HotKeys;
use cairn_wallet::{IdentityId, LogState};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::secrets;
use crate::store::{Op, Store, StoreError, CF_MESSAGES};

/// How long a message is sent for before it is given up, seconds (the
/// mailboxes keep envelopes as long).
pub const MESSAGE_TTL: u64 = crate::mailbox::TTL;
/// First wait before a message is sent again, seconds; it doubles per try.
pub const RETRY_FIRST: u64 = 2;
/// Longest wait between two tries, seconds.
pub const RETRY_MAX: u64 = 600;
/// Sessions kept per contact (the newest sends; all receive).
pub const MAX_SESSIONS: usize = 4;
/// Messages waiting for their receipt, all contacts together; `send`
/// refuses more.
pub const MAX_OUTBOX: usize = 20_000;
/// Envelopes prepared per call of [`Conversations::due`].
pub const MAX_DUE: usize = 512;
/// Epochs back that envelopes are looked for in mailboxes (their TTL).
pub const COLLECT_EPOCHS: u64 = MESSAGE_TTL / cairn_messaging::mailbox::EPOCH_SECS + 1;
/// Events kept for clients (oldest dropped first).
pub const MAX_EVENTS: usize = 4096;
/// How long a missing message holds back the later ones it precedes,
/// seconds: its sender is trying it again meanwhile; after this, the later
/// ones are shown and the missing one where it comes.
pub const GAP_WAIT: u64 = 10 * 60;

/// Conversation failures.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sealed value did not open.
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    /// Not a contact.
    #[error("{0} is not a contact: add their bundle first (`cairn contact add`)")]
    NotAContact(IdentityId),
    /// The text cannot be sent.
    #[error("{0}")]
    BadText(String),
    /// Too many messages wait for their receipts.
    #[error("{MAX_OUTBOX} messages are waiting to be delivered; try again when some are")]
    OutboxFull,
    /// Stored data that does not decode.
    #[error("the store holds a damaged conversation record: {0}")]
    Damaged(String),
}

/// A message's state. Sent messages go `queued` → `sent` (taken by the
/// contact's node) or `stored` (kept by a mailbox node) → `delivered` (the
/// contact's receipt) → `read`; or `expired`. Received ones are `received`,
/// then `read` once shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting to be sent (or for the contact's answer to a first message).
    Queued,
    /// Taken by the contact's node directly.
    Sent,
    /// Kept by at least one of the contact's mailbox nodes.
    Stored,
    /// The contact's node stored it (its receipt says so).
    Delivered,
    /// Read.
    Read,
    /// Given up after [`MESSAGE_TTL`].
    Expired,
    /// Received, not yet shown.
    Received,
}

/// A message as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The contact.
    pub contact: IdentityId,
    /// Sent by this side (or received).
    pub outgoing: bool,
    /// Its number in its sender's messages to this conversation, from 1.
    pub seq: u64,
    /// The text.
    pub text: String,
    /// When it was written (the sender's clock), Unix seconds.
    pub sent_at: u64,
    /// When it was received (received messages), Unix seconds.
    pub received_at: Option<u64>,
    /// Its state.
    pub state: State,
    /// Tries so far (sent messages).
    pub tries: u32,
    /// When it is tried next (sent messages not yet delivered).
    pub next_try: u64,
}

/// Something a client wants to hear about.
#[derive(Debug, Clone, Serialize)]
pub struct MessageEvent {
    /// The event's number (increasing).
    pub seq: u64,
    /// `received` or `state`.
    pub kind: &'static str,
    /// The contact.
    pub contact: IdentityId,
    /// The message's number.
    pub message: u64,
    /// Sent by this side.
    pub outgoing: bool,
    /// Its state now.
    pub state: State,
    /// The text (received messages).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// An envelope to send, and where.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The contact it is for.
    pub contact: IdentityId,
    /// The envelope.
    pub envelope: Vec<u8>,
    /// The messages it carries (none for receipts and answers).
    pub seqs: Vec<u64>,
    /// The contact's node, to deliver to directly (libp2p peer id bytes).
    pub direct: Option<Vec<u8>>,
    /// Mailbox nodes to leave it at if direct delivery fails.
    pub mailboxes: Vec<Vec<u8>>,
}

/// What became of an [`Outgoing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// The contact's node took it.
    Direct,
    /// A mailbox node keeps it.
    Stored,
    /// Nobody took it.
    No,
}

/// What happened to a received envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Taken (new, or a copy of one already taken).
    Taken,
    /// Not for any address this node knows (yet).
    Unknown,
    /// Malformed, or does not decrypt: refused, nothing changed.
    Refused,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ConvState {
    /// The number of the next message sent.
    next_seq: u64,
    /// The contact's node (peer id bytes), as it last said.
    reach: Vec<u8>,
    /// The number the next session gets.
    next_session: u32,
    /// Up to which received message a read receipt was sent.
    read_told: u64,
    /// Received messages are shown in order: every one up to this number
    /// has been released (or given up waiting for).
    #[serde(default)]
    released: u64,
    /// The highest number received.
    #[serde(default)]
    max_received: u64,
    /// Since when a missing message holds the later ones back (0: none).
    #[serde(default)]
    gap_since: u64,
}

struct PendingFirst {
    pending: Pending,
    envelope: Vec<u8>,
    seq: u64,
}

#[derive(Default)]
struct Conv {
    state: ConvState,
    /// Sessions by number; the highest sends.
    sessions: BTreeMap<u32, Session>,
    pending: Option<PendingFirst>,
}

#[derive(Debug, Clone, Copy)]
enum Route {
    Session(IdentityId, u32),
    Answer(IdentityId),
    Prekey(u32),
}

/// The node's conversations.
pub struct Conversations {
    store: Arc<Store>,
    key: Zeroizing<[u8; 32]>,
    me: IdentityId,
    hot: HotKeys,
    /// The own prekeys whose secrets are held: `(id, public key)`.
    prekeys: Vec<(u32, [u8; 32])>,
    /// This node's peer id (bytes), told to contacts inside messages.
    reach: Vec<u8>,
    convs: HashMap<IdentityId, Conv>,
    routes: HashMap<[u8; 32], Route>,
    routes_epoch: Option<u64>,
    /// Sent messages not yet delivered.
    outbox: BTreeMap<(IdentityId, u64), Message>,
    events: VecDeque<MessageEvent>,
    next_event: u64,
}

fn key_c(id: &IdentityId) -> Vec<u8> {
    [&b"c"[..], &id.0].concat()
}
fn key_s(id: &IdentityId, n: u32) -> Vec<u8> {
    [&b"s"[..], &id.0, &n.to_be_bytes()].concat()
}
fn key_p(id: &IdentityId) -> Vec<u8> {
    [&b"p"[..], &id.0].concat()
}
fn key_m(id: &IdentityId, outgoing: bool, seq: u64) -> Vec<u8> {
    let dir = if outgoing { b"o" } else { b"i" };
    [&b"m"[..], &id.0, dir, &seq.to_be_bytes()].concat()
}
fn key_q(id: &IdentityId, seq: u64) -> Vec<u8> {
    [&b"q"[..], &id.0, &seq.to_be_bytes()].concat()
}
fn key_a(address: &[u8; 32]) -> Vec<u8> {
    [&b"a"[..], address].concat()
}

fn id_at(k: &[u8], at: usize) -> Result<IdentityId, ConversationError> {
    k.get(at..at + 32)
        .and_then(|b| b.try_into().ok())
        .map(IdentityId)
        .ok_or_else(|| ConversationError::Damaged("key".into()))
}

fn damaged(what: impl std::fmt::Display) -> ConversationError {
    ConversationError::Damaged(what.to_string())
}

fn backoff(tries: u32) -> u64 {
    RETRY_FIRST
        .saturating_mul(1u64 << tries.min(20))
        .min(RETRY_MAX)
}

impl Conversations {
    /// Loads the conversations from the store. `own` is the own log's
    /// state (its prekeys), `hot` the current keys, `reach` this node's
    /// peer id as bytes.
    pub fn open(
        store: Arc<Store>,
        hot: HotKeys,
        own: &LogState,
        reach: Vec<u8>,
    ) -> Result<Self, ConversationError> {
        let key = hot.store_key();
        let mut prekeys = Vec::new();
        for (id, public, _) in &own.prekeys {
            if crate::prekeys::secret(&store, &hot, *id)
                .map_err(damaged)?
                .is_some()
            {
                prekeys.push((*id, *public));
            }
        }
        let mut c = Conversations {
            store,
            key,
            me: own.id,
            hot,
            prekeys,
            reach,
            convs: HashMap::new(),
            routes: HashMap::new(),
            routes_epoch: None,
            outbox: BTreeMap::new(),
            events: VecDeque::new(),
            next_event: 0,
        };
        for (k, v) in c.store.scan(CF_MESSAGES, b"c", usize::MAX)? {
            let id = id_at(&k, 1)?;
            let plain = secrets::open(&c.key, &k, &v)?;
            let state: ConvState = serde_json::from_slice(&plain).map_err(damaged)?;
            let mut conv = Conv {
                state,
                ..Conv::default()
            };
            let prefix = [&b"s"[..], &id.0].concat();
            for (k, v) in c.store.scan(CF_MESSAGES, &prefix, usize::MAX)? {
                let n = k
                    .get(33..37)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| damaged("session key"))?;
                let plain = secrets::open(&c.key, &k, &v)?;
                conv.sessions
                    .insert(n, Session::from_bytes(&plain).map_err(damaged)?);
            }
            if let Some(v) = c.store.get(CF_MESSAGES, &key_p(&id))? {
                let plain = secrets::open(&c.key, &key_p(&id), &v)?;
                conv.pending = Some(decode_pending(&plain)?);
            }
            c.convs.insert(id, conv);
        }
        for (k, _) in c.store.scan(CF_MESSAGES, b"q", usize::MAX)? {
            let id = id_at(&k, 1)?;
            let seq = k
                .get(33..41)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| damaged("queue key"))?;
            if let Some(m) = c.message(&id, true, seq)? {
                c.outbox.insert((id, seq), m);
            }
        }
        Ok(c)
    }

    /// This identity.
    pub fn me(&self) -> IdentityId {
        self.me
    }

    fn seal(&self, k: &[u8], v: &[u8]) -> Result<Op, ConversationError> {
        Ok(Op::Put(
            CF_MESSAGES,
            k.to_vec(),
            secrets::seal(&self.key, k, v)?,
        ))
    }

    fn put_message(&self, ops: &mut Vec<Op>, m: &Message) -> Result<(), ConversationError> {
        let json = Zeroizing::new(serde_json::to_vec(m).map_err(damaged)?);
        ops.push(self.seal(&key_m(&m.contact, m.outgoing, m.seq), &json)?);
        Ok(())
    }

    fn put_conv(&self, ops: &mut Vec<Op>, id: &IdentityId) -> Result<(), ConversationError> {
        if let Some(conv) = self.convs.get(id) {
            let json = serde_json::to_vec(&conv.state).map_err(damaged)?;
            ops.push(self.seal(&key_c(id), &json)?);
        }
        Ok(())
    }

    fn put_session(
        &self,
        ops: &mut Vec<Op>,
        id: &IdentityId,
        n: u32,
    ) -> Result<(), ConversationError> {
        if let Some(s) = self.convs.get(id).and_then(|c| c.sessions.get(&n)) {
            ops.push(self.seal(&key_s(id, n), &s.to_bytes())?);
        }
        Ok(())
    }

    /// One stored message.
    pub fn message(
        &self,
        id: &IdentityId,
        outgoing: bool,
        seq: u64,
    ) -> Result<Option<Message>, ConversationError> {
        let k = key_m(id, outgoing, seq);
        match self.store.get(CF_MESSAGES, &k)? {
            Some(v) => {
                let plain = secrets::open(&self.key, &k, &v)?;
                Ok(Some(serde_json::from_slice(&plain).map_err(damaged)?))
            }
            None => Ok(None),
        }
    }

    fn event(&mut self, kind: &'static str, m: &Message) {
        self.next_event += 1;
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(MessageEvent {
            seq: self.next_event,
            kind,
            contact: m.contact,
            message: m.seq,
            outgoing: m.outgoing,
            state: m.state,
            text: (kind == "received").then(|| m.text.clone()),
        });
    }

    /// Events after `after` (at most `limit`).
    pub fn events_after(&self, after: u64, limit: usize) -> Vec<MessageEvent> {
        self.events
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect()
    }

    /// The number of the newest event.
    pub fn last_event(&self) -> u64 {
        self.next_event
    }

    /// Queues `text` for `to`: durable (synced) when this returns. Returns
    /// the message's number.
    pub fn send(
        &mut self,
        to: &IdentityId,
        text: &str,
        now: u64,
    ) -> Result<u64, ConversationError> {
        if self.store.contact(to)?.is_none() {
            return Err(ConversationError::NotAContact(*to));
        }
        if text.is_empty() {
            return Err(ConversationError::BadText("the message is empty".into()));
        }
        if text.len() > MAX_TEXT {
            return Err(ConversationError::BadText(format!(
                "the message is {} bytes; at most {MAX_TEXT} fit",
                text.len()
            )));
        }
        if self.outbox.len() >= MAX_OUTBOX {
            return Err(ConversationError::OutboxFull);
        }
        let conv = self.convs.entry(*to).or_default();
        conv.state.next_seq = conv.state.next_seq.max(1);
        let seq = conv.state.next_seq;
        conv.state.next_seq += 1;
        let m = Message {
            contact: *to,
            outgoing: true,
            seq,
            text: text.to_string(),
            sent_at: now,
            received_at: None,
            state: State::Queued,
            tries: 0,
            next_try: now,
        };
        let mut ops = Vec::new();
        self.put_conv(&mut ops, to)?;
        self.put_message(&mut ops, &m)?;
        ops.push(Op::Put(CF_MESSAGES, key_q(to, seq), Vec::new()));
        if let Err(e) = self.store.write(ops, true) {
            // Not stored: the number is not used.
            if let Some(c) = self.convs.get_mut(to) {
                c.state.next_seq -= 1;
            }
            return Err(e.into());
        }
        self.event("state", &m);
        self.outbox.insert((*to, seq), m);
        Ok(seq)
    }

    fn payload(&self, body: Body) -> Result<Vec<u8>, ConversationError> {
        Payload {
            reach: self.reach.clone(),
            body,
        }
        .encode()
        .map_err(damaged)
    }

    /// The contact's verified log state.
    fn contact_state(&self, id: &IdentityId) -> Result<Option<LogState>, ConversationError> {
        if self.store.contact(id)?.is_none() {
            return Ok(None);
        }
        match self.store.log(id)? {
            Some(log) => Ok(log.verify().ok()),
            None => Ok(None),
        }
    }

    fn direct(&self, id: &IdentityId) -> Option<Vec<u8>> {
        self.convs
            .get(id)
            .map(|c| c.state.reach.clone())
            .filter(|r| !r.is_empty())
    }

    /// The messages due to be sent (again) at `now`, encrypted: at most
    /// [`MAX_DUE`] envelopes. The sessions they advanced are stored first.
    pub fn due(&mut self, now: u64) -> Result<Vec<Outgoing>, ConversationError> {
        let mut ops = Vec::new();
        let waiting: Vec<IdentityId> = self
            .convs
            .iter()
            .filter(|(_, c)| c.state.gap_since != 0)
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.release(&id, now, &Fresh::new(), &mut ops)?;
        }
        let due: Vec<(IdentityId, u64)> = self
            .outbox
            .iter()
            .filter(|(_, m)| m.next_try <= now)
            .map(|(k, _)| *k)
            .take(MAX_DUE)
            .collect();
        let mut out = Vec::new();
        let mut states: HashMap<IdentityId, Option<LogState>> = HashMap::new();
        let mut touched_sessions: Vec<(IdentityId, u32)> = Vec::new();
        let e = epoch(now);
        for (id, seq) in due {
            let Some(mut m) = self.outbox.get(&(id, seq)).cloned() else {
                continue;
            };
            if now.saturating_sub(m.sent_at) > MESSAGE_TTL {
                m.state = State::Expired;
                self.put_message(&mut ops, &m)?;
                ops.push(Op::Delete(CF_MESSAGES, key_q(&id, seq)));
                self.outbox.remove(&(id, seq));
                self.event("state", &m);
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(v) = states.entry(id) {
                v.insert(self.contact_state(&id)?);
            }
            let Some(state) = states.get(&id).and_then(|s| s.as_ref()) else {
                continue;
            };
            let mailboxes = if m.state == State::Stored {
                Vec::new()
            } else {
                state.mailboxes.clone()
            };
            let direct = self.direct(&id);
            let conv = self.convs.entry(id).or_default();
            let text = Body::Text {
                seq,
                sent_at: m.sent_at,
                text: m.text.clone(),
            };
            if let Some((&n, _)) = conv.sessions.last_key_value() {
                let payload = Payload {
                    reach: self.reach.clone(),
                    body: text,
                }
                .encode()
                .map_err(damaged)?;
                let session = conv.sessions.get_mut(&n).expect("present");
                let message = match session.encrypt(&payload) {
                    Ok(m) => m,
                    Err(err) => {
                        // An exhausted session: the next try starts anew.
                        tracing::warn!(contact = %id, "session cannot send: {err}");
                        conv.sessions.remove(&n);
                        ops.push(Op::Delete(CF_MESSAGES, key_s(&id, n)));
                        continue;
                    }
                };
                let address = session.send_address(e);
                if !touched_sessions.contains(&(id, n)) {
                    touched_sessions.push((id, n));
                }
                out.push(Outgoing {
                    contact: id,
                    envelope: envelope(&address, &message),
                    seqs: vec![seq],
                    direct,
                    mailboxes,
                });
            } else if let Some(p) = &conv.pending {
                if p.seq != seq {
                    // Waits for the answer to the first message.
                    m.next_try = now + RETRY_FIRST;
                    self.outbox.insert((id, seq), m);
                    continue;
                }
                out.push(Outgoing {
                    contact: id,
                    envelope: p.envelope.clone(),
                    seqs: vec![seq],
                    direct,
                    mailboxes: state.mailboxes.clone(),
                });
            } else {
                // A first message, sealed to the contact's newest prekey.
                let Some(&(pid, pkey, _)) = state
                    .prekeys
                    .iter()
                    .filter(|p| p.2 > now)
                    .max_by_key(|p| p.2)
                else {
                    tracing::warn!(contact = %id, "the contact publishes no valid prekey yet");
                    m.tries += 1;
                    m.next_try = now + backoff(m.tries);
                    self.outbox.insert((id, seq), m);
                    continue;
                };
                let peer = PeerIdentity {
                    id,
                    messaging_key: state.current().messaging_key.0,
                };
                let prekey = PeerPrekey { id: pid, key: pkey };
                let payload = Payload {
                    reach: self.reach.clone(),
                    body: text,
                }
                .encode()
                .map_err(damaged)?;
                let (pending, initial) = start(
                    self.me,
                    &self.hot.messaging.secret_bytes(),
                    &peer,
                    &prekey,
                    &payload,
                )
                .map_err(damaged)?;
                let env = envelope(&prekey_address(&pkey, e), &initial);
                let rec = PendingFirst {
                    pending,
                    envelope: env.clone(),
                    seq,
                };
                ops.push(self.seal(&key_p(&id), &encode_pending(&rec))?);
                self.routes
                    .insert(rec.pending.answer_address(), Route::Answer(id));
                self.convs.entry(id).or_default().pending = Some(rec);
                out.push(Outgoing {
                    contact: id,
                    envelope: env,
                    seqs: vec![seq],
                    direct,
                    mailboxes: state.mailboxes.clone(),
                });
            }
            m.tries += 1;
            m.next_try = now + backoff(m.tries);
            self.put_message(&mut ops, &m)?;
            self.outbox.insert((id, seq), m);
        }
        for (id, n) in touched_sessions {
            self.put_session(&mut ops, &id, n)?;
            self.put_conv(&mut ops, &id)?;
        }
        if !ops.is_empty() {
            self.store.write(ops, true)?;
        }
        Ok(out)
    }

    /// Records what became of sent messages.
    pub fn sent(
        &mut self,
        contact: &IdentityId,
        seqs: &[u64],
        how: Sent,
    ) -> Result<(), ConversationError> {
        let new = match how {
            Sent::Direct => State::Sent,
            Sent::Stored => State::Stored,
            Sent::No => return Ok(()),
        };
        let mut ops = Vec::new();
        let mut changed = Vec::new();
        for seq in seqs {
            if let Some(m) = self.outbox.get_mut(&(*contact, *seq)) {
                if m.state == State::Queued || (m.state == State::Sent && new == State::Stored) {
                    m.state = new;
                    changed.push(m.clone());
                }
            }
        }
        for m in changed {
            self.put_message(&mut ops, &m)?;
            self.event("state", &m);
        }
        if !ops.is_empty() {
            self.store.write(ops, false)?;
        }
        Ok(())
    }

    /// Rebuilds the address routes when the epoch has changed.
    fn refresh_routes(&mut self, now: u64) {
        let e = epoch(now);
        if self.routes_epoch == Some(e) {
            return;
        }
        self.routes.clear();
        let first = e.saturating_sub(COLLECT_EPOCHS);
        for (id, conv) in &self.convs {
            for (n, s) in &conv.sessions {
                for x in first..=e + 1 {
                    self.routes
                        .insert(s.receive_address(x), Route::Session(*id, *n));
                }
            }
            if let Some(p) = &conv.pending {
                self.routes
                    .insert(p.pending.answer_address(), Route::Answer(*id));
            }
        }
        for (pid, key) in &self.prekeys {
            for x in first..=e + 1 {
                self.routes
                    .insert(prekey_address(key, x), Route::Prekey(*pid));
            }
        }
        self.routes_epoch = Some(e);
    }

    fn add_session_routes(&mut self, id: IdentityId, n: u32, now: u64) {
        let e = epoch(now);
        if let Some(s) = self.convs.get(&id).and_then(|c| c.sessions.get(&n)) {
            let addrs: Vec<[u8; 32]> = (e.saturating_sub(COLLECT_EPOCHS)..=e + 1)
                .map(|x| s.receive_address(x))
                .collect();
            for a in addrs {
                self.routes.insert(a, Route::Session(id, n));
            }
        }
    }

    /// The addresses to collect from the own mailboxes: every session's,
    /// the answers awaited and the own prekeys', for the last `epochs`
    /// epochs and the next.
    pub fn collect_addresses(&mut self, now: u64, epochs: u64) -> Vec<[u8; 32]> {
        self.refresh_routes(now);
        let e = epoch(now);
        let first = e.saturating_sub(epochs.min(COLLECT_EPOCHS));
        let mut out = Vec::new();
        for conv in self.convs.values() {
            for s in conv.sessions.values() {
                out.extend((first..=e + 1).map(|x| s.receive_address(x)));
            }
            if let Some(p) = &conv.pending {
                out.push(p.pending.answer_address());
            }
        }
        for (_, key) in &self.prekeys {
            out.extend((first..=e + 1).map(|x| prekey_address(key, x)));
        }
        out
    }

    /// Takes received envelopes: one answer each, in order, and the
    /// envelopes to send in return (answers, receipts). What they change
    /// is stored in one synced write before this returns.
    pub fn receive(
        &mut self,
        envelopes: &[Vec<u8>],
        now: u64,
    ) -> Result<(Vec<Received>, Vec<Outgoing>), ConversationError> {
        self.refresh_routes(now);
        let mut answers = Vec::with_capacity(envelopes.len());
        let mut b = Batch::default();
        for env in envelopes {
            answers.push(match self.receive_one(env, now, &mut b) {
                Ok(r) => r,
                Err(ReceiveFailure::Refused(why)) => {
                    tracing::debug!("envelope refused: {why}");
                    Received::Refused
                }
                Err(ReceiveFailure::Fatal(e)) => return Err(e),
            });
        }
        let Batch {
            mut ops,
            mut out,
            delivered,
            touched,
            fresh,
        } = b;
        for (id, n) in &touched {
            self.put_session(&mut ops, id, *n)?;
        }
        let ids: Vec<IdentityId> = delivered.keys().copied().collect();
        for id in ids {
            self.release(&id, now, &fresh, &mut ops)?;
        }
        // Receipts, on each contact's newest session.
        for (id, mut seqs) in delivered {
            seqs.sort_unstable();
            seqs.dedup();
            for chunk in seqs.chunks(cairn_messaging::payload::MAX_RECEIPT_SEQS) {
                let read = self.convs.get(&id).map_or(0, |c| c.state.read_told);
                if let Some(o) = self.on_session(
                    &id,
                    Body::Receipt {
                        delivered: chunk.to_vec(),
                        read_up_to: read,
                    },
                    now,
                    &mut ops,
                )? {
                    out.push(o);
                }
            }
            self.put_conv(&mut ops, &id)?;
        }
        if !ops.is_empty() {
            self.store.write(ops, true)?;
        }
        Ok((answers, out))
    }

    /// Encrypts `body` on the contact's newest session (its state into
    /// `ops`); none without a session.
    fn on_session(
        &mut self,
        id: &IdentityId,
        body: Body,
        now: u64,
        ops: &mut Vec<Op>,
    ) -> Result<Option<Outgoing>, ConversationError> {
        let payload = self.payload(body)?;
        let direct = self.direct(id);
        let mailboxes = self
            .contact_state(id)?
            .map(|s| s.mailboxes)
            .unwrap_or_default();
        let Some(conv) = self.convs.get_mut(id) else {
            return Ok(None);
        };
        let Some((&n, session)) = conv.sessions.iter_mut().next_back() else {
            return Ok(None);
        };
        let Ok(message) = session.encrypt(&payload) else {
            return Ok(None);
        };
        let address = session.send_address(epoch(now));
        self.put_session(ops, id, n)?;
        Ok(Some(Outgoing {
            contact: *id,
            envelope: envelope(&address, &message),
            seqs: Vec::new(),
            direct,
            mailboxes,
        }))
    }

    fn receive_one(
        &mut self,
        env: &[u8],
        now: u64,
        b: &mut Batch,
    ) -> Result<Received, ReceiveFailure> {
        let (address, message) = split_envelope(env).map_err(refused)?;
        let Some(route) = self.routes.get(&address).copied() else {
            return Ok(Received::Unknown);
        };
        match route {
            Route::Session(id, n) => {
                let session = self
                    .convs
                    .get(&id)
                    .and_then(|c| c.sessions.get(&n))
                    .ok_or(ReceiveFailure::Refused("session gone".into()))?;
                let mut next = session.clone();
                let content = match next.decrypt(message) {
                    Ok(c) => c,
                    // A copy of a message already taken: taken again.
                    Err(cairn_messaging::SessionError::Replayed { .. }) => {
                        return Ok(Received::Taken)
                    }
                    Err(e) => return Err(refused(e)),
                };
                let payload = Payload::decode(&content).map_err(refused)?;
                self.convs
                    .get_mut(&id)
                    .expect("present")
                    .sessions
                    .insert(n, next);
                if !b.touched.contains(&(id, n)) {
                    b.touched.push((id, n));
                }
                self.apply(id, payload, now, b)?;
                Ok(Received::Taken)
            }
            Route::Answer(id) => {
                let Some(p) = self.convs.get(&id).and_then(|c| c.pending.as_ref()) else {
                    return Ok(Received::Unknown);
                };
                let (session, content) = p.pending.finish(message).map_err(refused)?;
                let payload = Payload::decode(&content).map_err(refused)?;
                let conv = self.convs.get_mut(&id).expect("present");
                conv.pending = None;
                let n = conv.state.next_session;
                conv.state.next_session += 1;
                conv.sessions.insert(n, session);
                self.trim_sessions(&id, &mut b.ops);
                self.routes.remove(&address);
                b.ops.push(Op::Delete(CF_MESSAGES, key_p(&id)));
                self.add_session_routes(id, n, now);
                b.touched.push((id, n));
                // The first message goes out again on the session at once
                // (the contact may not have stored it yet) with the rest.
                for ((c, _), m) in self.outbox.range_mut((id, 0)..=(id, u64::MAX)) {
                    debug_assert_eq!(*c, id);
                    m.next_try = now;
                }
                self.apply(id, payload, now, b)?;
                self.put_conv(&mut b.ops, &id)
                    .map_err(ReceiveFailure::Fatal)?;
                Ok(Received::Taken)
            }
            Route::Prekey(pid) => {
                if Kind::of(message).map_err(refused)? != Kind::Initial {
                    return Err(refused("not a first message"));
                }
                let opened = open(&self.me, message, |id| {
                    (id == pid)
                        .then(|| {
                            crate::prekeys::secret(&self.store, &self.hot, id)
                                .ok()
                                .flatten()
                        })
                        .flatten()
                })
                .map_err(refused)?;
                let from = opened.from;
                let Some(state) = self.contact_state(&from).map_err(ReceiveFailure::Fatal)? else {
                    // Strangers cannot write first: add them as a contact.
                    return Err(refused(format!(
                        "a first message from {from}, who is not a contact"
                    )));
                };
                let reply = self
                    .payload(Body::Receipt {
                        delivered: Vec::new(),
                        read_up_to: 0,
                    })
                    .map_err(ReceiveFailure::Fatal)?;
                let accepted = accept(
                    &self.me,
                    &self.hot.messaging.public(),
                    &opened,
                    &state.current().messaging_key.0,
                    &reply,
                )
                .map_err(refused)?;
                let answer_env = envelope(&accepted.answer_address, &accepted.answer);
                let seen = key_a(&accepted.answer_address);
                if let Some(v) = self.store.get(CF_MESSAGES, &seen).map_err(fatal)? {
                    // This first message was taken before: its answer again.
                    let plain = secrets::open(&self.key, &seen, &v).map_err(fatal)?;
                    b.out.push(Outgoing {
                        contact: from,
                        envelope: plain.get(32..).unwrap_or_default().to_vec(),
                        seqs: Vec::new(),
                        direct: self.direct(&from),
                        mailboxes: state.mailboxes.clone(),
                    });
                    return Ok(Received::Taken);
                }
                let payload = Payload::decode(&accepted.content).map_err(refused)?;
                let conv = self.convs.entry(from).or_default();
                let n = conv.state.next_session;
                conv.state.next_session += 1;
                conv.sessions.insert(n, accepted.session);
                self.trim_sessions(&from, &mut b.ops);
                self.add_session_routes(from, n, now);
                b.touched.push((from, n));
                b.ops.push(
                    self.seal(&seen, &[&from.0[..], &answer_env].concat())
                        .map_err(fatal)?,
                );
                // The answer must leave before anything on the new session.
                if !payload.reach.is_empty() {
                    self.convs.get_mut(&from).expect("present").state.reach = payload.reach.clone();
                }
                b.out.push(Outgoing {
                    contact: from,
                    envelope: answer_env,
                    seqs: Vec::new(),
                    direct: self.direct(&from),
                    mailboxes: state.mailboxes.clone(),
                });
                self.apply(from, payload, now, b)?;
                self.put_conv(&mut b.ops, &from)
                    .map_err(ReceiveFailure::Fatal)?;
                Ok(Received::Taken)
            }
        }
    }

    /// Releases the contact's received messages in order: each one whose
    /// predecessors have all come (or were waited for [`GAP_WAIT`]) is
    /// announced as received and shown by [`Conversations::take_unread`].
    fn release(
        &mut self,
        id: &IdentityId,
        now: u64,
        fresh: &Fresh,
        ops: &mut Vec<Op>,
    ) -> Result<(), ConversationError> {
        let Some(mut st) = self.convs.get(id).map(|c| c.state.clone()) else {
            return Ok(());
        };
        let before = (st.released, st.gap_since);
        let mut released = Vec::new();
        while st.released < st.max_received {
            let next = st.released + 1;
            let m = match fresh.get(&(*id, next)) {
                Some(m) => Some(m.clone()),
                None => self.message(id, false, next)?,
            };
            match m {
                Some(m) => {
                    st.released = next;
                    st.gap_since = 0;
                    released.push(m);
                }
                None if st.gap_since == 0 => {
                    st.gap_since = now;
                    break;
                }
                None if now >= st.gap_since.saturating_add(GAP_WAIT) => st.released = next,
                None => break,
            }
        }
        if st.released >= st.max_received {
            st.gap_since = 0;
        }
        if (st.released, st.gap_since) != before {
            if let Some(c) = self.convs.get_mut(id) {
                c.state = st;
            }
            self.put_conv(ops, id)?;
        }
        for m in released {
            self.event("received", &m);
        }
        Ok(())
    }

    /// Keeps the newest [`MAX_SESSIONS`] sessions of a contact.
    fn trim_sessions(&mut self, id: &IdentityId, ops: &mut Vec<Op>) {
        if let Some(conv) = self.convs.get_mut(id) {
            while conv.sessions.len() > MAX_SESSIONS {
                if let Some((n, _)) = conv.sessions.pop_first() {
                    ops.push(Op::Delete(CF_MESSAGES, key_s(id, n)));
                }
            }
        }
    }

    /// What a decrypted payload says.
    fn apply(
        &mut self,
        id: IdentityId,
        payload: Payload,
        now: u64,
        b: &mut Batch,
    ) -> Result<(), ReceiveFailure> {
        if !payload.reach.is_empty() {
            self.convs.entry(id).or_default().state.reach = payload.reach;
        }
        match payload.body {
            Body::Text { seq, sent_at, text } => {
                b.delivered.entry(id).or_default().push(seq);
                if self.message(&id, false, seq).map_err(fatal)?.is_some() {
                    return Ok(());
                }
                let m = Message {
                    contact: id,
                    outgoing: false,
                    seq,
                    text,
                    sent_at,
                    received_at: Some(now),
                    state: State::Received,
                    tries: 0,
                    next_try: 0,
                };
                // Two copies in one batch are one message.
                if b.fresh.contains_key(&(id, seq)) {
                    return Ok(());
                }
                self.put_message(&mut b.ops, &m).map_err(fatal)?;
                let conv = self.convs.entry(id).or_default();
                conv.state.max_received = conv.state.max_received.max(seq);
                if seq <= conv.state.released {
                    // Late: the ones after it were shown already.
                    self.event("received", &m);
                }
                b.fresh.insert((id, seq), m);
            }
            Body::Receipt {
                delivered: seqs,
                read_up_to,
            } => {
                let mut changed = Vec::new();
                for seq in seqs {
                    if let Some(mut m) = self.outbox.remove(&(id, seq)) {
                        m.state = State::Delivered;
                        b.ops.push(Op::Delete(CF_MESSAGES, key_q(&id, seq)));
                        changed.push(m);
                    }
                }
                if read_up_to > 0 {
                    let prefix = [&b"m"[..], &id.0, b"o"].concat();
                    // Messages up to `read_up_to` that are not read yet.
                    for (k, v) in self
                        .store
                        .scan(CF_MESSAGES, &prefix, usize::MAX)
                        .map_err(fatal)?
                    {
                        let plain = secrets::open(&self.key, &k, &v).map_err(fatal)?;
                        let mut m: Message = serde_json::from_slice(&plain)
                            .map_err(|e| ReceiveFailure::Fatal(damaged(e)))?;
                        if m.seq > read_up_to {
                            break;
                        }
                        if let Some(c) = changed.iter_mut().find(|c| c.seq == m.seq) {
                            c.state = State::Read;
                        } else if m.state != State::Read {
                            if self.outbox.remove(&(id, m.seq)).is_some() {
                                b.ops.push(Op::Delete(CF_MESSAGES, key_q(&id, m.seq)));
                            }
                            m.state = State::Read;
                            changed.push(m);
                        }
                    }
                }
                for m in changed {
                    self.put_message(&mut b.ops, &m).map_err(fatal)?;
                    self.event("state", &m);
                }
            }
        }
        Ok(())
    }

    /// The conversation with `id` (or every conversation): messages in
    /// order of number, received ones after sent ones of the same number;
    /// at most `limit`, the newest.
    pub fn history(
        &self,
        id: Option<&IdentityId>,
        limit: usize,
    ) -> Result<Vec<Message>, ConversationError> {
        let prefix = match id {
            Some(id) => [&b"m"[..], &id.0].concat(),
            None => b"m".to_vec(),
        };
        let mut out = Vec::new();
        for (k, v) in self.store.scan(CF_MESSAGES, &prefix, usize::MAX)? {
            let plain = secrets::open(&self.key, &k, &v)?;
            out.push(serde_json::from_slice::<Message>(&plain).map_err(damaged)?);
        }
        out.sort_by_key(|m| (m.contact, m.sent_at, m.seq, !m.outgoing));
        let skip = out.len().saturating_sub(limit);
        Ok(out.split_off(skip))
    }

    /// Received messages not yet read, oldest first; marks them read and
    /// returns the read receipts to send.
    pub fn take_unread(
        &mut self,
        now: u64,
    ) -> Result<(Vec<Message>, Vec<Outgoing>), ConversationError> {
        let mut unread = Vec::new();
        for (k, v) in self.store.scan(CF_MESSAGES, b"m", usize::MAX)? {
            if k.get(33) != Some(&b'i') {
                continue;
            }
            let plain = secrets::open(&self.key, &k, &v)?;
            let m: Message = serde_json::from_slice(&plain).map_err(damaged)?;
            let released = self.convs.get(&m.contact).map_or(0, |c| c.state.released);
            if m.state == State::Received && m.seq <= released {
                unread.push(m);
            }
        }
        let mut ops = Vec::new();
        let mut read_to: BTreeMap<IdentityId, u64> = BTreeMap::new();
        for m in &mut unread {
            m.state = State::Read;
            self.put_message(&mut ops, m)?;
            let r = read_to.entry(m.contact).or_default();
            *r = (*r).max(m.seq);
        }
        let mut out = Vec::new();
        for (id, up_to) in read_to {
            if let Some(conv) = self.convs.get_mut(&id) {
                conv.state.read_told = conv.state.read_told.max(up_to);
            }
            if let Some(o) = self.on_session(
                &id,
                Body::Receipt {
                    delivered: Vec::new(),
                    read_up_to: up_to,
                },
                now,
                &mut ops,
            )? {
                out.push(o);
            }
            self.put_conv(&mut ops, &id)?;
        }
        if !ops.is_empty() {
            self.store.write(ops, true)?;
        }
        Ok((unread, out))
    }

    /// Sent messages waiting for their receipts.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }
}

/// Messages received in the batch being taken (not in the store yet).
type Fresh = HashMap<(IdentityId, u64), Message>;

/// What taking a batch of envelopes changes, written at its end.
#[derive(Default)]
struct Batch {
    /// Store writes.
    ops: Vec<Op>,
    /// Envelopes to send in return.
    out: Vec<Outgoing>,
    /// Messages to acknowledge, by contact.
    delivered: BTreeMap<IdentityId, Vec<u64>>,
    /// Sessions changed.
    touched: Vec<(IdentityId, u32)>,
    /// Messages received in this batch.
    fresh: Fresh,
}

enum ReceiveFailure {
    /// The envelope is refused; nothing changed.
    Refused(String),
    /// The store failed.
    Fatal(ConversationError),
}

fn refused(e: impl std::fmt::Display) -> ReceiveFailure {
    ReceiveFailure::Refused(e.to_string())
}

fn fatal(e: impl Into<ConversationError>) -> ReceiveFailure {
    ReceiveFailure::Fatal(e.into())
}

fn encode_pending(p: &PendingFirst) -> Zeroizing<Vec<u8>> {
    let pending = p.pending.to_bytes();
    let mut out = Zeroizing::new(Vec::new());
    out.extend_from_slice(&p.seq.to_be_bytes());
    out.extend_from_slice(&(pending.len() as u32).to_be_bytes());
    out.extend_from_slice(&pending);
    out.extend_from_slice(&p.envelope);
    out
}

fn decode_pending(b: &[u8]) -> Result<PendingFirst, ConversationError> {
    let seq = b
        .get(..8)
        .and_then(|x| x.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| damaged("pending"))?;
    let len = b
        .get(8..12)
        .and_then(|x| x.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| damaged("pending"))? as usize;
    let pending = b.get(12..12 + len).ok_or_else(|| damaged("pending"))?;
    Ok(PendingFirst {
        pending: Pending::from_bytes(pending).map_err(damaged)?,
        envelope: b[12 + len..].to_vec(),
        seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_chain_anchor::{Bundle, ChainNetwork, ChainParams};
    use cairn_wallet::kel::{establishment_event, KeyEventLog};
    use cairn_wallet::{MasterKey, SeedPhrase};

    use crate::identity::OwnIdentity;
    use crate::store::ContactRecord;

    const NOW: u64 = 1_800_000_000;

    struct Side {
        _dir: tempfile::TempDir,
        store: Arc<Store>,
        own: OwnIdentity,
        hot: HotKeys,
    }

    fn side() -> Side {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let master = MasterKey::new(&SeedPhrase::generate(12).unwrap().to_seed(""));
        let log = KeyEventLog::new(vec![establishment_event(&master, 0, None).unwrap()]);
        let state = log.verify().unwrap();
        store.set_own_identity(&state.id, &log).unwrap();
        let hot = HotKeys::derive(&master, 0).unwrap();
        let own = crate::prekeys::refresh(&store, &OwnIdentity { log, state }, &hot, NOW)
            .unwrap()
            .own;
        Side {
            _dir: dir,
            store,
            own,
            hot,
        }
    }

    fn knows(a: &Side, b: &Side) {
        let bundle = Bundle {
            genesis: ChainParams::new(ChainNetwork::Regtest).genesis_hash(),
            log: b.own.log.clone(),
            anchors: Vec::new(),
            sealed: Vec::new(),
        };
        let record = ContactRecord {
            name: None,
            added: NOW,
        };
        a.store
            .put_contact(ChainNetwork::Regtest, &b.own.state.id, &bundle, &record)
            .unwrap();
    }

    fn convs(s: &Side, reach: &[u8]) -> Conversations {
        let hot = HotKeys::decode(&s.hot.encode()).unwrap();
        Conversations::open(s.store.clone(), hot, &s.own.state, reach.to_vec()).unwrap()
    }

    fn envelopes(out: &[Outgoing]) -> Vec<Vec<u8>> {
        out.iter().map(|o| o.envelope.clone()).collect()
    }

    fn everything(s: &Side) -> Vec<(Vec<u8>, Vec<u8>)> {
        s.store.scan(CF_MESSAGES, b"", usize::MAX).unwrap()
    }

    fn texts(c: &Conversations, with: &IdentityId) -> Vec<(u64, String)> {
        c.history(Some(with), usize::MAX)
            .unwrap()
            .into_iter()
            .filter(|m| !m.outgoing)
            .map(|m| (m.seq, m.text))
            .collect()
    }

    /// Alice and Bob, each with the other as a contact, and a session
    /// between them set up by Alice's first message.
    fn pair() -> (Side, Side, Conversations, Conversations) {
        let (a, b) = (side(), side());
        knows(&a, &b);
        knows(&b, &a);
        let mut alice = convs(&a, b"alice-node");
        let mut bob = convs(&b, b"bob-node");
        let bob_id = b.own.state.id;
        assert_eq!(alice.send(&bob_id, "hello Bob", NOW).unwrap(), 1);
        assert_eq!(alice.send(&bob_id, "are you there?", NOW).unwrap(), 2);
        // One first message, sealed to Bob's prekey; the second waits.
        let out = alice.due(NOW).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].seqs, [1]);
        assert_eq!(out[0].direct, None, "Alice does not know Bob's node yet");
        let (r, back) = bob.receive(&envelopes(&out), NOW).unwrap();
        assert_eq!(r, [Received::Taken]);
        // The answer, then a receipt on the new session.
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].direct.as_deref(), Some(&b"alice-node"[..]));
        let (r, _) = alice.receive(&envelopes(&back), NOW).unwrap();
        assert_eq!(r, [Received::Taken, Received::Taken]);
        assert_eq!(
            alice.message(&bob_id, true, 1).unwrap().unwrap().state,
            State::Delivered
        );
        (a, b, alice, bob)
    }

    #[test]
    fn a_conversation_starts_at_a_prekey_and_every_message_arrives_once_in_order() {
        let (a, b, mut alice, mut bob) = pair();
        let (alice_id, bob_id) = (a.own.state.id, b.own.state.id);
        let out = alice.due(NOW + 1).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].seqs, [2]);
        assert_eq!(out[0].direct.as_deref(), Some(&b"bob-node"[..]));
        // Delivered twice (a retry): stored once, acknowledged each time.
        let (r, back) = bob.receive(&envelopes(&out), NOW + 1).unwrap();
        assert_eq!(r, [Received::Taken]);
        let (r, again) = bob.receive(&envelopes(&out), NOW + 1).unwrap();
        assert_eq!(r, [Received::Taken]);
        assert!(again.is_empty(), "a replayed envelope changes nothing");
        alice.receive(&envelopes(&back), NOW + 1).unwrap();
        assert_eq!(alice.outbox_len(), 0);
        // Bob answers; Alice reads; Bob sees it read.
        bob.send(&alice_id, "hi Alice", NOW + 2).unwrap();
        let out = bob.due(NOW + 2).unwrap();
        let (_, back) = alice.receive(&envelopes(&out), NOW + 2).unwrap();
        bob.receive(&envelopes(&back), NOW + 2).unwrap();
        let (unread, receipts) = alice.take_unread(NOW + 3).unwrap();
        assert_eq!(unread.len(), 1);
        bob.receive(&envelopes(&receipts), NOW + 3).unwrap();
        assert_eq!(
            bob.message(&alice_id, true, 1).unwrap().unwrap().state,
            State::Read
        );
        assert_eq!(
            texts(&bob, &alice_id),
            [(1, "hello Bob".into()), (2, "are you there?".into())]
        );
        // A burst both ways, out of order: each message once, in order.
        for i in 0..50 {
            alice.send(&bob_id, &format!("a{i}"), NOW + 4).unwrap();
        }
        let mut out = alice.due(NOW + 4).unwrap();
        out.reverse();
        let (r, back) = bob.receive(&envelopes(&out), NOW + 4).unwrap();
        assert!(r.iter().all(|r| *r == Received::Taken));
        alice.receive(&envelopes(&back), NOW + 4).unwrap();
        assert_eq!(alice.outbox_len(), 0);
        let got = texts(&bob, &alice_id);
        assert_eq!(got.len(), 52);
        assert!(got.windows(2).all(|w| w[0].0 + 1 == w[1].0));
        // Reopened from the store, the conversation goes on.
        drop(bob);
        let mut bob = convs(&b, b"bob-node");
        alice.send(&bob_id, "after a restart", NOW + 5).unwrap();
        let out = alice.due(NOW + 5).unwrap();
        let (r, _) = bob.receive(&envelopes(&out), NOW + 5).unwrap();
        assert_eq!(r, [Received::Taken]);
        assert_eq!(texts(&bob, &alice_id).last().unwrap().1, "after a restart");
    }

    #[test]
    fn bad_envelopes_are_refused_and_change_nothing() {
        let (a, b, mut alice, mut bob) = pair();
        let bob_id = b.own.state.id;
        alice.send(&bob_id, "real", NOW + 1).unwrap();
        let good = alice.due(NOW + 1).unwrap().remove(0).envelope;
        let before = everything(&b);
        let mut forged = good.clone();
        forged[100] ^= 1;
        let mut other_address = good.clone();
        other_address[0] ^= 1;
        let oversized = [&good[..], &vec![0u8; 70_000]].concat();
        let cases = [
            (forged, Received::Refused),
            (other_address, Received::Unknown),
            (good[..good.len() - 1].to_vec(), Received::Refused),
            (good[..20].to_vec(), Received::Refused),
            (oversized, Received::Refused),
        ];
        for (env, want) in cases {
            let (r, out) = bob.receive(&[env], NOW + 1).unwrap();
            assert_eq!(r, [want]);
            assert!(out.is_empty());
            assert_eq!(everything(&b), before, "nothing stored for {want:?}");
        }
        // The real one still opens afterwards; its replay is only a copy.
        let (r, _) = bob.receive(std::slice::from_ref(&good), NOW + 1).unwrap();
        assert_eq!(r, [Received::Taken]);
        let after = everything(&b);
        let (r, out) = bob.receive(&[good], NOW + 1).unwrap();
        assert_eq!(r, [Received::Taken]);
        assert!(out.is_empty());
        assert_eq!(everything(&b), after);
        let _ = a;
    }

    #[test]
    fn nothing_is_sent_to_strangers_and_their_first_messages_are_refused() {
        let (a, b) = (side(), side());
        knows(&a, &b);
        let mut alice = convs(&a, b"alice-node");
        let mut bob = convs(&b, b"bob-node");
        assert!(matches!(
            bob.send(&a.own.state.id, "hi", NOW),
            Err(ConversationError::NotAContact(_))
        ));
        alice.send(&b.own.state.id, "hi", NOW).unwrap();
        let out = alice.due(NOW).unwrap();
        let before = everything(&b);
        let (r, back) = bob.receive(&envelopes(&out), NOW).unwrap();
        assert_eq!(r, [Received::Refused]);
        assert!(back.is_empty());
        assert_eq!(everything(&b), before);
    }

    #[test]
    fn stored_messages_are_sealed_and_a_message_expires() {
        let (a, b, mut alice, _bob) = pair();
        let bob_id = b.own.state.id;
        for (_, v) in everything(&a) {
            assert!(!v.windows(9).any(|w| w == b"hello Bob"));
        }
        alice.send(&bob_id, "lost", NOW + 10).unwrap();
        alice.due(NOW + 10).unwrap();
        alice.due(NOW + 10 + MESSAGE_TTL + 1).unwrap();
        let m = alice.message(&bob_id, true, 3).unwrap().unwrap();
        assert_eq!(m.state, State::Expired);
        assert_eq!(alice.outbox_len(), 0);
    }
}
