//! Messages between people's nodes on loopback (feature `network`): two
//! mailbox nodes (full nodes without an identity), Alice and Bob, each with
//! their own data directory, RocksDB and keystore, driven through the real
//! binary and its local API.

mod common;
use common::net::{address_of, cairn, configure, free_port, person, start_node, status_when, stop};
use common::ok_json;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use cairn_devnet::Devnet;
use cairn_node::api::ApiClient;
use serde_json::{json, Value};

/// A running node and where it is.
struct Node {
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn start(&mut self) {
        self.child = Some(start_node(&self.dir));
        status_when(&self.dir, |s| s["network"]["peers"].as_u64() >= Some(1));
    }

    fn stop(&mut self) {
        if let Some(c) = self.child.take() {
            stop(&self.dir, c);
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn api(&self) -> ApiClient {
        ApiClient::connect(&self.dir).unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

struct World {
    _devnet: Devnet,
    _tmp: tempfile::TempDir,
    mailboxes: Vec<Node>,
    alice: Node,
    bob: Node,
}

fn peer_of(address: &str) -> String {
    address.rsplit('/').next().unwrap().to_string()
}

/// Two mailbox nodes on fixed ports; Alice and Bob name both in their
/// logs, have each other as contacts, and run their nodes.
fn world() -> World {
    world_with(|_, _| {})
}

/// As [`world`], with `prepare(devnet, [alice, bob])` run before they
/// exchange bundles.
fn world_with(prepare: impl FnOnce(&Devnet, &[PathBuf])) -> World {
    let devnet = Devnet::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let fast = "collect_secs = 1\n";
    let mut mailboxes = Vec::new();
    let mut addresses: Vec<String> = Vec::new();
    for name in ["mailbox1", "mailbox2"] {
        let dir = tmp.path().join(name);
        let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
        configure(&dir, &devnet, &listen, &addresses, fast);
        let child = start_node(&dir);
        addresses.push(address_of(&dir));
        mailboxes.push(Node {
            dir,
            child: Some(child),
        });
    }
    let peers: Vec<String> = addresses.iter().map(|a| peer_of(a)).collect();
    let mut people = Vec::new();
    for name in ["alice", "bob"] {
        let dir = tmp.path().join(name);
        person(&dir, &devnet, &addresses);
        configure(&dir, &devnet, "/ip4/127.0.0.1/tcp/0", &addresses, fast);
        let mut args = vec!["--json", "mailboxes"];
        args.extend(peers.iter().map(String::as_str));
        let named = ok_json(&cairn(&dir, &args));
        assert_eq!(named["mailboxes"].as_array().unwrap().len(), 2);
        people.push(dir);
    }
    prepare(&devnet, &people);
    for (me, other, name) in [
        (&people[0], &people[1], "bob"),
        (&people[1], &people[0], "alice"),
    ] {
        let bundle = ok_json(&cairn(other, &["--json", "id", "export"]));
        ok_json(&cairn(
            me,
            &[
                "--json",
                "contact",
                "add",
                bundle["bundle"].as_str().unwrap(),
                "--name",
                name,
            ],
        ));
    }
    let mut alice = Node {
        dir: people[0].clone(),
        child: None,
    };
    let mut bob = Node {
        dir: people[1].clone(),
        child: None,
    };
    alice.start();
    bob.start();
    World {
        _devnet: devnet,
        _tmp: tmp,
        mailboxes,
        alice,
        bob,
    }
}

/// One look at `node`'s inbox: the messages from `from` not read yet (now
/// marked read), with their numbers.
fn read_inbox(api: &mut ApiClient, from: &str) -> Vec<(u64, String)> {
    let contacts = api.call("contacts", json!({})).unwrap();
    let id = contacts
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == from)
        .unwrap()["id"]
        .clone();
    let unread = api.call("inbox", json!({})).unwrap();
    unread
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["contact"] == id)
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Reads `node`'s inbox until `n` messages from `from` have come (at most
/// `secs`), checking that none comes twice and that they come in order.
fn receive(node: &Node, from: &str, n: usize, secs: u64) -> Vec<String> {
    let mut api = node.api();
    let mut got: Vec<(u64, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} messages from {from} arrived",
            got.len()
        );
        for (seq, text) in read_inbox(&mut api, from) {
            if let Some(last) = got.last() {
                assert!(
                    seq > last.0,
                    "message {seq} after {} (twice, or out of order)",
                    last.0
                );
            }
            got.push((seq, text));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let more = read_inbox(&mut api, from);
    assert!(more.is_empty(), "more messages than sent: {more:?}");
    got.into_iter().map(|(_, t)| t).collect()
}

/// The states of the messages `node` sent to `to`, by number.
fn states(node: &Node, to: &str) -> BTreeMap<u64, String> {
    let list = node
        .api()
        .call("messages", json!({ "with": to, "limit": 10_000 }))
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .filter(|m| m["outgoing"] == true)
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn wait_states(node: &Node, to: &str, n: usize, ok: &[&str], secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = states(node, to);
        if s.len() == n && s.values().all(|v| ok.contains(&v.as_str())) {
            return;
        }
        assert!(Instant::now() < deadline, "states: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn send_all(dir: &Path, to: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut api = ApiClient::connect(dir).unwrap();
    (0..n)
        .map(|i| {
            let text = format!("{prefix} {i}");
            api.call("send", json!({ "to": to, "text": text })).unwrap();
            text
        })
        .collect()
}

#[test]
fn alice_and_bob_chat_both_ways_and_each_message_arrives_once_in_order() {
    let w = world();
    // Through the command line first: the first message sets up the
    // session (sealed to Bob's prekey, through the mailboxes).
    let sent = ok_json(&cairn(
        &w.alice.dir,
        &["--json", "send", "bob", "hello Bob"],
    ));
    assert_eq!(sent["seq"], 1);
    assert_eq!(receive(&w.bob, "alice", 1, 60), ["hello Bob"]);
    let r = ok_json(&cairn(&w.bob.dir, &["--json", "send", "alice", "hi Alice"]));
    assert_eq!(r["seq"], 1);
    assert_eq!(receive(&w.alice, "bob", 1, 60), ["hi Alice"]);
    wait_states(&w.alice, "bob", 1, &["read"], 60);

    // While her node runs, the commands that only read work on its store
    // (opened read-only); those that write say that the node holds it.
    let id = ok_json(&cairn(&w.alice.dir, &["--json", "id"]));
    let export = ok_json(&cairn(&w.alice.dir, &["--json", "id", "export"]));
    assert!(export["bundle"]
        .as_str()
        .unwrap()
        .starts_with("cairn-bundle:"));
    let prekeys = ok_json(&cairn(&w.alice.dir, &["--json", "prekeys"]));
    assert!(!prekeys.as_array().unwrap().is_empty());
    let boxes = ok_json(&cairn(&w.alice.dir, &["--json", "mailboxes"]));
    assert_eq!(boxes["mailboxes"].as_array().unwrap().len(), 2, "{boxes}");
    let other = ok_json(&cairn(&w.bob.dir, &["--json", "id"]));
    let sn = cairn(
        &w.alice.dir,
        &["safety-number", other["id"].as_str().unwrap()],
    );
    assert!(sn.status.success());
    let err = common::failure(&cairn(&w.alice.dir, &["prekeys", "refresh"]));
    assert!(err.contains("node is running"), "{err}");
    assert_eq!(id["rotation_index"], 0);

    // A look at the inbox that does not mark changes nothing; `cairn inbox`
    // marks read what it has written out, and only then is Alice told.
    ok_json(&cairn(
        &w.alice.dir,
        &["--json", "send", "bob", "look twice"],
    ));
    let mut api = w.bob.api();
    let deadline = Instant::now() + Duration::from_secs(60);
    let peek = loop {
        let u = api.call("inbox", json!({ "mark_read": false })).unwrap();
        if !u.as_array().unwrap().is_empty() {
            break u;
        }
        assert!(Instant::now() < deadline, "message 2 did not come");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(peek[0]["seq"], 2);
    wait_states(&w.alice, "bob", 2, &["read", "delivered"], 60);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(states(&w.alice, "bob")[&2], "delivered");
    assert_eq!(
        api.call("inbox", json!({ "mark_read": false })).unwrap(),
        peek
    );
    let shown = cairn(&w.bob.dir, &["inbox"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("look twice"));
    wait_states(&w.alice, "bob", 2, &["read"], 60);
    assert!(read_inbox(&mut api, "alice").is_empty());
    let err = api.call("read", json!({ "contact": "alice" })).unwrap_err();
    assert!(err.to_string().contains("seqs"), "{err}");

    // `cairn chat`, its lines from standard input: it shows the
    // conversation and sends each line.
    let mut chat = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--data-dir")
        .arg(&w.bob.dir)
        .args(["chat", "alice"])
        .env("CAIRN_PASSPHRASE", common::net::PASS)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = chat.stdin.take().unwrap();
        writeln!(stdin, "typed in a chat").unwrap();
    }
    let shown = chat.wait_with_output().unwrap();
    assert!(shown.status.success());
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("hello Bob") && shown.contains("hi Alice"),
        "{shown}"
    );
    assert_eq!(receive(&w.alice, "bob", 1, 60), ["typed in a chat"]);

    // 1,000 each way at once.
    let n = 1000;
    let (a, b) = (w.alice.dir.clone(), w.bob.dir.clone());
    let ta = std::thread::spawn(move || send_all(&a, "bob", "from Alice", n));
    let tb = std::thread::spawn(move || send_all(&b, "alice", "from Bob", n));
    let (from_alice, from_bob) = (ta.join().unwrap(), tb.join().unwrap());
    // Generous bounds: a slow, loaded machine still finishes.
    assert_eq!(receive(&w.bob, "alice", n, 300), from_alice);
    assert_eq!(receive(&w.alice, "bob", n, 300), from_bob);
    wait_states(&w.alice, "bob", n + 2, &["delivered", "read"], 180);
    wait_states(&w.bob, "alice", n + 2, &["delivered", "read"], 180);

    // Bad input from the API gets a clear error.
    let mut api = w.alice.api();
    let err = api
        .call("send", json!({ "to": "carol", "text": "x" }))
        .unwrap_err()
        .to_string();
    assert!(err.contains("carol"), "{err}");
    let err = api
        .call("send", json!({ "to": "bob", "text": "" }))
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");

    // Alice removes Bob while her node runs: the contact and every message
    // of theirs go; sending to him is refused.
    let gone = ok_json(&cairn(
        &w.alice.dir,
        &["--json", "contact", "remove", "bob", "--yes"],
    ));
    assert!(
        gone["messages_deleted"].as_u64().unwrap() >= 2 * n as u64,
        "{gone}"
    );
    let left = api.call("messages", json!({ "limit": 10_000 })).unwrap();
    assert_eq!(left, json!([]));
    let err = api
        .call("send", json!({ "to": "bob", "text": "x" }))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bob"), "{err}");
}

impl World {
    fn stop_all(&mut self) {
        self.alice.stop();
        self.bob.stop();
        for m in &mut self.mailboxes {
            m.stop();
        }
    }
}

#[test]
fn messages_wait_at_the_mailboxes_while_bob_is_away_and_one_mailbox_is_lost() {
    let mut w = world();
    ok_json(&cairn(&w.alice.dir, &["--json", "send", "bob", "first"]));
    assert_eq!(receive(&w.bob, "alice", 1, 60), ["first"]);
    wait_states(&w.alice, "bob", 1, &["delivered", "read"], 60);

    w.bob.stop();
    let mut sent = send_all(&w.alice.dir, "bob", "while away", 50);
    wait_states(&w.alice, "bob", 51, &["delivered", "read", "stored"], 60);
    // One mailbox node is lost (killed); the rest go to the other.
    w.mailboxes[0].kill();
    sent.extend(send_all(&w.alice.dir, "bob", "after the loss", 50));
    wait_states(&w.alice, "bob", 101, &["delivered", "read", "stored"], 60);

    // What the remaining mailbox node keeps names neither person, nor any
    // of their keys: addresses, times and ciphertext.
    w.mailboxes[1].stop();
    w.alice.stop();
    {
        let store = cairn_node::Store::open(&w.mailboxes[1].dir.join("store")).unwrap();
        let kept = store
            .scan(cairn_node::store::CF_MAILBOX, b"", usize::MAX)
            .unwrap();
        assert!(kept.len() >= 100, "{} envelopes kept", kept.len());
        let mut secrets: Vec<Vec<u8>> = Vec::new();
        for dir in [&w.alice.dir, &w.bob.dir] {
            let id = ok_json(&cairn(dir, &["--json", "id"]));
            let parsed: cairn_wallet::IdentityId = id["id"].as_str().unwrap().parse().unwrap();
            secrets.push(parsed.0.to_vec());
            for k in ["signing_key", "messaging_key"] {
                if let Some(h) = id[k].as_str() {
                    secrets.push(hex(h));
                }
            }
            for p in ok_json(&cairn(dir, &["--json", "prekeys"]))
                .as_array()
                .unwrap()
            {
                secrets.push(hex(p["key"].as_str().unwrap()));
            }
        }
        assert!(secrets.len() >= 6);
        for (k, v) in &kept {
            for s in &secrets {
                let hit = |b: &[u8]| b.windows(s.len()).any(|w| w == &s[..]);
                assert!(
                    !hit(k) && !hit(v),
                    "a mailbox entry holds an identity or key"
                );
            }
            assert!(!v.windows(10).any(|w| w == b"while away"));
        }
    }
    // Alice's own store keeps Bob as a contact and their conversation,
    // sealed: neither Bob's id nor a text is in any column family but
    // `records` (identity records her node serves to the DHT, anyone's).
    {
        let store = cairn_node::Store::open(&w.alice.dir.join("store")).unwrap();
        let id = ok_json(&cairn(&w.bob.dir, &["--json", "id"]));
        let bob: cairn_wallet::IdentityId = id["id"].as_str().unwrap().parse().unwrap();
        let mut messages = 0;
        for cf in cairn_node::store::COLUMN_FAMILIES {
            if cf == cairn_node::store::CF_RECORDS {
                continue;
            }
            for (k, v) in store.scan(cf, b"", usize::MAX).unwrap() {
                messages += usize::from(cf == cairn_node::store::CF_MESSAGES);
                for hay in [&k, &v] {
                    assert!(!hay.windows(32).any(|w| w == bob.0), "Bob's id in {cf}");
                    assert!(
                        !hay.windows(10).any(|w| w == b"while away"),
                        "a text in {cf}"
                    );
                }
            }
        }
        assert!(messages >= 101, "{messages} conversation records");
    }
    // The mailbox node comes back (its peers are all away: none to wait for).
    w.mailboxes[1].child = Some(start_node(&w.mailboxes[1].dir));
    address_of(&w.mailboxes[1].dir);
    w.alice.start();
    w.bob.start();
    let got = receive(&w.bob, "alice", 100, 300);
    assert_eq!(got, sent);
    wait_states(&w.alice, "bob", 101, &["delivered", "read"], 60);
    w.stop_all();
}

#[test]
fn a_node_back_from_away_fetches_its_contacts_newer_records() {
    let mut w = world();
    w.bob.stop();
    // While Bob is away, Alice moves to a third mailbox node alone: her
    // log names only it, and her node publishes the new record.
    let boot: Vec<String> = w.mailboxes.iter().map(|m| address_of(&m.dir)).collect();
    let dir = w._tmp.path().join("mailbox3");
    let listen = format!("/ip4/127.0.0.1/tcp/{}", free_port());
    configure(&dir, &w._devnet, &listen, &boot, "collect_secs = 1\n");
    let child = start_node(&dir);
    let third = peer_of(&address_of(&dir));
    w.mailboxes.push(Node {
        dir,
        child: Some(child),
    });
    w.alice.stop();
    let moved = ok_json(&cairn(&w.alice.dir, &["--json", "mailboxes", &third]));
    assert_eq!(moved["mailboxes"], json!([third]));
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    w.alice.start();
    status_when(&w.alice.dir, |s| {
        s["network"]["record_published"].as_u64() >= Some(since)
    });
    // Bob comes back and writes first. His node knew only Alice's old
    // mailboxes (where she no longer looks): it fetches her newer record
    // and the message reaches her through the new one.
    w.bob.start();
    ok_json(&cairn(
        &w.bob.dir,
        &["--json", "send", "alice", "did you move?"],
    ));
    assert_eq!(receive(&w.alice, "bob", 1, 90), ["did you move?"]);
}

#[test]
fn a_stranger_who_writes_first_waits_as_a_request_until_added() {
    let w = world();
    // Alice no longer has Bob as a contact; Bob still has her.
    ok_json(&cairn(
        &w.alice.dir,
        &["--json", "contact", "remove", "bob", "--yes"],
    ));
    let bob_id = ok_json(&cairn(&w.bob.dir, &["--json", "id"]))["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok_json(&cairn(
        &w.bob.dir,
        &["--json", "send", "alice", "still there?"],
    ));
    // Alice's node refuses his first message and shows who wrote.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = ok_json(&cairn(&w.alice.dir, &["--json", "contact", "requests"]));
        if r.as_array()
            .unwrap()
            .iter()
            .any(|q| q["id"] == bob_id.as_str())
        {
            break;
        }
        assert!(Instant::now() < deadline, "no request from Bob: {r}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(read_inbox_all(&mut w.alice.api()).is_empty());
    let shown = cairn(&w.alice.dir, &["inbox"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("cairn contact requests"));
    let listed = cairn(&w.alice.dir, &["contact", "requests"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains(&bob_id) && listed.contains("not verified"),
        "{listed}"
    );
    // She adds him back from the network: his message comes through (his
    // node sends it again until it is answered), and the request is gone.
    ok_json(&cairn(
        &w.alice.dir,
        &["--json", "contact", "fetch", &bob_id, "--name", "bob"],
    ));
    assert_eq!(receive(&w.alice, "bob", 1, 90), ["still there?"]);
    let r = ok_json(&cairn(&w.alice.dir, &["--json", "contact", "requests"]));
    assert_eq!(r, json!([]));
}

/// Everything unread in `api`'s inbox, left unread.
fn read_inbox_all(api: &mut ApiClient) -> Vec<Value> {
    let unread = api.call("inbox", json!({ "mark_read": false })).unwrap();
    unread.as_array().unwrap().clone()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[test]
fn every_message_accepted_survives_sigkills_of_the_sender_and_arrives_once() {
    let mut w = world();
    ok_json(&cairn(&w.alice.dir, &["--json", "send", "bob", "before"]));
    assert_eq!(receive(&w.bob, "alice", 1, 60), ["before"]);
    let mut accepted = Vec::new();
    for round in 0..20 {
        // A burst of sends; the node is killed in the middle of it.
        let dir = w.alice.dir.clone();
        let sender = std::thread::spawn(move || {
            let mut ok = Vec::new();
            let Ok(mut api) = ApiClient::connect(&dir) else {
                return ok;
            };
            for i in 0..50 {
                let text = format!("round {round} message {i}");
                match api.call("send", json!({ "to": "bob", "text": text })) {
                    Ok(_) => ok.push(text),
                    Err(_) => break,
                }
            }
            ok
        });
        std::thread::sleep(Duration::from_millis(20 + 7 * round));
        w.alice.kill();
        accepted.extend(sender.join().unwrap());
        w.alice.start();
    }
    assert!(
        accepted.len() >= 20,
        "only {} sends were accepted",
        accepted.len()
    );
    // Every accepted message arrives, once, in order; messages whose
    // acceptance the kill cut off may arrive too.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut got: Vec<String> = Vec::new();
    let mut last_seq = 1;
    let mut api = w.bob.api();
    while !accepted.iter().all(|a| got.contains(a)) {
        if Instant::now() > deadline {
            let mine = w
                .alice
                .api()
                .call("messages", json!({"with": "bob", "limit": 5000}))
                .unwrap();
            panic!(
                "missing: {:?}\nalice: {mine}",
                accepted
                    .iter()
                    .filter(|a| !got.contains(a))
                    .collect::<Vec<_>>()
            );
        }
        for (seq, text) in read_inbox(&mut api, "alice") {
            assert!(seq > last_seq, "message {seq} after {last_seq}");
            last_seq = seq;
            assert!(!got.contains(&text), "{text} came twice");
            got.push(text);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut order = accepted
        .iter()
        .map(|a| got.iter().position(|g| g == a).unwrap());
    let mut last = order.next().unwrap();
    for p in order {
        assert!(p > last, "out of order: {got:?}");
        last = p;
    }
    w.stop_all();
}

/// Anchors `dir`'s identity on the devnet: funds its wallet from a miner,
/// anchors and waits for the confirmation.
fn anchor(devnet: &Devnet, dir: &Path) {
    use bitcoin::{Amount, OutPoint};
    use std::str::FromStr;
    let rpc = devnet.client().unwrap();
    let miner = cairn_devnet::DevWallet::from_secret([5u8; 32]).unwrap();
    rpc.generate_to_address(101, &miner.address()).unwrap();
    let block = rpc.block(&rpc.block_hash(1).unwrap()).unwrap();
    let cb = &block.txdata[0];
    let coin = (OutPoint::new(cb.compute_txid(), 0), cb.output[0].clone());
    let addr = ok_json(&cairn(dir, &["--json", "wallet", "address"]))["address"]
        .as_str()
        .unwrap()
        .to_string();
    let to = bitcoin::Address::from_str(&addr)
        .unwrap()
        .assume_checked()
        .script_pubkey();
    rpc.send_raw_transaction(&miner.pay(
        coin,
        to,
        Amount::from_sat(1_000_000),
        Amount::from_sat(2_000),
    ))
    .unwrap();
    rpc.generate_to_address(1, &miner.address()).unwrap();
    ok_json(&cairn(
        dir,
        &["--json", "anchor", "--no-wait", "--fee-rate", "2"],
    ));
    rpc.generate_to_address(1, &miner.address()).unwrap();
    let a = ok_json(&cairn(dir, &["--json", "anchor"]));
    assert_eq!(a["anchored"], true, "{a}");
}

#[test]
fn bob_rotates_mid_conversation_and_it_goes_on_without_a_manual_step() {
    let mut w = world_with(|devnet, people| anchor(devnet, &people[1]));
    ok_json(&cairn(&w.alice.dir, &["--json", "send", "bob", "before"]));
    assert_eq!(receive(&w.bob, "alice", 1, 60), ["before"]);
    let v = ok_json(&cairn(
        &w.alice.dir,
        &["--json", "contact", "verify", "bob"],
    ));
    assert_eq!(v["verdict"]["status"], "current", "{v}");
    // While his node runs, Bob's balance is the one of the wallet's last
    // scan, and says so.
    let b = ok_json(&cairn(&w.bob.dir, &["--json", "wallet", "balance"]));
    assert!(b["total_sat"].as_u64().unwrap() > 900_000, "{b}");
    assert!(
        b["stale"].as_str().unwrap().contains("node is running"),
        "{b}"
    );

    // Bob rotates (his node stopped: rotating needs the store and the seed).
    w.bob.stop();
    let r = ok_json(&cairn(
        &w.bob.dir,
        &["--json", "rotate", "--no-wait", "--fee-rate", "2"],
    ));
    let rpc = w._devnet.client().unwrap();
    let miner = cairn_devnet::DevWallet::from_secret([5u8; 32]).unwrap();
    rpc.generate_to_address(1, &miner.address()).unwrap();
    assert_eq!(r["rotation_index"], 1, "{r}");
    // Alice's node follows it from the chain alone.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ids = w.alice.api().call("identities", json!({})).unwrap();
        let bob = ids
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == "bob")
            .cloned()
            .unwrap();
        if bob["verdict"]["status"] == "current" && bob["verdict"]["rotation_index"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Alice's node did not follow: {bob}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Bob's node comes back with the new keys; the conversation goes on.
    w.bob.start();
    ok_json(&cairn(&w.alice.dir, &["--json", "send", "bob", "after"]));
    assert_eq!(receive(&w.bob, "alice", 1, 60), ["after"]);
    ok_json(&cairn(
        &w.bob.dir,
        &["--json", "send", "alice", "new key, same chat"],
    ));
    assert_eq!(receive(&w.alice, "bob", 1, 60), ["new key, same chat"]);
    w.stop_all();
    // His node named his mailboxes again under the new key.
    let m = ok_json(&cairn(&w.bob.dir, &["--json", "mailboxes"]));
    assert_eq!(m["mailboxes"].as_array().unwrap().len(), 2, "{m}");
}

#[test]
fn bad_envelopes_from_a_peer_are_refused_and_change_nothing() {
    use cairn_messaging::mailbox::{epoch, prekey_address};
    use cairn_messaging::payload::envelope;
    use cairn_net::{MailRequest, MailResponse, MailStatus};

    let mut w = world();
    ok_json(&cairn(&w.alice.dir, &["--json", "send", "bob", "real"]));
    assert_eq!(receive(&w.bob, "alice", 1, 60), ["real"]);
    // Bob's public prekey (in his log, so anyone may know it).
    w.bob.stop();
    let prekeys = ok_json(&cairn(&w.bob.dir, &["--json", "prekeys"]));
    let prekey: [u8; 32] = hex(prekeys[0]["key"].as_str().unwrap()).try_into().unwrap();
    w.bob.start();
    let s = status_when(&w.bob.dir, |_| true);
    let bob_peer: cairn_net::PeerId = s["network"]["peer_id"].as_str().unwrap().parse().unwrap();
    let bob_addr: cairn_net::Multiaddr = format!(
        "{}/p2p/{bob_peer}",
        s["network"]["listen"][0].as_str().unwrap()
    )
    .parse()
    .unwrap();
    let history = |node: &Node| {
        node.api()
            .call("messages", json!({ "limit": 10_000 }))
            .unwrap()
    };
    let before = history(&w.bob);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let to_prekey = prekey_address(&prekey, epoch(now));
    // A first message sealed to nothing: right address, bytes of no one.
    let mut forged = vec![1u8, 0, 0, 0, prekeys[0]["id"].as_u64().unwrap() as u8];
    forged.resize(1024, 0x42);
    let cases = [
        ("forged", envelope(&to_prekey, &forged), MailStatus::Invalid),
        (
            "truncated",
            envelope(&to_prekey, &forged[..40]),
            MailStatus::Invalid,
        ),
        (
            "another address",
            envelope(&[7; 32], &[3; 1024]),
            MailStatus::Unknown,
        ),
        (
            "not a message",
            envelope(&to_prekey, &[9; 100]),
            MailStatus::Invalid,
        ),
    ];
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let config = cairn_net::NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            mdns: false,
            full: false,
            ..cairn_net::NetConfig::default()
        };
        let (net, _events) = cairn_net::Network::start(
            cairn_net::Keypair::generate_ed25519(),
            config,
            std::sync::Arc::new(cairn_node::network::RecordPolicy::new()),
            None,
        )
        .await
        .unwrap();
        net.dial(bob_addr).await.unwrap();
        for (what, env, want) in &cases {
            let r = net
                .mail(bob_peer, &MailRequest::Deliver(vec![env.clone()]))
                .await
                .unwrap();
            assert_eq!(r, MailResponse::Status(vec![*want]), "{what}");
        }
        net.stop().await;
    });
    assert_eq!(history(&w.bob), before, "nothing changed");
    // Bob's node goes on as before.
    ok_json(&cairn(
        &w.alice.dir,
        &["--json", "send", "bob", "still here"],
    ));
    assert_eq!(receive(&w.bob, "alice", 1, 60), ["still here"]);
    w.stop_all();
}
