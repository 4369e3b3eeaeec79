//! Anchored identities end to end on the devnet (bitcoind when on PATH):
//! one node anchors its identity from its funding wallet; a second node, with
//! only the exported bundle and its own connection to the chain, checks it
//! against its own validated header chain and follows its rotations from the
//! chain alone, through a reorg; a third restores it from the words.

use bitcoin::secp256k1::Secp256k1;
use bitcoin::Amount;
use cairn_chain_anchor::anchor::{own_seal, rotation_tx};
use cairn_chain_anchor::source::ChainSource;
use cairn_chain_anchor::{
    Anchor, Bundle, ChainNetwork, ChainParams, HeaderChain, RpcSource, Verdict,
};
use cairn_devnet::Devnet;
use cairn_node::anchoring::{self, Standing, DEFAULT_SEAL_VALUE};
use cairn_node::chain::unix_now;
use cairn_node::funds::{identity_descriptors, Funds};
use cairn_node::identity::OwnIdentity;
use cairn_node::Store;
use cairn_tests::{coinbase_coin, miner, sync};
use cairn_wallet::kel::{establishment_event, KeyEventLog};
use cairn_wallet::{MasterKey, SeedPhrase};

/// A node's store, header chain and chain source.
struct Node {
    _dir: tempfile::TempDir,
    store: Store,
    chain: HeaderChain,
    source: RpcSource,
}

impl Node {
    fn new(devnet: &Devnet) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        Node {
            _dir: dir,
            store,
            chain: HeaderChain::new(ChainParams::new(ChainNetwork::Regtest)),
            source: RpcSource::connect(devnet.rpc_config()).unwrap(),
        }
    }

    fn sync(&mut self) {
        sync(&mut self.chain, &self.source, &self.store);
    }

    /// Syncs, then brings the stored anchors of `id` up to date.
    fn refresh(&mut self, id: &cairn_wallet::IdentityId) -> Option<Standing> {
        self.sync();
        anchoring::refresh_stored(
            &self.store,
            ChainNetwork::Regtest,
            id,
            &self.chain,
            &self.source,
        )
        .unwrap()
        .1
    }

    /// What this node says about `bundle`.
    fn verdict(&mut self, bundle: &mut Bundle, confirmations: u32) -> Verdict {
        self.sync();
        anchoring::check_bundle(bundle, &self.chain, &self.source, confirmations)
            .unwrap()
            .verification
            .verdict
    }
}

/// Alice: an identity from her words and a funding wallet with 1 BTC, whose
/// inception seal is built, stored and broadcast (`cairn anchor`), not mined.
fn anchoring_alice(devnet: &Devnet) -> (Node, MasterKey, OwnIdentity, Anchor) {
    let c = devnet.client().unwrap();
    let w = miner();
    c.generate_to_address(101, &w.address()).unwrap();
    let mut alice = Node::new(devnet);
    let phrase = SeedPhrase::parse(
        "legal winner thank year wave sausage worth useful legal winner thank yellow",
    )
    .unwrap();
    let master = MasterKey::new(&phrase.to_seed(""));
    let log = KeyEventLog::new(vec![establishment_event(&master, 0, None).unwrap()]);
    let state = log.verify().unwrap();
    alice.store.set_own_identity(&state.id, &log).unwrap();
    let own = OwnIdentity { log, state };
    let keys = identity_descriptors(&master, ChainNetwork::Regtest).unwrap();
    let mut funds = Funds::create(&alice.store, ChainNetwork::Regtest, &keys).unwrap();
    let addr = funds.receive_address().unwrap().address;
    let one = Amount::from_btc(1.0).unwrap();
    let pay = w.pay(
        coinbase_coin(&c, 1),
        addr.script_pubkey(),
        one,
        Amount::from_sat(2_000),
    );
    c.send_raw_transaction(&pay).unwrap();
    c.generate_to_address(1, &w.address()).unwrap();
    sync(&mut alice.chain, &alice.source, &alice.store);
    funds
        .scan(&alice.chain, &alice.source, None, &mut |_, _| {})
        .unwrap();
    assert_eq!(funds.balance().confirmed, one);
    let rate = bitcoin::FeeRate::from_sat_per_vb_u32(2);
    let anchor =
        anchoring::build_inception(&mut funds, &master, &own, DEFAULT_SEAL_VALUE, rate).unwrap();
    let sealed = anchoring::future_rotations(&master, &own.state.id, 0).unwrap();
    let txid = anchoring::publish_inception(
        &alice.store,
        &mut funds,
        &alice.source,
        &own,
        &anchor,
        &sealed,
        unix_now(),
    )
    .unwrap();
    assert_eq!(txid, anchor.txid());
    drop(funds);
    (alice, master, own, anchor)
}

#[test]
fn an_anchored_identity_is_current_for_a_node_holding_only_its_bundle() {
    let devnet = Devnet::start().unwrap();
    let c = devnet.client().unwrap();
    let w = miner();

    let (mut alice, master, own, anchor) = anchoring_alice(&devnet);
    let seal = anchor.seal_outpoint();
    assert_eq!(anchor.tx.output[0].value, DEFAULT_SEAL_VALUE);
    println!("inception seal transaction: {} vB", anchor.tx.vsize());
    // A second inception for the same identity is refused.
    let mut funds = Funds::load(&alice.store, ChainNetwork::Regtest)
        .unwrap()
        .unwrap();
    let rate = bitcoin::FeeRate::from_sat_per_vb_u32(2);
    let again =
        anchoring::build_inception(&mut funds, &master, &own, DEFAULT_SEAL_VALUE, rate).unwrap();
    assert!(matches!(
        anchoring::publish_inception(
            &alice.store,
            &mut funds,
            &alice.source,
            &own,
            &again,
            &[],
            0
        ),
        Err(anchoring::AnchorError::AlreadyAnchored(..))
    ));
    drop(funds);
    assert_eq!(alice.refresh(&own.state.id), Some(Standing::Unconfirmed));

    // Bob has only the bundle text; before any block it is pending.
    let mut bob = Node::new(&devnet);
    let text = anchoring::own_bundle(&alice.store, ChainNetwork::Regtest, &own)
        .unwrap()
        .to_text();
    let mut bundle = Bundle::from_text(&text).unwrap();
    assert_eq!(
        bob.verdict(&mut bundle, 6),
        Verdict::Pending {
            rotation_index: None,
            pending_index: 0,
            confirmations: 0,
            needed: 6
        }
    );

    let mined = c.generate_to_address(1, &w.address()).unwrap()[0];
    let height = c.block_count().unwrap();
    assert_eq!(
        alice.refresh(&own.state.id),
        Some(Standing::Confirmed {
            height,
            confirmations: 1
        })
    );
    c.generate_to_address(5, &w.address()).unwrap();
    assert_eq!(
        alice.refresh(&own.state.id),
        Some(Standing::Confirmed {
            height,
            confirmations: 6
        })
    );
    let stored = alice
        .store
        .anchors(ChainNetwork::Regtest, &own.state.id)
        .unwrap();
    assert_eq!(stored[0].block(), Some(mined), "the proof is kept");

    // Bob, from the text Alice exports now: current, at the right height.
    let text = anchoring::own_bundle(&alice.store, ChainNetwork::Regtest, &own)
        .unwrap()
        .to_text();
    let mut bundle = Bundle::from_text(&text).unwrap();
    let verdict = bob.verdict(&mut bundle, 6);
    assert_eq!(
        verdict,
        Verdict::Current {
            rotation_index: 0,
            seal: seal.to_string(),
            anchor_height: height,
            confirmations: 6,
            tip_height: height + 5,
            tip_hash: bob.chain.tip().hash.to_string(),
        }
    );
    // The earlier, proof-less bundle reaches the same answer: Bob's node
    // fetched the proof from its own source and checked it.
    let mut early = Bundle::from_text(&text).unwrap();
    early.anchors[0].proof = None;
    assert_eq!(bob.verdict(&mut early, 6), verdict);
    assert_eq!(early.anchors[0].block(), Some(mined));

    // Someone with the seed (a thief) spends the seal to a key Alice does
    // not know and publishes no event: Bob's answer is stale, never current.
    let secp = Secp256k1::new();
    let thief = MasterKey::new(&SeedPhrase::generate(12).unwrap().to_seed(""));
    let theirs = own_seal(
        &secp,
        &own.state.establishment[0],
        &thief.signing_key(5).unwrap().public(),
    )
    .unwrap();
    let mine = own_seal(
        &secp,
        &own.state.establishment[0],
        &master.signing_key(1).unwrap().public(),
    )
    .unwrap();
    let spend = rotation_tx(
        &stored[0],
        &mine,
        &master.signing_key(1).unwrap(),
        &theirs,
        Amount::from_sat(300),
    )
    .unwrap();
    assert!(spend.vsize() <= 140, "a seal spend is {} vB", spend.vsize());
    bob.source.broadcast(&spend).unwrap();
    // Only in the mempool: not yet a confirmed spend.
    assert!(matches!(
        bob.verdict(&mut bundle, 6),
        Verdict::Current { .. }
    ));
    c.generate_to_address(1, &w.address()).unwrap();
    assert_eq!(
        bob.verdict(&mut bundle, 6),
        Verdict::Stale {
            rotation_index: 0,
            seal: seal.to_string()
        }
    );
}

/// `cairn rotate` as the node does it: build from the seed, store, broadcast.
fn rotate(alice: &mut Node, master: &MasterKey, own: &OwnIdentity) -> (OwnIdentity, Anchor) {
    let anchors = alice
        .store
        .anchors(ChainNetwork::Regtest, &own.state.id)
        .unwrap();
    let rate = bitcoin::FeeRate::from_sat_per_vb_u32(2);
    let plan = anchoring::build_rotation(master, own, anchors, rate).unwrap();
    alice
        .store
        .put_own_bundle(
            ChainNetwork::Regtest,
            &own.state.id,
            &plan.log,
            &plan.anchors,
            &plan.sealed,
        )
        .unwrap();
    let anchor = plan.anchors.last().unwrap().clone();
    alice.source.broadcast(&anchor.tx).unwrap();
    let state = plan.log.verify().unwrap();
    (
        OwnIdentity {
            log: plan.log,
            state,
        },
        anchor,
    )
}

#[test]
fn two_rotations_are_followed_from_the_chain_through_a_reorg_and_restored_from_the_words() {
    let devnet = Devnet::start().unwrap();
    let c = devnet.client().unwrap();
    let w = miner();
    let (mut alice, master, own, _) = anchoring_alice(&devnet);
    c.generate_to_address(1, &w.address()).unwrap();
    assert!(matches!(
        alice.refresh(&own.state.id),
        Some(Standing::Confirmed { .. })
    ));

    // Bob takes Alice's bundle once, at the inception, and never again.
    let mut bob = Node::new(&devnet);
    let mut bundle = anchoring::own_bundle(&alice.store, ChainNetwork::Regtest, &own).unwrap();
    assert!(matches!(
        bob.verdict(&mut bundle, 1),
        Verdict::Current {
            rotation_index: 0,
            ..
        }
    ));

    // A node with only the hot key of rotation 0 cannot rotate: the seal
    // opens only with the next key (Bitcoin consensus refuses the rest; see
    // the chain tests), and the builder refuses to sign with another key.
    let anchors = alice
        .store
        .anchors(ChainNetwork::Regtest, &own.state.id)
        .unwrap();
    let hot = own_seal(
        &Secp256k1::new(),
        own.state.current(),
        &master.signing_key(1).unwrap().public(),
    )
    .unwrap();
    assert_eq!(
        rotation_tx(
            &anchors[0],
            &hot,
            &master.signing_key(0).unwrap(),
            &hot,
            Amount::from_sat(300)
        ),
        Err(cairn_chain_anchor::anchor::BuildError::WrongKey)
    );

    // Two rotations, each mined; Bob follows each from the chain alone.
    let (own1, a1) = rotate(&mut alice, &master, &own);
    assert!(a1.tx.vsize() <= 140, "a rotation is {} vB", a1.tx.vsize());
    println!("rotation transaction: {} vB", a1.tx.vsize());
    c.generate_to_address(1, &w.address()).unwrap();
    assert!(matches!(
        bob.verdict(&mut bundle, 1),
        Verdict::Current {
            rotation_index: 1,
            ..
        }
    ));
    let (own2, _) = rotate(&mut alice, &master, &own1);
    let mined = c.generate_to_address(1, &w.address()).unwrap()[0];
    let verdict = bob.verdict(&mut bundle, 1);
    assert!(
        matches!(
            verdict,
            Verdict::Current {
                rotation_index: 2,
                ..
            }
        ),
        "{verdict}"
    );
    assert_eq!(
        bundle.log, own2.log,
        "Bob rebuilt Alice's log from the chain"
    );
    let checked = anchoring::check_bundle(&mut bundle, &bob.chain, &bob.source, 1).unwrap();
    assert_eq!(
        checked.verification.usable().unwrap().signing_key,
        master.signing_key(2).unwrap().public()
    );

    // The block with rotation 2 leaves the best chain: back at rotation 1.
    c.invalidate_block(&mined).unwrap();
    c.generate_empty_block(&w.address()).unwrap();
    c.generate_empty_block(&w.address()).unwrap();
    assert_eq!(
        bob.verdict(&mut bundle, 1),
        Verdict::Reorged {
            rotation_index: Some(1),
            left_index: 2
        }
    );
    let checked = anchoring::check_bundle(&mut bundle, &bob.chain, &bob.source, 1).unwrap();
    assert_eq!(
        checked.verification.usable().unwrap().signing_key,
        master.signing_key(1).unwrap().public()
    );
    // Mined again (it waited in the mempool): current at rotation 2 once more.
    let again = c.generate_to_address(1, &w.address()).unwrap()[0];
    assert_ne!(again, mined);
    let verdict = bob.verdict(&mut bundle, 1);
    assert!(
        matches!(verdict, Verdict::Current { rotation_index: 2, anchor_height, .. } if anchor_height == c.block_count().unwrap()),
        "{verdict}"
    );

    // Alice's laptop is lost: on a new machine, from the words alone and a
    // chain source, the identity comes back at rotation 2 with its coins.
    let mut laptop = Node::new(&devnet);
    laptop.sync();
    let log0 = KeyEventLog::new(vec![establishment_event(&master, 0, None).unwrap()]);
    let fresh = OwnIdentity {
        state: log0.verify().unwrap(),
        log: log0,
    };
    laptop
        .store
        .set_own_identity(&fresh.state.id, &fresh.log)
        .unwrap();
    let keys = identity_descriptors(&master, ChainNetwork::Regtest).unwrap();
    let mut funds = Funds::create(&laptop.store, ChainNetwork::Regtest, &keys).unwrap();
    let (restored, report) = anchoring::restore_from_chain(
        &laptop.store,
        &mut funds,
        &master,
        &fresh,
        &laptop.chain,
        &laptop.source,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(report.rotation_index(), Some(2));
    assert_eq!(restored.state.id, own.state.id);
    assert_eq!(restored.log, own2.log);
    assert_eq!(
        restored.state.current().signing_key,
        master.signing_key(2).unwrap().public()
    );
    let mut original = Funds::load(&alice.store, ChainNetwork::Regtest)
        .unwrap()
        .unwrap();
    sync(&mut alice.chain, &alice.source, &alice.store);
    original
        .scan(&alice.chain, &alice.source, None, &mut |_, _| {})
        .unwrap();
    assert_eq!(funds.balance(), original.balance());
    assert!(funds.balance().confirmed > Amount::ZERO);
    // The restored node's bundle is what Alice's node would export.
    let mut again = anchoring::own_bundle(&laptop.store, ChainNetwork::Regtest, &restored).unwrap();
    let verdict = bob.verdict(&mut again, 1);
    assert!(
        matches!(
            verdict,
            Verdict::Current {
                rotation_index: 2,
                ..
            }
        ),
        "{verdict}"
    );

    // Rotations 3 and 4 mined in one block (4 spends 3's unconfirmed seal):
    // Bob follows both, the second from the same block as the first.
    let (own3, _) = rotate(&mut alice, &master, &restored);
    let (own4, _) = rotate(&mut alice, &master, &own3);
    c.generate_to_address(1, &w.address()).unwrap();
    let checked = {
        bob.sync();
        anchoring::check_bundle(&mut bundle, &bob.chain, &bob.source, 1).unwrap()
    };
    assert_eq!(checked.followed, vec![3, 4]);
    assert!(
        matches!(
            checked.verification.verdict,
            Verdict::Current {
                rotation_index: 4,
                ..
            }
        ),
        "{}",
        checked.verification.verdict
    );
    assert_eq!(bundle.log, own4.log);
}
