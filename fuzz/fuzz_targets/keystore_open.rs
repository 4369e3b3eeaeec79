//! Keystore files: every malformed file is an error, never a panic. (Files that
//! pass the checksum reach Argon2 at 64 MiB: slow, but bounded.)
#![no_main]
use cairn_wallet::keystore::{open, SecretKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = open(data, "fuzz", SecretKind::Seed);
});
