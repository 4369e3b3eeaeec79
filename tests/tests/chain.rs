//! The chain layer end to end: the RPC client against the devnet over HTTP
//! on loopback (bitcoind when on PATH, else the built-in stand-in), typed
//! errors, Core's mempool reject reasons, header sync into a real RocksDB
//! store, SPV proofs against the synced chain, and reorgs of depth 1 and 6.

use std::collections::HashMap;
use std::time::Duration;

use bitcoin::consensus::serialize;
use bitcoin::{Amount, BlockHash, OutPoint, ScriptBuf, TxOut};
use cairn_chain_anchor::rpc::{codes, RpcAuth, RpcClient, RpcError};
use cairn_chain_anchor::source::ChainSource;
use cairn_chain_anchor::{
    verify_inclusion, ChainNetwork, ChainParams, HeaderChain, RpcSource, SyncEvent,
};
use cairn_devnet::{DevWallet, Devnet};
use cairn_node::chain::unix_now;
use cairn_node::Store;
use cairn_tests::{coinbase_coin, miner, other, reason, sync};
use zeroize::Zeroizing;

#[test]
fn rpc_client_speaks_every_method_to_the_devnet() {
    let devnet = Devnet::start().unwrap();
    let c = devnet.client().unwrap();
    let info = c.check_network().unwrap();
    assert_eq!(info.chain, "regtest");
    assert_eq!(info.blocks, 0);

    let w = miner();
    let mined = c.generate_to_address(101, &w.address()).unwrap();
    assert_eq!(mined.len(), 101);
    assert_eq!(c.block_count().unwrap(), 101);
    assert_eq!(c.block_hash(1).unwrap(), mined[0]);
    assert_eq!(
        c.block_hashes(&[1, 101]).unwrap(),
        vec![mined[0], mined[100]]
    );
    let header = c.block_header(&mined[5]).unwrap();
    assert_eq!(header.block_hash(), mined[5]);
    assert_eq!(
        c.block_headers(&mined[..3]).unwrap()[2].block_hash(),
        mined[2]
    );

    // Blocks are consensus-valid: merkle root, witness commitment, BIP34 height.
    // (Heights 1-16 are pushed as OP_1..OP_16, as Core does; the `bitcoin`
    // crate reads BIP34 heights only from data pushes, so check block 21.)
    let block = c.block(&mined[20]).unwrap();
    assert_eq!(block.header, c.block_header(&mined[20]).unwrap());
    assert!(block.check_merkle_root());
    assert!(block.check_witness_commitment());
    assert_eq!(block.bip34_block_height().unwrap(), 21);
    assert!(block.header.target().is_met_by(block.block_hash()));
    assert_eq!(block.header.prev_blockhash, mined[19]);

    // The coinbase of block 1: an unspent, mature 50 BTC output.
    let (op, out) = coinbase_coin(&c, 1);
    assert_eq!(out.value, Amount::from_btc(50.0).unwrap());
    let txout = c.tx_out(&op, true).unwrap().unwrap();
    assert_eq!(txout.value, out.value);
    assert_eq!(txout.confirmations, 101);
    assert!(txout.coinbase);
    assert_eq!(txout.script_pubkey.hex, w.script_pubkey());
    let tx = c.raw_transaction(&op.txid, Some(&mined[0])).unwrap();
    assert_eq!(tx.compute_txid(), op.txid);

    let scan = c.scan_tx_out_set(&[w.script_pubkey()]).unwrap();
    assert!(scan.success);
    assert_eq!(scan.unspents.len(), 101);
    assert_eq!(scan.total_amount, Amount::from_btc(5050.0).unwrap());
    assert_eq!(scan.height, 101);

    // No fee estimate before any transaction was mined.
    assert_eq!(c.estimate_smart_fee(6).unwrap(), None);

    // Spend it: testmempoolaccept, sendrawtransaction, mine, proofs.
    let spend = w.pay(
        (op, out),
        other().script_pubkey(),
        Amount::from_btc(1.0).unwrap(),
        Amount::from_sat(2_000),
    );
    let check = c.test_mempool_accept(std::slice::from_ref(&spend)).unwrap();
    assert!(check[0].allowed, "{:?}", check[0].reject_reason);
    assert_eq!(
        check[0].fees.as_ref().unwrap().base,
        Amount::from_sat(2_000)
    );
    let txid = c.send_raw_transaction(&spend).unwrap();
    assert_eq!(txid, spend.compute_txid());
    assert!(
        c.tx_out(&op, true).unwrap().is_none(),
        "spent in the mempool"
    );
    assert_eq!(c.raw_transaction(&txid, None).unwrap(), spend);
    let confirming = c.generate_to_address(6, &w.address()).unwrap();
    assert_eq!(c.raw_transaction(&txid, None).unwrap(), spend);
    assert!(c.tx_out(&op, false).unwrap().is_none());
    let fee = c.estimate_smart_fee(6).unwrap();
    // The stand-in estimates from recent blocks; Core's estimator needs far
    // more history than one transaction and may still have none.
    if devnet.kind() == "builtin" {
        assert!(
            fee.expect("an estimate after a mined tx")
                .to_sat_per_vb_ceil()
                >= 1
        );
    }

    // Header sync through the chain-source trait, then an SPV proof from
    // gettxoutproof checked against our own validated chain.
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let source = RpcSource::connect(devnet.rpc_config()).unwrap();
    assert!(source.describe().contains(devnet.url()));
    let mut chain = HeaderChain::new(ChainParams::new(ChainNetwork::Regtest));
    sync(&mut chain, &source, &store);
    assert_eq!(chain.height(), 107);
    assert_eq!(chain.tip().hash, *confirming.last().unwrap());
    let proof = c.tx_out_proof(&[txid], None).unwrap();
    assert_eq!(proof.header.block_hash(), confirming[0]);
    let inc = verify_inclusion(&chain, &serialize(&proof), &serialize(&spend), 6).unwrap();
    assert_eq!((inc.height, inc.confirmations), (102, 6));
    let via_trait = source
        .inclusion_proof(&txid, Some(&confirming[0]))
        .unwrap()
        .unwrap();
    assert_eq!(via_trait, proof);

    // The new output is unspent at the tip.
    let paid = OutPoint::new(txid, 0);
    assert_eq!(
        source.unspent(&paid, true).unwrap().unwrap().confirmations,
        6
    );
}

#[test]
fn rpc_errors_are_typed() {
    let mut devnet = Devnet::start().unwrap();

    // Wrong password: auth failed.
    let mut cfg = devnet.rpc_config();
    cfg.auth = RpcAuth::UserPass {
        user: "__cookie__".into(),
        password: Zeroizing::new("not the cookie".into()),
    };
    let e = RpcClient::new(cfg).unwrap().blockchain_info().unwrap_err();
    assert!(matches!(e, RpcError::AuthFailed { .. }), "{e}");

    // A regtest node configured as mainnet: wrong network, also through the source.
    let mut cfg = devnet.rpc_config();
    cfg.network = ChainNetwork::Mainnet;
    let e = RpcClient::new(cfg.clone())
        .unwrap()
        .check_network()
        .unwrap_err();
    assert!(
        matches!(&e, RpcError::WrongNetwork { expected, found } if expected == "main" && found == "regtest"),
        "{e}"
    );
    assert!(matches!(
        RpcSource::connect(cfg),
        Err(RpcError::WrongNetwork { .. })
    ));

    // A missing cookie file.
    let mut cfg = devnet.rpc_config();
    cfg.auth = RpcAuth::Cookie(devnet.cookie_path().with_file_name("missing"));
    let e = RpcClient::new(cfg).unwrap().blockchain_info().unwrap_err();
    assert!(matches!(e, RpcError::Cookie { .. }), "{e}");

    // Server errors carry Core's code and message.
    let c = devnet.client().unwrap();
    let e = c.block_hash(5).unwrap_err();
    assert_eq!(e.code(), Some(codes::INVALID_PARAMETER), "{e}");
    let e = c.block_header(&BlockHash::from_raw_hash(bitcoin::hashes::Hash::all_zeros()));
    assert_eq!(e.unwrap_err().code(), Some(codes::INVALID_ADDRESS_OR_KEY));
    let e = c.call("nosuchmethod", serde_json::json!([])).unwrap_err();
    assert_eq!(e.code(), Some(codes::METHOD_NOT_FOUND));

    // Warming up (-28): retried with backoff until the node is ready...
    if let Some(server) = devnet.builtin() {
        server.set_warmup(Some("Loading block index…"));
        let waiter = std::thread::spawn({
            let cfg = devnet.rpc_config();
            move || RpcClient::new(cfg).unwrap().block_count()
        });
        std::thread::sleep(Duration::from_millis(400));
        server.set_warmup(None);
        assert_eq!(waiter.join().unwrap().unwrap(), 0);
        // ...and a typed error when it stays warming up past the wait.
        server.set_warmup(Some("Loading block index…"));
        let mut cfg = devnet.rpc_config();
        cfg.warmup_wait = Duration::from_millis(300);
        let e = RpcClient::new(cfg).unwrap().block_count().unwrap_err();
        assert!(matches!(e, RpcError::WarmingUp { .. }), "{e}");
        server.set_warmup(None);
    }

    // Stop the server: unreachable, on the kept-alive connection too.
    assert_eq!(c.block_count().unwrap(), 0);
    devnet.stop();
    let e = c.block_count().unwrap_err();
    assert!(matches!(e, RpcError::Unreachable { .. }), "{e}");
    assert!(e.is_transient());
}

#[test]
fn devnet_rejects_with_core_reasons() {
    let devnet = Devnet::start().unwrap();
    let c = devnet.client().unwrap();
    let w = miner();
    c.generate_to_address(110, &w.address()).unwrap();
    let to = other().script_pubkey();
    let one = Amount::from_btc(1.0).unwrap();
    let fee = Amount::from_sat(2_000);

    // An invalid signature: Core's script check (libbitcoinconsensus here) refuses it.
    let coin = coinbase_coin(&c, 1);
    let mut bad = w.pay(coin.clone(), to.clone(), one, fee);
    let mut sig = bad.input[0].witness.to_vec();
    sig[0][10] ^= 1;
    bad.input[0].witness = bitcoin::Witness::from_slice(&sig);
    let (code, msg) = reason(c.send_raw_transaction(&bad).unwrap_err());
    assert_eq!(code, codes::VERIFY_REJECTED);
    assert!(
        msg.starts_with("mandatory-script-verify-flag-failed"),
        "{msg}"
    );
    let t = c.test_mempool_accept(&[bad]).unwrap();
    assert!(!t[0].allowed);

    // A signature by another key over the right message is refused too.
    let mut forged = w.pay(coin.clone(), to.clone(), one, fee);
    other().sign(&mut forged, std::slice::from_ref(&coin));
    let (code, _) = reason(c.send_raw_transaction(&forged).unwrap_err());
    assert_eq!(code, codes::VERIFY_REJECTED);

    // An immature coinbase (block 105 has 6 confirmations).
    let young = coinbase_coin(&c, 105);
    let (code, msg) = reason(
        c.send_raw_transaction(&w.pay(young, to.clone(), one, fee))
            .unwrap_err(),
    );
    assert_eq!(code, codes::VERIFY_REJECTED);
    assert!(
        msg.starts_with("bad-txns-premature-spend-of-coinbase"),
        "{msg}"
    );

    // Below the minimum relay fee.
    let (code, msg) = reason(
        c.send_raw_transaction(&w.pay(coin.clone(), to.clone(), one, Amount::from_sat(10)))
            .unwrap_err(),
    );
    assert_eq!(code, codes::VERIFY_REJECTED);
    assert!(msg.starts_with("min relay fee not met"), "{msg}");

    // A valid spend, then a double spend in the mempool (same fee: no replacement)...
    let first = w.pay(coin.clone(), to.clone(), one, fee);
    c.send_raw_transaction(&first).unwrap();
    let second = w.pay(coin.clone(), w.script_pubkey(), one, fee);
    let (code, msg) = reason(c.send_raw_transaction(&second).unwrap_err());
    assert_eq!(code, codes::VERIFY_REJECTED);
    assert!(msg.starts_with("insufficient fee"), "{msg}");
    // ...and after the first confirms, a double spend of a spent output.
    c.generate_to_address(1, &w.address()).unwrap();
    let (code, msg) = reason(c.send_raw_transaction(&second).unwrap_err());
    assert_eq!(code, codes::VERIFY_ERROR);
    assert_eq!(msg, "bad-txns-inputs-missingorspent");
    let t = c.test_mempool_accept(&[second]).unwrap();
    assert_eq!(t[0].reject_reason.as_deref(), Some("missing-inputs"));
    // Resending the confirmed transaction: already in the chain.
    let e = c.send_raw_transaction(&first).unwrap_err();
    assert_eq!(e.code(), Some(codes::VERIFY_ALREADY_IN_CHAIN), "{e}");
}

/// Mines `n` blocks paying `script` through the RPC.
fn mine(c: &RpcClient, n: u32, w: &DevWallet) -> Vec<BlockHash> {
    c.generate_to_address(n, &w.address()).unwrap()
}

#[test]
fn reorgs_of_depth_1_and_6_are_reported_exactly_and_survive_restart() {
    let devnet = Devnet::start().unwrap();
    let c = devnet.client().unwrap();
    let source = RpcSource::connect(devnet.rpc_config()).unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let params = ChainParams::new(ChainNetwork::Regtest);
    let w = miner();
    mine(&c, 30, &w);

    let mut reorgs = Vec::new();
    for (depth, alt) in [
        (1u32, other()),
        (6, DevWallet::from_secret([11u8; 32]).unwrap()),
    ] {
        let store = Store::open(store_dir.path()).unwrap();
        let mut chain = store.load_header_chain(params.clone()).unwrap();
        sync(&mut chain, &source, &store);
        let tip = chain.height();
        let old: Vec<(u32, BlockHash)> = (tip - depth + 1..=tip)
            .rev()
            .map(|h| (h, chain.at_height(h).unwrap().hash))
            .collect();
        // Reorg the devnet: invalidate the first block to leave, mine a longer branch.
        c.invalidate_block(&old.last().unwrap().1).unwrap();
        let new = mine(&c, depth + 1, &alt);
        let events = sync(&mut chain, &source, &store);
        let reorg = events
            .iter()
            .find_map(|e| match e {
                SyncEvent::Reorg {
                    disconnected,
                    connected,
                } => Some((disconnected.clone(), connected.clone())),
                _ => None,
            })
            .expect("a reorg event");
        assert_eq!(reorg.0, old, "depth {depth}: exactly the blocks that left");
        let joined: Vec<(u32, BlockHash)> = new
            .iter()
            .enumerate()
            .map(|(i, h)| (tip - depth + 1 + i as u32, *h))
            .collect();
        assert_eq!(
            reorg.1, joined,
            "depth {depth}: exactly the blocks that joined"
        );
        assert_eq!(chain.tip().hash, *new.last().unwrap());
        reorgs.push(depth);

        // Restart: the stored chain equals the one in memory.
        let snapshot: HashMap<u32, BlockHash> = (0..=chain.height())
            .map(|h| (h, chain.at_height(h).unwrap().hash))
            .collect();
        let side = chain.side_len();
        drop(store);
        let store = Store::open(store_dir.path()).unwrap();
        let restored = store.load_header_chain(params.clone()).unwrap();
        assert_eq!(restored.tip(), chain.tip());
        assert_eq!(restored.side_len(), side);
        for (h, hash) in snapshot {
            assert_eq!(restored.at_height(h).unwrap().hash, hash);
        }
        // The left blocks are kept as a side branch and known as such.
        for (_, hash) in &old {
            assert!(matches!(
                restored.status(hash),
                cairn_chain_anchor::BlockStatus::SideBranch { .. }
            ));
        }
    }
    assert_eq!(reorgs, vec![1, 6]);

    // Transactions of a reorged-out block return to the mempool and confirm again.
    mine(&c, 100, &w);
    let coin = coinbase_coin(&c, 2);
    let tx = w.pay(
        coin,
        ScriptBuf::new_op_return([1u8; 8]),
        Amount::ZERO,
        Amount::from_sat(5_000),
    );
    c.send_raw_transaction(&tx).unwrap();
    let b = mine(&c, 1, &w)[0];
    c.invalidate_block(&b).unwrap();
    assert!(c.raw_transaction(&tx.compute_txid(), None).is_ok());
    let b2 = mine(&c, 2, &other());
    let proof = c.tx_out_proof(&[tx.compute_txid()], None).unwrap();
    assert_eq!(proof.header.block_hash(), b2[0]);
}

/// A seal (chain-anchor's taproot construction) on the devnet: funded like
/// any output, spendable only through its next-key leaf with the next key's
/// signature. A signature by another key (the current hot key, say) is
/// refused by consensus with Core's reject reason; the accepted spend reveals
/// the next key to anyone who checks it against the seal.
#[test]
fn a_seal_spends_only_with_the_next_key() {
    use bitcoin::hashes::Hash;
    use bitcoin::key::{Keypair, Secp256k1};
    use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
    use bitcoin::taproot::{LeafVersion, TapLeafHash};
    use bitcoin::{absolute, transaction, Sequence, Transaction, TxIn, Witness};
    use cairn_chain_anchor::seal::{next_key_script, Seal};
    use cairn_wallet::kel::Digest;

    let devnet = Devnet::start().unwrap();
    let c = devnet.client().unwrap();
    let w = miner();
    c.generate_to_address(101, &w.address()).unwrap();
    let secp = Secp256k1::new();
    let next = Keypair::from_seckey_slice(&secp, &[0x33; 32]).unwrap();
    let hot = Keypair::from_seckey_slice(&secp, &[0x44; 32]).unwrap();
    let seal = Seal::new(&secp, Digest([0x5e; 32]), &next.x_only_public_key().0).unwrap();

    let one = Amount::from_btc(1.0).unwrap();
    let fee = Amount::from_sat(2_000);
    let fund = w.pay(coinbase_coin(&c, 1), seal.script_pubkey(), one, fee);
    c.send_raw_transaction(&fund).unwrap();
    c.generate_to_address(1, &w.address()).unwrap();
    let prevout = TxOut {
        value: one,
        script_pubkey: seal.script_pubkey(),
    };
    let spend_with = |signer: &Keypair| {
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(fund.compute_txid(), 0),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                ..TxIn::default()
            }],
            output: vec![TxOut {
                value: one - fee,
                script_pubkey: other().script_pubkey(),
            }],
        };
        let leaf_script = next_key_script(&next.x_only_public_key().0);
        let leaf = TapLeafHash::from_script(&leaf_script, LeafVersion::TapScript);
        let sighash = SighashCache::new(&tx)
            .taproot_script_spend_signature_hash(
                0,
                &Prevouts::All(std::slice::from_ref(&prevout)),
                leaf,
                TapSighashType::Default,
            )
            .unwrap();
        let msg = bitcoin::secp256k1::Message::from_digest(sighash.to_byte_array());
        let sig = secp.sign_schnorr_no_aux_rand(&msg, signer);
        let control = seal
            .control_block(&secp, &next.x_only_public_key().0)
            .unwrap();
        let mut witness = Witness::new();
        witness.push(sig.as_ref());
        witness.push(leaf_script.as_bytes());
        witness.push(control.serialize());
        tx.input[0].witness = witness;
        tx
    };

    let forged = spend_with(&hot);
    let (code, msg) = reason(c.send_raw_transaction(&forged).unwrap_err());
    assert_eq!(code, codes::VERIFY_REJECTED);
    assert!(
        msg.starts_with("mandatory-script-verify-flag-failed"),
        "{msg}"
    );

    let rotation = spend_with(&next);
    c.send_raw_transaction(&rotation).unwrap();
    c.generate_to_address(1, &w.address()).unwrap();
    let mined = c.raw_transaction(&rotation.compute_txid(), None).unwrap();
    assert_eq!(
        seal.check_spend(&secp, &mined.input[0].witness),
        Ok(next.x_only_public_key().0),
        "the spend reveals the next key"
    );
}

#[test]
fn the_funding_wallet_follows_the_chain_through_a_reorg_a_payment_and_a_restart() {
    use cairn_node::funds::{identity_descriptors, Funds, FundsError};
    use cairn_wallet::{MasterKey, SeedPhrase};

    let devnet = Devnet::start().unwrap();
    let c = devnet.client().unwrap();
    let w = miner();
    c.generate_to_address(101, &w.address()).unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let store = Store::open(store_dir.path()).unwrap();
    let source = RpcSource::connect(devnet.rpc_config()).unwrap();
    let mut chain = HeaderChain::new(ChainParams::new(ChainNetwork::Regtest));
    let phrase = SeedPhrase::parse(
        "legal winner thank year wave sausage worth useful legal winner thank yellow",
    )
    .unwrap();
    let master = MasterKey::new(&phrase.to_seed(""));
    let keys = identity_descriptors(&master, ChainNetwork::Regtest).unwrap();

    let mut funds = Funds::create(&store, ChainNetwork::Regtest, &keys).unwrap();
    let scan = |funds: &mut Funds, chain: &mut HeaderChain| {
        sync(chain, &source, &store);
        let r = funds.scan(chain, &source, None, &mut |_, _| {}).unwrap();
        assert_eq!(funds.tip().hash, chain.tip().hash);
        r
    };

    // Coins sent to the wallet's address show up once the block is scanned.
    let addr = funds.receive_address().unwrap().address;
    let one = Amount::from_btc(1.0).unwrap();
    let pay = w.pay(
        coinbase_coin(&c, 1),
        addr.script_pubkey(),
        one,
        Amount::from_sat(2_000),
    );
    c.send_raw_transaction(&pay).unwrap();
    let mined = c.generate_to_address(1, &w.address()).unwrap()[0];
    let r = scan(&mut funds, &mut chain);
    assert_eq!((r.blocks, r.height), (102, 102));
    assert_eq!(funds.balance().confirmed, one);
    // The address is used now: the next one differs.
    assert_ne!(funds.receive_address().unwrap().address, addr);

    // A reorg takes the block away; the payment returns in the new branch.
    c.invalidate_block(&mined).unwrap();
    c.generate_to_address(2, &other().address()).unwrap();
    let r = scan(&mut funds, &mut chain);
    assert_eq!((r.blocks, r.height), (2, 103));
    assert_eq!(funds.balance().confirmed, one);

    // Another seed cannot spend; asking for more than there is says so.
    let to = other().address();
    let quarter = Amount::from_btc(0.25).unwrap();
    let rate = bitcoin::FeeRate::from_sat_per_vb_u32(2);
    let stranger = MasterKey::new(&SeedPhrase::generate(12).unwrap().to_seed(""));
    assert!(matches!(
        funds.build_payment(&to, quarter, rate, &stranger),
        Err(FundsError::WrongSeed)
    ));
    let too_much = funds.build_payment(&to, Amount::from_btc(2.0).unwrap(), rate, &master);
    assert!(
        matches!(&too_much, Err(FundsError::Build(m)) if m.contains("nsufficient")),
        "{too_much:?}"
    );

    // A payment: Core's rules accept it, the change counts as pending.
    let tx = funds.build_payment(&to, quarter, rate, &master).unwrap();
    assert!(tx.input.iter().all(|i| i.sequence.is_rbf()));
    let fee = funds.fee_of(&tx).unwrap();
    assert!(
        fee.to_sat() >= tx.vsize() as u64 * 2,
        "fee {fee} for {} vB",
        tx.vsize()
    );
    let txid = funds.broadcast(&source, tx, unix_now()).unwrap();
    assert_eq!(funds.balance().confirmed, Amount::ZERO);
    assert_eq!(funds.balance().trusted_pending, one - quarter - fee);

    // After a restart the wallet remembers the payment and the addresses it gave out.
    let next = funds.receive_address().unwrap().address;
    drop(funds);
    let mut funds = Funds::load(&store, ChainNetwork::Regtest).unwrap().unwrap();
    assert_eq!(funds.balance().trusted_pending, one - quarter - fee);
    assert_eq!(funds.receive_address().unwrap().address, next);
    assert!(Funds::load(&store, ChainNetwork::Testnet4)
        .unwrap()
        .is_none());

    let block = c.generate_to_address(1, &w.address()).unwrap()[0];
    assert!(c
        .block(&block)
        .unwrap()
        .txdata
        .iter()
        .any(|t| t.compute_txid() == txid));
    scan(&mut funds, &mut chain);
    assert_eq!(funds.balance().confirmed, one - quarter - fee);
    assert_eq!(funds.balance().trusted_pending, Amount::ZERO);
}
