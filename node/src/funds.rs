//! The funding wallet: a BIP86 taproot wallet (BDK) derived from the
//! identity's seed, on the account kept for identity funding
//! (`m/86'/coin'/1'`, so seal transactions never mix with everyday coins).
//!
//! Its state is BDK's changesets, appended to the node's store and merged on
//! load. Only public descriptors are stored: signing needs the seed, unlocked
//! for the one command that spends. Blocks reach the wallet from the node's
//! validated header chain: each block fetched from the chain source must hash
//! to the validated header and match its merkle root and witness commitment
//! before the wallet sees its transactions.

use std::sync::Arc;

use bdk_wallet::chain::{BlockId, Merge as _};
use bdk_wallet::miniscript::descriptor::{Descriptor, DescriptorPublicKey, KeyMap};
use bdk_wallet::{
    AddressInfo, Balance, ChangeSet, KeychainKind, PersistedWallet, SignOptions, TxOrdering,
    Wallet, WalletPersister,
};
use bitcoin::{Address, Amount, Block, FeeRate, ScriptBuf, Transaction, Txid};
use cairn_chain_anchor::source::{ChainSource, SourceError};
use cairn_chain_anchor::{ChainNetwork, HeaderChain};
use cairn_wallet::keys::{Bip86Descriptors, CoinType, KeyError, FUNDS_ACCOUNT_IDENTITY};
use cairn_wallet::MasterKey;

use crate::store::{Store, StoreError};

/// Lowest fee rate the wallet pays: Bitcoin Core's default minimum relay fee.
pub const FEE_FLOOR: FeeRate = FeeRate::from_sat_per_vb_u32(1);
/// Highest fee rate accepted from a user override or an estimate (sat/vB):
/// above it a typo would burn the coins.
pub const FEE_CEILING_SAT_VB: u32 = 1_000;
/// Confirmation target asked of `estimatesmartfee` (blocks).
pub const FEE_TARGET_BLOCKS: u16 = 6;
/// Blocks before the birthday's timestamp that are still scanned: block
/// times may lag real time (they only have to exceed the median of the 11
/// before), so the wallet starts a day early.
pub const BIRTHDAY_MARGIN_SECS: u64 = 86_400;
/// No Cairn identity (nor its funding account) existed before this time
/// (2026-01-01 UTC): a restore, which does not know when the words were
/// made, scans from here instead of from the genesis block.
pub const CAIRN_EPOCH: u64 = 1_767_225_600;
/// Stored changesets are merged into one when there are more than this.
const COMPACT_AFTER: usize = 64;
/// During a scan the wallet is persisted every this many blocks, so an
/// interrupted scan resumes close to where it stopped.
const PERSIST_EVERY: u32 = 144;

/// Funding wallet failures.
#[derive(Debug, thiserror::Error)]
pub enum FundsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored changeset does not decode.
    #[error("the store's funding wallet record {seq} is corrupt: {reason}")]
    Corrupt {
        /// Which record.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// The stored wallet cannot be loaded (wrong network, missing parts).
    #[error("cannot load the funding wallet: {0}")]
    Load(String),
    /// Creating the wallet failed.
    #[error("cannot create the funding wallet: {0}")]
    Create(String),
    /// The seed's keys are not the stored wallet's.
    #[error("the seed does not match this data directory's funding wallet")]
    WrongSeed,
    /// Key derivation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The chain source failed.
    #[error("chain source: {0}")]
    Source(#[from] SourceError),
    /// The source served a block that does not match the validated header chain.
    #[error("block {height} ({hash}) from the chain source {reason}; refusing it")]
    BadBlock {
        /// Its height.
        height: u32,
        /// The hash asked for.
        hash: bitcoin::BlockHash,
        /// What is wrong.
        reason: &'static str,
    },
    /// The wallet's chain cannot take a block (should not happen: blocks come
    /// in order from the validated chain).
    #[error("the funding wallet cannot connect block {height}: {reason}")]
    Connect {
        /// Its height.
        height: u32,
        /// Why.
        reason: String,
    },
    /// An address for another network.
    #[error("{address} is not a {network} address")]
    WrongNetwork {
        /// The address as given.
        address: String,
        /// The node's network.
        network: &'static str,
    },
    /// A fee rate outside the accepted range.
    #[error("fee rate {0} sat/vB is outside 1..={FEE_CEILING_SAT_VB} sat/vB")]
    FeeRate(u64),
    /// Not enough coins, or another reason the transaction cannot be built.
    #[error("cannot build the transaction: {0}")]
    Build(String),
    /// Signing failed or left inputs unsigned.
    #[error("cannot sign the transaction: {0}")]
    Sign(String),
}

/// BDK's [`WalletPersister`] over the node's store.
pub struct FundsStore<'a> {
    store: &'a Store,
    network: &'static str,
    next_seq: u64,
}

impl<'a> FundsStore<'a> {
    /// The funding wallet records of `network` in `store`.
    pub fn new(store: &'a Store, network: ChainNetwork) -> Self {
        FundsStore {
            store,
            network: network.core_chain_name(),
            next_seq: 0,
        }
    }
}

impl WalletPersister for FundsStore<'_> {
    type Error = FundsError;

    fn initialize(p: &mut Self) -> Result<ChangeSet, FundsError> {
        let records = p.store.funds_changesets(p.network)?;
        let mut all = ChangeSet::default();
        for (seq, bytes) in &records {
            let cs: ChangeSet = serde_json::from_slice(bytes).map_err(|e| FundsError::Corrupt {
                seq: *seq,
                reason: e.to_string(),
            })?;
            all.merge(cs);
        }
        p.next_seq = records.last().map_or(0, |(s, _)| s + 1);
        // (Not in a store opened read-only while the node holds it.)
        if records.len() > COMPACT_AFTER && !p.store.is_read_only() {
            let merged = serde_json::to_vec(&all).map_err(|e| FundsError::Corrupt {
                seq: p.next_seq - 1,
                reason: e.to_string(),
            })?;
            p.store
                .compact_funds_changesets(p.network, p.next_seq - 1, &merged)?;
        }
        Ok(all)
    }

    fn persist(p: &mut Self, changeset: &ChangeSet) -> Result<(), FundsError> {
        if changeset.is_empty() {
            return Ok(());
        }
        let bytes = serde_json::to_vec(changeset).map_err(|e| FundsError::Corrupt {
            seq: p.next_seq,
            reason: e.to_string(),
        })?;
        p.store
            .append_funds_changeset(p.network, p.next_seq, &bytes)?;
        p.next_seq += 1;
        Ok(())
    }
}

/// The coin type of `network`'s BIP86 accounts.
pub fn coin_type(network: ChainNetwork) -> CoinType {
    match network {
        ChainNetwork::Mainnet => CoinType::Mainnet,
        _ => CoinType::Test,
    }
}

/// The identity funding account's descriptors (secret) of `master` on `network`.
pub fn identity_descriptors(
    master: &MasterKey,
    network: ChainNetwork,
) -> Result<Bip86Descriptors, FundsError> {
    Ok(master.bip86_descriptors(coin_type(network), FUNDS_ACCOUNT_IDENTITY)?)
}

type Parsed = (Descriptor<DescriptorPublicKey>, KeyMap);

fn parse(descriptor: &str) -> Result<Parsed, FundsError> {
    let secp = bitcoin::secp256k1::Secp256k1::new();
    Descriptor::parse_descriptor(&secp, descriptor).map_err(|e| FundsError::Create(e.to_string()))
}

/// What a scan of new blocks did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// Blocks fetched and applied.
    pub blocks: u32,
    /// The wallet's height afterwards.
    pub height: u32,
}

/// The funding wallet of one network, loaded from the store.
pub struct Funds<'a> {
    wallet: PersistedWallet<FundsStore<'a>>,
    db: FundsStore<'a>,
    network: ChainNetwork,
}

impl std::fmt::Debug for Funds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Funds({})", self.network.core_chain_name())
    }
}

impl<'a> Funds<'a> {
    /// Creates the wallet of `descriptors` on `network` in `store`. Only the
    /// public descriptors are kept: spending takes the seed again
    /// ([`Funds::build_payment`]).
    pub fn create(
        store: &'a Store,
        network: ChainNetwork,
        descriptors: &Bip86Descriptors,
    ) -> Result<Self, FundsError> {
        let (external, _) = parse(&descriptors.external)?;
        let (internal, _) = parse(&descriptors.internal)?;
        let mut db = FundsStore::new(store, network);
        let wallet = Wallet::create((external, KeyMap::new()), (internal, KeyMap::new()))
            .network(network.bitcoin_network())
            .create_wallet(&mut db)
            .map_err(|e| FundsError::Create(e.to_string()))?;
        Ok(Funds {
            wallet,
            db,
            network,
        })
    }

    /// Loads the wallet of `network` from `store`, if one was created (watch-only).
    pub fn load(store: &'a Store, network: ChainNetwork) -> Result<Option<Self>, FundsError> {
        let mut db = FundsStore::new(store, network);
        let wallet = Wallet::load()
            .check_network(network.bitcoin_network())
            .load_wallet(&mut db)
            .map_err(|e| match e {
                bdk_wallet::LoadWithPersistError::Persist(e) => e,
                bdk_wallet::LoadWithPersistError::InvalidChangeSet(e) => {
                    FundsError::Load(e.to_string())
                }
            })?;
        Ok(wallet.map(|wallet| Funds {
            wallet,
            db,
            network,
        }))
    }

    /// Checks that `master` is the seed of this wallet (its descriptors are
    /// the stored ones), so that a wrong seed is reported as such rather than
    /// as inputs left unsigned.
    pub fn check_seed(&self, master: &MasterKey) -> Result<(), FundsError> {
        let keys = master.bip86_descriptors(coin_type(self.network), FUNDS_ACCOUNT_IDENTITY)?;
        for (keychain, text) in [
            (KeychainKind::External, &keys.external),
            (KeychainKind::Internal, &keys.internal),
        ] {
            let (public, _) = parse(text)?;
            if &public != self.wallet.public_descriptor(keychain) {
                return Err(FundsError::WrongSeed);
            }
        }
        Ok(())
    }

    /// The network.
    pub fn network(&self) -> ChainNetwork {
        self.network
    }

    /// The first receive address that has not received coins yet (a new one
    /// once all revealed ones have), recorded before it is returned.
    pub fn receive_address(&mut self) -> Result<AddressInfo, FundsError> {
        let info = self.wallet.next_unused_address(KeychainKind::External);
        self.persist()?;
        Ok(info)
    }

    /// The receive address at `index` (for tests and checks; reveals nothing).
    pub fn peek_address(&self, keychain: KeychainKind, index: u32) -> Address {
        self.wallet.peek_address(keychain, index).address
    }

    /// The balance as of the wallet's last scanned block.
    pub fn balance(&self) -> Balance {
        self.wallet.balance()
    }

    /// The last block the wallet has scanned.
    pub fn tip(&self) -> BlockId {
        self.wallet.latest_checkpoint().block_id()
    }

    /// Writes pending changes to the store.
    pub fn persist(&mut self) -> Result<(), FundsError> {
        self.wallet.persist(&mut self.db)?;
        Ok(())
    }

    /// Brings the wallet up to `chain`'s tip: finds the last block the wallet
    /// and the validated chain agree on (a reorg replaces what lies above),
    /// then fetches each later block from `source`, checks it against the
    /// validated header and applies it. A wallet that has never scanned
    /// starts at `birthday` (Unix seconds) less [`BIRTHDAY_MARGIN_SECS`], or
    /// at height 1 when the birthday is unknown.
    pub fn scan(
        &mut self,
        chain: &HeaderChain,
        source: &dyn ChainSource,
        birthday: Option<u64>,
        progress: &mut dyn FnMut(u32, u32),
    ) -> Result<ScanReport, FundsError> {
        self.scan_with(chain, source, birthday, progress, &mut |_, _| {})
    }

    /// [`Funds::scan`], also showing each checked block to `on_block` (with
    /// its height), so that other scans share the pass over the chain.
    pub fn scan_with(
        &mut self,
        chain: &HeaderChain,
        source: &dyn ChainSource,
        birthday: Option<u64>,
        progress: &mut dyn FnMut(u32, u32),
        on_block: &mut dyn FnMut(&Block, u32),
    ) -> Result<ScanReport, FundsError> {
        let genesis = chain.at_height(0).map(|e| BlockId {
            height: 0,
            hash: e.hash,
        });
        let base = self
            .wallet
            .checkpoints()
            .find(|cp| {
                chain
                    .at_height(cp.height())
                    .is_some_and(|e| e.hash == cp.hash())
            })
            .map(|cp| cp.block_id())
            .or(genesis)
            .ok_or(FundsError::Connect {
                height: 0,
                reason: "the header chain has no genesis".into(),
            })?;
        let mut start = base.height + 1;
        if base.height == 0 {
            start = start.max(first_height_after(chain, birthday));
        }
        let tip = chain.height();
        let mut connected_to = base;
        let mut blocks = 0;
        for height in start..=tip {
            let Some(entry) = chain.at_height(height) else {
                break;
            };
            let block = source.block(&entry.hash)?;
            check_block(&block, height, entry.hash)?;
            on_block(&block, height);
            self.wallet
                .apply_block_connected_to(&block, height, connected_to)
                .map_err(|e| FundsError::Connect {
                    height,
                    reason: e.to_string(),
                })?;
            connected_to = BlockId {
                height,
                hash: entry.hash,
            };
            blocks += 1;
            if blocks % PERSIST_EVERY == 0 {
                self.persist()?;
            }
            progress(height, tip);
        }
        self.persist()?;
        Ok(ScanReport {
            blocks,
            height: self.tip().height,
        })
    }

    /// Builds a transaction paying `amount` to `to` at `fee_rate`, with
    /// change back to the wallet and RBF signalled, and signs it with the
    /// keys of `master` (the seed, checked to be this wallet's).
    pub fn build_payment(
        &mut self,
        to: &Address,
        amount: Amount,
        fee_rate: FeeRate,
        master: &MasterKey,
    ) -> Result<Transaction, FundsError> {
        self.build_to(
            &to.script_pubkey(),
            amount,
            fee_rate,
            master,
            TxOrdering::Shuffle,
        )
    }

    /// Like [`Funds::build_payment`], paying `amount` to the seal `script`
    /// as output 0 (where verifiers look for a seal); change follows it.
    pub fn build_seal_funding(
        &mut self,
        script: &ScriptBuf,
        amount: Amount,
        fee_rate: FeeRate,
        master: &MasterKey,
    ) -> Result<Transaction, FundsError> {
        let tx = self.build_to(script, amount, fee_rate, master, TxOrdering::Untouched)?;
        if !cairn_chain_anchor::anchor::holds_seal(&tx, script) {
            return Err(FundsError::Build("the seal is not output 0".into()));
        }
        Ok(tx)
    }

    /// A transaction that spends `seal` (a foreign output, as input 0) and
    /// pays `amount` to the new seal `script` (output 0), with the wallet's
    /// coins making up the rest and the fee at `fee_rate`; change follows.
    /// `sign_seal` gives input 0's witness, from the unsigned transaction
    /// and the outputs its inputs spend; the wallet signs the rest with the
    /// keys of `master`. `seal_witness` is the size of that witness (for
    /// the fee). Returns the transaction and its fee.
    #[allow(clippy::too_many_arguments)]
    pub fn build_seal_rotation(
        &mut self,
        seal: (bitcoin::OutPoint, bitcoin::TxOut),
        seal_witness: bitcoin::Weight,
        script: &ScriptBuf,
        amount: Amount,
        fee_rate: FeeRate,
        master: &MasterKey,
        sign_seal: impl FnOnce(&Transaction, &[bitcoin::TxOut]) -> Result<bitcoin::Witness, String>,
    ) -> Result<(Transaction, Amount), FundsError> {
        self.check_seed(master)?;
        let (outpoint, prev_out) = seal;
        let input = bitcoin::psbt::Input {
            witness_utxo: Some(prev_out),
            ..Default::default()
        };
        let mut builder = self.wallet.build_tx();
        builder
            .add_foreign_utxo_with_sequence(
                outpoint,
                input,
                seal_witness,
                bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
            )
            .map_err(|e| FundsError::Build(e.to_string()))?
            .add_recipient(script.clone(), amount)
            .fee_rate(fee_rate)
            .ordering(TxOrdering::Untouched);
        let mut psbt = builder
            .finish()
            .map_err(|e| FundsError::Build(e.to_string()))?;
        let tx = &psbt.unsigned_tx;
        if tx.input.first().map(|i| i.previous_output) != Some(outpoint)
            || !cairn_chain_anchor::anchor::holds_seal(tx, script)
        {
            return Err(FundsError::Build(
                "the seal spend is not input 0, or the new seal not output 0".into(),
            ));
        }
        let prevouts = psbt
            .inputs
            .iter()
            .map(|i| i.witness_utxo.clone())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| FundsError::Build("an input without its output".into()))?;
        let witness = sign_seal(tx, &prevouts).map_err(FundsError::Sign)?;
        psbt.inputs[0].final_script_witness = Some(witness);
        let tx = self.sign(psbt, master)?;
        let spent: Amount = prevouts.iter().map(|o| o.value).sum();
        let paid: Amount = tx.output.iter().map(|o| o.value).sum();
        let fee = spent
            .checked_sub(paid)
            .ok_or_else(|| FundsError::Build("outputs above inputs".into()))?;
        Ok((tx, fee))
    }

    fn build_to(
        &mut self,
        script: &ScriptBuf,
        amount: Amount,
        fee_rate: FeeRate,
        master: &MasterKey,
        ordering: TxOrdering,
    ) -> Result<Transaction, FundsError> {
        self.check_seed(master)?;
        let mut builder = self.wallet.build_tx();
        builder
            .add_recipient(script.clone(), amount)
            .fee_rate(fee_rate)
            .ordering(ordering);
        let psbt = builder
            .finish()
            .map_err(|e| FundsError::Build(e.to_string()))?;
        self.sign(psbt, master)
    }

    /// Signs the wallet's inputs of `psbt` with the keys of `master`,
    /// finalizes every input (those already final stay), and extracts the
    /// transaction.
    fn sign(&self, mut psbt: bitcoin::Psbt, master: &MasterKey) -> Result<Transaction, FundsError> {
        master
            .sign_psbt(&mut psbt)
            .map_err(|e| FundsError::Sign(e.to_string()))?;
        let done = self
            .wallet
            .finalize_psbt(&mut psbt, SignOptions::default())
            .map_err(|e| FundsError::Sign(e.to_string()))?;
        if !done {
            return Err(FundsError::Sign("inputs left unsigned".into()));
        }
        psbt.extract_tx()
            .map_err(|e| FundsError::Sign(e.to_string()))
    }

    /// Broadcasts `tx` through `source` and records it as unconfirmed, so its
    /// inputs are not spent twice and its change counts.
    pub fn broadcast(
        &mut self,
        source: &dyn ChainSource,
        tx: Transaction,
        now: u64,
    ) -> Result<Txid, FundsError> {
        let txid = source.broadcast(&tx)?;
        self.record(tx, now)?;
        Ok(txid)
    }

    /// Records `tx` as unconfirmed (its inputs spent, its change counted),
    /// persisted. A seal transaction is recorded *before* it is sent: once
    /// stored, it may reach the network at any time, and its coins must
    /// never be spent by another transaction.
    pub fn record(&mut self, tx: Transaction, now: u64) -> Result<(), FundsError> {
        self.wallet.apply_unconfirmed_txs([(Arc::new(tx), now)]);
        self.persist()
    }

    /// The fee a transaction of this wallet pays, if the wallet knows all its inputs.
    pub fn fee_of(&self, tx: &Transaction) -> Option<Amount> {
        self.wallet.calculate_fee(tx).ok()
    }
}

/// The lowest height worth scanning for a wallet born at `birthday`.
fn first_height_after(chain: &HeaderChain, birthday: Option<u64>) -> u32 {
    let Some(born) = birthday else {
        return 1;
    };
    let floor = born.saturating_sub(BIRTHDAY_MARGIN_SECS);
    let mut h = chain.height();
    while h > 0
        && chain
            .at_height(h)
            .is_some_and(|e| u64::from(e.header.time) >= floor)
    {
        h -= 1;
    }
    h + 1
}

/// Checks that `block` is the validated block `hash` with the transactions
/// its header commits to.
pub fn check_block(block: &Block, height: u32, hash: bitcoin::BlockHash) -> Result<(), FundsError> {
    let bad = |reason| FundsError::BadBlock {
        height,
        hash,
        reason,
    };
    if block.block_hash() != hash {
        return Err(bad("has another header"));
    }
    if !block.check_merkle_root() {
        return Err(bad("has transactions its merkle root does not commit to"));
    }
    if !block.check_witness_commitment() {
        return Err(bad("has witnesses its coinbase does not commit to"));
    }
    Ok(())
}

/// The fee rate to pay: `override_sat_vb` when given, else the source's
/// estimate for [`FEE_TARGET_BLOCKS`], never below [`FEE_FLOOR`].
pub fn choose_fee_rate(
    source: &dyn ChainSource,
    override_sat_vb: Option<u64>,
) -> Result<FeeRate, FundsError> {
    if let Some(r) = override_sat_vb {
        return match u32::try_from(r) {
            Ok(r) if (1..=FEE_CEILING_SAT_VB).contains(&r) => Ok(FeeRate::from_sat_per_vb_u32(r)),
            _ => Err(FundsError::FeeRate(r)),
        };
    }
    let estimate = source.fee_rate(FEE_TARGET_BLOCKS)?.unwrap_or(FEE_FLOOR);
    let ceiling = FeeRate::from_sat_per_vb_u32(FEE_CEILING_SAT_VB);
    Ok(estimate.max(FEE_FLOOR).min(ceiling))
}

/// Parses `text` as an address of `network`.
pub fn parse_address(text: &str, network: ChainNetwork) -> Result<Address, FundsError> {
    let wrong = || FundsError::WrongNetwork {
        address: text.to_string(),
        network: network.core_chain_name(),
    };
    text.trim()
        .parse::<Address<bitcoin::address::NetworkUnchecked>>()
        .map_err(|e| FundsError::Build(format!("{text:?} is not a Bitcoin address: {e}")))?
        .require_network(network.bitcoin_network())
        .map_err(|_| wrong())
}

/// Parses an amount: a plain number is in BTC (as `bitcoin-cli` takes it);
/// `sat` or `BTC` may follow.
pub fn parse_amount(text: &str) -> Result<Amount, FundsError> {
    let t = text.trim();
    let parsed = if t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        Amount::from_str_in(t, bitcoin::Denomination::Bitcoin).map_err(|e| e.to_string())
    } else {
        t.parse::<Amount>().map_err(|e| e.to_string())
    };
    let amount =
        parsed.map_err(|e| FundsError::Build(format!("{text:?} is not an amount: {e}")))?;
    if amount > Amount::MAX_MONEY {
        return Err(FundsError::Build(format!(
            "{text:?} is not an amount: more than 21 million BTC"
        )));
    }
    Ok(amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::Secp256k1;
    use cairn_wallet::keys::FUNDS_ACCOUNT_EVERYDAY;
    use cairn_wallet::SeedPhrase;

    fn vectors() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../wallet/testdata/bip86-vectors.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn master(phrase: &str) -> MasterKey {
        MasterKey::new(&SeedPhrase::parse(phrase).unwrap().to_seed(""))
    }

    #[test]
    fn a_bdk_wallet_from_the_seed_gives_the_bip86_vector_addresses() {
        let v = vectors();
        let m = master(v["mnemonic"].as_str().unwrap());
        let d = &v["derivations"];
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys = m
            .bip86_descriptors(CoinType::Mainnet, FUNDS_ACCOUNT_EVERYDAY)
            .unwrap();
        let funds = Funds::create(&store, ChainNetwork::Mainnet, &keys).unwrap();
        assert_eq!(
            funds.peek_address(KeychainKind::External, 0).to_string(),
            d[1]["address"].as_str().unwrap()
        );
        assert_eq!(
            funds.peek_address(KeychainKind::External, 1).to_string(),
            d[2]["address"].as_str().unwrap()
        );
        assert_eq!(
            funds.peek_address(KeychainKind::Internal, 0).to_string(),
            d[3]["address"].as_str().unwrap()
        );
    }

    #[test]
    fn identity_funding_addresses_match_an_independent_derivation() {
        // BDK's descriptor path against BIP32 + BIP86 done by hand with the
        // `bitcoin` crate, on the identity account of a test network.
        let m = master("zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let funds = Funds::create(
            &store,
            ChainNetwork::Regtest,
            &identity_descriptors(&m, ChainNetwork::Regtest).unwrap(),
        )
        .unwrap();
        let secp = Secp256k1::new();
        for (keychain, branch) in [(KeychainKind::External, 0), (KeychainKind::Internal, 1)] {
            for i in 0..5 {
                let path = format!("m/86'/1'/{FUNDS_ACCOUNT_IDENTITY}'/{branch}/{i}");
                let k = m.derive(&path.parse().unwrap()).unwrap();
                let internal = k.xpriv().to_keypair(&secp).x_only_public_key().0;
                let expected = Address::p2tr(&secp, internal, None, bitcoin::KnownHrp::Regtest);
                assert_eq!(funds.peek_address(keychain, i), expected, "{path}");
            }
        }
        // Everyday coins are another account: no address in common.
        let everyday = m
            .bip86_descriptors(CoinType::Test, FUNDS_ACCOUNT_EVERYDAY)
            .unwrap();
        assert_ne!(
            *everyday.external,
            *identity_descriptors(&m, ChainNetwork::Regtest)
                .unwrap()
                .external
        );
    }

    #[test]
    fn the_wallet_survives_reopening_and_its_records_are_compacted() {
        let m = master("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about");
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys = identity_descriptors(&m, ChainNetwork::Signet).unwrap();
        let mut funds = Funds::create(&store, ChainNetwork::Signet, &keys).unwrap();
        // Only public keys reach the store.
        let stored = store.funds_changesets("signet").unwrap();
        let text = String::from_utf8(stored[0].1.clone()).unwrap();
        assert!(text.contains("tpub") && !text.contains("tprv"), "{text}");
        let mut given = Vec::new();
        for _ in 0..(COMPACT_AFTER + 5) {
            let a = funds.wallet.reveal_next_address(KeychainKind::External);
            funds.persist().unwrap();
            given.push(a.address);
        }
        assert!(store.funds_changesets("signet").unwrap().len() > COMPACT_AFTER);
        drop(funds);
        let mut funds = Funds::load(&store, ChainNetwork::Signet).unwrap().unwrap();
        assert_eq!(store.funds_changesets("signet").unwrap().len(), 1);
        let last = given.len() as u32 - 1;
        assert_eq!(
            funds.wallet.derivation_index(KeychainKind::External),
            Some(last)
        );
        // None of them received anything: the first is still the one to give out.
        assert_eq!(funds.receive_address().unwrap().address, given[0]);
        let next = funds.wallet.reveal_next_address(KeychainKind::External);
        assert_eq!(next.index, last + 1);
        assert!(!given.contains(&next.address));
        funds.persist().unwrap();
        drop(funds);
        let funds = Funds::load(&store, ChainNetwork::Signet).unwrap().unwrap();
        assert_eq!(
            funds.wallet.derivation_index(KeychainKind::External),
            Some(next.index)
        );
        // Another network's wallet is another wallet.
        assert!(Funds::load(&store, ChainNetwork::Mainnet)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_corrupt_record_is_reported_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .append_funds_changeset("regtest", 0, b"{not json")
            .unwrap();
        let err = Funds::load(&store, ChainNetwork::Regtest).unwrap_err();
        assert!(matches!(err, FundsError::Corrupt { seq: 0, .. }), "{err}");
    }

    #[test]
    fn amounts_addresses_and_fee_rates_are_checked() {
        assert_eq!(parse_amount("0.5").unwrap(), Amount::from_sat(50_000_000));
        assert_eq!(parse_amount(" 1000 sat ").unwrap(), Amount::from_sat(1_000));
        assert_eq!(
            parse_amount("0.001 BTC").unwrap(),
            Amount::from_sat(100_000)
        );
        for bad in ["", "-1", "1.123456789", "lots", "21000001", "1e3"] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
        let main = "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr";
        assert!(parse_address(main, ChainNetwork::Mainnet).is_ok());
        assert!(matches!(
            parse_address(main, ChainNetwork::Regtest),
            Err(FundsError::WrongNetwork { .. })
        ));
        assert!(matches!(
            parse_address("bc1qnotanaddress", ChainNetwork::Mainnet),
            Err(FundsError::Build(_))
        ));
    }

    #[test]
    fn a_block_that_does_not_match_its_header_is_refused() {
        use bitcoin::blockdata::constants::genesis_block;
        use bitcoin::hashes::Hash as _;
        let block = genesis_block(bitcoin::Network::Regtest);
        let hash = block.block_hash();
        check_block(&block, 0, hash).unwrap();
        let mut other_tx = block.clone();
        other_tx.txdata[0].output[0].value = Amount::from_sat(1);
        assert!(matches!(
            check_block(&other_tx, 0, hash),
            Err(FundsError::BadBlock { reason, .. }) if reason.contains("merkle")
        ));
        assert!(matches!(
            check_block(&block, 0, bitcoin::BlockHash::all_zeros()),
            Err(FundsError::BadBlock {
                reason: "has another header",
                ..
            })
        ));
    }
}
