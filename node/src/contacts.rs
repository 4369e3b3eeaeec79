//! Contacts: adding one from its identity bundle, finding one by id or
//! name, and the report of a check against Bitcoin. The command line runs
//! these on the store when no node is running; a running node runs them for
//! its API (`contact_add`, `contacts`, `contact_verify`), so both paths give
//! the same answers.

use cairn_chain_anchor::{Bundle, ChainNetwork, ChainParams, Verdict};
use cairn_wallet::IdentityId;
use serde::Serialize;

use crate::anchoring::Checked;
use crate::contact_book::{self, Contact, ContactKey, ContactRecord};
use crate::record::{compare_logs, Freshness};
use crate::store::{Store, StoreError};

/// Longest contact name, bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Why a contact could not be added or found.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// The bundle's key event log does not verify.
    #[error("the bundle's key event log is invalid: {0}")]
    InvalidLog(#[from] cairn_wallet::kel::LogError),
    /// The bundle's anchors are in another chain.
    #[error("the bundle is anchored in another chain than {0} (the network this node follows)")]
    OtherChain(&'static str),
    /// The bundle is the node's own identity.
    #[error("{0} is this node's own identity")]
    Own(IdentityId),
    /// The bundle's log is not an extension of the stored one.
    #[error("this bundle's log for {0} is not newer than the one this node has: either it is older, or two different histories exist for this identity (its seed may be in someone else's hands)")]
    Diverges(IdentityId),
    /// The name is not a valid contact name.
    #[error("a contact name has 1 to {MAX_NAME_LEN} printable characters and does not look like an identity id")]
    BadName,
    /// Another contact has the name.
    #[error("the name {name:?} is already used for {other}")]
    NameTaken {
        /// The name.
        name: String,
        /// The contact that has it.
        other: IdentityId,
    },
    /// The id is not a contact.
    #[error("{0} is not a contact; add it with `cairn contact add`")]
    NotAContact(IdentityId),
    /// No contact has the name.
    #[error("no contact is named {0:?}; see `cairn contact list`")]
    NoSuchName(String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a contact name: 1 to [`MAX_NAME_LEN`] bytes, no control
/// characters, and not something that reads as an identity id.
pub fn check_name(n: &str) -> Result<(), ContactError> {
    if n.is_empty()
        || n.len() > MAX_NAME_LEN
        || n.chars().any(char::is_control)
        || n.starts_with("cairn1")
    {
        return Err(ContactError::BadName);
    }
    Ok(())
}

/// What adding a contact did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Added {
    /// The contact's id.
    pub id: IdentityId,
    /// Its name (given now, or kept from before).
    pub name: Option<String>,
    /// Its fingerprint.
    pub fingerprint: String,
    /// Its log's rotation index.
    pub rotation_index: u32,
    /// Anchors kept for it.
    pub anchors: usize,
}

/// Adds (or updates) the contact `bundle` describes, under `name` if given.
///
/// The log must verify and the anchors must be in `network`'s chain. A
/// contact already known keeps its name (unless a new one is given), the
/// time it was added, and any anchors or sealed rotations the new bundle
/// lacks; a bundle whose log is not newer than the stored one
/// ([`compare_logs`]) is refused.
pub fn add(
    store: &Store,
    key: &ContactKey,
    network: ChainNetwork,
    bundle: Bundle,
    name: Option<&str>,
    now: u64,
) -> Result<Added, ContactError> {
    add_or_update(store, key, network, bundle, name, false, now)
}

/// Like [`add`], for a contact the node has only (a newer record seen in
/// the network): an identity that is not a contact, or no longer one, is
/// refused ([`ContactError::NotAContact`]), not added.
pub fn update(
    store: &Store,
    key: &ContactKey,
    network: ChainNetwork,
    bundle: Bundle,
    now: u64,
) -> Result<Added, ContactError> {
    add_or_update(store, key, network, bundle, None, true, now)
}

fn add_or_update(
    store: &Store,
    key: &ContactKey,
    network: ChainNetwork,
    mut bundle: Bundle,
    name: Option<&str>,
    known_only: bool,
    now: u64,
) -> Result<Added, ContactError> {
    let state = bundle.log.verify()?;
    let id = state.id;
    if !bundle.anchors.is_empty() && bundle.genesis != ChainParams::new(network).genesis_hash() {
        return Err(ContactError::OtherChain(network.core_chain_name()));
    }
    if let Some(n) = name {
        check_name(n)?;
    }
    if store.own_identity()? == Some(id) {
        return Err(ContactError::Own(id));
    }
    let mut record = ContactRecord {
        name: name.map(str::to_string),
        added: now,
    };
    let old = contact_book::get(store, key, &id)?;
    if known_only && old.is_none() {
        return Err(ContactError::NotAContact(id));
    }
    if let Some(old) = old {
        // The log must extend the stored one, or be a later interaction
        // branch under the same establishment events (a restore from the
        // words starts one): never older, never a fork.
        match compare_logs(&bundle.log, &old.bundle.log) {
            Ok(Freshness::Newer | Freshness::Same) => {}
            _ => return Err(ContactError::Diverges(id)),
        }
        let old_bundle = old.bundle_on(network);
        if bundle.anchors.len() < old_bundle.anchors.len() {
            bundle.anchors = old_bundle.anchors;
        }
        if bundle.sealed.is_empty() {
            bundle.sealed = old_bundle.sealed;
        }
        record.added = old.record.added;
        if record.name.is_none() {
            record.name = old.record.name;
        }
    }
    if let Some(n) = &record.name {
        name_free(store, key, &id, n)?;
    }
    contact_book::put(store, key, network, &id, &bundle, &record)?;
    Ok(Added {
        id,
        name: record.name,
        fingerprint: id.fingerprint(),
        rotation_index: state.rotation_index(),
        anchors: bundle.anchors.len(),
    })
}

/// Refuses `name` if a contact other than `id` has it.
fn name_free(
    store: &Store,
    key: &ContactKey,
    id: &IdentityId,
    name: &str,
) -> Result<(), ContactError> {
    match contact_book::all(store, key)?
        .into_iter()
        .find(|c| c.id != *id && c.record.name.as_deref() == Some(name))
    {
        Some(other) => Err(ContactError::NameTaken {
            name: name.to_string(),
            other: other.id,
        }),
        None => Ok(()),
    }
}

/// The contact `who` names: an identity id, or a contact's name.
pub fn find(store: &Store, key: &ContactKey, who: &str) -> Result<Contact, ContactError> {
    if let Ok(id) = who.parse::<IdentityId>() {
        return contact_book::get(store, key, &id)?.ok_or(ContactError::NotAContact(id));
    }
    contact_book::all(store, key)?
        .into_iter()
        .find(|c| c.record.name.as_deref() == Some(who))
        .ok_or_else(|| ContactError::NoSuchName(who.to_string()))
}

/// Gives contact `who` the name `name` (unique, as [`check_name`] says).
pub fn rename(
    store: &Store,
    key: &ContactKey,
    network: ChainNetwork,
    who: &str,
    name: &str,
) -> Result<ContactView, ContactError> {
    check_name(name)?;
    let mut c = find(store, key, who)?;
    let id = c.id;
    name_free(store, key, &id, name)?;
    c.record.name = Some(name.to_string());
    contact_book::put(store, key, network, &id, &c.bundle_on(network), &c.record)?;
    Ok(ContactView {
        id,
        name: c.record.name,
        fingerprint: id.fingerprint(),
        added: c.record.added,
    })
}

/// Removes contact `who` from the contact book; returns its id and
/// whether it was a contact. (Its conversation is the caller's to forget:
/// `conversation::forget`.) An id no longer in the book is returned as it
/// is, so that a removal cut short can be run again to finish.
pub fn remove(
    store: &Store,
    key: &ContactKey,
    who: &str,
) -> Result<(IdentityId, bool), ContactError> {
    let id = match find(store, key, who) {
        Ok(c) => c.id,
        Err(ContactError::NotAContact(id)) => return Ok((id, false)),
        Err(e) => return Err(e),
    };
    contact_book::remove(store, key, &id)?;
    Ok((id, true))
}

/// One contact, as `cairn contact list` and the API's `contacts` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ContactView {
    /// Its id.
    pub id: IdentityId,
    /// Its name.
    pub name: Option<String>,
    /// Its fingerprint.
    pub fingerprint: String,
    /// When it was added (Unix seconds).
    pub added: u64,
}

/// Every contact, by id.
pub fn list(store: &Store, key: &ContactKey) -> Result<Vec<ContactView>, StoreError> {
    Ok(contact_book::all(store, key)?
        .into_iter()
        .map(|c| ContactView {
            id: c.id,
            name: c.record.name,
            fingerprint: c.id.fingerprint(),
            added: c.record.added,
        })
        .collect())
}

/// The outcome of checking one contact against Bitcoin, as `cairn contact
/// verify --json` and the API's `contact_verify` give it.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The contact's id.
    pub id: IdentityId,
    /// Its name.
    pub name: Option<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// The verdict in words.
    pub verdict_text: String,
    /// Whether the identity is unusable: `stale` or `invalid`.
    pub failed: bool,
    /// The signing key that may be used now (hex), if any.
    pub signing_key: Option<String>,
    /// The messaging key that may be used now (hex), if any.
    pub messaging_key: Option<String>,
    /// The rotation those keys belong to.
    pub rotation_index: Option<u32>,
    /// The confirmations a seal needs.
    pub confirmations_required: u32,
    /// Rotations followed from the chain in this check, in order.
    pub followed_rotations: Vec<u32>,
    /// Why the spend of the last seal could not be followed, if it could not.
    pub follow_error: Option<String>,
}

impl VerifyReport {
    /// The report of `checked`, a check of contact `id`.
    pub fn new(
        id: IdentityId,
        record: &ContactRecord,
        checked: &Checked,
        confirmations: u32,
    ) -> VerifyReport {
        let v = &checked.verification;
        let usable = v.usable();
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        VerifyReport {
            id,
            name: record.name.clone(),
            verdict: v.verdict.clone(),
            verdict_text: v.verdict.to_string(),
            failed: matches!(v.verdict, Verdict::Stale { .. } | Verdict::Invalid { .. }),
            signing_key: usable.map(|e| hex(&e.signing_key.serialize())),
            messaging_key: usable.map(|e| hex(&e.messaging_key.0)),
            rotation_index: usable.map(|e| e.index),
            confirmations_required: confirmations,
            followed_rotations: checked.followed.clone(),
            follow_error: checked.follow_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_wallet::kel::{establishment_chain, KeyEventLog};
    use cairn_wallet::{MasterKey, SeedPhrase};

    /// An unanchored bundle of a fresh identity's first `events` establishment events.
    fn bundle(phrase: &SeedPhrase, events: usize) -> Bundle {
        let chain = establishment_chain(&MasterKey::new(&phrase.to_seed("")), 3).unwrap();
        Bundle {
            genesis: ChainParams::new(ChainNetwork::Regtest).genesis_hash(),
            log: KeyEventLog::new(chain[..events].to_vec()),
            anchors: Vec::new(),
            sealed: Vec::new(),
        }
    }

    /// The log the book keeps for `id`.
    fn kept_log(store: &Store, key: &ContactKey, id: &IdentityId) -> KeyEventLog {
        contact_book::get(store, key, id)
            .unwrap()
            .unwrap()
            .bundle
            .log
    }

    #[test]
    fn adding_updating_and_finding_contacts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = ContactKey::Sealed(zeroize::Zeroizing::new([3; 32]));
        let net = ChainNetwork::Regtest;
        let (alice, bob) = (
            SeedPhrase::generate(12).unwrap(),
            SeedPhrase::generate(12).unwrap(),
        );

        let a = add(&store, &key, net, bundle(&alice, 1), Some("alice"), 100).unwrap();
        assert_eq!(
            (a.name.as_deref(), a.rotation_index, a.anchors),
            (Some("alice"), 0, 0)
        );
        // A longer log of the same identity updates it; the name and the
        // time it was added stay.
        let again = add(&store, &key, net, bundle(&alice, 3), None, 200).unwrap();
        assert_eq!(
            (again.id, again.name.as_deref(), again.rotation_index),
            (a.id, Some("alice"), 2)
        );
        let kept = contact_book::get(&store, &key, &a.id).unwrap().unwrap();
        assert_eq!(kept.record.added, 100);
        assert_eq!(kept.bundle.log.len(), 3);
        // An older (shorter) log is refused and changes nothing.
        assert!(matches!(
            add(&store, &key, net, bundle(&alice, 2), None, 300),
            Err(ContactError::Diverges(id)) if id == a.id
        ));
        assert_eq!(kept_log(&store, &key, &a.id).len(), 3);
        // Names are unique.
        assert!(matches!(
            add(&store, &key, net, bundle(&bob, 1), Some("alice"), 300),
            Err(ContactError::NameTaken { other, .. }) if other == a.id
        ));
        assert!(contact_book::all(&store, &key).unwrap().len() == 1);
        let b = add(&store, &key, net, bundle(&bob, 1), Some("bob"), 300).unwrap();

        assert_eq!(find(&store, &key, "bob").unwrap().id, b.id);
        assert_eq!(find(&store, &key, &a.id.to_string()).unwrap().id, a.id);
        assert!(matches!(
            find(&store, &key, "carol"),
            Err(ContactError::NoSuchName(_))
        ));
        let stranger = IdentityId([7; 32]);
        assert!(matches!(
            find(&store, &key, &stranger.to_string()),
            Err(ContactError::NotAContact(id)) if id == stranger
        ));
        let names: Vec<_> = list(&store, &key)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&Some("bob".into())));
    }

    #[test]
    fn a_later_interaction_branch_replaces_an_earlier_one() {
        use cairn_wallet::kel::{Event, Interaction, Item};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = ContactKey::Sealed(zeroize::Zeroizing::new([3; 32]));
        let net = ChainNetwork::Regtest;
        let phrase = SeedPhrase::generate(12).unwrap();
        let master = MasterKey::new(&phrase.to_seed(""));
        // The same establishment event with one interaction made at `t`
        // (as before and after a restore from the words).
        let branch = |t: u64, mailbox: u8| {
            let mut b = bundle(&phrase, 1);
            let prev = b.log.events()[0].digest();
            let e = Event::Interaction(
                Interaction::new(0, 1, prev, t, vec![Item::Mailbox(vec![mailbox; 8])]).unwrap(),
            );
            b.log.push(e.sign(&master.signing_key(0).unwrap()).unwrap());
            b
        };
        let a = add(&store, &key, net, branch(100, 1), Some("alice"), 1).unwrap();
        let later = add(&store, &key, net, branch(200, 2), None, 2).unwrap();
        assert_eq!(later.id, a.id);
        let state = kept_log(&store, &key, &a.id).verify().unwrap();
        assert_eq!(state.mailboxes, vec![vec![2; 8]]);
        // The earlier branch does not come back.
        assert!(matches!(
            add(&store, &key, net, branch(150, 3), None, 3),
            Err(ContactError::Diverges(_))
        ));
        assert_eq!(
            kept_log(&store, &key, &a.id)
                .verify()
                .unwrap()
                .last_timestamp,
            200
        );
    }

    #[test]
    fn the_own_identity_and_broken_logs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = ContactKey::Sealed(zeroize::Zeroizing::new([3; 32]));
        let net = ChainNetwork::Regtest;
        let own = SeedPhrase::generate(12).unwrap();
        let b = bundle(&own, 1);
        let id = b.log.verify().unwrap().id;
        store.set_own_identity(&id, &b.log).unwrap();
        assert!(matches!(add(&store, &key, net, b, None, 1), Err(ContactError::Own(i)) if i == id));
        // Events out of order do not verify.
        let mut broken = bundle(&SeedPhrase::generate(12).unwrap(), 3);
        let mut events = broken.log.events().to_vec();
        events.swap(1, 2);
        broken.log = KeyEventLog::new(events);
        assert!(matches!(
            add(&store, &key, net, broken, None, 1),
            Err(ContactError::InvalidLog(_))
        ));
        assert!(contact_book::all(&store, &key).unwrap().is_empty());
    }

    #[test]
    fn contacts_are_renamed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = ContactKey::Sealed(zeroize::Zeroizing::new([4; 32]));
        let net = ChainNetwork::Regtest;
        let a = add(
            &store,
            &key,
            net,
            bundle(&SeedPhrase::generate(12).unwrap(), 2),
            Some("alice"),
            1,
        )
        .unwrap();
        add(
            &store,
            &key,
            net,
            bundle(&SeedPhrase::generate(12).unwrap(), 1),
            Some("bob"),
            2,
        )
        .unwrap();
        assert!(matches!(
            rename(&store, &key, net, "alice", "bob"),
            Err(ContactError::NameTaken { .. })
        ));
        assert!(matches!(
            rename(&store, &key, net, "alice", ""),
            Err(ContactError::BadName)
        ));
        assert!(matches!(
            rename(&store, &key, net, "carol", "c"),
            Err(ContactError::NoSuchName(_))
        ));
        let r = rename(&store, &key, net, "alice", "ally").unwrap();
        assert_eq!((r.id, r.name.as_deref(), r.added), (a.id, Some("ally"), 1));
        assert_eq!(find(&store, &key, "ally").unwrap().id, a.id);
        assert_eq!(kept_log(&store, &key, &a.id).len(), 2, "the log stays");
        assert_eq!(remove(&store, &key, "ally").unwrap(), (a.id, true));
        assert!(matches!(
            find(&store, &key, &a.id.to_string()),
            Err(ContactError::NotAContact(_))
        ));
        // Again by id (to finish a removal cut short): fine; by name: gone.
        assert_eq!(
            remove(&store, &key, &a.id.to_string()).unwrap(),
            (a.id, false)
        );
        assert!(matches!(
            remove(&store, &key, "ally"),
            Err(ContactError::NoSuchName(_))
        ));
        assert_eq!(list(&store, &key).unwrap().len(), 1);
        // A newer record of someone who is not a contact adds nobody.
        let again = bundle(&SeedPhrase::generate(12).unwrap(), 1);
        assert!(matches!(
            update(&store, &key, net, again, 3),
            Err(ContactError::NotAContact(_))
        ));
        assert_eq!(list(&store, &key).unwrap().len(), 1);
    }

    #[test]
    fn names() {
        assert!(check_name("alice").is_ok());
        assert!(check_name("Ålice Ünïcode").is_ok());
        assert!(check_name(&"a".repeat(MAX_NAME_LEN)).is_ok());
        for bad in ["", "a\nb", "tab\there", "cairn1qqqq"] {
            assert!(
                matches!(check_name(bad), Err(ContactError::BadName)),
                "{bad:?}"
            );
        }
        assert!(check_name(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }
}
