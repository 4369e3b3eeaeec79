//! Identity records from peers: decoding and verifying never panic; a
//! decoded record re-encodes to the same bytes.
#![no_main]
use cairn_node::record::IdentityRecord;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = IdentityRecord::decode(data) {
        assert_eq!(r.encode(), data);
        let _ = r.verify(1_800_000_000);
        let _ = r.freshness(&r);
    }
});
