//! Header-chain and SPV benchmarks (issue: chain layer). Run with
//! `cargo run --release -p cairn-bench --bin bench-headers`.
//!
//! Prints, for 100,000 regtest headers mined in memory beforehand:
//! * the raw double-SHA-256 rate of 80-byte headers (baseline, same run);
//! * header validation rate from memory (batches of 2,000), and with the
//!   node's RocksDB writes, each with its ratio to the baseline (goal >= 0.3
//!   including RocksDB writes);
//! * BIP37 proof verification rate on real block 413,567;
//! * the time to sync and validate 100,000 devnet headers end to end through
//!   the RPC source (JSON-RPC over HTTP on loopback, into a RocksDB store).

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

/// Runs `f` (which returns seconds for N items) five times; the median rate.
fn median_rate(mut f: impl FnMut() -> f64) -> f64 {
    let mut rates: Vec<f64> = (0..5).map(|_| N as f64 / f()).collect();
    rates.sort_by(f64::total_cmp);
    rates[2]
}

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

    // Each figure is the median of five runs (this machine's timing is noisy).
    let raw = median_rate(|| {
        let t = Instant::now();
        for h in &headers {
            black_box(black_box(h).block_hash());
        }
        t.elapsed().as_secs_f64()
    });
    let mut chain = HeaderChain::new(params.clone());
    let mem = median_rate(|| {
        let t = Instant::now();
        chain = HeaderChain::new(params.clone());
        for batch in headers.chunks(BATCH) {
            black_box(chain.connect(batch, NOW).expect("valid headers"));
        }
        t.elapsed().as_secs_f64()
    });
    assert_eq!(chain.height() as usize, N);

    let mut last_store = None;
    let stored = median_rate(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = cairn_node::Store::open(dir.path()).expect("store");
        let t = Instant::now();
        chain = HeaderChain::new(params.clone());
        for batch in headers.chunks(BATCH) {
            let u = chain.connect(batch, NOW).expect("valid headers");
            store.apply_chain_update(&u, &chain).expect("write");
        }
        let s = t.elapsed().as_secs_f64();
        last_store = Some((dir, store));
        s
    });
    let (_dir, store) = last_store.expect("five runs");
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

    // Memory growth is part of the figures above; on a VM it can dominate.
    let page_us = {
        let len = 64usize << 20;
        let mut v: Vec<u8> = Vec::with_capacity(len);
        let t = Instant::now();
        v.resize(len, 1);
        black_box(&v);
        t.elapsed().as_secs_f64() * 1e6 / (len / 4096) as f64
    };

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
    println!(
        "  first write to a fresh 4 KiB page     {page_us:>12.2} us   (same run; about 0.2 us on bare hardware)"
    );
    println!();
    println!(
        "  BIP37 proof verification (block 413,567, {} txs of {})  {proofs:>8.0} proofs/s",
        cases.len(),
        block.txdata.len()
    );

    // End to end through the RPC source, against the devnet.
    let devnet = cairn_devnet::Devnet::start().expect("devnet");
    let rpc = devnet.client().expect("client");
    // Blocks mined in a burst get timestamps of at least MTP+1; start a day
    // back so the last ones are not in the future.
    rpc.set_mock_time(cairn_node::chain::unix_now().saturating_sub(86_400))
        .expect("setmocktime");
    let wallet = cairn_devnet::DevWallet::from_secret([5u8; 32]).expect("key");
    let t = Instant::now();
    for _ in 0..N / 10_000 {
        rpc.generate_to_address(10_000, &wallet.address())
            .expect("mine");
    }
    let mine_s = t.elapsed().as_secs_f64();
    let source = cairn_chain_anchor::RpcSource::connect(devnet.rpc_config()).expect("source");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = cairn_node::Store::open(dir.path()).expect("store");
    let mut chain = HeaderChain::new(ChainParams::new(ChainNetwork::Regtest));
    let t = Instant::now();
    let outcome = cairn_chain_anchor::sync_headers(
        &mut chain,
        &source,
        &cairn_node::chain::unix_now,
        &mut |u, c| store.apply_chain_update(u, c),
        &mut |_| {},
    )
    .expect("sync");
    let sync_s = t.elapsed().as_secs_f64();
    assert_eq!(outcome.height as usize, N);
    println!();
    println!(
        "  devnet ({}): mine {N} blocks               {mine_s:>8.2} s",
        devnet.kind()
    );
    println!(
        "  sync + validate {N} devnet headers via RPC  {sync_s:>8.2} s   ({:.0} headers/s)",
        N as f64 / sync_s
    );
}
