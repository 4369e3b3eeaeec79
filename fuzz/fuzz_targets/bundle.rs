//! Identity bundles (binary and text forms) and the sealed rotations they
//! carry: decoded or refused, verified against a chain or given a verdict,
//! never a panic.
#![no_main]
use cairn_chain_anchor::sealed::open_rotation;
use cairn_chain_anchor::{verify_bundle, Bundle, ChainNetwork, ChainParams, HeaderChain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let chain = HeaderChain::new(ChainParams::new(ChainNetwork::Regtest));
    let mut bundles = Vec::new();
    if let Ok(b) = Bundle::decode(data) {
        bundles.push(b);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(b) = Bundle::from_text(text) {
            bundles.push(b);
        }
    }
    for b in bundles {
        let _ = verify_bundle::<()>(&b, &chain, 1, &mut |_| Ok(true));
        if let (Ok(state), Some(first)) = (b.log.verify(), b.sealed.first()) {
            let key = state.current().signing_key;
            let _ = open_rotation(&state.id, first, &key);
        }
    }
});
