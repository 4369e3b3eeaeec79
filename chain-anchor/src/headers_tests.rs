use super::*;
use crate::network::{ChainNetwork, ChainParams};
use bitcoin::block::Version;
use bitcoin::hashes::Hash;
use bitcoin::TxMerkleNode;

const NOW: u64 = 2_000_000_000;

fn regtest() -> ChainParams {
    ChainParams::new(ChainNetwork::Regtest)
}

/// Regtest limits with mainnet-style retargeting (so retarget rules can be
/// exercised with cheap proof-of-work).
fn retargeting() -> ChainParams {
    let mut p = regtest();
    p.consensus.no_pow_retargeting = false;
    p.consensus.allow_min_difficulty_blocks = false;
    p
}

pub(crate) fn mine(prev: BlockHash, time: u32, bits: CompactTarget, salt: u32) -> Header {
    let mut root = [0u8; 32];
    root[..4].copy_from_slice(&salt.to_le_bytes());
    let mut h = Header {
        version: Version::from_consensus(4),
        prev_blockhash: prev,
        merkle_root: TxMerkleNode::from_byte_array(root),
        time,
        bits,
        nonce: 0,
    };
    while !h.target().is_met_by(h.block_hash()) {
        h.nonce += 1;
    }
    h
}

/// `n` headers on top of `from`, 600 s apart, with the regtest limit bits.
fn extend(from: &HeaderEntry, n: u32, salt: u32) -> Vec<Header> {
    let bits = from.header.bits;
    let mut out = Vec::new();
    let (mut prev, mut time) = (from.hash, from.header.time);
    for i in 0..n {
        time += 600;
        let h = mine(
            prev,
            time,
            bits,
            salt.wrapping_mul(1_000_003).wrapping_add(i),
        );
        prev = h.block_hash();
        out.push(h);
    }
    out
}

fn chain_of(params: ChainParams, n: u32) -> HeaderChain {
    let mut c = HeaderChain::new(params);
    let hs = extend(&c.tip().clone(), n, 0);
    c.connect(&hs, NOW).unwrap();
    c
}

#[test]
fn extends_and_reports_connected_blocks() {
    let mut c = HeaderChain::new(regtest());
    let hs = extend(&c.tip().clone(), 10, 1);
    let u = c.connect(&hs, NOW).unwrap();
    assert_eq!(c.height(), 10);
    assert!(u.disconnected.is_empty());
    assert_eq!(
        u.connected,
        hs.iter()
            .enumerate()
            .map(|(i, h)| (i as u32 + 1, h.block_hash()))
            .collect::<Vec<_>>()
    );
    assert_eq!(u.added.len(), 10);
    // Sending the same headers again changes nothing.
    assert_eq!(c.connect(&hs, NOW).unwrap(), ChainUpdate::default());
    assert_eq!(
        c.status(&hs[4].block_hash()),
        BlockStatus::Best {
            height: 5,
            confirmations: 6
        }
    );
}

fn assert_unchanged(c: &HeaderChain, before: (u32, usize)) {
    assert_eq!(
        (c.height(), c.len()),
        before,
        "a refused batch changed the chain"
    );
}

#[test]
fn each_header_rule_has_its_own_error() {
    let mut c = chain_of(regtest(), 20);
    let before = (c.height(), c.len());
    let tip = *c.tip();

    // Bad proof-of-work: a nonce whose hash misses the target.
    let mut bad = mine(tip.hash, tip.header.time + 600, tip.header.bits, 7);
    while bad.target().is_met_by(bad.block_hash()) {
        bad.nonce += 1;
    }
    assert!(matches!(
        c.connect(&[bad], NOW),
        Err(HeaderError::BadProofOfWork { index: 0, .. })
    ));

    // Target above the network's limit.
    let easy = mine(
        tip.hash,
        tip.header.time + 600,
        CompactTarget::from_consensus(0x2100ffff),
        7,
    );
    assert!(matches!(
        c.connect(&[easy], NOW),
        Err(HeaderError::TargetOutOfRange { .. })
    ));

    // Time at the median time past of the previous 11.
    let mtp = Overlay {
        chain: &c,
        pending: vec![],
        pos: HashMap::new(),
    }
    .median_time_past(&tip, Loc::Best(tip.height));
    let old = mine(tip.hash, mtp, tip.header.bits, 7);
    assert!(
        matches!(c.connect(&[old], NOW), Err(HeaderError::TimeTooOld { median, .. }) if median == mtp)
    );

    // More than two hours ahead of the node's clock.
    let now = u64::from(tip.header.time) + 60;
    let future = mine(
        tip.hash,
        (now + MAX_FUTURE_DRIFT + 1) as u32,
        tip.header.bits,
        7,
    );
    assert!(matches!(
        c.connect(&[future], now),
        Err(HeaderError::TimeTooNew { .. })
    ));
    let just_ok = mine(
        tip.hash,
        (now + MAX_FUTURE_DRIFT) as u32,
        tip.header.bits,
        8,
    );
    assert!(c.clone().connect(&[just_ok], now).is_ok());

    // Unknown parent, reported with its position in the batch.
    let hs = extend(&tip, 3, 9);
    assert!(matches!(
        c.connect(&hs[1..], NOW),
        Err(HeaderError::UnknownParent { index: 0, .. })
    ));

    // An invalid header anywhere refuses the whole batch.
    let mut hs = extend(&tip, 5, 10);
    hs[4].nonce ^= 0xffff_ffff;
    while hs[4].target().is_met_by(hs[4].block_hash()) {
        hs[4].nonce = hs[4].nonce.wrapping_add(1);
    }
    assert!(matches!(
        c.connect(&hs, NOW),
        Err(HeaderError::BadProofOfWork { index: 4, .. })
    ));
    assert_unchanged(&c, before);
    // The valid headers before the bad one left no trace either.
    for h in &hs[..4] {
        assert_eq!(c.status(&h.block_hash()), BlockStatus::Unknown);
    }
    assert_eq!(c.connect(&hs[..4], NOW).expect("valid").connected.len(), 4);
}

#[test]
fn a_batch_that_branches_midway_is_taken_whole() {
    let mut c = chain_of(regtest(), 20);
    let fork = *c.at_height(18).expect("height 18");
    let mut batch = extend(&c.tip().clone(), 5, 1);
    batch.extend(extend(&fork, 3, 2));
    let u = c.connect(&batch, NOW).expect("valid batch");
    assert_eq!(c.height(), 25);
    assert_eq!(c.side_len(), 3);
    assert_eq!(u.added.len(), 8);
    assert_eq!(
        u.connected,
        batch[..5]
            .iter()
            .zip(21..)
            .map(|(h, height)| (height, h.block_hash()))
            .collect::<Vec<_>>()
    );
    assert!(!u.is_reorg());
    for h in &batch[5..] {
        assert!(matches!(
            c.status(&h.block_hash()),
            BlockStatus::SideBranch { .. }
        ));
    }
}

#[test]
fn wrong_target_after_a_retarget_is_rejected() {
    let params = retargeting();
    let interval = params.interval();
    let mut c = HeaderChain::new(params.clone());
    let hs = extend(&c.tip().clone(), interval - 1, 2);
    c.connect(&hs, NOW).unwrap();
    let last = *c.tip();
    assert_eq!(last.height, interval - 1);
    let genesis = *c.at_height(0).unwrap();
    let expected = retarget(
        &params,
        genesis.header.time,
        genesis.header.bits,
        last.header.time,
        last.header.bits,
    );
    // 2015 blocks 600 s apart: slightly faster than two weeks, so the target shrinks.
    assert_ne!(expected, last.header.bits);
    let wrong = mine(last.hash, last.header.time + 600, last.header.bits, 3);
    match c.connect(&[wrong], NOW) {
        Err(HeaderError::BadDifficulty {
            height,
            expected: e,
            found,
            ..
        }) => {
            assert_eq!(
                (height, e, found),
                (
                    interval,
                    expected.to_consensus(),
                    last.header.bits.to_consensus()
                )
            );
        }
        other => panic!("expected BadDifficulty, got {other:?}"),
    }
    let right = mine(last.hash, last.header.time + 600, expected, 3);
    c.connect(&[right], NOW).unwrap();
    assert_eq!(c.height(), interval);
    // Within a period the bits must stay the same.
    let tip = *c.tip();
    let drift = mine(tip.hash, tip.header.time + 600, last.header.bits, 4);
    assert!(matches!(
        c.connect(&[drift], NOW),
        Err(HeaderError::BadDifficulty { .. })
    ));
}

#[test]
fn mainnet_retarget_matches_bitcoin_core() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/pow-retarget.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let params = ChainParams::new(ChainNetwork::Mainnet);
    let bits = |s: &serde_json::Value| {
        CompactTarget::from_consensus(u32::from_str_radix(s.as_str().unwrap(), 16).unwrap())
    };
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for case in cases {
        let got = retarget(
            &params,
            case["first_time"].as_u64().unwrap() as u32,
            bits(&case["last_bits"]),
            case["last_time"].as_u64().unwrap() as u32,
            bits(&case["last_bits"]),
        );
        assert_eq!(got, bits(&case["expected"]), "{}", case["name"]);
        assert_eq!((case["last_height"].as_u64().unwrap() + 1) % 2016, 0);
    }
}

#[test]
fn checkpoints_pin_the_chain() {
    let mut params = regtest();
    let base = chain_of(params.clone(), 10);
    let cp = base.at_height(5).unwrap().hash;
    params.checkpoints = vec![(5, cp)];
    let mut c = HeaderChain::new(params);
    let hs: Vec<Header> = (1..=10)
        .map(|h| base.at_height(h).unwrap().header)
        .collect();
    c.connect(&hs, NOW).unwrap();
    // A longer fork from height 3 (below the checkpoint at 5) is refused.
    let fork_base = *c.at_height(3).unwrap();
    let fork = extend(&fork_base, 12, 77);
    assert!(matches!(
        c.connect(&fork, NOW),
        Err(HeaderError::ForkBelowCheckpoint {
            index: 0,
            height: 4,
            checkpoint: 5,
            ..
        })
    ));
    // On a fresh chain, another header at the checkpoint height is refused too.
    let mut fresh = HeaderChain::new(c.params().clone());
    let other = extend(&fresh.tip().clone(), 6, 99);
    assert!(matches!(
        fresh.connect(&other, NOW),
        Err(HeaderError::CheckpointMismatch { height: 5, .. })
    ));
    assert_eq!(c.height(), 10);
}

fn reorg(depth: u32) {
    let mut c = chain_of(regtest(), 30);
    let old_tip = c.height();
    let fork_point = *c.at_height(old_tip - depth).unwrap();
    let old: Vec<(u32, BlockHash)> = (old_tip - depth + 1..=old_tip)
        .rev()
        .map(|h| (h, c.at_height(h).unwrap().hash))
        .collect();
    let branch = extend(&fork_point, depth + 1, 500 + depth);
    let u = c.connect(&branch, NOW).unwrap();
    assert!(u.is_reorg());
    assert_eq!(u.disconnected, old, "exactly the blocks that left");
    let joined: Vec<(u32, BlockHash)> = branch
        .iter()
        .enumerate()
        .map(|(i, h)| (fork_point.height + 1 + i as u32, h.block_hash()))
        .collect();
    assert_eq!(u.connected, joined, "exactly the blocks that joined");
    assert_eq!(c.height(), old_tip + 1);
    for (h, hash) in &old {
        assert_eq!(c.status(hash), BlockStatus::SideBranch { height: *h });
    }
    // Restart from what a store would hold (chunks and side entries): the same state.
    let mut records = c.records(&u);
    assert!(records
        .chunks
        .iter()
        .all(|(_, b)| decode_chunk(b).is_some()));
    let best: Vec<Header> = c.best_headers(0).copied().collect();
    records.side_put = c.side_entries().copied().collect();
    let side: Vec<HeaderEntry> = records
        .side_put
        .iter()
        .map(|e| HeaderEntry::decode(&e.encode()).unwrap())
        .collect();
    let restored = HeaderChain::restore(regtest(), best, side).unwrap();
    assert_eq!(restored.tip(), c.tip());
    assert_eq!(restored.side_len(), c.side_len());
    for (_, hash) in old.iter().chain(joined.iter()) {
        assert_eq!(restored.status(hash), c.status(hash));
    }
    // And the restored chain keeps validating where it left off.
    let mut restored = restored;
    let more = extend(&restored.tip().clone(), 2, 9);
    restored.connect(&more, NOW).unwrap();
    assert_eq!(restored.height(), c.height() + 2);
}

#[test]
fn reorg_of_depth_1() {
    reorg(1);
}

#[test]
fn reorg_of_depth_6() {
    reorg(6);
}

#[test]
fn equal_work_branch_does_not_reorg() {
    let mut c = chain_of(regtest(), 10);
    let tip = c.tip().hash;
    let fork = *c.at_height(8).unwrap();
    let u = c.connect(&extend(&fork, 2, 42), NOW).unwrap();
    assert!(!u.is_reorg());
    assert_eq!(c.tip().hash, tip, "first seen wins at equal work");
    assert_eq!(c.side_len(), 2);
}

#[test]
fn low_work_flood_stores_nothing() {
    let mut c = chain_of(regtest(), 300);
    let before = (c.height(), c.len());
    let genesis = *c.at_height(0).unwrap();
    for batch in 0..100u32 {
        let flood = extend(&genesis, 200, 10_000 + batch);
        match c.connect(&flood, NOW) {
            Err(HeaderError::LowWork {
                len: 200,
                fork_height: 0,
                ..
            }) => {}
            other => panic!("batch {batch}: {other:?}"),
        }
        assert_unchanged(&c, before);
    }
}

#[test]
fn side_branches_are_bounded() {
    let mut c = chain_of(regtest(), 150);
    let fork = *c.at_height(140).unwrap();
    let mut kept = 0;
    for batch in 0..(MAX_SIDE_HEADERS / 10 + 5) as u32 {
        match c.connect(&extend(&fork, 10, 20_000 + batch), NOW) {
            Ok(_) => kept += 10,
            Err(HeaderError::SideBranchesFull) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(c.side_len() <= MAX_SIDE_HEADERS);
    }
    assert_eq!(kept, MAX_SIDE_HEADERS);
    // Side branches far below a new tip are pruned.
    let u = c
        .connect(&extend(&c.tip().clone(), MAX_SIDE_DEPTH + 20, 5), NOW)
        .unwrap();
    assert_eq!(u.pruned.len(), MAX_SIDE_HEADERS);
    assert_eq!(c.side_len(), 0);
}

#[test]
fn batch_size_is_bounded() {
    let mut c = HeaderChain::new(regtest());
    let g = c.tip().header;
    let many = vec![g; MAX_BATCH + 1];
    assert_eq!(
        c.connect(&many, NOW),
        Err(HeaderError::BatchTooLarge { len: MAX_BATCH + 1 })
    );
}

/// Testnet4-style rules (min-difficulty blocks, BIP94) with regtest's cheap limit.
fn testnet4_like() -> ChainParams {
    let mut p = retargeting();
    p.consensus.allow_min_difficulty_blocks = true;
    p.enforce_bip94 = true;
    p
}

#[test]
fn min_difficulty_blocks_and_bip94() {
    let params = testnet4_like();
    let interval = params.interval();
    let limit = params.consensus.max_attainable_target.to_compact_lossy();
    let mut c = HeaderChain::new(params.clone());
    c.connect(&extend(&c.tip().clone(), interval - 1, 3), NOW)
        .unwrap();
    let last = *c.tip();
    let genesis = *c.at_height(0).unwrap();
    // BIP94 retargets from the period's first block's bits.
    let normal = retarget(
        &params,
        genesis.header.time,
        genesis.header.bits,
        last.header.time,
        last.header.bits,
    );
    assert_ne!(normal, limit);

    // BIP94 time-warp rule: the period's first block may not be more than 600 s before its parent.
    let warped = mine(
        last.hash,
        last.header.time - BIP94_MAX_TIMEWARP - 1,
        normal,
        1,
    );
    assert!(matches!(
        c.connect(&[warped], NOW),
        Err(HeaderError::TimeWarp { .. })
    ));
    let boundary = mine(last.hash, last.header.time - BIP94_MAX_TIMEWARP, normal, 1);
    c.connect(&[boundary], NOW).unwrap();

    // More than 20 minutes after its parent, a block may use the limit...
    let tip = *c.tip();
    let slow = mine(tip.hash, tip.header.time + 1201, limit, 2);
    c.connect(&[slow], NOW).unwrap();
    // ...but the next block on time must go back to the period's real difficulty.
    let tip = *c.tip();
    let cheat = mine(tip.hash, tip.header.time + 600, limit, 3);
    assert!(
        matches!(c.connect(&[cheat], NOW), Err(HeaderError::BadDifficulty { expected, .. }) if expected == normal.to_consensus())
    );
    let honest = mine(tip.hash, tip.header.time + 600, normal, 3);
    c.connect(&[honest], NOW).unwrap();
    // And within 20 minutes the limit is not allowed.
    let tip = *c.tip();
    let early = mine(tip.hash, tip.header.time + 1200, limit, 4);
    assert!(matches!(
        c.connect(&[early], NOW),
        Err(HeaderError::BadDifficulty { .. })
    ));
}

#[test]
fn pruning_a_side_branch_takes_its_descendants_too() {
    let mut c = HeaderChain::new(regtest());
    let main = extend(&c.tip().clone(), 20, 1);
    c.connect(&main, NOW).unwrap();
    // A side branch of 3 forking at height 10 (heights 11..=13).
    let fork = *c.at_height(10).unwrap();
    let branch = extend(&fork, 3, 2);
    c.connect(&branch, NOW).unwrap();
    assert_eq!(c.side_len(), 3);
    // Advance so that the floor (tip - MAX_SIDE_DEPTH) lands at 12: height 11
    // falls below it, and 12 and 13 would be left without a parent.
    let more = extend(&c.tip().clone(), 12 + MAX_SIDE_DEPTH - 20, 3);
    let u = c.connect(&more, NOW).unwrap();
    assert_eq!(c.height() - MAX_SIDE_DEPTH, 12);
    assert_eq!(u.pruned.len(), 3, "the whole branch goes");
    assert_eq!(c.side_len(), 0);
    let restored = HeaderChain::restore(
        regtest(),
        c.best_headers(0).copied().collect::<Vec<_>>(),
        c.side_entries().copied().collect::<Vec<_>>(),
    )
    .unwrap();
    assert_eq!(restored.tip(), c.tip());
}

#[test]
fn restore_detects_damaged_records() {
    let mut c = HeaderChain::new(regtest());
    c.connect(&extend(&c.tip().clone(), 5, 1), NOW).unwrap();
    let mut best: Vec<Header> = c.best_headers(0).copied().collect();
    best[3].nonce ^= 1;
    assert!(matches!(
        HeaderChain::restore(regtest(), best.clone(), vec![]),
        Err(RestoreError::Broken(_))
    ));
    assert!(matches!(
        HeaderChain::restore(regtest(), best[1..].to_vec(), vec![]),
        Err(RestoreError::WrongGenesis)
    ));
    assert!(matches!(
        HeaderChain::restore(regtest(), vec![], vec![]),
        Err(RestoreError::Empty)
    ));
    assert_eq!(decode_chunk(&[0u8; 81]), None);
}
