//! The Bitcoin-facing commands through the real binary (`cairn chain`,
//! `cairn wallet`, `cairn anchor`, `cairn id export`, `cairn contact`),
//! against the devnet over RPC on loopback, with the `[bitcoin]` settings in
//! the data dir's `cairn.toml`.

mod common;
use common::{failure, ok_json};

use std::path::Path;
use std::process::{Command, Output};
use std::str::FromStr as _;

use cairn_devnet::{DevWallet, Devnet};
use serde_json::Value;

fn cairn(dir: &Path, args: &[&str]) -> Output {
    cairn_with(dir, args, None)
}

/// `cairn` with the keystore passphrase `pass` in its environment.
fn cairn_with(dir: &Path, args: &[&str], pass: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("CAIRN_DATA_DIR")
        .env_remove("CAIRN_RPC_PASSWORD")
        .env_remove("CAIRN_PASSPHRASE")
        .stdin(std::process::Stdio::null());
    if let Some(p) = pass {
        cmd.env("CAIRN_PASSPHRASE", p);
    }
    cmd.output().expect("run cairn")
}

fn write_config(dir: &Path, devnet: &Devnet) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("cairn.toml"),
        format!(
            "[bitcoin]\nnetwork = \"regtest\"\nrpc_url = \"{}\"\nrpc_cookie = \"{}\"\nconfirmations = 1\n\n[network]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nmdns = false\n",
            devnet.url(),
            devnet.cookie_path().display()
        ),
    )
    .unwrap();
}

#[test]
fn chain_sync_and_status_follow_the_devnet_across_a_reorg() {
    let devnet = Devnet::start().unwrap();
    let rpc = devnet.client().unwrap();
    let w = DevWallet::from_secret([3u8; 32]).unwrap();
    let hashes = rpc.generate_to_address(150, &w.address()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    write_config(&dir, &devnet);

    // Before syncing: the status shows how far behind the node is.
    let s = ok_json(&cairn(&dir, &["chain", "status", "--json"]));
    assert_eq!(s["network"], "regtest");
    assert_eq!(s["height"], 0);
    assert_eq!(s["sync"], "behind by 150 blocks");
    assert_eq!(s["source"]["height"], 150);

    let r = ok_json(&cairn(&dir, &["chain", "sync", "--json"]));
    assert_eq!(r["height"], 150);
    assert_eq!(r["tip"], hashes[149].to_string());
    assert_eq!(r["added"], 150);
    let s = ok_json(&cairn(&dir, &["chain", "status", "--json"]));
    assert_eq!(s["sync"], "synced");
    assert_eq!(s["tip"], hashes[149].to_string());

    // A reorg of depth 2 on the devnet; the next sync reports it.
    rpc.invalidate_block(&hashes[148]).unwrap();
    let alt = DevWallet::from_secret([4u8; 32]).unwrap();
    let new = rpc.generate_to_address(3, &alt.address()).unwrap();
    let r = ok_json(&cairn(&dir, &["chain", "sync", "--json"]));
    assert_eq!(r["height"], 151);
    let reorg = &r["reorgs"][0];
    assert_eq!(reorg["disconnected"][0]["hash"], hashes[149].to_string());
    assert_eq!(reorg["disconnected"][1]["hash"], hashes[148].to_string());
    assert_eq!(reorg["connected"][0]["hash"], new[0].to_string());
    assert_eq!(reorg["connected"][2]["height"], 151);

    // Text output names the source, labelled as the devnet.
    let out = cairn(&dir, &["chain", "status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("Sync           synced"), "{text}");
    assert!(text.contains(devnet.url()), "{text}");
    if devnet.kind() == "builtin" {
        assert!(text.contains("stand-in for bitcoind -regtest"), "{text}");
    }
}

#[test]
fn chain_commands_explain_bad_settings() {
    let devnet = Devnet::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    write_config(&dir, &devnet);

    // The wrong network: sync refuses, status still shows the local chain.
    let out = cairn(&dir, &["chain", "--network", "main", "sync"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("regtest") && err.contains("main"), "{err}");
    let s = ok_json(&cairn(
        &dir,
        &["chain", "status", "--json", "--network", "main"],
    ));
    assert_eq!(s["sync"], "source unavailable");
    assert!(s["source"]["error"].as_str().unwrap().contains("regtest"));

    // Nobody listening.
    let out = cairn(&dir, &["chain", "--rpc-url", "http://127.0.0.1:1", "sync"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("unreachable"), "{err}");

    // A wrong cookie.
    let bad = tmp.path().join("bad.cookie");
    std::fs::write(&bad, "__cookie__:wrong").unwrap();
    let out = cairn(
        &dir,
        &["chain", "--rpc-cookie", bad.to_str().unwrap(), "sync"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("401"), "{err}");

    // A config file with a typo is refused with its line.
    std::fs::write(dir.join("cairn.toml"), "[bitcoin]\nnetwrok = \"regtest\"\n").unwrap();
    let out = cairn(&dir, &["chain", "status"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("netwrok") && err.contains("cairn.toml"),
        "{err}"
    );
}

#[test]
fn the_funding_wallet_pays_and_anchors_the_identity_through_the_cli() {
    use bitcoin::{Amount, OutPoint};
    const PASS: &str = "wallet test passphrase";

    let devnet = Devnet::start().unwrap();
    let rpc = devnet.client().unwrap();
    let miner = DevWallet::from_secret([5u8; 32]).unwrap();
    rpc.generate_to_address(101, &miner.address()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    write_config(&dir, &devnet);
    let created = ok_json(&cairn_with(&dir, &["--json", "init", "--yes"], Some(PASS)));
    let words = created["words"].as_str().unwrap().to_string();

    // The first address asks for the passphrase once, to set the wallet up from the seed.
    let out = cairn_with(
        &dir,
        &["wallet", "address", "--json"],
        Some("wrong passphrase"),
    );
    assert!(failure(&out).contains("passphrase"));
    let a = ok_json(&cairn_with(
        &dir,
        &["wallet", "address", "--json"],
        Some(PASS),
    ));
    let addr = a["address"].as_str().unwrap().to_string();
    assert!(addr.starts_with("bcrt1p"), "{addr}");
    assert_eq!(a["index"], 0);
    // Until it is used, the same address comes back, and no passphrase is needed.
    let again = ok_json(&cairn(&dir, &["wallet", "address", "--json"]));
    assert_eq!(again["address"], addr.as_str());

    // Coins arrive from the devnet's miner.
    let block1 = rpc.block(&rpc.block_hash(1).unwrap()).unwrap();
    let cb = &block1.txdata[0];
    let coin = (OutPoint::new(cb.compute_txid(), 0), cb.output[0].clone());
    let to = bitcoin::Address::from_str(&addr)
        .unwrap()
        .assume_checked()
        .script_pubkey();
    let half = Amount::from_btc(0.5).unwrap();
    rpc.send_raw_transaction(&miner.pay(coin, to, half, Amount::from_sat(2_000)))
        .unwrap();
    rpc.generate_to_address(1, &miner.address()).unwrap();
    let b = ok_json(&cairn(&dir, &["wallet", "balance", "--json"]));
    assert_eq!(b["confirmed_sat"], 50_000_000);
    assert_eq!(b["height"], 102);
    assert!(b["stale"].is_null());

    // Bad input is refused before anything is signed or sent.
    let payee = DevWallet::from_secret([6u8; 32])
        .unwrap()
        .address()
        .to_string();
    let mainnet = "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr";
    let cases: [(&[&str], &str); 4] = [
        (&["wallet", "send", mainnet, "0.1"], "not a regtest address"),
        (&["wallet", "send", &payee, "lots"], "not an amount"),
        (
            &["wallet", "send", &payee, "0.1", "--fee-rate", "5000"],
            "fee rate 5000",
        ),
        (&["wallet", "send", &payee, "2"], "nsufficient"),
    ];
    for (args, why) in cases {
        let err = failure(&cairn_with(&dir, args, Some(PASS)));
        assert!(err.contains(why), "{args:?}: {err}");
    }

    // A payment: the change is pending until the next block.
    let s = ok_json(&cairn_with(
        &dir,
        &[
            "--json",
            "wallet",
            "send",
            &payee,
            "20000000 sat",
            "--fee-rate",
            "3",
        ],
        Some(PASS),
    ));
    let fee = s["fee_sat"].as_u64().unwrap();
    assert!(fee >= 3 * s["vsize"].as_u64().unwrap());
    let b = ok_json(&cairn(&dir, &["wallet", "balance", "--json"]));
    assert_eq!(b["confirmed_sat"], 0);
    assert_eq!(b["pending_sat"], 30_000_000 - fee);
    let mined = rpc.generate_to_address(1, &miner.address()).unwrap()[0];
    let txid = s["txid"].as_str().unwrap();
    assert!(rpc
        .block(&mined)
        .unwrap()
        .txdata
        .iter()
        .any(|t| t.compute_txid().to_string() == txid));
    let b = ok_json(&cairn(&dir, &["wallet", "balance", "--json"]));
    assert_eq!(b["confirmed_sat"], 30_000_000 - fee);

    // Without the chain source the balance is the last one known, marked stale.
    let b = ok_json(&cairn(
        &dir,
        &[
            "wallet",
            "balance",
            "--json",
            "--rpc-url",
            "http://127.0.0.1:1",
        ],
    ));
    assert_eq!(b["confirmed_sat"], 30_000_000 - fee);
    assert!(b["stale"].as_str().unwrap().contains("unreachable"), "{b}");

    // `cairn anchor`: the inception seal from the funding wallet. Without
    // waiting first; then waiting, while a block is mined.
    let a = ok_json(&cairn_with(
        &dir,
        &["--json", "anchor", "--no-wait", "--fee-rate", "2"],
        Some(PASS),
    ));
    assert_eq!(a["anchored"], false);
    assert_eq!(a["confirmations"], 0);
    let seal = a["seal"].as_str().unwrap().to_string();
    let waiting = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["--json", "anchor"])
        .env_remove("CAIRN_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let block = rpc.generate_to_address(1, &miner.address()).unwrap()[0];
    let a = ok_json(&finish_within(waiting, 120));
    assert_eq!(a["anchored"], true);
    assert_eq!(a["seal"], seal.as_str());
    assert_eq!(a["block"], block.to_string());
    assert_eq!(a["height"], 104);

    // The bundle, as text; a second node with only that text and its own
    // chain source finds the key current.
    let e = ok_json(&cairn(&dir, &["--json", "id", "export"]));
    assert_eq!(e["anchors"], 1);
    let text = e["bundle"].as_str().unwrap();
    let bob = tmp.path().join("bob");
    write_config(&bob, &devnet);
    let mut damaged = text.to_string();
    damaged.truncate(text.len() - 3);
    assert!(failure(&cairn(&bob, &["contact", "add", &damaged])).contains("damaged"));
    let added = ok_json(&cairn(
        &bob,
        &["--json", "contact", "add", text, "--name", "alice"],
    ));
    assert_eq!(added["anchors"], 1);
    let v = ok_json(&cairn(&bob, &["--json", "contact", "verify", "alice"]));
    assert_eq!(v["verdict"]["status"], "current", "{v}");
    assert_eq!(v["verdict"]["anchor_height"], 104);
    assert_eq!(v["verdict"]["seal"], seal.as_str());
    let id = ok_json(&cairn(&dir, &["id", "--json"]));
    assert_eq!(id["anchors"], 1);
    assert_eq!(v["signing_key"], id["signing_key"]);
    assert!(failure(&cairn(&bob, &["contact", "verify", "carol"])).contains("no contact"));

    // Bob runs his node: it watches Alice at every block.
    let node = spawn_with(&bob, &["node", "--poll", "1", "--api", "127.0.0.1:0"], "");
    let status = wait_for_node(&bob, |s| s["watched"] == 1);
    assert!(status["source"]["error"].is_null(), "{status}");
    assert_eq!(status["chain_tip"]["height"], 104);
    let ids = ok_json(&cairn(&bob, &["node", "identities", "--json"]));
    assert_eq!(ids[0]["name"], "alice");
    assert_eq!(ids[0]["verdict"]["status"], "current", "{ids}");
    // It holds the store: the contact commands go through it, the commands
    // that need the store itself say why they cannot run, and a second node
    // on the same directory is refused.
    let v = ok_json(&cairn(&bob, &["--json", "contact", "verify", "alice"]));
    assert_eq!(v["verdict"]["status"], "current", "{v}");
    assert_eq!(v["verdict"]["anchor_height"], 104);
    assert_eq!(v["signing_key"], id["signing_key"]);
    let err = failure(&cairn(&bob, &["contact", "verify", "carol"]));
    assert!(err.contains("no contact is named"), "{err}");
    let carol_dir = tmp.path().join("carol");
    ok_json(&cairn_with(
        &carol_dir,
        &["--json", "init", "--yes"],
        Some(PASS),
    ));
    let carol = ok_json(&cairn(&carol_dir, &["--json", "id", "export"]));
    let err = failure(&cairn(
        &bob,
        &[
            "contact",
            "add",
            carol["bundle"].as_str().unwrap(),
            "--name",
            "alice",
        ],
    ));
    assert!(err.contains("already used"), "{err}");
    let added = ok_json(&cairn(
        &bob,
        &[
            "--json",
            "contact",
            "add",
            carol["bundle"].as_str().unwrap(),
            "--name",
            "carol",
        ],
    ));
    assert_eq!(added["id"], carol["id"]);
    let listed = ok_json(&cairn(&bob, &["--json", "contact", "list"]));
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let v = ok_json(&cairn(&bob, &["--json", "contact", "verify", "carol"]));
    assert_eq!(v["verdict"]["status"], "unanchored", "{v}");
    wait_for_node(&bob, |s| s["watched"] == 2);
    let err = failure(&cairn(&bob, &["wallet", "address"]));
    assert!(err.contains("node is running"), "{err}");
    let err = failure(&cairn(&bob, &["node", "--api", "127.0.0.1:0"]));
    assert!(err.contains("already running"), "{err}");

    // `cairn rotate` with the seed from the keystore, mined while it waits;
    // Bob's node follows the rotation from the chain alone, and says so.
    // At 40 sat/vB the seal (10,000 sat) would keep less than half, so the
    // funding wallet tops it up and pays the fee: more inputs and a change
    // output, input 0 and output 0 where a rotation's always are.
    let rotating = spawn_with(&dir, &["--json", "rotate", "--fee-rate", "40"], PASS);
    wait_for_mempool(&rpc);
    let block = rpc.generate_to_address(1, &miner.address()).unwrap()[0];
    let r = ok_json(&finish_within(rotating, 120));
    assert_eq!(r["rotation_index"], 1);
    assert_eq!(r["anchored"], true);
    let mined = rpc.block(&block).unwrap();
    let spend = mined
        .txdata
        .iter()
        .find(|t| t.input[0].previous_output.to_string() == seal)
        .expect("the rotation spends the seal as its input 0");
    assert!(spend.input.len() >= 2, "{spend:?}");
    assert_eq!(spend.output.len(), 2);
    assert_eq!(spend.output[0].value, Amount::from_sat(10_000));
    let id1 = ok_json(&cairn(&dir, &["id", "--json"]));
    assert_eq!(id1["rotation_index"], 1);
    assert_ne!(id1["signing_key"], id["signing_key"]);
    let mut after = 0;
    let rotated = loop {
        let e = ok_json(&cairn(
            &bob,
            &[
                "node",
                "events",
                "--json",
                "--after",
                &after.to_string(),
                "--wait",
                "30",
            ],
        ));
        let events = e["events"].as_array().unwrap().clone();
        assert!(
            !events.is_empty(),
            "no event within 30 s of the rotation's block"
        );
        after = e["last"].as_u64().unwrap();
        if let Some(r) = events.into_iter().find(|e| e["kind"] == "rotated") {
            break r;
        }
    };
    assert_eq!(rotated["name"], "alice");
    assert_eq!(rotated["rotation_index"], 1);
    assert_eq!(rotated["verdict"]["status"], "current");
    assert!(
        rotated["message"]
            .as_str()
            .unwrap()
            .contains("rotated to key 1 at block 105"),
        "{rotated}"
    );
    let status = ok_json(&cairn(&bob, &["node", "status", "--json"]));
    assert_eq!(status["chain_tip"]["height"], 105);
    let stopped = ok_json(&cairn(&bob, &["node", "stop", "--json"]));
    assert_eq!(stopped["stopped"], true);
    let out = finish_within(node, 30);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!bob.join("node.api").exists());
    assert!(failure(&cairn(&bob, &["node", "status"])).contains("no cairn node is running"));

    // Every contact at once (watching on demand): one list. The node has
    // already followed and stored the rotation.
    let all = ok_json(&cairn(&bob, &["--json", "contact", "verify"]));
    assert_eq!(all.as_array().unwrap().len(), 2);
    let v = all
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "alice")
        .unwrap();
    assert_eq!(v["verdict"]["status"], "current", "{v}");
    assert_eq!(v["verdict"]["rotation_index"], 1);
    assert_eq!(v["followed_rotations"], serde_json::json!([]));
    assert_eq!(v["signing_key"], id1["signing_key"]);

    // On a new machine, the words and the chain bring it all back.
    let laptop = tmp.path().join("laptop");
    write_config(&laptop, &devnet);
    let mut restore = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--data-dir")
        .arg(&laptop)
        .args(["--json", "restore"])
        .env("CAIRN_PASSPHRASE", PASS)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    restore
        .stdin
        .take()
        .unwrap()
        .write_all(words.as_bytes())
        .unwrap();
    let restored = ok_json(&restore.wait_with_output().unwrap());
    assert_eq!(restored["id"], id1["id"]);
    assert_eq!(restored["rotation_index"], 1);
    assert_eq!(
        restored["chain"]["anchor_heights"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(restored["signing_key"], id1["signing_key"]);
    let balance = ok_json(&cairn(&dir, &["wallet", "balance", "--json"]));
    assert_eq!(
        restored["chain"]["funds_confirmed_sat"],
        balance["confirmed_sat"]
    );
    // The restored node's hot keys are those of rotation 1.
    ok_json(&cairn_with(
        &laptop,
        &["--json", "keystore", "check"],
        Some(PASS),
    ));

    // A node holding only the hot keys cannot rotate, and says why.
    std::fs::remove_file(dir.join("keystore").join("seed.cks")).unwrap();
    let err = failure(&cairn_with(
        &dir,
        &["rotate", "--fee-rate", "2"],
        Some(PASS),
    ));
    assert!(err.contains("holds only its hot keys"), "{err}");
}

/// Waits (at most a minute) until the node running on `dir` answers a
/// status for which `ready` holds, and returns that status.
fn wait_for_node(dir: &Path, ready: impl Fn(&Value) -> bool) -> Value {
    let mut last = String::new();
    for _ in 0..600 {
        let out = cairn(dir, &["node", "status", "--json"]);
        if out.status.success() {
            let s: Value = serde_json::from_slice(&out.stdout).unwrap();
            if ready(&s) {
                return s;
            }
            last = s.to_string();
        } else {
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the node was not ready within a minute: {last}");
}

/// Waits (at most a minute) until the devnet's mempool holds a transaction.
fn wait_for_mempool(rpc: &cairn_chain_anchor::rpc::RpcClient) {
    for _ in 0..600 {
        let pool = rpc.call("getrawmempool", serde_json::json!([])).unwrap();
        if pool.as_array().is_some_and(|a| !a.is_empty()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("nothing reached the mempool within a minute");
}

/// The output of `child`, killing it if it has not ended within `secs`.
fn finish_within(mut child: std::process::Child, secs: u64) -> Output {
    for _ in 0..secs * 10 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    panic!(
        "cairn did not finish within {secs} s: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `cairn ARGS` started in the background with the keystore passphrase.
fn spawn_with(dir: &Path, args: &[&str], pass: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env("CAIRN_PASSPHRASE", pass)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}
