//! Sealed rotations: how a contact follows a rotation from the chain alone,
//! with no extra bytes on chain.
//!
//! A rotation's seal spend reveals its signing key `k` (the key of the
//! spending leaf), and nothing else: the rotation event (its next-key
//! commitment, messaging key and signature) is not on chain. Establishment
//! events are deterministic from the seed, so the owner can make them ahead of
//! time. A bundle therefore carries the next few rotation events, each
//! encrypted under a key derived from that rotation's own signing key:
//!
//! ```text
//! key        = tagged_hash("cairn/anchor/sealed-rotation/v1", id ‖ k)
//! plaintext  = next_leaf[32] ‖ signed rotation event
//! ciphertext = ChaCha20-Poly1305(key, nonce = 0¹², aad = id ‖ index (u32 BE), plaintext)
//! ```
//!
//! Before the rotation, `k` is known only by its hash (the previous event's
//! pre-rotation commitment), so the event stays as hidden as pre-rotation
//! requires. Once the seal spend puts `k` on chain, anyone holding the bundle
//! opens the event, checks its signature and the new seal, and extends the
//! log. Each key is used for one message, so the fixed nonce is safe.

use bitcoin::hashes::Hash as _;
use bitcoin::key::XOnlyPublicKey;
use bitcoin::taproot::TapLeafHash;
use cairn_wallet::hash::tagged_hash;
use cairn_wallet::kel::{Event, SignedEvent, MAX_EVENT_LEN};
use cairn_wallet::IdentityId;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use zeroize::Zeroizing;

/// Tag of the key that seals a rotation event.
pub const SEALED_ROTATION_TAG: &str = "cairn/anchor/sealed-rotation/v1";
/// How many future rotations a bundle carries.
pub const FUTURE_ROTATIONS: u32 = 4;
/// Largest ciphertext: leaf hash, event, tag.
pub const MAX_SEALED_LEN: usize = 32 + MAX_EVENT_LEN + 16;

/// A future rotation event, encrypted to its own signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRotation {
    /// The rotation index.
    pub index: u32,
    /// The ciphertext.
    pub ciphertext: Vec<u8>,
}

/// Why a sealed rotation does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealedError {
    /// Wrong key, or the ciphertext was changed.
    #[error("the sealed rotation {0} does not open with the key revealed on chain")]
    DoesNotOpen(u32),
    /// It opens to something that is not rotation `index` signed by the revealed key.
    #[error("the sealed rotation {index} holds {found}, not that rotation signed by its key")]
    NotTheRotation {
        /// The index it was filed under.
        index: u32,
        /// What it held.
        found: String,
    },
}

fn cipher(id: &IdentityId, key: &XOnlyPublicKey) -> ChaCha20Poly1305 {
    let k = Zeroizing::new(tagged_hash(SEALED_ROTATION_TAG, &[&id.0, &key.serialize()]));
    ChaCha20Poly1305::new(Key::from_slice(&k[..]))
}

fn aad(id: &IdentityId, index: u32) -> [u8; 36] {
    let mut a = [0u8; 36];
    a[..32].copy_from_slice(&id.0);
    a[32..].copy_from_slice(&index.to_be_bytes());
    a
}

/// Seals rotation `event` of identity `id`, with the hash of its seal's
/// next-key leaf. `None` if `event` is not a rotation.
pub fn seal_rotation(
    id: &IdentityId,
    event: &SignedEvent,
    next_leaf: &TapLeafHash,
) -> Option<SealedRotation> {
    let Event::Rotation(r) = event.event() else {
        return None;
    };
    let mut plain = Zeroizing::new(next_leaf.to_byte_array().to_vec());
    plain.extend_from_slice(&event.encode());
    let ciphertext = cipher(id, &r.signing_key)
        .encrypt(
            Nonce::from_slice(&[0u8; 12]),
            Payload {
                msg: &plain,
                aad: &aad(id, r.index),
            },
        )
        .ok()?;
    Some(SealedRotation {
        index: r.index,
        ciphertext,
    })
}

/// Opens `sealed` with `key`, the signing key a seal spend revealed; checks
/// that it holds rotation `sealed.index` signed by that key.
pub fn open_rotation(
    id: &IdentityId,
    sealed: &SealedRotation,
    key: &XOnlyPublicKey,
) -> Result<(SignedEvent, TapLeafHash), SealedError> {
    let plain = Zeroizing::new(
        cipher(id, key)
            .decrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad(id, sealed.index),
                },
            )
            .map_err(|_| SealedError::DoesNotOpen(sealed.index))?,
    );
    let not_it = |found: String| SealedError::NotTheRotation {
        index: sealed.index,
        found,
    };
    if plain.len() < 32 {
        return Err(not_it("too few bytes".into()));
    }
    let leaf = TapLeafHash::from_byte_array(
        plain[..32]
            .try_into()
            .map_err(|_| not_it("too few bytes".into()))?,
    );
    let event = SignedEvent::decode(&plain[32..]).map_err(|e| not_it(e.to_string()))?;
    match event.event() {
        Event::Rotation(r)
            if r.index == sealed.index && r.signing_key == *key && event.verify_signature(key) =>
        {
            Ok((event, leaf))
        }
        other => Err(not_it(format!("a {} event", other.kind_name()))),
    }
}
