//! The `cairn` binary driven the way a person or a script drives it: real
//! processes, a real RocksDB in temporary data dirs, real keystore files.

mod common;
use common::{failure, ok_json};

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const PASS: &str = "correct horse battery";

fn cairn(dir: &Path, args: &[&str], stdin: Option<&str>, pass: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.arg("--data-dir").arg(dir).args(args);
    cmd.env_remove("CAIRN_PASSPHRASE")
        .env_remove("CAIRN_BIP39_PASSPHRASE")
        .env_remove("CAIRN_DATA_DIR");
    if let Some(p) = pass {
        cmd.env("CAIRN_PASSPHRASE", p);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn cairn");
    {
        let mut si = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            si.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait")
}

fn has_identity(dir: &Path) -> bool {
    cairn(dir, &["id", "--json"], None, None).status.success()
}

#[test]
fn init_then_restore_gives_the_same_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let created = ok_json(&cairn(
        &a,
        &["--json", "init", "--yes", "--words", "24"],
        None,
        Some(PASS),
    ));
    let words = created["words"].as_str().unwrap().to_string();
    assert_eq!(words.split(' ').count(), 24);
    let id_a = ok_json(&cairn(&a, &["id", "--json"], None, None));
    assert!(id_a["id"].as_str().unwrap().starts_with("cairn1"));
    assert_eq!(id_a["id"], created["id"]);

    // Typed messily, restored into a fresh dir: the same identity, byte for byte.
    let messy = format!("  {}\n", words.to_uppercase().replace(' ', "   "));
    ok_json(&cairn(
        &b,
        &["--json", "restore"],
        Some(&messy),
        Some("another passphrase"),
    ));
    let id_b = ok_json(&cairn(&b, &["id", "--json"], None, None));
    assert_eq!(id_a, id_b);

    // Restoring the same words again is harmless; other words are refused.
    let again = ok_json(&cairn(&b, &["--json", "restore"], Some(&words), Some(PASS)));
    assert_eq!(again["already_present"], true);
    let other = ok_json(&cairn(
        &tmp.path().join("c"),
        &["--json", "init", "--yes"],
        None,
        Some(PASS),
    ));
    let err = failure(&cairn(
        &b,
        &["restore"],
        Some(other["words"].as_str().unwrap()),
        Some(PASS),
    ));
    assert!(err.contains("already holds a different identity"), "{err}");
    assert_eq!(ok_json(&cairn(&b, &["id", "--json"], None, None)), id_a);

    // A BIP39 passphrase gives a different identity, and restore shows its fingerprint.
    let mut cmd_out = {
        let d = tmp.path().join("d");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.arg("--data-dir")
            .arg(&d)
            .args(["restore", "--bip39-passphrase"]);
        cmd.env("CAIRN_PASSPHRASE", PASS)
            .env("CAIRN_BIP39_PASSPHRASE", "extra words");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut c = cmd.spawn().unwrap();
        c.stdin.take().unwrap().write_all(words.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    };
    assert!(
        cmd_out.status.success(),
        "{}",
        String::from_utf8_lossy(&cmd_out.stderr)
    );
    let text = String::from_utf8(std::mem::take(&mut cmd_out.stdout)).unwrap();
    assert!(text.contains("Fingerprint"), "{text}");
    assert!(!text.contains(id_a["id"].as_str().unwrap()));
}

#[test]
fn wrong_word_and_bad_checksum_have_their_own_errors_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("x");
    let good = "legal winner thank year wave sausage worth useful legal winner thank yellow";

    let typo = good.replace("sausage", "sausge");
    let err = failure(&cairn(&dir, &["restore"], Some(&typo), Some(PASS)));
    assert!(
        err.contains("word 6") && err.contains("sausge") && err.contains("sausage"),
        "{err}"
    );
    assert!(!has_identity(&dir));

    let checksum = good.replace("yellow", "year");
    let err = failure(&cairn(&dir, &["restore"], Some(&checksum), Some(PASS)));
    assert!(err.contains("checksum"), "{err}");
    assert!(!has_identity(&dir));

    let short = "legal winner thank";
    let err = failure(&cairn(&dir, &["restore"], Some(short), Some(PASS)));
    assert!(err.contains("12, 15, 18, 21 or 24"), "{err}");
    assert!(!has_identity(&dir));
    assert!(!dir.join("keystore").join("seed.cks").exists());

    // The right words still work afterwards.
    ok_json(&cairn(&dir, &["--json", "restore"], Some(good), Some(PASS)));
    assert!(has_identity(&dir));
}

#[test]
fn keystore_wrong_passphrase_and_damage_are_distinct_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("k");
    ok_json(&cairn(&dir, &["--json", "init", "--yes"], None, Some(PASS)));
    ok_json(&cairn(
        &dir,
        &["--json", "keystore", "check"],
        None,
        Some(PASS),
    ));

    let err = failure(&cairn(
        &dir,
        &["keystore", "check"],
        None,
        Some("not the passphrase"),
    ));
    assert!(err.contains("wrong passphrase"), "{err}");

    // Passphrase from a file works too.
    let pf = tmp.path().join("pass.txt");
    std::fs::write(&pf, format!("{PASS}\n")).unwrap();
    ok_json(&cairn(
        &dir,
        &[
            "--json",
            "--passphrase-file",
            pf.to_str().unwrap(),
            "keystore",
            "check",
        ],
        None,
        None,
    ));

    // Flip one byte of the hot-key file.
    let hot = dir.join("keystore").join("hot.cks");
    let mut bytes = std::fs::read(&hot).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&hot, &bytes).unwrap();
    let err = failure(&cairn(&dir, &["keystore", "check"], None, Some(PASS)));
    assert!(err.contains("damaged"), "{err}");
    assert!(!err.contains("wrong passphrase"), "{err}");

    // No passphrase and no terminal: an error that says what to do.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.arg("--data-dir")
        .arg(tmp.path().join("n"))
        .args(["init", "--yes"]);
    cmd.env_remove("CAIRN_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    if std::fs::File::open("/dev/tty").is_err() {
        assert!(failure(&out).contains("CAIRN_PASSPHRASE"));
    }
    // A short new passphrase is refused before anything is shown.
    let err = failure(&cairn(
        &tmp.path().join("s"),
        &["init", "--yes"],
        None,
        Some("short"),
    ));
    assert!(err.contains("at least 8"), "{err}");
}

#[test]
fn log_export_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("l");
    let created = ok_json(&cairn(&dir, &["--json", "init", "--yes"], None, Some(PASS)));
    let file = tmp.path().join("alice.kel");
    ok_json(&cairn(
        &dir,
        &["--json", "log", "export", file.to_str().unwrap()],
        None,
        None,
    ));

    // Anyone can verify it, without a data dir of their own identity.
    let other = tmp.path().join("other");
    let v = ok_json(&cairn(
        &other,
        &["--json", "log", "verify", file.to_str().unwrap()],
        None,
        None,
    ));
    assert_eq!(v["valid"], true);
    assert_eq!(v["id"], created["id"]);
    assert_eq!(v["log"]["events"][0]["kind"], "inception");
    assert_eq!(v["verdict"]["status"], "unanchored");

    // A flipped signature byte is named as the failing event.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = tmp.path().join("bad.kel");
    std::fs::write(&bad, &bytes).unwrap();
    let out = cairn(
        &other,
        &["--json", "log", "verify", bad.to_str().unwrap()],
        None,
        None,
    );
    let err = failure(&out);
    assert!(
        err.contains("event 0 (inception)") && err.contains("signature"),
        "{err}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["verdict"]["position"], 0);
    assert_eq!(v["verdict"]["status"], "invalid");

    // Garbage is a decode error, not a panic.
    std::fs::write(&bad, b"CAIRNKEL\x01\xff\xff\xff\xff").unwrap();
    let err = failure(&cairn(
        &other,
        &["log", "verify", bad.to_str().unwrap()],
        None,
        None,
    ));
    assert!(err.contains("not a valid key event log"), "{err}");
}

#[test]
fn safety_number_is_the_same_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let ia = ok_json(&cairn(&a, &["--json", "init", "--yes"], None, Some(PASS)));
    let ib = ok_json(&cairn(&b, &["--json", "init", "--yes"], None, Some(PASS)));
    let na = ok_json(&cairn(
        &a,
        &["--json", "safety-number", ib["id"].as_str().unwrap()],
        None,
        None,
    ));
    let nb = ok_json(&cairn(
        &b,
        &["--json", "safety-number", ia["id"].as_str().unwrap()],
        None,
        None,
    ));
    assert_eq!(na["safety_number"], nb["safety_number"]);
    assert_eq!(na["safety_number"].as_str().unwrap().len(), 60);
    let err = failure(&cairn(&a, &["safety-number", "cairn1notanid"], None, None));
    assert!(err.contains("not a valid identity id"), "{err}");
}

#[test]
fn store_of_a_newer_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    ok_json(&cairn(&dir, &["--json", "init", "--yes"], None, Some(PASS)));
    {
        let store = cairn_node::Store::open(&dir.join("store")).unwrap();
        store
            .set_schema_version(cairn_node::store::SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = failure(&cairn(&dir, &["id"], None, None));
    assert!(err.contains("newer than this cairn understands"), "{err}");
}

#[test]
fn id_without_identity_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let err = failure(&cairn(&tmp.path().join("e"), &["id"], None, None));
    assert!(
        err.contains("cairn init") && err.contains("cairn restore"),
        "{err}"
    );
    let out = cairn(&tmp.path().join("e"), &["--json", "id"], None, None);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["error"].as_str().unwrap().contains("no identity"));
}

#[test]
fn prekeys_are_published_in_the_log_and_reach_a_contact_through_the_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let (bob, alice) = (tmp.path().join("bob"), tmp.path().join("alice"));
    ok_json(&cairn(&bob, &["--json", "init", "--yes"], None, Some(PASS)));
    let none = ok_json(&cairn(&bob, &["--json", "prekeys"], None, None));
    assert_eq!(none, serde_json::json!([]));
    // Publishing needs the passphrase.
    let err = failure(&cairn(&bob, &["prekeys", "refresh"], None, Some("wrong")));
    assert!(err.contains("passphrase"), "{err}");
    let r = ok_json(&cairn(
        &bob,
        &["--json", "prekeys", "refresh"],
        None,
        Some(PASS),
    ));
    assert_eq!(r["made"], 1);
    assert_eq!(r["prekeys"][0]["secret_held"], true);
    // A second refresh has nothing to do.
    let again = ok_json(&cairn(
        &bob,
        &["--json", "prekeys", "refresh"],
        None,
        Some(PASS),
    ));
    assert!(again["made"].is_null());
    let listed = ok_json(&cairn(&bob, &["--json", "prekeys"], None, None));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // The log still verifies, with its interaction event; the identity is
    // unchanged.
    let id = ok_json(&cairn(&bob, &["--json", "id"], None, None));
    assert_eq!(id["rotation_index"], 0);
    let log = tmp.path().join("bob.kel");
    cairn(&bob, &["log", "export", log.to_str().unwrap()], None, None);
    let v = ok_json(&cairn(
        &bob,
        &["--json", "log", "verify", log.to_str().unwrap()],
        None,
        None,
    ));
    assert_eq!(v["valid"], true);
    // A contact gets the prekey with the bundle.
    let bundle = ok_json(&cairn(&bob, &["--json", "id", "export"], None, None));
    assert_eq!(bundle["events"], 2);
    ok_json(&cairn(
        &alice,
        &["--json", "init", "--yes"],
        None,
        Some(PASS),
    ));
    // Alice's contact book is sealed under her keys: adding needs her passphrase.
    let add = [
        "--json",
        "contact",
        "add",
        bundle["bundle"].as_str().unwrap(),
        "--name",
        "robert-from-work",
    ];
    assert!(failure(&cairn(&alice, &add, None, None)).contains("passphrase"));
    let added = ok_json(&cairn(&alice, &add, None, Some(PASS)));
    assert_eq!(added["id"], id["id"]);
    let listed = ok_json(&cairn(
        &alice,
        &["--json", "contact", "list"],
        None,
        Some(PASS),
    ));
    assert_eq!(listed[0]["name"], "robert-from-work");
    // Her store shows neither Bob's id nor his name.
    let bob_id: cairn_wallet::IdentityId = id["id"].as_str().unwrap().parse().unwrap();
    let store = cairn_node::Store::open(&alice.join("store")).unwrap();
    for cf in cairn_node::store::COLUMN_FAMILIES {
        for (k, v) in store.scan(cf, b"", usize::MAX).unwrap() {
            for hay in [&k, &v] {
                assert!(!hay.windows(32).any(|w| w == bob_id.0), "Bob's id in {cf}");
                assert!(
                    !hay.windows(16).any(|w| w == b"robert-from-work"),
                    "Bob's name in {cf}"
                );
            }
        }
    }
    drop(store);
    // Renamed, then removed (which asks first, or takes --yes).
    let r = ok_json(&cairn(
        &alice,
        &["--json", "contact", "rename", "robert-from-work", "bob"],
        None,
        Some(PASS),
    ));
    assert_eq!(r["name"], "bob");
    let err = failure(&cairn(
        &alice,
        &["contact", "remove", "bob"],
        None,
        Some(PASS),
    ));
    assert!(err.contains("--yes"), "{err}");
    let gone = ok_json(&cairn(
        &alice,
        &["--json", "contact", "remove", "bob", "--yes"],
        None,
        Some(PASS),
    ));
    assert_eq!(gone["id"], id["id"]);
    let listed = ok_json(&cairn(
        &alice,
        &["--json", "contact", "list"],
        None,
        Some(PASS),
    ));
    assert_eq!(listed, serde_json::json!([]));
}
