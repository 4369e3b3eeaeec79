//! Verification of a whole key event log: signatures, hash chain, numbering and
//! pre-rotation. Checking establishment events against Bitcoin is the chain
//! layer's job: it takes [`LogState::establishment`] and checks each entry's seal.

use bitcoin::secp256k1::XOnlyPublicKey;

use super::{
    next_key_digest, Digest, Event, Item, KeyEventLog, MessagingPublicKey, MAX_LOG_EVENTS,
};
use crate::id::IdentityId;

/// At most this many prekeys are kept from a log (the most recent ones).
pub const MAX_PREKEYS: usize = 100;

/// Why an event breaks the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogFault {
    /// The log has no events.
    #[error("the log is empty")]
    Empty,
    /// The log is longer than allowed.
    #[error("the log has more than {MAX_LOG_EVENTS} events")]
    TooLong,
    /// The first event is not an inception.
    #[error("the first event must be an inception, found {0}")]
    NotInception(&'static str),
    /// An inception after the first event.
    #[error("an inception can only be the first event")]
    UnexpectedInception,
    /// The signature does not verify under the key that must have made it.
    #[error("the signature does not verify under the signing key of rotation {index}")]
    BadSignature {
        /// Rotation index of the key checked.
        index: u32,
    },
    /// `prev` does not name the event it must.
    #[error("prev names {found}, expected {expected}")]
    BrokenChain {
        /// Digest the event had to name.
        expected: Digest,
        /// Digest it names.
        found: Digest,
    },
    /// The rotation index is not the next one.
    #[error("rotation index {found}, expected {expected}")]
    WrongIndex {
        /// Expected index.
        expected: u32,
        /// Found index.
        found: u32,
    },
    /// The interaction sequence number is not the next one.
    #[error("interaction sequence {found}, expected {expected}")]
    WrongSequence {
        /// Expected sequence number.
        expected: u32,
        /// Found sequence number.
        found: u32,
    },
    /// The revealed key does not match the digest committed before it.
    #[error(
        "the revealed signing key does not match the next-key digest committed by rotation {index}"
    )]
    PreRotationMismatch {
        /// Rotation index whose commitment is broken.
        index: u32,
    },
    /// An interaction's timestamp goes back in time.
    #[error("timestamp {found} is earlier than the previous interaction's {previous}")]
    TimeRegression {
        /// Timestamp of the previous interaction of this rotation.
        previous: u64,
        /// This event's.
        found: u64,
    },
}

/// The first event that breaks a log, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {position} ({kind}) is invalid: {fault}")]
pub struct LogError {
    /// 0-based position of the failing event in the log.
    pub position: usize,
    /// Its kind ("inception", "rotation", "interaction"; "log" for whole-log faults).
    pub kind: &'static str,
    /// Why.
    pub fault: LogFault,
}

/// An establishment event of a verified log: what the chain layer must find anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EstablishmentRef {
    /// Position in the log.
    pub position: usize,
    /// Rotation index.
    pub index: u32,
    /// Event digest (what its seal commits to).
    pub digest: Digest,
    /// Signing key it established.
    pub signing_key: XOnlyPublicKey,
    /// Commitment to the next signing key.
    pub next_key_digest: Digest,
    /// Messaging key it established.
    pub messaging_key: MessagingPublicKey,
}

/// The state a valid log establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogState {
    /// The identity id.
    pub id: IdentityId,
    /// Every establishment event, in order; the last is current.
    pub establishment: Vec<EstablishmentRef>,
    /// Digest of the last event of the log.
    pub last_digest: Digest,
    /// Sequence number of the last interaction of the current rotation (0 if none).
    pub last_seq: u32,
    /// Timestamp of the last interaction of the current rotation (0 if none).
    pub last_timestamp: u64,
    /// Mailboxes announced by the latest interaction of the current rotation that names any.
    pub mailboxes: Vec<Vec<u8>>,
    /// Prekeys announced under the current rotation: `(id, key, expires)`.
    pub prekeys: Vec<(u32, [u8; 32], u64)>,
    /// Number of events.
    pub len: usize,
}

impl LogState {
    /// The current establishment event.
    pub fn current(&self) -> &EstablishmentRef {
        // A LogState always has at least the inception.
        &self.establishment[self.establishment.len() - 1]
    }

    /// Current rotation index.
    pub fn rotation_index(&self) -> u32 {
        self.current().index
    }
}

impl KeyEventLog {
    /// Verifies the whole log and returns the state it establishes, or the first
    /// failing event and why.
    pub fn verify(&self) -> Result<LogState, LogError> {
        let events = self.events();
        let log_fault = |fault| LogError {
            position: 0,
            kind: "log",
            fault,
        };
        if events.is_empty() {
            return Err(log_fault(LogFault::Empty));
        }
        if events.len() > MAX_LOG_EVENTS {
            return Err(log_fault(LogFault::TooLong));
        }
        let first = &events[0];
        let fail = |position: usize, fault| LogError {
            position,
            kind: events[position].event().kind_name(),
            fault,
        };
        let Event::Inception(inc) = first.event() else {
            return Err(fail(0, LogFault::NotInception(first.event().kind_name())));
        };
        if !first.verify_signature(&inc.signing_key) {
            return Err(fail(0, LogFault::BadSignature { index: 0 }));
        }
        let mut state = LogState {
            id: IdentityId::of_inception(first.event_bytes()),
            establishment: vec![EstablishmentRef {
                position: 0,
                index: 0,
                digest: first.digest(),
                signing_key: inc.signing_key,
                next_key_digest: inc.next_key_digest,
                messaging_key: inc.messaging_key,
            }],
            last_digest: first.digest(),
            last_seq: 0,
            last_timestamp: 0,
            mailboxes: Vec::new(),
            prekeys: Vec::new(),
            len: events.len(),
        };
        for (position, signed) in events.iter().enumerate().skip(1) {
            let cur = *state.current();
            match signed.event() {
                Event::Inception(_) => return Err(fail(position, LogFault::UnexpectedInception)),
                Event::Rotation(rot) => {
                    let expected = cur.index + 1;
                    if rot.index != expected {
                        return Err(fail(
                            position,
                            LogFault::WrongIndex {
                                expected,
                                found: rot.index,
                            },
                        ));
                    }
                    if rot.prev != cur.digest {
                        return Err(fail(
                            position,
                            LogFault::BrokenChain {
                                expected: cur.digest,
                                found: rot.prev,
                            },
                        ));
                    }
                    if next_key_digest(&rot.signing_key) != cur.next_key_digest {
                        return Err(fail(
                            position,
                            LogFault::PreRotationMismatch { index: cur.index },
                        ));
                    }
                    if !signed.verify_signature(&rot.signing_key) {
                        return Err(fail(position, LogFault::BadSignature { index: rot.index }));
                    }
                    state.establishment.push(EstablishmentRef {
                        position,
                        index: rot.index,
                        digest: signed.digest(),
                        signing_key: rot.signing_key,
                        next_key_digest: rot.next_key_digest,
                        messaging_key: rot.messaging_key,
                    });
                    // A rotation starts a fresh interaction state: statements signed by
                    // an earlier key no longer speak for the identity.
                    state.last_seq = 0;
                    state.last_timestamp = 0;
                    state.mailboxes.clear();
                    state.prekeys.clear();
                }
                Event::Interaction(int) => {
                    if int.index != cur.index {
                        return Err(fail(
                            position,
                            LogFault::WrongIndex {
                                expected: cur.index,
                                found: int.index,
                            },
                        ));
                    }
                    let expected = state.last_seq.saturating_add(1);
                    if int.seq != expected {
                        return Err(fail(
                            position,
                            LogFault::WrongSequence {
                                expected,
                                found: int.seq,
                            },
                        ));
                    }
                    if int.prev != state.last_digest {
                        return Err(fail(
                            position,
                            LogFault::BrokenChain {
                                expected: state.last_digest,
                                found: int.prev,
                            },
                        ));
                    }
                    if int.timestamp < state.last_timestamp {
                        return Err(fail(
                            position,
                            LogFault::TimeRegression {
                                previous: state.last_timestamp,
                                found: int.timestamp,
                            },
                        ));
                    }
                    if !signed.verify_signature(&cur.signing_key) {
                        return Err(fail(position, LogFault::BadSignature { index: cur.index }));
                    }
                    state.last_seq = int.seq;
                    state.last_timestamp = int.timestamp;
                    let mailboxes = int.mailboxes();
                    if !mailboxes.is_empty() {
                        state.mailboxes = mailboxes;
                    }
                    for i in &int.items {
                        if let Item::Prekey { id, key, expires } = i {
                            state.prekeys.retain(|p| p.0 != *id);
                            state.prekeys.push((*id, *key, *expires));
                            if state.prekeys.len() > MAX_PREKEYS {
                                state.prekeys.remove(0);
                            }
                        }
                    }
                }
            }
            state.last_digest = signed.digest();
        }
        Ok(state)
    }
}
