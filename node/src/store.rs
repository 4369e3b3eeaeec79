//! The node's RocksDB store: column families, a schema version, and typed
//! accessors. Every write that records a user's decision is synced before it
//! returns.

use std::path::Path;

use bitcoin::hashes::Hash as _;
use cairn_chain_anchor::headers::{decode_chunk, ChainUpdate, HeaderChain, HeaderEntry, CHUNK_LEN};
use cairn_chain_anchor::sealed::SealedRotation;
use cairn_chain_anchor::{Anchor, Bundle, ChainNetwork, ChainParams};
use cairn_wallet::kel::{DecodeError, KeyEventLog, SignedEvent};
use cairn_wallet::IdentityId;
use rocksdb::{
    ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB,
};

/// Schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 3;

/// Column family of store-wide metadata (schema version, own identity).
pub const CF_META: &str = "meta";
/// Column family of the own identity's key event log: `identity id (32) ‖
/// position (u32 BE)` → signed event. (Contacts' logs are in their
/// [`CF_CONTACTS`] entries.)
pub const CF_KEL: &str = "kel";
/// Column family of validated block headers: `b'b' ‖ chunk (u32 BE)` → the
/// best chain's 80-byte headers of heights `chunk × CHUNK_LEN ..`
/// ([`HeaderChain::records`]), and `b's' ‖ block hash` → a side-branch
/// [`HeaderEntry::encode`].
pub const CF_HEADERS: &str = "headers";
/// Column family of the funding wallet, per network (Core's chain name):
/// `network ‖ 0x00 ‖ b'c' ‖ sequence (u64 BE)` → one BDK wallet changeset
/// (JSON), appended in order and merged on load.
pub const CF_FUNDS: &str = "funds";
/// Column family of the own identity's anchors, per network (Core's chain
/// name): `network ‖ 0x00 ‖ identity id (32) ‖ establishment index (u32 BE)`
/// → [`Anchor::encode`]; and of its sealed future rotations (the same on
/// every network): `"sealed" ‖ 0x00 ‖ identity id ‖ rotation index (u32 BE)`
/// → ciphertext.
pub const CF_ANCHORS: &str = "anchors";
/// Column family of the contact book: one entry per contact, its name and
/// its bundle, sealed under the store key on a node with an identity
/// ([`crate::contact_book`] gives the layout).
pub const CF_CONTACTS: &str = "contacts";
/// Column family of identity records this node holds for the network:
/// `DHT key (32)` → [`crate::record::IdentityRecord`] bytes, each verified
/// before it is stored.
pub const CF_RECORDS: &str = "records";
/// Column family of the node's own secrets, each sealed under the store key
/// ([`crate::secrets`]): `"prekey" ‖ 0x00 ‖ id (u32 BE)` → a prekey's
/// secret and expiry.
pub const CF_SECRETS: &str = "secrets";
/// Column family of conversations: sessions, handshakes, messages and
/// their delivery state, every value sealed under the store key
/// (`crate::conversation` gives the layout).
pub const CF_MESSAGES: &str = "messages";
/// Column family of the envelopes this node keeps as a mailbox node for
/// others (`crate::mailbox` gives the layout). It holds addresses, sizes,
/// times and ciphertext; never an identity.
pub const CF_MAILBOX: &str = "mailbox";
/// An entry as stored: `(key, value)` (for [`CF_SECRETS`], the value is
/// sealed).
pub type SealedEntry = (Vec<u8>, Vec<u8>);
/// An identity record held for the network: `(DHT key, record bytes)`.
pub type NetworkRecord = (Vec<u8>, Vec<u8>);
/// Every column family, in creation order.
pub const COLUMN_FAMILIES: [&str; 10] = [
    CF_META,
    CF_KEL,
    CF_HEADERS,
    CF_FUNDS,
    CF_ANCHORS,
    CF_CONTACTS,
    CF_RECORDS,
    CF_SECRETS,
    CF_MESSAGES,
    CF_MAILBOX,
];

/// One write of a [`Store::write`] batch.
#[derive(Debug, Clone)]
pub enum Op {
    /// Puts `value` under `key` in the column family.
    Put(&'static str, Vec<u8>, Vec<u8>),
    /// Deletes `key` from the column family.
    Delete(&'static str, Vec<u8>),
}

const KEY_SCHEMA: &[u8] = b"schema_version";
const KEY_OWN_ID: &[u8] = b"own_identity";
const KEY_HEADER_TIP: &[u8] = b"header_tip";
const KEY_BIRTHDAY: &[u8] = b"identity_birthday";

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
    /// A sealed value does not open, or no randomness to seal one.
    #[error(transparent)]
    Sealed(#[from] crate::secrets::SecretError),
}

impl From<DecodeError> for StoreError {
    fn from(e: DecodeError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The node's store.
pub struct Store {
    db: DB,
    read_only: bool,
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
        let names = Self::family_names(&opts, path);
        let cfs = names
            .into_iter()
            .map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
            let msg = e.to_string();
            if msg.contains("/LOCK") || msg.contains("lock hold") {
                StoreError::Locked(path.join("LOCK").display().to_string())
            } else {
                StoreError::Db(e)
            }
        })?;
        let store = Store {
            db,
            read_only: false,
        };
        match store.schema_version()? {
            None => store.put_meta(KEY_SCHEMA, &SCHEMA_VERSION.to_be_bytes())?,
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StoreError::NewerSchema {
                    path: path.display().to_string(),
                    found: v,
                    supported: SCHEMA_VERSION,
                })
            }
            Some(1) => {
                store.migrate_from_1()?;
                store.migrate_from_2()?;
            }
            Some(2) => store.migrate_from_2()?,
            Some(_) => {}
        }
        Ok(store)
    }

    /// Every column family this build knows, and every one on disk too, so
    /// that a store written by a newer cairn (with families this build does
    /// not know) reaches the schema check and gets its clear error.
    fn family_names(opts: &Options, path: &Path) -> Vec<String> {
        let mut names: Vec<String> = COLUMN_FAMILIES.iter().map(|n| n.to_string()).collect();
        for n in DB::list_cf(opts, path).unwrap_or_default() {
            if n != "default" && !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }

    /// Opens the store at `path` to read only, while another process (the
    /// running node) holds it: what it had written when this opens is
    /// seen, and every write fails. The schema must be this build's (the
    /// node migrates it when it opens).
    pub fn open_read_only(path: &Path) -> Result<Store, StoreError> {
        let mut opts = Options::default();
        // Every table file stays open: the node may compact and delete
        // files this reader has not opened yet.
        opts.set_max_open_files(-1);
        let names = Self::family_names(&opts, path);
        let db = DB::open_cf_for_read_only(&opts, path, &names, false)?;
        let store = Store {
            db,
            read_only: true,
        };
        match store.schema_version()? {
            Some(SCHEMA_VERSION) => Ok(store),
            Some(v) if v > SCHEMA_VERSION => Err(StoreError::NewerSchema {
                path: path.display().to_string(),
                found: v,
                supported: SCHEMA_VERSION,
            }),
            other => Err(StoreError::Corrupt(format!(
                "schema version {other:?} cannot be read without migrating it; stop the node or let it migrate the store"
            ))),
        }
    }

    /// Whether this store was opened read-only (a node holds it).
    pub fn is_read_only(&self) -> bool {
        self.read_only
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
        Ok(self
            .get_meta_fixed(KEY_SCHEMA, "schema version")?
            .map(u32::from_be_bytes))
    }

    /// The `N`-byte meta record `key` (`what` names it in errors).
    fn get_meta_fixed<const N: usize>(
        &self,
        key: &[u8],
        what: &str,
    ) -> Result<Option<[u8; N]>, StoreError> {
        match self.db.get_cf(self.cf(CF_META), key)? {
            None => Ok(None),
            Some(v) => v
                .as_slice()
                .try_into()
                .map(Some)
                .map_err(|_| StoreError::Corrupt(what.into())),
        }
    }

    /// Overwrites the schema version (for migrations and their tests).
    pub fn set_schema_version(&self, v: u32) -> Result<(), StoreError> {
        self.put_meta(KEY_SCHEMA, &v.to_be_bytes())
    }

    /// The id of the identity this node speaks for, if one was created or restored.
    pub fn own_identity(&self) -> Result<Option<IdentityId>, StoreError> {
        Ok(self
            .get_meta_fixed(KEY_OWN_ID, "own identity id")?
            .map(IdentityId))
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
        self.delete_log(batch, id);
        let cf = self.cf(CF_KEL);
        for (i, e) in log.events().iter().enumerate() {
            batch.put_cf(cf, kel_key(id, i as u32), e.encode());
        }
        Ok(())
    }

    /// Deletes `id`'s log in `batch`.
    fn delete_log(&self, batch: &mut WriteBatch, id: &IdentityId) {
        let mut end = id.0.to_vec();
        end.extend_from_slice(&[0xff; 5]);
        batch.delete_range_cf(self.cf(CF_KEL), &id.0[..], &end[..]);
    }

    /// Deletes `id`'s entries of the anchor space `space` (a network's
    /// name, or the sealed rotations') in `batch`.
    fn delete_space(&self, batch: &mut WriteBatch, space: &str, id: &IdentityId) {
        let cf = self.cf(CF_ANCHORS);
        batch.delete_range_cf(cf, space_key(space, id, 0), space_key(space, id, u32::MAX));
        batch.delete_cf(cf, space_key(space, id, u32::MAX));
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

fn funds_key(network: &str, seq: u64) -> Vec<u8> {
    let mut k = network.as_bytes().to_vec();
    k.extend_from_slice(&[0, b'c']);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

impl Store {
    /// When the identity's seed was made (Unix seconds), if this node made it:
    /// no coins can have reached its addresses before. Unknown after a restore.
    pub fn identity_birthday(&self) -> Result<Option<u64>, StoreError> {
        Ok(self
            .get_meta_fixed(KEY_BIRTHDAY, "identity birthday")?
            .map(u64::from_be_bytes))
    }

    /// Records when the identity's seed was made (synced).
    pub fn set_identity_birthday(&self, unix: u64) -> Result<(), StoreError> {
        self.put_meta(KEY_BIRTHDAY, &unix.to_be_bytes())
    }

    /// The funding wallet's changesets on `network`, in the order they were written.
    pub fn funds_changesets(&self, network: &str) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let cf = self.cf(CF_FUNDS);
        let start = funds_key(network, 0);
        let prefix = &start[..start.len() - 8];
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            let seq: [u8; 8] = k[prefix.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("funding wallet record key".into()))?;
            out.push((u64::from_be_bytes(seq), v.into_vec()));
        }
        Ok(out)
    }

    /// Appends changeset `seq` of the funding wallet on `network` (synced: a
    /// revealed address or a sent transaction must not be forgotten).
    pub fn append_funds_changeset(
        &self,
        network: &str,
        seq: u64,
        changeset: &[u8],
    ) -> Result<(), StoreError> {
        self.db.put_cf_opt(
            self.cf(CF_FUNDS),
            funds_key(network, seq),
            changeset,
            &synced(),
        )?;
        Ok(())
    }

    /// Replaces the changesets `0..=last` of `network` by their merge, stored
    /// as `last`, in one synced batch.
    pub fn compact_funds_changesets(
        &self,
        network: &str,
        last: u64,
        merged: &[u8],
    ) -> Result<(), StoreError> {
        let cf = self.cf(CF_FUNDS);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(cf, funds_key(network, 0), funds_key(network, last));
        batch.put_cf(cf, funds_key(network, last), merged);
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }
}

impl Store {
    /// Schema 1 stored one record per header; schema 2 stores chunks. Headers
    /// can always be fetched again, so the migration drops them and the next
    /// sync refills the chain.
    fn migrate_from_1(&self) -> Result<(), StoreError> {
        let cf = self.cf(CF_HEADERS);
        let mut batch = WriteBatch::default();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item?;
            batch.delete_cf(cf, k);
        }
        batch.delete_cf(self.cf(CF_META), KEY_HEADER_TIP);
        batch.put_cf(self.cf(CF_META), KEY_SCHEMA, 2u32.to_be_bytes());
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }

    /// Schema 2 kept a contact in three column families, its id in the
    /// clear in each: `contacts` (name), `kel` (log) and `anchors`. Schema
    /// 3 keeps one entry per contact in `contacts`; they are moved there in
    /// the clear, and sealed at the identity's next unlock
    /// ([`crate::contact_book::unlock`]).
    fn migrate_from_2(&self) -> Result<(), StoreError> {
        let own = self.own_identity()?;
        let mut batch = WriteBatch::default();
        for item in self
            .db
            .iterator_cf(self.cf(CF_CONTACTS), IteratorMode::Start)
        {
            let (k, v) = item?;
            let id = IdentityId(
                k.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("contact key".into()))?,
            );
            let record: crate::contact_book::ContactRecord = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("contact record: {e}")))?;
            batch.delete_cf(self.cf(CF_CONTACTS), &k);
            if Some(id) == own {
                // The node's own identity (restored here after it was added
                // as a contact): its log and anchors stay where they are.
                continue;
            }
            let Some(log) = self.log(&id)? else {
                tracing::warn!("a contact without its log is dropped while the store is upgraded");
                for network in ChainNetwork::ALL {
                    self.delete_space(&mut batch, network.core_chain_name(), &id);
                }
                self.delete_space(&mut batch, SEALED_SPACE, &id);
                continue;
            };
            let mut bundle = Bundle {
                genesis: ChainParams::new(ChainNetwork::Regtest).genesis_hash(),
                log,
                anchors: Vec::new(),
                sealed: self.sealed_rotations(&id)?,
            };
            for network in ChainNetwork::ALL {
                let anchors = self.anchors(network, &id)?;
                if !anchors.is_empty() && bundle.anchors.is_empty() {
                    bundle.genesis = ChainParams::new(network).genesis_hash();
                    bundle.anchors = anchors;
                }
                self.delete_space(&mut batch, network.core_chain_name(), &id);
            }
            self.delete_space(&mut batch, SEALED_SPACE, &id);
            self.delete_log(&mut batch, &id);
            let (k, v) = crate::contact_book::clear_entry(&crate::contact_book::Contact {
                id,
                record,
                bundle,
            });
            batch.put_cf(self.cf(CF_CONTACTS), k, v);
        }
        batch.put_cf(self.cf(CF_META), KEY_SCHEMA, SCHEMA_VERSION.to_be_bytes());
        self.db.write_opt(batch, &synced())?;
        self.compact()
    }

    /// Flushes every column family and compacts it, so that what was
    /// deleted leaves the disk (after a migration that moved clear data).
    pub fn compact(&self) -> Result<(), StoreError> {
        for name in COLUMN_FAMILIES {
            let cf = self.cf(name);
            self.db.flush_cf(cf)?;
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        self.db.flush_wal(true)?;
        Ok(())
    }

    /// Persists what a [`HeaderChain::connect`] changed (`chain` is the chain
    /// after it) in one atomic batch. Not synced: headers can be fetched
    /// again, and the batch is all-or-nothing, so the stored tip always has
    /// its headers.
    pub fn apply_chain_update(
        &self,
        update: &ChainUpdate,
        chain: &HeaderChain,
    ) -> Result<(), StoreError> {
        let rec = chain.records(update);
        let cf = self.cf(CF_HEADERS);
        let mut batch = WriteBatch::default();
        for (i, bytes) in &rec.chunks {
            batch.put_cf(cf, chunk_key(*i), bytes);
        }
        for i in &rec.stale_chunks {
            batch.delete_cf(cf, chunk_key(*i));
        }
        for e in &rec.side_put {
            batch.put_cf(cf, side_key(&e.hash), e.encode());
        }
        for h in &rec.side_delete {
            batch.delete_cf(cf, side_key(h));
        }
        let mut tip = [0u8; 36];
        tip[..4].copy_from_slice(&rec.tip_height.to_be_bytes());
        tip[4..].copy_from_slice(rec.tip_hash.as_byte_array());
        batch.put_cf(self.cf(CF_META), KEY_HEADER_TIP, tip);
        self.db.write(batch)?;
        Ok(())
    }

    /// Approximate size of the store's files on disk, in bytes.
    pub fn disk_size(&self) -> u64 {
        COLUMN_FAMILIES
            .iter()
            .filter_map(|cf| {
                self.db
                    .property_int_value_cf(self.cf(cf), "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
            })
            .sum()
    }

    /// The stored header chain of `params`' network (a fresh one if none is stored).
    pub fn load_header_chain(&self, params: ChainParams) -> Result<HeaderChain, StoreError> {
        let Some(tip) = self.db.get_cf(self.cf(CF_META), KEY_HEADER_TIP)? else {
            return Ok(HeaderChain::new(params));
        };
        let corrupt = |what: &str| StoreError::Corrupt(what.into());
        if tip.len() != 36 {
            return Err(corrupt("header tip"));
        }
        let height = u32::from_be_bytes([tip[0], tip[1], tip[2], tip[3]]);
        let mut tip_hash = [0u8; 32];
        tip_hash.copy_from_slice(&tip[4..]);
        let cf = self.cf(CF_HEADERS);
        let mut best = Vec::with_capacity(height as usize + 1);
        let mut side = Vec::new();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item?;
            match k.first() {
                Some(b'b') if k.len() == 5 => {
                    let index = u32::from_be_bytes([k[1], k[2], k[3], k[4]]);
                    if index as usize * CHUNK_LEN as usize != best.len() {
                        return Err(corrupt("header chunks out of sequence"));
                    }
                    best.extend(decode_chunk(&v).ok_or_else(|| corrupt("header chunk"))?);
                }
                Some(b's') if k.len() == 33 => {
                    side.push(HeaderEntry::decode(&v).ok_or_else(|| corrupt("side header"))?)
                }
                _ => return Err(corrupt("unknown header record")),
            }
        }
        if best.len() <= height as usize {
            return Err(corrupt("fewer stored headers than the tip height"));
        }
        best.truncate(height as usize + 1);
        let chain = HeaderChain::restore(params, best, side)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if chain.tip().hash.to_byte_array() != tip_hash {
            return Err(corrupt("the stored tip does not match the stored headers"));
        }
        Ok(chain)
    }
}

fn chunk_key(index: u32) -> [u8; 5] {
    let mut k = [b'b'; 5];
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn side_key(hash: &bitcoin::BlockHash) -> [u8; 33] {
    let mut k = [b's'; 33];
    k[1..].copy_from_slice(hash.as_byte_array());
    k
}

const SEALED_SPACE: &str = "sealed";

fn anchor_key(network: ChainNetwork, id: &IdentityId, index: u32) -> Vec<u8> {
    space_key(network.core_chain_name(), id, index)
}

fn space_key(space: &str, id: &IdentityId, index: u32) -> Vec<u8> {
    let mut k = space.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(&id.0);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

impl Store {
    /// The anchors of `id`'s establishment events on `network`, in order.
    pub fn anchors(
        &self,
        network: ChainNetwork,
        id: &IdentityId,
    ) -> Result<Vec<Anchor>, StoreError> {
        let cf = self.cf(CF_ANCHORS);
        let start = anchor_key(network, id, 0);
        let prefix = &start[..start.len() - 4];
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            if k[prefix.len()..] != (out.len() as u32).to_be_bytes() {
                return Err(StoreError::Corrupt(format!(
                    "anchor {} of {id} is missing",
                    out.len()
                )));
            }
            let anchor = Anchor::decode(&v, out.len())
                .map_err(|e| StoreError::Corrupt(format!("anchor of {id}: {e}")))?;
            out.push(anchor);
        }
        Ok(out)
    }

    /// Stores anchor `index` of `id` on `network` (synced: a broadcast seal
    /// transaction must never be forgotten).
    pub fn put_anchor(
        &self,
        network: ChainNetwork,
        id: &IdentityId,
        index: u32,
        anchor: &Anchor,
    ) -> Result<(), StoreError> {
        self.db.put_cf_opt(
            self.cf(CF_ANCHORS),
            anchor_key(network, id, index),
            anchor.encode(),
            &synced(),
        )?;
        Ok(())
    }

    /// The sealed future rotations of `id`, by index.
    pub fn sealed_rotations(&self, id: &IdentityId) -> Result<Vec<SealedRotation>, StoreError> {
        let cf = self.cf(CF_ANCHORS);
        let start = space_key(SEALED_SPACE, id, 0);
        let prefix = &start[..start.len() - 4];
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(cf, IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            let index: [u8; 4] = k[prefix.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("sealed rotation key".into()))?;
            out.push(SealedRotation {
                index: u32::from_be_bytes(index),
                ciphertext: v.into_vec(),
            });
        }
        Ok(out)
    }

    /// Replaces `id`'s log, its anchors on `network` and its sealed
    /// rotations, in `batch`.
    fn bundle_into_batch(
        &self,
        batch: &mut WriteBatch,
        network: ChainNetwork,
        id: &IdentityId,
        bundle: (&KeyEventLog, &[Anchor], &[SealedRotation]),
    ) -> Result<(), StoreError> {
        let (log, anchors, sealed) = bundle;
        self.log_into_batch(batch, id, log)?;
        let cf = self.cf(CF_ANCHORS);
        for space in [network.core_chain_name(), SEALED_SPACE] {
            self.delete_space(batch, space, id);
        }
        for (i, a) in anchors.iter().enumerate() {
            batch.put_cf(cf, anchor_key(network, id, i as u32), a.encode());
        }
        for s in sealed {
            batch.put_cf(cf, space_key(SEALED_SPACE, id, s.index), &s.ciphertext);
        }
        Ok(())
    }

    /// Records the node's own identity as `log`, with its anchors on
    /// `network` and its sealed future rotations, in one synced batch (a
    /// rotation: the new event, the transaction that anchors it and the next
    /// sealed events are kept together or not at all).
    pub fn put_own_bundle(
        &self,
        network: ChainNetwork,
        id: &IdentityId,
        log: &KeyEventLog,
        anchors: &[Anchor],
        sealed: &[SealedRotation],
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        self.bundle_into_batch(&mut batch, network, id, (log, anchors, sealed))?;
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }
}

impl Store {
    /// Replaces the own log with `log` and stores the sealed secrets `put`
    /// and erases those in `erase`, in one synced batch: a prekey is
    /// published in the log exactly when its secret is kept.
    pub fn put_own_log_and_secrets(
        &self,
        id: &IdentityId,
        log: &KeyEventLog,
        put: &[SealedEntry],
        erase: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        self.log_into_batch(&mut batch, id, log)?;
        for (k, v) in put {
            batch.put_cf(self.cf(CF_SECRETS), k, v);
        }
        for k in erase {
            batch.delete_cf(self.cf(CF_SECRETS), k);
        }
        self.db.write_opt(batch, &synced())?;
        Ok(())
    }

    /// The sealed secrets whose store keys start with `prefix`.
    pub fn secrets(&self, prefix: &[u8]) -> Result<Vec<SealedEntry>, StoreError> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(CF_SECRETS),
            IteratorMode::From(prefix, Direction::Forward),
        ) {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// The sealed secret stored under `key`.
    pub fn secret(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_SECRETS), key)?)
    }

    /// Keeps an identity record for the network under its DHT key (synced:
    /// it was accepted and announced as held).
    pub fn put_network_record(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.db
            .put_cf_opt(self.cf(CF_RECORDS), key, value, &synced())?;
        Ok(())
    }

    /// Every identity record held for the network.
    pub fn network_records(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_RECORDS), IteratorMode::Start)
        {
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

/// Raw access for the modules that own a column family's layout
/// (`conversation`, `mailbox`).
impl Store {
    /// Writes `ops` in one atomic batch; `sync` waits until it is on disk.
    pub fn write(&self, ops: Vec<Op>, sync: bool) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                Op::Put(cf, k, v) => batch.put_cf(self.cf(cf), k, v),
                Op::Delete(cf, k) => batch.delete_cf(self.cf(cf), k),
            }
        }
        if sync {
            self.db.write_opt(batch, &synced())?;
        } else {
            self.db.write(batch)?;
        }
        Ok(())
    }

    /// The value under `key` in the column family `cf`.
    pub fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    /// Up to `limit` entries of `cf` whose keys start with `prefix`, in key
    /// order.
    pub fn scan(
        &self,
        cf: &'static str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<SealedEntry>, StoreError> {
        self.scan_from(cf, prefix, prefix, limit)
    }

    /// Up to `limit` entries of `cf` from the key `start` on whose keys
    /// start with `prefix`, in key order.
    pub fn scan_from(
        &self,
        cf: &'static str,
        start: &[u8],
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<SealedEntry>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        for item in self
            .db
            .iterator_cf(self.cf(cf), IteratorMode::From(start, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// How many keys of `cf` start with `prefix`, counting up to `limit`
    /// (keys only: values are not read).
    pub fn count(
        &self,
        cf: &'static str,
        prefix: &[u8],
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut it = self.db.raw_iterator_cf(self.cf(cf));
        it.seek(prefix);
        let mut n = 0;
        while n < limit && it.valid() {
            match it.key() {
                Some(k) if k.starts_with(prefix) => n += 1,
                _ => break,
            }
            it.next();
        }
        it.status()?;
        Ok(n)
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
    fn network_records_persist_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert!(s.network_records().unwrap().is_empty());
            s.put_network_record(&[1; 32], b"old").unwrap();
            s.put_network_record(&[2; 32], b"other").unwrap();
            s.put_network_record(&[1; 32], b"new").unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.network_records().unwrap(),
            vec![
                (vec![1; 32], b"new".to_vec()),
                (vec![2; 32], b"other".to_vec())
            ]
        );
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
            store.apply_chain_update(&u, &chain).unwrap();
            // A reorg of depth 2.
            let fork = *chain.at_height(8).unwrap();
            let a = mine(fork.hash, fork.header.time + 601, 100);
            let b = mine(a.block_hash(), a.time + 600, 101);
            let c = mine(b.block_hash(), b.time + 600, 102);
            let u = chain.connect(&[a, b, c], now).unwrap();
            assert_eq!(u.disconnected.len(), 2);
            store.apply_chain_update(&u, &chain).unwrap();
            (*chain.tip(), u.disconnected)
        };
        let store = Store::open(dir.path()).unwrap();
        let chain = store.load_header_chain(params.clone()).unwrap();
        assert_eq!(*chain.tip(), tip);
        assert_eq!(chain.height(), 11);
        for (h, hash) in side {
            assert_eq!(
                chain.status(&hash),
                cairn_chain_anchor::BlockStatus::SideBranch { height: h }
            );
        }
        // A schema-1 store drops its headers on open (they are fetched again).
        store.set_schema_version(1).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), Some(SCHEMA_VERSION));
        assert_eq!(store.load_header_chain(params).unwrap().height(), 0);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Store::open(dir.path()).unwrap();
            s.set_schema_version(SCHEMA_VERSION + 1).unwrap();
            // A newer cairn may add column families; they must not hide the
            // schema message behind a RocksDB error.
            s.db.create_cf("from_the_future", &Options::default())
                .unwrap();
        }
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("upgrade cairn"));
    }

    #[test]
    fn a_held_store_opens_read_only_and_refuses_writes_there() {
        let dir = tempfile::tempdir().unwrap();
        let held = Store::open(dir.path()).unwrap();
        held.set_identity_birthday(42).unwrap();
        let reader = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.identity_birthday().unwrap(), Some(42));
        assert!(reader.set_identity_birthday(43).is_err());
        assert_eq!(held.identity_birthday().unwrap(), Some(42));
        // An older schema needs the node to migrate it first.
        held.set_schema_version(2).unwrap();
        assert!(matches!(
            Store::open_read_only(dir.path()),
            Err(StoreError::Corrupt(_))
        ));
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
