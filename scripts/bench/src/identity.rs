//! Identity benchmarks (issue: foundation). Run with
//! `cargo run --release -p cairn-bench --bin bench-identity`.
//!
//! Prints:
//! * key event log verification rate for a 100-event log (decode + verify),
//!   next to the raw BIP340 verification rate measured in the same run, and
//!   their ratio (goal >= 0.5: the verifier spends most of its time in
//!   signature checks);
//! * restore-from-words time, split into word parsing, PBKDF2 (BIP39 seed),
//!   key derivation and log regeneration, and Argon2id (keystore sealing).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bitcoin::secp256k1::{Message, Secp256k1};
use cairn_wallet::kel::{
    establishment_chain, establishment_event, Event, Interaction, Item, KeyEventLog,
};
use cairn_wallet::keystore::{self, HotKeys, KdfParams, SecretKind, SeedSecrets};
use cairn_wallet::{MasterKey, SeedPhrase};

const WORDS: &str =
    "letter advice cage absurd amount doctor acoustic avoid letter advice cage above";
const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Times `f` RUNS times and returns the median.
fn time<F: FnMut()>(mut f: F) -> Duration {
    median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

/// A 100-event log: inception, 9 rotations, 9 interactions after each establishment event.
fn hundred_event_log(m: &MasterKey) -> KeyEventLog {
    let chain = establishment_chain(m, 9).expect("chain");
    let mut log = KeyEventLog::default();
    for (k, est) in chain.into_iter().enumerate() {
        let mut prev = est.digest();
        log.push(est);
        let key = m.signing_key(k as u32).expect("key");
        for seq in 1..=9u32 {
            let items = vec![
                Item::Mailbox(vec![seq as u8; 38]),
                Item::Prekey {
                    id: seq,
                    key: [7; 32],
                    expires: 2_000_000_000,
                },
            ];
            let e = Interaction::new(k as u32, seq, prev, 1_800_000_000 + u64::from(seq), items)
                .expect("interaction");
            let s = Event::Interaction(e).sign(&key).expect("sign");
            prev = s.digest();
            log.push(s);
        }
    }
    assert_eq!(log.len(), 100);
    log
}

fn main() {
    let phrase = SeedPhrase::parse(WORDS).expect("words");
    let m = MasterKey::new(&phrase.to_seed(""));
    let log = hundred_event_log(&m);
    let file = log.encode();
    log.verify().expect("valid log");

    // Log verification: decode the file and verify every event.
    const LOG_ITERS: usize = 40;
    let log_time = time(|| {
        for _ in 0..LOG_ITERS {
            let l = KeyEventLog::decode(black_box(&file)).expect("decode");
            black_box(l.verify().expect("verify"));
        }
    });
    let events_per_s = (LOG_ITERS * 100) as f64 / log_time.as_secs_f64();

    // Baseline: raw BIP340 verification of the same 100 signatures.
    let secp = Secp256k1::verification_only();
    let state = log.verify().expect("valid");
    let mut triples = Vec::new();
    for (i, e) in log.events().iter().enumerate() {
        let est = state
            .establishment
            .iter()
            .rev()
            .find(|r| r.position <= i)
            .expect("epoch");
        triples.push((
            *e.signature(),
            Message::from_digest(e.digest().0),
            est.signing_key,
        ));
    }
    let raw_time = time(|| {
        for _ in 0..LOG_ITERS {
            for (sig, msg, key) in &triples {
                secp.verify_schnorr(black_box(sig), msg, key)
                    .expect("valid signature");
            }
        }
    });
    let verifies_per_s = (LOG_ITERS * 100) as f64 / raw_time.as_secs_f64();
    let ratio = events_per_s / verifies_per_s;

    // Restore from words, in parts.
    let t_parse = time(|| {
        black_box(SeedPhrase::parse(black_box(WORDS)).expect("words"));
    });
    let t_pbkdf2 = time(|| {
        black_box(phrase.to_seed(""));
    });
    let seed = phrase.to_seed("");
    let t_derive = time(|| {
        let m = MasterKey::new(&seed);
        let inc = establishment_event(&m, 0, None).expect("inception");
        black_box(KeyEventLog::new(vec![inc]).verify().expect("valid"));
        black_box(HotKeys::derive(&m, 0).expect("hot keys"));
    });
    let hot = HotKeys::derive(&m, 0).expect("hot keys").encode();
    let secrets = SeedSecrets {
        entropy: phrase.entropy(),
        seed: seed.clone(),
    }
    .encode();
    let t_argon = time(|| {
        black_box(
            keystore::seal(
                SecretKind::Seed,
                &secrets,
                "bench passphrase",
                KdfParams::default(),
            )
            .expect("seal"),
        );
        black_box(
            keystore::seal(
                SecretKind::HotKeys,
                &hot,
                "bench passphrase",
                KdfParams::default(),
            )
            .expect("seal"),
        );
    });
    let total = t_parse + t_pbkdf2 + t_derive + t_argon;

    println!("bench-identity (median of {RUNS} runs)");
    println!();
    println!("key event log verification (100-event log, decode + verify)");
    println!("  log verification        {events_per_s:>10.0} events/s");
    println!("  raw BIP340 verification {verifies_per_s:>10.0} verifies/s   (baseline, same run)");
    println!(
        "  ratio                   {ratio:>10.2}            (goal >= 0.50: {})",
        if ratio >= 0.5 { "met" } else { "NOT met" }
    );
    println!();
    println!("restore from words (12 words, no BIP39 passphrase)");
    println!(
        "  parse + normalise words {:>10.3} ms",
        t_parse.as_secs_f64() * 1e3
    );
    println!(
        "  PBKDF2 (BIP39 seed)     {:>10.3} ms",
        t_pbkdf2.as_secs_f64() * 1e3
    );
    println!(
        "  derive keys + log       {:>10.3} ms",
        t_derive.as_secs_f64() * 1e3
    );
    println!(
        "  Argon2id (2 keystore files, 64 MiB / 3 passes each) {:>8.1} ms",
        t_argon.as_secs_f64() * 1e3
    );
    println!(
        "  total                   {:>10.1} ms",
        total.as_secs_f64() * 1e3
    );
}
