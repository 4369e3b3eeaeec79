//! The contact book at rest: each contact's name, when it was added, and its
//! identity bundle (key event log, anchors, sealed rotations), as one entry
//! of the column family `contacts`.
//!
//! On a node with an identity every entry is sealed under the store key
//! (`HotKeys::store_key`, so the keystore's passphrase opens it) and filed
//! under a keyed hash of the contact's id. The store then shows how many
//! contacts there are and roughly how large their entries are, but not who
//! they are, what they are called, or how often they rotated.
//!
//! A node without an identity (a verifier, a mailbox node) has no keystore
//! and so no key: its contacts are kept in the clear. When an identity is
//! created or restored there, the first unlock ([`unlock`]) seals them.
//!
//! ```text
//! key   = locator (32)   TaggedHash("cairn/store/locator/v1", store key ‖ id)   sealed
//!       | id (32)                                                              clear
//! value = 0x01 ‖ nonce (24) ‖ XChaCha20-Poly1305(store key, body, ad = "contact" ‖ locator)
//!       | 0x00 ‖ body
//! body  = version 1 ‖ id (32) ‖ added (u64 BE) ‖ name length (u8, 0: none) ‖ name ‖ bundle (`Bundle::encode`)
//! ```

use cairn_chain_anchor::{Bundle, ChainNetwork, ChainParams};
use cairn_wallet::hash::{tagged_hash, tags};
use cairn_wallet::keystore::HotKeys;
use cairn_wallet::IdentityId;
use zeroize::Zeroizing;

use crate::secrets;
use crate::store::{Op, Store, StoreError, CF_CONTACTS};

const CLEAR: u8 = 0;
const SEALED: u8 = 1;
const BODY_VERSION: u8 = 1;

/// What the node keeps about a contact besides its bundle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContactRecord {
    /// The name the user gave, if any.
    pub name: Option<String>,
    /// When the contact was added (Unix seconds).
    pub added: u64,
}

/// How the contact book is read and written: sealed under the store key, or
/// in the clear on a node without an identity.
#[derive(Clone)]
pub enum ContactKey {
    /// No identity on this node: entries in the clear.
    Clear,
    /// Entries sealed under this store key.
    Sealed(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for ContactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ContactKey::Clear => "ContactKey::Clear",
            ContactKey::Sealed(_) => "ContactKey::Sealed(..)",
        })
    }
}

impl ContactKey {
    /// The key of the identity whose hot keys these are.
    pub fn of(hot: &HotKeys) -> ContactKey {
        ContactKey::Sealed(hot.store_key())
    }

    /// Where `id`'s entry is filed: a keyed hash of the id when sealed.
    /// Other column families that hold something per contact (the
    /// conversations) file it under the same locator.
    pub fn locator(&self, id: &IdentityId) -> [u8; 32] {
        match self {
            ContactKey::Clear => id.0,
            ContactKey::Sealed(k) => locator(k, id),
        }
    }
}

/// The locator of `id` under the store key `key`.
pub fn locator(key: &[u8; 32], id: &IdentityId) -> [u8; 32] {
    tagged_hash(tags::STORE_LOCATOR, &[&key[..], &id.0])
}

/// One contact as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Its id.
    pub id: IdentityId,
    /// Its name and when it was added.
    pub record: ContactRecord,
    /// Its bundle; the anchors are in the chain its `genesis` names.
    pub bundle: Bundle,
}

impl Contact {
    /// The bundle as seen on `network`: without anchors if they are in
    /// another chain (the node was switched to another network).
    pub fn bundle_on(&self, network: ChainNetwork) -> Bundle {
        let genesis = ChainParams::new(network).genesis_hash();
        let mut b = self.bundle.clone();
        if b.genesis != genesis {
            b.genesis = genesis;
            b.anchors.clear();
        }
        b
    }
}

fn seal_ad(locator: &[u8; 32]) -> Vec<u8> {
    [&b"contact"[..], locator].concat()
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("contact entry: {what}"))
}

impl Contact {
    /// The entry's body (before sealing): `version ‖ id ‖ added ‖ name
    /// length ‖ name ‖ bundle`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let name = self.record.name.as_deref().unwrap_or_default().as_bytes();
        let bundle = self.bundle.encode();
        let mut v = Zeroizing::new(Vec::with_capacity(42 + name.len() + bundle.len()));
        v.push(BODY_VERSION);
        v.extend_from_slice(&self.id.0);
        v.extend_from_slice(&self.record.added.to_be_bytes());
        // Names are at most `contacts::MAX_NAME_LEN` (64) bytes.
        let len = name.len().min(u8::MAX as usize);
        v.push(len as u8);
        v.extend_from_slice(&name[..len]);
        v.extend_from_slice(&bundle);
        v
    }

    /// Decodes a body (bounded by the bundle's own limits; refuses unknown
    /// versions, truncation and bad names).
    pub fn decode(b: &[u8]) -> Result<Contact, StoreError> {
        let (&version, rest) = b.split_first().ok_or_else(|| corrupt("empty"))?;
        if version != BODY_VERSION {
            return Err(corrupt(format!("unknown version {version}")));
        }
        if rest.len() < 41 {
            return Err(corrupt("truncated"));
        }
        let (id, rest) = rest.split_at(32);
        let (added, rest) = rest.split_at(8);
        let (&len, rest) = rest.split_first().ok_or_else(|| corrupt("truncated"))?;
        let len = usize::from(len);
        if rest.len() < len {
            return Err(corrupt("truncated name"));
        }
        let (name, bundle) = rest.split_at(len);
        let name = match len {
            0 => None,
            _ => Some(
                std::str::from_utf8(name)
                    .map_err(|_| corrupt("name is not UTF-8"))?
                    .to_string(),
            ),
        };
        let bundle = Bundle::decode(bundle).map_err(corrupt)?;
        Ok(Contact {
            id: IdentityId(id.try_into().map_err(corrupt)?),
            record: ContactRecord {
                name,
                added: u64::from_be_bytes(added.try_into().map_err(corrupt)?),
            },
            bundle,
        })
    }
}

/// The entry of `c` as filed under `key`: `(store key, value)`.
fn entry(key: &ContactKey, c: &Contact) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
    let body = c.encode();
    Ok(match key {
        ContactKey::Clear => (c.id.0.to_vec(), [&[CLEAR][..], &body].concat()),
        ContactKey::Sealed(k) => {
            let loc = locator(k, &c.id);
            let sealed = secrets::seal(k, &seal_ad(&loc), &body)?;
            (loc.to_vec(), [&[SEALED][..], &sealed].concat())
        }
    })
}

/// Reads a stored entry: clear ones under any key, sealed ones only under
/// their key.
fn open_entry(key: &ContactKey, k: &[u8], v: &[u8]) -> Result<Contact, StoreError> {
    match (v.split_first(), key) {
        (Some((&CLEAR, body)), _) => Contact::decode(body),
        (Some((&SEALED, sealed)), ContactKey::Sealed(sk)) => {
            let loc: [u8; 32] = k.try_into().map_err(|_| corrupt("key length"))?;
            let body = secrets::open(sk, &seal_ad(&loc), sealed)?;
            let c = Contact::decode(&body)?;
            if locator(sk, &c.id) != loc {
                return Err(corrupt("filed under another contact"));
            }
            Ok(c)
        }
        (Some((&SEALED, _)), ContactKey::Clear) => Err(StoreError::Corrupt(
            "the contacts are sealed under an identity's keys, but none were unlocked".into(),
        )),
        _ => Err(corrupt("unknown format")),
    }
}

/// Stores (replacing) contact `id` with `bundle` (its anchors taken to be
/// in `network`'s chain) and `record`, synced.
pub fn put(
    store: &Store,
    key: &ContactKey,
    network: ChainNetwork,
    id: &IdentityId,
    bundle: &Bundle,
    record: &ContactRecord,
) -> Result<(), StoreError> {
    let mut bundle = bundle.clone();
    bundle.genesis = ChainParams::new(network).genesis_hash();
    let c = Contact {
        id: *id,
        record: record.clone(),
        bundle,
    };
    let (k, v) = entry(key, &c)?;
    let mut ops = vec![Op::Put(CF_CONTACTS, k.clone(), v)];
    if k != id.0 {
        // A clear entry left from before the identity goes.
        ops.push(Op::Delete(CF_CONTACTS, id.0.to_vec()));
    }
    store.write(ops, true)
}

/// Contact `id`, if it is one.
pub fn get(
    store: &Store,
    key: &ContactKey,
    id: &IdentityId,
) -> Result<Option<Contact>, StoreError> {
    let loc = key.locator(id);
    // Sealed: under the locator, or still in the clear under the id.
    let places: &[&[u8; 32]] = if loc == id.0 { &[&loc] } else { &[&loc, &id.0] };
    for k in places.iter().copied() {
        if let Some(v) = store.get(CF_CONTACTS, k)? {
            let c = open_entry(key, k, &v)?;
            if c.id != *id {
                return Err(corrupt("filed under another contact"));
            }
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Removes contact `id` (synced); whether it was one.
pub fn remove(store: &Store, key: &ContactKey, id: &IdentityId) -> Result<bool, StoreError> {
    let loc = key.locator(id);
    let was = get(store, key, id)?.is_some();
    store.write(
        vec![
            Op::Delete(CF_CONTACTS, loc.to_vec()),
            Op::Delete(CF_CONTACTS, id.0.to_vec()),
        ],
        true,
    )?;
    Ok(was)
}

/// Every contact, by id.
pub fn all(store: &Store, key: &ContactKey) -> Result<Vec<Contact>, StoreError> {
    let mut out = store
        .scan(CF_CONTACTS, b"", usize::MAX)?
        .into_iter()
        .map(|(k, v)| open_entry(key, &k, &v))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_by_key(|c| c.id.0);
    Ok(out)
}

/// The contact key of the identity whose hot keys are `hot`, after sealing
/// any contact still kept in the clear (added before the identity existed,
/// or by an older cairn; one synced batch) and moving conversation records
/// of an older layout under their locators
/// ([`crate::conversation::migrate_layout`]). When anything moved, the
/// store is compacted, so that the clear copies leave the disk too.
pub fn unlock(store: &Store, hot: &HotKeys) -> Result<ContactKey, StoreError> {
    let key = ContactKey::of(hot);
    let own = store.own_identity()?;
    let mut ops = Vec::new();
    for (k, v) in store.scan(CF_CONTACTS, b"", usize::MAX)? {
        if v.first() == Some(&CLEAR) {
            let c = open_entry(&ContactKey::Clear, &k, &v)?;
            ops.push(Op::Delete(CF_CONTACTS, k));
            // The identity now on this node is no contact of its own.
            if Some(c.id) != own {
                let (nk, nv) = entry(&key, &c)?;
                ops.push(Op::Put(CF_CONTACTS, nk, nv));
            }
        }
    }
    let sealed = !ops.is_empty();
    if sealed {
        store.write(ops, true)?;
    }
    let moved = match &key {
        ContactKey::Sealed(k) => {
            crate::conversation::migrate_layout(store, k, crate::chain::unix_now())
                .map_err(|e| StoreError::Corrupt(e.to_string()))?
        }
        ContactKey::Clear => 0,
    };
    if sealed || moved > 0 {
        store.compact()?;
    }
    Ok(key)
}

/// The clear entry of a contact (schema 2's layout moves here on open).
pub(crate) fn clear_entry(c: &Contact) -> (Vec<u8>, Vec<u8>) {
    (c.id.0.to_vec(), [&[CLEAR][..], &c.encode()].concat())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_wallet::kel::{establishment_event, KeyEventLog};
    use cairn_wallet::{MasterKey, SeedPhrase};

    fn person() -> (KeyEventLog, HotKeys) {
        let master = MasterKey::new(&SeedPhrase::generate(12).unwrap().to_seed(""));
        let log = KeyEventLog::new(vec![establishment_event(&master, 0, None).unwrap()]);
        (log, HotKeys::derive(&master, 0).unwrap())
    }

    /// Bob as a contact, and the hot keys of the book's owner.
    fn sample() -> (Contact, HotKeys) {
        let (log, _) = person();
        let c = Contact {
            id: log.verify().unwrap().id,
            record: ContactRecord {
                name: Some("bob".into()),
                added: 7,
            },
            bundle: Bundle {
                genesis: ChainParams::new(ChainNetwork::Regtest).genesis_hash(),
                log,
                anchors: vec![],
                sealed: vec![],
            },
        };
        (c, person().1)
    }

    #[test]
    fn sealed_book_shows_no_id_or_name_and_opens_only_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (c, hot) = sample();
        // Added before the identity: in the clear.
        put(
            &store,
            &ContactKey::Clear,
            ChainNetwork::Regtest,
            &c.id,
            &c.bundle,
            &c.record,
        )
        .unwrap();
        let raw = store.scan(CF_CONTACTS, b"", 10).unwrap();
        assert_eq!(raw[0].0, c.id.0.to_vec());
        // The first unlock seals it.
        let key = unlock(&store, &hot).unwrap();
        let raw = store.scan(CF_CONTACTS, b"", 10).unwrap();
        assert_eq!(raw.len(), 1);
        let (k, v) = &raw[0];
        for hay in [k, v] {
            assert!(!hay.windows(32).any(|w| w == c.id.0));
            assert!(!hay.windows(3).any(|w| w == b"bob"));
        }
        assert_eq!(get(&store, &key, &c.id).unwrap().unwrap(), c);
        assert_eq!(all(&store, &key).unwrap(), vec![c.clone()]);
        // Without the key, or with another, it does not open.
        assert!(all(&store, &ContactKey::Clear).is_err());
        let other = ContactKey::Sealed(Zeroizing::new([9; 32]));
        assert!(get(&store, &other, &c.id).unwrap().is_none());
        assert!(all(&store, &other).is_err());
        // Moved under another contact's locator, it is refused.
        let stranger = IdentityId([5; 32]);
        store
            .write(
                vec![Op::Put(
                    CF_CONTACTS,
                    key.locator(&stranger).to_vec(),
                    v.clone(),
                )],
                true,
            )
            .unwrap();
        assert!(get(&store, &key, &stranger).is_err());
    }

    #[test]
    fn a_schema_2_contact_moves_into_the_book_and_is_sealed_at_unlock() {
        use crate::store::{CF_ANCHORS, CF_KEL, SCHEMA_VERSION};
        let dir = tempfile::tempdir().unwrap();
        let (c, hot) = sample();
        {
            // Schema 2: the name in `contacts`, the log in `kel`, both
            // under the id in the clear.
            let store = Store::open(dir.path()).unwrap();
            store.put_log(&c.id, &c.bundle.log).unwrap();
            let json = serde_json::to_vec(&c.record).unwrap();
            store
                .write(vec![Op::Put(CF_CONTACTS, c.id.0.to_vec(), json)], true)
                .unwrap();
            // A conversation record of the old layout, under the clear id.
            let old = [&b"c"[..], &c.id.0].concat();
            let sealed = secrets::seal(&hot.store_key(), &old, b"{}").unwrap();
            store
                .write(vec![Op::Put(crate::store::CF_MESSAGES, old, sealed)], true)
                .unwrap();
            store.set_schema_version(2).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.schema_version().unwrap(), Some(SCHEMA_VERSION));
        assert!(store.log(&c.id).unwrap().is_none());
        assert_eq!(store.scan(CF_KEL, b"", 10).unwrap(), vec![]);
        assert_eq!(store.scan(CF_ANCHORS, b"", 10).unwrap(), vec![]);
        assert_eq!(get(&store, &ContactKey::Clear, &c.id).unwrap().unwrap(), c);
        let key = unlock(&store, &hot).unwrap();
        assert_eq!(all(&store, &key).unwrap(), vec![c.clone()]);
        assert!(store.get(CF_CONTACTS, &c.id.0).unwrap().is_none());
        // The unlock moved the conversation under the locator too.
        let messages = store.scan(crate::store::CF_MESSAGES, b"", 10).unwrap();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].0, [&b"C"[..], &key.locator(&c.id)].concat());
    }

    #[test]
    fn damaged_entries_are_errors_not_panics() {
        let (c, _) = sample();
        let (_, v) = clear_entry(&c);
        for cut in 0..v.len() {
            let _ = open_entry(&ContactKey::Clear, &c.id.0, &v[..cut]);
        }
        assert!(open_entry(&ContactKey::Clear, &c.id.0, &v[..v.len() - 1]).is_err());
        assert!(open_entry(&ContactKey::Clear, &c.id.0, &[7]).is_err());
        assert_eq!(open_entry(&ContactKey::Clear, &c.id.0, &v).unwrap(), c);
    }
}
