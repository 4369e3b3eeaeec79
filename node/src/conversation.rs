//! Conversations: the node's end of every end-to-end session, the messages
//! sent and received, and their delivery state. Store I/O only (RocksDB);
//! the network moves the envelopes this module makes and hands it those it
//! receives (`crate::delivery`).
//!
//! Everything is kept in the column family `messages`, each value sealed
//! under the store key (`crate::secrets`, bound to its key in the store):
//!
//! ```text
//! "C" ‖ locator                      → contact id ‖ conversation: next message number, where the contact's node is reached, sessions
//! "S" ‖ locator ‖ number (u32)       → a session (cairn_messaging::Session)
//! "P" ‖ locator                      → the handshake waiting for its answer, and its first message
//! "M" ‖ locator ‖ "i"|"o" ‖ seq      → a message received ("i") or sent ("o") and its state
//! "Q" ‖ locator ‖ seq                → (empty) a sent message not yet acknowledged
//! "A" ‖ generation ‖ answer address   → a first message accepted: the contact and the answer, sent again if it comes again
//! "X" ‖ locator ‖ seq                → the envelope of a sent message on its session (sent again as it is)
//! "E" ‖ generation ‖ SHA-256(session message) → the key of the receipt made for a text received ("R" ‖ …)
//! "R" ‖ generation ‖ SHA-256(receipt message) → a receipt (its session and message), sent again if a text it answers comes again
//! "W" ‖ locator                      → a request: someone who is not a contact wrote first (who, when, how often)
//! ```
//!
//! The generation (u32 BE) is `time / MESSAGE_TTL`: the records that
//! recognise copies live through their generation and the next, then are
//! forgotten. The locator is a keyed hash of the contact's id under the store key
//! (`crate::contact_book::locator`, the contact book's own): the store shows
//! which records belong to one conversation and how many messages it holds,
//! but not who it is with.
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

use crate::contact_book::{self, locator, ContactKey};
use crate::secrets;
use crate::store::{Op, SealedEntry, Store, StoreError, CF_MESSAGES};

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
/// Messages sent to one contact and not acknowledged yet, at most (below
/// the message keys a session skips, `cairn_messaging::session::MAX_SKIP`).
pub const MAX_UNACKED: usize = 500;
/// Epochs back that envelopes are looked for in mailboxes (their TTL).
pub const COLLECT_EPOCHS: u64 = MESSAGE_TTL / cairn_messaging::mailbox::EPOCH_SECS + 1;
/// Events kept for clients (oldest dropped first).
pub const MAX_EVENTS: usize = 1024;
/// How long a first message waits for its answer before a new one is
/// made (to the contact's newest prekey), seconds.
pub const PENDING_MAX_AGE: u64 = 3 * 24 * 60 * 60;
/// How far beyond the last message received a message's number may be;
/// further is refused (an honest sender has at most [`MAX_OUTBOX`] waiting).
pub const MAX_AHEAD: u64 = MAX_OUTBOX as u64 + 1000;
/// How long a missing message holds back the later ones it precedes,
/// seconds: its sender is trying it again meanwhile; after this, the later
/// ones are shown and the missing one where it comes.
pub const GAP_WAIT: u64 = 10 * 60;
/// A kept receipt goes out again for copies of the texts it answers at most
/// once in this many seconds (a replayed envelope is not an amplifier).
pub const RESEND_GAP: u64 = 10;
/// Receipts remembered as just sent again, at most.
const MAX_RESENT: usize = 4096;

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

/// Someone who is not a contact wrote first: who they say they are (not
/// verified: their log is not known until they are added), and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The identity the first message names as its sender.
    pub id: IdentityId,
    /// When it first came (Unix seconds).
    pub first_seen: u64,
    /// When it last came (noted at most once per [`REQUEST_QUIET`]).
    pub last_seen: u64,
    /// How many times it was noted.
    pub count: u32,
}

/// Requests kept, at most; the one seen longest ago goes first.
pub const MAX_REQUESTS: usize = 64;
/// A request already noted is noted again at most this often (seconds):
/// a first message is sent again and again until it is answered.
pub const REQUEST_QUIET: u64 = 60 * 60;
/// New requests noted per hour, at most (more are refused unnoted).
pub const NEW_REQUESTS_PER_HOUR: usize = 16;

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
    /// The session the contact last wrote on.
    #[serde(default)]
    last_rx: Option<u32>,
    /// Up to which sent message the contact said it has read.
    #[serde(default)]
    their_read: u64,
    /// Every received message up to this number has been shown (a late
    /// one moves it back).
    #[serde(default)]
    shown: u64,
    /// Every message up to this number has been received (no gap): read
    /// receipts never say more.
    #[serde(default)]
    contiguous: u64,
    /// This installation's numbering of its texts to the contact (random,
    /// made with the first text).
    #[serde(default)]
    stream: u64,
    /// The contact's numberings seen, newest last, and where each starts
    /// in this side's numbering of what it received: `(stream, base)`.
    #[serde(default)]
    streams: Vec<(u64, u64)>,
}

/// The contact's numberings remembered per conversation.
const MAX_STREAMS: usize = 8;

impl ConvState {
    /// Where the contact's numbering `stream` starts in this side's
    /// numbering of received texts (a new one starts after all so far).
    fn base(&self, stream: u64) -> u64 {
        self.streams
            .iter()
            .find(|(s, _)| *s == stream)
            .map_or(self.max_received.max(self.released), |(_, b)| *b)
    }

    /// Remembers the contact's numbering `stream` (newest last, bounded).
    fn remember(&mut self, stream: u64, base: u64) {
        if let Some(i) = self.streams.iter().position(|(s, _)| *s == stream) {
            let e = self.streams.remove(i);
            self.streams.push(e);
            return;
        }
        if self.streams.len() >= MAX_STREAMS {
            self.streams.remove(0);
        }
        self.streams.push((stream, base));
    }

    /// A number of this side's numbering in the contact's newest one (what
    /// read receipts say).
    fn theirs(&self, local: u64) -> u64 {
        let base = self.streams.last().map_or(0, |(_, b)| *b);
        local.saturating_sub(base)
    }
}

struct PendingFirst {
    pending: Pending,
    /// The first message (a session message; its envelope's address is the
    /// prekey's address of the day it is sent).
    initial: Vec<u8>,
    /// The contact's prekey it is sealed to.
    prekey: [u8; 32],
    seq: u64,
    /// When it was made, Unix seconds.
    created: u64,
}

/// What one try of a message comes to.
enum Try {
    /// This envelope goes out.
    Send(Outgoing),
    /// It waits behind the first message, unanswered yet.
    Hold,
    /// Nothing can go out now; tried again later.
    Wait,
}

#[derive(Default)]
struct Conv {
    state: ConvState,
    /// Sessions by number.
    sessions: BTreeMap<u32, Session>,
    pending: Option<PendingFirst>,
}

impl Conv {
    /// The session this side sends on: the one the contact last wrote on
    /// (so that both sides settle on one after a crossed handshake), else
    /// the newest.
    fn send_session(&self) -> Option<u32> {
        self.state
            .last_rx
            .filter(|n| self.sessions.contains_key(n))
            .or_else(|| self.sessions.keys().next_back().copied())
    }
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
    /// Events of a change not written yet.
    staged: Vec<MessageEvent>,
    next_event: u64,
    /// Kept receipts sent again lately: when.
    resent: HashMap<Vec<u8>, u64>,
    /// When new requests were noted in the last hour.
    new_requests: VecDeque<u64>,
}

// Records of one contact are filed under its locator (a keyed hash of its
// id, `contact_book::locator`), so the store does not show who it is.
fn key_c(k: &[u8; 32], id: &IdentityId) -> Vec<u8> {
    [&b"C"[..], &locator(k, id)].concat()
}
fn key_s(k: &[u8; 32], id: &IdentityId, n: u32) -> Vec<u8> {
    [&b"S"[..], &locator(k, id), &n.to_be_bytes()].concat()
}
fn key_p(k: &[u8; 32], id: &IdentityId) -> Vec<u8> {
    [&b"P"[..], &locator(k, id)].concat()
}
/// The prefix of the messages with `id`: received (`Some(false)`), sent
/// (`Some(true)`) or both.
fn prefix_m(k: &[u8; 32], id: &IdentityId, outgoing: Option<bool>) -> Vec<u8> {
    let dir: &[u8] = match outgoing {
        None => b"",
        Some(true) => b"o",
        Some(false) => b"i",
    };
    [&b"M"[..], &locator(k, id), dir].concat()
}
fn key_m(k: &[u8; 32], id: &IdentityId, outgoing: bool, seq: u64) -> Vec<u8> {
    [prefix_m(k, id, Some(outgoing)), seq.to_be_bytes().to_vec()].concat()
}
fn key_q(k: &[u8; 32], id: &IdentityId, seq: u64) -> Vec<u8> {
    [&b"Q"[..], &locator(k, id), &seq.to_be_bytes()].concat()
}
fn key_x(k: &[u8; 32], id: &IdentityId, seq: u64) -> Vec<u8> {
    [&b"X"[..], &locator(k, id), &seq.to_be_bytes()].concat()
}
fn key_w(k: &[u8; 32], id: &IdentityId) -> Vec<u8> {
    [&b"W"[..], &locator(k, id)].concat()
}
/// The generation of `now`: [`MESSAGE_TTL`]-long spans of time. Records
/// kept to recognise copies (`E`, `R`, `A`) are filed under the generation
/// they were made in, looked for in it and the one before, and forgotten
/// after ([`Conversations::forget_kept`]): they live 30 to 60 days, as long
/// as a copy can come.
fn generation(now: u64) -> u32 {
    u32::try_from(now / MESSAGE_TTL).unwrap_or(u32::MAX)
}
fn key_kept(letter: u8, gen: u32, what: &[u8]) -> Vec<u8> {
    [&[letter][..], &gen.to_be_bytes(), what].concat()
}
fn key_e(gen: u32, message: &[u8]) -> Vec<u8> {
    key_kept(b'E', gen, &crate::mailbox::digest(message))
}
fn key_r(gen: u32, message: &[u8]) -> Vec<u8> {
    key_kept(b'R', gen, &crate::mailbox::digest(message))
}
fn key_a(gen: u32, address: &[u8; 32]) -> Vec<u8> {
    key_kept(b'A', gen, address)
}
/// Kept records forgotten per call of [`Conversations::forget_kept`].
pub const FORGET_PAGE: usize = 1024;

fn damaged(what: impl std::fmt::Display) -> ConversationError {
    ConversationError::Damaged(what.to_string())
}

fn backoff(tries: u32) -> u64 {
    RETRY_FIRST
        .saturating_mul(1u64 << tries.min(20))
        .min(RETRY_MAX)
}

/// Before schema 3, a contact's records were filed under its id in the
/// clear (`c`, `s`, `p`, `m`, `q`, `x` ‖ id ‖ …), and the kept records
/// (`e`, `r`, `a` ‖ digest) under no generation: they move under the
/// locator, or the current generation (the upper-case letters), in one
/// synced batch. Returns how many records moved.
pub fn migrate_layout(store: &Store, key: &[u8; 32], now: u64) -> Result<usize, ConversationError> {
    let mut ops = Vec::new();
    let gen = generation(now);
    for letter in [b'e', b'r', b'a'] {
        for (k, v) in store.scan(CF_MESSAGES, &[letter], usize::MAX)? {
            if k.len() != 33 {
                return Err(damaged("kept record key"));
            }
            let new_key = key_kept(letter.to_ascii_uppercase(), gen, &k[1..]);
            let plain = secrets::open(key, &k, &v)?;
            let plain = match (letter, plain.first()) {
                // A text's record names its receipt's: named anew.
                (b'e', Some(b'r')) if plain.len() == 33 => {
                    Zeroizing::new(key_kept(b'R', gen, &plain[1..]))
                }
                _ => plain,
            };
            ops.push(Op::Delete(CF_MESSAGES, k.clone()));
            ops.push(seal_put(key, &new_key, &plain)?);
        }
    }
    for letter in [b'c', b's', b'p', b'm', b'q', b'x'] {
        for (k, v) in store.scan(CF_MESSAGES, &[letter], usize::MAX)? {
            let id = k
                .get(1..33)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(IdentityId)
                .ok_or_else(|| damaged("key"))?;
            let new_key = [
                &[letter.to_ascii_uppercase()][..],
                &locator(key, &id),
                &k[33..],
            ]
            .concat();
            ops.push(Op::Delete(CF_MESSAGES, k.clone()));
            if letter == b'q' {
                ops.push(Op::Put(CF_MESSAGES, new_key, Vec::new()));
                continue;
            }
            let plain = secrets::open(key, &k, &v)?;
            let plain = match letter {
                b'c' => Zeroizing::new([&id.0[..], &plain].concat()),
                _ => plain,
            };
            ops.push(seal_put(key, &new_key, &plain)?);
        }
    }
    let moved = ops.len() / 2;
    if !ops.is_empty() {
        store.write(ops, true)?;
    }
    Ok(moved)
}

/// Deletes every record of the conversation with `id` (its sessions,
/// handshake, messages, outbox), in one synced batch; returns how many
/// messages went. The records that recognise copies go with their
/// generation: an answer kept for a first message stays, so that a late
/// copy of that message is recognised (and dropped, its conversation being
/// gone) rather than taken as new.
pub fn forget(store: &Store, key: &[u8; 32], id: &IdentityId) -> Result<usize, ConversationError> {
    let loc = locator(key, id);
    let mut ops = Vec::new();
    let mut messages = 0;
    for letter in [b'C', b'S', b'P', b'M', b'Q', b'X'] {
        let prefix = [&[letter][..], &loc].concat();
        for (k, _) in store.scan(CF_MESSAGES, &prefix, usize::MAX)? {
            messages += usize::from(letter == b'M');
            ops.push(Op::Delete(CF_MESSAGES, k));
        }
    }
    if !ops.is_empty() {
        store.write(ops, true)?;
    }
    Ok(messages)
}

/// [`forget`] under the contact book's key: a book in the clear (no
/// identity) has no conversations.
pub fn forget_in_book(
    store: &Store,
    book: &ContactKey,
    id: &IdentityId,
) -> Result<usize, ConversationError> {
    match book {
        ContactKey::Sealed(key) => forget(store, key, id),
        ContactKey::Clear => Ok(0),
    }
}

/// A put of `v` sealed under `key` for the store entry `k`.
fn seal_put(key: &[u8; 32], k: &[u8], v: &[u8]) -> Result<Op, ConversationError> {
    Ok(Op::Put(CF_MESSAGES, k.to_vec(), secrets::seal(key, k, v)?))
}

impl Conversations {
    /// Loads the conversations from the store (moving records of an older
    /// layout first). `own` is the own log's state (its prekeys), `hot` the
    /// current keys, `reach` this node's peer id as bytes, `now` the time.
    pub fn open(
        store: Arc<Store>,
        hot: HotKeys,
        own: &LogState,
        reach: Vec<u8>,
        now: u64,
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
            staged: Vec::new(),
            resent: HashMap::new(),
            new_requests: VecDeque::new(),
            // Event numbers go on increasing across restarts, so that a
            // client's cursor stays valid.
            next_event: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        migrate_layout(&c.store, &c.key, now)?;
        c.load()?;
        Ok(c)
    }

    /// Reads the conversations and the outbox from the store.
    fn load(&mut self) -> Result<(), ConversationError> {
        let mut by_locator = HashMap::new();
        for (k, v) in self.store.scan(CF_MESSAGES, b"C", usize::MAX)? {
            let plain = secrets::open(&self.key, &k, &v)?;
            if plain.len() < 32 {
                return Err(damaged("conversation record"));
            }
            let (id, json) = plain.split_at(32);
            let id = IdentityId(id.try_into().map_err(damaged)?);
            if k != key_c(&self.key, &id) {
                return Err(damaged("conversation filed under another contact"));
            }
            if contact_book::get(&self.store, &self.book(), &id)?.is_none() {
                // The contact was removed, and the node stopped before its
                // conversation went: it goes now.
                forget(&self.store, &self.key, &id)?;
                continue;
            }
            let state: ConvState = serde_json::from_slice(json).map_err(damaged)?;
            let mut conv = Conv {
                state,
                ..Conv::default()
            };
            by_locator.insert(locator(&self.key, &id), id);
            let prefix = [&b"S"[..], &locator(&self.key, &id)].concat();
            for (k, v) in self.store.scan(CF_MESSAGES, &prefix, usize::MAX)? {
                let n = k
                    .get(33..37)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_be_bytes)
                    .ok_or_else(|| damaged("session key"))?;
                let plain = secrets::open(&self.key, &k, &v)?;
                conv.sessions
                    .insert(n, Session::from_bytes(&plain).map_err(damaged)?);
            }
            if let Some(v) = self.store.get(CF_MESSAGES, &key_p(&self.key, &id))? {
                let plain = secrets::open(&self.key, &key_p(&self.key, &id), &v)?;
                conv.pending = Some(decode_pending(&plain)?);
            }
            self.convs.insert(id, conv);
        }
        for (k, _) in self.store.scan(CF_MESSAGES, b"Q", usize::MAX)? {
            let id = k
                .get(1..33)
                .and_then(|l| by_locator.get(l))
                .copied()
                .ok_or_else(|| damaged("a queued message without its conversation"))?;
            let seq = k
                .get(33..41)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| damaged("queue key"))?;
            if let Some(m) = self.message(&id, true, seq)? {
                self.outbox.insert((id, seq), m);
            }
        }
        Ok(())
    }

    /// Deletes the conversation with `id` ([`forget`]) and what memory
    /// holds of it; returns how many messages went.
    pub fn forget(&mut self, id: &IdentityId) -> Result<usize, ConversationError> {
        let n = forget(&self.store, &self.key, id)?;
        // Events kept for clients hold the texts: they go too.
        self.events.retain(|e| e.contact != *id);
        self.reload()?;
        Ok(n)
    }

    /// Forgets what is in memory and reads it again from the store: after
    /// a failed write, memory may be ahead of the store.
    pub fn reload(&mut self) -> Result<(), ConversationError> {
        self.staged.clear();
        self.convs.clear();
        self.outbox.clear();
        self.routes.clear();
        self.routes_epoch = None;
        self.load()
    }

    fn seal(&self, k: &[u8], v: &[u8]) -> Result<Op, ConversationError> {
        seal_put(&self.key, k, v)
    }

    fn put_message(&self, ops: &mut Vec<Op>, m: &Message) -> Result<(), ConversationError> {
        let json = Zeroizing::new(serde_json::to_vec(m).map_err(damaged)?);
        ops.push(self.seal(&key_m(&self.key, &m.contact, m.outgoing, m.seq), &json)?);
        Ok(())
    }

    /// A message as stored under `k` (sealed JSON): what `put_message` wrote.
    fn open_message(&self, k: &[u8], v: &[u8]) -> Result<Message, ConversationError> {
        let plain = secrets::open(&self.key, k, v)?;
        serde_json::from_slice(&plain).map_err(damaged)
    }

    fn put_conv(&self, ops: &mut Vec<Op>, id: &IdentityId) -> Result<(), ConversationError> {
        if let Some(conv) = self.convs.get(id) {
            let json = serde_json::to_vec(&conv.state).map_err(damaged)?;
            let plain = Zeroizing::new([&id.0[..], &json].concat());
            ops.push(self.seal(&key_c(&self.key, id), &plain)?);
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
            ops.push(self.seal(&key_s(&self.key, id, n), &s.to_bytes())?);
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
        let k = key_m(&self.key, id, outgoing, seq);
        match self.store.get(CF_MESSAGES, &k)? {
            Some(v) => Ok(Some(self.open_message(&k, &v)?)),
            None => Ok(None),
        }
    }

    /// Stages an event: it is published once what it tells of is written
    /// ([`Conversations::write`]).
    fn event(&mut self, kind: &'static str, m: &Message) {
        self.staged.push(MessageEvent {
            seq: 0,
            kind,
            contact: m.contact,
            message: m.seq,
            outgoing: m.outgoing,
            state: m.state,
            text: (kind == "received").then(|| m.text.clone()),
        });
    }

    /// Writes `ops` in one batch, then publishes the events staged with
    /// them (dropped if the write fails: the change did not happen).
    fn write(&mut self, ops: Vec<Op>, sync: bool) -> Result<(), ConversationError> {
        let staged = std::mem::take(&mut self.staged);
        if !ops.is_empty() {
            self.store.write(ops, sync)?;
        }
        for mut e in staged {
            self.next_event += 1;
            e.seq = self.next_event;
            if self.events.len() >= MAX_EVENTS {
                self.events.pop_front();
            }
            self.events.push_back(e);
        }
        Ok(())
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
        if contact_book::get(&self.store, &self.book(), to)?.is_none() {
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
        let fresh_stream =
            u64::from_be_bytes(secrets::random32()?[..8].try_into().expect("8 bytes"));
        let conv = self.convs.entry(*to).or_default();
        if conv.state.stream == 0 {
            conv.state.stream = fresh_stream.max(1);
        }
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
        ops.push(Op::Put(CF_MESSAGES, key_q(&self.key, to, seq), Vec::new()));
        self.staged.clear();
        self.event("state", &m);
        if let Err(e) = self.write(ops, true) {
            // Not stored: the number is not used.
            if let Some(c) = self.convs.get_mut(to) {
                c.state.next_seq -= 1;
            }
            return Err(e);
        }
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
        Ok(contact_book::get(&self.store, &self.book(), id)?
            .and_then(|c| c.bundle.log.verify().ok()))
    }

    /// The contact book, sealed under the same store key.
    fn book(&self) -> ContactKey {
        ContactKey::Sealed(self.key.clone())
    }

    /// The kept record `key` names in the generation of `now` or the one
    /// before: its store key and value.
    fn kept(
        &self,
        now: u64,
        key: impl Fn(u32) -> Vec<u8>,
    ) -> Result<Option<SealedEntry>, ConversationError> {
        let gen = generation(now);
        for g in [gen, gen.saturating_sub(1)] {
            let k = key(g);
            if let Some(v) = self.store.get(CF_MESSAGES, &k)? {
                return Ok(Some((k, v)));
            }
        }
        Ok(None)
    }

    /// Forgets up to [`FORGET_PAGE`] kept records older than the generation
    /// before `now`'s; returns how many. Their senders gave up after
    /// [`MESSAGE_TTL`]; a copy still kept at a mailbox may come later, and
    /// is then refused (its session moved on) with no receipt: harmless.
    pub fn forget_kept(&self, now: u64) -> Result<usize, ConversationError> {
        let oldest = generation(now).saturating_sub(1);
        let mut ops = Vec::new();
        for letter in [b'E', b'R', b'A'] {
            let end = key_kept(letter, oldest, &[]);
            for (k, _) in self
                .store
                .scan(CF_MESSAGES, &[letter], FORGET_PAGE - ops.len())?
            {
                if k >= end {
                    break;
                }
                ops.push(Op::Delete(CF_MESSAGES, k));
            }
            if ops.len() >= FORGET_PAGE {
                break;
            }
        }
        let n = ops.len();
        if n > 0 {
            self.store.write(ops, false)?;
        }
        Ok(n)
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
        self.staged.clear();
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
            .collect();
        // Messages sent and not acknowledged yet, per contact: at most
        // MAX_UNACKED are out at once, so that the contact's session never
        // has to skip more message keys than it keeps.
        let mut unacked: HashMap<IdentityId, usize> = HashMap::new();
        for ((id, _), m) in &self.outbox {
            if m.tries > 0 {
                *unacked.entry(*id).or_default() += 1;
            }
        }
        let mut out = Vec::new();
        let mut states: HashMap<IdentityId, Option<LogState>> = HashMap::new();
        let mut touched: Vec<(IdentityId, u32)> = Vec::new();
        for (id, seq) in due {
            if out.len() >= MAX_DUE {
                break;
            }
            let Some(mut m) = self.outbox.get(&(id, seq)).cloned() else {
                continue;
            };
            if now.saturating_sub(m.sent_at) > MESSAGE_TTL {
                m.state = State::Expired;
                self.put_message(&mut ops, &m)?;
                ops.push(Op::Delete(CF_MESSAGES, key_q(&self.key, &id, seq)));
                ops.push(Op::Delete(CF_MESSAGES, key_x(&self.key, &id, seq)));
                self.outbox.remove(&(id, seq));
                self.event("state", &m);
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(v) = states.entry(id) {
                v.insert(self.contact_state(&id)?);
            }
            let state = states.get(&id).and_then(|s| s.clone());
            let full = m.tries == 0 && unacked.get(&id).copied().unwrap_or(0) >= MAX_UNACKED;
            let made = match state {
                _ if full => Ok(Try::Hold),
                // Not a contact any more, or its log does not verify: wait.
                None => Ok(Try::Wait),
                Some(state) => self.try_message(&state, &m, now, &mut ops, &mut touched),
            };
            match made {
                Ok(Try::Send(o)) => {
                    if m.tries == 0 {
                        *unacked.entry(id).or_default() += 1;
                    }
                    out.push(o);
                }
                Ok(Try::Hold) => {
                    // Behind a first message still unanswered.
                    m.next_try = now + RETRY_FIRST;
                    self.outbox.insert((id, seq), m);
                    continue;
                }
                Ok(Try::Wait) => {}
                Err(e) => {
                    tracing::warn!(seq, "cannot prepare a message to a contact");
                    tracing::debug!(contact = %id, seq, "cannot prepare a message: {e}");
                }
            }
            m.tries += 1;
            m.next_try = now + backoff(m.tries);
            self.put_message(&mut ops, &m)?;
            self.outbox.insert((id, seq), m);
        }
        for (id, n) in touched {
            self.put_session(&mut ops, &id, n)?;
            self.put_conv(&mut ops, &id)?;
        }
        self.write(ops, true)?;
        Ok(out)
    }

    /// One try of the sent message `m` to a contact whose log state is
    /// `state`: on the session the contact last wrote on (its envelope made
    /// once per session and sent again as it is, so that tries do not use
    /// up message keys), or as a first message to the contact's prekey.
    fn try_message(
        &mut self,
        state: &LogState,
        m: &Message,
        now: u64,
        ops: &mut Vec<Op>,
        touched: &mut Vec<(IdentityId, u32)>,
    ) -> Result<Try, ConversationError> {
        let (id, seq) = (m.contact, m.seq);
        let direct = self.direct(&id);
        let mailboxes = state.mailboxes.clone();
        if direct.is_none() && mailboxes.is_empty() {
            return Ok(Try::Wait);
        }
        let text = Body::Text {
            stream: self.convs.get(&id).map_or(0, |c| c.state.stream),
            seq,
            sent_at: m.sent_at,
            text: m.text.clone(),
        };
        let outgoing = |envelope| {
            Try::Send(Outgoing {
                contact: id,
                envelope,
                seqs: vec![seq],
                direct: direct.clone(),
                mailboxes: mailboxes.clone(),
            })
        };
        // A first message left unanswered too long (its prekey may be gone)
        // gives way to a new one.
        let stale = self
            .convs
            .get(&id)
            .and_then(|c| c.pending.as_ref())
            .is_some_and(|p| {
                !self.outbox.contains_key(&(id, p.seq))
                    || now.saturating_sub(p.created) > PENDING_MAX_AGE
            });
        if stale {
            if let Some(p) = self.convs.get_mut(&id).and_then(|c| c.pending.take()) {
                self.routes.remove(&p.pending.answer_address());
                ops.push(Op::Delete(CF_MESSAGES, key_p(&self.key, &id)));
            }
        }
        let conv = self.convs.entry(id).or_default();
        if let Some(n) = conv.send_session() {
            let kx = key_x(&self.key, &id, seq);
            // The same message again, under today's address; made anew on
            // the 4th, 8th, 16th… try, in case the contact's session has
            // moved on from the one it was made on.
            let anew = m.tries >= 4 && m.tries.is_power_of_two();
            if let Some(v) = self.store.get(CF_MESSAGES, &kx)? {
                let plain = secrets::open(&self.key, &kx, &v)?;
                if plain.get(..4) == Some(&n.to_be_bytes()[..]) && !anew {
                    let session = &self.convs[&id].sessions[&n];
                    return Ok(outgoing(envelope(
                        &session.send_address(epoch(now)),
                        &plain[4..],
                    )));
                }
            }
            let payload = self.payload(text)?;
            let conv = self.convs.get_mut(&id).expect("present");
            let session = conv.sessions.get_mut(&n).expect("present");
            let message = match session.encrypt(&payload) {
                Ok(m) => m,
                Err(err) => {
                    // An exhausted session: the next try starts anew.
                    tracing::warn!("a session with a contact cannot send");
                    tracing::debug!(contact = %id, "session cannot send: {err}");
                    conv.sessions.remove(&n);
                    ops.push(Op::Delete(CF_MESSAGES, key_s(&self.key, &id, n)));
                    return Ok(Try::Wait);
                }
            };
            let env = envelope(&session.send_address(epoch(now)), &message);
            ops.push(self.seal(&kx, &[&n.to_be_bytes()[..], &message].concat())?);
            if !touched.contains(&(id, n)) {
                touched.push((id, n));
            }
            return Ok(outgoing(env));
        }
        if let Some(p) = &conv.pending {
            if p.seq != seq {
                return Ok(Try::Hold);
            }
            return Ok(outgoing(envelope(
                &prekey_address(&p.prekey, epoch(now)),
                &p.initial,
            )));
        }
        // A first message, sealed to the contact's newest prekey.
        let Some(&(pid, pkey, _)) = state
            .prekeys
            .iter()
            .filter(|p| p.2 > now)
            .max_by_key(|p| p.2)
        else {
            tracing::debug!(contact = %id, "the contact publishes no valid prekey yet");
            return Ok(Try::Wait);
        };
        let peer = PeerIdentity {
            id,
            messaging_key: state.current().messaging_key.0,
        };
        let payload = self.payload(text)?;
        let (pending, initial) = start(
            self.me,
            &self.hot.messaging.secret_bytes(),
            &peer,
            &PeerPrekey { id: pid, key: pkey },
            &payload,
        )
        .map_err(damaged)?;
        let env = envelope(&prekey_address(&pkey, epoch(now)), &initial);
        let rec = PendingFirst {
            pending,
            initial,
            prekey: pkey,
            seq,
            created: now,
        };
        ops.push(self.seal(&key_p(&self.key, &id), &encode_pending(&rec))?);
        self.routes
            .insert(rec.pending.answer_address(), Route::Answer(id));
        self.convs.entry(id).or_default().pending = Some(rec);
        Ok(outgoing(env))
    }

    /// Records what became of sent messages.
    pub fn sent(
        &mut self,
        contact: &IdentityId,
        seqs: &[u64],
        how: Sent,
    ) -> Result<(), ConversationError> {
        self.staged.clear();
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
        self.write(ops, false)?;
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
    pub fn collect_addresses(&self, now: u64, epochs: u64) -> Vec<[u8; 32]> {
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
        self.staged.clear();
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
            texts,
            requests,
            ..
        } = b;
        if let Err(e) = self.keep_requests(requests, &mut ops) {
            // The contacts' envelopes in the batch are taken all the same.
            tracing::warn!("requests from strangers were not kept: {e}");
        }
        for (id, n) in &touched {
            self.put_session(&mut ops, id, *n)?;
            self.put_conv(&mut ops, id)?;
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
                let read = self
                    .convs
                    .get(&id)
                    .map_or(0, |c| c.state.theirs(c.state.read_told));
                if let Some((o, n)) = self.on_session(
                    &id,
                    Body::Receipt {
                        delivered: chunk.to_vec(),
                        read_up_to: read,
                    },
                    now,
                    &mut ops,
                )? {
                    // Kept once (the session and the message), and named by
                    // each text it answers, to go out again if the text
                    // comes again.
                    let kr = key_r(generation(now), &o.envelope[32..]);
                    ops.push(self.seal(&kr, &[&n.to_be_bytes()[..], &o.envelope[32..]].concat())?);
                    for (_, _, ke) in texts
                        .iter()
                        .filter(|(c, seq, _)| *c == id && chunk.binary_search(seq).is_ok())
                    {
                        ops.push(self.seal(ke, &kr)?);
                    }
                    out.push(o);
                }
            }
            self.put_conv(&mut ops, &id)?;
        }
        self.write(ops, true)?;
        Ok((answers, out))
    }

    /// Encrypts `body` on the contact's sending session (its state into
    /// `ops`); none without a session.
    fn on_session(
        &mut self,
        id: &IdentityId,
        body: Body,
        now: u64,
        ops: &mut Vec<Op>,
    ) -> Result<Option<(Outgoing, u32)>, ConversationError> {
        let payload = self.payload(body)?;
        let direct = self.direct(id);
        let mailboxes = self
            .contact_state(id)?
            .map(|s| s.mailboxes)
            .unwrap_or_default();
        let Some(conv) = self.convs.get_mut(id) else {
            return Ok(None);
        };
        let Some(n) = conv.send_session() else {
            return Ok(None);
        };
        let session = conv.sessions.get_mut(&n).expect("present");
        let Ok(message) = session.encrypt(&payload) else {
            return Ok(None);
        };
        let address = session.send_address(epoch(now));
        self.put_session(ops, id, n)?;
        Ok(Some((
            Outgoing {
                contact: *id,
                envelope: envelope(&address, &message),
                seqs: Vec::new(),
                direct,
                mailboxes,
            },
            n,
        )))
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
                // A copy of a text already taken (whatever the session has
                // done since): nothing changes; the receipt made for it
                // goes out again, under today's address.
                if let Some((ke, v)) = self.kept(now, |g| key_e(g, message)).map_err(fatal)? {
                    let kr = secrets::open(&self.key, &ke, &v).map_err(fatal)?;
                    let kept = match self.store.get(CF_MESSAGES, &kr).map_err(fatal)? {
                        Some(v) => secrets::open(&self.key, &kr, &v).map_err(fatal)?,
                        None => zeroize::Zeroizing::new(Vec::new()),
                    };
                    let on = kept
                        .get(..4)
                        .and_then(|x| x.try_into().ok())
                        .map(u32::from_be_bytes);
                    let session = on.and_then(|on| self.convs.get(&id)?.sessions.get(&on));
                    let again = match self.resent.get(&kr[..]) {
                        Some(&t) => now >= t.saturating_add(RESEND_GAP),
                        None => true,
                    };
                    if let (Some(session), Some(receipt), true) = (session, kept.get(4..), again) {
                        let mailboxes = self
                            .contact_state(&id)
                            .map_err(fatal)?
                            .map(|s| s.mailboxes)
                            .unwrap_or_default();
                        b.out.push(Outgoing {
                            contact: id,
                            envelope: envelope(&session.send_address(epoch(now)), receipt),
                            seqs: Vec::new(),
                            direct: self.direct(&id),
                            mailboxes,
                        });
                        if self.resent.len() >= MAX_RESENT {
                            self.resent
                                .retain(|_, t| now < t.saturating_add(RESEND_GAP));
                            if self.resent.len() >= MAX_RESENT {
                                self.resent.clear();
                            }
                        }
                        self.resent.insert(kr.to_vec(), now);
                    }
                    return Ok(Received::Taken);
                }
                let session = self
                    .convs
                    .get(&id)
                    .and_then(|c| c.sessions.get(&n))
                    .ok_or(ReceiveFailure::Refused("session gone".into()))?;
                let mut next = session.clone();
                let content = match next.decrypt(message) {
                    Ok(c) => c,
                    // A copy of another message already taken (a receipt):
                    // nothing to do.
                    Err(cairn_messaging::SessionError::Replayed { .. }) => {
                        return Ok(Received::Taken)
                    }
                    Err(e) => return Err(refused(e)),
                };
                let payload = Payload::decode(&content).map_err(refused)?;
                self.acceptable(&id, &payload)?;
                if let Body::Text { seq, .. } = payload.body {
                    b.texts.push((id, seq, key_e(generation(now), message)));
                }
                let conv = self.convs.get_mut(&id).expect("present");
                conv.sessions.insert(n, next);
                conv.state.last_rx = Some(n);
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
                self.acceptable(&id, &payload)?;
                let conv = self.convs.get_mut(&id).expect("present");
                conv.pending = None;
                let n = conv.state.next_session;
                conv.state.next_session += 1;
                conv.state.last_rx = Some(n);
                conv.sessions.insert(n, session);
                self.trim_sessions(&id, &mut b.ops);
                self.routes.remove(&address);
                b.ops.push(Op::Delete(CF_MESSAGES, key_p(&self.key, &id)));
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
                    // Strangers cannot write first: the message is refused
                    // (their node sends it again until it is answered), and
                    // the user sees who tried (`requests`) and may add them.
                    if let Err(e) = self.note_request(&from, now, b) {
                        tracing::warn!(
                            "a request from someone who is not a contact was not noted: {e}"
                        );
                    }
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
                let seen = key_a(generation(now), &accepted.answer_address);
                if !b.accepted.insert(accepted.answer_address) {
                    // The same first message twice in one batch.
                    return Ok(Received::Taken);
                }
                let before = self
                    .kept(now, |g| key_a(g, &accepted.answer_address))
                    .map_err(fatal)?;
                if let Some((k, v)) = before {
                    // This first message was taken before: its answer
                    // again, unless the conversation it opened was since
                    // forgotten (the contact removed): then nothing.
                    if !self.convs.contains_key(&from) {
                        return Ok(Received::Taken);
                    }
                    let plain = secrets::open(&self.key, &k, &v).map_err(fatal)?;
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
                self.acceptable(&from, &payload)?;
                let conv = self.convs.entry(from).or_default();
                let n = conv.state.next_session;
                conv.state.next_session += 1;
                conv.state.last_rx = Some(n);
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

    /// Whether a decrypted payload may be taken: a text's number is not
    /// absurdly far ahead of what came before.
    fn acceptable(&self, id: &IdentityId, payload: &Payload) -> Result<(), ReceiveFailure> {
        if let Body::Text { stream, seq, .. } = payload.body {
            let (base, known) = self.convs.get(id).map_or((0, 0), |c| {
                (
                    c.state.base(stream),
                    c.state.released.max(c.state.max_received),
                )
            });
            if base.saturating_add(seq) > known.saturating_add(MAX_AHEAD) {
                return Err(refused(format!(
                    "message {seq} is more than {MAX_AHEAD} ahead of {known}"
                )));
            }
        }
        Ok(())
    }

    /// The first received message of `id` numbered `from` or more: its
    /// number and when it came.
    fn next_received(
        &self,
        id: &IdentityId,
        from: u64,
        fresh: &Fresh,
    ) -> Result<Option<(u64, u64)>, ConversationError> {
        let in_batch = fresh
            .values()
            .filter(|m| m.contact == *id && m.seq >= from)
            .map(|m| (m.seq, m.received_at.unwrap_or(0)))
            .min();
        let prefix = prefix_m(&self.key, id, Some(false));
        let stored = match self
            .store
            .scan_from(CF_MESSAGES, &key_m(&self.key, id, false, from), &prefix, 1)?
            .pop()
        {
            Some((k, v)) => {
                let m = self.open_message(&k, &v)?;
                Some((m.seq, m.received_at.unwrap_or(0)))
            }
            None => None,
        };
        Ok(match (in_batch, stored) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Releases the contact's received messages in order: each one whose
    /// predecessors have all come is announced as received and shown by
    /// [`Conversations::take_unread`]. A missing message holds the later
    /// ones back for [`GAP_WAIT`] after the first of them came; then they
    /// are shown, and it where it comes.
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
        let before = (st.released, st.gap_since, st.contiguous);
        while st.contiguous < st.max_received {
            let next = st.contiguous + 1;
            // Whether it came: the key is enough (the release below reads
            // the ones it shows).
            let k = key_m(&self.key, id, false, next);
            if fresh.contains_key(&(*id, next)) || self.store.get(CF_MESSAGES, &k)?.is_some() {
                st.contiguous = next;
            } else {
                break;
            }
        }
        let mut released = Vec::new();
        while st.released < st.max_received {
            let next = st.released + 1;
            let m = match fresh.get(&(*id, next)) {
                Some(m) => Some(m.clone()),
                None => self.message(id, false, next)?,
            };
            if let Some(m) = m {
                st.released = next;
                released.push(m);
                continue;
            }
            // A gap: how long have the messages after it waited?
            match self.next_received(id, next, fresh)? {
                Some((after, came)) if now >= came.saturating_add(GAP_WAIT) => {
                    st.released = after - 1;
                }
                Some((_, came)) => {
                    st.gap_since = came.max(1);
                    break;
                }
                None => {
                    st.max_received = st.released;
                    break;
                }
            }
        }
        if st.released >= st.max_received {
            st.gap_since = 0;
        }
        if (st.released, st.gap_since, st.contiguous) != before {
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
                    ops.push(Op::Delete(CF_MESSAGES, key_s(&self.key, id, n)));
                    self.routes
                        .retain(|_, r| !matches!(r, Route::Session(i, m) if i == id && *m == n));
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
            Body::Text {
                stream,
                seq: theirs,
                sent_at,
                text,
            } => {
                // Receipts name the sender's numbers; this side keeps its
                // own, in which each of the sender's numberings follows the
                // one before.
                b.delivered.entry(id).or_default().push(theirs);
                let conv = self.convs.entry(id).or_default();
                let base = conv.state.base(stream);
                conv.state.remember(stream, base);
                let seq = base.saturating_add(theirs);
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
                    conv.state.shown = conv.state.shown.min(seq - 1);
                    self.event("received", &m);
                }
                b.fresh.insert((id, seq), m);
            }
            Body::Receipt {
                delivered: seqs,
                read_up_to,
            } => {
                let their_read = self.convs.get(&id).map_or(0, |c| c.state.their_read);
                let mut changed = Vec::new();
                for seq in seqs {
                    if let Some(mut m) = self.outbox.remove(&(id, seq)) {
                        // Said read before it was said stored: read.
                        m.state = if seq <= their_read.max(read_up_to) {
                            State::Read
                        } else {
                            State::Delivered
                        };
                        b.ops
                            .push(Op::Delete(CF_MESSAGES, key_q(&self.key, &id, seq)));
                        b.ops
                            .push(Op::Delete(CF_MESSAGES, key_x(&self.key, &id, seq)));
                        changed.push(m);
                    }
                }
                if read_up_to > their_read {
                    // Delivered messages up to `read_up_to` are read now; one
                    // not yet delivered stays in the outbox (it is tried
                    // until its own receipt comes).
                    let prefix = prefix_m(&self.key, &id, Some(true));
                    let start = key_m(&self.key, &id, true, their_read + 1);
                    for (k, v) in self
                        .store
                        .scan_from(CF_MESSAGES, &start, &prefix, usize::MAX)
                        .map_err(fatal)?
                    {
                        let mut m = self.open_message(&k, &v).map_err(fatal)?;
                        if m.seq > read_up_to {
                            break;
                        }
                        if changed.iter().any(|c| c.seq == m.seq)
                            || self.outbox.contains_key(&(id, m.seq))
                        {
                            continue;
                        }
                        if m.state == State::Delivered {
                            m.state = State::Read;
                            changed.push(m);
                        }
                    }
                    if let Some(c) = self.convs.get_mut(&id) {
                        c.state.their_read = read_up_to;
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
            Some(id) => prefix_m(&self.key, id, None),
            None => b"M".to_vec(),
        };
        let mut out = Vec::new();
        for (k, v) in self.store.scan(CF_MESSAGES, &prefix, usize::MAX)? {
            out.push(self.open_message(&k, &v)?);
        }
        out.sort_by_key(|m| (m.contact, m.sent_at, m.seq, !m.outgoing));
        let skip = out.len().saturating_sub(limit);
        Ok(out.split_off(skip))
    }

    /// Received messages not yet read, oldest first per contact: those
    /// shown in order (see [`GAP_WAIT`]). Nothing changes: once the user
    /// has them, [`Conversations::mark_read`] marks them read.
    pub fn unread(&self) -> Result<Vec<Message>, ConversationError> {
        let mut unread = Vec::new();
        for (id, conv) in &self.convs {
            let (from, to) = (conv.state.shown + 1, conv.state.released);
            if from > to {
                continue;
            }
            let prefix = prefix_m(&self.key, id, Some(false));
            for (k, v) in self.store.scan_from(
                CF_MESSAGES,
                &key_m(&self.key, id, false, from),
                &prefix,
                usize::MAX,
            )? {
                let m = self.open_message(&k, &v)?;
                if m.seq > to {
                    break;
                }
                if m.state == State::Received {
                    unread.push(m);
                }
            }
        }
        Ok(unread)
    }

    /// Marks read the messages named, per contact by number, that have come
    /// and are shown in order (others are left as they are), in one synced
    /// write, and returns the read receipts to send. What is shown moves
    /// over every message read with no unread one before it; a receipt
    /// never says more than that, nor past a gap.
    pub fn mark_read(
        &mut self,
        marks: &[(IdentityId, Vec<u64>)],
        now: u64,
    ) -> Result<Vec<Outgoing>, ConversationError> {
        let mut ops = Vec::new();
        let mut out = Vec::new();
        let mut changed: Vec<IdentityId> = Vec::new();
        for (id, seqs) in marks {
            let Some(st) = self.convs.get(id).map(|c| c.state.clone()) else {
                continue;
            };
            let mut read_now = std::collections::BTreeSet::new();
            for &seq in seqs.iter().filter(|s| **s > 0 && **s <= st.released) {
                let k = key_m(&self.key, id, false, seq);
                let Some(v) = self.store.get(CF_MESSAGES, &k)? else {
                    continue;
                };
                let mut m = self.open_message(&k, &v)?;
                if m.state == State::Received && read_now.insert(seq) {
                    m.state = State::Read;
                    self.put_message(&mut ops, &m)?;
                }
            }
            // Shown up to the first message still unread (or everything
            // released, when none is).
            let mut shown = st.released;
            let prefix = prefix_m(&self.key, id, Some(false));
            for (k, v) in self.store.scan_from(
                CF_MESSAGES,
                &key_m(&self.key, id, false, st.shown + 1),
                &prefix,
                usize::MAX,
            )? {
                let m = self.open_message(&k, &v)?;
                if m.seq > st.released {
                    break;
                }
                if m.state == State::Received && !read_now.contains(&m.seq) {
                    shown = m.seq - 1;
                    break;
                }
            }
            let shown = shown.max(st.shown);
            let receipt = shown.min(st.contiguous);
            if shown == st.shown && receipt <= st.read_told {
                continue;
            }
            if let Some(c) = self.convs.get_mut(id) {
                c.state.shown = shown;
                c.state.read_told = c.state.read_told.max(receipt);
            }
            changed.push(*id);
            if receipt > st.read_told {
                if let Some((o, _)) = self.on_session(
                    id,
                    Body::Receipt {
                        delivered: Vec::new(),
                        read_up_to: st.theirs(receipt),
                    },
                    now,
                    &mut ops,
                )? {
                    out.push(o);
                }
            }
        }
        for id in &changed {
            self.put_conv(&mut ops, id)?;
        }
        if !ops.is_empty() {
            self.write(ops, true)?;
        }
        Ok(out)
    }

    /// [`Conversations::unread`], then everything shown marked read: the
    /// messages and the read receipts to send.
    pub fn take_unread(
        &mut self,
        now: u64,
    ) -> Result<(Vec<Message>, Vec<Outgoing>), ConversationError> {
        let unread = self.unread()?;
        let marks: Vec<(IdentityId, Vec<u64>)> = self
            .convs
            .keys()
            .map(|id| {
                let seqs = unread.iter().filter(|m| m.contact == *id).map(|m| m.seq);
                (*id, seqs.collect())
            })
            .collect();
        let out = self.mark_read(&marks, now)?;
        Ok((unread, out))
    }

    /// Notes in `b` that `from`, not a contact, wrote first: at most once
    /// per [`REQUEST_QUIET`] each, and at most [`NEW_REQUESTS_PER_HOUR`]
    /// new ones an hour (the ids are claims, and anyone may make up many).
    /// [`Conversations::keep_requests`] writes them, keeping the newest
    /// [`MAX_REQUESTS`].
    fn note_request(
        &mut self,
        from: &IdentityId,
        now: u64,
        b: &mut Batch,
    ) -> Result<(), ConversationError> {
        if b.requests.contains_key(from) {
            return Ok(());
        }
        // A contact whose log does not verify is not a stranger.
        if contact_book::get(&self.store, &self.book(), from)?.is_some() {
            return Ok(());
        }
        let k = key_w(&self.key, from);
        let known: Option<Request> = match self.store.get(CF_MESSAGES, &k)? {
            Some(v) => {
                Some(serde_json::from_slice(&secrets::open(&self.key, &k, &v)?).map_err(damaged)?)
            }
            None => None,
        };
        let req = match known {
            Some(r) if now < r.last_seen.saturating_add(REQUEST_QUIET) => return Ok(()),
            Some(r) => Request {
                last_seen: now,
                count: r.count.saturating_add(1),
                ..r
            },
            None => {
                self.new_requests
                    .retain(|t| now < t.saturating_add(60 * 60));
                if self.new_requests.len() >= NEW_REQUESTS_PER_HOUR {
                    return Ok(());
                }
                self.new_requests.push_back(now);
                Request {
                    id: *from,
                    first_seen: now,
                    last_seen: now,
                    count: 1,
                }
            }
        };
        b.requests.insert(*from, req);
        Ok(())
    }

    /// Writes the requests noted in a batch (into `ops`), keeping the
    /// [`MAX_REQUESTS`] seen last of them and those stored (the batch's
    /// first on a tie), and stages an event for each new one kept.
    fn keep_requests(
        &mut self,
        noted: BTreeMap<IdentityId, Request>,
        ops: &mut Vec<Op>,
    ) -> Result<(), ConversationError> {
        if noted.is_empty() {
            return Ok(());
        }
        let mut all: Vec<(Vec<u8>, Request, bool)> = noted
            .into_values()
            .map(|r| (key_w(&self.key, &r.id), r, true))
            .collect();
        let fresh: std::collections::HashSet<IdentityId> =
            all.iter().map(|(_, r, _)| r.id).collect();
        all.extend(
            self.stored_requests()?
                .into_iter()
                .filter(|(_, r)| !fresh.contains(&r.id))
                .map(|(k, r)| (k, r, false)),
        );
        // Stable: on a tie, the batch's (first in the list) stay.
        all.sort_by_key(|(_, r, _)| std::cmp::Reverse(r.last_seen));
        for (i, (k, r, noted)) in all.into_iter().enumerate() {
            if i >= MAX_REQUESTS {
                if !noted {
                    ops.push(Op::Delete(CF_MESSAGES, k));
                }
            } else if noted {
                if r.count == 1 {
                    self.staged.push(MessageEvent {
                        seq: 0,
                        kind: "request",
                        contact: r.id,
                        message: 0,
                        outgoing: false,
                        state: State::Received,
                        text: None,
                    });
                }
                let json = serde_json::to_vec(&r).map_err(damaged)?;
                ops.push(self.seal(&k, &json)?);
            }
        }
        Ok(())
    }

    fn stored_requests(&self) -> Result<Vec<(Vec<u8>, Request)>, ConversationError> {
        let mut out = Vec::new();
        for (k, v) in self.store.scan(CF_MESSAGES, b"W", usize::MAX)? {
            let r: Request =
                serde_json::from_slice(&secrets::open(&self.key, &k, &v)?).map_err(damaged)?;
            out.push((k, r));
        }
        Ok(out)
    }

    /// Who wrote first without being a contact, the latest first. Those
    /// added as contacts since are forgotten here (their next try is taken).
    pub fn requests(&mut self) -> Result<Vec<Request>, ConversationError> {
        let mut out = Vec::new();
        let mut ops = Vec::new();
        for (k, r) in self.stored_requests()? {
            if contact_book::get(&self.store, &self.book(), &r.id)?.is_some() {
                ops.push(Op::Delete(CF_MESSAGES, k));
            } else {
                out.push(r);
            }
        }
        if !ops.is_empty() {
            self.store.write(ops, true)?;
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.last_seen));
        Ok(out)
    }

    /// Forgets the request of `id`, if there is one.
    pub fn dismiss(&mut self, id: &IdentityId) -> Result<(), ConversationError> {
        let k = key_w(&self.key, id);
        self.store.write(vec![Op::Delete(CF_MESSAGES, k)], true)?;
        Ok(())
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
    /// First messages accepted in this batch (their answer addresses).
    accepted: std::collections::HashSet<[u8; 32]>,
    /// Texts taken on a session: contact, number, and the key of the
    /// record that keeps the receipt made for them.
    texts: Vec<(IdentityId, u64, Vec<u8>)>,
    /// Requests noted (someone who is not a contact wrote first).
    requests: BTreeMap<IdentityId, Request>,
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
    out.extend_from_slice(&p.created.to_be_bytes());
    out.extend_from_slice(&p.seq.to_be_bytes());
    out.extend_from_slice(&p.prekey);
    out.extend_from_slice(&(pending.len() as u32).to_be_bytes());
    out.extend_from_slice(&pending);
    out.extend_from_slice(&p.initial);
    out
}

fn decode_pending(b: &[u8]) -> Result<PendingFirst, ConversationError> {
    let u64_at = |at: usize| {
        b.get(at..at + 8)
            .and_then(|x| x.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| damaged("pending"))
    };
    let (created, seq) = (u64_at(0)?, u64_at(8)?);
    let prekey: [u8; 32] = b
        .get(16..48)
        .and_then(|x| x.try_into().ok())
        .ok_or_else(|| damaged("pending"))?;
    let len = b
        .get(48..52)
        .and_then(|x| x.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or_else(|| damaged("pending"))? as usize;
    let pending = b.get(52..52 + len).ok_or_else(|| damaged("pending"))?;
    Ok(PendingFirst {
        pending: Pending::from_bytes(pending).map_err(damaged)?,
        initial: b[52 + len..].to_vec(),
        prekey,
        seq,
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_chain_anchor::{Bundle, ChainNetwork, ChainParams};
    use cairn_wallet::kel::{establishment_event, KeyEventLog};
    use cairn_wallet::{MasterKey, SeedPhrase};

    use crate::contact_book::ContactRecord;
    use crate::identity::OwnIdentity;

    const NOW: u64 = 1_800_000_000;

    struct Side {
        _dir: tempfile::TempDir,
        store: Arc<Store>,
        own: OwnIdentity,
        hot: HotKeys,
        words: SeedPhrase,
    }

    fn side() -> Side {
        side_from(&SeedPhrase::generate(12).unwrap())
    }

    /// A side from `words` on a new machine (a new store).
    fn side_from(words: &SeedPhrase) -> Side {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let master = MasterKey::new(&words.to_seed(""));
        let log = KeyEventLog::new(vec![establishment_event(&master, 0, None).unwrap()]);
        let state = log.verify().unwrap();
        store.set_own_identity(&state.id, &log).unwrap();
        let hot = HotKeys::derive(&master, 0).unwrap();
        let own = crate::prekeys::refresh(&store, &OwnIdentity { log, state }, &hot, NOW)
            .unwrap()
            .own;
        // A mailbox node named in the log: somewhere to send to.
        let own =
            crate::prekeys::set_mailboxes(&store, &own, &hot, vec![vec![9; 38]], NOW).unwrap();
        Side {
            _dir: dir,
            store,
            own,
            hot,
            words: SeedPhrase::parse(&words.phrase()).unwrap(),
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
        let book = ContactKey::of(&a.hot);
        contact_book::put(
            &a.store,
            &book,
            ChainNetwork::Regtest,
            &b.own.state.id,
            &bundle,
            &record,
        )
        .unwrap();
    }

    fn convs(s: &Side, reach: &[u8]) -> Conversations {
        let hot = HotKeys::decode(&s.hot.encode()).unwrap();
        Conversations::open(s.store.clone(), hot, &s.own.state, reach.to_vec(), NOW).unwrap()
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
        // One event, published once the message is written.
        let events = bob.events_after(0, 10);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].kind, events[0].message), ("received", 1));
        assert_eq!(events[0].text.as_deref(), Some("hello Bob"));
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
        let before = everything(&b);
        let (r, again) = bob.receive(&envelopes(&out), NOW + 1).unwrap();
        assert_eq!(r, [Received::Taken]);
        assert_eq!(
            everything(&b),
            before,
            "a replayed envelope changes nothing"
        );
        assert_eq!(
            envelopes(&again),
            envelopes(&back),
            "its receipt goes again"
        );
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
    fn the_store_files_conversations_under_locators_and_moves_clear_ids() {
        let (a, b, mut alice, mut bob) = pair();
        let (alice_id, bob_id) = (a.own.state.id, b.own.state.id);
        alice.send(&bob_id, "one more", NOW + 1).unwrap();
        let out = alice.due(NOW + 1).unwrap();
        let (_, receipt) = bob.receive(&envelopes(&out), NOW + 1).unwrap();
        // Neither the contact's id nor a text shows in either store.
        for (s, other) in [(&a, &bob_id), (&b, &alice_id)] {
            for (k, v) in everything(s) {
                for hay in [&k, &v] {
                    assert!(!hay.windows(32).any(|w| w == other.0));
                    assert!(!hay.windows(8).any(|w| w == b"one more"));
                }
            }
        }
        let before = (alice.history(None, usize::MAX).unwrap(), alice.outbox_len());
        let bob_before = bob.history(None, usize::MAX).unwrap();
        drop((alice, bob));
        // The layout before schema 3: a contact's records filed under its
        // id in the clear, kept records under no generation, with
        // lower-case letters.
        for (s, other) in [(&a, &bob_id), (&b, &alice_id)] {
            let key = s.hot.store_key();
            let mut ops = Vec::new();
            for (k, v) in everything(s) {
                let old = match k[0] {
                    b'C' | b'S' | b'P' | b'M' | b'Q' | b'X' => {
                        assert_eq!(&k[1..33], &locator(&key, other)[..]);
                        [&[k[0].to_ascii_lowercase()][..], &other.0, &k[33..]].concat()
                    }
                    _ => [&[k[0].to_ascii_lowercase()][..], &k[5..]].concat(),
                };
                ops.push(Op::Delete(CF_MESSAGES, k.clone()));
                if k[0] == b'Q' {
                    ops.push(Op::Put(CF_MESSAGES, old, Vec::new()));
                    continue;
                }
                let plain = secrets::open(&key, &k, &v).unwrap();
                let plain = match k[0] {
                    b'C' => plain[32..].to_vec(),
                    b'E' => [&b"r"[..], &plain[5..]].concat(),
                    _ => plain.to_vec(),
                };
                let sealed = secrets::seal(&key, &old, &plain).unwrap();
                ops.push(Op::Put(CF_MESSAGES, old, sealed));
            }
            s.store.write(ops, true).unwrap();
            assert!(everything(s).iter().any(|(k, _)| k[1..33] == other.0));
        }
        // Opened, the conversations are what they were, and the ids are gone.
        let alice = convs(&a, b"alice-node");
        let mut bob = convs(&b, b"bob-node");
        assert_eq!(
            (alice.history(None, usize::MAX).unwrap(), alice.outbox_len()),
            before
        );
        assert_eq!(bob.history(None, usize::MAX).unwrap(), bob_before);
        for (s, other) in [(&a, &bob_id), (&b, &alice_id)] {
            assert!(everything(s)
                .iter()
                .all(|(k, _)| !k.windows(32).any(|w| w == other.0)));
        }
        // Copies of Alice's texts are still recognised: their receipts again.
        let kept = everything(&b);
        let (r, again) = bob.receive(&envelopes(&out), NOW + 2).unwrap();
        assert!(r.iter().all(|r| *r == Received::Taken));
        assert_eq!(everything(&b), kept);
        let messages = |o: &[Outgoing]| -> Vec<Vec<u8>> {
            o.iter().map(|o| o.envelope[32..].to_vec()).collect()
        };
        assert_eq!(messages(&again), messages(&receipt));
    }

    #[test]
    fn records_that_recognise_copies_are_forgotten_two_generations_on() {
        let (_a, b, mut alice, mut bob) = pair();
        let out = alice.due(NOW + 1).unwrap();
        bob.receive(&envelopes(&out), NOW + 1).unwrap();
        let kept = |s: &Side| {
            everything(s)
                .iter()
                .filter(|(k, _)| b"ERA".contains(&k[0]))
                .count()
        };
        assert!(
            kept(&b) >= 3,
            "a text's, its receipt's and the first message's"
        );
        // In the next generation they are still looked for: a copy gets its
        // receipt again, and nothing is forgotten.
        let next = (u64::from(generation(NOW)) + 1) * MESSAGE_TTL + 10;
        assert_eq!(bob.forget_kept(next).unwrap(), 0);
        let before = everything(&b);
        let (r, again) = bob.receive(&envelopes(&out), next).unwrap();
        assert_eq!(r, [Received::Taken]);
        assert_eq!(again.len(), 1);
        assert_eq!(everything(&b), before);
        // Replayed at once, the copy gets no receipt: not an amplifier.
        let (_, none) = bob.receive(&envelopes(&out), next + 1).unwrap();
        assert!(none.is_empty());
        let (_, later) = bob.receive(&envelopes(&out), next + RESEND_GAP).unwrap();
        assert_eq!(envelopes(&later)[0][32..], envelopes(&again)[0][32..]);
        // A generation later they are forgotten, a page at a time.
        let after = next + MESSAGE_TTL;
        let n = kept(&b);
        assert_eq!(bob.forget_kept(after).unwrap(), n);
        assert_eq!(kept(&b), 0);
        assert_eq!(bob.forget_kept(after).unwrap(), 0);
    }

    #[test]
    fn unread_messages_stay_unread_until_marked_and_receipts_follow_the_marks() {
        let (a, b, mut alice, mut bob) = pair();
        let (alice_id, bob_id) = (a.own.state.id, b.own.state.id);
        let out = alice.due(NOW + 1).unwrap();
        let (_, back) = bob.receive(&envelopes(&out), NOW + 1).unwrap();
        alice.receive(&envelopes(&back), NOW + 1).unwrap();
        // Looking changes nothing, however often.
        let before = everything(&b);
        let seqs =
            |c: &Conversations| -> Vec<u64> { c.unread().unwrap().iter().map(|m| m.seq).collect() };
        assert_eq!(seqs(&bob), [1, 2]);
        assert_eq!(seqs(&bob), [1, 2]);
        assert_eq!(everything(&b), before);
        // Message 1 marked: that one is read, and the receipt says so.
        let receipts = bob.mark_read(&[(alice_id, vec![1])], NOW + 2).unwrap();
        assert_eq!(receipts.len(), 1);
        alice.receive(&envelopes(&receipts), NOW + 2).unwrap();
        let state = |seq| alice.message(&bob_id, true, seq).unwrap().unwrap().state;
        assert_eq!((state(1), state(2)), (State::Read, State::Delivered));
        assert_eq!(seqs(&bob), [2]);
        // A number that has not come is ignored.
        let receipts = bob.mark_read(&[(alice_id, vec![2, 99])], NOW + 3).unwrap();
        alice.receive(&envelopes(&receipts), NOW + 3).unwrap();
        let state = |seq| alice.message(&bob_id, true, seq).unwrap().unwrap().state;
        assert_eq!(state(2), State::Read);
        assert!(seqs(&bob).is_empty());
        assert!(bob
            .mark_read(&[(alice_id, vec![2])], NOW + 4)
            .unwrap()
            .is_empty());
        // Read stays read after a restart.
        drop(bob);
        assert!(seqs(&convs(&b, b"bob-node")).is_empty());
    }

    #[test]
    fn a_forgotten_conversation_leaves_nothing_and_its_envelopes_are_not_taken() {
        let (a, b, mut alice, mut bob) = pair();
        let (alice_id, bob_id) = (a.own.state.id, b.own.state.id);
        let out = alice.due(NOW + 1).unwrap();
        bob.receive(&envelopes(&out), NOW + 1).unwrap();
        alice.send(&bob_id, "after", NOW + 2).unwrap();
        let later = alice.due(NOW + 2).unwrap();
        assert_eq!(bob.forget(&alice_id).unwrap(), 2);
        let loc = locator(&b.hot.store_key(), &alice_id);
        assert!(everything(&b)
            .iter()
            .all(|(k, _)| !k.windows(32).any(|w| w == loc)));
        assert!(bob.history(None, usize::MAX).unwrap().is_empty());
        assert!(bob.unread().unwrap().is_empty());
        // Its sessions are gone: what Alice sends is not taken.
        let (r, back) = bob.receive(&envelopes(&later), NOW + 2).unwrap();
        assert!(r.iter().all(|r| *r != Received::Taken), "{r:?}");
        assert!(back.is_empty());
        // Reopened, nothing comes back.
        drop(bob);
        assert!(convs(&b, b"bob-node")
            .history(None, usize::MAX)
            .unwrap()
            .is_empty());
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
        let (r, _) = bob.receive(&[good], NOW + 1).unwrap();
        assert_eq!(r, [Received::Taken]);
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
        let (r, back) = bob.receive(&envelopes(&out), NOW).unwrap();
        assert_eq!(r, [Received::Refused]);
        assert!(back.is_empty());
        // Nothing of the message is kept; Bob sees that Alice wrote first.
        assert!(bob.history(None, usize::MAX).unwrap().is_empty());
        let alice_id = a.own.state.id;
        let seen = bob.requests().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].id, seen[0].count), (alice_id, 1));
        assert!(bob.events_after(0, 10).iter().any(|e| e.kind == "request"));
        // Her tries again within the hour change nothing.
        let before = everything(&b);
        let again = alice.due(NOW + 60).unwrap();
        assert_eq!(
            bob.receive(&envelopes(&again), NOW + 60).unwrap().0,
            [Received::Refused]
        );
        assert_eq!(everything(&b), before);
        // Bob adds her: her next try is taken, and the request is gone.
        knows(&b, &a);
        let next = alice.due(NOW + 3600).unwrap();
        let (r, back) = bob.receive(&envelopes(&next), NOW + 3600).unwrap();
        assert_eq!(r, [Received::Taken]);
        assert!(!back.is_empty());
        assert!(bob.requests().unwrap().is_empty());
        assert_eq!(texts(&bob, &alice_id), [(1, "hi".to_string())]);
    }

    #[test]
    fn a_late_copy_of_a_forgotten_first_message_is_dropped() {
        let (a, b) = (side(), side());
        knows(&a, &b);
        knows(&b, &a);
        let mut alice = convs(&a, b"alice-node");
        let mut bob = convs(&b, b"bob-node");
        alice.send(&b.own.state.id, "hello", NOW).unwrap();
        let first = envelopes(&alice.due(NOW).unwrap());
        let (r, back) = bob.receive(&first, NOW).unwrap();
        assert_eq!((r, back.len()), (vec![Received::Taken], 2));
        bob.forget(&a.own.state.id).unwrap();
        // Bob re-adds Alice at once; her first message comes again late.
        let before = everything(&b);
        let (r, back) = bob.receive(&first, NOW + 60).unwrap();
        assert_eq!(r, [Received::Taken]);
        assert!(back.is_empty(), "no answer for a session that is gone");
        assert_eq!(everything(&b), before);
        assert!(bob.history(None, usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn requests_are_bounded_however_many_strangers_write() {
        let b = side();
        let mut bob = convs(&b, b"bob-node");
        let mut first = Vec::new();
        for _ in 0..NEW_REQUESTS_PER_HOUR + 2 {
            let s = side();
            knows(&s, &b);
            let mut c = convs(&s, b"stranger-node");
            c.send(&b.own.state.id, "hello", NOW).unwrap();
            first.extend(envelopes(&c.due(NOW).unwrap()));
        }
        // All in one batch: at most so many new requests an hour.
        let (r, _) = bob.receive(&first, NOW).unwrap();
        assert!(r.iter().all(|r| *r == Received::Refused));
        assert_eq!(bob.requests().unwrap().len(), NEW_REQUESTS_PER_HOUR);
        let events = bob.events_after(0, 100);
        assert_eq!(events.len(), NEW_REQUESTS_PER_HOUR);
        // An hour on, the rest are noted too.
        bob.receive(&first, NOW + 3600).unwrap();
        assert_eq!(bob.requests().unwrap().len(), NEW_REQUESTS_PER_HOUR + 2);
        const { assert!(NEW_REQUESTS_PER_HOUR + 2 <= MAX_REQUESTS) };
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

    #[test]
    fn a_try_again_sends_the_same_envelope_and_its_copy_is_acknowledged() {
        let (_a, b, mut alice, mut bob) = pair();
        let bob_id = b.own.state.id;
        // Message 2 first, acknowledged.
        let out = alice.due(NOW + 1).unwrap();
        let (_, back) = bob.receive(&envelopes(&out), NOW + 1).unwrap();
        alice.receive(&envelopes(&back), NOW + 1).unwrap();
        alice.send(&bob_id, "once", NOW + 1).unwrap();
        let first = alice.due(NOW + 1).unwrap();
        // No receipt came: the next try is the same bytes (no key used up).
        let again = alice.due(NOW + 1 + RETRY_MAX).unwrap();
        assert_eq!(envelopes(&again), envelopes(&first));
        let (r, back) = bob.receive(&envelopes(&first), NOW + 2).unwrap();
        assert_eq!(r, [Received::Taken]);
        assert_eq!(back.len(), 1);
        // The copy is taken again and acknowledged again (the first receipt
        // may be lost), and stored once.
        let (r, back2) = bob.receive(&envelopes(&again), NOW + 3).unwrap();
        assert_eq!(r, [Received::Taken]);
        assert_eq!(back2.len(), 1);
        alice.receive(&envelopes(&back2), NOW + 3).unwrap();
        assert_eq!(alice.outbox_len(), 0);
        assert_eq!(texts(&bob, &_a.own.state.id).len(), 3);
    }

    #[test]
    fn received_messages_are_shown_in_order_and_a_gap_waits_only_so_long() {
        let (a, b, mut alice, mut bob) = pair();
        let (alice_id, bob_id) = (a.own.state.id, b.own.state.id);
        bob.take_unread(NOW).unwrap();
        // Alice's messages 3, 4 and 5 (2 went with the session's start).
        let out = alice.due(NOW + 1).unwrap();
        let (_, back) = bob.receive(&envelopes(&out), NOW + 1).unwrap();
        alice.receive(&envelopes(&back), NOW + 1).unwrap();
        bob.take_unread(NOW + 1).unwrap();
        assert_eq!(alice.outbox_len(), 0);
        for t in ["three", "four", "five"] {
            alice.send(&bob_id, t, NOW + 2).unwrap();
        }
        let out = envelopes(&alice.due(NOW + 2).unwrap());
        assert_eq!(out.len(), 3);
        // Five comes first: it waits for three and four.
        let (_, receipts) = bob.receive(&out[2..], NOW + 3).unwrap();
        assert!(bob.take_unread(NOW + 3).unwrap().0.is_empty());
        // Four comes: still waiting for three.
        let (_, receipts4) = bob.receive(&out[1..2], NOW + 4).unwrap();
        assert!(bob.take_unread(NOW + 4).unwrap().0.is_empty());
        // Three never comes; after GAP_WAIT the rest is shown.
        // (timed from when four, the next in order, came).
        bob.due(NOW + 4 + GAP_WAIT - 10).unwrap();
        assert!(bob
            .take_unread(NOW + 4 + GAP_WAIT - 10)
            .unwrap()
            .0
            .is_empty());
        bob.due(NOW + 4 + GAP_WAIT).unwrap();
        let listed: Vec<u64> = bob.unread().unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(listed, [4, 5]);
        // Three arrives late, after Bob's client listed 4 and 5 and before
        // it marks them read: marking them does not mark three, and with
        // three unread the receipt says nothing past two.
        let (_, receipts3) = bob.receive(&out[..1], NOW + 4 + GAP_WAIT).unwrap();
        let read = bob
            .mark_read(&[(alice_id, listed)], NOW + 4 + GAP_WAIT)
            .unwrap();
        assert!(read.is_empty());
        for r in [&receipts, &receipts4, &receipts3] {
            alice.receive(&envelopes(r), NOW + 5).unwrap();
        }
        let state =
            |alice: &Conversations, seq| alice.message(&bob_id, true, seq).unwrap().unwrap().state;
        for seq in [3, 4, 5] {
            assert_eq!(state(&alice, seq), State::Delivered, "{seq}");
        }
        assert_eq!(alice.outbox_len(), 0);
        // Three is shown where it comes; once read, all up to five is.
        let (late, read) = bob.take_unread(NOW + 4 + GAP_WAIT).unwrap();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].text, "three");
        alice.receive(&envelopes(&read), NOW + 6).unwrap();
        for seq in [3, 4, 5] {
            assert_eq!(state(&alice, seq), State::Read, "{seq}");
        }
        assert_eq!(texts(&bob, &alice_id).len(), 5);
    }

    #[test]
    fn an_unanswered_first_message_gives_way_to_a_new_one() {
        let (a, b) = (side(), side());
        knows(&a, &b);
        let mut alice = convs(&a, b"alice-node");
        let bob_id = b.own.state.id;
        alice.send(&bob_id, "hello?", NOW).unwrap();
        alice.send(&bob_id, "anyone?", NOW).unwrap();
        let first = alice.due(NOW).unwrap();
        assert_eq!(first.len(), 1);
        // Tried again as it is while it is young; the second waits.
        let again = alice.due(NOW + RETRY_MAX).unwrap();
        assert_eq!(envelopes(&again), envelopes(&first));
        // Too old: a new first message, to the contact's newest prekey.
        let later = NOW + PENDING_MAX_AGE + RETRY_MAX;
        let fresh = alice.due(later).unwrap();
        assert_eq!(fresh.len(), 1);
        assert_ne!(envelopes(&fresh), envelopes(&first));
        let mut bob = convs(&b, b"bob-node");
        knows(&b, &a);
        let (r, _) = bob.receive(&envelopes(&fresh), later).unwrap();
        assert_eq!(r, [Received::Taken]);
    }

    #[test]
    fn a_contact_restored_from_its_words_numbers_anew_and_is_not_taken_for_copies() {
        let (a, b, mut alice, mut bob) = pair();
        let alice_id = a.own.state.id;
        let out = alice.due(NOW + 1).unwrap();
        let (_, back) = bob.receive(&envelopes(&out), NOW + 1).unwrap();
        alice.receive(&envelopes(&back), NOW + 1).unwrap();
        assert_eq!(texts(&bob, &alice_id).len(), 2);
        // Alice's laptop is lost; the same words on a new machine: the same
        // identity, no conversation, numbering from 1 again.
        let a2 = side_from(&a.words);
        assert_eq!(a2.own.state.id, alice_id);
        knows(&a2, &b);
        let mut alice2 = convs(&a2, b"alice-new-node");
        assert_eq!(
            alice2.send(&b.own.state.id, "new laptop", NOW + 2).unwrap(),
            1
        );
        let out = alice2.due(NOW + 2).unwrap();
        let (r, back) = bob.receive(&envelopes(&out), NOW + 2).unwrap();
        assert_eq!(r, [Received::Taken]);
        let (r, _) = alice2.receive(&envelopes(&back), NOW + 2).unwrap();
        assert!(r.iter().all(|r| *r == Received::Taken));
        // Bob shows it after the two before, and Alice's new node sees it
        // delivered.
        let got = texts(&bob, &alice_id);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[2].1, "new laptop");
        assert_eq!(alice2.outbox_len(), 0);
        let (unread, _) = bob.take_unread(NOW + 3).unwrap();
        assert_eq!(unread.last().unwrap().text, "new laptop");
    }
}
