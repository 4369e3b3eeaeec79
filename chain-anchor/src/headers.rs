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
//! A batch that extends the best tip (the common case while syncing) goes
//! straight into the best chain, and comes out again if a header fails or the
//! batch turns out to branch; other batches are validated in an overlay
//! before anything changes.
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
    /// Side-branch blocks known before that joined the best chain.
    pub revived: Vec<BlockHash>,
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
    /// No headers at all.
    #[error("no stored headers")]
    Empty,
    /// A best-chain entry's parent is missing.
    #[error("stored header {0} has no stored parent")]
    Broken(BlockHash),
    /// The stored chain starts at another genesis.
    #[error("the stored header chain belongs to another network")]
    WrongGenesis,
}

/// Most headers [`HeaderChain::reserve`] makes room for at once (the
/// source says how far its tip is, and a source can lie): about the
/// mainnet chain's length for years to come.
pub const MAX_RESERVE: usize = 1_500_000;

/// Headers [`HeaderChain::reserve`] adds beyond what it is asked for
/// (about two months of blocks), and below which it makes no room at all.
const RESERVE_SLACK: usize = 8 * 1024;

/// A validated header chain with its side branches.
///
/// The best chain is a vector by height with a hash → height index; side
/// branches are kept apart (bounded), so lookups on the best chain need no
/// hashing and a restart rebuilds the chain from headers in height order.
#[derive(Debug, Clone)]
pub struct HeaderChain {
    params: ChainParams,
    best: Vec<HeaderEntry>,
    best_index: HashMap<BlockHash, u32>,
    side: HashMap<BlockHash, HeaderEntry>,
    side_order: BTreeSet<(u32, BlockHash)>,
    /// The batch index of the last `connect`, kept (empty) so its memory is reused.
    scratch: HashMap<BlockHash, usize>,
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

/// Where an entry lives while a batch is validated.
#[derive(Debug, Clone, Copy)]
enum Loc {
    /// In the best chain at this height.
    Best(u32),
    /// In a side branch.
    Side,
    /// In the batch, at this position.
    Pending(usize),
}

/// Lookups across the chain and a batch being validated.
struct Overlay<'a> {
    chain: &'a HeaderChain,
    /// Validated entries of the batch and where their parents are.
    pending: Vec<(HeaderEntry, Loc)>,
    pos: HashMap<BlockHash, usize>,
}

impl Overlay<'_> {
    fn locate(&self, hash: &BlockHash) -> Option<(HeaderEntry, Loc)> {
        if let Some(&h) = self.chain.best_index.get(hash) {
            return Some((self.chain.best[h as usize], Loc::Best(h)));
        }
        if let Some(&i) = self.pos.get(hash) {
            return Some((self.pending[i].0, Loc::Pending(i)));
        }
        self.chain.side.get(hash).map(|e| (*e, Loc::Side))
    }

    fn contains(&self, hash: &BlockHash) -> bool {
        self.chain.best_index.contains_key(hash)
            || self.pos.contains_key(hash)
            || self.chain.side.contains_key(hash)
    }

    /// The parent of `e` (at `loc`).
    fn parent(&self, e: &HeaderEntry, loc: Loc) -> Option<(HeaderEntry, Loc)> {
        match loc {
            Loc::Best(0) => None,
            Loc::Best(h) => Some((self.chain.best[h as usize - 1], Loc::Best(h - 1))),
            Loc::Pending(i) => {
                let ploc = self.pending[i].1;
                match ploc {
                    Loc::Best(h) => Some((self.chain.best[h as usize], ploc)),
                    Loc::Pending(j) => Some((self.pending[j].0, ploc)),
                    Loc::Side => self.locate(&e.header.prev_blockhash),
                }
            }
            Loc::Side => self.locate(&e.header.prev_blockhash),
        }
    }

    fn ancestor(&self, from: &HeaderEntry, loc: Loc, height: u32) -> Option<HeaderEntry> {
        let (mut cur, mut loc) = (*from, loc);
        loop {
            if cur.height == height {
                return Some(cur);
            }
            if cur.height < height {
                return None;
            }
            if let Loc::Best(_) = loc {
                return self.chain.best.get(height as usize).copied();
            }
            (cur, loc) = self.parent(&cur, loc)?;
        }
    }

    fn median_time_past(&self, parent: &HeaderEntry, loc: Loc) -> u32 {
        let mut times = [0u32; MEDIAN_TIME_SPAN];
        let mut n = 0;
        if let Loc::Best(h) = loc {
            let from = (h as usize + 1).saturating_sub(MEDIAN_TIME_SPAN);
            for e in &self.chain.best[from..=h as usize] {
                times[n] = e.header.time;
                n += 1;
            }
        } else {
            let mut cur = Some((*parent, loc));
            while let Some((e, l)) = cur {
                times[n] = e.header.time;
                n += 1;
                if n == MEDIAN_TIME_SPAN {
                    break;
                }
                cur = self.parent(&e, l);
            }
        }
        let times = &mut times[..n];
        times.sort_unstable();
        times[n / 2]
    }

    /// Checks header `h` (hash `hash`, position `index` in its batch) as a
    /// child of `parent` (at `ploc`) against every rule, and returns its entry.
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        rules: &BatchRules,
        index: usize,
        h: &Header,
        hash: BlockHash,
        parent: &HeaderEntry,
        ploc: Loc,
        now: u64,
        works: &mut WorkCache,
    ) -> Result<HeaderEntry, HeaderError> {
        let height = parent.height + 1;
        if !compact_in_range(h.bits, self.chain.params.consensus.max_attainable_target) {
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
        let expected = self.required_bits(parent, ploc, h.time);
        if h.bits != expected {
            return Err(HeaderError::BadDifficulty {
                index,
                hash,
                height,
                expected: expected.to_consensus(),
                found: h.bits.to_consensus(),
            });
        }
        let median = self.median_time_past(parent, ploc);
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
        if self.chain.params.enforce_bip94
            && height.is_multiple_of(rules.interval)
            && h.time < parent.header.time.saturating_sub(BIP94_MAX_TIMEWARP)
        {
            return Err(HeaderError::TimeWarp { index, hash });
        }
        let v = h.version.to_consensus();
        if (v < 2 && height >= self.chain.params.consensus.bip34_height)
            || (v < 3 && height >= self.chain.params.consensus.bip66_height)
            || (v < 4 && height >= self.chain.params.consensus.bip65_height)
        {
            return Err(HeaderError::ObsoleteVersion {
                index,
                hash,
                version: v,
                height,
            });
        }
        if let Some(expected) = self.chain.params.checkpoint_at(height) {
            if expected != hash {
                return Err(HeaderError::CheckpointMismatch {
                    index,
                    height,
                    hash,
                    expected,
                });
            }
        }
        if let Some((cp, _)) = rules.last_checkpoint {
            let passed = self.chain.height() >= cp;
            if passed && height <= cp && self.chain.at_height(height).map(|e| e.hash) != Some(hash)
            {
                return Err(HeaderError::ForkBelowCheckpoint {
                    index,
                    hash,
                    height,
                    checkpoint: cp,
                });
            }
        }
        let last_normal_bits = if height.is_multiple_of(rules.interval) || h.bits != rules.limit {
            h.bits
        } else {
            parent.last_normal_bits
        };
        Ok(HeaderEntry {
            header: *h,
            hash,
            height,
            chain_work: parent.chain_work + works.work(h.bits),
            last_normal_bits,
        })
    }

    /// The bits a child of `parent` with time `time` must have (Core's `GetNextWorkRequired`).
    fn required_bits(&self, parent: &HeaderEntry, loc: Loc, time: u32) -> CompactTarget {
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
            .ancestor(parent, loc, parent.height + 1 - interval)
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

/// What every header of a batch is checked against, worked out once per batch.
struct BatchRules {
    /// Difficulty period length.
    interval: u32,
    /// The network's easiest target, in compact form.
    limit: CompactTarget,
    /// The last checkpoint.
    last_checkpoint: Option<(u32, BlockHash)>,
}

impl BatchRules {
    fn new(params: &ChainParams) -> Self {
        BatchRules {
            interval: params.interval(),
            limit: params.consensus.max_attainable_target.to_compact_lossy(),
            last_checkpoint: params.last_checkpoint(),
        }
    }
}

/// Work of a target, remembering the last bits seen (consecutive headers
/// almost always share them, and the division is the costly part).
struct WorkCache(Option<(CompactTarget, Work)>);

impl WorkCache {
    fn work(&mut self, bits: CompactTarget) -> Work {
        match self.0 {
            Some((b, w)) if b == bits => w,
            _ => {
                let w = Target::from_compact(bits).to_work();
                self.0 = Some((bits, w));
                w
            }
        }
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
        let mut best_index = HashMap::new();
        best_index.insert(genesis.hash, 0);
        HeaderChain {
            params,
            best: vec![genesis],
            best_index,
            side: HashMap::new(),
            side_order: BTreeSet::new(),
            scratch: HashMap::new(),
        }
    }

    /// Rebuilds a chain from stored records without re-validating them (they
    /// were validated before they were stored): the best chain's headers in
    /// height order from genesis, and the side-branch entries. Hashes, chain
    /// work and links are recomputed, so damaged records are detected.
    pub fn restore(
        params: ChainParams,
        best: impl IntoIterator<Item = Header>,
        side: impl IntoIterator<Item = HeaderEntry>,
    ) -> Result<Self, RestoreError> {
        let mut chain = HeaderChain::new(params);
        let mut best = best.into_iter();
        match best.next() {
            Some(g) if g == chain.params.genesis => {}
            Some(_) => return Err(RestoreError::WrongGenesis),
            None => return Err(RestoreError::Empty),
        }
        let interval = chain.params.interval();
        let limit = chain
            .params
            .consensus
            .max_attainable_target
            .to_compact_lossy();
        let mut works = WorkCache(None);
        for header in best {
            let parent = chain.best[chain.best.len() - 1];
            let hash = header.block_hash();
            if header.prev_blockhash != parent.hash {
                return Err(RestoreError::Broken(hash));
            }
            let height = parent.height + 1;
            let entry = HeaderEntry {
                header,
                hash,
                height,
                chain_work: parent.chain_work + works.work(header.bits),
                last_normal_bits: if height.is_multiple_of(interval) || header.bits != limit {
                    header.bits
                } else {
                    parent.last_normal_bits
                },
            };
            chain.best_index.insert(hash, height);
            chain.best.push(entry);
        }
        for e in side {
            if chain.best_index.contains_key(&e.hash) {
                continue;
            }
            chain.side_order.insert((e.height, e.hash));
            chain.side.insert(e.hash, e);
        }
        // Every side entry must link to a known header one height below.
        for e in chain.side.values() {
            let parent_height = match chain.best_index.get(&e.header.prev_blockhash) {
                Some(h) => *h,
                None => match chain.side.get(&e.header.prev_blockhash) {
                    Some(p) => p.height,
                    None => return Err(RestoreError::Broken(e.hash)),
                },
            };
            if parent_height + 1 != e.height {
                return Err(RestoreError::Broken(e.hash));
            }
        }
        Ok(chain)
    }

    /// The network parameters.
    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// The best tip.
    pub fn tip(&self) -> &HeaderEntry {
        &self.best[self.best.len() - 1]
    }

    /// Makes room for `additional` more headers on the best chain (at most
    /// [`MAX_RESERVE`]), and some weeks of blocks beyond, so that a long
    /// sync grows the chain in one allocation rather than by doubling
    /// (which copies the whole chain and briefly holds it twice). A sync
    /// calls it with the distance to the source's tip; a few blocks need no
    /// room made (the vector grows as usual), so a synced node does not
    /// reallocate its chain at every block.
    pub fn reserve(&mut self, additional: u32) {
        let n = (additional as usize).min(MAX_RESERVE);
        if n < RESERVE_SLACK || self.best.capacity() - self.best.len() >= n {
            return;
        }
        self.best.reserve_exact(n + RESERVE_SLACK);
        self.best_index.reserve(n + RESERVE_SLACK);
    }

    /// Height of the best tip.
    pub fn height(&self) -> u32 {
        (self.best.len() - 1) as u32
    }

    /// The entry of `hash`, if known.
    pub fn get(&self, hash: &BlockHash) -> Option<&HeaderEntry> {
        match self.best_index.get(hash) {
            Some(h) => self.best.get(*h as usize),
            None => self.side.get(hash),
        }
    }

    /// The best-chain entry at `height`.
    pub fn at_height(&self, height: u32) -> Option<&HeaderEntry> {
        self.best.get(height as usize)
    }

    /// The best chain's headers from `from` up to the tip.
    pub fn best_headers(&self, from: u32) -> impl Iterator<Item = &Header> {
        self.best
            .get(from as usize..)
            .unwrap_or_default()
            .iter()
            .map(|e| &e.header)
    }

    /// The side-branch entries.
    pub fn side_entries(&self) -> impl Iterator<Item = &HeaderEntry> {
        self.side.values()
    }

    /// Number of headers kept (best chain and side branches).
    pub fn len(&self) -> usize {
        self.best.len() + self.side.len()
    }

    /// Whether only the genesis header is known.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }

    /// Number of side-branch headers kept.
    pub fn side_len(&self) -> usize {
        self.side.len()
    }

    /// Where `hash` stands.
    pub fn status(&self, hash: &BlockHash) -> BlockStatus {
        if let Some(&height) = self.best_index.get(hash) {
            return BlockStatus::Best {
                height,
                confirmations: self.height() - height + 1,
            };
        }
        match self.side.get(hash) {
            Some(e) => BlockStatus::SideBranch { height: e.height },
            None => BlockStatus::Unknown,
        }
    }

    /// Validates `headers` (any order that puts parents first; any branches)
    /// against the node's clock `now` (Unix seconds) and keeps them if they are
    /// valid and worth keeping. On error nothing changes.
    pub fn connect(&mut self, headers: &[Header], now: u64) -> Result<ChainUpdate, HeaderError> {
        if headers.len() > MAX_BATCH {
            return Err(HeaderError::BatchTooLarge { len: headers.len() });
        }
        let rules = BatchRules::new(&self.params);
        if headers
            .first()
            .is_some_and(|h| h.prev_blockhash == self.tip().hash)
        {
            if let Some(update) = self.extend_tip(headers, now, &rules)? {
                return Ok(update);
            }
        }
        self.connect_branches(headers, now, &rules)
    }

    /// The common case: every header of the batch extends the best tip.
    /// Headers go straight into the best chain; if one fails, they all come
    /// out again (the error is returned), and if the batch turns out to
    /// branch, they come out and `None` sends it down the general path.
    fn extend_tip(
        &mut self,
        headers: &[Header],
        now: u64,
        rules: &BatchRules,
    ) -> Result<Option<ChainUpdate>, HeaderError> {
        let start = self.best.len();
        self.best.reserve(headers.len());
        self.best_index.reserve(headers.len());
        let mut works = WorkCache(None);
        let mut outcome = Ok(true);
        for (index, h) in headers.iter().enumerate() {
            let parent = self.best[self.best.len() - 1];
            if h.prev_blockhash != parent.hash {
                outcome = Ok(false);
                break;
            }
            let hash = h.block_hash();
            let ov = Overlay {
                chain: self,
                pending: Vec::new(),
                pos: HashMap::new(),
            };
            let ploc = Loc::Best(parent.height);
            match ov.check(rules, index, h, hash, &parent, ploc, now, &mut works) {
                Ok(entry) => {
                    self.best_index.insert(hash, entry.height);
                    self.best.push(entry);
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if !matches!(outcome, Ok(true)) {
            for e in &self.best[start..] {
                self.best_index.remove(&e.hash);
            }
            self.best.truncate(start);
            return outcome.map(|_| None);
        }
        let added = &self.best[start..];
        let mut update = ChainUpdate {
            connected: added.iter().map(|e| (e.height, e.hash)).collect(),
            added: added.to_vec(),
            ..ChainUpdate::default()
        };
        self.prune_side(&mut update);
        Ok(Some(update))
    }

    /// The general case: a batch in any order that puts parents first, on
    /// any branches, validated in an overlay before anything changes.
    fn connect_branches(
        &mut self,
        headers: &[Header],
        now: u64,
        rules: &BatchRules,
    ) -> Result<ChainUpdate, HeaderError> {
        let mut works = WorkCache(None);
        let mut pos = std::mem::take(&mut self.scratch);
        pos.clear();
        pos.reserve(headers.len());
        let mut ov = Overlay {
            chain: self,
            pending: Vec::with_capacity(headers.len()),
            pos,
        };
        for (index, h) in headers.iter().enumerate() {
            let hash = h.block_hash();
            // Shortcut: the header extends the previous one of the batch.
            let last = ov.pending.last().map(|(e, _)| e.hash);
            let (parent, ploc) = if last == Some(h.prev_blockhash) {
                let i = ov.pending.len() - 1;
                (ov.pending[i].0, Loc::Pending(i))
            } else {
                if ov.contains(&hash) {
                    continue;
                }
                ov.locate(&h.prev_blockhash)
                    .ok_or(HeaderError::UnknownParent {
                        index,
                        prev: h.prev_blockhash,
                    })?
            };
            if matches!(ploc, Loc::Pending(_)) && ov.pos.contains_key(&hash) {
                continue;
            }
            let entry = ov.check(rules, index, h, hash, &parent, ploc, now, &mut works)?;
            ov.pos.insert(hash, ov.pending.len());
            ov.pending.push((entry, ploc));
        }
        let Some(best_new) = ov.pending.iter().map(|(e, _)| *e).reduce(|a, b| {
            if b.chain_work > a.chain_work {
                b
            } else {
                a
            }
        }) else {
            return Ok(ChainUpdate::default());
        };
        // Walk back from the best new entry to the best chain.
        let mut path = Vec::new();
        let mut cur = (best_new, Loc::Pending(ov.pos[&best_new.hash]));
        let fork_height = loop {
            if let Loc::Best(h) = cur.1 {
                break h;
            }
            path.push(cur);
            cur = ov
                .parent(&cur.0, cur.1)
                .unwrap_or_else(|| unreachable!("validated entries have parents"));
        };
        let pending: Vec<HeaderEntry> = std::mem::take(&mut ov.pending)
            .into_iter()
            .map(|(e, _)| e)
            .collect();
        let mut pos = std::mem::take(&mut ov.pos);
        pos.clear();
        self.scratch = pos;
        let tip = *self.tip();
        let mut update = ChainUpdate::default();
        if best_new.chain_work > tip.chain_work {
            for h in (fork_height + 1..=tip.height).rev() {
                let e = self.best[h as usize];
                update.disconnected.push((h, e.hash));
                self.best_index.remove(&e.hash);
                self.side_order.insert((h, e.hash));
                self.side.insert(e.hash, e);
            }
            self.best.truncate(fork_height as usize + 1);
            let joined: std::collections::HashSet<BlockHash> =
                path.iter().map(|(e, _)| e.hash).collect();
            for (e, loc) in path.iter().rev() {
                if let Loc::Side = loc {
                    self.side.remove(&e.hash);
                    self.side_order.remove(&(e.height, e.hash));
                    update.revived.push(e.hash);
                }
                self.best_index.insert(e.hash, e.height);
                self.best.push(*e);
                update.connected.push((e.height, e.hash));
            }
            for e in &pending {
                if !joined.contains(&e.hash) {
                    self.side_order.insert((e.height, e.hash));
                    self.side.insert(e.hash, *e);
                }
            }
            update.added = pending;
            self.prune_side(&mut update);
        } else {
            let depth = tip.height - fork_height;
            if depth > MAX_SIDE_DEPTH {
                return Err(HeaderError::LowWork {
                    len: pending.len(),
                    fork_height,
                    depth,
                });
            }
            if self.side.len() + pending.len() > MAX_SIDE_HEADERS {
                return Err(HeaderError::SideBranchesFull);
            }
            for e in &pending {
                self.side_order.insert((e.height, e.hash));
                self.side.insert(e.hash, *e);
            }
            update.added = pending;
        }
        Ok(update)
    }

    /// Drops side branches that are now too deep below the tip, with their
    /// descendants, and records them in `update`.
    fn prune_side(&mut self, update: &mut ChainUpdate) {
        // Drop side branches that are now too deep.
        let floor = self.height().saturating_sub(MAX_SIDE_DEPTH);
        while let Some(&(h, hash)) = self.side_order.first() {
            if h >= floor {
                break;
            }
            self.side_order.pop_first();
            self.side.remove(&hash);
            update.pruned.push(hash);
        }
        if !update.pruned.is_empty() {
            // Descendants of pruned entries go too: no side entry is left
            // without a parent. Ascending heights put parents first.
            let mut gone = std::collections::HashSet::new();
            for (_, hash) in &self.side_order {
                let prev = self.side[hash].header.prev_blockhash;
                if gone.contains(&prev)
                    || (!self.best_index.contains_key(&prev) && !self.side.contains_key(&prev))
                {
                    gone.insert(*hash);
                }
            }
            for hash in gone {
                let e = self.side.remove(&hash).unwrap_or_else(|| unreachable!());
                self.side_order.remove(&(e.height, hash));
                update.pruned.push(hash);
            }
        }
        if !update.pruned.is_empty() {
            let pruned: std::collections::HashSet<BlockHash> =
                update.pruned.iter().copied().collect();
            update.added.retain(|e| !pruned.contains(&e.hash));
        }
    }

    /// The storage records that bring a store holding the chain as it was
    /// before `update` to the chain as it is now (see [`HeaderRecords`]).
    pub fn records(&self, update: &ChainUpdate) -> HeaderRecords {
        let height = self.height();
        let mut rec = HeaderRecords {
            chunks: Vec::new(),
            stale_chunks: Vec::new(),
            side_put: Vec::new(),
            side_delete: Vec::new(),
            tip_height: height,
            tip_hash: self.tip().hash,
        };
        if let Some(&(first, _)) = update.connected.first() {
            for chunk in first / CHUNK_LEN..=height / CHUNK_LEN {
                let start = chunk * CHUNK_LEN;
                let end = (start + CHUNK_LEN - 1).min(height);
                let mut bytes = Vec::with_capacity(((end - start + 1) * 80) as usize);
                for e in &self.best[start as usize..=end as usize] {
                    bitcoin::consensus::Encodable::consensus_encode(&e.header, &mut bytes)
                        .unwrap_or_else(|_| unreachable!("writing to a Vec cannot fail"));
                }
                rec.chunks.push((chunk, bytes));
            }
        }
        if let Some(&(old_height, _)) = update.disconnected.first() {
            rec.stale_chunks = (height / CHUNK_LEN + 1..=old_height / CHUNK_LEN).collect();
        }
        let pruned: std::collections::HashSet<&BlockHash> = update.pruned.iter().collect();
        rec.side_put = update
            .added
            .iter()
            .filter(|e| self.side.contains_key(&e.hash))
            .copied()
            .chain(
                update
                    .disconnected
                    .iter()
                    .filter(|(_, h)| !pruned.contains(h))
                    .filter_map(|(_, h)| self.side.get(h).copied()),
            )
            .collect();
        rec.side_delete = update
            .pruned
            .iter()
            .chain(update.revived.iter())
            .copied()
            .collect();
        rec
    }
}

/// Best-chain headers are stored in chunks of this many, by height.
pub const CHUNK_LEN: u32 = 2016;

/// What to write so a store matches the chain after a [`ChainUpdate`]:
/// best-chain chunks (chunk `i` holds the 80-byte headers of heights
/// `i × CHUNK_LEN ..`, the last one partial), chunks past the new tip to
/// delete, side-branch entries to put and delete, and the tip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRecords {
    /// Chunks to write: index and concatenated headers.
    pub chunks: Vec<(u32, Vec<u8>)>,
    /// Chunks that now lie past the tip.
    pub stale_chunks: Vec<u32>,
    /// Side-branch entries to store.
    pub side_put: Vec<HeaderEntry>,
    /// Side-branch entries to delete.
    pub side_delete: Vec<BlockHash>,
    /// The tip height.
    pub tip_height: u32,
    /// The tip hash.
    pub tip_hash: BlockHash,
}

/// Decodes a stored chunk into headers.
pub fn decode_chunk(bytes: &[u8]) -> Option<Vec<Header>> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(80) || bytes.len() > CHUNK_LEN as usize * 80
    {
        return None;
    }
    bytes.chunks(80).map(|c| deserialize(c).ok()).collect()
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
