//! Where the node learns about the chain. Every source is checked, never
//! trusted: headers go through [`crate::HeaderChain`], transactions through
//! SPV proofs. Bitcoin Core's RPC is the first source; Bitcoin P2P with
//! compact block filters and Esplora implement the same trait.

use bitcoin::block::Header;
use bitcoin::merkle_tree::MerkleBlock;
use bitcoin::{Block, BlockHash, FeeRate, OutPoint, Transaction, Txid};

use crate::network::ChainNetwork;
use crate::rpc::{codes, RpcClient, RpcConfig, RpcError, TxOutInfo};

/// Why a source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Bitcoin Core's RPC failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The source contradicted itself (e.g. it reorged between two calls).
    #[error("the chain source changed while it was being read: {0}")]
    Inconsistent(String),
}

impl SourceError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Rpc(e) => e.is_transient(),
            SourceError::Inconsistent(_) => true,
        }
    }
}

/// An unspent output as a source reports it.
pub type UnspentOutput = TxOutInfo;

/// A chain source.
pub trait ChainSource {
    /// A short description for status output, without credentials.
    fn describe(&self) -> String;
    /// The source's best tip: height and hash.
    fn tip(&self) -> Result<(u32, BlockHash), SourceError>;
    /// The best-chain block hashes at `heights`, in order.
    fn hashes_at(&self, heights: &[u32]) -> Result<Vec<BlockHash>, SourceError>;
    /// The headers of `hashes`, in order.
    fn headers(&self, hashes: &[BlockHash]) -> Result<Vec<Header>, SourceError>;
    /// A whole block.
    fn block(&self, hash: &BlockHash) -> Result<Block, SourceError>;
    /// A transaction, looked up in `block` when given.
    fn transaction(
        &self,
        txid: &Txid,
        block: Option<&BlockHash>,
    ) -> Result<Transaction, SourceError>;
    /// A BIP37 inclusion proof of `txid` in `block`; without `block`, in
    /// the block the source finds for it (Bitcoin Core finds it while an
    /// output of the transaction is unspent, or always with `-txindex`).
    /// `None` when the source finds no block holding it (unconfirmed,
    /// reorged out, or unknown).
    fn inclusion_proof(
        &self,
        txid: &Txid,
        block: Option<&BlockHash>,
    ) -> Result<Option<MerkleBlock>, SourceError>;
    /// The output if it is unspent at the source's tip; with
    /// `include_mempool`, an output spent by a mempool transaction counts as
    /// spent (and one created by it as unspent).
    fn unspent(
        &self,
        outpoint: &OutPoint,
        include_mempool: bool,
    ) -> Result<Option<UnspentOutput>, SourceError>;
    /// Broadcasts a transaction.
    fn broadcast(&self, tx: &Transaction) -> Result<Txid, SourceError>;
    /// A fee rate expected to confirm within `target_blocks`, if the source has one.
    fn fee_rate(&self, target_blocks: u16) -> Result<Option<FeeRate>, SourceError>;
}

/// Bitcoin Core, over JSON-RPC.
#[derive(Debug)]
pub struct RpcSource {
    client: RpcClient,
    user_agent: String,
}

impl RpcSource {
    /// Connects and checks that Core runs `config.network`.
    pub fn connect(config: RpcConfig) -> Result<Self, RpcError> {
        let client = RpcClient::new(config)?;
        client.check_network()?;
        let user_agent = client.user_agent()?;
        Ok(RpcSource { client, user_agent })
    }

    /// The underlying client, for calls outside the trait.
    pub fn client(&self) -> &RpcClient {
        &self.client
    }

    /// The network this source was checked for.
    pub fn network(&self) -> ChainNetwork {
        self.client.config().network
    }
}

impl ChainSource for RpcSource {
    fn describe(&self) -> String {
        format!(
            "Bitcoin Core RPC at {} ({})",
            self.client.config().url,
            self.user_agent
        )
    }

    fn tip(&self) -> Result<(u32, BlockHash), SourceError> {
        let info = self.client.blockchain_info()?;
        Ok((info.blocks, info.best_block_hash))
    }

    fn hashes_at(&self, heights: &[u32]) -> Result<Vec<BlockHash>, SourceError> {
        Ok(self.client.block_hashes(heights)?)
    }

    fn headers(&self, hashes: &[BlockHash]) -> Result<Vec<Header>, SourceError> {
        Ok(self.client.block_headers(hashes)?)
    }

    fn block(&self, hash: &BlockHash) -> Result<Block, SourceError> {
        Ok(self.client.block(hash)?)
    }

    fn transaction(
        &self,
        txid: &Txid,
        block: Option<&BlockHash>,
    ) -> Result<Transaction, SourceError> {
        Ok(self.client.raw_transaction(txid, block)?)
    }

    fn inclusion_proof(
        &self,
        txid: &Txid,
        block: Option<&BlockHash>,
    ) -> Result<Option<MerkleBlock>, SourceError> {
        match self.client.tx_out_proof(&[*txid], block) {
            Ok(p) => Ok(Some(p)),
            // "Transaction not yet in block" / "not found in specified block".
            Err(e) if e.code() == Some(codes::INVALID_ADDRESS_OR_KEY) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn unspent(
        &self,
        outpoint: &OutPoint,
        include_mempool: bool,
    ) -> Result<Option<UnspentOutput>, SourceError> {
        Ok(self.client.tx_out(outpoint, include_mempool)?)
    }

    fn broadcast(&self, tx: &Transaction) -> Result<Txid, SourceError> {
        Ok(self.client.send_raw_transaction(tx)?)
    }

    fn fee_rate(&self, target_blocks: u16) -> Result<Option<FeeRate>, SourceError> {
        Ok(self.client.estimate_smart_fee(target_blocks)?)
    }
}
