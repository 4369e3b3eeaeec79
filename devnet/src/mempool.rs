//! The devnet's mempool: Bitcoin Core's acceptance checks in Core's order,
//! with Core's reject reasons, and script validation by Core's own consensus
//! code (libbitcoinconsensus, taproot included).

use std::collections::{HashMap, HashSet};

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{schnorr, Message, Secp256k1, XOnlyPublicKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{absolute, Amount, Block, OutPoint, Transaction, TxOut, Txid, Wtxid};

use crate::chain::{Coin, COINBASE_MATURITY};

/// Minimum relay fee rate, sat per 1000 vbytes (Core's default `-minrelaytxfee`).
pub const MIN_RELAY_FEE_SAT_PER_KVB: u64 = 1_000;
/// Most transactions the mempool holds.
pub const MAX_MEMPOOL_TXS: usize = 20_000;
/// Core's standard transaction weight limit.
pub const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;
/// Core's maximum standard OP_RETURN output script size.
pub const MAX_OP_RETURN_RELAY: usize = 83;

/// A transaction the mempool accepted (or would accept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Its txid.
    pub txid: Txid,
    /// Its wtxid.
    pub wtxid: Wtxid,
    /// Its fee.
    pub fee: Amount,
    /// Its virtual size.
    pub vsize: u64,
}

/// The class of a rejection, which decides Core's RPC error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectKind {
    /// Policy or consensus: RPC code -26.
    Invalid,
    /// An input is missing or spent: RPC code -25.
    MissingInputs,
    /// The transaction is already confirmed: RPC code -27.
    AlreadyInChain,
}

/// Why the mempool refused a transaction, as Bitcoin Core says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// The class.
    pub kind: RejectKind,
    /// Core's reject reason, e.g. `bad-txns-inputs-missingorspent`.
    pub reason: String,
    /// Core's debug message, when it gives one.
    pub debug: Option<String>,
}

impl Reject {
    fn invalid(reason: impl Into<String>, debug: Option<String>) -> Self {
        Reject {
            kind: RejectKind::Invalid,
            reason: reason.into(),
            debug,
        }
    }

    /// Core's RPC error code for `sendrawtransaction`.
    pub fn rpc_code(&self) -> i64 {
        match self.kind {
            RejectKind::Invalid => -26,
            RejectKind::MissingInputs => -25,
            RejectKind::AlreadyInChain => -27,
        }
    }

    /// Core's `sendrawtransaction` error message.
    pub fn rpc_message(&self) -> String {
        match (self.kind, &self.debug) {
            (RejectKind::MissingInputs, _) => "bad-txns-inputs-missingorspent".into(),
            (RejectKind::AlreadyInChain, _) => "Transaction outputs already in utxo set".into(),
            (RejectKind::Invalid, Some(d)) => format!("{}, {d}", self.reason),
            (RejectKind::Invalid, None) => self.reason.clone(),
        }
    }

    /// Core's `testmempoolaccept` `reject-reason`.
    pub fn test_accept_reason(&self) -> String {
        match self.kind {
            RejectKind::MissingInputs => "missing-inputs".into(),
            RejectKind::AlreadyInChain => "txn-already-known".into(),
            RejectKind::Invalid => self.reason.clone(),
        }
    }
}

/// Core's `FormatMoney`: at least two decimals.
fn money(a: Amount) -> String {
    let s = format!("{:.8}", a.to_btc());
    let trimmed = s.trim_end_matches('0');
    let (int, frac) = trimmed.split_once('.').unwrap_or((trimmed, ""));
    format!("{int}.{frac:0<2}")
}

#[derive(Debug, Clone)]
struct Entry {
    tx: Transaction,
    fee: Amount,
    vsize: u64,
    seq: u64,
}

/// Transactions waiting for a block.
#[derive(Debug, Default)]
pub struct Mempool {
    entries: HashMap<Txid, Entry>,
    spent_by: HashMap<OutPoint, Txid>,
    next_seq: u64,
}

/// Core's `CheckTransaction`: context-free structure checks.
fn check_transaction(tx: &Transaction) -> Result<(), Reject> {
    if tx.input.is_empty() {
        return Err(Reject::invalid("bad-txns-vin-empty", None));
    }
    if tx.output.is_empty() {
        return Err(Reject::invalid("bad-txns-vout-empty", None));
    }
    if tx.base_size() * 4 > 4_000_000 {
        return Err(Reject::invalid("bad-txns-oversize", None));
    }
    let mut total = 0u64;
    for o in &tx.output {
        if o.value > Amount::MAX_MONEY {
            return Err(Reject::invalid("bad-txns-vout-toolarge", None));
        }
        total = total.saturating_add(o.value.to_sat());
        if total > Amount::MAX_MONEY.to_sat() {
            return Err(Reject::invalid("bad-txns-txouttotal-toolarge", None));
        }
    }
    let mut seen = HashSet::new();
    for i in &tx.input {
        if !seen.insert(i.previous_output) {
            return Err(Reject::invalid("bad-txns-inputs-duplicate", None));
        }
    }
    if tx.is_coinbase() {
        let len = tx.input[0].script_sig.len();
        if !(2..=100).contains(&len) {
            return Err(Reject::invalid("bad-cb-length", None));
        }
    } else if tx.input.iter().any(|i| i.previous_output.is_null()) {
        return Err(Reject::invalid("bad-txns-prevout-null", None));
    }
    Ok(())
}

/// Core's `IsStandardTx` (the rules a devnet user can meet).
fn check_standard(tx: &Transaction) -> Result<(), Reject> {
    let v = tx.version.0;
    if !(1..=3).contains(&v) {
        return Err(Reject::invalid("version", None));
    }
    if tx.weight().to_wu() > MAX_STANDARD_TX_WEIGHT {
        return Err(Reject::invalid("tx-size", None));
    }
    for i in &tx.input {
        if i.script_sig.len() > 1650 {
            return Err(Reject::invalid("scriptsig-size", None));
        }
        if !i.script_sig.is_push_only() {
            return Err(Reject::invalid("scriptsig-not-pushonly", None));
        }
    }
    let mut op_returns = 0;
    for o in &tx.output {
        let s = &o.script_pubkey;
        if s.is_op_return() {
            if s.len() > MAX_OP_RETURN_RELAY {
                return Err(Reject::invalid("scriptpubkey", None));
            }
            op_returns += 1;
            continue;
        }
        let standard = s.is_p2pkh()
            || s.is_p2sh()
            || s.is_p2wpkh()
            || s.is_p2wsh()
            || s.is_p2tr()
            || s.is_p2pk()
            || s.witness_version().is_some();
        if !standard {
            return Err(Reject::invalid("scriptpubkey", None));
        }
        if o.value < s.minimal_non_dust() {
            return Err(Reject::invalid("dust", None));
        }
    }
    if op_returns > 1 {
        return Err(Reject::invalid("multi-op-return", None));
    }
    if tx.base_size() < 65 {
        return Err(Reject::invalid("tx-size-small", None));
    }
    Ok(())
}

/// Core's `IsFinalTx` for the next block.
fn is_final(tx: &Transaction, next_height: u32, mtp: u32) -> bool {
    let lt = tx.lock_time;
    if lt == absolute::LockTime::ZERO || tx.input.iter().all(|i| i.sequence.is_final()) {
        return true;
    }
    match lt {
        absolute::LockTime::Blocks(h) => h.to_consensus_u32() < next_height,
        absolute::LockTime::Seconds(t) => t.to_consensus_u32() < mtp,
    }
}

/// A more specific message for a failed taproot key-path spend.
fn script_failure_detail(tx: &Transaction, index: usize, prevouts: &[TxOut]) -> String {
    let generic = "script evaluation failed".to_string();
    let spent = &prevouts[index].script_pubkey;
    let witness = &tx.input[index].witness;
    let annex = witness.len() >= 2 && witness.last().is_some_and(|l| l.first() == Some(&0x50));
    let stack = witness.len() - usize::from(annex);
    if !spent.is_p2tr() || stack != 1 {
        return generic;
    }
    let sig = &witness[0];
    let (sig64, ty) = match sig.len() {
        64 => (sig, TapSighashType::Default),
        65 => match TapSighashType::from_consensus_u8(sig[64]) {
            Ok(t) if t != TapSighashType::Default => (&sig[..64], t),
            _ => return "Invalid Schnorr signature hashtype".into(),
        },
        _ => return "Invalid Schnorr signature size".into(),
    };
    let Ok(key) = XOnlyPublicKey::from_slice(&spent.as_bytes()[2..34]) else {
        return generic;
    };
    let Ok(sig) = schnorr::Signature::from_slice(sig64) else {
        return "Invalid Schnorr signature".into();
    };
    let Ok(hash) =
        SighashCache::new(tx).taproot_key_spend_signature_hash(index, &Prevouts::All(prevouts), ty)
    else {
        return generic;
    };
    let msg = Message::from_digest(hash.to_byte_array());
    if Secp256k1::verification_only()
        .verify_schnorr(&sig, &msg, &key)
        .is_err()
    {
        return "Invalid Schnorr signature".into();
    }
    generic
}

/// Runs every input's scripts through libbitcoinconsensus with all of
/// today's consensus flags (P2SH, DERSIG, CLTV, CSV, WITNESS, NULLDUMMY, TAPROOT).
pub fn verify_scripts(tx: &Transaction, prevouts: &[TxOut]) -> Result<(), Reject> {
    let bytes = bitcoin::consensus::serialize(tx);
    let utxos: Vec<bitcoinconsensus::Utxo> = prevouts
        .iter()
        .map(|o| bitcoinconsensus::Utxo {
            script_pubkey: o.script_pubkey.as_bytes().as_ptr(),
            script_pubkey_len: o.script_pubkey.len() as u32,
            value: o.value.to_sat() as i64,
        })
        .collect();
    let flags = bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT;
    for (i, o) in prevouts.iter().enumerate() {
        let r = bitcoinconsensus::verify_with_flags(
            o.script_pubkey.as_bytes(),
            o.value.to_sat(),
            &bytes,
            Some(&utxos),
            i,
            flags,
        );
        if r.is_err() {
            return Err(Reject::invalid(
                format!(
                    "mandatory-script-verify-flag-failed ({})",
                    script_failure_detail(tx, i, prevouts)
                ),
                None,
            ));
        }
    }
    Ok(())
}

impl Mempool {
    /// Number of transactions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A mempool transaction.
    pub fn get(&self, txid: &Txid) -> Option<&Transaction> {
        self.entries.get(txid).map(|e| &e.tx)
    }

    /// Whether a mempool transaction spends `outpoint`.
    pub fn spends(&self, outpoint: &OutPoint) -> bool {
        self.spent_by.contains_key(outpoint)
    }

    /// An output created by a mempool transaction.
    pub fn output(&self, outpoint: &OutPoint) -> Option<&TxOut> {
        self.entries
            .get(&outpoint.txid)
            .and_then(|e| e.tx.output.get(outpoint.vout as usize))
    }

    /// Core's `AcceptToMemoryPool` checks against the UTXO set `utxo` for a
    /// block at `next_height` with median-time-past `mtp`. With `test_only`
    /// nothing changes.
    pub fn accept(
        &mut self,
        tx: &Transaction,
        utxo: &HashMap<OutPoint, Coin>,
        next_height: u32,
        mtp: u32,
        test_only: bool,
    ) -> Result<Accepted, Reject> {
        check_transaction(tx)?;
        if tx.is_coinbase() {
            return Err(Reject::invalid("coinbase", None));
        }
        check_standard(tx)?;
        if !is_final(tx, next_height, mtp) {
            return Err(Reject::invalid("non-final", None));
        }
        let txid = tx.compute_txid();
        if let Some(e) = self.entries.get(&txid) {
            let reason = if e.tx.compute_wtxid() == tx.compute_wtxid() {
                "txn-already-in-mempool"
            } else {
                "txn-same-nonwitness-data-in-mempool"
            };
            return Err(Reject::invalid(reason, None));
        }
        // Inputs: from the chain or from the mempool.
        let mut prevouts = Vec::with_capacity(tx.input.len());
        let mut conflicts: HashSet<Txid> = HashSet::new();
        let mut in_value = Amount::ZERO;
        for input in &tx.input {
            let op = input.previous_output;
            if let Some(c) = self.spent_by.get(&op) {
                conflicts.insert(*c);
            }
            if let Some(coin) = utxo.get(&op) {
                let depth = next_height - coin.height;
                if coin.coinbase && depth < COINBASE_MATURITY {
                    return Err(Reject::invalid(
                        "bad-txns-premature-spend-of-coinbase",
                        Some(format!("tried to spend coinbase at depth {depth}")),
                    ));
                }
                in_value += coin.out.value;
                prevouts.push(coin.out.clone());
            } else if let Some(out) = self.output(&op) {
                in_value += out.value;
                prevouts.push(out.clone());
            } else {
                let confirmed =
                    (0..tx.output.len()).any(|v| utxo.contains_key(&OutPoint::new(txid, v as u32)));
                return Err(Reject {
                    kind: if confirmed {
                        RejectKind::AlreadyInChain
                    } else {
                        RejectKind::MissingInputs
                    },
                    reason: "bad-txns-inputs-missingorspent".into(),
                    debug: None,
                });
            }
        }
        if tx
            .input
            .iter()
            .any(|i| conflicts.contains(&i.previous_output.txid))
        {
            return Err(Reject::invalid("bad-txns-spends-conflicting-tx", None));
        }
        let out_value: Amount = tx.output.iter().map(|o| o.value).sum();
        let Some(fee) = in_value.checked_sub(out_value) else {
            return Err(Reject::invalid(
                "bad-txns-in-belowout",
                Some(format!(
                    "value in ({}) < value out ({})",
                    money(in_value),
                    money(out_value)
                )),
            ));
        };
        let vsize = tx.vsize() as u64;
        let min_fee = Amount::from_sat(vsize * MIN_RELAY_FEE_SAT_PER_KVB / 1000);
        if fee < min_fee {
            return Err(Reject::invalid(
                "min relay fee not met",
                Some(format!("{} < {}", fee.to_sat(), min_fee.to_sat())),
            ));
        }
        // Replacement (full RBF, as Core 28 does by default).
        let evicted = self.with_descendants(&conflicts);
        if !conflicts.is_empty() {
            let old_fees: Amount = evicted.iter().map(|t| self.entries[t].fee).sum();
            if fee < old_fees + min_fee {
                return Err(Reject::invalid(
                    "insufficient fee",
                    Some(format!(
                        "rejecting replacement {txid}, not enough additional fees to relay; {} < {}",
                        money(fee.checked_sub(old_fees).unwrap_or(Amount::ZERO)),
                        money(min_fee)
                    )),
                ));
            }
            for c in &conflicts {
                let e = &self.entries[c];
                if fee.to_sat() * e.vsize <= e.fee.to_sat() * vsize {
                    return Err(Reject::invalid(
                        "insufficient fee",
                        Some(format!(
                            "rejecting replacement {txid}; new feerate {} <= old feerate {}",
                            fee.to_sat() * 1000 / vsize,
                            e.fee.to_sat() * 1000 / e.vsize
                        )),
                    ));
                }
            }
        }
        verify_scripts(tx, &prevouts)?;
        if self.entries.len() - evicted.len() >= MAX_MEMPOOL_TXS {
            return Err(Reject::invalid("mempool full", None));
        }
        let accepted = Accepted {
            txid,
            wtxid: tx.compute_wtxid(),
            fee,
            vsize,
        };
        if !test_only {
            for t in evicted {
                self.remove(&t);
            }
            for i in &tx.input {
                self.spent_by.insert(i.previous_output, txid);
            }
            self.entries.insert(
                txid,
                Entry {
                    tx: tx.clone(),
                    fee,
                    vsize,
                    seq: self.next_seq,
                },
            );
            self.next_seq += 1;
        }
        Ok(accepted)
    }

    /// `roots` and every mempool transaction that spends from them, transitively.
    fn with_descendants(&self, roots: &HashSet<Txid>) -> HashSet<Txid> {
        let mut out: HashSet<Txid> = HashSet::new();
        let mut stack: Vec<Txid> = roots.iter().copied().collect();
        while let Some(t) = stack.pop() {
            if !out.insert(t) {
                continue;
            }
            if let Some(e) = self.entries.get(&t) {
                for v in 0..e.tx.output.len() {
                    if let Some(child) = self.spent_by.get(&OutPoint::new(t, v as u32)) {
                        stack.push(*child);
                    }
                }
            }
        }
        out
    }

    fn remove(&mut self, txid: &Txid) {
        if let Some(e) = self.entries.remove(txid) {
            for i in &e.tx.input {
                if self.spent_by.get(&i.previous_output) == Some(txid) {
                    self.spent_by.remove(&i.previous_output);
                }
            }
        }
    }

    /// Removes what `block` confirmed and everything that conflicts with it.
    pub fn remove_confirmed(&mut self, block: &Block) {
        let mut gone = HashSet::new();
        for tx in block.txdata.iter().skip(1) {
            let txid = tx.compute_txid();
            if self.entries.contains_key(&txid) {
                self.remove(&txid);
            }
            for i in &tx.input {
                if let Some(c) = self.spent_by.get(&i.previous_output) {
                    gone.insert(*c);
                }
            }
        }
        for t in self.with_descendants(&gone) {
            self.remove(&t);
        }
    }

    /// The transactions for a block of at most `max_weight`, parents first,
    /// and their fees.
    pub fn select(&self, max_weight: u64) -> (Vec<Transaction>, Amount) {
        let mut order: Vec<&Entry> = self.entries.values().collect();
        order.sort_by_key(|e| e.seq);
        let mut included: HashSet<Txid> = HashSet::new();
        let mut weight = 0u64;
        let mut fees = Amount::ZERO;
        let mut txs = Vec::new();
        for e in order {
            let w = e.tx.weight().to_wu();
            let parents_in = e.tx.input.iter().all(|i| {
                !self.entries.contains_key(&i.previous_output.txid)
                    || included.contains(&i.previous_output.txid)
            });
            if !parents_in || weight + w > max_weight {
                continue;
            }
            weight += w;
            fees += e.fee;
            included.insert(e.tx.compute_txid());
            txs.push(e.tx.clone());
        }
        (txs, fees)
    }

    /// Empties the mempool, returning its transactions in arrival order.
    pub fn drain(&mut self) -> Vec<Transaction> {
        let mut all: Vec<Entry> = self.entries.drain().map(|(_, e)| e).collect();
        self.spent_by.clear();
        all.sort_by_key(|e| e.seq);
        all.into_iter().map(|e| e.tx).collect()
    }

    /// Entries as `(txid, fee, vsize)`, for `getrawmempool`-style views.
    pub fn txids(&self) -> Vec<Txid> {
        let mut all: Vec<(&Txid, u64)> = self.entries.iter().map(|(t, e)| (t, e.seq)).collect();
        all.sort_by_key(|(_, s)| *s);
        all.into_iter().map(|(t, _)| *t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formats_like_core() {
        assert_eq!(money(Amount::from_sat(5_000_000_000)), "50.00");
        assert_eq!(money(Amount::from_sat(1)), "0.00000001");
        assert_eq!(money(Amount::from_sat(123_450_000)), "1.2345");
    }

    #[test]
    fn unspendable_outputs_are_not_coins() {
        use crate::chain::is_unspendable;
        let s = bitcoin::ScriptBuf::new_op_return([1u8; 4]);
        assert!(is_unspendable(&s));
    }
}
