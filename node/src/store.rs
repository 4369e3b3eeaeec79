//! The node's RocksDB store: column families, a schema version, and typed
//! accessors. Every write that records a user's decision is synced before it
//! returns.

use std::path::Path;

use bitcoin::hashes::Hash as _;
use cairn_chain_anchor::headers::{ChainUpdate, HeaderChain, HeaderEntry};
use cairn_chain_anchor::ChainParams;
use cairn_wallet::kel::{DecodeError, KeyEventLog, SignedEvent};
use cairn_wallet::IdentityId;
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

/// Schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Column family of store-wide metadata (schema version, own identity).
pub const CF_META: &str = "meta";
/// Column family of key event logs: `identity id (32) || position (u32 BE)` → signed event.
pub const CF_KEL: &str = "kel";
/// Column family of validated block headers: `block hash (32)` → [`HeaderEntry::encode`].
pub const CF_HEADERS: &str = "headers";
/// Every column family, in creation order.
pub const COLUMN_FAMILIES: [&str; 3] = [CF_META, CF_KEL, CF_HEADERS];

const KEY_SCHEMA: &[u8] = b"schema_version";
const KEY_OWN_ID: &[u8] = b"own_identity";
const KEY_HEADER_TIP: &[u8] = b"header_tip";

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store was written by a newer version of Cairn.
    #[error("the store at {path} has schema version {found}, newer than this cairn understands ({supported}); upgrade cairn to open it")]
    NewerSchema {
        /// Where.
        path: String,
        /// Version found on disk.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// Another process holds the store.
    #[error("the data directory is in use by another cairn process (RocksDB lock at {0}); stop it first")]
    Locked(String),
    /// Data that does not decode.
    #[error("the store holds corrupt data: {0}")]
    Corrupt(String),
    /// RocksDB failed.
    #[error("storage error: {0}")]
    Db(#[from] rocksdb::Error),
}

impl From<DecodeError> for StoreError {
    fn from(e: DecodeError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The node's store.
pub struct Store {
    db: DB,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.db.path().display())
    }
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

impl Store {
    /// Opens (creating if needed) the store at `path` and checks its schema version.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_keep_log_file_num(4);
        opts.set_max_open_files(256);
        let cfs = COLUMN_FAMILIES
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
            let msg = e.to_string();
            if msg.contains("/LOCK") || msg.contains("lock hold") {
                StoreError::Locked(path.join("LOCK").display().to_string())
            } else {
                StoreError::Db(e)
            }
        })?;
        let store = Store { db };
        match store.schema_version()? {
            None => store.put_meta(KEY_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?,
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema {
                    path: path.display().to_string(),
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(_) => {} // Older schemas are migrated here when there are any.
        }
        Ok(store)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        // Every name in COLUMN_FAMILIES is opened in `open`.
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| unreachable!("column family {name} is always opened"))
    }

    fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_cf_opt(self.cf(CF_META), key, value, &synced())?;
        Ok(())
    }

    /// The schema version on disk, if the store has one.
    pub fn schema_version(&self) -> Result<Option<u32>, StoreError> {
        match self.db.get_cf(self.cf(CF_META), KEY_SCHEMA)? {
            None => Ok(None),
            Some(v) => {
                let b: [u8; 4] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("schema version".into()))?;
                Ok(Some(u32::from_be_bytes(b)))
            }
        }
    }

    /// Overwrites the schema version (for migrations and their tests).
    pub fn set_schema_version(&self, v: u32) -> Result<(), StoreError> {
        self.put_meta(KEY_SCHEMA, &v.to_be_bytes())
    }

    /// The id of the identity this node speaks for, if one was created or restored.
    pub fn own_identity(&self) -> Result<Option<IdentityId>, StoreError> {
        match self.db.get_cf(self.cf(CF_META), KEY_OWN_ID)? {
            None => Ok(None),
            Some(v) => {
                let b: [u8; 32] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("own identity id".into()))?;
                Ok(Some(IdentityId(b)))
            }
        }
    }

    /// Records `log` as the node's own identity, atomically and synced.
    pub fn set_own_identity(&self, id: &IdentityId, log: &KeyEventLog) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        self.log_into_batch(&mut batch, id, log)?;
        batch.put_cf(self.cf(CF_META), KEY_OWN_ID, id.0);
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }

    /// Stores (replacing) the key event log of `id`, atomically and synced.
    pub fn put_log(&self, id: &IdentityId, log: &KeyEventLog) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        self.log_into_batch(&mut batch, id, log)?;
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }

    fn log_into_batch(
        &self,
        batch: &mut WriteBatch,
        id: &IdentityId,
        log: &KeyEventLog,
    ) -> Result<(), StoreError> {
        let cf = self.cf(CF_KEL);
        let mut end = id.0.to_vec();
        end.extend_from_slice(&[0xff; 5]);
        batch.delete_range_cf(cf, &id.0[..], &end[..]);
        for (i, e) in log.events().iter().enumerate() {
            batch.put_cf(cf, kel_key(id, i as u32), e.encode());
        }
        Ok(())
    }

    /// The stored key event log of `id` (not re-verified).
    pub fn log(&self, id: &IdentityId) -> Result<Option<KeyEventLog>, StoreError> {
        let cf = self.cf(CF_KEL);
        let mut events = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&kel_key(id, 0), Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(&id.0) {
                break;
            }
            events.push(SignedEvent::decode(&v)?);
        }
        Ok(if events.is_empty() {
            None
        } else {
            Some(KeyEventLog::new(events))
        })
    }
}

impl Store {
    /// Persists what a [`HeaderChain::connect`] changed, with the new tip, in
    /// one atomic batch (not synced: headers can be fetched again, and the
    /// batch is all-or-nothing, so the stored tip always has its entries).
    pub fn apply_chain_update(
        &self,
        update: &ChainUpdate,
        tip: &bitcoin::BlockHash,
    ) -> Result<(), StoreError> {
        let cf = self.cf(CF_HEADERS);
        let mut batch = WriteBatch::default();
        for e in &update.added {
            batch.put_cf(cf, e.hash.as_byte_array(), e.encode());
        }
        for h in &update.pruned {
            batch.delete_cf(cf, h.as_byte_array());
        }
        batch.put_cf(self.cf(CF_META), KEY_HEADER_TIP, tip.as_byte_array());
        self.db.write(batch)?;
        Ok(())
    }

    /// The stored header chain of `params`' network (a fresh one if none is stored).
    pub fn load_header_chain(&self, params: ChainParams) -> Result<HeaderChain, StoreError> {
        let Some(tip) = self.db.get_cf(self.cf(CF_META), KEY_HEADER_TIP)? else {
            return Ok(HeaderChain::new(params));
        };
        let tip: [u8; 32] = tip
            .as_slice()
            .try_into()
            .map_err(|_| StoreError::Corrupt("header tip".into()))?;
        let mut entries = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_HEADERS), IteratorMode::Start)
        {
            let (_, v) = item?;
            entries.push(
                HeaderEntry::decode(&v)
                    .ok_or_else(|| StoreError::Corrupt("header entry".into()))?,
            );
        }
        HeaderChain::restore(params, entries, bitcoin::BlockHash::from_byte_array(tip))
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }
}

fn kel_key(id: &IdentityId, position: u32) -> [u8; 36] {
    let mut k = [0u8; 36];
    k[..32].copy_from_slice(&id.0);
    k[32..].copy_from_slice(&position.to_be_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_wallet::kel::establishment_chain;
    use cairn_wallet::{MasterKey, SeedPhrase};

    fn log_of(words: usize, rotations: u32) -> (IdentityId, KeyEventLog) {
        let p = SeedPhrase::generate(words).unwrap();
        let log = KeyEventLog::new(
            establishment_chain(&MasterKey::new(&p.to_seed("")), rotations).unwrap(),
        );
        (log.verify().unwrap().id, log)
    }

    #[test]
    fn logs_round_trip_and_persist() {
        let dir = tempfile::tempdir().unwrap();
        let (a, la) = log_of(12, 3);
        let (b, lb) = log_of(24, 1);
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(s.own_identity().unwrap(), None);
            s.set_own_identity(&a, &la).unwrap();
            s.put_log(&b, &lb).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.own_identity().unwrap(), Some(a));
        assert_eq!(s.log(&a).unwrap().unwrap(), la);
        assert_eq!(s.log(&b).unwrap().unwrap(), lb);
        // Replacing with a shorter log leaves no stale events behind.
        let short = KeyEventLog::new(la.events()[..1].to_vec());
        s.put_log(&a, &short).unwrap();
        assert_eq!(s.log(&a).unwrap().unwrap(), short);
        assert_eq!(s.log(&IdentityId([0; 32])).unwrap(), None);
        assert_eq!(s.schema_version().unwrap(), Some(SCHEMA_VERSION));
    }

    #[test]
    fn header_chain_persists_across_restarts_and_reorgs() {
        use bitcoin::block::{Header, Version};
        use bitcoin::hashes::Hash as _;
        use cairn_chain_anchor::ChainNetwork;
        let params = ChainParams::new(ChainNetwork::Regtest);
        let mine = |prev: bitcoin::BlockHash, time: u32, salt: u8| {
            let mut h = Header {
                version: Version::from_consensus(4),
                prev_blockhash: prev,
                merkle_root: bitcoin::TxMerkleNode::from_byte_array([salt; 32]),
                time,
                bits: bitcoin::CompactTarget::from_consensus(0x207f_ffff),
                nonce: 0,
            };
            while !h.target().is_met_by(h.block_hash()) {
                h.nonce += 1;
            }
            h
        };
        let dir = tempfile::tempdir().unwrap();
        let now = 2_000_000_000;
        let (tip, side) = {
            let store = Store::open(dir.path()).unwrap();
            let mut chain = store.load_header_chain(params.clone()).unwrap();
            assert_eq!(chain.height(), 0);
            let mut prev = *chain.tip();
            let mut main = Vec::new();
            for i in 0..10u8 {
                let h = mine(prev.hash, prev.header.time + 600, i);
                main.push(h);
                prev = cairn_chain_anchor::HeaderEntry {
                    hash: h.block_hash(),
                    header: h,
                    ..prev
                };
            }
            let u = chain.connect(&main, now).unwrap();
            store.apply_chain_update(&u, &chain.tip().hash).unwrap();
            // A reorg of depth 2.
            let fork = *chain.at_height(8).unwrap();
            let a = mine(fork.hash, fork.header.time + 601, 100);
            let b = mine(a.block_hash(), a.time + 600, 101);
            let c = mine(b.block_hash(), b.time + 600, 102);
            let u = chain.connect(&[a, b, c], now).unwrap();
            assert_eq!(u.disconnected.len(), 2);
            store.apply_chain_update(&u, &chain.tip().hash).unwrap();
            (*chain.tip(), u.disconnected)
        };
        let store = Store::open(dir.path()).unwrap();
        let chain = store.load_header_chain(params).unwrap();
        assert_eq!(*chain.tip(), tip);
        assert_eq!(chain.height(), 11);
        for (h, hash) in side {
            assert_eq!(
                chain.status(&hash),
                cairn_chain_anchor::BlockStatus::SideBranch { height: h }
            );
        }
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path())
            .unwrap()
            .set_schema_version(SCHEMA_VERSION + 1)
            .unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("upgrade cairn"));
    }

    #[test]
    fn second_open_is_refused_while_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _s = Store::open(dir.path()).unwrap();
        assert!(matches!(
            Store::open(dir.path()).unwrap_err(),
            StoreError::Locked(_)
        ));
    }
}
