//! Network benchmarks (issue: the network). Run with
//! `cargo run --release -p cairn-bench --bin bench-network`.
//!
//! Prints, on loopback:
//! * record request-response round trips per second between two Cairn
//!   nodes (a signed identity record of about 1 KiB, verified on receipt),
//!   one at a time and 64 in flight, next to a plain rust-libp2p
//!   request-response pair (TCP, Noise, Yamux, the same framing, 1 KiB each
//!   way, nothing verified) measured in the same run, and the ratio (goal
//!   ≥ 0.5);
//! * DHT record lookup latency (p50/p99) in an 8-node network;
//! * resident memory of the process before and after starting one full
//!   node, and after eight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_bench::{baseline_rate, percentile, BATCHES, IN_FLIGHT, SEQUENTIAL};
use cairn_chain_anchor::{Bundle, ChainNetwork, ChainParams};
use cairn_net::{Keypair, Multiaddr, NetConfig, Network};
use cairn_node::chain::unix_now;
use cairn_node::network::RecordPolicy;
use cairn_node::record::{dht_key, IdentityRecord};
use cairn_wallet::kel::{establishment_chain, Event, Interaction, Item, KeyEventLog};
use cairn_wallet::{MasterKey, SeedPhrase};
use futures::future::join_all;

const LOOKUPS: usize = 200;
/// Distinct records for the uncached figure.
const FRESH: usize = 2_048;

/// A signed record of a fresh identity, padded with mailbox items to about
/// 1 KiB.
fn record() -> (Vec<u8>, Vec<u8>) {
    let master = MasterKey::new(&SeedPhrase::generate(12).expect("words").to_seed(""));
    let chain = establishment_chain(&master, 0).expect("chain");
    let prev = chain[0].digest();
    let mut log = KeyEventLog::new(chain);
    let key = master.signing_key(0).expect("key");
    let now = unix_now();
    let items = (0..6u8).map(|i| Item::Mailbox(vec![i; 90])).collect();
    let e = Event::Interaction(Interaction::new(0, 1, prev, now, items).expect("event"));
    log.push(e.sign(&key).expect("signed"));
    let id = log.verify().expect("valid").id;
    let bundle = Bundle {
        genesis: ChainParams::new(ChainNetwork::Regtest).genesis_hash(),
        log,
        anchors: Vec::new(),
        sealed: Vec::new(),
    };
    let r = IdentityRecord::sign(bundle, now, now + 86_400, &key).expect("record");
    (dht_key(&id).to_vec(), r.encode())
}

fn config(bootstrap: Vec<Multiaddr>) -> NetConfig {
    let mut c = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("address")],
        bootstrap,
        mdns: false,
        ..NetConfig::default()
    };
    c.limits.command_queue = 4 * IN_FLIGHT;
    c.limits.requests_per_minute = 10_000_000;
    c
}

async fn node(bootstrap: Vec<Multiaddr>) -> Network {
    let (net, _events) = Network::start(
        Keypair::generate_ed25519(),
        config(bootstrap),
        Arc::new(RecordPolicy::new()),
        None,
    )
    .await
    .expect("network");
    // The events are not read here; the network drops them when full.
    net
}

async fn address(n: &Network) -> Multiaddr {
    loop {
        if let Some(a) = n.status().await.expect("status").listen.first() {
            return a
                .clone()
                .with(cairn_net::multiaddr::Protocol::P2p(n.peer_id()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn rss_mib() -> f64 {
    rss_of(std::process::id())
}

/// Round trips per second through Cairn's record protocol, each record
/// new to the requester (so verified in full): sequential, then
/// `IN_FLIGHT` at once.
async fn cairn_fresh_rate() -> (f64, f64) {
    let server = node(vec![]).await;
    let client = node(vec![address(&server).await]).await;
    let peer = server.peer_id();
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..FRESH).map(|_| record()).collect();
    for (k, v) in &records {
        server.publish(k.clone(), v.clone()).await.ok();
    }
    let (first, rest) = records.split_at(FRESH / 4);
    for (k, _) in first.iter().take(20) {
        client.fetch_from(peer, k.clone()).await.expect("fetch");
    }
    let first = &first[20..];
    let t = Instant::now();
    for (k, _) in first {
        client.fetch_from(peer, k.clone()).await.expect("fetch");
    }
    let sequential = first.len() as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for chunk in rest.chunks(IN_FLIGHT) {
        let all = join_all(
            chunk
                .iter()
                .map(|(k, _)| client.fetch_from(peer, k.clone())),
        )
        .await;
        if let Some(Err(e)) = all.iter().find(|r| r.is_err()) {
            panic!("a request failed: {e}");
        }
    }
    let parallel = rest.len() as f64 / t.elapsed().as_secs_f64();
    client.stop().await;
    server.stop().await;
    (sequential, parallel)
}

/// Round trips per second through Cairn's record protocol, the same record
/// again (verified once, then known): sequential, then `IN_FLIGHT` at once.
async fn cairn_rate() -> (f64, f64, usize) {
    let (key, value) = record();
    let server = node(vec![]).await;
    let client = node(vec![address(&server).await]).await;
    server.publish(key.clone(), value.clone()).await.ok();
    let peer = server.peer_id();
    // Warm up (connection, streams).
    for _ in 0..50 {
        client.fetch_from(peer, key.clone()).await.expect("fetch");
    }
    let t = Instant::now();
    for _ in 0..SEQUENTIAL {
        client.fetch_from(peer, key.clone()).await.expect("fetch");
    }
    let sequential = SEQUENTIAL as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..BATCHES {
        let all = join_all((0..IN_FLIGHT).map(|_| client.fetch_from(peer, key.clone()))).await;
        if let Some(Err(e)) = all.iter().find(|r| r.is_err()) {
            panic!("a request failed: {e}");
        }
    }
    let parallel = (BATCHES * IN_FLIGHT) as f64 / t.elapsed().as_secs_f64();
    client.stop().await;
    server.stop().await;
    (sequential, parallel, value.len())
}

/// Resident memory of process `pid`, MiB.
fn rss_of(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Idle resident memory of real `cairn node` processes (the binary next to
/// this one, built with the network): one alone, then eight together.
fn daemon_rss() -> Option<(f64, f64)> {
    let cairn = std::env::current_exe().ok()?.with_file_name("cairn");
    if !cairn.exists() {
        println!(
            "  daemon memory: skipped ({} missing: cargo build --release -p cairn-node)",
            cairn.display()
        );
        return None;
    }
    let tmp = tempfile::tempdir().ok()?;
    let run = |dir: &std::path::Path, args: &[&str]| {
        let mut c = std::process::Command::new(&cairn);
        c.arg("--data-dir")
            .arg(dir)
            .args(args)
            .env("CAIRN_PASSPHRASE", "bench passphrase")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let mut children = Vec::new();
    let mut boot = String::new();
    for i in 0..8 {
        let dir = tmp.path().join(format!("n{i}"));
        std::fs::create_dir_all(&dir).ok()?;
        let bootstrap = if i == 0 {
            String::new()
        } else {
            format!("{boot:?}")
        };
        std::fs::write(
            dir.join("cairn.toml"),
            format!("[bitcoin]\nnetwork = \"regtest\"\nrpc_url = \"http://127.0.0.1:9\"\nrpc_user = \"x\"\n\n[node]\npoll_secs = 60\n\n[network]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nmdns = false\nbootstrap = [{bootstrap}]\n"),
        )
        .ok()?;
        run(&dir, &["init", "--yes"]).status().ok()?;
        let child = run(&dir, &["node", "--api", "127.0.0.1:0"])
            .env("CAIRN_RPC_PASSWORD", "x")
            .spawn()
            .ok()?;
        children.push(child);
        if i == 0 {
            let deadline = Instant::now() + Duration::from_secs(20);
            while boot.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(200));
                let out = run(&dir, &["node", "status", "--json"])
                    .stdout(std::process::Stdio::piped())
                    .output()
                    .ok()?;
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                if let (Some(a), Some(p)) = (
                    v["network"]["listen"][0].as_str(),
                    v["network"]["peer_id"].as_str(),
                ) {
                    boot = format!("{a}/p2p/{p}");
                }
            }
            std::thread::sleep(Duration::from_secs(5));
        }
    }
    let one = rss_of(children[0].id());
    std::thread::sleep(Duration::from_secs(10));
    let all: f64 = children.iter().map(|c| rss_of(c.id())).sum();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Some((one, all))
}

/// DHT lookups of records published in an 8-node network.
async fn dht_latency() -> (Duration, Duration, f64, f64) {
    let before = rss_mib();
    let first = node(vec![]).await;
    let one = rss_mib();
    let boot = address(&first).await;
    let mut nodes = vec![first];
    for _ in 1..8 {
        nodes.push(node(vec![boot.clone()]).await);
    }
    for n in &nodes {
        while n.status().await.expect("status").routing_table < 7 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let eight = rss_mib();
    let mut keys = Vec::new();
    for i in 0..20 {
        let (k, v) = record();
        nodes[i % 8].publish(k.clone(), v).await.expect("publish");
        keys.push((k, i % 8));
    }
    let mut times = Vec::with_capacity(LOOKUPS);
    for i in 0..LOOKUPS {
        let (k, owner) = &keys[i % keys.len()];
        let asker = (owner + 1 + i % 7) % 8;
        let t = Instant::now();
        nodes[asker].fetch(k.clone()).await.expect("found");
        times.push(t.elapsed());
    }
    times.sort();
    for n in nodes {
        n.stop().await;
    }
    (
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        one - before,
        eight - before,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("network benchmarks on loopback (TCP, Noise, Yamux)");
    let (base_seq, base_par) = baseline_rate().await;
    let (seq, par, size) = cairn_rate().await;
    let (fresh_seq, fresh_par) = cairn_fresh_rate().await;
    println!("  record request-response, {size}-byte signed records, checked on receipt:");
    println!("    plain libp2p (1 KiB each way): 1 in flight {base_seq:>7.0}/s, 64 in flight {base_par:>7.0}/s");
    for (what, s, p) in [
        ("the same record again (verified once)", seq, par),
        (
            "a new record each time (3 signatures)",
            fresh_seq,
            fresh_par,
        ),
    ] {
        println!(
            "    cairn, {what}: 1 in flight {s:>7.0}/s (ratio {:.2}), 64 in flight {p:>7.0}/s (ratio {:.2}); goal ≥ 0.5",
            s / base_seq,
            p / base_par
        );
    }
    let rss_start = rss_mib();
    let (p50, p99, one, eight) = dht_latency().await;
    println!(
        "  DHT record lookup, 8 nodes, {LOOKUPS} lookups: p50 {:.2} ms, p99 {:.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    println!(
        "  memory in this process: {rss_start:.1} MiB before; one more network adds {one:.1} MiB, eight add {eight:.1} MiB"
    );
    if let Some((one, all)) = tokio::task::spawn_blocking(daemon_rss).await.ok().flatten() {
        println!(
            "  idle `cairn node` (network, RocksDB, API, watcher): one alone {one:.1} MiB resident (goal < 64 MB), eight together {all:.1} MiB"
        );
    }
}
