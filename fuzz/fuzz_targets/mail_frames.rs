//! Mail protocol frames from peers: decoding never panics, and a decoded
//! request or response re-encodes to the same bytes.
#![no_main]
use cairn_net::mail::{MailRequest, MailResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = MailRequest::decode(data) {
        assert_eq!(r.encode().unwrap(), data);
    }
    if let Ok(r) = MailResponse::decode(data) {
        assert_eq!(r.encode().unwrap(), data);
    }
});
