//! Cairn's Bitcoin side: does a key event log's history stand on Bitcoin?
//!
//! * [`headers`]: the validated header chain (proof-of-work, retargets,
//!   median-time-past, checkpoints, reorgs as changesets), sans I/O.
//! * [`spv`]: BIP37 inclusion proofs checked against that chain.
//! * [`network`]: per-network parameters.
//! * [`rpc`]: a Bitcoin Core JSON-RPC client; [`source`]: the chain-source
//!   trait it implements; [`sync`]: the loop that pulls headers from a source.
//!
//! This crate turns a log into a verdict a person can act on. Today it knows
//! the verdicts that need no chain (`Unanchored`, `Invalid`); the header chain,
//! SPV proofs and seal checks of the chain-layer and anchoring work add the
//! anchored verdicts (`Current`, `Pending`, `Stale`, `Reorged`) on the same type.

pub mod headers;
pub mod network;
pub mod rpc;
pub mod seal;
pub mod source;
pub mod spv;
pub mod sync;

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
