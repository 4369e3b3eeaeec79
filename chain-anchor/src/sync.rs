//! Header sync: pulls the source's best chain into a [`HeaderChain`], one
//! bounded batch at a time, and hands every change to the caller to persist
//! before asking for more. It resumes from whatever chain it is given, so a
//! restarted node continues where its store left off.
//!
//! The source is not trusted: every header is validated by the chain, and a
//! source that changes under the loop (a reorg between two calls) is simply
//! read again, a bounded number of times.

use bitcoin::BlockHash;

use crate::headers::{ChainUpdate, HeaderChain, HeaderError, CHUNK_LEN};
use crate::source::{ChainSource, SourceError};

/// Most headers fetched and validated per round. Rounds end at storage chunk
/// boundaries (`from` up to the end of its chunk), so each round writes one
/// chunk once instead of rewriting a partial one.
pub const SYNC_BATCH: u32 = CHUNK_LEN;
/// Rounds in a row in which the source may contradict itself before sync gives up.
pub const MAX_INCONSISTENT_ROUNDS: u32 = 8;

/// What sync reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncEvent {
    /// The source's tip, at the start of a pass.
    Target {
        /// Source tip height.
        height: u32,
        /// Source tip hash.
        hash: BlockHash,
    },
    /// A batch was validated and persisted.
    Progress {
        /// Our best height now.
        height: u32,
        /// The source's tip height.
        target: u32,
    },
    /// Blocks left our best chain.
    Reorg {
        /// Blocks that left, from the old tip down.
        disconnected: Vec<(u32, BlockHash)>,
        /// Blocks that joined, from the fork up.
        connected: Vec<(u32, BlockHash)>,
    },
}

/// Why sync stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError<E: std::error::Error + 'static> {
    /// The source failed.
    #[error("chain source: {0}")]
    Source(#[from] SourceError),
    /// The source served a header the chain refuses.
    #[error("the chain source served an invalid header: {0}")]
    Invalid(#[from] HeaderError),
    /// The source's genesis differs from the configured network's.
    #[error("the chain source serves another network (its block 0 is {0})")]
    WrongGenesis(BlockHash),
    /// Persisting a change failed.
    #[error("storing headers: {0}")]
    Persist(#[source] E),
}

/// Where a finished sync stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Our best height.
    pub height: u32,
    /// Our best tip.
    pub tip: BlockHash,
    /// Headers added during this sync.
    pub added: u64,
}

/// Heights to compare with the source when looking for the fork point: the
/// last ten, then exponentially sparser, then genesis (Core's block locator).
fn locator_heights(top: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut h = i64::from(top);
    let mut step = 1i64;
    while h > 0 {
        out.push(h as u32);
        if out.len() >= 10 {
            step *= 2;
        }
        h -= step;
    }
    out.push(0);
    out
}

/// Brings `chain` up to the source's best tip. `persist` is called with
/// every change (and the chain after it) before the next batch is fetched;
/// `now` is the node's clock in Unix seconds.
pub fn sync_headers<E: std::error::Error + 'static>(
    chain: &mut HeaderChain,
    source: &dyn ChainSource,
    now: &dyn Fn() -> u64,
    persist: &mut dyn FnMut(&ChainUpdate, &HeaderChain) -> Result<(), E>,
    events: &mut dyn FnMut(SyncEvent),
) -> Result<SyncOutcome, SyncError<E>> {
    let mut added = 0u64;
    let mut inconsistent = 0u32;
    'pass: loop {
        let (target, target_hash) = source.tip()?;
        events(SyncEvent::Target {
            height: target,
            hash: target_hash,
        });
        if chain.tip().hash == target_hash || chain.get(&target_hash).is_some() {
            // Up to date, or the source is behind us on a chain we know.
            return Ok(SyncOutcome {
                height: chain.height(),
                tip: chain.tip().hash,
                added,
            });
        }
        // The fork point: the highest locator height where we agree.
        let heights = locator_heights(chain.height().min(target));
        let theirs = source.hashes_at(&heights)?;
        let mut fork = None;
        for (h, hash) in heights.iter().zip(&theirs) {
            if chain.at_height(*h).map(|e| e.hash) == Some(*hash) {
                fork = Some(*h);
                break;
            }
        }
        let Some(mut from) = fork.map(|f| f + 1) else {
            return Err(SyncError::WrongGenesis(
                theirs.last().copied().unwrap_or(target_hash),
            ));
        };
        chain.reserve((target + 1).saturating_sub(from));
        while from <= target {
            let count = (SYNC_BATCH - from % SYNC_BATCH).min(target - from + 1);
            let heights: Vec<u32> = (from..from + count).collect();
            let hashes = source.hashes_at(&heights)?;
            let headers = source.headers(&hashes)?;
            // The headers are the ones asked for (their hashes match) and link.
            let consistent = headers.len() == hashes.len()
                && headers
                    .iter()
                    .zip(&hashes)
                    .all(|(h, want)| h.block_hash() == *want)
                && headers
                    .iter()
                    .skip(1)
                    .zip(&hashes)
                    .all(|(h, prev)| h.prev_blockhash == *prev)
                && headers
                    .first()
                    .is_some_and(|h| chain.get(&h.prev_blockhash).is_some());
            if !consistent {
                inconsistent += 1;
                if inconsistent > MAX_INCONSISTENT_ROUNDS {
                    return Err(SyncError::Source(SourceError::Inconsistent(format!(
                        "headers {from}..{} did not link up {inconsistent} times in a row",
                        from + count
                    ))));
                }
                continue 'pass;
            }
            let update = chain.connect(&headers, now())?;
            persist(&update, chain).map_err(SyncError::Persist)?;
            added += update.added.len() as u64;
            if update.is_reorg() {
                events(SyncEvent::Reorg {
                    disconnected: update.disconnected.clone(),
                    connected: update.connected.clone(),
                });
            }
            events(SyncEvent::Progress {
                height: chain.height(),
                target,
            });
            inconsistent = 0;
            from += count;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locator_is_dense_then_sparse_and_ends_at_genesis() {
        assert_eq!(locator_heights(0), vec![0]);
        assert_eq!(locator_heights(3), vec![3, 2, 1, 0]);
        let l = locator_heights(1_000_000);
        assert_eq!(
            &l[..10],
            &(999_991..=1_000_000).rev().collect::<Vec<_>>()[..]
        );
        assert_eq!(*l.last().unwrap(), 0);
        assert!(l.len() < 40);
        assert!(l.windows(2).all(|w| w[0] > w[1]));
    }
}
