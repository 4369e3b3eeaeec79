//! Identity records: what the network publishes and serves for an identity.
//! No I/O.
//!
//! A record is the identity's bundle (its key event log, which names its
//! mailbox nodes and signed prekeys, and the proofs of its seals) with a
//! time window, signed by the log's current signing key:
//!
//! ```text
//! record    = "CAIRNREC" ‖ version (1) ‖ issued (u64) ‖ expires (u64)
//!             ‖ bundle length (u32) ‖ bundle ‖ BIP340 signature (64)
//! signature = over TaggedHash("cairn/record/v1", id ‖ issued ‖ expires ‖ SHA256(bundle))
//! DHT key   = TaggedHash("cairn/record/dht-key/v1", id)
//! ```
//!
//! The signature makes a record fresh (a node cannot serve a record past
//! its expiry) and its owner's (nobody else can re-date it). A record never
//! holds an IP address: mailboxes are libp2p peer ids, found through the
//! DHT. Anchors are checked against the chain by whoever receives the
//! record ([`crate::watch::check_contact`]); here the log is verified and
//! the signature checked.

use bitcoin::hashes::{sha256, Hash};
use bitcoin::secp256k1::schnorr::Signature;
use cairn_chain_anchor::anchor::{BundleError, MAX_BUNDLE_LEN};
use cairn_chain_anchor::Bundle;
use cairn_wallet::hash::{tagged_hash, tags};
use cairn_wallet::kel::{KeyEventLog, LogError};
use cairn_wallet::keys::{verify_digest, SigningKey};
use cairn_wallet::{IdentityId, LogState};

/// The first bytes of every record.
pub const RECORD_MAGIC: &[u8; 8] = b"CAIRNREC";
/// The record format's version.
pub const RECORD_VERSION: u8 = 1;
/// The largest record, bytes (it must fit in one DHT record, 64 KiB).
pub const MAX_RECORD_LEN: usize = 60 * 1024;
/// The longest a record may be valid for, seconds.
pub const MAX_RECORD_TTL: u64 = 30 * 24 * 60 * 60;
/// How far in the future a record's issue time may be (clock skew), seconds.
pub const MAX_CLOCK_SKEW: u64 = 2 * 60 * 60;
const HEADER: usize = 8 + 1 + 8 + 8 + 4;
const SIGNATURE: usize = 64;

/// Why a record was refused.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Larger than any record may be.
    #[error("the record is {len} bytes, more than {MAX_RECORD_LEN}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The bytes are not a record of a version this node reads.
    #[error("not an identity record: {0}")]
    Malformed(&'static str),
    /// The bundle inside does not decode.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The log does not verify.
    #[error("the record's key event log is invalid: {0}")]
    Log(#[from] LogError),
    /// The signature is not the current key's.
    #[error("the record is not signed by the identity's current key")]
    BadSignature,
    /// The signing key given is not the log's current key.
    #[error("this key is not the identity's current signing key")]
    WrongKey,
    /// The time window is not valid.
    #[error("the record's validity ({issued} to {expires}) is not valid at {now}: {why}")]
    Window {
        /// When it was issued.
        issued: u64,
        /// When it expires.
        expires: u64,
        /// The time it was checked at.
        now: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// Two records of the same identity whose logs fork.
    #[error("two records of {0} carry logs that fork: two different histories exist for this identity (its seed may be in someone else's hands)")]
    Forked(IdentityId),
    /// Records of two identities compared.
    #[error("the records are of different identities")]
    OtherIdentity,
}

/// A signed identity record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    /// When it was issued, Unix seconds.
    pub issued: u64,
    /// When it expires, Unix seconds.
    pub expires: u64,
    /// The identity's bundle.
    pub bundle: Bundle,
    /// The current signing key's signature.
    pub signature: Signature,
}

/// What a record's signature commits to.
fn signed_digest(id: &IdentityId, issued: u64, expires: u64, bundle: &[u8]) -> [u8; 32] {
    let bundle_hash = sha256::Hash::hash(bundle).to_byte_array();
    tagged_hash(
        tags::RECORD,
        &[
            &id.0,
            &issued.to_be_bytes(),
            &expires.to_be_bytes(),
            &bundle_hash,
        ],
    )
}

/// The DHT key the record of `id` is published under.
pub fn dht_key(id: &IdentityId) -> [u8; 32] {
    tagged_hash(tags::RECORD_KEY, &[&id.0])
}

/// How a record relates to another of the same identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// It replaces the other: a longer log, or the same log issued later.
    Newer,
    /// The other replaces it.
    Older,
    /// The same log, issued at the same time.
    Same,
}

impl From<std::cmp::Ordering> for Freshness {
    /// `Greater` is newer.
    fn from(o: std::cmp::Ordering) -> Self {
        match o {
            std::cmp::Ordering::Greater => Freshness::Newer,
            std::cmp::Ordering::Less => Freshness::Older,
            std::cmp::Ordering::Equal => Freshness::Same,
        }
    }
}

impl IdentityRecord {
    /// Signs a record of `bundle` valid from `issued` to `expires` with
    /// `key`, which must be the log's current signing key.
    pub fn sign(
        bundle: Bundle,
        issued: u64,
        expires: u64,
        key: &SigningKey,
    ) -> Result<IdentityRecord, RecordError> {
        let state = bundle.log.verify()?;
        if state.current().signing_key != key.public() {
            return Err(RecordError::WrongKey);
        }
        check_window(issued, expires, issued)?;
        let encoded = bundle.encode();
        let signature = key.sign_digest(&signed_digest(&state.id, issued, expires, &encoded));
        let record = IdentityRecord {
            issued,
            expires,
            bundle,
            signature,
        };
        let len = record.encode().len();
        if len > MAX_RECORD_LEN {
            return Err(RecordError::TooLarge { len });
        }
        Ok(record)
    }

    /// The binary form.
    pub fn encode(&self) -> Vec<u8> {
        let bundle = self.bundle.encode();
        let mut out = Vec::with_capacity(HEADER + bundle.len() + SIGNATURE);
        out.extend_from_slice(RECORD_MAGIC);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.issued.to_be_bytes());
        out.extend_from_slice(&self.expires.to_be_bytes());
        out.extend_from_slice(&(bundle.len() as u32).to_be_bytes());
        out.extend_from_slice(&bundle);
        out.extend_from_slice(self.signature.as_ref());
        out
    }

    /// Decodes a record (bounded; nothing verified yet: see
    /// [`IdentityRecord::verify`]).
    pub fn decode(bytes: &[u8]) -> Result<IdentityRecord, RecordError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(RecordError::TooLarge { len: bytes.len() });
        }
        if bytes.len() < HEADER + SIGNATURE {
            return Err(RecordError::Malformed("too short"));
        }
        if &bytes[..8] != RECORD_MAGIC {
            return Err(RecordError::Malformed("wrong magic"));
        }
        if bytes[8] != RECORD_VERSION {
            return Err(RecordError::Malformed("unknown version"));
        }
        let u64_at = |i: usize| u64::from_be_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        let (issued, expires) = (u64_at(9), u64_at(17));
        let len = u32::from_be_bytes(bytes[25..29].try_into().expect("4 bytes")) as usize;
        if len > MAX_BUNDLE_LEN || HEADER + len + SIGNATURE != bytes.len() {
            return Err(RecordError::Malformed("bundle length"));
        }
        let bundle = Bundle::decode(&bytes[HEADER..HEADER + len])?;
        let signature = Signature::from_slice(&bytes[HEADER + len..])
            .map_err(|_| RecordError::Malformed("signature"))?;
        Ok(IdentityRecord {
            issued,
            expires,
            bundle,
            signature,
        })
    }

    /// Verifies the record at time `now`: the log, the signature of its
    /// current key, the time window. Gives the state the log establishes.
    pub fn verify(&self, now: u64) -> Result<LogState, RecordError> {
        let state = self.bundle.log.verify()?;
        let digest = signed_digest(&state.id, self.issued, self.expires, &self.bundle.encode());
        if !verify_digest(&state.current().signing_key, &digest, &self.signature) {
            return Err(RecordError::BadSignature);
        }
        check_window(self.issued, self.expires, now)?;
        Ok(state)
    }

    /// How this record relates to `other`, both verified: the newer log
    /// ([`compare_logs`]) wins; with the same log, the later issue time.
    pub fn freshness(&self, other: &IdentityRecord) -> Result<Freshness, RecordError> {
        Ok(match compare_logs(&self.bundle.log, &other.bundle.log)? {
            Freshness::Same => self.issued.cmp(&other.issued).into(),
            order => order,
        })
    }
}

/// How log `new` relates to log `old` of the same identity.
///
/// A log that extends the other is newer. Establishment events come from
/// the seed and are anchored, so two logs can only differ in their
/// interaction events (mailboxes, prekeys): a restore from the words starts
/// a new interaction chain under the same establishment events. Between two
/// such branches, more establishment events win, then the later last
/// interaction; branches that tie, or establishment events that differ, are
/// a fork ([`RecordError::Forked`]).
pub fn compare_logs(new: &KeyEventLog, old: &KeyEventLog) -> Result<Freshness, RecordError> {
    let (a, b) = (new.events(), old.events());
    let (Some(first_a), Some(first_b)) = (a.first(), b.first()) else {
        return Err(RecordError::Malformed("empty log"));
    };
    if first_a != first_b {
        return Err(RecordError::OtherIdentity);
    }
    let common = a.len().min(b.len());
    if a[..common] == b[..common] {
        return Ok(a.len().cmp(&b.len()).into());
    }
    let (sa, sb) = (new.verify()?, old.verify()?);
    let digests = |s: &LogState| s.establishment.iter().map(|e| e.digest).collect::<Vec<_>>();
    let (da, db) = (digests(&sa), digests(&sb));
    let shared = da.len().min(db.len());
    if da[..shared] != db[..shared] {
        return Err(RecordError::Forked(sa.id));
    }
    match da
        .len()
        .cmp(&db.len())
        .then(sa.last_timestamp.cmp(&sb.last_timestamp))
    {
        std::cmp::Ordering::Equal => Err(RecordError::Forked(sa.id)),
        order => Ok(order.into()),
    }
}

/// The network's check of record bytes offered or found under DHT `key`:
/// bounded decoding, full verification at `now`, and `key` is the
/// identity's own key. Gives the record.
pub fn check_network_record(
    key: &[u8],
    value: &[u8],
    now: u64,
) -> Result<IdentityRecord, RecordError> {
    let record = IdentityRecord::decode(value)?;
    let state = record.verify(now)?;
    check_key(key, &state.id)?;
    Ok(record)
}

/// A record of identity `id` belongs under its own DHT key only.
pub fn check_key(key: &[u8], id: &IdentityId) -> Result<(), RecordError> {
    if key != dht_key(id) {
        return Err(RecordError::Malformed(
            "stored under another identity's key",
        ));
    }
    Ok(())
}

/// Whether record bytes `new` replace `old` (both checked): only a newer
/// record of the same identity does.
pub fn network_record_replaces(new: &[u8], old: &[u8]) -> bool {
    match (IdentityRecord::decode(new), IdentityRecord::decode(old)) {
        (Ok(n), Ok(o)) => matches!(n.freshness(&o), Ok(Freshness::Newer)),
        (Ok(_), Err(_)) => true,
        _ => false,
    }
}

pub(crate) fn check_window(issued: u64, expires: u64, now: u64) -> Result<(), RecordError> {
    let bad = |why| RecordError::Window {
        issued,
        expires,
        now,
        why,
    };
    if expires <= issued {
        return Err(bad("it expires before it is issued"));
    }
    if expires - issued > MAX_RECORD_TTL {
        return Err(bad("it is valid for more than 30 days"));
    }
    if issued > now.saturating_add(MAX_CLOCK_SKEW) {
        return Err(bad("it is issued in the future"));
    }
    if expires <= now {
        return Err(bad("it has expired"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_chain_anchor::{ChainNetwork, ChainParams};
    use cairn_wallet::kel::{establishment_chain, Event, Interaction, Item, KeyEventLog};
    use cairn_wallet::{MasterKey, SeedPhrase};

    const NOW: u64 = 1_800_000_000;
    const DAY: u64 = 86_400;

    /// A log of `rotations` + 1 establishment events, and an interaction
    /// naming a mailbox and a prekey under the last one.
    fn identity(rotations: u32) -> (MasterKey, Bundle) {
        let master = MasterKey::new(&SeedPhrase::generate(12).unwrap().to_seed(""));
        let chain = establishment_chain(&master, rotations).unwrap();
        let prev = chain.last().unwrap().digest();
        let mut log = KeyEventLog::new(chain);
        let key = master.signing_key(rotations).unwrap();
        let interaction = Event::Interaction(Interaction {
            index: rotations,
            seq: 1,
            prev,
            timestamp: NOW - DAY,
            items: vec![
                Item::Mailbox(vec![0x00, 0x24, 1, 2, 3]),
                Item::Prekey {
                    id: 1,
                    key: [9; 32],
                    expires: NOW + 30 * DAY,
                },
            ],
        });
        log.push(interaction.sign(&key).unwrap());
        let bundle = Bundle {
            genesis: ChainParams::new(ChainNetwork::Regtest).genesis_hash(),
            log,
            anchors: Vec::new(),
            sealed: Vec::new(),
        };
        (master, bundle)
    }

    #[test]
    fn a_signed_record_round_trips_and_verifies() {
        let (master, bundle) = identity(1);
        let key = master.signing_key(1).unwrap();
        let r = IdentityRecord::sign(bundle, NOW, NOW + 7 * DAY, &key).unwrap();
        let bytes = r.encode();
        let back = IdentityRecord::decode(&bytes).unwrap();
        assert_eq!(back, r);
        let state = back.verify(NOW + DAY).unwrap();
        assert_eq!(state.rotation_index(), 1);
        assert_eq!(state.mailboxes, vec![vec![0x00, 0x24, 1, 2, 3]]);
        assert_eq!(state.prekeys.len(), 1);
        assert_ne!(dht_key(&state.id), state.id.0);
        // An old key cannot sign for the identity.
        let old = master.signing_key(0).unwrap();
        assert!(matches!(
            IdentityRecord::sign(r.bundle.clone(), NOW, NOW + DAY, &old),
            Err(RecordError::WrongKey)
        ));
    }

    #[test]
    fn forged_expired_and_redated_records_are_refused() {
        let (master, bundle) = identity(0);
        let key = master.signing_key(0).unwrap();
        let r = IdentityRecord::sign(bundle, NOW, NOW + DAY, &key).unwrap();
        assert!(matches!(
            r.verify(NOW + DAY),
            Err(RecordError::Window { .. })
        ));
        assert!(matches!(
            r.verify(NOW - MAX_CLOCK_SKEW - 1),
            Err(RecordError::Window { .. })
        ));
        // Re-dated by someone else: the signature no longer matches.
        let mut later = r.clone();
        later.expires += DAY;
        assert!(matches!(later.verify(NOW), Err(RecordError::BadSignature)));
        // Someone else's key over this identity's log.
        let (other, _) = identity(0);
        let forged = IdentityRecord {
            signature: other.signing_key(0).unwrap().sign_digest(&[0; 32]),
            ..r.clone()
        };
        assert!(matches!(forged.verify(NOW), Err(RecordError::BadSignature)));
        // Windows that are never valid.
        assert!(IdentityRecord::sign(r.bundle.clone(), NOW, NOW, &key).is_err());
        assert!(
            IdentityRecord::sign(r.bundle.clone(), NOW, NOW + MAX_RECORD_TTL + 1, &key).is_err()
        );
    }

    #[test]
    fn newer_records_replace_older_ones_and_forks_are_reported() {
        let (master, bundle) = identity(2);
        let k2 = master.signing_key(2).unwrap();
        let full = IdentityRecord::sign(bundle.clone(), NOW, NOW + DAY, &k2).unwrap();
        let reissued = IdentityRecord::sign(bundle.clone(), NOW + 60, NOW + DAY, &k2).unwrap();
        assert_eq!(reissued.freshness(&full).unwrap(), Freshness::Newer);
        assert_eq!(full.freshness(&reissued).unwrap(), Freshness::Older);
        assert_eq!(full.freshness(&full).unwrap(), Freshness::Same);
        // A shorter log (before the last rotation) is older, even if issued later.
        let mut short = bundle.clone();
        short.log = KeyEventLog::new(bundle.log.events()[..2].to_vec());
        let k1 = master.signing_key(1).unwrap();
        let old = IdentityRecord::sign(short, NOW + 3600, NOW + DAY, &k1).unwrap();
        assert_eq!(old.freshness(&full).unwrap(), Freshness::Older);
        assert_eq!(full.freshness(&old).unwrap(), Freshness::Newer);
        // Another identity.
        let (m2, b2) = identity(0);
        let other = IdentityRecord::sign(b2, NOW, NOW + DAY, &m2.signing_key(0).unwrap()).unwrap();
        assert!(matches!(
            full.freshness(&other),
            Err(RecordError::OtherIdentity)
        ));
        // Two logs that fork after a common prefix: different interactions.
        let mut forked_log = KeyEventLog::new(bundle.log.events()[..3].to_vec());
        let prev = forked_log.events()[2].digest();
        forked_log.push(
            Event::Interaction(Interaction {
                index: 2,
                seq: 1,
                prev,
                timestamp: NOW,
                items: vec![Item::Mailbox(vec![7; 10])],
            })
            .sign(&k2)
            .unwrap(),
        );
        let forked = IdentityRecord::sign(
            Bundle {
                log: forked_log,
                ..bundle
            },
            NOW,
            NOW + DAY,
            &k2,
        )
        .unwrap();
        // A later interaction branch under the same establishment events
        // (what a restore from the words makes) replaces the earlier one.
        assert_eq!(forked.freshness(&full).unwrap(), Freshness::Newer);
        assert_eq!(full.freshness(&forked).unwrap(), Freshness::Older);
        // Two branches that tie are a fork.
        let mut tied_log = KeyEventLog::new(full.bundle.log.events()[..3].to_vec());
        tied_log.push(
            Event::Interaction(Interaction {
                index: 2,
                seq: 1,
                prev,
                timestamp: NOW - DAY,
                items: vec![Item::Mailbox(vec![8; 10])],
            })
            .sign(&k2)
            .unwrap(),
        );
        assert!(matches!(
            compare_logs(&tied_log, &full.bundle.log),
            Err(RecordError::Forked(_))
        ));
    }

    #[test]
    fn the_network_checks_the_key_and_keeps_the_newer_record() {
        let (master, bundle) = identity(0);
        let key = master.signing_key(0).unwrap();
        let id = bundle.log.verify().unwrap().id;
        let a = IdentityRecord::sign(bundle.clone(), NOW, NOW + DAY, &key)
            .unwrap()
            .encode();
        let b = IdentityRecord::sign(bundle, NOW + 1, NOW + DAY, &key)
            .unwrap()
            .encode();
        assert!(check_network_record(&dht_key(&id), &a, NOW).is_ok());
        assert!(check_network_record(&id.0, &a, NOW).is_err());
        assert!(check_network_record(&[0; 32], &a, NOW).is_err());
        assert!(check_network_record(&dht_key(&id), &a, NOW + DAY).is_err());
        assert!(network_record_replaces(&b, &a));
        assert!(!network_record_replaces(&a, &b));
        assert!(!network_record_replaces(&a, &a));
        assert!(!network_record_replaces(b"junk", &a));
    }

    #[test]
    fn malformed_records_are_refused_without_panicking() {
        let (master, bundle) = identity(0);
        let r =
            IdentityRecord::sign(bundle, NOW, NOW + DAY, &master.signing_key(0).unwrap()).unwrap();
        let bytes = r.encode();
        for cut in [0, 8, 28, HEADER + 10, bytes.len() - 1] {
            assert!(IdentityRecord::decode(&bytes[..cut]).is_err(), "{cut}");
        }
        let mut wrong = bytes.clone();
        wrong[8] = 2;
        assert!(matches!(
            IdentityRecord::decode(&wrong),
            Err(RecordError::Malformed("unknown version"))
        ));
        let mut long = bytes.clone();
        long[25..29].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(IdentityRecord::decode(&long).is_err());
        assert!(matches!(
            IdentityRecord::decode(&vec![0; MAX_RECORD_LEN + 1]),
            Err(RecordError::TooLarge { .. })
        ));
        // No address of any kind inside: the only network data are peer ids.
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("127.0.0.1") && !text.contains("/ip4/"));
    }
}
