//! Header-chain and SPV benchmarks (issue: chain layer). Run with
//! `cargo run --release -p cairn-bench --bin bench-headers` (`-- --no-devnet`
//! leaves out the end-to-end part).
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
use cairn_chain_anchor::headers::CHUNK_LEN;
use cairn_chain_anchor::spv::check_proof;
use cairn_chain_anchor::{ChainNetwork, ChainParams, HeaderChain};

const N: usize = 100_000;
const NOW: u64 = 4_000_000_000;

/// Minor page faults of this process so far (first touches of fresh memory;
/// `/proc/self/stat` field 10), or 0 where there is no procfs.
fn minor_faults() -> u64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    // Fields after the command name (which is in parentheses); minflt is the 10th field.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(7))
        .and_then(|f| f.parse().ok())
        .unwrap_or(0)
}

/// Rounds of each measurement; figures are medians over them.
const ROUNDS: usize = 5;

/// Median of `v`.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Batches as the sync loop makes them: from height 1 up to the end of each
/// storage chunk.
fn sync_batches(headers: &[Header]) -> Vec<&[Header]> {
    let chunk = CHUNK_LEN as usize;
    let mut out = Vec::new();
    let mut from = 0;
    while from < headers.len() {
        // headers[i] is at height i + 1.
        let height = from + 1;
        let end = (from + chunk - height % chunk).min(headers.len());
        out.push(&headers[from..end]);
        from = end;
    }
    out
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

    let batches = sync_batches(&headers);

    // The machine's speed drifts (other tenants, CPU steal), so the baseline
    // and the validation runs alternate, and each ratio is taken within one
    // round; the figures are medians over the rounds.
    let secs = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    let (mut raw, mut mem, mut stored) = (Vec::new(), Vec::new(), Vec::new());
    let (mut mem_ratio, mut stored_ratio) = (Vec::new(), Vec::new());
    let (mut mem_faults, mut stored_faults) = (0, 0);
    let mut chain = HeaderChain::new(params.clone());
    let mut last_store = None;
    for _ in 0..ROUNDS {
        let r = N as f64
            / secs(&mut || {
                for h in &headers {
                    black_box(black_box(h).block_hash());
                }
            });
        let faults = minor_faults();
        let m = N as f64
            / secs(&mut || {
                chain = HeaderChain::new(params.clone());
                // As the sync loop does, knowing the source's tip.
                chain.reserve(N as u32);
                for batch in &batches {
                    black_box(chain.connect(batch, NOW).expect("valid headers"));
                }
            });
        mem_faults += minor_faults() - faults;
        assert_eq!(chain.height() as usize, N);

        let dir = tempfile::tempdir().expect("temp dir");
        let store = cairn_node::Store::open(dir.path()).expect("store");
        let faults = minor_faults();
        let st = N as f64
            / secs(&mut || {
                chain = HeaderChain::new(params.clone());
                // As the sync loop does, knowing the source's tip.
                chain.reserve(N as u32);
                for batch in &batches {
                    let u = chain.connect(batch, NOW).expect("valid headers");
                    store.apply_chain_update(&u, &chain).expect("write");
                }
            });
        stored_faults += minor_faults() - faults;
        last_store = Some((dir, store));
        raw.push(r);
        mem.push(m);
        stored.push(st);
        mem_ratio.push(m / r);
        stored_ratio.push(st / r);
    }
    let per_header = |faults: u64| faults as f64 / (ROUNDS * N) as f64;
    let (mem_faults, stored_faults) = (per_header(mem_faults), per_header(stored_faults));
    let (raw, mem, stored) = (median(raw), median(mem), median(stored));
    let (mem_ratio, stored_ratio) = (median(mem_ratio), median(stored_ratio));
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

    println!(
        "bench-headers ({N} regtest headers, in sync batches of up to {CHUNK_LEN}; medians of {ROUNDS} rounds)"
    );
    println!();
    println!(
        "  raw double-SHA-256 of 80-byte headers {raw:>12.0} headers/s   (baseline, same rounds)"
    );
    println!(
        "  validation, in memory                 {mem:>12.0} headers/s   ratio {mem_ratio:.3}   ({mem_faults:.2} page faults/header)"
    );
    println!(
        "  validation + RocksDB writes           {stored:>12.0} headers/s   ratio {stored_ratio:.3}   ({stored_faults:.2} page faults/header; goal >= 0.3: {})",
        if stored_ratio >= 0.3 { "met" } else { "NOT met" }
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

    if std::env::args().any(|a| a == "--no-devnet") {
        return;
    }
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
