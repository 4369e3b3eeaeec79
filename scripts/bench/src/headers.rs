//! Header-chain and SPV benchmarks (issue: chain layer). Run with
//! `cargo run --release -p cairn-bench --bin bench-headers`.
//!
//! Prints, for 100,000 regtest headers mined in memory beforehand:
//! * the raw double-SHA-256 rate of 80-byte headers (baseline, same run);
//! * header validation rate from memory (batches of 2,000), and with the
//!   node's RocksDB writes, each with its ratio to the baseline (goal >= 0.3
//!   including RocksDB writes);
//! * BIP37 proof verification rate on real block 413,567.

use std::hint::black_box;
use std::time::Instant;

use bitcoin::block::{Header, Version};
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::merkle_tree::MerkleBlock;
use bitcoin::{Block, CompactTarget, TxMerkleNode};
use cairn_chain_anchor::spv::check_proof;
use cairn_chain_anchor::{ChainNetwork, ChainParams, HeaderChain};

const N: usize = 100_000;
const BATCH: usize = 2_000;
const NOW: u64 = 4_000_000_000;

fn mine_chain(genesis: &Header, n: usize) -> Vec<Header> {
    let mut out = Vec::with_capacity(n);
    let (mut prev, mut time) = (genesis.block_hash(), genesis.time);
    for i in 0..n {
        time += 600;
        let mut root = [0u8; 32];
        root[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let mut h = Header {
            version: Version::from_consensus(4),
            prev_blockhash: prev,
            merkle_root: TxMerkleNode::from_byte_array(root),
            time,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        };
        while !h.target().is_met_by(h.block_hash()) {
            h.nonce += 1;
        }
        prev = h.block_hash();
        out.push(h);
    }
    out
}

fn main() {
    let params = ChainParams::new(ChainNetwork::Regtest);
    let headers = mine_chain(&params.genesis, N);

    let t = Instant::now();
    for h in &headers {
        black_box(black_box(h).block_hash());
    }
    let raw = N as f64 / t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut chain = HeaderChain::new(params.clone());
    for batch in headers.chunks(BATCH) {
        black_box(chain.connect(batch, NOW).expect("valid headers"));
    }
    let mem = N as f64 / t.elapsed().as_secs_f64();
    assert_eq!(chain.height() as usize, N);

    let dir = tempfile::tempdir().expect("temp dir");
    let store = cairn_node::Store::open(dir.path()).expect("store");
    let t = Instant::now();
    let mut chain = HeaderChain::new(params.clone());
    for batch in headers.chunks(BATCH) {
        let u = chain.connect(batch, NOW).expect("valid headers");
        store
            .apply_chain_update(&u, &chain.tip().hash)
            .expect("write");
    }
    let stored = N as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let reloaded = store.load_header_chain(params).expect("load");
    let reload_s = t.elapsed().as_secs_f64();
    assert_eq!(reloaded.tip(), chain.tip());

    let raw_block = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../chain-anchor/testdata/block413567.raw"
    ))
    .expect("block file");
    let block: Block = deserialize(&raw_block).expect("block");
    let cases: Vec<(Vec<u8>, Vec<u8>)> = block
        .txdata
        .iter()
        .step_by(15)
        .map(|tx| {
            let id = tx.compute_txid();
            (
                serialize(&MerkleBlock::from_block_with_predicate(&block, |t| {
                    *t == id
                })),
                serialize(tx),
            )
        })
        .collect();
    let rounds = 20;
    let t = Instant::now();
    for _ in 0..rounds {
        for (proof, tx) in &cases {
            black_box(check_proof(proof, tx).expect("valid proof"));
        }
    }
    let proofs = (rounds * cases.len()) as f64 / t.elapsed().as_secs_f64();

    println!("bench-headers ({N} regtest headers, batches of {BATCH})");
    println!();
    println!(
        "  raw double-SHA-256 of 80-byte headers {raw:>12.0} headers/s   (baseline, same run)"
    );
    println!(
        "  validation, in memory                 {mem:>12.0} headers/s   ratio {:.3}",
        mem / raw
    );
    println!(
        "  validation + RocksDB writes           {stored:>12.0} headers/s   ratio {:.3}   (goal >= 0.3: {})",
        stored / raw,
        if stored / raw >= 0.3 { "met" } else { "NOT met" }
    );
    println!(
        "  reload {N} headers from RocksDB      {:>12.3} s",
        reload_s
    );
    println!();
    println!(
        "  BIP37 proof verification (block 413,567, {} txs of {})  {proofs:>8.0} proofs/s",
        cases.len(),
        block.txdata.len()
    );
}
