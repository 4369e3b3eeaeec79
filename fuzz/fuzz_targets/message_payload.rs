//! Decrypted message payloads and envelopes: decoding never panics, and a
//! decoded payload re-encodes to the same bytes.
#![no_main]
use cairn_messaging::payload::{split_envelope, Payload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Payload::decode(data) {
        assert_eq!(p.encode().unwrap(), data);
    }
    if let Ok((address, message)) = split_envelope(data) {
        assert_eq!([&address[..], message].concat(), data);
    }
});
