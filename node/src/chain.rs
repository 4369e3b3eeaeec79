//! The node's view of Bitcoin: its stored header chain and the sync that
//! brings it up to a chain source, persisting each batch before the next.

use cairn_chain_anchor::source::ChainSource;
use cairn_chain_anchor::sync::SyncError;
use cairn_chain_anchor::{
    sync_headers, ChainNetwork, ChainParams, HeaderChain, SyncEvent, SyncOutcome,
};

use crate::store::{Store, StoreError};

/// The node's clock, Unix seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The stored header chain of `network`.
pub fn load(store: &Store, network: ChainNetwork) -> Result<HeaderChain, StoreError> {
    store.load_header_chain(ChainParams::new(network))
}

/// Syncs the stored chain of `network` from `source`. Each validated batch is
/// in the store before the next is fetched, so an interrupted sync resumes
/// where it stopped.
pub fn sync(
    store: &Store,
    network: ChainNetwork,
    source: &dyn ChainSource,
    events: &mut dyn FnMut(SyncEvent),
) -> Result<SyncOutcome, SyncError<StoreError>> {
    let mut chain = load(store, network).map_err(SyncError::Persist)?;
    sync_headers(
        &mut chain,
        source,
        &unix_now,
        &mut |update, chain| store.apply_chain_update(update, chain),
        events,
    )
}
