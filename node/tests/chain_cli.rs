//! `cairn chain status` and `cairn chain sync` through the real binary,
//! against the devnet over RPC on loopback, with the `[bitcoin]` settings in
//! the data dir's `cairn.toml`.

use std::path::Path;
use std::process::{Command, Output};

use cairn_devnet::{DevWallet, Devnet};
use serde_json::Value;

fn cairn(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("CAIRN_DATA_DIR")
        .env_remove("CAIRN_RPC_PASSWORD")
        .output()
        .expect("run cairn")
}

fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "cairn failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

fn write_config(dir: &Path, devnet: &Devnet) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("cairn.toml"),
        format!(
            "[bitcoin]\nnetwork = \"regtest\"\nrpc_url = \"{}\"\nrpc_cookie = \"{}\"\nconfirmations = 1\n",
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
