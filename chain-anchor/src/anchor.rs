//! Anchors and identity bundles, sans I/O: the on-chain record of each
//! establishment event of a log, the portable bundle (log + anchors) a person
//! hands to contacts, and the check of a bundle against the validated header
//! chain that gives a [`Verdict`]. The construction is specified in
//! `docs/protocol.md` (section "Anchors").
//!
//! An anchor is the transaction whose output 0 is the event's seal, the BIP37
//! proof of its block (absent while unconfirmed) and the hash of the seal's
//! next-key leaf. A rotation's anchoring transaction spends the previous seal
//! through that leaf (its input 0), so the seals of one identity form a chain
//! that only the seed holder can extend. The inception seal has no
//! predecessor, and anyone holding the bundle could create a second output
//! with the same script; so its anchor also carries an attestation: the next
//! key (the one only the seed gives) signs the seal's outpoint. A copy made by
//! someone else has no such signature, and cannot pass an old key off as
//! current.

use bitcoin::base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bitcoin::base64::Engine as _;
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::key::XOnlyPublicKey;
use bitcoin::merkle_tree::MerkleBlock;
use bitcoin::secp256k1::schnorr::Signature;
use bitcoin::secp256k1::{Message, Secp256k1, Verification as CanVerify};
use bitcoin::taproot::{LeafVersion, TapLeafHash};
use bitcoin::{Amount, BlockHash, OutPoint, Transaction, Txid};
use cairn_wallet::hash::tagged_hash;
use cairn_wallet::kel::codec::Reader;
use cairn_wallet::kel::{next_key_digest, DecodeError, EstablishmentRef, KeyEventLog};
use cairn_wallet::keys::SigningKey;
use cairn_wallet::{IdentityId, LogState};

use crate::headers::HeaderChain;
use crate::seal::{next_key_script, Seal, SealError};
use crate::sealed::{open_rotation, SealedError, SealedRotation, MAX_SEALED_LEN};
use crate::spv::{self, SpvError, MAX_PROOF_LEN};
use crate::Verdict;

/// Tag of the message the next key signs to claim the inception seal.
pub const INCEPTION_ATTESTATION_TAG: &str = "cairn/seal/inception/v1";
/// Tag of a text bundle's checksum.
pub const BUNDLE_CHECKSUM_TAG: &str = "cairn/bundle/checksum/v1";
/// The output of an anchoring transaction that holds the seal.
pub const SEAL_VOUT: u32 = 0;
/// Most sealed rotations a bundle may hold.
pub const MAX_SEALED_ROTATIONS: usize = 64;
/// Most anchors a bundle may hold (a rotation a week for about 20 years).
pub const MAX_ANCHORS: usize = 1000;
/// Largest anchoring transaction accepted (a standard transaction is at most
/// 400,000 weight units, so at most that many bytes).
pub const MAX_ANCHOR_TX_LEN: usize = 400_000;
/// Largest bundle accepted, in bytes.
pub const MAX_BUNDLE_LEN: usize = 16 << 20;
/// Magic bytes of a binary bundle.
pub const BUNDLE_MAGIC: &[u8; 8] = b"CAIRNBDL";
/// Version of the bundle encoding.
pub const BUNDLE_VERSION: u8 = 1;
/// Prefix of a bundle's text form.
pub const BUNDLE_TEXT_PREFIX: &str = "cairn-bundle:";

const FLAG_PROOF: u8 = 1;
const FLAG_ATTESTATION: u8 = 2;

/// Why a bundle does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The binary form is malformed.
    #[error("the bundle does not decode: {0}")]
    Decode(#[from] DecodeError),
    /// The text form does not start with [`BUNDLE_TEXT_PREFIX`].
    #[error("this is not a Cairn identity bundle (it should start with {BUNDLE_TEXT_PREFIX})")]
    NotABundle,
    /// The text form is not base64url.
    #[error("the bundle text is damaged (not base64url): {0}")]
    BadText(String),
    /// The text form's checksum does not match: a typo or a cut-off copy.
    #[error("the bundle text is damaged (checksum mismatch); copy it again in full")]
    BadChecksum,
    /// A transaction or proof inside does not decode.
    #[error("anchor {index}: {what} does not decode: {reason}")]
    BadBitcoinData {
        /// Which anchor.
        index: usize,
        /// "transaction" or "proof".
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Too large to be a bundle.
    #[error("the bundle is {len} bytes, more than {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
}

/// The next key's signature over the inception seal's outpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attestation {
    /// The next signing key (rotation 1's key), revealed.
    pub next_key: XOnlyPublicKey,
    /// BIP340 signature over [`attestation_message`].
    pub signature: Signature,
}

/// What the next key signs: `tagged_hash(INCEPTION_ATTESTATION_TAG, id ‖ txid ‖ vout as u32 LE)`.
pub fn attestation_message(id: &IdentityId, seal: &OutPoint) -> [u8; 32] {
    tagged_hash(
        INCEPTION_ATTESTATION_TAG,
        &[&id.0, seal.txid.as_byte_array(), &seal.vout.to_le_bytes()],
    )
}

impl Attestation {
    /// Signs the claim on `seal` for `id` with the next key (deterministic).
    pub fn sign(next_key: &SigningKey, id: &IdentityId, seal: &OutPoint) -> Attestation {
        let msg = Message::from_digest(attestation_message(id, seal));
        let signature =
            Secp256k1::signing_only().sign_schnorr_no_aux_rand(&msg, next_key.keypair());
        Attestation {
            next_key: next_key.public(),
            signature,
        }
    }

    /// Whether the signature is the next key's over `seal` for `id`.
    pub fn verify<C: CanVerify>(
        &self,
        secp: &Secp256k1<C>,
        id: &IdentityId,
        seal: &OutPoint,
    ) -> bool {
        let msg = Message::from_digest(attestation_message(id, seal));
        secp.verify_schnorr(&self.signature, &msg, &self.next_key)
            .is_ok()
    }
}

/// The on-chain record of one establishment event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Hash of the seal's next-key leaf.
    pub next_leaf: TapLeafHash,
    /// The transaction whose output [`SEAL_VOUT`] is the seal.
    pub tx: Transaction,
    /// Proof of the block that holds `tx`; `None` while unconfirmed.
    pub proof: Option<MerkleBlock>,
    /// For the inception only: the next key's claim on the seal.
    pub attestation: Option<Attestation>,
}

impl Anchor {
    /// The anchoring transaction's txid.
    pub fn txid(&self) -> Txid {
        self.tx.compute_txid()
    }

    /// The seal's outpoint.
    pub fn seal_outpoint(&self) -> OutPoint {
        OutPoint::new(self.txid(), SEAL_VOUT)
    }

    /// The block the proof names, if there is a proof.
    pub fn block(&self) -> Option<BlockHash> {
        self.proof.as_ref().map(|p| p.header.block_hash())
    }

    /// Binary encoding: `leaf[32] ‖ flags ‖ u32 len ‖ tx ‖ [u32 len ‖ proof] ‖ [key[32] ‖ sig[64]]`.
    pub fn encode(&self) -> Vec<u8> {
        let tx = serialize(&self.tx);
        let proof = self.proof.as_ref().map(serialize);
        let mut flags = 0;
        if proof.is_some() {
            flags |= FLAG_PROOF;
        }
        if self.attestation.is_some() {
            flags |= FLAG_ATTESTATION;
        }
        let mut out =
            Vec::with_capacity(45 + tx.len() + proof.as_ref().map_or(0, |p| p.len() + 4) + 96);
        out.extend_from_slice(self.next_leaf.as_byte_array());
        out.push(flags);
        out.extend_from_slice(&(tx.len() as u32).to_be_bytes());
        out.extend_from_slice(&tx);
        if let Some(p) = proof {
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(&p);
        }
        if let Some(a) = &self.attestation {
            out.extend_from_slice(&a.next_key.serialize());
            out.extend_from_slice(a.signature.as_ref());
        }
        out
    }

    /// Decodes one anchor (bounded; rejects trailing bytes). `index` names
    /// it in errors.
    pub fn decode(bytes: &[u8], index: usize) -> Result<Anchor, BundleError> {
        let mut r = Reader::new(bytes);
        let anchor = Anchor::decode_from(&mut r, index)?;
        r.finish()?;
        Ok(anchor)
    }

    fn decode_from(r: &mut Reader<'_>, index: usize) -> Result<Anchor, BundleError> {
        let next_leaf = TapLeafHash::from_byte_array(r.array()?);
        let flags = r.u8()?;
        if flags & !(FLAG_PROOF | FLAG_ATTESTATION) != 0 {
            return Err(DecodeError::NonCanonical("unknown anchor flags").into());
        }
        let tx_bytes = bounded(r, "anchor transaction", MAX_ANCHOR_TX_LEN)?;
        let tx: Transaction = deserialize(tx_bytes).map_err(|e| BundleError::BadBitcoinData {
            index,
            what: "transaction",
            reason: e.to_string(),
        })?;
        let proof = if flags & FLAG_PROOF != 0 {
            let p = bounded(r, "anchor proof", MAX_PROOF_LEN)?;
            Some(deserialize(p).map_err(|e| BundleError::BadBitcoinData {
                index,
                what: "proof",
                reason: e.to_string(),
            })?)
        } else {
            None
        };
        let attestation = if flags & FLAG_ATTESTATION != 0 {
            let next_key = XOnlyPublicKey::from_slice(&r.array::<32>()?)
                .map_err(|_| DecodeError::InvalidKey("attestation key"))?;
            let signature = Signature::from_slice(&r.array::<64>()?)
                .map_err(|_| DecodeError::InvalidSignatureEncoding)?;
            Some(Attestation {
                next_key,
                signature,
            })
        } else {
            None
        };
        Ok(Anchor {
            next_leaf,
            tx,
            proof,
            attestation,
        })
    }
}

/// Whether output [`SEAL_VOUT`] of `tx` pays `script` (where every seal
/// lives in its anchoring transaction).
pub fn holds_seal(tx: &Transaction, script: &bitcoin::Script) -> bool {
    tx.output
        .get(SEAL_VOUT as usize)
        .is_some_and(|o| o.script_pubkey.as_script() == script)
}

/// Input 0 of `tx` if it spends `seal` (where a rotation spends the previous seal).
pub fn seal_spend_input<'t>(tx: &'t Transaction, seal: &OutPoint) -> Option<&'t bitcoin::TxIn> {
    tx.input.first().filter(|i| i.previous_output == *seal)
}

/// A `u32`-length-prefixed field of at most `max` bytes.
fn bounded<'a>(
    r: &mut Reader<'a>,
    field: &'static str,
    max: usize,
) -> Result<&'a [u8], DecodeError> {
    let len = r.u32()? as usize;
    if len > max {
        return Err(DecodeError::FieldTooLarge { field, len, max });
    }
    r.take(len)
}

/// A portable identity: the key event log and the anchors of its
/// establishment events, in order (fewer anchors than events while a
/// rotation is not yet anchored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Genesis hash of the chain the anchors are in.
    pub genesis: BlockHash,
    /// The log.
    pub log: KeyEventLog,
    /// `anchors[i]` anchors establishment event `i`.
    pub anchors: Vec<Anchor>,
    /// The next rotations, sealed to their own keys ([`crate::sealed`]), so
    /// that a holder of the bundle can follow them from the chain alone.
    pub sealed: Vec<SealedRotation>,
}

impl Bundle {
    /// Binary encoding: `"CAIRNBDL" ‖ version ‖ genesis[32] ‖ u32 len ‖ log ‖
    /// u16 count ‖ (u32 len ‖ anchor)* ‖ u16 count ‖ (u32 index ‖ u32 len ‖ sealed rotation)*`.
    pub fn encode(&self) -> Vec<u8> {
        let log = self.log.encode();
        let mut out = Vec::with_capacity(16 + log.len() + self.anchors.len() * 400);
        out.extend_from_slice(BUNDLE_MAGIC);
        out.push(BUNDLE_VERSION);
        out.extend_from_slice(self.genesis.as_byte_array());
        out.extend_from_slice(&(log.len() as u32).to_be_bytes());
        out.extend_from_slice(&log);
        out.extend_from_slice(&(self.anchors.len() as u16).to_be_bytes());
        for a in &self.anchors {
            let bytes = a.encode();
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(&(self.sealed.len() as u16).to_be_bytes());
        for s in &self.sealed {
            out.extend_from_slice(&s.index.to_be_bytes());
            out.extend_from_slice(&(s.ciphertext.len() as u32).to_be_bytes());
            out.extend_from_slice(&s.ciphertext);
        }
        out
    }

    /// Decodes a binary bundle (bounded; rejects trailing bytes). Decoding
    /// checks form only: [`verify_bundle`] checks what it says.
    pub fn decode(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(BundleError::TooLarge {
                len: bytes.len(),
                max: MAX_BUNDLE_LEN,
            });
        }
        let mut r = Reader::new(bytes);
        if r.take(BUNDLE_MAGIC.len())? != BUNDLE_MAGIC {
            return Err(BundleError::NotABundle);
        }
        let version = r.u8()?;
        if version != BUNDLE_VERSION {
            return Err(DecodeError::UnknownVersion(version).into());
        }
        let genesis = BlockHash::from_byte_array(r.array()?);
        let log = KeyEventLog::decode(bounded(&mut r, "log", MAX_BUNDLE_LEN)?)?;
        let count = usize::from(r.u16()?);
        if count > MAX_ANCHORS {
            return Err(DecodeError::FieldTooLarge {
                field: "anchor count",
                len: count,
                max: MAX_ANCHORS,
            }
            .into());
        }
        let mut anchors = Vec::with_capacity(count);
        for index in 0..count {
            let bytes = bounded(&mut r, "anchor", MAX_BUNDLE_LEN)?;
            anchors.push(Anchor::decode(bytes, index)?);
        }
        let count = usize::from(r.u16()?);
        if count > MAX_SEALED_ROTATIONS {
            return Err(DecodeError::FieldTooLarge {
                field: "sealed rotation count",
                len: count,
                max: MAX_SEALED_ROTATIONS,
            }
            .into());
        }
        let mut sealed = Vec::with_capacity(count);
        for _ in 0..count {
            let index = r.u32()?;
            let ciphertext = bounded(&mut r, "sealed rotation", MAX_SEALED_LEN)?.to_vec();
            sealed.push(SealedRotation { index, ciphertext });
        }
        r.finish()?;
        Ok(Bundle {
            genesis,
            log,
            anchors,
            sealed,
        })
    }

    /// The compact text form: [`BUNDLE_TEXT_PREFIX`] then base64url (no
    /// padding) of the binary form followed by a 4-byte checksum.
    pub fn to_text(&self) -> String {
        let mut bytes = self.encode();
        let sum = tagged_hash(BUNDLE_CHECKSUM_TAG, &[&bytes]);
        bytes.extend_from_slice(&sum[..4]);
        format!("{BUNDLE_TEXT_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Parses the text form (surrounding whitespace and line breaks inside
    /// are ignored, as a pasted copy may carry them).
    pub fn from_text(text: &str) -> Result<Bundle, BundleError> {
        let text = text.trim();
        let body = text
            .strip_prefix(BUNDLE_TEXT_PREFIX)
            .ok_or(BundleError::NotABundle)?;
        if body.len() > MAX_BUNDLE_LEN / 3 * 4 + 16 {
            return Err(BundleError::TooLarge {
                len: body.len() / 4 * 3,
                max: MAX_BUNDLE_LEN,
            });
        }
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let raw = URL_SAFE_NO_PAD
            .decode(compact.as_bytes())
            .map_err(|e| BundleError::BadText(e.to_string()))?;
        if raw.len() < 4 {
            return Err(BundleError::BadChecksum);
        }
        let (bytes, sum) = raw.split_at(raw.len() - 4);
        if tagged_hash(BUNDLE_CHECKSUM_TAG, &[bytes])[..4] != *sum {
            return Err(BundleError::BadChecksum);
        }
        Bundle::decode(bytes)
    }
}

/// Why an anchor does not fit its event. Each is fatal: the bundle is `invalid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorFault {
    /// More anchors than establishment events.
    #[error("the bundle has {anchors} anchors for {events} establishment events")]
    TooManyAnchors {
        /// Anchors.
        anchors: usize,
        /// Establishment events.
        events: usize,
    },
    /// Output 0 of the anchoring transaction is not the event's seal.
    #[error("output 0 of the anchoring transaction is not this event's seal")]
    NotTheSeal,
    /// The seal cannot be built.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The inception anchor has no attestation.
    #[error("the inception anchor carries no attestation by the next key")]
    MissingAttestation,
    /// A rotation anchor carries an attestation (only the inception has one).
    #[error("a rotation anchor carries an attestation")]
    UnexpectedAttestation,
    /// The attestation's key is not the committed next key.
    #[error("the attestation's key is not the next key the event commits to")]
    AttestationKey,
    /// The attestation's signature does not verify.
    #[error("the attestation's signature does not verify")]
    AttestationSignature,
    /// The rotation's transaction does not spend the previous seal (input 0).
    #[error("the anchoring transaction does not spend the previous seal as its input 0")]
    NotSpendingPreviousSeal,
    /// The previous seal was opened with another key than the rotation's.
    #[error("the previous seal was spent with key {revealed}, not the rotation's signing key")]
    WrongSpendingKey {
        /// The key the witness reveals.
        revealed: XOnlyPublicKey,
    },
    /// The proof is malformed or proves another transaction.
    #[error("the inclusion proof: {0}")]
    Proof(SpvError),
}

/// The result of checking a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The state of the log, when the log itself verifies.
    pub state: Option<LogState>,
    /// The verdict.
    pub verdict: Verdict,
}

impl Verification {
    /// The establishment event whose key may be used now, if any: the
    /// current one for `current`, the last confirmed one for `pending` and
    /// `reorged`, the log's last one for `unanchored` (trust on first use).
    pub fn usable(&self) -> Option<&EstablishmentRef> {
        let state = self.state.as_ref()?;
        let index = match &self.verdict {
            Verdict::Current { rotation_index, .. } => Some(*rotation_index),
            Verdict::Unanchored { rotation_index } => Some(*rotation_index),
            Verdict::Pending { rotation_index, .. } | Verdict::Reorged { rotation_index, .. } => {
                *rotation_index
            }
            Verdict::Stale { .. } | Verdict::Invalid { .. } => None,
        }?;
        state.establishment.get(index as usize)
    }
}

/// Where the walk over the anchors stopped.
enum Stop {
    /// Every anchor is confirmed deeply enough.
    AllConfirmed,
    /// Anchor `index` is unconfirmed or too shallow (`confirmations` of `needed`).
    Pending { index: usize, confirmations: u32 },
    /// Anchor `index`'s block left the best chain (or was never in it).
    Reorged { index: usize },
}

/// Checks `bundle` against `chain`: the log's signatures and pre-rotation,
/// then each anchor's seal, spend and proof, then (through `seal_unspent`,
/// which must report whether an outpoint is unspent at the source's tip,
/// ignoring the mempool) whether the last confirmed seal is still closed.
/// Fails closed: a spent seal without the event that spent it is `stale`.
pub fn verify_bundle<E>(
    bundle: &Bundle,
    chain: &HeaderChain,
    confirmations: u32,
    seal_unspent: &mut dyn FnMut(&OutPoint) -> Result<bool, E>,
) -> Result<Verification, E> {
    let state = match bundle.log.verify() {
        Ok(s) => s,
        Err(e) => {
            return Ok(Verification {
                state: None,
                verdict: Verdict::from(&e),
            })
        }
    };
    let done = |verdict| {
        Ok(Verification {
            state: Some(state.clone()),
            verdict,
        })
    };
    if bundle.anchors.is_empty() {
        return done(Verdict::Unanchored {
            rotation_index: state.rotation_index(),
        });
    }
    let ours = chain.at_height(0).map(|g| g.hash);
    if ours != Some(bundle.genesis) {
        return done(Verdict::Invalid {
            position: 0,
            kind: "bundle",
            reason: format!(
                "the anchors are in the chain with genesis {}, not the one this node follows",
                bundle.genesis
            ),
        });
    }
    let secp = Secp256k1::verification_only();
    if let Err((position, fault)) = check_structure(&secp, &state, &bundle.anchors) {
        return done(Verdict::Invalid {
            position,
            kind: bundle.log.events()[position].event().kind_name(),
            reason: fault.to_string(),
        });
    }
    // Walk the anchors in order: how far is the chain of seals confirmed?
    let need = confirmations.max(1);
    let mut confirmed: Option<(usize, spv::Inclusion)> = None;
    let mut stop = Stop::AllConfirmed;
    for (i, a) in bundle.anchors.iter().enumerate() {
        let Some(proof) = &a.proof else {
            stop = Stop::Pending {
                index: i,
                confirmations: 0,
            };
            break;
        };
        match spv::verify_decoded(chain, proof, &a.tx, need) {
            Ok(inc) => confirmed = Some((i, inc)),
            Err(SpvError::TooFewConfirmations { have, .. }) => {
                stop = Stop::Pending {
                    index: i,
                    confirmations: have,
                };
                break;
            }
            Err(SpvError::UnknownBlock(_) | SpvError::NotInBestChain(_)) => {
                stop = Stop::Reorged { index: i };
                break;
            }
            Err(e) => {
                let position = state.establishment[i].position;
                return done(Verdict::Invalid {
                    position,
                    kind: bundle.log.events()[position].event().kind_name(),
                    reason: AnchorFault::Proof(e).to_string(),
                });
            }
        }
    }
    // A later establishment event in the log without an anchor yet is pending too.
    if matches!(stop, Stop::AllConfirmed) && bundle.anchors.len() < state.establishment.len() {
        stop = Stop::Pending {
            index: bundle.anchors.len(),
            confirmations: 0,
        };
    }
    let trusted = confirmed.as_ref().map(|(i, _)| *i as u32);
    if let Some((i, inc)) = &confirmed {
        let seal = bundle.anchors[*i].seal_outpoint();
        if !seal_unspent(&seal)? {
            // Spent in a block, and not by an anchor this bundle proves.
            return done(Verdict::Stale {
                rotation_index: *i as u32,
                seal: seal.to_string(),
            });
        }
        if let Stop::AllConfirmed = stop {
            let tip = chain.tip();
            return done(Verdict::Current {
                rotation_index: *i as u32,
                seal: seal.to_string(),
                anchor_height: inc.height,
                confirmations: inc.confirmations,
                tip_height: tip.height,
                tip_hash: tip.hash.to_string(),
            });
        }
    }
    done(match stop {
        Stop::Pending {
            index,
            confirmations,
        } => Verdict::Pending {
            rotation_index: trusted,
            pending_index: index as u32,
            confirmations,
            needed: need,
        },
        Stop::Reorged { index } => Verdict::Reorged {
            rotation_index: trusted,
            left_index: index as u32,
        },
        Stop::AllConfirmed => unreachable!("a confirmed anchor returned above"),
    })
}

/// Checks every anchor against its event without the chain: seal output,
/// attestation or spend of the previous seal, and that the proof (if any)
/// proves the transaction. On failure, the failing event's log position and why.
fn check_structure<C: CanVerify>(
    secp: &Secp256k1<C>,
    state: &LogState,
    anchors: &[Anchor],
) -> Result<(), (usize, AnchorFault)> {
    let events = &state.establishment;
    if anchors.len() > events.len() {
        return Err((
            events[events.len() - 1].position,
            AnchorFault::TooManyAnchors {
                anchors: anchors.len(),
                events: events.len(),
            },
        ));
    }
    let mut seals: Vec<Seal> = Vec::with_capacity(anchors.len());
    for (i, a) in anchors.iter().enumerate() {
        let e = &events[i];
        let fail = |fault| (e.position, fault);
        let seal =
            Seal::from_leaf_hash(secp, e.digest, a.next_leaf).map_err(|err| fail(err.into()))?;
        if !holds_seal(&a.tx, &seal.script_pubkey()) {
            return Err(fail(AnchorFault::NotTheSeal));
        }
        if let Some(proof) = &a.proof {
            spv::check_decoded(proof, &a.tx).map_err(|err| fail(AnchorFault::Proof(err)))?;
        }
        match (i, &a.attestation) {
            (0, None) => return Err(fail(AnchorFault::MissingAttestation)),
            (0, Some(att)) => {
                let leaf = TapLeafHash::from_script(
                    &next_key_script(&att.next_key),
                    LeafVersion::TapScript,
                );
                if next_key_digest(&att.next_key) != e.next_key_digest || leaf != a.next_leaf {
                    return Err(fail(AnchorFault::AttestationKey));
                }
                if !att.verify(secp, &state.id, &a.seal_outpoint()) {
                    return Err(fail(AnchorFault::AttestationSignature));
                }
            }
            (_, Some(_)) => return Err(fail(AnchorFault::UnexpectedAttestation)),
            (_, None) => {
                let prev = &seals[i - 1];
                let input = seal_spend_input(&a.tx, &anchors[i - 1].seal_outpoint())
                    .ok_or_else(|| fail(AnchorFault::NotSpendingPreviousSeal))?;
                let revealed = prev
                    .check_spend(secp, &input.witness)
                    .map_err(|err| fail(err.into()))?;
                if revealed != e.signing_key {
                    return Err(fail(AnchorFault::WrongSpendingKey { revealed }));
                }
            }
        }
        seals.push(seal);
    }
    Ok(())
}

/// Why a spend of the last seal cannot extend a bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FollowError {
    /// The bundle has no anchor to follow, or its log does not verify.
    #[error("the bundle has no valid anchored log to follow")]
    NothingToFollow,
    /// The transaction does not spend the last seal as its input 0.
    #[error("the transaction does not spend the last seal as its input 0")]
    NotASpend,
    /// The spend does not open the seal through its next-key leaf.
    #[error("the seal spend: {0}")]
    Seal(#[from] SealError),
    /// The bundle has no sealed event for the rotation.
    #[error("the bundle holds no sealed event for rotation {0}; a newer bundle of this identity is needed")]
    NoSealedRotation(u32),
    /// The sealed event does not open or is not the rotation.
    #[error(transparent)]
    Sealed(#[from] SealedError),
    /// The spend's output 0 is not the seal of the rotation it should anchor
    /// (someone with the seed spent the seal some other way).
    #[error("the seal was spent, but not into the seal of rotation {0}: the spending transaction anchors no event this node knows")]
    NotTheSeal(u32),
    /// The log already holds a different event at this rotation.
    #[error("the log holds another event for rotation {0} than the one sealed in the bundle")]
    Conflict(u32),
}

/// Extends `bundle` with the rotation that `spend` anchors, from the chain
/// alone: `spend` (proven by `proof`) spends the seal of the bundle's last
/// anchor; the key its witness reveals opens the sealed event of the next
/// rotation, which joins the log (unless the log has it already) with its
/// anchor. Returns the new rotation index. Check the result with
/// [`verify_bundle`]: this only assembles it.
pub fn follow_spend(
    bundle: &mut Bundle,
    spend: &Transaction,
    proof: Option<MerkleBlock>,
) -> Result<u32, FollowError> {
    let state = bundle
        .log
        .verify()
        .map_err(|_| FollowError::NothingToFollow)?;
    let last = bundle.anchors.last().ok_or(FollowError::NothingToFollow)?;
    let j = bundle.anchors.len() - 1;
    let event = state
        .establishment
        .get(j)
        .ok_or(FollowError::NothingToFollow)?;
    let secp = Secp256k1::verification_only();
    let seal = Seal::from_leaf_hash(&secp, event.digest, last.next_leaf)?;
    let input = seal_spend_input(spend, &last.seal_outpoint()).ok_or(FollowError::NotASpend)?;
    let key = seal.check_spend(&secp, &input.witness)?;
    let index = j as u32 + 1;
    let sealed = bundle
        .sealed
        .iter()
        .find(|s| s.index == index)
        .ok_or(FollowError::NoSealedRotation(index))?;
    let (rotation, next_leaf) = open_rotation(&state.id, sealed, &key)?;
    let new_seal = Seal::from_leaf_hash(&secp, rotation.digest(), next_leaf)?;
    if !holds_seal(spend, &new_seal.script_pubkey()) {
        return Err(FollowError::NotTheSeal(index));
    }
    match state.establishment.get(index as usize) {
        Some(known) if known.digest != rotation.digest() => {
            return Err(FollowError::Conflict(index))
        }
        Some(_) => {}
        None => bundle.log.push(rotation),
    }
    bundle.anchors.push(Anchor {
        next_leaf,
        tx: spend.clone(),
        proof,
        attestation: None,
    });
    Ok(index)
}

/// The smallest seal value: Bitcoin Core's dust limit for a taproot output.
pub const MIN_SEAL_VALUE: Amount = Amount::from_sat(330);

/// Why the owner cannot build an anchoring transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The seal cannot be built or opened.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The key is not the one the previous seal opens with.
    #[error("the key does not open the previous seal (it is not the next key of the seed's log)")]
    WrongKey,
    /// The previous anchor has no seal output.
    #[error("the previous anchoring transaction has no output {SEAL_VOUT}")]
    NoSealOutput,
    /// The fee would leave the new seal below the dust limit.
    #[error("the seal holds {have}; a fee of {fee} would leave less than {MIN_SEAL_VALUE} for the new seal")]
    SealTooSmall {
        /// What the previous seal holds.
        have: Amount,
        /// The fee asked for.
        fee: Amount,
    },
    /// Signature hashing failed.
    #[error("cannot compute the signature hash: {0}")]
    Sighash(String),
}

/// The seal of an establishment event of the seed's own log (the owner's
/// view): its next key is the signing key of the following rotation.
pub fn own_seal<C: CanVerify>(
    secp: &Secp256k1<C>,
    event: &EstablishmentRef,
    next_key: &XOnlyPublicKey,
) -> Result<Seal, SealError> {
    Seal::new(secp, event.digest, next_key)
}

/// Builds and signs the transaction that anchors a rotation (the owner's
/// view): input 0 spends the previous seal through its next-key leaf, signed
/// with `key` (the rotation's signing key, which only the seed gives);
/// output 0 is the new seal and holds the previous seal's value less `fee`.
/// One input and one output: 137 vB. RBF is signalled. (A rotation that
/// tops the seal up from a wallet adds inputs and a change output after
/// these, and signs input 0 with [`sign_seal_spend`].)
pub fn rotation_tx(
    prev: &Anchor,
    prev_seal: &Seal,
    key: &SigningKey,
    new_seal: &Seal,
    fee: Amount,
) -> Result<Transaction, BuildError> {
    let prev_out = prev
        .tx
        .output
        .get(SEAL_VOUT as usize)
        .ok_or(BuildError::NoSealOutput)?
        .clone();
    let value = prev_out
        .value
        .checked_sub(fee)
        .filter(|v| *v >= MIN_SEAL_VALUE)
        .ok_or(BuildError::SealTooSmall {
            have: prev_out.value,
            fee,
        })?;
    let mut tx = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![bitcoin::TxIn {
            previous_output: prev.seal_outpoint(),
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: bitcoin::Witness::new(),
        }],
        output: vec![bitcoin::TxOut {
            value,
            script_pubkey: new_seal.script_pubkey(),
        }],
    };
    tx.input[0].witness = sign_seal_spend(&tx, &[prev_out], prev_seal, key)?;
    Ok(tx)
}

/// The witness of input 0 of `tx`, which spends `prev_seal` through its
/// next-key leaf: a BIP341 script-path signature by `key` (SIGHASH_DEFAULT,
/// committing to every input and output), the leaf script and the control
/// block. `prevouts` are the outputs every input of `tx` spends, in order.
pub fn sign_seal_spend(
    tx: &Transaction,
    prevouts: &[bitcoin::TxOut],
    prev_seal: &Seal,
    key: &SigningKey,
) -> Result<bitcoin::Witness, BuildError> {
    let secp = Secp256k1::new();
    let control = prev_seal
        .control_block(&secp, &key.public())
        .map_err(|_| BuildError::WrongKey)?;
    let script = next_key_script(&key.public());
    let leaf = TapLeafHash::from_script(&script, LeafVersion::TapScript);
    let sighash = bitcoin::sighash::SighashCache::new(tx)
        .taproot_script_spend_signature_hash(
            0,
            &bitcoin::sighash::Prevouts::All(prevouts),
            leaf,
            bitcoin::TapSighashType::Default,
        )
        .map_err(|e| BuildError::Sighash(e.to_string()))?;
    let msg = Message::from_digest(sighash.to_byte_array());
    let sig = secp.sign_schnorr_no_aux_rand(&msg, key.keypair());
    let mut w = bitcoin::Witness::new();
    w.push(sig.as_ref());
    w.push(script.as_bytes());
    w.push(control.serialize());
    Ok(w)
}

#[cfg(test)]
#[path = "anchor_tests.rs"]
mod tests;
