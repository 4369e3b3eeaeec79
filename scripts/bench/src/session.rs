//! Session benchmarks (issue: messaging). Run with
//! `cargo run --release -p cairn-bench --bin bench-session`.
//!
//! Prints the cost of one session message (encrypt + decrypt, double ratchet
//! and padding included) next to raw snow transport encrypt + decrypt of a
//! message of the same size on the wire, measured in the same run, and
//! their ratio (goal ≤ 1.5× raw). A 1 KiB message on the wire carries 963
//! bytes of content (the rest is the ratchet header, length prefix and tag);
//! 1,024 bytes of content go out padded to the next size, 4 KiB, and that
//! figure is printed too.

use std::hint::black_box;
use std::time::{Duration, Instant};

use cairn_messaging::pad::max_content;
use cairn_messaging::session::RATCHET_OVERHEAD;
use cairn_messaging::{accept, open, start, PeerIdentity, PeerPrekey, Session};
use cairn_wallet::IdentityId;
use zeroize::Zeroizing;

const MESSAGES: u32 = 20_000;
const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn public(s: [u8; 32]) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(s)).to_bytes()
}

fn session_pair() -> (Session, Session) {
    let (alice, bob) = (IdentityId([1; 32]), IdentityId([2; 32]));
    let (ka, kb, pk) = ([4u8; 32], [5u8; 32], [6u8; 32]);
    let peer = PeerIdentity {
        id: bob,
        messaging_key: public(kb),
    };
    let prekey = PeerPrekey {
        id: 1,
        key: public(pk),
    };
    let (pending, first) = start(alice, &ka, &peer, &prekey, b"hi").expect("start");
    let opened = open(&bob, &first, |_| Some(Zeroizing::new(pk))).expect("open");
    let acc = accept(&bob, &public(kb), &opened, &public(ka), b"").expect("accept");
    let (a, _) = pending.finish(&acc.answer).expect("finish");
    (a, acc.session)
}

/// Nanoseconds per encrypt + decrypt of `content` through a session.
fn session_cost(content: &[u8]) -> (f64, usize) {
    let mut wire = 0;
    let runs = (0..RUNS)
        .map(|_| {
            let (mut a, mut b) = session_pair();
            let t = Instant::now();
            for _ in 0..MESSAGES {
                let m = a.encrypt(black_box(content)).expect("encrypt");
                wire = m.len();
                black_box(b.decrypt(&m).expect("decrypt"));
            }
            t.elapsed()
        })
        .collect();
    (median(runs).as_nanos() as f64 / f64::from(MESSAGES), wire)
}

/// Nanoseconds per encrypt + decrypt of a `wire`-byte message through raw
/// snow transport states (Noise_KK, the same cipher suite).
fn raw_cost(wire: usize) -> f64 {
    let pattern = "Noise_KK_25519_ChaChaPoly_BLAKE2s";
    let (ka, kb) = ([4u8; 32], [5u8; 32]);
    let (pa, pb) = (public(ka), public(kb));
    let mut i = snow::Builder::new(pattern.parse().expect("pattern"))
        .local_private_key(&ka)
        .and_then(|b| b.remote_public_key(&pb))
        .and_then(|b| b.build_initiator())
        .expect("initiator");
    let mut r = snow::Builder::new(pattern.parse().expect("pattern"))
        .local_private_key(&kb)
        .and_then(|b| b.remote_public_key(&pa))
        .and_then(|b| b.build_responder())
        .expect("responder");
    let (mut m, mut p) = (vec![0u8; 65535], vec![0u8; 65535]);
    let n = i.write_message(&[], &mut m).expect("kk1");
    r.read_message(&m[..n], &mut p).expect("kk1");
    let n = r.write_message(&[], &mut m).expect("kk2");
    i.read_message(&m[..n], &mut p).expect("kk2");
    let (mut i, mut r) = (
        i.into_transport_mode().expect("transport"),
        r.into_transport_mode().expect("transport"),
    );
    let payload = vec![0x5au8; wire - 16];
    let runs = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..MESSAGES {
                let n = i.write_message(black_box(&payload), &mut m).expect("write");
                black_box(r.read_message(&m[..n], &mut p).expect("read"));
            }
            t.elapsed()
        })
        .collect();
    median(runs).as_nanos() as f64 / f64::from(MESSAGES)
}

fn main() {
    println!("session messages: encrypt + decrypt, median of {RUNS} runs of {MESSAGES}");
    let fits = max_content(RATCHET_OVERHEAD).min(1024 - RATCHET_OVERHEAD - 4);
    for content in [fits, 1024] {
        let (session, wire) = session_cost(&vec![0x5au8; content]);
        let raw = raw_cost(wire);
        println!(
            "  {content:>5} B content → {wire:>5} B on the wire: session {:>7.0} ns, raw snow transport {:>7.0} ns, ratio {:.2}× (goal ≤ 1.5×)",
            session,
            raw,
            session / raw
        );
    }
}
