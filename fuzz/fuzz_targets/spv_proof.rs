//! SPV proofs and stored header entries from outside: errors, never panics.
#![no_main]
use cairn_chain_anchor::headers::HeaderEntry;
use cairn_chain_anchor::spv::check_proof;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (proof, tx) = data.split_at(split);
    let _ = check_proof(proof, tx);
    let _ = check_proof(data, data);
    if let Some(e) = HeaderEntry::decode(data) {
        assert_eq!(HeaderEntry::decode(&e.encode()), Some(e));
    }
});
