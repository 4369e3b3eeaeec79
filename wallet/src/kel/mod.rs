//! The identity's key event log (KEL): hash-chained, signed events in the
//! spirit of KERI.
//!
//! * Establishment events (inception, rotations) form their own chain: each
//!   rotation names the digest of the previous establishment event and reveals
//!   the key committed to by it. They carry nothing that changes over time, so
//!   they are byte-identical for the same seed and a restore can regenerate them.
//! * Interaction events hang off the establishment event of their rotation
//!   index, numbered from 1, each naming the previous event of that rotation.
//!
//! See `docs/adr/0002-establishment-chain.md` for why establishment events do not chain
//! through interaction events.

pub mod codec;
mod event;
mod log;
mod verify;
mod view;

pub use event::{
    next_key_digest, BuildError, Digest, Event, Inception, Interaction, Item, MessagingPublicKey,
    Rotation, SignedEvent, EVENT_VERSION, MAX_EVENT_LEN, MAX_ITEMS, MAX_MAILBOX_LEN, SIGNATURE_LEN,
};
pub use log::{KeyEventLog, LOG_MAGIC, LOG_VERSION, MAX_LOG_EVENTS};
pub use verify::{EstablishmentRef, LogError, LogFault, LogState, MAX_PREKEYS};
pub use view::{EventView, ItemView, LogView};

use crate::keys::{KeyError, MasterKey};

/// Why bytes are not a valid encoded event or log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Input ended early.
    #[error("input ends early: {needed} more bytes needed at offset {offset}")]
    Truncated {
        /// Offset where the read started.
        offset: usize,
        /// Bytes the read needed.
        needed: usize,
    },
    /// Bytes left after a complete value.
    #[error("{count} unexpected bytes after the end")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// An encoding version this build does not know.
    #[error("unknown encoding version {0}")]
    UnknownVersion(u8),
    /// An event kind this build does not know.
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    /// An interaction item tag this build does not know.
    #[error("unknown interaction item tag {0}")]
    UnknownItemTag(u8),
    /// A field longer than its bound.
    #[error("field {field} has length {len}, more than {max}")]
    FieldTooLarge {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Input larger than allowed.
    #[error("input of {len} bytes is larger than {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A valid-looking but non-canonical form.
    #[error("non-canonical encoding: {0}")]
    NonCanonical(&'static str),
    /// A key that is not valid.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// Signature bytes that cannot be a BIP340 signature.
    #[error("invalid signature encoding")]
    InvalidSignatureEncoding,
    /// Not a key event log file.
    #[error("not a Cairn key event log (bad magic bytes)")]
    BadMagic,
    /// Event `index` of a log failed to decode.
    #[error("event {index} of the log: {source}")]
    InEvent {
        /// 0-based position in the log.
        index: usize,
        /// Why.
        #[source]
        source: Box<DecodeError>,
    },
}

/// Errors building events from the seed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KelError {
    /// Key derivation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The event could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The establishment event for rotation index `index`, given the previous
/// establishment event's digest (`None` for the inception, index 0).
pub fn establishment_event(
    master: &MasterKey,
    index: u32,
    prev: Option<Digest>,
) -> Result<SignedEvent, KelError> {
    let key = master.signing_key(index)?;
    let next = master.signing_key(index.checked_add(1).ok_or(KeyError::IndexTooLarge(index))?)?;
    let messaging_key = MessagingPublicKey(master.messaging_key(index)?.public());
    let next_key_digest = next_key_digest(&next.public());
    let event = match prev {
        None if index == 0 => Event::Inception(Inception {
            signing_key: key.public(),
            next_key_digest,
            messaging_key,
        }),
        Some(prev) if index > 0 => Event::Rotation(Rotation {
            index,
            prev,
            signing_key: key.public(),
            next_key_digest,
            messaging_key,
        }),
        _ => return Err(BuildError::ZeroIndex.into()),
    };
    Ok(event.sign(&key)?)
}

/// The establishment events for rotation indices `0..=up_to`, regenerated from the seed.
pub fn establishment_chain(master: &MasterKey, up_to: u32) -> Result<Vec<SignedEvent>, KelError> {
    let mut out: Vec<SignedEvent> = Vec::with_capacity(up_to as usize + 1);
    for index in 0..=up_to {
        let prev = out.last().map(SignedEvent::digest);
        out.push(establishment_event(master, index, prev)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
