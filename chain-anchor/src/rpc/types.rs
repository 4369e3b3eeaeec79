//! Typed replies of the RPC methods Cairn uses, as Bitcoin Core documents them.

use bitcoin::pow::Work;
use bitcoin::{Amount, BlockHash, OutPoint, ScriptBuf, Txid, Wtxid};
use serde::{Deserialize, Deserializer};

fn work_from_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Work, D::Error> {
    let s = String::deserialize(d)?;
    let bytes: [u8; 32] = bitcoin::hex::FromHex::from_hex(&format!("{s:0>64}"))
        .map_err(|e| serde::de::Error::custom(format!("chainwork: {e}")))?;
    Ok(Work::from_be_bytes(bytes))
}

/// `getblockchaininfo` (the fields Cairn reads).
#[derive(Debug, Clone, Deserialize)]
pub struct BlockchainInfo {
    /// `main`, `test`, `testnet4`, `signet` or `regtest`.
    pub chain: String,
    /// Height of the validated tip.
    pub blocks: u32,
    /// Height of the best known header.
    pub headers: u32,
    /// Hash of the validated tip.
    #[serde(rename = "bestblockhash")]
    pub best_block_hash: BlockHash,
    /// Total work of the best chain.
    #[serde(rename = "chainwork", deserialize_with = "work_from_hex")]
    pub chain_work: Work,
    /// Whether the node is still in initial block download.
    #[serde(rename = "initialblockdownload", default)]
    pub initial_block_download: bool,
    /// Core's estimate of sync progress, 0 to 1.
    #[serde(rename = "verificationprogress", default)]
    pub verification_progress: f64,
}

/// The `scriptPubKey` object of `gettxout`.
#[derive(Debug, Clone, Deserialize)]
pub struct ScriptPubKeyInfo {
    /// The script, hex.
    pub hex: ScriptBuf,
}

/// `gettxout`: an unspent output.
#[derive(Debug, Clone, Deserialize)]
pub struct TxOutInfo {
    /// The tip the answer is valid at.
    #[serde(rename = "bestblock")]
    pub best_block: BlockHash,
    /// Confirmations (0 for a mempool output).
    pub confirmations: u32,
    /// The amount.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub value: Amount,
    /// The output script.
    #[serde(rename = "scriptPubKey")]
    pub script_pubkey: ScriptPubKeyInfo,
    /// Whether it is a coinbase output.
    pub coinbase: bool,
}

/// One unspent output found by `scantxoutset`.
#[derive(Debug, Clone, Deserialize)]
pub struct ScannedOutput {
    /// The transaction.
    pub txid: Txid,
    /// The output index.
    pub vout: u32,
    /// The output script.
    #[serde(rename = "scriptPubKey")]
    pub script_pubkey: ScriptBuf,
    /// The amount.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub amount: Amount,
    /// Whether it is a coinbase output.
    #[serde(default)]
    pub coinbase: bool,
    /// The height of the block that created it.
    pub height: u32,
}

impl ScannedOutput {
    /// The outpoint.
    pub fn outpoint(&self) -> OutPoint {
        OutPoint::new(self.txid, self.vout)
    }
}

/// `scantxoutset start`.
#[derive(Debug, Clone, Deserialize)]
pub struct ScanResult {
    /// Whether the scan completed.
    pub success: bool,
    /// The height scanned at.
    pub height: u32,
    /// The tip scanned at.
    #[serde(rename = "bestblock")]
    pub best_block: BlockHash,
    /// The outputs found.
    pub unspents: Vec<ScannedOutput>,
    /// Their total.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub total_amount: Amount,
}

/// The `fees` object of `testmempoolaccept`.
#[derive(Debug, Clone, Deserialize)]
pub struct MempoolFees {
    /// The transaction's fee.
    #[serde(with = "bitcoin::amount::serde::as_btc")]
    pub base: Amount,
}

/// One result of `testmempoolaccept`.
#[derive(Debug, Clone, Deserialize)]
pub struct MempoolAccept {
    /// The transaction id.
    pub txid: Txid,
    /// The witness transaction id.
    pub wtxid: Wtxid,
    /// Whether the mempool would accept it.
    pub allowed: bool,
    /// Its virtual size, when accepted.
    #[serde(default)]
    pub vsize: Option<u64>,
    /// Its fees, when accepted.
    #[serde(default)]
    pub fees: Option<MempoolFees>,
    /// Core's reject reason, when refused.
    #[serde(rename = "reject-reason", default)]
    pub reject_reason: Option<String>,
}
