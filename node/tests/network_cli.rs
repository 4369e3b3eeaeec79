//! `cairn node` with the network (feature `network`): three people's nodes
//! on loopback, each with its own data directory, RocksDB and keystore,
//! driven through the real binary.

mod common;
use common::ok_json;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cairn_devnet::Devnet;
use serde_json::Value;

const PASS: &str = "network test passphrase";

fn cairn(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("CAIRN_DATA_DIR")
        .env("CAIRN_PASSPHRASE", PASS)
        .stdin(Stdio::null())
        .output()
        .expect("run cairn")
}

/// A person: an identity, a config on the devnet and the network.
fn person(dir: &Path, devnet: &Devnet, bootstrap: &[String]) -> Value {
    std::fs::create_dir_all(dir).unwrap();
    let boot: Vec<String> = bootstrap.iter().map(|b| format!("{b:?}")).collect();
    std::fs::write(
        dir.join("cairn.toml"),
        format!(
            "[bitcoin]\nnetwork = \"regtest\"\nrpc_url = \"{}\"\nrpc_cookie = \"{}\"\nconfirmations = 1\n\n[network]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nmdns = false\nbootstrap = [{}]\n",
            devnet.url(),
            devnet.cookie_path().display(),
            boot.join(", ")
        ),
    )
    .unwrap();
    ok_json(&cairn(dir, &["--json", "init", "--yes"]))
}

fn start_node(dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--data-dir")
        .arg(dir)
        .args(["node", "--api", "127.0.0.1:0", "--poll", "1"])
        .env("CAIRN_PASSPHRASE", PASS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The node's status once `ready` holds (at most a minute).
fn status_when(dir: &Path, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let out = cairn(dir, &["node", "status", "--json"]);
        if out.status.success() {
            last = serde_json::from_slice(&out.stdout).unwrap();
            if ready(&last) {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("not ready within a minute: {last}");
}

fn stop(dir: &Path, mut child: Child) {
    ok_json(&cairn(dir, &["node", "stop", "--json"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the node did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_contact_is_fetched_by_its_id_through_the_network_and_verified() {
    let devnet = Devnet::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (alice, bob, carol) = (
        tmp.path().join("alice"),
        tmp.path().join("bob"),
        tmp.path().join("carol"),
    );
    person(&alice, &devnet, &[]);
    let a = start_node(&alice);
    let s = status_when(&alice, |s| {
        s["network"]["listen"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    });
    let boot = format!(
        "{}/p2p/{}",
        s["network"]["listen"][0].as_str().unwrap(),
        s["network"]["peer_id"].as_str().unwrap()
    );
    assert_eq!(s["network"]["mode"], "full");

    let bob_id = person(&bob, &devnet, std::slice::from_ref(&boot))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = start_node(&bob);
    person(&carol, &devnet, std::slice::from_ref(&boot));
    let c = start_node(&carol);
    for dir in [&bob, &carol] {
        status_when(dir, |s| s["network"]["peers"].as_u64() >= Some(1));
    }
    // The peer id is not the identity id.
    let bs = status_when(&bob, |_| true);
    assert_ne!(bs["network"]["peer_id"], bs["identity"]);

    // Carol has only Bob's id; her node finds his record, verifies it and
    // adds him (retrying while Bob's record reaches the DHT).
    let deadline = Instant::now() + Duration::from_secs(60);
    let added = loop {
        let out = cairn(
            &carol,
            &["--json", "contact", "fetch", &bob_id, "--name", "bob"],
        );
        if out.status.success() {
            break serde_json::from_slice::<Value>(&out.stdout).unwrap();
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains("no record"), "{err}");
        assert!(
            Instant::now() < deadline,
            "Bob's record was never found: {err}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(added["id"], bob_id.as_str());
    assert_eq!(added["name"], "bob");
    let listed = ok_json(&cairn(&carol, &["--json", "contact", "list"]));
    assert_eq!(listed[0]["id"], bob_id.as_str());
    let v = ok_json(&cairn(&carol, &["--json", "contact", "verify", "bob"]));
    assert_eq!(v["verdict"]["status"], "unanchored", "{v}");
    // Bob's record carries the prekey his node published when it started.
    let prekeys = status_when(&carol, |s| s["network"]["records"].as_u64() >= Some(1));
    assert!(prekeys["network"]["dht_routing_table"].as_u64() >= Some(2));

    // An id nobody published is not found, and says so.
    let err = cairn(
        &carol,
        &[
            "contact",
            "fetch",
            "cairn1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqsxqd0x7",
        ],
    );
    assert!(!err.status.success());

    stop(&carol, c);
    stop(&bob, b);
    stop(&alice, a);
}
