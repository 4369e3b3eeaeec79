//! Anchoring benchmarks (issue: anchored identities). Run with
//! `cargo run --release -p cairn-bench --bin bench-anchoring`.
//!
//! On the devnet (a real `bitcoind -regtest` when one is on `PATH`), through
//! the node's own anchoring code: an identity is anchored and rotated ten
//! times, one block each. Prints:
//! * vbytes of the inception and of a rotation transaction (goal: a rotation
//!   ≤ 140 vB);
//! * verification of the resulting bundle (11 events, 11 anchors) against the
//!   validated header chain, in logs/s, next to the raw BIP340 verification
//!   rate measured in the same run (the chain source's spentness lookup is
//!   I/O and left out; it is one `gettxout`);
//! * restore after 10 rotations: header sync plus the one block scan that
//!   finds every seal and the wallet's coins, on a fresh store.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::{Amount, FeeRate};
use cairn_chain_anchor::source::ChainSource;
use cairn_chain_anchor::{
    sync_headers, verify_bundle, ChainNetwork, ChainParams, HeaderChain, RpcSource, Verdict,
};
use cairn_devnet::{DevWallet, Devnet};
use cairn_node::anchoring::{self, DEFAULT_SEAL_VALUE};
use cairn_node::chain::unix_now;
use cairn_node::funds::{identity_descriptors, Funds};
use cairn_node::identity::OwnIdentity;
use cairn_node::Store;
use cairn_wallet::kel::{establishment_event, KeyEventLog};
use cairn_wallet::{MasterKey, SeedPhrase};

const WORDS: &str =
    "letter advice cage absurd amount doctor acoustic avoid letter advice cage above";
const ROTATIONS: u32 = 10;
const NET: ChainNetwork = ChainNetwork::Regtest;

/// Syncs `chain` from `source` into `store`.
fn sync(chain: &mut HeaderChain, source: &RpcSource, store: &Store) {
    sync_headers(
        chain,
        source,
        &unix_now,
        &mut |update, chain| store.apply_chain_update(update, chain),
        &mut |_| {},
    )
    .expect("header sync");
}

/// A fresh node: store in a temporary directory, its identity from the words at rotation 0.
fn node(master: &MasterKey) -> (tempfile::TempDir, Store, OwnIdentity) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("store");
    let log = KeyEventLog::new(vec![
        establishment_event(master, 0, None).expect("inception")
    ]);
    let state = log.verify().expect("valid");
    store
        .set_own_identity(&state.id, &log)
        .expect("own identity");
    (dir, store, OwnIdentity { log, state })
}

fn main() {
    let devnet = Devnet::start().expect("devnet");
    let c = devnet.client().expect("client");
    let miner = DevWallet::from_secret([7u8; 32]).expect("miner");
    c.generate_to_address(101, &miner.address()).expect("mine");
    let master = MasterKey::new(&SeedPhrase::parse(WORDS).expect("words").to_seed(""));
    let source = RpcSource::connect(devnet.rpc_config()).expect("connect");

    // Anchor, from a funded wallet.
    let (_dir, store, mut own) = node(&master);
    let mut chain = HeaderChain::new(ChainParams::new(NET));
    let keys = identity_descriptors(&master, NET).expect("descriptors");
    let mut funds = Funds::create(&store, NET, &keys).expect("wallet");
    let addr = funds.receive_address().expect("address").address;
    let block1 = c.block(&c.block_hash(1).expect("hash")).expect("block");
    let coin = (
        bitcoin::OutPoint::new(block1.txdata[0].compute_txid(), 0),
        block1.txdata[0].output[0].clone(),
    );
    let pay = miner.pay(
        coin,
        addr.script_pubkey(),
        Amount::from_btc(1.0).expect("amount"),
        Amount::from_sat(2_000),
    );
    c.send_raw_transaction(&pay).expect("fund");
    c.generate_to_address(1, &miner.address()).expect("mine");
    sync(&mut chain, &source, &store);
    funds
        .scan(&chain, &source, None, &mut |_, _| {})
        .expect("scan");
    let rate = FeeRate::from_sat_per_vb_u32(2);
    let anchor = anchoring::build_inception(&mut funds, &master, &own, DEFAULT_SEAL_VALUE, rate)
        .expect("inception");
    let inception_vb = anchor.tx.vsize();
    let sealed = anchoring::future_rotations(&master, &own.state.id, 0).expect("sealed");
    anchoring::publish_inception(
        &store,
        &mut funds,
        &source,
        &own,
        &anchor,
        &sealed,
        unix_now(),
    )
    .expect("publish");
    c.generate_to_address(1, &miner.address()).expect("mine");

    // Ten rotations, one block each; the last tops the seal up from the
    // funding wallet.
    let mut rotation_vb = Vec::new();
    let mut topped_vb = 0;
    for i in 0..ROTATIONS {
        sync(&mut chain, &source, &store);
        anchoring::refresh_stored(&store, NET, &own.state.id, &chain, &source).expect("refresh");
        let anchors = store.anchors(NET, &own.state.id).expect("anchors");
        let plan = if i + 1 < ROTATIONS {
            anchoring::build_rotation(&master, &own, anchors, rate).expect("rotation")
        } else {
            funds
                .scan(&chain, &source, None, &mut |_, _| {})
                .expect("scan");
            anchoring::build_topped_rotation(
                &mut funds,
                &master,
                &own,
                anchors,
                rate,
                DEFAULT_SEAL_VALUE,
            )
            .expect("topped-up rotation")
        };
        store
            .put_own_bundle(NET, &own.state.id, &plan.log, &plan.anchors, &plan.sealed)
            .expect("store");
        let tx = &plan.anchors.last().expect("anchor").tx;
        if plan.topped_up {
            topped_vb = tx.vsize();
        } else {
            rotation_vb.push(tx.vsize());
        }
        source.broadcast(tx).expect("broadcast");
        c.generate_to_address(1, &miner.address()).expect("mine");
        own = OwnIdentity {
            state: plan.log.verify().expect("valid"),
            log: plan.log,
        };
    }
    sync(&mut chain, &source, &store);
    anchoring::refresh_stored(&store, NET, &own.state.id, &chain, &source).expect("refresh");
    let bundle = anchoring::own_bundle(&store, NET, &own).expect("bundle");
    let check = verify_bundle::<()>(&bundle, &chain, 1, &mut |_| Ok(true)).expect("verify");
    assert!(
        matches!(check.verdict, Verdict::Current { rotation_index, .. } if rotation_index == ROTATIONS),
        "{}",
        check.verdict
    );

    // Verification rate of the 10-rotation bundle, and raw BIP340 in the same run.
    const ITERS: usize = 200;
    let t = Instant::now();
    for _ in 0..ITERS {
        black_box(
            verify_bundle::<()>(black_box(&bundle), &chain, 1, &mut |_| Ok(true)).expect("verify"),
        );
    }
    let logs_per_s = ITERS as f64 / t.elapsed().as_secs_f64();
    let secp = Secp256k1::verification_only();
    let state = bundle.log.verify().expect("valid");
    let sigs: Vec<_> = bundle
        .log
        .events()
        .iter()
        .zip(&state.establishment)
        .map(|(e, r)| {
            (
                *e.signature(),
                Message::from_digest(e.digest().0),
                r.signing_key,
            )
        })
        .collect();
    const RAW: usize = 20_000;
    let t = Instant::now();
    for i in 0..RAW {
        let (sig, msg, key) = &sigs[i % sigs.len()];
        secp.verify_schnorr(black_box(sig), msg, key)
            .expect("valid");
    }
    let verifies_per_s = RAW as f64 / t.elapsed().as_secs_f64();

    // Restore after 10 rotations, on a fresh store.
    let (_dir2, store2, fresh) = node(&master);
    let t = Instant::now();
    let mut chain2 = HeaderChain::new(ChainParams::new(NET));
    sync(&mut chain2, &source, &store2);
    let t_headers = t.elapsed();
    let mut funds2 = Funds::create(&store2, NET, &keys).expect("wallet");
    let (restored, report) = anchoring::restore_from_chain(
        &store2,
        &mut funds2,
        &master,
        &fresh,
        &chain2,
        &source,
        &mut |_, _| {},
    )
    .expect("restore");
    let t_restore = t.elapsed();
    assert_eq!(restored.state.rotation_index(), ROTATIONS);
    assert_eq!(restored.log, own.log);

    let max_rot = rotation_vb.iter().max().copied().unwrap_or(0);
    println!(
        "bench-anchoring ({}, {} blocks)",
        devnet.label(),
        chain.height()
    );
    println!();
    println!("transaction sizes");
    println!("  inception (wallet input, seal, change) {inception_vb:>5} vB");
    println!(
        "  rotation (seal in, seal out)           {max_rot:>5} vB   (goal <= 140: {})",
        if max_rot <= 140 { "met" } else { "NOT met" }
    );
    println!("  rotation topped up from the wallet     {topped_vb:>5} vB   (seal and wallet in; seal and change out)");
    println!();
    println!("verification of a {ROTATIONS}-rotation bundle (11 events, 11 anchors and proofs)");
    println!("  bundle verification     {logs_per_s:>10.0} logs/s");
    println!("  raw BIP340 verification {verifies_per_s:>10.0} verifies/s   (baseline, same run)");
    println!(
        "  ratio                   {:>10.4}            (= {:.1} BIP340 verifications' time per log)",
        logs_per_s / verifies_per_s,
        verifies_per_s / logs_per_s
    );
    println!();
    println!("restore after {ROTATIONS} rotations (fresh store, words + chain source)");
    println!("  header sync             {:>10.1} ms", ms(t_headers));
    println!(
        "  block scan + seals      {:>10.1} ms   ({} blocks, {} anchors found)",
        ms(t_restore - t_headers),
        report.blocks,
        report.heights.len()
    );
    println!("  total                   {:>10.1} ms", ms(t_restore));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
