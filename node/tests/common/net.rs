//! Running `cairn node`s with the network on loopback.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cairn_devnet::Devnet;
use serde_json::Value;

use super::ok_json;

pub const PASS: &str = "network test passphrase";

pub fn cairn(dir: &Path, args: &[&str]) -> Output {
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

/// Writes `DIR/cairn.toml`: the devnet, the network on `listen`
/// (loopback), `bootstrap` peers, then `extra` lines of `[network]`.
pub fn configure(dir: &Path, devnet: &Devnet, listen: &str, bootstrap: &[String], extra: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let boot: Vec<String> = bootstrap.iter().map(|b| format!("{b:?}")).collect();
    std::fs::write(
        dir.join("cairn.toml"),
        format!(
            "[bitcoin]\nnetwork = \"regtest\"\nrpc_url = \"{}\"\nrpc_cookie = \"{}\"\nconfirmations = 1\n\n[network]\nlisten = [\"{listen}\"]\nmdns = false\nbootstrap = [{}]\n{extra}",
            devnet.url(),
            devnet.cookie_path().display(),
            boot.join(", ")
        ),
    )
    .unwrap();
}

/// A person: an identity, a config on the devnet and the network.
pub fn person(dir: &Path, devnet: &Devnet, bootstrap: &[String]) -> Value {
    configure(dir, devnet, "/ip4/127.0.0.1/tcp/0", bootstrap, "");
    ok_json(&cairn(dir, &["--json", "init", "--yes"]))
}

/// A TCP port free on loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The running node's first listen address with its peer id.
pub fn address_of(dir: &Path) -> String {
    let s = status_when(dir, |s| {
        s["network"]["listen"]
            .as_array()
            .is_some_and(|l| !l.is_empty())
    });
    format!(
        "{}/p2p/{}",
        s["network"]["listen"][0].as_str().unwrap(),
        s["network"]["peer_id"].as_str().unwrap()
    )
}

pub fn start_node(dir: &Path) -> Child {
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
pub fn status_when(dir: &Path, ready: impl Fn(&Value) -> bool) -> Value {
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

pub fn stop(dir: &Path, mut child: Child) {
    ok_json(&cairn(dir, &["node", "stop", "--json"]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the node did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}
