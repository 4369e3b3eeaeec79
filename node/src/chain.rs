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

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc_text(t: u64) -> String {
    let (days, secs) = (t / 86_400, t % 86_400);
    // The civil date from the days since 1970-01-01 (Howard Hinnant's
    // `civil_from_days`).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
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
    sync_loaded(store, &mut chain, source, events)
}

/// Syncs `chain`, already loaded from `store` (a long-running caller keeps
/// it between syncs instead of loading every header again), persisting each
/// batch as [`sync`] does. After an error `chain` may hold headers the store
/// does not: load it again.
pub fn sync_loaded(
    store: &Store,
    chain: &mut HeaderChain,
    source: &dyn ChainSource,
    events: &mut dyn FnMut(SyncEvent),
) -> Result<SyncOutcome, SyncError<StoreError>> {
    sync_headers(
        chain,
        source,
        &unix_now,
        &mut |update, chain| store.apply_chain_update(update, chain),
        events,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00");
        assert_eq!(utc_text(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_text(1_795_747_599), "2026-11-27 02:46:39");
        assert_eq!(utc_text(4_107_542_400), "2100-03-01 00:00:00");
    }
}
