//! Integration tests live in `tests/tests/`; this library holds what
//! several of them share.

use bitcoin::{OutPoint, TxOut};
use cairn_chain_anchor::rpc::{RpcClient, RpcError};
use cairn_chain_anchor::{sync_headers, HeaderChain, RpcSource, SyncEvent};
use cairn_devnet::DevWallet;
use cairn_node::chain::unix_now;
use cairn_node::Store;

/// The wallet that mines in the tests.
pub fn miner() -> DevWallet {
    DevWallet::from_secret([7u8; 32]).unwrap()
}

/// A second wallet, paid by the miner.
pub fn other() -> DevWallet {
    DevWallet::from_secret([9u8; 32]).unwrap()
}

/// The RPC code and reject reason of a refused call.
pub fn reason(e: RpcError) -> (i64, String) {
    match e {
        RpcError::Server { code, message, .. } => (code, message),
        other => panic!("expected a server error, got {other}"),
    }
}

/// The coinbase output of the block at `height` (paying `w`).
pub fn coinbase_coin(c: &RpcClient, height: u32) -> (OutPoint, TxOut) {
    let block = c.block(&c.block_hash(height).unwrap()).unwrap();
    let cb = &block.txdata[0];
    (OutPoint::new(cb.compute_txid(), 0), cb.output[0].clone())
}

/// Syncs `chain` from the devnet, persisting into `store`; returns the events.
pub fn sync(chain: &mut HeaderChain, source: &RpcSource, store: &Store) -> Vec<SyncEvent> {
    let mut events = Vec::new();
    sync_headers(
        chain,
        source,
        &unix_now,
        &mut |update, chain| store.apply_chain_update(update, chain),
        &mut |e| events.push(e),
    )
    .unwrap();
    events
}
