//! The validated header chain, sans I/O: headers and the node's clock go in,
//! a [`ChainUpdate`] (what to persist, which blocks left and joined the best
//! chain) comes out. Storage is the caller's: it persists `added`, deletes
//! `pruned`, records `tip`, and on restart hands the entries back to
//! [`HeaderChain::restore`] without re-validating them.
//!
//! Rules (Bitcoin Core's `CheckBlockHeader` / `ContextualCheckBlockHeader`):
//! target in range and met by the hash; `bits` equal to what the network's
//! retarget rules require (2016-block periods with the 4x clamp, min-difficulty
//! blocks where allowed, BIP94 on testnet4, none on regtest); time above the
//! median of the previous 11; not more than 2 hours past the node's clock;
//! BIP94 time-warp rule; version floors after BIP34/65/66; checkpoints.
//!
//! Bounds: at most [`MAX_BATCH`] headers per call, validated in memory before
//! anything is kept. A branch is kept only if it has more work than the best
//! chain, or forks at most [`MAX_SIDE_DEPTH`] blocks below the tip (and side
//! branches hold at most [`MAX_SIDE_HEADERS`] headers in all), so a source
//! feeding long low-work chains makes the node store nothing.

use std::collections::{BTreeSet, HashMap};

use bitcoin::block::Header;
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::pow::{CompactTarget, Target, Work};
use bitcoin::BlockHash;

use crate::network::ChainParams;

/// Most headers accepted in one call.
pub const MAX_BATCH: usize = 20_000;
/// Deepest fork (blocks below the tip) at which a side branch with less work is kept.
pub const MAX_SIDE_DEPTH: u32 = 144;
/// Most side-branch headers kept in all.
pub const MAX_SIDE_HEADERS: usize = 10_000;
/// How far past the node's clock a header's time may be (seconds).
pub const MAX_FUTURE_DRIFT: u64 = 2 * 60 * 60;
/// BIP94: the first block of a period may be at most this much earlier than its parent.
pub const BIP94_MAX_TIMEWARP: u32 = 600;
const MEDIAN_TIME_SPAN: usize = 11;

/// A validated header and what the chain knows about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderEntry {
    /// The header.
    pub header: Header,
    /// Its hash.
    pub hash: BlockHash,
    /// Its height.
    pub height: u32,
    /// Total work of the chain ending here.
    pub chain_work: Work,
    /// Bits of the nearest ancestor-or-self that is a period boundary or not a
    /// min-difficulty block (what min-difficulty networks fall back to).
    pub last_normal_bits: CompactTarget,
}

/// Length of [`HeaderEntry::encode`].
pub const ENTRY_LEN: usize = 80 + 4 + 32 + 4;

impl HeaderEntry {
    /// Storage encoding: header (80) ‖ height u32 BE ‖ chain work (32, BE) ‖ last_normal_bits u32 BE.
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[..80].copy_from_slice(&serialize(&self.header));
        out[80..84].copy_from_slice(&self.height.to_be_bytes());
        out[84..116].copy_from_slice(&self.chain_work.to_be_bytes());
        out[116..].copy_from_slice(&self.last_normal_bits.to_consensus().to_be_bytes());
        out
    }

    /// Decodes [`HeaderEntry::encode`]'s output.
    pub fn decode(b: &[u8]) -> Option<HeaderEntry> {
        if b.len() != ENTRY_LEN {
            return None;
        }
        let header: Header = deserialize(&b[..80]).ok()?;
        let mut work = [0u8; 32];
        work.copy_from_slice(&b[84..116]);
        Some(HeaderEntry {
            hash: header.block_hash(),
            header,
            height: u32::from_be_bytes([b[80], b[81], b[82], b[83]]),
            chain_work: Work::from_be_bytes(work),
            last_normal_bits: CompactTarget::from_consensus(u32::from_be_bytes([
                b[116], b[117], b[118], b[119],
            ])),
        })
    }
}

/// Why a batch of headers was refused. Nothing of a refused batch is kept.
/// `index` is the position of the offending header in the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Too many headers in one call.
    #[error("{len} headers in one batch, more than {MAX_BATCH}")]
    BatchTooLarge {
        /// Batch length.
        len: usize,
    },
    /// The parent is not known.
    #[error("header {index} builds on unknown block {prev}")]
    UnknownParent {
        /// Position in the batch.
        index: usize,
        /// The unknown parent.
        prev: BlockHash,
    },
    /// The target is negative, zero, overflows or is above the network's limit.
    #[error(
        "header {index} ({hash}) has a target outside the network's range (bits {bits:#010x})"
    )]
    TargetOutOfRange {
        /// Position in the batch.
        index: usize,
        /// Header hash.
        hash: BlockHash,
        /// Its bits.
        bits: u32,
    },
    /// The hash does not meet the header's own target.
    #[error("header {index} ({hash}) does not meet its proof-of-work target")]
    BadProofOfWork {
        /// Position in the batch.
        index: usize,
        /// Header hash.
        hash: BlockHash,
    },
    /// `bits` differ from what the retarget rules require.
    #[error("header {index} ({hash}) at height {height} has bits {found:#010x}, the network's rules require {expected:#010x}")]
    BadDifficulty {
        /// Position in the batch.
        index: usize,
        /// Header hash.
        hash: BlockHash,
        /// Its height.
        height: u32,
        /// Required bits.
        expected: u32,
        /// Bits found.
        found: u32,
    },
    /// Time not above the median of the previous 11 blocks.
    #[error("header {index} ({hash}) time {time} is not after the median time past {median}")]
    TimeTooOld {
        /// Position in the batch.
        index: usize,
        /// Header hash.
        hash: BlockHash,
        /// Its time.
        time: u32,
        /// Median time past of its parent.
        median: u32,
    },
    /// Time more than 2 hours past the node's clock.
    #[error(
        "header {index} ({hash}) time {time} is more than 2 hours after this node's clock ({now})"
    )]
    TimeTooNew {
        /// Position in the batch.
        index: usize,
        /// Header hash.
        hash: BlockHash,
        /// Its time.
        time: u32,
        /// The node's clock.
        now: u64,
    },
    /// BIP94 time-warp rule broken at a period boundary.
    #[error("header {index} ({hash}) starts a difficulty period more than 600 s before its parent (BIP94)")]
    TimeWarp {
        /// Position in the batch.
        index: usize,
        /// Header hash.
        hash: BlockHash,
    },
    /// A version below the floor of an active soft fork.
    #[error("header {index} ({hash}) has obsolete version {version} at height {height}")]
    ObsoleteVersion {
        /// Position in the batch.
        index: usize,
        /// Header hash.
        hash: BlockHash,
        /// Its version.
        version: i32,
        /// Its height.
        height: u32,
    },
    /// A header at a checkpoint height with another hash.
    #[error(
        "header {index} at checkpoint height {height} is {hash}, the checkpoint is {expected}"
    )]
    CheckpointMismatch {
        /// Position in the batch.
        index: usize,
        /// Height.
        height: u32,
        /// Header hash.
        hash: BlockHash,
        /// Checkpoint hash.
        expected: BlockHash,
    },
    /// A header forking from the best chain below the last checkpoint.
    #[error("header {index} ({hash}) forks at height {height}, below the last checkpoint ({checkpoint})")]
    ForkBelowCheckpoint {
        /// Position in the batch.
        index: usize,
        /// Header hash.
        hash: BlockHash,
        /// Its height.
        height: u32,
        /// Height of the last checkpoint.
        checkpoint: u32,
    },
    /// A branch with no more work than the best chain, forking too deep to keep.
    #[error("a branch of {len} headers forking at height {fork_height} ({depth} below the tip) has no more work than the best chain; not kept")]
    LowWork {
        /// Headers in the branch.
        len: usize,
        /// Height of the fork point.
        fork_height: u32,
        /// Depth of the fork below the tip.
        depth: u32,
    },
    /// Side branches are full.
    #[error(
        "side branches already hold {MAX_SIDE_HEADERS} headers; a low-work branch was not kept"
    )]
    SideBranchesFull,
}

/// Where a block stands in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockStatus {
    /// Not known.
    Unknown,
    /// Known, on a side branch.
    SideBranch {
        /// Its height.
        height: u32,
    },
    /// In the best chain.
    Best {
        /// Its height.
        height: u32,
        /// Confirmations at the tip (1 for the tip itself).
        confirmations: u32,
    },
}

/// What a successful [`HeaderChain::connect`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainUpdate {
    /// New entries to persist.
    pub added: Vec<HeaderEntry>,
    /// Side-branch entries dropped (too deep below the new tip): delete them.
    pub pruned: Vec<BlockHash>,
    /// Blocks that left the best chain, from the old tip down.
    pub disconnected: Vec<(u32, BlockHash)>,
    /// Blocks that joined the best chain, from the fork point up.
    pub connected: Vec<(u32, BlockHash)>,
}

impl ChainUpdate {
    /// Whether blocks left the best chain.
    pub fn is_reorg(&self) -> bool {
        !self.disconnected.is_empty()
    }
}

/// Why stored entries cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The recorded tip is not among the entries.
    #[error("the stored tip {0} is not among the stored headers")]
    MissingTip(BlockHash),
    /// A best-chain entry's parent is missing.
    #[error("stored header {0} has no stored parent")]
    Broken(BlockHash),
    /// The stored chain starts at another genesis.
    #[error("the stored header chain belongs to another network")]
    WrongGenesis,
}

/// A validated header chain with its side branches.
#[derive(Debug, Clone)]
pub struct HeaderChain {
    params: ChainParams,
    index: HashMap<BlockHash, HeaderEntry>,
    best: Vec<BlockHash>,
    side: BTreeSet<(u32, BlockHash)>,
}

fn compact_in_range(bits: CompactTarget, limit: Target) -> bool {
    let c = bits.to_consensus();
    let mantissa = c & 0x007f_ffff;
    let exponent = c >> 24;
    let negative = c & 0x0080_0000 != 0 && mantissa != 0;
    let overflow = mantissa != 0
        && (exponent > 34
            || (mantissa > 0xff && exponent > 33)
            || (mantissa > 0xffff && exponent > 32));
    let target = Target::from_compact(bits);
    !negative && !overflow && target != Target::ZERO && target <= limit
}

/// Lookups across the chain and a batch being validated.
struct Overlay<'a> {
    chain: &'a HeaderChain,
    pending: Vec<HeaderEntry>,
    pos: HashMap<BlockHash, usize>,
}

impl Overlay<'_> {
    fn get(&self, hash: &BlockHash) -> Option<&HeaderEntry> {
        match self.pos.get(hash) {
            Some(i) => self.pending.get(*i),
            None => self.chain.index.get(hash),
        }
    }

    fn ancestor(&self, from: &HeaderEntry, height: u32) -> Option<HeaderEntry> {
        let mut cur = *from;
        loop {
            if cur.height == height {
                return Some(cur);
            }
            if cur.height < height {
                return None;
            }
            if self.chain.is_best(&cur) {
                return self.chain.at_height(height).copied();
            }
            cur = *self.get(&cur.header.prev_blockhash)?;
        }
    }

    fn median_time_past(&self, parent: &HeaderEntry) -> u32 {
        let mut times = Vec::with_capacity(MEDIAN_TIME_SPAN);
        let mut cur = Some(*parent);
        while let Some(e) = cur {
            times.push(e.header.time);
            if times.len() == MEDIAN_TIME_SPAN || e.height == 0 {
                break;
            }
            cur = self.get(&e.header.prev_blockhash).copied();
        }
        times.sort_unstable();
        times[times.len() / 2]
    }

    /// The bits a child of `parent` with time `time` must have (Core's `GetNextWorkRequired`).
    fn required_bits(&self, parent: &HeaderEntry, time: u32) -> CompactTarget {
        let params = &self.chain.params;
        let p = &params.consensus;
        let interval = params.interval();
        let limit = p.max_attainable_target.to_compact_lossy();
        if !(parent.height + 1).is_multiple_of(interval) {
            if p.allow_min_difficulty_blocks {
                if u64::from(time) > u64::from(parent.header.time) + p.pow_target_spacing * 2 {
                    return limit;
                }
                return parent.last_normal_bits;
            }
            return parent.header.bits;
        }
        if p.no_pow_retargeting {
            return parent.header.bits;
        }
        let first = self
            .ancestor(parent, parent.height + 1 - interval)
            .unwrap_or_else(|| unreachable!("every stored header links back to genesis"));
        retarget(
            params,
            first.header.time,
            first.header.bits,
            parent.header.time,
            parent.header.bits,
        )
    }
}

/// The bits of the first block of a new difficulty period (Core's
/// `CalculateNextWorkRequired`), from the first and last blocks of the period
/// that ends: the actual timespan clamped to [¼, 4] × two weeks scales the
/// last block's target (the first block's on BIP94 networks), capped at the
/// network's limit.
pub fn retarget(
    params: &ChainParams,
    first_time: u32,
    first_bits: CompactTarget,
    last_time: u32,
    last_bits: CompactTarget,
) -> CompactTarget {
    if params.consensus.no_pow_retargeting {
        return last_bits;
    }
    let timespan = (i64::from(last_time) - i64::from(first_time)).max(0) as u64;
    let base = if params.enforce_bip94 {
        first_bits
    } else {
        last_bits
    };
    CompactTarget::from_next_work_required(base, timespan, &params.consensus)
}

impl HeaderChain {
    /// A chain holding only the genesis header of `params`' network.
    pub fn new(params: ChainParams) -> Self {
        let g = params.genesis;
        let genesis = HeaderEntry {
            header: g,
            hash: g.block_hash(),
            height: 0,
            chain_work: g.work(),
            last_normal_bits: g.bits,
        };
        let mut index = HashMap::new();
        index.insert(genesis.hash, genesis);
        HeaderChain {
            params,
            index,
            best: vec![genesis.hash],
            side: BTreeSet::new(),
        }
    }

    /// Rebuilds a chain from stored entries and its recorded tip, without
    /// re-validating (they were validated before they were stored).
    pub fn restore(
        params: ChainParams,
        entries: impl IntoIterator<Item = HeaderEntry>,
        tip: BlockHash,
    ) -> Result<Self, RestoreError> {
        let mut chain = HeaderChain::new(params);
        for e in entries {
            chain.index.insert(e.hash, e);
        }
        let mut cur = *chain.index.get(&tip).ok_or(RestoreError::MissingTip(tip))?;
        let mut best = vec![
            BlockHash::from_raw_hash(bitcoin::hashes::Hash::all_zeros());
            cur.height as usize + 1
        ];
        loop {
            best[cur.height as usize] = cur.hash;
            if cur.height == 0 {
                break;
            }
            let parent = *chain
                .index
                .get(&cur.header.prev_blockhash)
                .ok_or(RestoreError::Broken(cur.hash))?;
            if parent.height + 1 != cur.height {
                return Err(RestoreError::Broken(cur.hash));
            }
            cur = parent;
        }
        if best[0] != chain.params.genesis_hash() {
            return Err(RestoreError::WrongGenesis);
        }
        chain.best = best;
        let side: BTreeSet<(u32, BlockHash)> = chain
            .index
            .values()
            .filter(|e| !chain.is_best(e))
            .map(|e| (e.height, e.hash))
            .collect();
        chain.side = side;
        Ok(chain)
    }

    /// The network parameters.
    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// The best tip.
    pub fn tip(&self) -> &HeaderEntry {
        let hash = self.best[self.best.len() - 1];
        self.index
            .get(&hash)
            .unwrap_or_else(|| unreachable!("best chain entries are indexed"))
    }

    /// Height of the best tip.
    pub fn height(&self) -> u32 {
        (self.best.len() - 1) as u32
    }

    /// The entry of `hash`, if known.
    pub fn get(&self, hash: &BlockHash) -> Option<&HeaderEntry> {
        self.index.get(hash)
    }

    /// The best-chain entry at `height`.
    pub fn at_height(&self, height: u32) -> Option<&HeaderEntry> {
        self.best
            .get(height as usize)
            .and_then(|h| self.index.get(h))
    }

    /// Number of headers kept (best chain and side branches).
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether only the genesis header is known.
    pub fn is_empty(&self) -> bool {
        self.index.len() <= 1
    }

    /// Number of side-branch headers kept.
    pub fn side_len(&self) -> usize {
        self.side.len()
    }

    fn is_best(&self, e: &HeaderEntry) -> bool {
        self.best.get(e.height as usize) == Some(&e.hash)
    }

    /// Where `hash` stands.
    pub fn status(&self, hash: &BlockHash) -> BlockStatus {
        match self.index.get(hash) {
            None => BlockStatus::Unknown,
            Some(e) if self.is_best(e) => BlockStatus::Best {
                height: e.height,
                confirmations: self.height() - e.height + 1,
            },
            Some(e) => BlockStatus::SideBranch { height: e.height },
        }
    }

    /// Validates `headers` (any order that puts parents first; any branches)
    /// against the node's clock `now` (Unix seconds) and keeps them if they are
    /// valid and worth keeping. On error nothing changes.
    pub fn connect(&mut self, headers: &[Header], now: u64) -> Result<ChainUpdate, HeaderError> {
        if headers.len() > MAX_BATCH {
            return Err(HeaderError::BatchTooLarge { len: headers.len() });
        }
        let params = &self.params;
        let p = &params.consensus;
        let interval = params.interval();
        let limit = p.max_attainable_target.to_compact_lossy();
        let mut ov = Overlay {
            chain: self,
            pending: Vec::new(),
            pos: HashMap::new(),
        };
        for (index, h) in headers.iter().enumerate() {
            let hash = h.block_hash();
            if ov.get(&hash).is_some() {
                continue;
            }
            let parent = *ov
                .get(&h.prev_blockhash)
                .ok_or(HeaderError::UnknownParent {
                    index,
                    prev: h.prev_blockhash,
                })?;
            let height = parent.height + 1;
            if !compact_in_range(h.bits, p.max_attainable_target) {
                return Err(HeaderError::TargetOutOfRange {
                    index,
                    hash,
                    bits: h.bits.to_consensus(),
                });
            }
            let target = Target::from_compact(h.bits);
            if !target.is_met_by(hash) {
                return Err(HeaderError::BadProofOfWork { index, hash });
            }
            let expected = ov.required_bits(&parent, h.time);
            if h.bits != expected {
                return Err(HeaderError::BadDifficulty {
                    index,
                    hash,
                    height,
                    expected: expected.to_consensus(),
                    found: h.bits.to_consensus(),
                });
            }
            let median = ov.median_time_past(&parent);
            if h.time <= median {
                return Err(HeaderError::TimeTooOld {
                    index,
                    hash,
                    time: h.time,
                    median,
                });
            }
            if u64::from(h.time) > now.saturating_add(MAX_FUTURE_DRIFT) {
                return Err(HeaderError::TimeTooNew {
                    index,
                    hash,
                    time: h.time,
                    now,
                });
            }
            if params.enforce_bip94
                && height.is_multiple_of(interval)
                && h.time < parent.header.time.saturating_sub(BIP94_MAX_TIMEWARP)
            {
                return Err(HeaderError::TimeWarp { index, hash });
            }
            let v = h.version.to_consensus();
            if (v < 2 && height >= p.bip34_height)
                || (v < 3 && height >= p.bip66_height)
                || (v < 4 && height >= p.bip65_height)
            {
                return Err(HeaderError::ObsoleteVersion {
                    index,
                    hash,
                    version: v,
                    height,
                });
            }
            if let Some(expected) = params.checkpoint_at(height) {
                if expected != hash {
                    return Err(HeaderError::CheckpointMismatch {
                        index,
                        height,
                        hash,
                        expected,
                    });
                }
            }
            if let Some((cp, _)) = params.last_checkpoint() {
                let passed = ov.chain.height() >= cp;
                if passed && height <= cp && ov.chain.best.get(height as usize) != Some(&hash) {
                    return Err(HeaderError::ForkBelowCheckpoint {
                        index,
                        hash,
                        height,
                        checkpoint: cp,
                    });
                }
            }
            let last_normal_bits = if height.is_multiple_of(interval) || h.bits != limit {
                h.bits
            } else {
                parent.last_normal_bits
            };
            let entry = HeaderEntry {
                header: *h,
                hash,
                height,
                chain_work: parent.chain_work + target.to_work(),
                last_normal_bits,
            };
            ov.pos.insert(hash, ov.pending.len());
            ov.pending.push(entry);
        }
        let Some(best_new) =
            ov.pending
                .iter()
                .copied()
                .reduce(|a, b| if b.chain_work > a.chain_work { b } else { a })
        else {
            return Ok(ChainUpdate::default());
        };
        // Walk back from the best new entry to the best chain.
        let mut path = Vec::new();
        let mut cur = best_new;
        while !self.is_best(&cur) {
            path.push(cur);
            cur = *ov
                .get(&cur.header.prev_blockhash)
                .unwrap_or_else(|| unreachable!("validated entries have parents"));
        }
        let fork = cur;
        let pending = std::mem::take(&mut ov.pending);
        let tip = *self.tip();
        let mut update = ChainUpdate::default();
        if best_new.chain_work > tip.chain_work {
            for h in (fork.height + 1..=tip.height).rev() {
                let hash = self.best[h as usize];
                update.disconnected.push((h, hash));
                self.side.insert((h, hash));
            }
            self.best.truncate(fork.height as usize + 1);
            for e in path.iter().rev() {
                self.best.push(e.hash);
                self.side.remove(&(e.height, e.hash));
                update.connected.push((e.height, e.hash));
            }
            for e in &pending {
                if !self.is_best(e) {
                    self.side.insert((e.height, e.hash));
                }
                self.index.insert(e.hash, *e);
            }
            update.added = pending;
            // Drop side branches that are now too deep.
            let floor = self.height().saturating_sub(MAX_SIDE_DEPTH);
            while let Some(&(h, hash)) = self.side.first() {
                if h >= floor {
                    break;
                }
                self.side.pop_first();
                self.index.remove(&hash);
                update.pruned.push(hash);
            }
            let pruned: std::collections::HashSet<BlockHash> =
                update.pruned.iter().copied().collect();
            update.added.retain(|e| !pruned.contains(&e.hash));
        } else {
            let depth = tip.height - fork.height;
            if depth > MAX_SIDE_DEPTH {
                return Err(HeaderError::LowWork {
                    len: pending.len(),
                    fork_height: fork.height,
                    depth,
                });
            }
            if self.side.len() + pending.len() > MAX_SIDE_HEADERS {
                return Err(HeaderError::SideBranchesFull);
            }
            for e in &pending {
                self.side.insert((e.height, e.hash));
                self.index.insert(e.hash, *e);
            }
            update.added = pending;
        }
        Ok(update)
    }
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
