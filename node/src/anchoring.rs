//! Anchoring in Bitcoin: the node's own identity (build, store and broadcast
//! the inception seal; follow it into a block and keep its proof), and the
//! check of any identity bundle against the node's validated header chain and
//! chain source. The protocol logic (seals, anchors, verdicts) is in
//! `cairn_chain_anchor::anchor`; this module does the I/O around it.

use bitcoin::secp256k1::Secp256k1;
use bitcoin::Amount;
use cairn_chain_anchor::anchor::own_seal;
use cairn_chain_anchor::source::{ChainSource, SourceError};
use cairn_chain_anchor::spv::{self, SpvError};
use cairn_chain_anchor::{
    verify_bundle, Anchor, Attestation, Bundle, ChainNetwork, ChainParams, HeaderChain, SealError,
    Verification,
};
use cairn_wallet::keys::KeyError;
use cairn_wallet::{IdentityId, MasterKey};

use crate::funds::{Funds, FundsError};
use crate::identity::OwnIdentity;
use crate::store::{Store, StoreError};

/// What an inception seal holds unless the user says otherwise: enough to
/// pay for several one-input, one-output rotations (about 130 vB each) at
/// ordinary fee rates.
pub const DEFAULT_SEAL_VALUE: Amount = Amount::from_sat(10_000);

/// Failures of anchoring and bundle checks.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    /// The identity already has an inception anchor.
    #[error("identity {0} already has an inception seal ({1}); nothing to create")]
    AlreadyAnchored(IdentityId, bitcoin::OutPoint),
    /// The seal value is below the dust limit.
    #[error("a seal must hold at least {min}, not {value}")]
    SealValue {
        /// Asked for.
        value: Amount,
        /// The minimum.
        min: Amount,
    },
    /// The chain source failed.
    #[error("chain source: {0}")]
    Source(#[from] SourceError),
    /// The chain source gave a proof that does not check.
    #[error("the chain source gave a bad proof for {txid}: {reason}")]
    BadProof {
        /// The transaction.
        txid: bitcoin::Txid,
        /// Why it does not check.
        reason: SpvError,
    },
    /// The funding wallet failed.
    #[error(transparent)]
    Funds(#[from] FundsError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Key derivation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The seal cannot be built.
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// The identity bundle of the node's own identity on `network`.
pub fn own_bundle(
    store: &Store,
    network: ChainNetwork,
    own: &OwnIdentity,
) -> Result<Bundle, StoreError> {
    Ok(Bundle {
        genesis: ChainParams::new(network).genesis_hash(),
        log: own.log.clone(),
        anchors: store.anchors(network, &own.state.id)?,
    })
}

/// Builds the inception anchor of the node's identity: a transaction from
/// the funding wallet paying `value` to the inception seal (output 0), and
/// the next key's attestation of that seal. Nothing is stored or sent.
pub fn build_inception(
    funds: &mut Funds<'_>,
    master: &MasterKey,
    own: &OwnIdentity,
    value: Amount,
    fee_rate: bitcoin::FeeRate,
) -> Result<Anchor, AnchorError> {
    if value < cairn_chain_anchor::anchor::MIN_SEAL_VALUE {
        return Err(AnchorError::SealValue {
            value,
            min: cairn_chain_anchor::anchor::MIN_SEAL_VALUE,
        });
    }
    let secp = Secp256k1::verification_only();
    let next = master.signing_key(1)?;
    let seal = own_seal(&secp, &own.state.establishment[0], &next.public())?;
    let tx = funds.build_seal_funding(&seal.script_pubkey(), value, fee_rate, master)?;
    let outpoint = bitcoin::OutPoint::new(tx.compute_txid(), cairn_chain_anchor::anchor::SEAL_VOUT);
    let attestation = Attestation::sign(&next, &own.state.id, &outpoint);
    Ok(Anchor {
        next_leaf: seal.next_leaf,
        tx,
        proof: None,
        attestation: Some(attestation),
    })
}

/// Stores the inception anchor, then broadcasts it through the funding
/// wallet (stored first: a broadcast seal is never forgotten, even if the
/// node stops right after).
pub fn publish_inception(
    store: &Store,
    funds: &mut Funds<'_>,
    source: &dyn ChainSource,
    own: &OwnIdentity,
    anchor: &Anchor,
    now: u64,
) -> Result<bitcoin::Txid, AnchorError> {
    let network = funds.network();
    if let Some(existing) = store.anchors(network, &own.state.id)?.first() {
        if existing.txid() != anchor.txid() {
            return Err(AnchorError::AlreadyAnchored(
                own.state.id,
                existing.seal_outpoint(),
            ));
        }
    }
    store.put_anchor(network, &own.state.id, 0, anchor)?;
    Ok(funds.broadcast(source, anchor.tx.clone(), now)?)
}

/// Where an anchor stands in the validated chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Not in a block of the best chain (as far as the source and the
    /// header chain know).
    Unconfirmed,
    /// In block `height` of the best chain, with `confirmations`.
    Confirmed {
        /// The block's height.
        height: u32,
        /// Confirmations at the tip.
        confirmations: u32,
    },
}

/// Brings `anchor`'s proof up to date: keeps it if its block is in the best
/// chain; otherwise asks `source` for the block that holds the transaction
/// now and checks that proof against `chain` before taking it. A proof whose
/// block left the best chain is kept when the source has no newer one, so
/// that a verifier still sees the reorg. Returns whether the proof changed.
pub fn refresh_proof(
    anchor: &mut Anchor,
    chain: &HeaderChain,
    source: &dyn ChainSource,
) -> Result<(bool, Standing), AnchorError> {
    if let Some(standing) = standing_of(anchor, chain) {
        return Ok((false, standing));
    }
    let txid = anchor.txid();
    let Some(proof) = source.inclusion_proof(&txid, None)? else {
        return Ok((false, Standing::Unconfirmed));
    };
    match spv::verify_decoded(chain, &proof, &anchor.tx, 1) {
        Ok(inc) => {
            anchor.proof = Some(proof);
            Ok((
                true,
                Standing::Confirmed {
                    height: inc.height,
                    confirmations: inc.confirmations,
                },
            ))
        }
        // The source is ahead of the node's header chain (or on another
        // branch): not confirmed as far as this node can tell yet.
        Err(SpvError::UnknownBlock(_) | SpvError::NotInBestChain(_)) => {
            Ok((false, Standing::Unconfirmed))
        }
        Err(reason) => Err(AnchorError::BadProof { txid, reason }),
    }
}

/// The standing of `anchor` by its current proof, if its block is in the best chain.
fn standing_of(anchor: &Anchor, chain: &HeaderChain) -> Option<Standing> {
    let proof = anchor.proof.as_ref()?;
    let inc = spv::verify_decoded(chain, proof, &anchor.tx, 1).ok()?;
    Some(Standing::Confirmed {
        height: inc.height,
        confirmations: inc.confirmations,
    })
}

/// Refreshes every anchor of `id` on `network` in the store (see
/// [`refresh_proof`]) and returns them with the standing of the last one.
pub fn refresh_stored(
    store: &Store,
    network: ChainNetwork,
    id: &IdentityId,
    chain: &HeaderChain,
    source: &dyn ChainSource,
) -> Result<(Vec<Anchor>, Option<Standing>), AnchorError> {
    let mut anchors = store.anchors(network, id)?;
    let mut last = None;
    for (i, a) in anchors.iter_mut().enumerate() {
        let (changed, standing) = refresh_proof(a, chain, source)?;
        if changed {
            store.put_anchor(network, id, i as u32, a)?;
        }
        last = Some(standing);
    }
    Ok((anchors, last))
}

/// Checks `bundle` against `chain` (synced by the caller): refreshes the
/// proofs of its anchors from `source`, then gives the verdict, asking
/// `source` whether the last confirmed seal is still unspent (in blocks;
/// the mempool does not count).
pub fn check_bundle(
    bundle: &mut Bundle,
    chain: &HeaderChain,
    source: &dyn ChainSource,
    confirmations: u32,
) -> Result<(Verification, bool), AnchorError> {
    let mut changed = false;
    for a in bundle.anchors.iter_mut() {
        changed |= refresh_proof(a, chain, source)?.0;
    }
    let v = verify_bundle(bundle, chain, confirmations, &mut |op| {
        source.unspent(op, false).map(|u| u.is_some())
    })?;
    Ok((v, changed))
}
