//! Single-use seals, sans I/O: the taproot output that anchors one
//! establishment event of a key event log in Bitcoin, and the checks a
//! verifier runs on it. The construction is specified in `docs/protocol.md`
//! (section "Seals"); `testdata/seal_vectors.txt` holds vectors.
//!
//! ```text
//! t   = tagged_hash("cairn/seal/nums/v1", event digest)
//! P   = H + t·G                 H: BIP341's NUMS point (no known discrete log)
//! A   = OP_RETURN <event digest>             commits to the event; never runs
//! B   = <next signing key> OP_CHECKSIG       BIP342; the only spending path
//! out = P2TR(P, TapBranch(TapLeaf(A), TapLeaf(B)))   both leaves at depth 1
//! ```
//!
//! Nobody knows the discrete logarithm of `P`, so the key path cannot be
//! spent; anyone holding the event recomputes `t` and checks `P`, while a
//! chain observer without the log sees an ordinary taproot output. Leaf `B`
//! hides the next key until the seal is spent: a verifier of the current
//! state needs only `B`'s leaf hash (carried in the proof), and the spending
//! witness of a rotation reveals `B` and so the key, which must match the
//! event's pre-rotation commitment.

use bitcoin::key::{Secp256k1, TweakedPublicKey, XOnlyPublicKey};
use bitcoin::opcodes::all::{OP_CHECKSIG, OP_RETURN};
use bitcoin::script::{Builder, Script, ScriptBuf};
use bitcoin::secp256k1::{PublicKey, Scalar, Verification};
use bitcoin::taproot::{ControlBlock, LeafVersion, TapLeafHash, TapNodeHash, TaprootBuilder};
use bitcoin::Witness;
use cairn_wallet::hash::tagged_hash;
use cairn_wallet::kel::Digest;

/// Tag of the hash that tweaks the NUMS point into a seal's internal key.
pub const NUMS_TWEAK_TAG: &str = "cairn/seal/nums/v1";

/// BIP341's NUMS point `H` (x coordinate): `lift_x(SHA256(G uncompressed))`.
pub const NUMS_H: [u8; 32] = [
    0x50, 0x92, 0x9b, 0x74, 0xc1, 0xa0, 0x49, 0x54, 0xb7, 0x8b, 0x4b, 0x60, 0x35, 0xe9, 0x7a, 0x5e,
    0x07, 0x8a, 0x5a, 0x0f, 0x28, 0xec, 0x96, 0xd5, 0x47, 0xbf, 0xee, 0x9a, 0xce, 0x80, 0x3a, 0xc0,
];

/// Why a seal cannot be built or a spend of it does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The tweak of the NUMS point is not a valid scalar (probability about 2^-128).
    #[error("the seal tweak for this event is out of range")]
    TweakOutOfRange,
    /// The spending witness is not `[signature, leaf script, control block]`.
    #[error("the spending witness has {0} items, a seal spend has 3")]
    WitnessShape(usize),
    /// The revealed leaf is not `<32-byte key> OP_CHECKSIG`.
    #[error("the revealed leaf is not a next-key leaf")]
    NotNextKeyLeaf,
    /// The revealed leaf is not the one this seal committed to.
    #[error("the revealed leaf is not the seal's next-key leaf")]
    WrongLeaf,
    /// The control block does not parse or does not lead to this seal's output.
    #[error("the control block does not open this seal")]
    BadControlBlock,
}

/// The commitment leaf: `OP_RETURN <event digest>`.
pub fn commit_script(event: &Digest) -> ScriptBuf {
    Builder::new()
        .push_opcode(OP_RETURN)
        .push_slice(event.0)
        .into_script()
}

/// The spending leaf: `<next key> OP_CHECKSIG`.
pub fn next_key_script(next_key: &XOnlyPublicKey) -> ScriptBuf {
    Builder::new()
        .push_x_only_key(next_key)
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

/// The key of a next-key leaf, if `script` is one.
pub fn next_key_of(script: &Script) -> Option<XOnlyPublicKey> {
    let b = script.as_bytes();
    if b.len() != 34 || b[0] != 32 || b[33] != OP_CHECKSIG.to_u8() {
        return None;
    }
    XOnlyPublicKey::from_slice(&b[1..33]).ok()
}

/// The seal's internal key `H + t·G` for `event`.
pub fn internal_key<C: Verification>(
    secp: &Secp256k1<C>,
    event: &Digest,
) -> Result<XOnlyPublicKey, SealError> {
    let h = XOnlyPublicKey::from_slice(&NUMS_H)
        .unwrap_or_else(|_| unreachable!("NUMS_H is a point on the curve"));
    let t = Scalar::from_be_bytes(tagged_hash(NUMS_TWEAK_TAG, &[&event.0]))
        .map_err(|_| SealError::TweakOutOfRange)?;
    let p = PublicKey::from_x_only_public_key(h, bitcoin::secp256k1::Parity::Even)
        .add_exp_tweak(secp, &t)
        .map_err(|_| SealError::TweakOutOfRange)?;
    Ok(p.x_only_public_key().0)
}

/// A seal as a verifier knows it: the event, the internal key and the
/// next-key leaf's hash, which together fix the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// The establishment event the seal anchors.
    pub event: Digest,
    /// `H + t·G`.
    pub internal_key: XOnlyPublicKey,
    /// Hash of the next-key leaf (hides the key until the seal is spent).
    pub next_leaf: TapLeafHash,
    /// The taproot output key.
    pub output_key: TweakedPublicKey,
}

impl Seal {
    /// The seal of `event` whose spending key is `next_key` (the owner's view).
    pub fn new<C: Verification>(
        secp: &Secp256k1<C>,
        event: Digest,
        next_key: &XOnlyPublicKey,
    ) -> Result<Seal, SealError> {
        let next_leaf =
            TapLeafHash::from_script(&next_key_script(next_key), LeafVersion::TapScript);
        Seal::from_leaf_hash(secp, event, next_leaf)
    }

    /// The seal of `event` from its next-key leaf hash (a verifier's view).
    pub fn from_leaf_hash<C: Verification>(
        secp: &Secp256k1<C>,
        event: Digest,
        next_leaf: TapLeafHash,
    ) -> Result<Seal, SealError> {
        let internal_key = internal_key(secp, &event)?;
        let commit = TapLeafHash::from_script(&commit_script(&event), LeafVersion::TapScript);
        let root = TapNodeHash::from_node_hashes(commit.into(), next_leaf.into());
        let (output_key, _) = bitcoin::key::TapTweak::tap_tweak(internal_key, secp, Some(root));
        Ok(Seal {
            event,
            internal_key,
            next_leaf,
            output_key,
        })
    }

    /// The output script (`OP_1 <output key>`).
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2tr_tweaked(self.output_key)
    }

    /// The control block that spends the seal through its next-key leaf
    /// (the owner's view: needs the next key).
    pub fn control_block<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        next_key: &XOnlyPublicKey,
    ) -> Result<ControlBlock, SealError> {
        let spend = next_key_script(next_key);
        let info = TaprootBuilder::new()
            .add_leaf(1, commit_script(&self.event))
            .and_then(|b| b.add_leaf(1, spend.clone()))
            .map_err(|_| SealError::BadControlBlock)?
            .finalize(secp, self.internal_key)
            .map_err(|_| SealError::BadControlBlock)?;
        if info.output_key() != self.output_key {
            return Err(SealError::WrongLeaf);
        }
        info.control_block(&(spend, LeafVersion::TapScript))
            .ok_or(SealError::BadControlBlock)
    }

    /// Checks that `witness` spends this seal through its next-key leaf and
    /// returns the revealed next key. (The signature itself is consensus's to
    /// check: the spending transaction is in a block with proof-of-work.)
    pub fn check_spend<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        witness: &Witness,
    ) -> Result<XOnlyPublicKey, SealError> {
        if witness.len() != 3 {
            return Err(SealError::WitnessShape(witness.len()));
        }
        let script = Script::from_bytes(&witness[1]);
        let key = next_key_of(script).ok_or(SealError::NotNextKeyLeaf)?;
        if TapLeafHash::from_script(script, LeafVersion::TapScript) != self.next_leaf {
            return Err(SealError::WrongLeaf);
        }
        let control = ControlBlock::decode(&witness[2]).map_err(|_| SealError::BadControlBlock)?;
        if control.internal_key != self.internal_key
            || !control.verify_taproot_commitment(
                secp,
                self.output_key.to_x_only_public_key(),
                script,
            )
        {
            return Err(SealError::BadControlBlock);
        }
        Ok(key)
    }
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
