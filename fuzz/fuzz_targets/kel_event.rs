//! Signed key events from outside: decoding never panics, and whatever decodes
//! re-encodes to the same bytes (the encoding is canonical).
#![no_main]
use cairn_wallet::kel::SignedEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = SignedEvent::decode(data) {
        assert_eq!(e.encode(), data);
    }
});
