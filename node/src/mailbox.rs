//! What a mailbox node keeps for others: envelopes under their mailbox
//! addresses, for a time, within quotas. No network I/O.
//!
//! ```text
//! CF mailbox:  address (32) ‖ SHA-256(envelope) (32)  →  expires (u64 BE, Unix seconds) ‖ envelope
//! ```
//!
//! A mailbox node sees an address, a size and a time: the envelope is the
//! address followed by a padded, end-to-end encrypted session message, and
//! nothing here names who wrote it or who reads it. Whoever knows an
//! address can collect and remove what is kept under it; the addresses of
//! a session are derived from its secret root, the addresses of first
//! messages from a public prekey (their sender is sealed, and a removed
//! first message is sent again until it is answered).

use std::sync::Arc;

use bitcoin::hashes::{sha256, Hash};
use cairn_messaging::payload::split_envelope;

use crate::store::{Op, Store, StoreError, CF_MAILBOX};

/// How long an envelope is kept, seconds (30 days).
pub const TTL: u64 = 30 * 24 * 60 * 60;
/// Most envelopes kept under one address.
pub const MAX_PER_ADDRESS: usize = 4096;
/// Most bytes kept in all, every address together (1 GiB).
pub const MAX_TOTAL_BYTES: u64 = 1 << 30;
/// Most envelopes handed over per collect request: the mail protocol's
/// batch (`cairn_net::mail::MAX_BATCH`; this module needs no network build).
pub const MAX_COLLECT: usize = 64;
/// Most bytes of envelopes handed over per collect request, or sent per
/// mail request: within one mail frame (`cairn_net::mail::MAX_MAIL`) with
/// its framing.
pub const MAX_COLLECT_BYTES: usize = 1024 * 1024 - 64 * 4;

/// What happened to a deposited envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deposit {
    /// Kept (or already kept).
    Kept,
    /// Not an envelope.
    Invalid,
    /// Its address, or the mailbox, is full.
    Full,
}

/// A mailbox node's store of envelopes.
pub struct Mailbox {
    store: Arc<Store>,
    /// Bytes kept now (counted at open, kept up to date).
    total: u64,
}

fn entry_key(address: &[u8; 32], envelope: &[u8]) -> Vec<u8> {
    [&address[..], &digest(envelope)].concat()
}

impl Mailbox {
    /// The mailbox in `store`; counts what it holds and forgets what has
    /// expired.
    pub fn open(store: Arc<Store>, now: u64) -> Result<Self, StoreError> {
        let mut m = Mailbox { store, total: 0 };
        m.sweep(now)?;
        Ok(m)
    }

    /// Bytes kept.
    pub fn total_bytes(&self) -> u64 {
        self.total
    }

    /// Forgets expired envelopes and counts the rest. Returns how many were
    /// forgotten.
    pub fn sweep(&mut self, now: u64) -> Result<usize, StoreError> {
        let (mut live, mut forgotten, mut from) = (0u64, 0, Vec::new());
        loop {
            let page = self.page(&from, now)?;
            live += page.live_bytes;
            forgotten += page.forgotten;
            match page.next {
                Some(k) => from = k,
                None => break,
            }
        }
        self.total = live;
        Ok(forgotten)
    }

    /// Forgets the expired envelopes of one page of entries from the key
    /// `from` on; returns how many, and where the next page starts (none
    /// at the end). What it forgets leaves the byte count.
    pub fn sweep_page(
        &mut self,
        from: &[u8],
        now: u64,
    ) -> Result<(usize, Option<Vec<u8>>), StoreError> {
        let page = self.page(from, now)?;
        self.total = self.total.saturating_sub(page.forgotten_bytes);
        Ok((page.forgotten, page.next))
    }

    /// One page of the sweep: the expired entries from `from` on deleted.
    fn page(&mut self, from: &[u8], now: u64) -> Result<SweptPage, StoreError> {
        const PAGE: usize = 1024;
        let page = self.store.scan_from(CF_MAILBOX, from, b"", PAGE)?;
        let mut swept = SweptPage {
            forgotten: 0,
            forgotten_bytes: 0,
            live_bytes: 0,
            next: next_page(&page, PAGE),
        };
        let mut ops = Vec::new();
        for (k, v) in &page {
            match expiry(v) {
                Some(e) if e > now => swept.live_bytes += v.len() as u64,
                _ => {
                    swept.forgotten_bytes += v.len() as u64;
                    ops.push(Op::Delete(CF_MAILBOX, k.clone()));
                }
            }
        }
        swept.forgotten = ops.len();
        if !ops.is_empty() {
            self.store.write(ops, false)?;
        }
        Ok(swept)
    }

    /// Keeps `envelopes` (one synced write); one answer each, in order.
    pub fn deposit(&mut self, envelopes: &[Vec<u8>], now: u64) -> Result<Vec<Deposit>, StoreError> {
        let mut ops = Vec::new();
        let mut out = Vec::with_capacity(envelopes.len());
        let mut added = 0u64;
        let mut per_address: std::collections::HashMap<[u8; 32], usize> = Default::default();
        let mut batch = std::collections::HashSet::new();
        for e in envelopes {
            let Ok((address, _)) = split_envelope(e) else {
                out.push(Deposit::Invalid);
                continue;
            };
            let key = entry_key(&address, e);
            // Kept before, or twice in this request: kept once.
            if !batch.insert(key.clone()) || self.store.get(CF_MAILBOX, &key)?.is_some() {
                out.push(Deposit::Kept);
                continue;
            }
            let held = match per_address.get(&address) {
                Some(n) => *n,
                None => self.store.count(CF_MAILBOX, &address, MAX_PER_ADDRESS)?,
            };
            let size = 8 + e.len() as u64;
            if held >= MAX_PER_ADDRESS || self.total + added + size > MAX_TOTAL_BYTES {
                out.push(Deposit::Full);
                continue;
            }
            per_address.insert(address, held + 1);
            added += size;
            let value = [&now.saturating_add(TTL).to_be_bytes()[..], e].concat();
            ops.push(Op::Put(CF_MAILBOX, key, value));
            out.push(Deposit::Kept);
        }
        if !ops.is_empty() {
            self.store.write(ops, true)?;
            self.total += added;
        }
        Ok(out)
    }

    /// What is kept under `addresses` and has not expired, oldest address
    /// first, within [`MAX_COLLECT`] envelopes and [`MAX_COLLECT_BYTES`].
    pub fn collect(&self, addresses: &[[u8; 32]], now: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for a in addresses {
            let mut from = a.to_vec();
            // A page at a time, so that expired entries cost a page, not
            // the whole address.
            loop {
                let page = self.store.scan_from(CF_MAILBOX, &from, a, MAX_COLLECT)?;
                for (_, v) in &page {
                    if expiry(v).is_none_or(|e| e <= now) {
                        continue;
                    }
                    let envelope = &v[8..];
                    if out.len() >= MAX_COLLECT || bytes + envelope.len() > MAX_COLLECT_BYTES {
                        return Ok(out);
                    }
                    bytes += envelope.len();
                    out.push(envelope.to_vec());
                }
                match next_page(&page, MAX_COLLECT) {
                    Some(k) => from = k,
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// Forgets the envelopes `(address, SHA-256 of the envelope)`.
    pub fn remove(&mut self, entries: &[([u8; 32], [u8; 32])]) -> Result<(), StoreError> {
        let mut ops = Vec::new();
        for (a, d) in entries {
            let key = [&a[..], &d[..]].concat();
            if let Some(v) = self.store.get(CF_MAILBOX, &key)? {
                self.total = self.total.saturating_sub(v.len() as u64);
                ops.push(Op::Delete(CF_MAILBOX, key));
            }
        }
        if !ops.is_empty() {
            self.store.write(ops, true)?;
        }
        Ok(())
    }
}

/// What one page of a sweep did.
struct SweptPage {
    forgotten: usize,
    forgotten_bytes: u64,
    live_bytes: u64,
    next: Option<Vec<u8>>,
}

/// Where the page after `page` (of at most `size` entries) starts: just
/// after its last key; none when it was the last.
fn next_page(page: &[(Vec<u8>, Vec<u8>)], size: usize) -> Option<Vec<u8>> {
    match page.last() {
        Some((k, _)) if page.len() == size => Some([&k[..], &[0]].concat()),
        _ => None,
    }
}

fn expiry(v: &[u8]) -> Option<u64> {
    v.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

/// The digest a collector names an envelope by when it removes it.
pub fn digest(envelope: &[u8]) -> [u8; 32] {
    sha256::Hash::hash(envelope).to_byte_array()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_messaging::payload::envelope;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn envelopes_are_kept_collected_removed_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut m = Mailbox::open(store.clone(), NOW).unwrap();
        let a = envelope(&[1; 32], &[3; 1024]);
        let b = envelope(&[1; 32], &[3, 9, 9]);
        let c = envelope(&[2; 32], &[1; 100]);
        let r = m
            .deposit(&[a.clone(), b.clone(), c.clone(), vec![1; 10]], NOW)
            .unwrap();
        assert_eq!(
            r,
            [
                Deposit::Kept,
                Deposit::Kept,
                Deposit::Kept,
                Deposit::Invalid
            ]
        );
        assert_eq!(
            m.deposit(std::slice::from_ref(&a), NOW).unwrap(),
            [Deposit::Kept]
        );
        let got = m.collect(&[[1; 32]], NOW).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got.contains(&a) && got.contains(&b));
        assert!(m.collect(&[[7; 32]], NOW).unwrap().is_empty());
        m.remove(&[([1; 32], digest(&a))]).unwrap();
        assert_eq!(m.collect(&[[1; 32]], NOW).unwrap(), vec![b.clone()]);
        // Kept across a reopen; gone after the TTL.
        drop(m);
        let mut m = Mailbox::open(store, NOW + 10).unwrap();
        assert_eq!(m.total_bytes(), (8 + b.len() + 8 + c.len()) as u64);
        assert!(m.collect(&[[2; 32]], NOW + TTL).unwrap().is_empty());
        assert_eq!(m.sweep(NOW + TTL).unwrap(), 2);
        assert_eq!(m.total_bytes(), 0);
    }

    #[test]
    fn an_address_has_a_quota() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut m = Mailbox::open(store.clone(), NOW).unwrap();
        let many: Vec<Vec<u8>> = (0..MAX_PER_ADDRESS as u32 + 1)
            .map(|i| envelope(&[5; 32], &[&[3u8][..], &i.to_be_bytes()].concat()))
            .collect();
        let r = m.deposit(&many, NOW).unwrap();
        assert!(r[..MAX_PER_ADDRESS].iter().all(|d| *d == Deposit::Kept));
        assert_eq!(r[MAX_PER_ADDRESS], Deposit::Full);
        // Another address is not affected.
        assert_eq!(
            m.deposit(&[envelope(&[6; 32], &[3])], NOW).unwrap(),
            [Deposit::Kept]
        );
        let got = m.collect(&[[5; 32]], NOW).unwrap();
        assert_eq!(got.len(), MAX_COLLECT);
        // The sweep pages through everything: all of it counted, all of it
        // forgotten once expired.
        let total = m.total_bytes();
        assert_eq!(m.sweep(NOW).unwrap(), 0);
        assert_eq!(m.total_bytes(), total);
        // Page by page, as the node does it.
        let (mut from, mut forgotten) = (Vec::new(), 0);
        loop {
            let (n, next) = m.sweep_page(&from, NOW + TTL).unwrap();
            forgotten += n;
            match next {
                Some(k) => from = k,
                None => break,
            }
        }
        assert_eq!(forgotten, MAX_PER_ADDRESS + 1);
        assert_eq!(m.total_bytes(), 0);
    }
}
