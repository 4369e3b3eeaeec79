//! The node's own identity: create or restore it from a seed phrase, load it,
//! and unlock its keys. Files and the store are touched here; the logic of keys
//! and logs is in `cairn-wallet`.

use std::fs;

use cairn_wallet::kel::{establishment_event, KeyEventLog};
use cairn_wallet::keystore::{self, HotKeys, KdfParams, KeystoreError, SecretKind, SeedSecrets};
use cairn_wallet::{IdentityId, LogState, MasterKey, SeedPhrase};

use crate::datadir::{write_atomic, DataDir};
use crate::store::{Store, StoreError};

/// Failures of identity operations.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The running node holds the store.
    #[error("a cairn node is running on {0} and holds its store: stop it first (`cairn node stop`); `cairn node status|identities|events` and `cairn contact add|list|verify` work through it")]
    NodeRunning(String),
    /// The data dir already holds this identity.
    #[error("this data directory already holds identity {0}")]
    AlreadyExists(IdentityId),
    /// The data dir holds another identity.
    #[error("this data directory already holds a different identity ({existing}); the words give {new}. Use another --data-dir")]
    HoldsDifferentIdentity {
        /// The identity in the data dir.
        existing: IdentityId,
        /// The identity the words give.
        new: IdentityId,
    },
    /// No identity yet.
    #[error(
        "no identity in {0}; create one with `cairn init` or restore one with `cairn restore`"
    )]
    NoIdentity(String),
    /// The stored log does not verify.
    #[error("the stored key event log does not verify: {0}")]
    BadStoredLog(#[from] cairn_wallet::kel::LogError),
    /// The keystore holds keys that are not this identity's.
    #[error("the keystore's keys do not belong to identity {0}")]
    KeysMismatch(IdentityId),
    /// A keystore file is missing.
    #[error("keystore file {0} is missing; restore the identity from its seed phrase")]
    MissingKeystore(String),
    /// Keystore failure.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Building the log failed.
    #[error(transparent)]
    Kel(#[from] cairn_wallet::kel::KelError),
    /// File system failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IdentityError {
    let what = what.into();
    move |source| IdentityError::Io { what, source }
}

/// The node's own identity as stored: its log and the state it establishes.
#[derive(Debug, Clone)]
pub struct OwnIdentity {
    /// The verified log.
    pub log: KeyEventLog,
    /// What it establishes.
    pub state: LogState,
}

/// Opens the store of `dir`, creating the directory if needed.
pub fn open_store(dir: &DataDir) -> Result<Store, IdentityError> {
    dir.create().map_err(io(format!(
        "cannot create data directory {}",
        dir.root().display()
    )))?;
    match Store::open(&dir.store_path()) {
        Err(StoreError::Locked(_)) if dir.running_node().is_some() => {
            Err(IdentityError::NodeRunning(dir.root().display().to_string()))
        }
        other => Ok(other?),
    }
}

/// The store of `dir` for a command that only reads: opened as usual, or
/// read-only while a node runs there (the node keeps writing; this sees
/// what was written when it opened).
pub fn open_store_to_read(dir: &DataDir) -> Result<Store, IdentityError> {
    match open_store(dir) {
        Err(IdentityError::NodeRunning(_)) => Ok(Store::open_read_only(&dir.store_path())?),
        other => other,
    }
}

/// The identity `phrase` + `bip39_passphrase` give, without writing anything.
pub fn preview(phrase: &SeedPhrase, bip39_passphrase: &str) -> Result<IdentityId, IdentityError> {
    let master = MasterKey::new(&phrase.to_seed(bip39_passphrase));
    let inception = establishment_event(&master, 0, None)?;
    Ok(IdentityId::of_inception(inception.event_bytes()))
}

/// Creates (or restores: it is the same operation) the identity of `phrase` in
/// `dir`: keystore files first, then the store record, so that a data dir either
/// has a complete identity or none.
pub fn create(
    store: &Store,
    dir: &DataDir,
    phrase: &SeedPhrase,
    bip39_passphrase: &str,
    keystore_passphrase: &str,
    params: KdfParams,
) -> Result<OwnIdentity, IdentityError> {
    let seed = phrase.to_seed(bip39_passphrase);
    let master = MasterKey::new(&seed);
    let log = KeyEventLog::new(vec![establishment_event(&master, 0, None)?]);
    let state = log.verify()?;
    if let Some(existing) = store.own_identity()? {
        return Err(if existing == state.id {
            IdentityError::AlreadyExists(existing)
        } else {
            IdentityError::HoldsDifferentIdentity {
                existing,
                new: state.id,
            }
        });
    }
    let seed_file = keystore::seal(
        SecretKind::Seed,
        &SeedSecrets {
            entropy: phrase.entropy(),
            seed,
        }
        .encode(),
        keystore_passphrase,
        params,
    )?;
    write_atomic(&dir.seed_file(), &seed_file).map_err(io("cannot write the seed keystore"))?;
    write_hot_keys(dir, &master, 0, keystore_passphrase, params)?;
    if let Err(e) = store.set_own_identity(&state.id, &log) {
        let _ = fs::remove_file(dir.seed_file());
        let _ = fs::remove_file(dir.hot_file());
        return Err(e.into());
    }
    Ok(OwnIdentity { log, state })
}

/// Writes the hot-key keystore for rotation `index` (replacing the
/// previous one atomically): the node switches to that rotation's keys.
pub fn write_hot_keys(
    dir: &DataDir,
    master: &MasterKey,
    index: u32,
    keystore_passphrase: &str,
    params: KdfParams,
) -> Result<(), IdentityError> {
    let hot_file = keystore::seal(
        SecretKind::HotKeys,
        &HotKeys::derive(master, index)?.encode(),
        keystore_passphrase,
        params,
    )?;
    write_atomic(&dir.hot_file(), &hot_file).map_err(io("cannot write the hot-key keystore"))
}

/// Loads and verifies the node's own identity.
pub fn load(store: &Store, dir: &DataDir) -> Result<OwnIdentity, IdentityError> {
    let no_identity = || IdentityError::NoIdentity(dir.root().display().to_string());
    let id = store.own_identity()?.ok_or_else(no_identity)?;
    let log = store.log(&id)?.ok_or_else(no_identity)?;
    let state = log.verify()?;
    if state.id != id {
        return Err(StoreError::Corrupt("own log does not match own identity id".into()).into());
    }
    Ok(OwnIdentity { log, state })
}

fn read_keystore(path: &std::path::Path) -> Result<Vec<u8>, IdentityError> {
    fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => IdentityError::MissingKeystore(path.display().to_string()),
        _ => IdentityError::Io {
            what: format!("cannot read {}", path.display()),
            source: e,
        },
    })
}

/// Unlocks the hot keys and checks that they are the identity's current keys.
pub fn unlock_hot(
    dir: &DataDir,
    own: &OwnIdentity,
    passphrase: &str,
) -> Result<HotKeys, IdentityError> {
    let plain = keystore::open(
        &read_keystore(&dir.hot_file())?,
        passphrase,
        SecretKind::HotKeys,
    )?;
    let hot = HotKeys::decode(&plain)?;
    let cur = own.state.current();
    if hot.index != cur.index
        || hot.signing.public() != cur.signing_key
        || hot.messaging.public() != cur.messaging_key.0
    {
        return Err(IdentityError::KeysMismatch(own.state.id));
    }
    Ok(hot)
}

/// Unlocks the seed and checks that it gives this identity.
pub fn unlock_seed(
    dir: &DataDir,
    own: &OwnIdentity,
    passphrase: &str,
) -> Result<SeedSecrets, IdentityError> {
    let plain = keystore::open(
        &read_keystore(&dir.seed_file())?,
        passphrase,
        SecretKind::Seed,
    )?;
    let secrets = SeedSecrets::decode(&plain)?;
    let master = MasterKey::new(&secrets.seed);
    let inception = establishment_event(&master, 0, None)?;
    if IdentityId::of_inception(inception.event_bytes()) != own.state.id {
        return Err(IdentityError::KeysMismatch(own.state.id));
    }
    Ok(secrets)
}
