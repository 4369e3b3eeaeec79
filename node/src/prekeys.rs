//! The own prekeys: X25519 keys that contacts use for a first message while
//! this node is offline (`cairn-messaging`). Each is published in the own
//! key event log (an interaction event signed by the current key, with an
//! expiry); its secret is sealed in the store under the store key, in the
//! same synced batch. A new prekey is made before the newest one gets close
//! to its expiry, and a secret is erased some time after its prekey
//! expired: first messages sealed to it can then be read by nobody
//! (forward secrecy of first messages, `docs/protocol.md`).

use cairn_wallet::kel::{BuildError, Event, Interaction, Item};
use cairn_wallet::keystore::HotKeys;
use cairn_wallet::LogState;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::identity::{IdentityError, OwnIdentity};
use crate::secrets::{self, SecretError};
use crate::store::{Store, StoreError};

/// How long a prekey is valid, seconds.
pub const LIFETIME: u64 = 30 * DAY;
/// A new prekey is made when the newest has less than this left, seconds.
pub const REFRESH_BEFORE: u64 = 7 * DAY;
/// A secret is kept this long after its prekey expired (for first messages
/// still on their way), then erased, seconds.
pub const GRACE: u64 = 7 * DAY;
const DAY: u64 = 24 * 60 * 60;
const PREFIX: &[u8] = b"prekey\0";

/// Prekey failures.
#[derive(Debug, thiserror::Error)]
pub enum PrekeyError {
    /// The hot keys are not the log's current keys.
    #[error("the unlocked keys are not this identity's current keys")]
    WrongKeys,
    /// The event could not be made.
    #[error("cannot make the prekey event: {0}")]
    Build(String),
    /// The new log does not verify (a bug; nothing was stored).
    #[error("the log with the new prekey does not verify: {0}")]
    Log(#[from] cairn_wallet::kel::LogError),
    /// A sealed secret does not open.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A stored value is damaged.
    #[error("the stored prekey secret {0} is damaged")]
    Damaged(u32),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Identity failure.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl From<BuildError> for PrekeyError {
    fn from(e: BuildError) -> Self {
        PrekeyError::Build(e.to_string())
    }
}

fn store_key(id: u32) -> Vec<u8> {
    [PREFIX, &id.to_be_bytes()].concat()
}

/// One of the own prekeys, as `cairn prekeys` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrekeyView {
    /// Its id.
    pub id: u32,
    /// The public key, hex.
    pub key: String,
    /// When it expires, Unix seconds.
    pub expires: u64,
    /// Whether this node holds its secret.
    pub secret_held: bool,
}

/// The prekeys the own log announces under the current rotation.
pub fn list(store: &Store, own: &OwnIdentity) -> Result<Vec<PrekeyView>, PrekeyError> {
    let held: Vec<Vec<u8>> = store.secrets(PREFIX)?.into_iter().map(|(k, _)| k).collect();
    Ok(own
        .state
        .prekeys
        .iter()
        .map(|(id, key, expires)| PrekeyView {
            id: *id,
            key: key.iter().map(|b| format!("{b:02x}")).collect(),
            expires: *expires,
            secret_held: held.contains(&store_key(*id)),
        })
        .collect())
}

/// What [`refresh`] did.
#[derive(Debug)]
pub struct Refreshed {
    /// The prekey made, if one was.
    pub made: Option<u32>,
    /// Secrets erased.
    pub erased: usize,
    /// The own identity afterwards.
    pub own: OwnIdentity,
}

/// Makes a new prekey if the newest has less than [`REFRESH_BEFORE`] left
/// (or there is none) and erases the secrets of prekeys expired for more
/// than [`GRACE`]. `hot` must be the current rotation's keys.
pub fn refresh(
    store: &Store,
    own: &OwnIdentity,
    hot: &HotKeys,
    now: u64,
) -> Result<Refreshed, PrekeyError> {
    let state = &own.state;
    let current = state.current();
    if hot.index != current.index || hot.signing.public() != current.signing_key {
        return Err(PrekeyError::WrongKeys);
    }
    let key = hot.store_key();
    let mut erase = Vec::new();
    for (k, v) in store.secrets(PREFIX)? {
        let id = k
            .get(PREFIX.len()..)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or(PrekeyError::Damaged(0))?;
        let plain = secrets::open(&key, &k, &v)?;
        let expires = plain
            .get(32..40)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or(PrekeyError::Damaged(id))?;
        if expires.saturating_add(GRACE) < now {
            erase.push(k);
        }
    }
    let newest = state.prekeys.iter().map(|p| p.2).max().unwrap_or(0);
    let mut log = own.log.clone();
    let mut put = Vec::new();
    let mut made = None;
    if newest < now.saturating_add(REFRESH_BEFORE) {
        let id = state.prekeys.iter().map(|p| p.0).max().unwrap_or(0) + 1;
        let secret = secrets::random32()?;
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret));
        let expires = now + LIFETIME;
        let event = next_interaction(
            state,
            now,
            vec![Item::Prekey {
                id,
                key: public.to_bytes(),
                expires,
            }],
        )?;
        log.push(event.sign(&hot.signing)?);
        let mut plain = Zeroizing::new([0u8; 40]);
        plain[..32].copy_from_slice(&secret[..]);
        plain[32..].copy_from_slice(&expires.to_be_bytes());
        let k = store_key(id);
        put.push((k.clone(), secrets::seal(&key, &k, &plain[..])?));
        made = Some(id);
    }
    let state = log.verify()?;
    if made.is_some() || !erase.is_empty() {
        store.put_own_log_and_secrets(&state.id, &log, &put, &erase)?;
    }
    Ok(Refreshed {
        made,
        erased: erase.len(),
        own: OwnIdentity { log, state },
    })
}

/// Names `mailboxes` (libp2p peer ids, as bytes) as where the identity's
/// mail is kept while its node is away: an interaction event signed by the
/// current key, so that contacts find them in the log. Nothing is written
/// when the log already names exactly these. `hot` must be the current
/// rotation's keys.
pub fn set_mailboxes(
    store: &Store,
    own: &OwnIdentity,
    hot: &HotKeys,
    mut mailboxes: Vec<Vec<u8>>,
    now: u64,
) -> Result<OwnIdentity, PrekeyError> {
    // A log names mailboxes once each, in order.
    mailboxes.sort();
    mailboxes.dedup();
    let state = &own.state;
    let current = state.current();
    if hot.index != current.index || hot.signing.public() != current.signing_key {
        return Err(PrekeyError::WrongKeys);
    }
    if state.mailboxes == mailboxes || mailboxes.is_empty() {
        return Ok(OwnIdentity {
            log: own.log.clone(),
            state: state.clone(),
        });
    }
    let items = mailboxes.into_iter().map(Item::Mailbox).collect();
    let mut log = own.log.clone();
    log.push(next_interaction(state, now, items)?.sign(&hot.signing)?);
    let state = log.verify()?;
    store.put_own_log_and_secrets(&state.id, &log, &[], &[])?;
    Ok(OwnIdentity { log, state })
}

/// The mailboxes the log named last, under any rotation. A rotation starts
/// afresh (what the old key signed no longer speaks for the identity), so
/// the node names them again under the new key ([`carry_mailboxes`]).
pub fn last_mailboxes(log: &cairn_wallet::kel::KeyEventLog) -> Vec<Vec<u8>> {
    log.events()
        .iter()
        .rev()
        .find_map(|e| match e.event() {
            Event::Interaction(int) => {
                let m = int.mailboxes();
                (!m.is_empty()).then_some(m)
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// After a rotation, names again under the new key the mailboxes the log
/// named before it (nothing when the current rotation names some, or none
/// were ever named).
pub fn carry_mailboxes(
    store: &Store,
    own: &OwnIdentity,
    hot: &HotKeys,
    now: u64,
) -> Result<OwnIdentity, PrekeyError> {
    let last = last_mailboxes(&own.log);
    if !own.state.mailboxes.is_empty() || last.is_empty() {
        return Ok(OwnIdentity {
            log: own.log.clone(),
            state: own.state.clone(),
        });
    }
    set_mailboxes(store, own, hot, last, now)
}

/// The interaction event that follows the log whose state is `state`.
fn next_interaction(state: &LogState, now: u64, items: Vec<Item>) -> Result<Event, PrekeyError> {
    Ok(Event::Interaction(Interaction::new(
        state.rotation_index(),
        state.last_seq + 1,
        state.last_digest,
        now.max(state.last_timestamp),
        items,
    )?))
}

/// The secret of the own prekey `id`, if this node still holds it (for
/// opening first messages).
pub fn secret(
    store: &Store,
    hot: &HotKeys,
    id: u32,
) -> Result<Option<Zeroizing<[u8; 32]>>, PrekeyError> {
    let k = store_key(id);
    let Some(sealed) = store.secret(&k)? else {
        return Ok(None);
    };
    let plain = secrets::open(&hot.store_key(), &k, &sealed)?;
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(plain.get(..32).ok_or(PrekeyError::Damaged(id))?);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_messaging::{accept, open, start, PeerIdentity, PeerPrekey};
    use cairn_wallet::kel::{establishment_event, KeyEventLog};
    use cairn_wallet::{MasterKey, SeedPhrase};

    const NOW: u64 = 1_800_000_000;

    fn identity(store: &Store) -> (MasterKey, OwnIdentity) {
        let master = MasterKey::new(&SeedPhrase::generate(12).unwrap().to_seed(""));
        let log = KeyEventLog::new(vec![establishment_event(&master, 0, None).unwrap()]);
        let state = log.verify().unwrap();
        store.set_own_identity(&state.id, &log).unwrap();
        (master, OwnIdentity { log, state })
    }

    #[test]
    fn prekeys_are_published_kept_renewed_and_erased() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (master, own) = identity(&store);
        let hot = HotKeys::derive(&master, 0).unwrap();

        let r = refresh(&store, &own, &hot, NOW).unwrap();
        assert_eq!((r.made, r.erased), (Some(1), 0));
        let own = r.own;
        assert_eq!(own.state.prekeys.len(), 1);
        assert_eq!(store.log(&own.state.id).unwrap().unwrap(), own.log);
        let views = list(&store, &own).unwrap();
        assert!(views[0].secret_held);
        assert_eq!(views[0].expires, NOW + LIFETIME);
        // The secret matches the published key.
        let s = secret(&store, &hot, 1).unwrap().unwrap();
        let public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*s));
        assert_eq!(public.to_bytes(), own.state.prekeys[0].1);

        // Nothing to do while the prekey has long to live.
        let r = refresh(&store, &own, &hot, NOW + DAY).unwrap();
        assert_eq!((r.made, r.erased), (None, 0));
        // Close to its expiry, a second one.
        let r = refresh(&store, &own, &hot, NOW + LIFETIME - REFRESH_BEFORE + 1).unwrap();
        assert_eq!(r.made, Some(2));
        let own = r.own;
        assert_eq!(own.state.prekeys.len(), 2);
        // Long after the first expired, its secret is erased.
        let later = NOW + LIFETIME + GRACE + 1;
        let r = refresh(&store, &own, &hot, later).unwrap();
        assert_eq!(r.erased, 1);
        assert!(secret(&store, &hot, 1).unwrap().is_none());
        assert!(secret(&store, &hot, 2).unwrap().is_some());
        // Someone else's keys cannot make prekeys for this identity.
        let other = HotKeys::derive(
            &MasterKey::new(&SeedPhrase::generate(12).unwrap().to_seed("")),
            0,
        )
        .unwrap();
        assert!(matches!(
            refresh(&store, &r.own, &other, later),
            Err(PrekeyError::WrongKeys)
        ));
        // A store key from other keys does not open the secrets.
        assert!(secret(&store, &other, 2).is_err());
    }

    #[test]
    fn a_contact_writes_to_a_published_prekey_and_the_node_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (master, own) = identity(&store);
        let hot = HotKeys::derive(&master, 0).unwrap();
        let bob = refresh(&store, &own, &hot, NOW).unwrap().own;
        // Alice has only Bob's verified log.
        let (pid, pkey, _) = bob.state.prekeys[0];
        let alice_master = MasterKey::new(&SeedPhrase::generate(12).unwrap().to_seed(""));
        let alice_log =
            KeyEventLog::new(vec![establishment_event(&alice_master, 0, None).unwrap()]);
        let alice = alice_log.verify().unwrap();
        let alice_messaging = alice_master.messaging_key(0).unwrap();
        let peer = PeerIdentity {
            id: bob.state.id,
            messaging_key: bob.state.current().messaging_key.0,
        };
        let (_, first) = start(
            alice.id,
            &alice_messaging.secret_bytes(),
            &peer,
            &PeerPrekey { id: pid, key: pkey },
            b"hello Bob",
        )
        .unwrap();
        let opened = open(&bob.state.id, &first, |id| {
            secret(&store, &hot, id).ok().flatten()
        })
        .unwrap();
        assert_eq!(opened.from, alice.id);
        let accepted = accept(
            &bob.state.id,
            &bob.state.current().messaging_key.0,
            &opened,
            &alice.current().messaging_key.0,
            b"",
        )
        .unwrap();
        assert_eq!(accepted.content, b"hello Bob");
    }

    #[test]
    fn mailboxes_are_named_once_and_named_again_after_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (master, own) = identity(&store);
        let hot = HotKeys::derive(&master, 0).unwrap();
        let boxes = vec![vec![2u8; 38], vec![1u8; 38]];
        let own = set_mailboxes(&store, &own, &hot, boxes.clone(), NOW).unwrap();
        assert_eq!(own.state.mailboxes, [vec![1u8; 38], vec![2u8; 38]]);
        let len = own.log.len();
        let same = set_mailboxes(&store, &own, &hot, boxes, NOW).unwrap();
        assert_eq!(same.log.len(), len, "nothing new to name");
        // A rotation leaves them behind; the new key names them again.
        let mut log = own.log.clone();
        log.push(establishment_event(&master, 1, Some(own.state.current().digest)).unwrap());
        let state = log.verify().unwrap();
        assert!(state.mailboxes.is_empty());
        let rotated = OwnIdentity { log, state };
        let hot1 = HotKeys::derive(&master, 1).unwrap();
        assert!(matches!(
            carry_mailboxes(&store, &rotated, &hot, NOW),
            Err(PrekeyError::WrongKeys)
        ));
        let carried = carry_mailboxes(&store, &rotated, &hot1, NOW + 1).unwrap();
        assert_eq!(carried.state.mailboxes, [vec![1u8; 38], vec![2u8; 38]]);
        assert_eq!(store.log(&carried.state.id).unwrap().unwrap(), carried.log);
    }
}
