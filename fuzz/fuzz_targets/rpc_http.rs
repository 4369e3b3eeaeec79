//! HTTP replies from an RPC server (or requests to the devnet): bounded
//! errors, never panics, never allocates beyond the limits.
#![no_main]
use std::io::BufReader;

use cairn_chain_anchor::rpc::http::{read_body, read_head};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = BufReader::new(data);
    while let Ok(Some(head)) = read_head(&mut r) {
        let _ = head.wants_close();
        if read_body(&mut r, &head, 1 << 20).is_err() {
            break;
        }
    }
});
