//! Transaction inclusion proofs: a BIP37 partial merkle tree (Bitcoin Core's
//! `gettxoutproof` format: block header ‖ partial merkle tree) plus the raw
//! transaction, checked against the validated header chain.
//!
//! Guards against the known SPV traps: every malformed partial-tree class
//! (including identical siblings, CVE-2012-2459), 64-byte transactions that
//! could pose as inner merkle nodes, a txid that is not the given transaction's,
//! and blocks that are unknown, off the best chain or not buried deep enough.
//! Each rejection has its own error.

use bitcoin::consensus::deserialize;
use bitcoin::merkle_tree::{MerkleBlock, MerkleBlockError};
use bitcoin::{BlockHash, Transaction, Txid};

use crate::headers::{BlockStatus, HeaderChain};

/// Largest proof accepted (a block of 4 million weight units has at most
/// ~25,000 transactions: the tree is far smaller than this).
pub const MAX_PROOF_LEN: usize = 1 << 20;
/// Largest transaction accepted (consensus maximum weight / 1).
pub const MAX_TX_LEN: usize = 4_000_000;

/// Why a proof is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpvError {
    /// The proof bytes do not decode.
    #[error("the proof does not decode: {0}")]
    MalformedProof(String),
    /// The transaction bytes do not decode.
    #[error("the transaction does not decode: {0}")]
    MalformedTransaction(String),
    /// Input larger than the bound.
    #[error("input of {len} bytes is larger than {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A transaction of exactly 64 bytes (without witness) could be an inner node.
    #[error("a 64-byte transaction cannot be proven (it could pose as an inner merkle node)")]
    SixtyFourByteTransaction,
    /// The tree's root is not the header's merkle root.
    #[error("the partial merkle tree's root does not match the block header")]
    MerkleRootMismatch,
    /// The tree claims no transactions.
    #[error("the partial merkle tree has no transactions")]
    NoTransactions,
    /// The tree claims more transactions than a block can hold.
    #[error("the partial merkle tree claims too many transactions")]
    TooManyTransactions,
    /// More hashes than transactions.
    #[error("the partial merkle tree has more hashes than transactions")]
    TooManyHashes,
    /// Fewer flag bits than hashes.
    #[error("the partial merkle tree has fewer flag bits than hashes")]
    NotEnoughBits,
    /// Flag bits left over.
    #[error("the partial merkle tree has unused flag bits")]
    BitsNotConsumed,
    /// Hashes left over.
    #[error("the partial merkle tree has unused hashes")]
    HashesNotConsumed,
    /// Ran out of flag bits.
    #[error("the partial merkle tree runs out of flag bits")]
    BitsOverflow,
    /// Ran out of hashes.
    #[error("the partial merkle tree runs out of hashes")]
    HashesOverflow,
    /// Identical left and right siblings (CVE-2012-2459).
    #[error("the partial merkle tree has identical sibling hashes (CVE-2012-2459)")]
    IdenticalSiblings,
    /// An error class this build does not know.
    #[error("the partial merkle tree is invalid: {0}")]
    OtherTreeError(String),
    /// The proof does not prove the given transaction.
    #[error("the proof proves {proven:?}, not transaction {txid}")]
    TxidMismatch {
        /// The transaction's txid.
        txid: Txid,
        /// What the proof proves.
        proven: Vec<Txid>,
    },
    /// The block is not in the header chain.
    #[error("block {0} is not in the validated header chain")]
    UnknownBlock(BlockHash),
    /// The block is on a side branch.
    #[error("block {0} is not in the best chain")]
    NotInBestChain(BlockHash),
    /// Not buried deep enough.
    #[error("block {block} has {have} confirmations, {need} required")]
    TooFewConfirmations {
        /// The block.
        block: BlockHash,
        /// Confirmations it has.
        have: u32,
        /// Confirmations required.
        need: u32,
    },
}

impl From<MerkleBlockError> for SpvError {
    fn from(e: MerkleBlockError) -> Self {
        use MerkleBlockError as M;
        match e {
            M::MerkleRootMismatch => SpvError::MerkleRootMismatch,
            M::NoTransactions => SpvError::NoTransactions,
            M::TooManyTransactions => SpvError::TooManyTransactions,
            M::TooManyHashes => SpvError::TooManyHashes,
            M::NotEnoughBits => SpvError::NotEnoughBits,
            M::NotAllBitsConsumed => SpvError::BitsNotConsumed,
            M::NotAllHashesConsumed => SpvError::HashesNotConsumed,
            M::BitsArrayOverflow => SpvError::BitsOverflow,
            M::HashesArrayOverflow => SpvError::HashesOverflow,
            M::IdenticalHashesFound => SpvError::IdenticalSiblings,
            other => SpvError::OtherTreeError(format!("{other:?}")),
        }
    }
}

/// A transaction proven to be in a block of the best chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inclusion {
    /// The transaction.
    pub tx: Transaction,
    /// Its txid.
    pub txid: Txid,
    /// The block that holds it.
    pub block: BlockHash,
    /// The block's height.
    pub height: u32,
    /// Confirmations at the chain's tip.
    pub confirmations: u32,
}

/// Checks the proof and transaction on their own (no chain): returns the
/// decoded merkle block, the transaction and its txid.
pub fn check_proof(
    proof: &[u8],
    raw_tx: &[u8],
) -> Result<(MerkleBlock, Transaction, Txid), SpvError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(SpvError::TooLarge {
            len: proof.len(),
            max: MAX_PROOF_LEN,
        });
    }
    if raw_tx.len() > MAX_TX_LEN {
        return Err(SpvError::TooLarge {
            len: raw_tx.len(),
            max: MAX_TX_LEN,
        });
    }
    let mb: MerkleBlock =
        deserialize(proof).map_err(|e| SpvError::MalformedProof(e.to_string()))?;
    let tx: Transaction =
        deserialize(raw_tx).map_err(|e| SpvError::MalformedTransaction(e.to_string()))?;
    let txid = check_decoded(&mb, &tx)?;
    Ok((mb, tx, txid))
}

/// [`check_proof`] for values already decoded: returns the txid of `tx`
/// once `mb` is shown to prove it.
pub fn check_decoded(mb: &MerkleBlock, tx: &Transaction) -> Result<Txid, SpvError> {
    if tx.base_size() == 64 {
        return Err(SpvError::SixtyFourByteTransaction);
    }
    let mut matches = Vec::new();
    let mut indexes = Vec::new();
    mb.extract_matches(&mut matches, &mut indexes)?;
    let txid = tx.compute_txid();
    if !matches.contains(&txid) {
        return Err(SpvError::TxidMismatch {
            txid,
            proven: matches,
        });
    }
    Ok(txid)
}

/// Verifies that `raw_tx` is in a block of `chain`'s best chain with at least
/// `min_confirmations` confirmations, by the BIP37 proof `proof`.
pub fn verify_inclusion(
    chain: &HeaderChain,
    proof: &[u8],
    raw_tx: &[u8],
    min_confirmations: u32,
) -> Result<Inclusion, SpvError> {
    let (mb, tx, txid) = check_proof(proof, raw_tx)?;
    locate(chain, &mb, tx, txid, min_confirmations)
}

/// [`verify_inclusion`] for values already decoded.
pub fn verify_decoded(
    chain: &HeaderChain,
    mb: &MerkleBlock,
    tx: &Transaction,
    min_confirmations: u32,
) -> Result<Inclusion, SpvError> {
    let txid = check_decoded(mb, tx)?;
    locate(chain, mb, tx.clone(), txid, min_confirmations)
}

/// Places a checked proof's block in `chain`.
fn locate(
    chain: &HeaderChain,
    mb: &MerkleBlock,
    tx: Transaction,
    txid: Txid,
    min_confirmations: u32,
) -> Result<Inclusion, SpvError> {
    let block = mb.header.block_hash();
    match chain.status(&block) {
        BlockStatus::Unknown => Err(SpvError::UnknownBlock(block)),
        BlockStatus::SideBranch { .. } => Err(SpvError::NotInBestChain(block)),
        BlockStatus::Best {
            height,
            confirmations,
        } => {
            if confirmations < min_confirmations {
                return Err(SpvError::TooFewConfirmations {
                    block,
                    have: confirmations,
                    need: min_confirmations,
                });
            }
            Ok(Inclusion {
                tx,
                txid,
                block,
                height,
                confirmations,
            })
        }
    }
}
