//! Anchoring in Bitcoin: the node's own identity (build, store and broadcast
//! the inception seal; follow it into a block and keep its proof), and the
//! check of any identity bundle against the node's validated header chain and
//! chain source. The protocol logic (seals, anchors, verdicts) is in
//! `cairn_chain_anchor::anchor`; this module does the I/O around it.

use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Amount, Transaction};
use cairn_chain_anchor::anchor::{
    holds_seal, own_seal, rotation_tx, seal_spend_input, sign_seal_spend, BuildError,
};
use cairn_chain_anchor::sealed::{seal_rotation, SealedRotation, FUTURE_ROTATIONS};
use cairn_chain_anchor::source::{ChainSource, SourceError};
use cairn_chain_anchor::spv::{self, SpvError};
use cairn_chain_anchor::Seal;
use cairn_chain_anchor::{
    follow_spend, verify_bundle, Anchor, Attestation, Bundle, ChainNetwork, ChainParams,
    HeaderChain, SealError, Verification,
};
use cairn_wallet::kel::{establishment_chain, establishment_event};
use cairn_wallet::keys::KeyError;
use cairn_wallet::{IdentityId, KeyEventLog, MasterKey};

use crate::funds::{check_block, Funds, FundsError};
use crate::identity::OwnIdentity;
use crate::store::{Store, StoreError};

/// What an inception seal holds unless the user says otherwise: enough to
/// pay for several one-input, one-output rotations (137 vB each) at
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
    /// The rotation transaction cannot be built.
    #[error(transparent)]
    Build(#[from] cairn_chain_anchor::anchor::BuildError),
    /// The log cannot be extended.
    #[error(transparent)]
    Kel(#[from] cairn_wallet::kel::KelError),
    /// Rotating an identity that is not anchored.
    #[error("identity {0} is not anchored yet; run `cairn anchor` first")]
    NotAnchored(IdentityId),
    /// A rotation is already on its way.
    #[error("a rotation of {0} is already broadcast and not confirmed; `cairn rotate` again waits for it")]
    RotationPending(IdentityId),
    /// The fee overflows.
    #[error("the fee rate is too high")]
    FeeOverflow,
    /// The log made from the seed does not verify (a bug, or a corrupt store).
    #[error(transparent)]
    Log(#[from] cairn_wallet::kel::LogError),
}

/// The identity bundle of the node's own identity on `network`, with the
/// sealed events of the rotations after its current one.
pub fn own_bundle(
    store: &Store,
    network: ChainNetwork,
    own: &OwnIdentity,
) -> Result<Bundle, StoreError> {
    let current = own.state.rotation_index();
    Ok(Bundle {
        genesis: ChainParams::new(network).genesis_hash(),
        log: own.log.clone(),
        anchors: store.anchors(network, &own.state.id)?,
        sealed: store
            .sealed_rotations(&own.state.id)?
            .into_iter()
            .filter(|s| s.index > current)
            .collect(),
    })
}

/// The sealed events of rotations `after + 1 ..= after + FUTURE_ROTATIONS`
/// of the seed's log, each with its seal's next-key leaf.
pub fn future_rotations(
    master: &MasterKey,
    id: &IdentityId,
    after: u32,
) -> Result<Vec<SealedRotation>, AnchorError> {
    let last = after.saturating_add(FUTURE_ROTATIONS);
    let events = establishment_chain(master, last)?;
    let secp = Secp256k1::verification_only();
    let mut out = Vec::with_capacity(FUTURE_ROTATIONS as usize);
    for index in after + 1..=last {
        let event = &events[index as usize];
        let next = master.signing_key(index + 1)?;
        let seal = Seal::new(&secp, event.digest(), &next.public())?;
        if let Some(s) = seal_rotation(id, event, &seal.next_leaf) {
            out.push(s);
        }
    }
    Ok(out)
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

/// Stores the inception anchor with the sealed events of the next
/// rotations, records it in the funding wallet, then broadcasts it (stored
/// and recorded first: a broadcast seal is never forgotten, and its coins
/// are never spent twice, even if the node stops right after).
pub fn publish_inception(
    store: &Store,
    funds: &mut Funds<'_>,
    source: &dyn ChainSource,
    own: &OwnIdentity,
    anchor: &Anchor,
    sealed: &[SealedRotation],
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
    store.put_own_bundle(
        network,
        &own.state.id,
        &own.log,
        std::slice::from_ref(anchor),
        sealed,
    )?;
    funds.record(anchor.tx.clone(), now)?;
    Ok(source.broadcast(&anchor.tx)?)
}

/// A rotation of the node's own identity, built and signed, not yet stored or sent.
#[derive(Debug, Clone)]
pub struct RotationPlan {
    /// The new rotation index.
    pub index: u32,
    /// The log with the rotation event appended.
    pub log: KeyEventLog,
    /// Every anchor, the new one last (unconfirmed).
    pub anchors: Vec<Anchor>,
    /// The sealed events of the rotations after the new one.
    pub sealed: Vec<SealedRotation>,
    /// The fee the rotation pays.
    pub fee: Amount,
    /// What the new seal holds.
    pub seal_value: Amount,
    /// Whether the funding wallet topped the seal up (and paid the fee).
    pub topped_up: bool,
}

/// What a rotation spends and creates.
struct RotationParts {
    index: u32,
    event: cairn_wallet::SignedEvent,
    key: cairn_wallet::keys::SigningKey,
    prev_seal: Seal,
    new_seal: Seal,
}

impl RotationParts {
    /// The plain rotation of `prev`'s seal with no fee: its size is what a
    /// fee is reckoned on.
    fn probe(&self, prev: &Anchor) -> Result<Transaction, BuildError> {
        rotation_tx(
            prev,
            &self.prev_seal,
            &self.key,
            &self.new_seal,
            Amount::ZERO,
        )
    }
}

fn rotation_parts(
    master: &MasterKey,
    own: &OwnIdentity,
    anchors: &[Anchor],
) -> Result<RotationParts, AnchorError> {
    let state = &own.state;
    let current = state.current();
    if anchors.is_empty() {
        return Err(AnchorError::NotAnchored(state.id));
    }
    if anchors.len() != state.establishment.len() {
        return Err(AnchorError::RotationPending(state.id));
    }
    let index = current.index + 1;
    let event = establishment_event(master, index, Some(current.digest))?;
    let key = master.signing_key(index)?;
    let next = master.signing_key(index + 1)?;
    let secp = Secp256k1::verification_only();
    let prev_seal = own_seal(&secp, current, &key.public())?;
    let new_seal = Seal::new(&secp, event.digest(), &next.public())?;
    Ok(RotationParts {
        index,
        event,
        key,
        prev_seal,
        new_seal,
    })
}

fn rotation_plan(
    master: &MasterKey,
    own: &OwnIdentity,
    mut anchors: Vec<Anchor>,
    parts: RotationParts,
    tx: Transaction,
    fee: Amount,
) -> Result<RotationPlan, AnchorError> {
    let seal_value = tx.output[cairn_chain_anchor::anchor::SEAL_VOUT as usize].value;
    let topped_up = tx.input.len() > 1;
    let mut log = own.log.clone();
    log.push(parts.event);
    anchors.push(Anchor {
        next_leaf: parts.new_seal.next_leaf,
        tx,
        proof: None,
        attestation: None,
    });
    Ok(RotationPlan {
        index: parts.index,
        log,
        anchors,
        sealed: future_rotations(master, &own.state.id, parts.index)?,
        fee,
        seal_value,
        topped_up,
    })
}

/// Builds the next rotation of the node's identity: the rotation event, the
/// transaction that spends the current seal with the new signing key (which
/// only the seed gives) and creates the new seal, paying the fee from the
/// seal's value, and the sealed events that let contacts follow later
/// rotations from the chain.
pub fn build_rotation(
    master: &MasterKey,
    own: &OwnIdentity,
    anchors: Vec<Anchor>,
    fee_rate: bitcoin::FeeRate,
) -> Result<RotationPlan, AnchorError> {
    let parts = rotation_parts(master, own, &anchors)?;
    let prev = &anchors[anchors.len() - 1];
    // The fee depends on the size, which does not depend on the fee: build
    // once to measure, then with the fee for that size.
    let probe = parts.probe(prev)?;
    let fee = fee_rate
        .fee_vb(probe.vsize() as u64)
        .ok_or(AnchorError::FeeOverflow)?;
    let tx = rotation_tx(prev, &parts.prev_seal, &parts.key, &parts.new_seal, fee)?;
    rotation_plan(master, own, anchors, parts, tx, fee)
}

/// Whether a rotation whose new seal would hold `value` (`None`: the seal
/// cannot pay the fee) should top the seal up from the funding wallet:
/// when less than half of [`DEFAULT_SEAL_VALUE`] would be left, so that
/// the seal can still pay for a rotation when fees are high.
pub fn wants_top_up(value: Option<Amount>) -> bool {
    value.is_none_or(|v| v < DEFAULT_SEAL_VALUE / 2)
}

/// Like [`build_rotation`], with the funding wallet's coins as further
/// inputs: the new seal holds `value` (and a change output follows it), the
/// wallet pays the fee. Input 0 and output 0 are where a rotation's are, so
/// verifiers see no difference.
pub fn build_topped_rotation(
    funds: &mut Funds<'_>,
    master: &MasterKey,
    own: &OwnIdentity,
    anchors: Vec<Anchor>,
    fee_rate: bitcoin::FeeRate,
    value: Amount,
) -> Result<RotationPlan, AnchorError> {
    let parts = rotation_parts(master, own, &anchors)?;
    let prev = &anchors[anchors.len() - 1];
    let prev_out = prev
        .tx
        .output
        .get(cairn_chain_anchor::anchor::SEAL_VOUT as usize)
        .ok_or(BuildError::NoSealOutput)?
        .clone();
    // The seal spend's witness has the same size whatever it signs.
    let probe = parts.probe(prev)?;
    let witness = bitcoin::Weight::from_wu(probe.input[0].witness.size() as u64);
    let (prev_seal, key) = (&parts.prev_seal, &parts.key);
    let (tx, fee) = funds.build_seal_rotation(
        (prev.seal_outpoint(), prev_out),
        witness,
        &parts.new_seal.script_pubkey(),
        value,
        fee_rate,
        master,
        |tx, prevouts| sign_seal_spend(tx, prevouts, prev_seal, key).map_err(|e| e.to_string()),
    )?;
    rotation_plan(master, own, anchors, parts, tx, fee)
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

impl Standing {
    /// Confirmations at the tip (0 when unconfirmed).
    pub fn confirmations(&self) -> u32 {
        match self {
            Standing::Unconfirmed => 0,
            Standing::Confirmed { confirmations, .. } => *confirmations,
        }
    }
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

/// What [`check_bundle`] found.
#[derive(Debug)]
pub struct Checked {
    /// The verdict and the state.
    pub verification: Verification,
    /// Whether the bundle changed (new proofs, followed rotations): store it.
    pub changed: bool,
    /// Rotations followed from the chain, in order.
    pub followed: Vec<u32>,
    /// Why the spend of the last seal could not be followed, if it could not.
    pub follow_error: Option<String>,
}

/// Checks `bundle` against `chain` (synced by the caller): refreshes the
/// proofs of its anchors from `source`; while the last seal is spent in a
/// block, finds the spending transaction (scanning the blocks after the
/// seal's, each checked against its validated header) and follows the
/// rotation it anchors; then gives the verdict, asking `source` whether the
/// last confirmed seal is unspent (in blocks; the mempool does not count).
pub fn check_bundle(
    bundle: &mut Bundle,
    chain: &HeaderChain,
    source: &dyn ChainSource,
    confirmations: u32,
) -> Result<Checked, AnchorError> {
    let mut changed = false;
    for a in bundle.anchors.iter_mut() {
        changed |= refresh_proof(a, chain, source)?.0;
    }
    let mut followed = Vec::new();
    let mut follow_error = None;
    while let Some(last) = bundle.anchors.last() {
        let Some(Standing::Confirmed { height, .. }) = standing_of(last, chain) else {
            break;
        };
        let seal = last.seal_outpoint();
        if source.unspent(&seal, false)?.is_some() {
            break;
        }
        // From the seal's own block: a rotation may be mined with it.
        let Some((tx, proof)) = find_spend(chain, source, &seal, height)? else {
            break;
        };
        match follow_spend(bundle, &tx, Some(proof)) {
            Ok(index) => {
                followed.push(index);
                changed = true;
            }
            Err(e) => {
                follow_error = Some(e.to_string());
                break;
            }
        }
    }
    let verification = verify_bundle(bundle, chain, confirmations, &mut |op| {
        source.unspent(op, false).map(|u| u.is_some())
    })?;
    Ok(Checked {
        verification,
        changed,
        followed,
        follow_error,
    })
}

/// The transaction of `chain`'s best chain, at or above `from`, that spends
/// `outpoint`, with the proof of its block. Blocks come from `source` and
/// are checked against their validated headers.
pub fn find_spend(
    chain: &HeaderChain,
    source: &dyn ChainSource,
    outpoint: &bitcoin::OutPoint,
    from: u32,
) -> Result<Option<(bitcoin::Transaction, bitcoin::MerkleBlock)>, AnchorError> {
    for height in from..=chain.height() {
        let Some(entry) = chain.at_height(height) else {
            break;
        };
        let block = source.block(&entry.hash)?;
        check_block(&block, height, entry.hash)?;
        if let Some(tx) = block
            .txdata
            .iter()
            .find(|t| t.input.iter().any(|i| i.previous_output == *outpoint))
        {
            let txid = tx.compute_txid();
            let proof = bitcoin::MerkleBlock::from_block_with_predicate(&block, |t| *t == txid);
            return Ok(Some((tx.clone(), proof)));
        }
    }
    Ok(None)
}

/// What a restore found on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The heights of the anchors found, in order: the inception's first,
    /// then one per rotation. Empty if the identity was never anchored (or
    /// the source's chain does not have it).
    pub heights: Vec<u32>,
    /// Blocks scanned.
    pub blocks: u32,
}

impl RestoreReport {
    /// The rotation index found on chain, if the identity is anchored.
    pub fn rotation_index(&self) -> Option<u32> {
        (self.heights.len() as u32).checked_sub(1)
    }
}

/// The seals of the seed's establishment events, made as far as needed.
struct SealFinder<'m> {
    master: &'m MasterKey,
    id: IdentityId,
    events: Vec<cairn_wallet::SignedEvent>,
    scripts: Vec<bitcoin::ScriptBuf>,
    leaves: Vec<bitcoin::TapLeafHash>,
    found: Vec<(Anchor, u32)>,
    error: Option<AnchorError>,
}

impl SealFinder<'_> {
    /// Makes sure the seal of event `index` is known.
    fn extend_to(&mut self, index: usize) -> Result<(), AnchorError> {
        let secp = Secp256k1::verification_only();
        while self.scripts.len() <= index {
            let i = self.scripts.len() as u32;
            let prev = self.events.last().map(|e| e.digest());
            let event = establishment_event(self.master, i, prev)?;
            let next = self.master.signing_key(i + 1)?;
            let seal = Seal::new(&secp, event.digest(), &next.public())?;
            self.scripts.push(seal.script_pubkey());
            self.leaves.push(seal.next_leaf);
            self.events.push(event);
        }
        Ok(())
    }

    /// Looks at one block of the best chain, in order.
    fn block(&mut self, block: &bitcoin::Block, height: u32) {
        if self.error.is_some() {
            return;
        }
        for tx in &block.txdata {
            let index = self.found.len();
            if let Err(e) = self.extend_to(index) {
                self.error = Some(e);
                return;
            }
            if !holds_seal(tx, &self.scripts[index]) {
                continue;
            }
            // A rotation spends the previous seal; the inception seal is the
            // first output ever made with its script (a copy made later by
            // someone holding the bundle comes after it).
            if let Some((prev, _)) = self.found.last() {
                if seal_spend_input(tx, &prev.seal_outpoint()).is_none() {
                    continue;
                }
            }
            let txid = tx.compute_txid();
            let attestation = match index {
                0 => match self.master.signing_key(1) {
                    Ok(k) => Some(Attestation::sign(
                        &k,
                        &self.id,
                        &bitcoin::OutPoint::new(txid, cairn_chain_anchor::anchor::SEAL_VOUT),
                    )),
                    Err(e) => {
                        self.error = Some(e.into());
                        return;
                    }
                },
                _ => None,
            };
            let anchor = Anchor {
                next_leaf: self.leaves[index],
                tx: tx.clone(),
                proof: Some(bitcoin::MerkleBlock::from_block_with_predicate(
                    block,
                    |t| *t == txid,
                )),
                attestation,
            };
            self.found.push((anchor, height));
        }
    }
}

/// Follows the seed's identity on chain, with nothing but the words and the
/// chain source: one pass over the blocks of `chain` (the funding wallet's,
/// so its coins come back too) finds the inception seal, then each
/// transaction that spends the last seal found into the next event's seal.
/// Stores the log, anchors and sealed events found, and returns the identity
/// at its current rotation.
pub fn restore_from_chain(
    store: &Store,
    funds: &mut Funds<'_>,
    master: &MasterKey,
    own: &OwnIdentity,
    chain: &HeaderChain,
    source: &dyn ChainSource,
    progress: &mut dyn FnMut(u32, u32),
) -> Result<(OwnIdentity, RestoreReport), AnchorError> {
    let id = own.state.id;
    let mut finder = SealFinder {
        master,
        id,
        events: Vec::new(),
        scripts: Vec::new(),
        leaves: Vec::new(),
        found: Vec::new(),
        error: None,
    };
    // The words' birthday is unknown: no identity is older than Cairn.
    let born = store
        .identity_birthday()?
        .unwrap_or(crate::funds::CAIRN_EPOCH);
    let scanned = funds.scan_with(chain, source, Some(born), progress, &mut |b, h| {
        finder.block(b, h)
    })?;
    if let Some(e) = finder.error {
        return Err(e);
    }
    let heights: Vec<u32> = finder.found.iter().map(|(_, h)| *h).collect();
    let report = RestoreReport {
        heights,
        blocks: scanned.blocks,
    };
    let Some(current) = report.rotation_index() else {
        return Ok((own.clone(), report));
    };
    // Only ever forward: a node that already holds this rotation (or a
    // later one, still pending) keeps its log and anchors.
    if current < own.state.rotation_index()
        || (current == own.state.rotation_index()
            && store.anchors(funds.network(), &id)?.len() == report.heights.len())
    {
        return Ok((own.clone(), report));
    }
    let log = if current == own.state.rotation_index() {
        own.log.clone()
    } else {
        KeyEventLog::new(finder.events[..=current as usize].to_vec())
    };
    let state = log.verify()?;
    let anchors: Vec<Anchor> = finder.found.into_iter().map(|(a, _)| a).collect();
    let sealed = future_rotations(master, &id, current)?;
    store.put_own_bundle(funds.network(), &id, &log, &anchors, &sealed)?;
    Ok((OwnIdentity { log, state }, report))
}
