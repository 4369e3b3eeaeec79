//! Mailbox addresses: what a mailbox node stores envelopes under. It sees
//! an address, a size and a time; never who wrote or who reads.
//!
//! - A session's messages go to `HMAC(mailbox key of the direction, epoch)`,
//!   the keys derived from the session's root: each contact pair and
//!   direction has its own addresses, a new one every epoch, and nobody
//!   without the session can link them.
//! - First messages go to the address of the recipient's prekey for the
//!   epoch (the prekey is public; the sender is sealed).
//! - The answer to a first message goes to an address derived from that
//!   message's inner ephemeral key ([`crate::Pending::answer_address`]).

use cairn_wallet::hash::{tagged_hash, tags};

use crate::kdf::hmac;
use crate::Session;

/// Length of an epoch, seconds: addresses change once a day.
pub const EPOCH_SECS: u64 = 24 * 60 * 60;

/// The epoch of Unix time `now`.
pub fn epoch(now: u64) -> u64 {
    now / EPOCH_SECS
}

/// Where first messages to the prekey `prekey` are stored in `epoch`.
pub fn prekey_address(prekey: &[u8; 32], epoch: u64) -> [u8; 32] {
    tagged_hash(tags::MAILBOX_PREKEY, &[prekey, &epoch.to_be_bytes()])
}

impl Session {
    /// Where this side's messages to the peer are stored in `epoch`.
    pub fn send_address(&self, epoch: u64) -> [u8; 32] {
        *hmac(self.mailbox_send_key(), &[&epoch.to_be_bytes()])
    }

    /// Where the peer's messages to this side are stored in `epoch`.
    pub fn receive_address(&self, epoch: u64) -> [u8; 32] {
        *hmac(self.mailbox_recv_key(), &[&epoch.to_be_bytes()])
    }
}
