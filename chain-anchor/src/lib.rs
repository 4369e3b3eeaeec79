//! Cairn's Bitcoin side: does a key event log's history stand on Bitcoin?
//!
//! * [`headers`]: the validated header chain (proof-of-work, retargets,
//!   median-time-past, checkpoints, reorgs as changesets), sans I/O.
//! * [`spv`]: BIP37 inclusion proofs checked against that chain.
//! * [`network`]: per-network parameters.
//! * [`rpc`]: a Bitcoin Core JSON-RPC client; [`source`]: the chain-source
//!   trait it implements; [`sync`]: the loop that pulls headers from a source.
//!
//! * [`seal`]: the taproot output that anchors one establishment event;
//!   [`anchor`]: anchors, identity bundles and their verification.
//!
//! This crate turns a log into a verdict a person can act on:
//! [`verify_without_chain`] gives the verdicts that need no chain
//! (`Unanchored`, `Invalid`); [`verify_bundle`] checks a bundle's anchors
//! against the validated header chain and gives `Current`, `Pending`,
//! `Stale` or `Reorged` as well.

pub mod anchor;
pub mod headers;
pub mod network;
pub mod rpc;
pub mod seal;
pub mod sealed;
pub mod source;
pub mod spv;
pub mod sync;

pub use anchor::{
    follow_spend, verify_bundle, Anchor, AnchorFault, Attestation, Bundle, BundleError,
    Verification,
};
pub use headers::{BlockStatus, ChainUpdate, HeaderChain, HeaderEntry, HeaderError};
pub use network::{ChainNetwork, ChainParams};
pub use seal::{Seal, SealError};
pub use source::{ChainSource, RpcSource, SourceError};
pub use spv::{verify_inclusion, Inclusion, SpvError};
pub use sync::{sync_headers, SyncEvent, SyncOutcome};

use cairn_wallet::kel::{KeyEventLog, LogError};
use cairn_wallet::LogState;
use serde::Serialize;

/// What a log's owner can be trusted for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// The log verifies but is not anchored in Bitcoin: trust on first use.
    Unanchored {
        /// Rotation index of the current key.
        rotation_index: u32,
    },
    /// The latest anchored seal is confirmed deeply enough and unspent at
    /// the tip: its key is current.
    Current {
        /// Rotation index of the current key.
        rotation_index: u32,
        /// The seal (`txid:vout`).
        seal: String,
        /// Height of the block that anchors it.
        anchor_height: u32,
        /// Its confirmations at the tip.
        confirmations: u32,
        /// The tip it is current as of.
        tip_height: u32,
        /// That tip's hash.
        tip_hash: String,
    },
    /// An establishment event is not (yet) confirmed deeply enough.
    Pending {
        /// The last rotation index that is confirmed and whose seal is
        /// unspent, if any (usable meanwhile).
        rotation_index: Option<u32>,
        /// The establishment event waiting.
        pending_index: u32,
        /// Its confirmations (0: not in a block).
        confirmations: u32,
        /// Confirmations required.
        needed: u32,
    },
    /// The latest confirmed seal was spent, by a transaction whose event
    /// this node does not have (or that does not verify). Fail closed: no key
    /// of this identity is current until the event that spent it is known.
    Stale {
        /// Rotation index of the spent seal.
        rotation_index: u32,
        /// The spent seal (`txid:vout`).
        seal: String,
    },
    /// The block of an establishment event's anchor left the best chain:
    /// the state is back at the event before it.
    Reorged {
        /// The rotation index the state is back at (none if the inception left).
        rotation_index: Option<u32>,
        /// The establishment event whose anchor left the best chain.
        left_index: u32,
    },
    /// The log does not verify.
    Invalid {
        /// Position of the first failing event.
        position: usize,
        /// Its kind.
        kind: &'static str,
        /// Why it fails.
        reason: String,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Unanchored { rotation_index } => write!(
                f,
                "unanchored: the log is valid (rotation {rotation_index}) but not anchored in Bitcoin; trust it only as far as you trust how you got it"
            ),
            Verdict::Current { rotation_index, anchor_height, confirmations, tip_height, tip_hash, .. } => write!(
                f,
                "current: rotation {rotation_index}, anchored at height {anchor_height} ({confirmations} confirmations), seal unspent as of block {tip_height} ({tip_hash})"
            ),
            Verdict::Pending { rotation_index, pending_index, confirmations, needed } => {
                write!(f, "pending: establishment event {pending_index} has {confirmations} of {needed} confirmations; ")?;
                match rotation_index {
                    Some(i) => write!(f, "rotation {i} stays current until then"),
                    None => write!(f, "nothing is anchored yet"),
                }
            }
            Verdict::Stale { rotation_index, seal } => write!(
                f,
                "stale: the seal of rotation {rotation_index} ({seal}) was spent by a transaction whose key event this node does not have; do not trust any key of this identity until its newer log is known"
            ),
            Verdict::Reorged { rotation_index, left_index } => {
                write!(f, "reorged: the anchor of establishment event {left_index} left the best chain; ")?;
                match rotation_index {
                    Some(i) => write!(f, "back at rotation {i}"),
                    None => write!(f, "nothing is anchored"),
                }
            }
            Verdict::Invalid { position, kind, reason } => write!(f, "invalid: event {position} ({kind}): {reason}"),
        }
    }
}

impl From<&LogError> for Verdict {
    fn from(e: &LogError) -> Self {
        Verdict::Invalid {
            position: e.position,
            kind: e.kind,
            reason: e.fault.to_string(),
        }
    }
}

/// Verifies `log` without a chain: every signature, the hash chain and
/// pre-rotation. Returns the state and the verdict, or the verdict alone when
/// the log is invalid.
pub fn verify_without_chain(log: &KeyEventLog) -> Result<(LogState, Verdict), Verdict> {
    match log.verify() {
        Ok(state) => {
            let v = Verdict::Unanchored {
                rotation_index: state.rotation_index(),
            };
            Ok((state, v))
        }
        Err(e) => Err(Verdict::from(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_wallet::kel::establishment_chain;
    use cairn_wallet::{MasterKey, SeedPhrase};

    #[test]
    fn verdicts() {
        let m = MasterKey::new(&SeedPhrase::generate(12).unwrap().to_seed(""));
        let log = KeyEventLog::new(establishment_chain(&m, 2).unwrap());
        let (state, v) = verify_without_chain(&log).unwrap();
        assert_eq!(v, Verdict::Unanchored { rotation_index: 2 });
        assert_eq!(state.rotation_index(), 2);
        let mut events = log.events().to_vec();
        events.remove(1);
        let bad = verify_without_chain(&KeyEventLog::new(events)).unwrap_err();
        assert!(matches!(
            bad,
            Verdict::Invalid {
                position: 1,
                kind: "rotation",
                ..
            }
        ));
        assert!(bad.to_string().starts_with("invalid: event 1 (rotation)"));
    }
}
