//! `cairn node` with the network (feature `network`): three people's nodes
//! on loopback, each with its own data directory, RocksDB and keystore,
//! driven through the real binary.

mod common;
use common::net::{cairn, person, start_node, status_when, stop};
use common::ok_json;

use std::time::{Duration, Instant};

use cairn_devnet::Devnet;
use serde_json::Value;

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
