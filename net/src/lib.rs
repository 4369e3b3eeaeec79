//! Cairn's network: a libp2p node that publishes identity records in a
//! Kademlia DHT, serves them on request, announces rotations on gossipsub,
//! and carries end-to-end encrypted mail to contacts' nodes and mailbox
//! nodes ([`mail`]). It moves bytes and bounds everything; what a record or an
//! announcement means, and whether it is valid, is the node's business
//! ([`Policy`]), so that every record is fully verified before it is
//! stored or forwarded.
//!
//! One task owns the swarm ([`Network::start`]); the node talks to it
//! through a bounded command channel ([`Network`]) and hears from it on a
//! bounded event channel ([`NetEvent`]).

mod codec;
pub mod config;
pub mod mail;
mod node;

pub use codec::{RecordCodec, MAX_KEY};
pub use config::{Limits, NetConfig};
pub use libp2p::identity::Keypair;
pub use libp2p::{multiaddr, Multiaddr, PeerId};
pub use mail::{MailRequest, MailResponse, MailStatus, MAIL_PROTOCOL};
pub use node::{NetEvent, NetStatus, Network};

/// The gossipsub topic of rotation announcements.
pub const ROTATION_TOPIC: &str = "/cairn/rotations/1";
/// The request-response protocol that serves records.
pub const RECORD_PROTOCOL: &str = "/cairn/record/1";
/// The Kademlia protocol (announced by identify).
pub const KAD_PROTOCOL: &str = "/cairn/kad/1.0.0";

/// What the node decides about records and announcements. Called on the
/// network task: keep it quick (decoding and signature checks, no I/O).
pub trait Policy: Send + Sync + 'static {
    /// Checks a record offered or found under `key`: decoded with a bounded
    /// decoder and fully verified, and `key` is the key it belongs under.
    fn check_record(&self, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Whether `new` replaces `old` (both checked, same key): never an
    /// older record over a newer one.
    fn replaces(&self, new: &[u8], old: &[u8]) -> bool;
    /// Checks a rotation announcement before it is forwarded.
    fn check_announcement(&self, data: &[u8]) -> Result<(), String>;
}

/// A record as kept: `(DHT key, value)`.
pub type KeptRecord = (Vec<u8>, Vec<u8>);

/// Where the records this node holds are kept across restarts. `save` is
/// called on the blocking pool.
pub trait Persist: Send + Sync + 'static {
    /// Every record kept.
    fn load(&self) -> Result<Vec<KeptRecord>, String>;
    /// Keeps a record (replacing the one under the same key).
    fn save(&self, key: &[u8], value: &[u8]) -> Result<(), String>;
}

/// Network failures.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The transport could not be set up or could not listen.
    #[error("cannot start the network: {0}")]
    Start(String),
    /// The network task has stopped.
    #[error("the network has stopped")]
    Stopped,
    /// Too many commands are waiting.
    #[error("the network is busy; try again")]
    Busy,
    /// No record was found under the key.
    #[error("no valid record was found in the network")]
    NotFound,
    /// The record was refused by the policy.
    #[error("the record is not valid: {0}")]
    Invalid(String),
    /// Publishing or fetching failed.
    #[error("{0}")]
    Failed(String),
}
