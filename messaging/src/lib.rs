//! End-to-end sessions between two Cairn identities. No I/O: bytes in,
//! bytes out; the node stores the state and moves the messages.
//!
//! - [`handshake`]: the first message to a contact who may be offline, sealed
//!   to one of their signed prekeys (Noise `N`, which hides the sender), with
//!   a Noise `KK` handshake inside whose prologue binds both identity ids,
//!   the prekey and the protocol version; the contact's answer completes it.
//! - [`session`]: the double ratchet seeded from the handshake, for every
//!   later message: forward secrecy per message, healing after a compromise
//!   once both sides have spoken, out-of-order delivery within a bound, and
//!   no message decrypted twice.
//! - [`pad`]: every message on the wire has one of four sizes.
//! - [`mailbox`]: the addresses a mailbox node stores messages under,
//!   derived so that they rotate and cannot be linked across contacts.
//! - [`payload`]: what a message carries (texts numbered per contact,
//!   receipts) and the envelope (address ‖ message) that travels.
//!
//! The construction is specified in `docs/protocol.md` ("Sessions").

mod codec;
pub mod handshake;
mod kdf;
pub mod mailbox;
pub mod pad;
pub mod payload;
pub mod session;

pub use handshake::{accept, open, start, Opened, PeerIdentity, PeerPrekey, Pending};
pub use session::Session;

/// The first byte of every session message: what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A first message, sealed to a prekey ([`handshake::start`]).
    Initial = 1,
    /// The answer that completes a handshake ([`handshake::accept`]).
    Answer = 2,
    /// A message of an established session ([`Session::encrypt`]).
    Ratchet = 3,
}

impl Kind {
    /// The kind of `message`, from its first byte.
    pub fn of(message: &[u8]) -> Result<Kind, SessionError> {
        match message.first() {
            Some(1) => Ok(Kind::Initial),
            Some(2) => Ok(Kind::Answer),
            Some(3) => Ok(Kind::Ratchet),
            Some(_) => Err(SessionError::Malformed("unknown message kind")),
            None => Err(SessionError::Malformed("empty message")),
        }
    }
}

/// Why a session operation failed. A failure never changes a session's
/// state.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The message is not well formed.
    #[error("malformed session message: {0}")]
    Malformed(&'static str),
    /// The content is larger than a message can carry.
    #[error("{len} bytes is more than one message carries ({max} at most)")]
    TooLarge {
        /// The content's length.
        len: usize,
        /// The most it may be.
        max: usize,
    },
    /// The first message names a prekey this identity does not have (any
    /// more).
    #[error("the message is sealed to prekey {0}, which this identity does not hold (expired or never published)")]
    UnknownPrekey(u32),
    /// A Noise handshake message did not authenticate: not for this
    /// identity, not from the claimed sender, or altered.
    #[error("the handshake does not authenticate: {0}")]
    Handshake(String),
    /// The answer does not belong to this pending handshake.
    #[error("this answer is not for this first message")]
    NotOurAnswer,
    /// A message did not decrypt: altered, not of this session, or from a
    /// chain this side no longer has keys for.
    #[error("the message does not decrypt in this session")]
    Undecryptable,
    /// A message already decrypted (a replay), or one whose key was
    /// dropped after waiting too long.
    #[error("message {n} of this chain was already received, or waited too long and its key was dropped")]
    Replayed {
        /// Its number in its chain.
        n: u32,
    },
    /// The message is further ahead of the last one received than the
    /// session tolerates.
    #[error("the message skips {skipped} messages, more than the {max} a session keeps keys for")]
    TooFarAhead {
        /// Messages it would skip.
        skipped: u32,
        /// The most that may be skipped.
        max: u32,
    },
    /// The sending chain's counter is exhausted: the session must be
    /// established again.
    #[error("the session has sent as many messages as its counter allows; start a new one")]
    Exhausted,
    /// The OS gave no randomness.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

impl From<snow::Error> for SessionError {
    fn from(e: snow::Error) -> Self {
        SessionError::Handshake(e.to_string())
    }
}

/// A fresh X25519 secret from the OS.
pub(crate) fn random_secret() -> Result<x25519_dalek::StaticSecret, SessionError> {
    let mut b = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::getrandom(&mut *b).map_err(|e| SessionError::Random(e.to_string()))?;
    Ok(x25519_dalek::StaticSecret::from(*b))
}

#[cfg(test)]
mod tests;
