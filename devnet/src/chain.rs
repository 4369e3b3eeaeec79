//! The devnet's chain state, sans I/O: blocks, the active chain, the UTXO
//! set with undo data, a transaction index, and the mempool. Blocks are mined
//! for real at the regtest target; reorgs happen the way Bitcoin Core does
//! them (`invalidateblock`, then the most-work valid chain wins).

use std::collections::{HashMap, HashSet};

use bitcoin::block::{Header, Version};
use bitcoin::blockdata::constants::genesis_block;
use bitcoin::hashes::Hash;
use bitcoin::merkle_tree::MerkleBlock;
use bitcoin::pow::{CompactTarget, Target, Work};
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::transaction::Version as TxVersion;
use bitcoin::{
    absolute, opcodes, Amount, Block, BlockHash, Network, OutPoint, ScriptBuf, Sequence,
    Transaction, TxIn, TxMerkleNode, TxOut, Txid, Witness,
};

use crate::mempool::{Mempool, Reject};

/// Blocks before a coinbase output may be spent.
pub const COINBASE_MATURITY: u32 = 100;
/// Regtest's subsidy halving interval.
pub const HALVING_INTERVAL: u32 = 150;
/// Regtest's proof-of-work limit, as compact bits.
pub const REGTEST_BITS: u32 = 0x207f_ffff;
/// Maximum block weight.
pub const MAX_BLOCK_WEIGHT: u64 = 4_000_000;
/// Most blocks one `generate` call may mine.
pub const MAX_GENERATE: u32 = 100_000;

/// An unspent output and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    /// The output.
    pub out: TxOut,
    /// Height of the block that created it.
    pub height: u32,
    /// Whether it is a coinbase output.
    pub coinbase: bool,
}

#[derive(Debug, Clone)]
struct BlockRecord {
    block: Block,
    height: u32,
    work: Work,
    invalid: bool,
    /// Arrival order, to break ties between equal-work tips the way Core does.
    sequence: u64,
}

/// An error of a chain operation, with Core's RPC code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ChainError {
    /// Core's RPC error code.
    pub code: i64,
    /// Core's message.
    pub message: String,
}

impl ChainError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        ChainError {
            code,
            message: message.into(),
        }
    }

    /// -5 "Block not found".
    pub fn block_not_found() -> Self {
        ChainError::new(-5, "Block not found")
    }
}

/// The regtest block subsidy at `height`.
pub fn subsidy(height: u32) -> Amount {
    let halvings = height / HALVING_INTERVAL;
    if halvings >= 64 {
        return Amount::ZERO;
    }
    Amount::from_sat((50 * 100_000_000) >> halvings)
}

/// Whether an output can never be spent (Core's `CScript::IsUnspendable`).
pub fn is_unspendable(script: &ScriptBuf) -> bool {
    script.is_op_return() || script.len() > 10_000
}

/// The devnet chain.
#[derive(Debug)]
pub struct DevChain {
    blocks: HashMap<BlockHash, BlockRecord>,
    active: Vec<BlockHash>,
    utxo: HashMap<OutPoint, Coin>,
    undo: HashMap<BlockHash, Vec<(OutPoint, Coin)>>,
    tx_index: HashMap<Txid, (BlockHash, usize)>,
    /// The mempool.
    pub mempool: Mempool,
    mock_time: Option<u64>,
    next_sequence: u64,
    /// Fee rates (sat/kvB) of transactions in recently mined blocks.
    recent_fee_rates: Vec<Vec<u64>>,
}

impl Default for DevChain {
    fn default() -> Self {
        Self::new()
    }
}

impl DevChain {
    /// A chain holding only regtest's genesis block.
    pub fn new() -> Self {
        let genesis = genesis_block(Network::Regtest);
        let hash = genesis.block_hash();
        let mut blocks = HashMap::new();
        blocks.insert(
            hash,
            BlockRecord {
                work: genesis.header.work(),
                block: genesis,
                height: 0,
                invalid: false,
                sequence: 0,
            },
        );
        DevChain {
            blocks,
            active: vec![hash],
            utxo: HashMap::new(),
            undo: HashMap::new(),
            tx_index: HashMap::new(),
            mempool: Mempool::default(),
            mock_time: None,
            next_sequence: 1,
            recent_fee_rates: Vec::new(),
        }
    }

    /// The node's clock: the mock time if set, else the system clock.
    pub fn now(&self) -> u64 {
        self.mock_time.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
    }

    /// `setmocktime`: 0 restores the system clock.
    pub fn set_mock_time(&mut self, t: u64) {
        self.mock_time = (t != 0).then_some(t);
    }

    /// Height of the active tip.
    pub fn height(&self) -> u32 {
        (self.active.len() - 1) as u32
    }

    /// Hash of the active tip.
    pub fn tip(&self) -> BlockHash {
        self.active[self.active.len() - 1]
    }

    /// Total work of the active chain.
    pub fn chain_work(&self) -> Work {
        self.blocks[&self.tip()].work
    }

    /// The active-chain hash at `height`.
    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.active.get(height as usize).copied()
    }

    /// A known block (active or not) and its height.
    pub fn block(&self, hash: &BlockHash) -> Option<(&Block, u32)> {
        self.blocks.get(hash).map(|r| (&r.block, r.height))
    }

    /// Whether `hash` is in the active chain.
    pub fn is_active(&self, hash: &BlockHash) -> bool {
        self.blocks
            .get(hash)
            .is_some_and(|r| self.active.get(r.height as usize) == Some(hash))
    }

    /// Confirmations of an active block (0 if not active).
    pub fn confirmations(&self, hash: &BlockHash) -> u32 {
        match self.blocks.get(hash) {
            Some(r) if self.is_active(hash) => self.height() - r.height + 1,
            _ => 0,
        }
    }

    /// Median time of the 11 blocks ending at `hash`.
    pub fn median_time_past(&self, hash: &BlockHash) -> u32 {
        let mut times = Vec::with_capacity(11);
        let mut cur = self.blocks.get(hash);
        while let Some(r) = cur {
            times.push(r.block.header.time);
            if times.len() == 11 || r.height == 0 {
                break;
            }
            cur = self.blocks.get(&r.block.header.prev_blockhash);
        }
        times.sort_unstable();
        times[times.len() / 2]
    }

    /// An unspent output of the active chain.
    pub fn coin(&self, outpoint: &OutPoint) -> Option<&Coin> {
        self.utxo.get(outpoint)
    }

    /// Every unspent output whose script is in `scripts`.
    pub fn coins_paying(&self, scripts: &HashSet<ScriptBuf>) -> Vec<(OutPoint, Coin)> {
        let mut found: Vec<(OutPoint, Coin)> = self
            .utxo
            .iter()
            .filter(|(_, c)| scripts.contains(&c.out.script_pubkey))
            .map(|(o, c)| (*o, c.clone()))
            .collect();
        found.sort_by_key(|(o, c)| (c.height, o.txid.to_byte_array(), o.vout));
        found
    }

    /// A confirmed transaction of the active chain and its block.
    pub fn confirmed_tx(&self, txid: &Txid) -> Option<(&Transaction, BlockHash)> {
        let (hash, i) = self.tx_index.get(txid)?;
        Some((&self.blocks[hash].block.txdata[*i], *hash))
    }

    /// `gettxoutproof`: a BIP37 proof of `txids` in `block` (or the block
    /// the index finds for the first of them).
    pub fn tx_out_proof(
        &self,
        txids: &[Txid],
        block: Option<BlockHash>,
    ) -> Result<MerkleBlock, ChainError> {
        if txids.is_empty() {
            return Err(ChainError::new(-8, "Parameter 'txids' cannot be empty"));
        }
        let unique: HashSet<Txid> = txids.iter().copied().collect();
        if unique.len() != txids.len() {
            return Err(ChainError::new(-8, "Invalid parameter, duplicated txid"));
        }
        let hash = match block {
            Some(h) => h,
            None => {
                self.tx_index
                    .get(&txids[0])
                    .ok_or_else(|| ChainError::new(-5, "Transaction not yet in block"))?
                    .0
            }
        };
        let (b, _) = self.block(&hash).ok_or_else(ChainError::block_not_found)?;
        let found = b
            .txdata
            .iter()
            .filter(|t| unique.contains(&t.compute_txid()))
            .count();
        if found != unique.len() {
            return Err(ChainError::new(
                -5,
                "Not all transactions found in specified or retrieved block",
            ));
        }
        Ok(MerkleBlock::from_block_with_predicate(b, |t| {
            unique.contains(t)
        }))
    }

    /// Accepts `tx` into the mempool (or only checks, with `test_only`).
    pub fn accept(
        &mut self,
        tx: &Transaction,
        test_only: bool,
    ) -> Result<crate::mempool::Accepted, Reject> {
        let next_height = self.height() + 1;
        let mtp = self.median_time_past(&self.tip());
        let Self { mempool, utxo, .. } = self;
        mempool.accept(tx, utxo, next_height, mtp, test_only)
    }

    /// Mines `n` blocks paying `script`, with the mempool's transactions.
    pub fn generate(&mut self, n: u32, script: &ScriptBuf) -> Result<Vec<BlockHash>, ChainError> {
        if n > MAX_GENERATE {
            return Err(ChainError::new(
                -8,
                format!("at most {MAX_GENERATE} blocks per call"),
            ));
        }
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(self.mine_one(script, true)?);
        }
        Ok(out)
    }

    /// `generateblock` with no transactions: one block paying `script` that
    /// leaves the mempool as it is.
    pub fn generate_empty(&mut self, script: &ScriptBuf) -> Result<BlockHash, ChainError> {
        self.mine_one(script, false)
    }

    fn mine_one(
        &mut self,
        script: &ScriptBuf,
        with_mempool: bool,
    ) -> Result<BlockHash, ChainError> {
        let block = self.build_block(script, with_mempool);
        let hash = block.block_hash();
        self.add_block(block)?;
        if self.tip() != hash {
            return Err(ChainError::new(-1, "mined block did not become the tip"));
        }
        Ok(hash)
    }

    fn build_block(&self, script: &ScriptBuf, with_mempool: bool) -> Block {
        let parent = self.tip();
        let height = self.height() + 1;
        let (txs, fees) = if with_mempool {
            self.mempool.select(MAX_BLOCK_WEIGHT - 4_000)
        } else {
            (Vec::new(), Amount::ZERO)
        };
        let mut sig = Builder::new().push_int(i64::from(height));
        // Core's miner appends OP_0; the byte keeps the script at least 2 bytes long.
        sig = sig.push_opcode(opcodes::OP_0);
        let coinbase = Transaction {
            version: TxVersion::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: sig.into_script(),
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[[0u8; 32]]),
            }],
            output: vec![TxOut {
                value: subsidy(height) + fees,
                script_pubkey: script.clone(),
            }],
        };
        let mut txdata = Vec::with_capacity(txs.len() + 1);
        txdata.push(coinbase);
        txdata.extend(txs);
        let mut block = Block {
            header: Header {
                version: Version::from_consensus(0x2000_0000),
                prev_blockhash: parent,
                merkle_root: TxMerkleNode::all_zeros(),
                time: 0,
                bits: CompactTarget::from_consensus(REGTEST_BITS),
                nonce: 0,
            },
            txdata,
        };
        // BIP141 witness commitment in the coinbase.
        let witness_root = block
            .witness_root()
            .unwrap_or_else(|| unreachable!("a block with a coinbase has a witness root"));
        let commitment = Block::compute_witness_commitment(&witness_root, &[0u8; 32]);
        let mut data = PushBytesBuf::new();
        data.extend_from_slice(&[0xaa, 0x21, 0xa9, 0xed])
            .and_then(|_| data.extend_from_slice(commitment.as_byte_array()))
            .unwrap_or_else(|_| unreachable!("36 bytes fit a push"));
        block.txdata[0].output.push(TxOut {
            value: Amount::ZERO,
            script_pubkey: Builder::new()
                .push_opcode(opcodes::all::OP_RETURN)
                .push_slice(data)
                .into_script(),
        });
        block.header.merkle_root = block
            .compute_merkle_root()
            .unwrap_or_else(|| unreachable!("a block with transactions has a merkle root"));
        let mtp = self.median_time_past(&parent);
        block.header.time = (self.now().min(u64::from(u32::MAX)) as u32).max(mtp + 1);
        let target = Target::from_compact(block.header.bits);
        while !target.is_met_by(block.block_hash()) {
            block.header.nonce = block.header.nonce.wrapping_add(1);
            if block.header.nonce == 0 {
                block.header.time += 1;
            }
        }
        block
    }

    /// Adds a block to the index and makes the most-work valid chain active.
    fn add_block(&mut self, block: Block) -> Result<(), ChainError> {
        let hash = block.block_hash();
        let parent = self
            .blocks
            .get(&block.header.prev_blockhash)
            .ok_or_else(|| ChainError::new(-25, "prev-blk-not-found"))?;
        let record = BlockRecord {
            height: parent.height + 1,
            work: parent.work + block.header.work(),
            invalid: parent.invalid,
            block,
            sequence: self.next_sequence,
        };
        self.next_sequence += 1;
        let extends_tip = record.block.header.prev_blockhash == self.tip();
        self.blocks.insert(hash, record);
        if extends_tip {
            match self.connect_tip(hash) {
                Ok(()) => {
                    self.mempool.remove_confirmed(&self.blocks[&hash].block);
                    Ok(())
                }
                Err(reason) => {
                    self.mark_invalid(hash);
                    Err(ChainError::new(-25, reason))
                }
            }
        } else {
            self.activate_best_chain(Vec::new());
            Ok(())
        }
    }

    /// Connects `hash` (a child of the tip) to the active chain.
    fn connect_tip(&mut self, hash: BlockHash) -> Result<(), String> {
        let record = &self.blocks[&hash];
        let height = record.height;
        let block = &record.block;
        let mut spent = Vec::new();
        let mut fees = Amount::ZERO;
        let mut rates = Vec::new();
        let mut created: Vec<(OutPoint, Coin)> = Vec::new();
        let mut view_spent: HashSet<OutPoint> = HashSet::new();
        let mut local: HashMap<OutPoint, Coin> = HashMap::new();
        for (i, tx) in block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            if i > 0 {
                let mut in_value = Amount::ZERO;
                for input in &tx.input {
                    let op = input.previous_output;
                    if !view_spent.insert(op) {
                        return Err("bad-txns-inputs-missingorspent".into());
                    }
                    let coin = local
                        .remove(&op)
                        .or_else(|| self.utxo.get(&op).cloned())
                        .ok_or("bad-txns-inputs-missingorspent")?;
                    if coin.coinbase && height - coin.height < COINBASE_MATURITY {
                        return Err("bad-txns-premature-spend-of-coinbase".into());
                    }
                    in_value += coin.out.value;
                    spent.push((op, coin));
                }
                let out_value: Amount = tx.output.iter().map(|o| o.value).sum();
                let fee = in_value
                    .checked_sub(out_value)
                    .ok_or("bad-txns-in-belowout")?;
                fees += fee;
                let vsize = tx.vsize() as u64;
                rates.push(fee.to_sat() * 1000 / vsize.max(1));
            }
            for (vout, out) in tx.output.iter().enumerate() {
                if is_unspendable(&out.script_pubkey) {
                    continue;
                }
                let op = OutPoint::new(txid, vout as u32);
                let coin = Coin {
                    out: out.clone(),
                    height,
                    coinbase: i == 0,
                };
                local.insert(op, coin.clone());
                created.push((op, coin));
            }
        }
        let cb_out: Amount = block.txdata[0].output.iter().map(|o| o.value).sum();
        if cb_out > subsidy(height) + fees {
            return Err("bad-cb-amount".into());
        }
        // Apply.
        for (op, _) in &spent {
            self.utxo.remove(op);
        }
        for (op, coin) in created {
            // Outputs spent within the same block are not in the set.
            if !view_spent.contains(&op) {
                self.utxo.insert(op, coin);
            }
        }
        for (i, tx) in block.txdata.iter().enumerate() {
            self.tx_index.insert(tx.compute_txid(), (hash, i));
        }
        self.undo.insert(hash, spent);
        self.active.push(hash);
        self.recent_fee_rates.push(rates);
        if self.recent_fee_rates.len() > 10 {
            self.recent_fee_rates.remove(0);
        }
        Ok(())
    }

    /// Disconnects the tip; returns its non-coinbase transactions.
    fn disconnect_tip(&mut self) -> Vec<Transaction> {
        let hash = self.tip();
        let block = self.blocks[&hash].block.clone();
        for tx in &block.txdata {
            let txid = tx.compute_txid();
            for vout in 0..tx.output.len() {
                self.utxo.remove(&OutPoint::new(txid, vout as u32));
            }
            self.tx_index.remove(&txid);
        }
        for (op, coin) in self.undo.remove(&hash).unwrap_or_default() {
            self.utxo.insert(op, coin);
        }
        self.active.pop();
        self.recent_fee_rates.pop();
        block.txdata.into_iter().skip(1).collect()
    }

    fn mark_invalid(&mut self, hash: BlockHash) {
        // The block and every descendant.
        let mut bad: HashSet<BlockHash> = HashSet::from([hash]);
        let mut by_height: Vec<(u32, BlockHash)> =
            self.blocks.iter().map(|(h, r)| (r.height, *h)).collect();
        by_height.sort_unstable();
        for (_, h) in by_height {
            if bad.contains(&self.blocks[&h].block.header.prev_blockhash) {
                bad.insert(h);
            }
        }
        for h in bad {
            if let Some(r) = self.blocks.get_mut(&h) {
                r.invalid = true;
            }
        }
    }

    /// Makes the most-work valid chain active; disconnected transactions go
    /// back to the mempool when they still fit.
    fn activate_best_chain(&mut self, mut returned: Vec<Transaction>) {
        loop {
            let best = self
                .blocks
                .iter()
                .filter(|(_, r)| !r.invalid)
                .max_by(|a, b| {
                    a.1.work
                        .cmp(&b.1.work)
                        .then(b.1.sequence.cmp(&a.1.sequence))
                })
                .map(|(h, _)| *h)
                .unwrap_or_else(|| unreachable!("genesis is always valid"));
            let current = self.tip();
            // Equal work: the current tip stays (the active tip is never invalid).
            if best == current || self.blocks[&best].work <= self.blocks[&current].work {
                break;
            }
            // Path from the fork point up to `best`.
            let mut path = Vec::new();
            let mut cur = best;
            while !self.is_active(&cur) {
                path.push(cur);
                cur = self.blocks[&cur].block.header.prev_blockhash;
            }
            let fork_height = self.blocks[&cur].height;
            while self.height() > fork_height {
                let mut txs = self.disconnect_tip();
                returned.append(&mut txs);
            }
            let mut failed = None;
            for h in path.into_iter().rev() {
                if self.connect_tip(h).is_err() {
                    failed = Some(h);
                    break;
                }
                let block = self.blocks[&h].block.clone();
                self.mempool.remove_confirmed(&block);
            }
            match failed {
                Some(h) => self.mark_invalid(h),
                None => break,
            }
        }
        // Re-admit what left the chain and what was already waiting, in order.
        let waiting = self.mempool.drain();
        for tx in returned.into_iter().chain(waiting) {
            let _ = self.accept(&tx, false);
        }
    }

    /// `invalidateblock`: marks `hash` and its descendants invalid and
    /// activates the best remaining chain.
    pub fn invalidate(&mut self, hash: &BlockHash) -> Result<(), ChainError> {
        let record = self
            .blocks
            .get(hash)
            .ok_or_else(ChainError::block_not_found)?;
        if record.height == 0 {
            return Err(ChainError::new(-8, "Cannot invalidate the genesis block"));
        }
        let mut returned = Vec::new();
        if self.is_active(hash) {
            let h = record.height;
            while self.height() >= h {
                returned.append(&mut self.disconnect_tip());
            }
        }
        self.mark_invalid(*hash);
        self.activate_best_chain(returned);
        Ok(())
    }

    /// `reconsiderblock`: clears the invalid mark of `hash`, its ancestors
    /// and descendants, and activates the best chain.
    pub fn reconsider(&mut self, hash: &BlockHash) -> Result<(), ChainError> {
        if !self.blocks.contains_key(hash) {
            return Err(ChainError::block_not_found());
        }
        let mut cur = *hash;
        while let Some(r) = self.blocks.get_mut(&cur) {
            r.invalid = false;
            cur = r.block.header.prev_blockhash;
        }
        let mut good: HashSet<BlockHash> = HashSet::from([*hash]);
        let mut by_height: Vec<(u32, BlockHash)> =
            self.blocks.iter().map(|(h, r)| (r.height, *h)).collect();
        by_height.sort_unstable();
        for (_, h) in by_height {
            if good.contains(&self.blocks[&h].block.header.prev_blockhash) {
                good.insert(h);
                if let Some(r) = self.blocks.get_mut(&h) {
                    r.invalid = false;
                }
            }
        }
        self.activate_best_chain(Vec::new());
        Ok(())
    }

    /// `estimatesmartfee`: the median fee rate (sat/kvB) of transactions in
    /// the last ten blocks, if there were any.
    pub fn estimate_fee_rate(&self) -> Option<u64> {
        let mut all: Vec<u64> = self.recent_fee_rates.iter().flatten().copied().collect();
        if all.is_empty() {
            return None;
        }
        all.sort_unstable();
        Some(all[all.len() / 2].max(crate::mempool::MIN_RELAY_FEE_SAT_PER_KVB))
    }
}
