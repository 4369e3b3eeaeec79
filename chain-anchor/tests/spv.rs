//! SPV proofs on real mainnet data (block 413,567) and against a validated
//! regtest header chain: every rejection class from a concrete mutated proof.

use bitcoin::block::{Header, Version};
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::merkle_tree::MerkleBlock;
use bitcoin::pow::CompactTarget;
use bitcoin::{
    absolute, transaction, Amount, Block, BlockHash, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Txid, Witness,
};
use cairn_chain_anchor::spv::{check_proof, verify_inclusion, SpvError};
use cairn_chain_anchor::{ChainNetwork, ChainParams, HeaderChain};

const NOW: u64 = 2_000_000_000;

fn real_block() -> Block {
    let raw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/block413567.raw"
    ))
    .unwrap();
    deserialize(&raw).unwrap()
}

fn proof_for(block: &Block, txids: &[Txid]) -> Vec<u8> {
    serialize(&MerkleBlock::from_block_with_predicate(block, |t| {
        txids.contains(t)
    }))
}

#[test]
fn real_block_header_merkle_root_and_proofs() {
    let block = real_block();
    assert_eq!(
        block.block_hash().to_string(),
        "0000000000000000025aff8be8a55df8f89c77296db6198f272d6577325d4069"
    );
    // Its proof-of-work checks against its own target, which is in mainnet's range.
    assert!(block.header.validate_pow(block.header.target()).is_ok());
    assert!(block.header.target() <= bitcoin::Target::MAX_ATTAINABLE_MAINNET);
    // The merkle root recomputed from its transactions matches the header.
    assert!(block.txdata.len() > 1500);
    assert_eq!(block.compute_merkle_root(), Some(block.header.merkle_root));
    // Proofs for several transactions verify; each proves its own transaction.
    let n = block.txdata.len();
    for i in [0, 1, 2, n / 2, n - 2, n - 1] {
        let tx = &block.txdata[i];
        let proof = proof_for(&block, &[tx.compute_txid()]);
        let (mb, _, txid) = check_proof(&proof, &serialize(tx)).unwrap();
        assert_eq!(txid, tx.compute_txid());
        assert_eq!(mb.header, block.header);
        // Another transaction is not proven by it.
        let other = &block.txdata[(i + 1) % n];
        assert!(matches!(
            check_proof(&proof, &serialize(other)),
            Err(SpvError::TxidMismatch { .. })
        ));
    }
}

/// Offsets in a serialized merkle block: header 80, tx count 4, then hashes.
struct Layout {
    hashes_at: usize,
    n_hashes: usize,
    bits_len_at: usize,
}

fn layout(proof: &[u8]) -> Layout {
    // Compact sizes below 0xfd are one byte, true for the small proofs used here.
    let n_hashes = proof[84] as usize;
    assert!(n_hashes < 0xfd);
    let hashes_at = 85;
    Layout {
        hashes_at,
        n_hashes,
        bits_len_at: hashes_at + 32 * n_hashes,
    }
}

fn with_tx_count(proof: &[u8], n: u32) -> Vec<u8> {
    let mut p = proof.to_vec();
    p[80..84].copy_from_slice(&n.to_le_bytes());
    p
}

fn rebuild(proof: &[u8], hashes: &[[u8; 32]], bits: &[u8]) -> Vec<u8> {
    let mut p = proof[..84].to_vec();
    p.push(hashes.len() as u8);
    for h in hashes {
        p.extend_from_slice(h);
    }
    p.push(bits.len() as u8);
    p.extend_from_slice(bits);
    p
}

fn parts(proof: &[u8]) -> (Vec<[u8; 32]>, Vec<u8>) {
    let l = layout(proof);
    let hashes = (0..l.n_hashes)
        .map(|i| {
            proof[l.hashes_at + 32 * i..l.hashes_at + 32 * (i + 1)]
                .try_into()
                .unwrap()
        })
        .collect();
    let n_bits = proof[l.bits_len_at] as usize;
    (
        hashes,
        proof[l.bits_len_at + 1..l.bits_len_at + 1 + n_bits].to_vec(),
    )
}

#[test]
fn every_malformed_tree_class_is_rejected_with_its_own_error() {
    let block = real_block();
    let tx = &block.txdata[700];
    let raw = serialize(tx);
    let good = proof_for(&block, &[tx.compute_txid()]);
    check_proof(&good, &raw).unwrap();
    let (hashes, bits) = parts(&good);
    assert!(hashes.len() > 3);

    // A changed hash: the root no longer matches the header.
    let mut h2 = hashes.clone();
    h2[0][0] ^= 1;
    assert_eq!(
        check_proof(&rebuild(&good, &h2, &bits), &raw).unwrap_err(),
        SpvError::MerkleRootMismatch
    );
    // No transactions.
    assert_eq!(
        check_proof(&with_tx_count(&good, 0), &raw).unwrap_err(),
        SpvError::NoTransactions
    );
    // More transactions than a block can hold.
    assert_eq!(
        check_proof(&with_tx_count(&good, 1_000_000), &raw).unwrap_err(),
        SpvError::TooManyTransactions
    );
    // More hashes than transactions.
    assert_eq!(
        check_proof(&with_tx_count(&good, 2), &raw).unwrap_err(),
        SpvError::TooManyHashes
    );
    // Fewer flag bits than hashes.
    assert_eq!(
        check_proof(&rebuild(&good, &hashes, &[]), &raw).unwrap_err(),
        SpvError::NotEnoughBits
    );
    // Flag bits left over.
    let mut more_bits = bits.clone();
    more_bits.push(0);
    assert_eq!(
        check_proof(&rebuild(&good, &hashes, &more_bits), &raw).unwrap_err(),
        SpvError::BitsNotConsumed
    );
    // A hash left over.
    let mut more_hashes = hashes.clone();
    more_hashes.push([7u8; 32]);
    assert_eq!(
        check_proof(&rebuild(&good, &more_hashes, &bits), &raw).unwrap_err(),
        SpvError::HashesNotConsumed
    );
    // A hash missing: the walk runs out of hashes.
    let fewer = &hashes[..hashes.len() - 1];
    assert_eq!(
        check_proof(&rebuild(&good, fewer, &bits), &raw).unwrap_err(),
        SpvError::HashesOverflow
    );
    // All flags set on a 16-leaf tree with 8 hashes: the walk runs out of flag bits.
    let eight: Vec<[u8; 32]> = (0..8u8).map(|i| [i + 1; 32]).collect();
    let p = rebuild(&with_tx_count(&good, 16), &eight, &[0xff]);
    assert_eq!(check_proof(&p, &raw).unwrap_err(), SpvError::BitsOverflow);
    // Identical siblings (CVE-2012-2459): two leaves with the same hash.
    let txid = tx.compute_txid().to_byte_array();
    let p = rebuild(&with_tx_count(&good, 2), &[txid, txid], &[0b111]);
    assert_eq!(
        check_proof(&p, &raw).unwrap_err(),
        SpvError::IdenticalSiblings
    );
    // Garbage and trailing bytes.
    assert!(matches!(
        check_proof(&good[..100], &raw),
        Err(SpvError::MalformedProof(_))
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert!(matches!(
        check_proof(&trailing, &raw),
        Err(SpvError::MalformedProof(_))
    ));
    assert!(matches!(
        check_proof(&good, &raw[..raw.len() - 1]),
        Err(SpvError::MalformedTransaction(_))
    ));
    // A valid proof still verifies after all the rejections.
    check_proof(&good, &raw).unwrap();
}

#[test]
fn sixty_four_byte_transactions_are_refused() {
    let tx = Transaction {
        version: transaction::Version::ONE,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(1),
            script_pubkey: ScriptBuf::from(vec![0x51; 4]),
        }],
    };
    let raw = serialize(&tx);
    assert_eq!(raw.len(), 64);
    let block = real_block();
    let proof = proof_for(&block, &[block.txdata[1].compute_txid()]);
    assert_eq!(
        check_proof(&proof, &raw).unwrap_err(),
        SpvError::SixtyFourByteTransaction
    );
}

fn mine(prev: BlockHash, time: u32, merkle_root: bitcoin::TxMerkleNode) -> Header {
    let mut h = Header {
        version: Version::from_consensus(4),
        prev_blockhash: prev,
        merkle_root,
        time,
        bits: CompactTarget::from_consensus(0x207f_ffff),
        nonce: 0,
    };
    while !h.target().is_met_by(h.block_hash()) {
        h.nonce += 1;
    }
    h
}

fn empty_blocks(chain: &HeaderChain, n: u32, salt: u8) -> Vec<Header> {
    let mut out: Vec<Header> = Vec::new();
    let tip = chain.tip();
    let (mut prev, mut time) = (tip.hash, tip.header.time);
    for i in 0..n {
        time += 600;
        let h = mine(
            prev,
            time,
            bitcoin::TxMerkleNode::from_byte_array([salt.wrapping_add(i as u8); 32]),
        );
        prev = h.block_hash();
        out.push(h);
    }
    out
}

#[test]
fn inclusion_against_the_validated_chain() {
    let real = real_block();
    let mut chain = HeaderChain::new(ChainParams::new(ChainNetwork::Regtest));
    chain.connect(&empty_blocks(&chain, 5, 1), NOW).unwrap();
    // A regtest block holding real transactions, mined on the tip.
    let txdata: Vec<Transaction> = real.txdata[..7].to_vec();
    let mut block = Block {
        header: mine(
            chain.tip().hash,
            chain.tip().header.time + 600,
            bitcoin::TxMerkleNode::all_zeros(),
        ),
        txdata,
    };
    block.header.merkle_root = block.compute_merkle_root().unwrap();
    block.header = mine(
        block.header.prev_blockhash,
        block.header.time,
        block.header.merkle_root,
    );
    let target = block.txdata[3].clone();
    let proof = proof_for(&block, &[target.compute_txid()]);
    let raw = serialize(&target);

    // Unknown block until its header is in the chain.
    assert_eq!(
        verify_inclusion(&chain, &proof, &raw, 1).unwrap_err(),
        SpvError::UnknownBlock(block.block_hash())
    );
    chain.connect(&[block.header], NOW).unwrap();
    let inc = verify_inclusion(&chain, &proof, &raw, 1).unwrap();
    assert_eq!(
        (inc.height, inc.confirmations, inc.txid),
        (6, 1, target.compute_txid())
    );
    // Too few confirmations, then enough.
    assert_eq!(
        verify_inclusion(&chain, &proof, &raw, 6).unwrap_err(),
        SpvError::TooFewConfirmations {
            block: block.block_hash(),
            have: 1,
            need: 6
        }
    );
    chain.connect(&empty_blocks(&chain, 5, 50), NOW).unwrap();
    assert_eq!(
        verify_inclusion(&chain, &proof, &raw, 6)
            .unwrap()
            .confirmations,
        6
    );

    // A reorg that removes the block: no longer in the best chain.
    let fork_parent = chain.at_height(5).unwrap().hash;
    let mut branch = Vec::new();
    let (mut prev, mut time) = (fork_parent, chain.at_height(5).unwrap().header.time);
    for i in 0..7u8 {
        time += 601;
        let h = mine(
            prev,
            time,
            bitcoin::TxMerkleNode::from_byte_array([200 + i; 32]),
        );
        prev = h.block_hash();
        branch.push(h);
    }
    let u = chain.connect(&branch, NOW).unwrap();
    assert!(u.disconnected.iter().any(|(_, h)| *h == block.block_hash()));
    assert_eq!(
        verify_inclusion(&chain, &proof, &raw, 1).unwrap_err(),
        SpvError::NotInBestChain(block.block_hash())
    );
}
