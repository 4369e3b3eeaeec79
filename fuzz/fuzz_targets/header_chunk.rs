//! Stored header chunks and side entries: decoded or refused, and a chain
//! restored from them is refused when it does not link, never a panic.
#![no_main]
use cairn_chain_anchor::headers::{decode_chunk, HeaderEntry};
use cairn_chain_anchor::{ChainNetwork, ChainParams, HeaderChain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let params = ChainParams::new(ChainNetwork::Regtest);
    if let Some(headers) = decode_chunk(data) {
        let best = std::iter::once(params.genesis).chain(headers);
        let _ = HeaderChain::restore(params.clone(), best, Vec::new());
    }
    let side: Vec<HeaderEntry> = data.chunks(120).filter_map(HeaderEntry::decode).collect();
    let _ = HeaderChain::restore(params.clone(), vec![params.genesis], side);
});
