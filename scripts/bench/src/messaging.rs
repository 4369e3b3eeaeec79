//! Messaging benchmarks (issue: messaging). Run with
//! `cargo build --release -p cairn-node && cargo run --release -p cairn-bench --bin bench-messaging`.
//!
//! Real `cairn node` processes (the release binary next to this one) on
//! loopback, on a devnet, with one mailbox node. Prints:
//! * end-to-end latency of a 1 KiB message from Alice's `send` to Bob's
//!   node announcing it (p50/p99), delivered directly, and through the
//!   mailbox node (Dave takes no direct delivery: `[network] direct =
//!   false`; his node looks at the mailbox every second);
//! * sustained messages per second from Alice to Bob (1 KiB each, sent
//!   through the API as fast as it takes them, until Bob's node has them
//!   all), next to plain rust-libp2p request-response round trips of 1 KiB
//!   (64 in flight) measured in the same run, and the ratio.
//!
//! The session layer's cost next to raw snow is `bench-session`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_bench::{baseline_rate, percentile, PAYLOAD};
use cairn_devnet::Devnet;
use cairn_node::api::ApiClient;
use serde_json::{json, Value};

const LATENCY_SAMPLES: usize = 200;
const MAILBOX_SAMPLES: usize = 40;
const SUSTAINED: usize = 2_000;
const PASS: &str = "bench passphrase";

struct Nodes {
    cairn: PathBuf,
    children: Vec<Child>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Nodes {
    fn run(&self, dir: &Path, args: &[&str]) -> Value {
        let out = Command::new(&self.cairn)
            .arg("--data-dir")
            .arg(dir)
            .arg("--json")
            .args(args)
            .env("CAIRN_PASSPHRASE", PASS)
            .stdin(Stdio::null())
            .output()
            .expect("run cairn");
        assert!(
            out.status.success(),
            "cairn {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    fn configure(&self, dir: &Path, devnet: &Devnet, bootstrap: &str, extra: &str) {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(
            dir.join("cairn.toml"),
            format!(
                "[bitcoin]\nnetwork = \"regtest\"\nrpc_url = \"{}\"\nrpc_cookie = \"{}\"\nconfirmations = 1\n\n[node]\npoll_secs = 60\nlog_level = \"warn\"\n\n[network]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nmdns = false\nbootstrap = [{bootstrap}]\ncollect_secs = 1\n{extra}",
                devnet.url(),
                devnet.cookie_path().display(),
            ),
        )
        .expect("config");
    }

    /// Starts `cairn node` on `dir` and waits until it has a peer (or, for
    /// the first node, a listen address); returns its status.
    fn start(&mut self, dir: &Path, alone: bool) -> Value {
        let child = Command::new(&self.cairn)
            .arg("--data-dir")
            .arg(dir)
            .args(["node", "--api", "127.0.0.1:0"])
            .env("CAIRN_PASSPHRASE", PASS)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node");
        self.children.push(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut api) = ApiClient::connect(dir) {
                if let Ok(s) = api.call("status", json!({})) {
                    let listening = s["network"]["listen"]
                        .as_array()
                        .is_some_and(|l| !l.is_empty());
                    if listening && (alone || s["network"]["peers"].as_u64() >= Some(1)) {
                        return s;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "node on {} not ready",
                dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until `api`'s node announces message `seq` from `from`; returns
/// the event cursor after it.
fn wait_received(api: &mut ApiClient, from: &str, seq: u64, mut after: u64) -> u64 {
    loop {
        let r = api
            .call("message_events", json!({ "after": after, "wait": 30 }))
            .expect("events");
        after = r["last"].as_u64().unwrap_or(after);
        let found = r["events"].as_array().is_some_and(|es| {
            es.iter().any(|e| {
                e["kind"] == "received"
                    && e["contact"] == from
                    && e["message"].as_u64() >= Some(seq)
            })
        });
        if found {
            return after;
        }
    }
}

/// Latencies of `n` messages from `a` to `b` (`b_id` is `a`'s id as `b`
/// knows it), one at a time.
fn latencies(a: &Path, b: &Path, a_id: &str, to: &str, n: usize) -> Vec<Duration> {
    let text = "m".repeat(PAYLOAD);
    let mut sender = ApiClient::connect(a).expect("api");
    let mut receiver = ApiClient::connect(b).expect("api");
    let mut after = receiver.call("message_events", json!({})).expect("events")["last"]
        .as_u64()
        .unwrap_or(0);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let seq = sender
            .call("send", json!({ "to": to, "text": text }))
            .expect("send")["seq"]
            .as_u64()
            .expect("seq");
        after = wait_received(&mut receiver, a_id, seq, after);
        times.push(t.elapsed());
    }
    times.sort();
    times
}

/// Two people on `devnet` who know each other and name `mailbox` in their
/// logs; `extra_b` goes into the second one's `[network]`.
fn pair(
    nodes: &mut Nodes,
    devnet: &Devnet,
    root: &Path,
    names: [&str; 2],
    boot: &str,
    mailbox: &str,
    extra_b: &str,
) -> [String; 2] {
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let dir = root.join(name);
        nodes.configure(
            &dir,
            devnet,
            &format!("{boot:?}"),
            if i == 1 { extra_b } else { "" },
        );
        ids.push(
            nodes.run(&dir, &["init", "--yes"])["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
        nodes.run(&dir, &["mailboxes", mailbox]);
    }
    for (me, other) in [(0, 1), (1, 0)] {
        let bundle = nodes.run(&root.join(names[other]), &["id", "export"])["bundle"]
            .as_str()
            .expect("bundle")
            .to_string();
        nodes.run(
            &root.join(names[me]),
            &["contact", "add", &bundle, "--name", names[other]],
        );
    }
    for name in names {
        nodes.start(&root.join(name), false);
    }
    [ids[0].clone(), ids[1].clone()]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cairn = std::env::current_exe()
        .expect("exe")
        .with_file_name("cairn");
    if !cairn.exists() {
        eprintln!(
            "{} is missing: cargo build --release -p cairn-node",
            cairn.display()
        );
        std::process::exit(1);
    }
    println!("messaging benchmarks: cairn node processes on loopback, 1 KiB messages");
    let (_, base_par) = baseline_rate().await;

    let devnet = Devnet::start().expect("devnet");
    let tmp = tempfile::tempdir().expect("tmp");
    let mut nodes = Nodes {
        cairn,
        children: Vec::new(),
    };
    let mbox = tmp.path().join("mailbox");
    nodes.configure(&mbox, &devnet, "", "");
    let s = nodes.start(&mbox, true);
    let peer = s["network"]["peer_id"].as_str().expect("peer").to_string();
    let boot = format!(
        "{}/p2p/{peer}",
        s["network"]["listen"][0].as_str().expect("addr")
    );

    let [alice, _bob] = pair(
        &mut nodes,
        &devnet,
        tmp.path(),
        ["alice", "bob"],
        &boot,
        &peer,
        "",
    );
    let (a, b) = (tmp.path().join("alice"), tmp.path().join("bob"));
    // The session first (through the mailbox), then direct.
    latencies(&a, &b, &alice, "bob", 3);
    let direct = latencies(&a, &b, &alice, "bob", LATENCY_SAMPLES);
    println!(
        "  latency, direct:             p50 {:.1} ms, p99 {:.1} ms ({} messages, one at a time)",
        ms(percentile(&direct, 0.5)),
        ms(percentile(&direct, 0.99)),
        direct.len()
    );

    let [carol, _dave] = pair(
        &mut nodes,
        &devnet,
        tmp.path(),
        ["carol", "dave"],
        &boot,
        &peer,
        "direct = false\n",
    );
    let (c, d) = (tmp.path().join("carol"), tmp.path().join("dave"));
    latencies(&c, &d, &carol, "dave", 2);
    let via = latencies(&c, &d, &carol, "dave", MAILBOX_SAMPLES);
    println!(
        "  latency, through the mailbox: p50 {:.1} ms, p99 {:.1} ms ({} messages; the recipient looks every 1 s)",
        ms(percentile(&via, 0.5)),
        ms(percentile(&via, 0.99)),
        via.len()
    );

    // Sustained: as fast as the API takes them, until Bob has them all.
    let text = "s".repeat(PAYLOAD);
    let mut receiver = ApiClient::connect(&b).expect("api");
    let after = receiver.call("message_events", json!({})).expect("events")["last"]
        .as_u64()
        .unwrap_or(0);
    let mut sender = ApiClient::connect(&a).expect("api");
    let t = Instant::now();
    let mut last = 0;
    for _ in 0..SUSTAINED {
        last = sender
            .call("send", json!({ "to": "bob", "text": text }))
            .expect("send")["seq"]
            .as_u64()
            .expect("seq");
    }
    let accepted = t.elapsed();
    wait_received(&mut receiver, &alice, last, after);
    let rate = SUSTAINED as f64 / t.elapsed().as_secs_f64();
    println!(
        "  sustained, Alice to Bob:     {rate:.0} messages/s ({SUSTAINED} messages; each stored and synced before `send` answers: {:.0}/s accepted)",
        SUSTAINED as f64 / accepted.as_secs_f64()
    );
    println!("  libp2p request-response:     {base_par:.0} round trips/s (1 KiB, 64 in flight)");
    println!("  ratio:                       {:.3}", rate / base_par);
}
