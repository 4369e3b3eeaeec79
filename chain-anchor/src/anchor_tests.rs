use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{Block, ScriptBuf, Sequence, TxIn, TxOut, Witness};
use cairn_wallet::kel::establishment_chain;
use cairn_wallet::{MasterKey, SeedPhrase};

use super::*;
use crate::network::{ChainNetwork, ChainParams};
use crate::sealed::seal_rotation;
use cairn_wallet::SignedEvent;

const NOW: u64 = 2_000_000_000;
const SEAL_SAT: u64 = 10_000;

/// An identity with `rotations` rotations, its log and a regtest chain.
struct Fixture {
    master: MasterKey,
    log: KeyEventLog,
    state: LogState,
    chain: HeaderChain,
    salt: u32,
}

impl Fixture {
    fn new(rotations: u32) -> Fixture {
        let phrase = SeedPhrase::parse(
            "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about",
        )
        .unwrap();
        let master = MasterKey::new(&phrase.to_seed(""));
        let log = KeyEventLog::new(establishment_chain(&master, rotations).unwrap());
        let state = log.verify().unwrap();
        let mut f = Fixture {
            master,
            log,
            state,
            chain: HeaderChain::new(ChainParams::new(ChainNetwork::Regtest)),
            salt: 0,
        };
        f.mine(vec![], 1);
        f
    }

    fn seal(&self, index: usize) -> Seal {
        let next = self.master.signing_key(index as u32 + 1).unwrap().public();
        own_seal(&Secp256k1::new(), &self.state.establishment[index], &next).unwrap()
    }

    /// The inception anchor (unconfirmed), funded from a made-up coin.
    fn inception(&self) -> Anchor {
        let seal = self.seal(0);
        let tx = Transaction {
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::new(Txid::from_byte_array([1; 32]), 3),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::from_slice(&[[7u8; 64]]),
            }],
            output: vec![
                TxOut {
                    value: Amount::from_sat(SEAL_SAT),
                    script_pubkey: seal.script_pubkey(),
                },
                TxOut {
                    value: Amount::from_sat(50_000),
                    script_pubkey: ScriptBuf::new_op_return([1u8; 4]),
                },
            ],
        };
        let outpoint = OutPoint::new(tx.compute_txid(), SEAL_VOUT);
        let attestation = Attestation::sign(
            &self.master.signing_key(1).unwrap(),
            &self.state.id,
            &outpoint,
        );
        Anchor {
            next_leaf: seal.next_leaf,
            tx,
            proof: None,
            attestation: Some(attestation),
        }
    }

    /// The anchor of rotation `index`, spending `prev` (unconfirmed).
    fn rotation(&self, prev: &Anchor, index: usize) -> Anchor {
        let key = self.master.signing_key(index as u32).unwrap();
        let new = self.seal(index);
        let tx = rotation_tx(
            prev,
            &self.seal(index - 1),
            &key,
            &new,
            Amount::from_sat(200),
        )
        .unwrap();
        Anchor {
            next_leaf: new.next_leaf,
            tx,
            proof: None,
            attestation: None,
        }
    }

    /// Mines `n` blocks on the tip, the first holding `txs`; returns the first.
    fn mine(&mut self, txs: Vec<Transaction>, n: u32) -> Block {
        let tip = *self.chain.tip();
        self.mine_on(tip.hash, tip.header.time, txs, n)
    }

    fn mine_on(
        &mut self,
        mut prev: BlockHash,
        mut time: u32,
        mut txs: Vec<Transaction>,
        n: u32,
    ) -> Block {
        let mut first = None;
        for _ in 0..n {
            self.salt += 1;
            let coinbase = Transaction {
                version: bitcoin::transaction::Version::TWO,
                lock_time: bitcoin::absolute::LockTime::ZERO,
                input: vec![TxIn {
                    previous_output: OutPoint::null(),
                    script_sig: ScriptBuf::from_bytes(self.salt.to_le_bytes().to_vec()),
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                }],
                output: vec![TxOut {
                    value: Amount::from_sat(50),
                    script_pubkey: ScriptBuf::new_op_return([0u8; 1]),
                }],
            };
            let mut txdata = vec![coinbase];
            txdata.append(&mut txs);
            time += 600;
            let mut block = Block {
                header: Header {
                    version: Version::from_consensus(4),
                    prev_blockhash: prev,
                    merkle_root: bitcoin::TxMerkleNode::all_zeros(),
                    time,
                    bits: self.chain.tip().header.bits,
                    nonce: 0,
                },
                txdata,
            };
            block.header.merkle_root = block.compute_merkle_root().unwrap();
            while !block.header.target().is_met_by(block.block_hash()) {
                block.header.nonce += 1;
            }
            self.chain.connect(&[block.header], NOW).unwrap();
            prev = block.block_hash();
            first.get_or_insert(block);
        }
        first.unwrap()
    }

    /// The sealed events of rotations `range`.
    fn sealed(&self, range: std::ops::Range<usize>) -> Vec<SealedRotation> {
        let all = establishment_chain(&self.master, range.end as u32).unwrap();
        range
            .map(|i| {
                seal_rotation(&self.state.id, &all[i], &self.seal_of(&all[i], i).next_leaf).unwrap()
            })
            .collect()
    }

    /// The seal of event `index` of the full establishment chain.
    fn seal_of(&self, event: &SignedEvent, index: usize) -> Seal {
        let next = self.master.signing_key(index as u32 + 1).unwrap().public();
        Seal::new(&Secp256k1::new(), event.digest(), &next).unwrap()
    }

    fn bundle(&self, anchors: Vec<Anchor>) -> Bundle {
        Bundle {
            genesis: self.chain.at_height(0).unwrap().hash,
            log: self.log.clone(),
            anchors,
            sealed: vec![],
        }
    }

    fn verify(&self, bundle: &Bundle, need: u32, unspent: bool) -> Verification {
        verify_bundle::<()>(bundle, &self.chain, need, &mut |_| Ok(unspent)).unwrap()
    }
}

/// `anchor` with the proof of its transaction in `block`.
fn proven(mut anchor: Anchor, block: &Block) -> Anchor {
    let txid = anchor.txid();
    anchor.proof = Some(MerkleBlock::from_block_with_predicate(block, |t| {
        *t == txid
    }));
    anchor
}

fn invalid_reason(v: &Verification) -> (usize, String) {
    match &v.verdict {
        Verdict::Invalid {
            position, reason, ..
        } => (*position, reason.clone()),
        other => panic!("expected invalid, got {other}"),
    }
}

#[test]
fn bundles_round_trip_in_binary_and_text_and_damage_is_caught() {
    let mut f = Fixture::new(1);
    let a0 = f.inception();
    let block = f.mine(vec![a0.tx.clone()], 1);
    let a0 = proven(a0, &block);
    let a1 = f.rotation(&a0, 1);
    let bundle = f.bundle(vec![a0, a1]);
    // (Compared by encoding: a decoded partial merkle tree keeps the padding
    // bits of its flag bytes.)
    let bytes = bundle.encode();
    let decoded = Bundle::decode(&bytes).unwrap();
    assert_eq!(decoded.encode(), bytes);
    assert_eq!(decoded.log, bundle.log);
    assert_eq!(decoded.anchors[1], bundle.anchors[1]);
    let text = bundle.to_text();
    assert!(text.starts_with(BUNDLE_TEXT_PREFIX));
    assert_eq!(Bundle::from_text(&text).unwrap().encode(), bytes);
    // A pasted copy with line breaks and surrounding blanks still reads.
    let wrapped: String = text
        .chars()
        .collect::<Vec<_>>()
        .chunks(60)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        Bundle::from_text(&format!("  {wrapped}\n"))
            .unwrap()
            .encode(),
        bytes
    );

    // One character changed, one cut off, another prefix, not base64.
    let mut typo = text.clone().into_bytes();
    let i = BUNDLE_TEXT_PREFIX.len() + 40;
    typo[i] = if typo[i] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        Bundle::from_text(std::str::from_utf8(&typo).unwrap()),
        Err(BundleError::BadChecksum)
    );
    assert_eq!(
        Bundle::from_text(&text[..text.len() - 8]),
        Err(BundleError::BadChecksum)
    );
    assert_eq!(Bundle::from_text("cairn1qqq"), Err(BundleError::NotABundle));
    assert!(matches!(
        Bundle::from_text("cairn-bundle:@@@@"),
        Err(BundleError::BadText(_))
    ));

    // Every truncation of the binary form is an error, never a panic.
    for n in 0..bytes.len() {
        assert!(
            Bundle::decode(&bytes[..n]).is_err(),
            "prefix of {n} bytes decoded"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        Bundle::decode(&trailing),
        Err(BundleError::Decode(DecodeError::TrailingBytes { count: 1 }))
    ));
    let mut magic = bytes.clone();
    magic[0] ^= 1;
    assert_eq!(Bundle::decode(&magic), Err(BundleError::NotABundle));
    let mut version = bytes.clone();
    version[8] = 9;
    assert_eq!(
        Bundle::decode(&version),
        Err(BundleError::Decode(DecodeError::UnknownVersion(9)))
    );
    // Unknown anchor flags: the flags byte follows the 32-byte leaf hash.
    let log_len = u32::from_be_bytes(bytes[41..45].try_into().unwrap()) as usize;
    let flags_at = 45 + log_len + 2 + 4 + 32;
    let mut flags = bytes.clone();
    flags[flags_at] |= 0x80;
    assert!(matches!(
        Bundle::decode(&flags),
        Err(BundleError::Decode(DecodeError::NonCanonical(_)))
    ));
}

#[test]
fn an_anchored_inception_is_pending_then_current_then_stale_once_spent() {
    let mut f = Fixture::new(0);
    assert_eq!(
        f.verify(&f.bundle(vec![]), 6, true).verdict,
        Verdict::Unanchored { rotation_index: 0 }
    );
    let a0 = f.inception();
    // Broadcast, not yet in a block.
    let v = f.verify(&f.bundle(vec![a0.clone()]), 6, true);
    assert_eq!(
        v.verdict,
        Verdict::Pending {
            rotation_index: None,
            pending_index: 0,
            confirmations: 0,
            needed: 6
        }
    );
    assert!(v.usable().is_none());
    let block = f.mine(vec![a0.tx.clone()], 1);
    let height = f.chain.height();
    let a0 = proven(a0, &block);
    let bundle = f.bundle(vec![a0.clone()]);
    assert_eq!(
        f.verify(&bundle, 6, true).verdict,
        Verdict::Pending {
            rotation_index: None,
            pending_index: 0,
            confirmations: 1,
            needed: 6
        }
    );
    f.mine(vec![], 5);
    let v = f.verify(&bundle, 6, true);
    assert_eq!(
        v.verdict,
        Verdict::Current {
            rotation_index: 0,
            seal: a0.seal_outpoint().to_string(),
            anchor_height: height,
            confirmations: 6,
            tip_height: height + 5,
            tip_hash: f.chain.tip().hash.to_string(),
        }
    );
    assert_eq!(
        v.usable().unwrap().signing_key,
        f.state.establishment[0].signing_key
    );
    // The seal spent by a transaction the bundle does not hold: fail closed.
    let v = f.verify(&bundle, 6, false);
    assert_eq!(
        v.verdict,
        Verdict::Stale {
            rotation_index: 0,
            seal: a0.seal_outpoint().to_string()
        }
    );
    assert!(v.usable().is_none());
    // The source's answer is asked for the last seal only, and its errors pass through.
    let mut asked = Vec::new();
    let r = verify_bundle(&bundle, &f.chain, 6, &mut |op| {
        asked.push(*op);
        Err("source down")
    });
    assert_eq!(r, Err("source down"));
    assert_eq!(asked, vec![a0.seal_outpoint()]);
}

#[test]
fn rotations_follow_the_chain_of_seals_and_a_reorg_reverts_the_last() {
    let mut f = Fixture::new(2);
    let a0 = f.inception();
    let b0 = f.mine(vec![a0.tx.clone()], 1);
    let a0 = proven(a0, &b0);
    let a1 = f.rotation(&a0, 1);
    assert!(a1.tx.vsize() <= 140, "a rotation is {} vB", a1.tx.vsize());
    let b1 = f.mine(vec![a1.tx.clone()], 1);
    let a1 = proven(a1, &b1);
    f.mine(vec![], 2);
    // Rotation 2 is in the log but not anchored yet: rotation 1 stays current.
    let v = f.verify(&f.bundle(vec![a0.clone(), a1.clone()]), 3, true);
    assert_eq!(
        v.verdict,
        Verdict::Pending {
            rotation_index: Some(1),
            pending_index: 2,
            confirmations: 0,
            needed: 3
        }
    );
    assert_eq!(v.usable().unwrap().index, 1);

    let a2 = f.rotation(&a1, 2);
    let fork_point = *f.chain.tip();
    let b2 = f.mine(vec![a2.tx.clone()], 3);
    let a2 = proven(a2, &b2);
    let bundle = f.bundle(vec![a0, a1, a2]);
    let v = f.verify(&bundle, 3, true);
    assert!(
        matches!(
            v.verdict,
            Verdict::Current {
                rotation_index: 2,
                confirmations: 3,
                ..
            }
        ),
        "{}",
        v.verdict
    );
    assert_eq!(
        v.usable().unwrap().signing_key,
        f.master.signing_key(2).unwrap().public()
    );

    // A longer branch without rotation 2 from the block before it.
    f.mine_on(fork_point.hash, fork_point.header.time + 1, vec![], 4);
    let v = f.verify(&bundle, 3, true);
    assert_eq!(
        v.verdict,
        Verdict::Reorged {
            rotation_index: Some(1),
            left_index: 2
        }
    );
    assert_eq!(v.usable().unwrap().index, 1);
}

#[test]
fn forged_bundles_are_invalid_with_the_reason() {
    let mut f = Fixture::new(2);
    let a0 = f.inception();
    let b0 = f.mine(vec![a0.tx.clone()], 1);
    let a0 = proven(a0, &b0);
    let a1 = f.rotation(&a0, 1);
    let b1 = f.mine(vec![a1.tx.clone()], 1);
    let a1 = proven(a1, &b1);
    f.mine(vec![], 6);
    let good = f.bundle(vec![a0.clone(), a1.clone()]);
    assert!(matches!(
        f.verify(&good, 1, true).verdict,
        Verdict::Pending {
            rotation_index: Some(1),
            ..
        }
    ));

    // A bad signature in the log.
    let mut events = f.log.events().to_vec();
    let mut raw = events[1].encode();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    events[1] = cairn_wallet::SignedEvent::decode(&raw).unwrap();
    let forged = Bundle {
        log: KeyEventLog::new(events),
        ..good.clone()
    };
    assert_eq!(invalid_reason(&f.verify(&forged, 1, true)).0, 1);

    // A broken chain: rotation 1 dropped from the log.
    let mut events = f.log.events().to_vec();
    events.remove(1);
    let forged = Bundle {
        log: KeyEventLog::new(events),
        anchors: vec![a0.clone()],
        ..good.clone()
    };
    assert_eq!(invalid_reason(&f.verify(&forged, 1, true)).0, 1);

    let check = |anchors: Vec<Anchor>, position: usize, fault: AnchorFault| {
        let v = f.verify(&f.bundle(anchors), 1, true);
        assert_eq!(invalid_reason(&v), (position, fault.to_string()));
    };

    // The seal output of the inception anchor paired with rotation 1.
    let mut swapped = a1.clone();
    swapped.tx.output[0] = a0.tx.output[0].clone();
    check(vec![a0.clone(), swapped], 1, AnchorFault::NotTheSeal);

    // No attestation, another key's attestation, an attestation for another outpoint.
    let mut bare = a0.clone();
    bare.attestation = None;
    check(vec![bare], 0, AnchorFault::MissingAttestation);
    let mut other_key = a0.clone();
    other_key.attestation = Some(Attestation::sign(
        &f.master.signing_key(0).unwrap(),
        &f.state.id,
        &a0.seal_outpoint(),
    ));
    check(vec![other_key], 0, AnchorFault::AttestationKey);
    let mut elsewhere = a0.clone();
    elsewhere.attestation = Some(Attestation::sign(
        &f.master.signing_key(1).unwrap(),
        &f.state.id,
        &OutPoint::new(a0.txid(), 1),
    ));
    check(vec![elsewhere], 0, AnchorFault::AttestationSignature);
    let mut extra = a1.clone();
    extra.attestation = a0.attestation;
    check(
        vec![a0.clone(), extra],
        1,
        AnchorFault::UnexpectedAttestation,
    );

    // A rotation that does not spend the previous seal.
    let mut detached = a1.clone();
    detached.tx.input[0].previous_output.vout = 1;
    detached.proof = None;
    check(
        vec![a0.clone(), detached],
        1,
        AnchorFault::NotSpendingPreviousSeal,
    );

    // A wrong next key: seal 1 names a key the log does not commit to, and
    // rotation 2 opens it with that key.
    let wrong = f.master.signing_key(7).unwrap();
    let seal1 = Seal::new(
        &Secp256k1::new(),
        f.state.establishment[1].digest,
        &wrong.public(),
    )
    .unwrap();
    let mut a1w = a1.clone();
    a1w.tx.output[0].script_pubkey = seal1.script_pubkey();
    a1w.next_leaf = seal1.next_leaf;
    a1w.proof = None;
    let seal2 = f.seal(2);
    let tx2 = rotation_tx(&a1w, &seal1, &wrong, &seal2, Amount::from_sat(200)).unwrap();
    let a2w = Anchor {
        next_leaf: seal2.next_leaf,
        tx: tx2,
        proof: None,
        attestation: None,
    };
    check(
        vec![a0.clone(), a1w, a2w],
        2,
        AnchorFault::WrongSpendingKey {
            revealed: wrong.public(),
        },
    );

    // The proof of another transaction (the coinbase of the same block).
    let mut misproven = a1.clone();
    let coinbase = b1.txdata[0].compute_txid();
    misproven.proof = Some(MerkleBlock::from_block_with_predicate(&b1, |t| {
        *t == coinbase
    }));
    let v = f.verify(&f.bundle(vec![a0.clone(), misproven]), 1, true);
    let (position, reason) = invalid_reason(&v);
    assert_eq!(position, 1);
    assert!(
        reason.contains("the inclusion proof: the proof proves"),
        "{reason}"
    );

    // Anchors in another chain.
    let mut elsewhere = good.clone();
    elsewhere.genesis = ChainParams::new(ChainNetwork::Mainnet).genesis_hash();
    let (position, reason) = invalid_reason(&f.verify(&elsewhere, 1, true));
    assert_eq!(position, 0);
    assert!(reason.contains("genesis"), "{reason}");

    // More anchors than establishment events.
    let mut small = Fixture::new(0);
    small.log = KeyEventLog::new(f.log.events()[..1].to_vec());
    small.state = small.log.verify().unwrap();
    let v = small.verify(&small.bundle(vec![a0.clone(), a1.clone()]), 1, true);
    assert_eq!(
        invalid_reason(&v),
        (
            0,
            AnchorFault::TooManyAnchors {
                anchors: 2,
                events: 1
            }
            .to_string()
        )
    );
}

#[test]
fn a_rotation_cannot_spend_more_than_the_seal_holds() {
    let f = Fixture::new(1);
    let a0 = f.inception();
    let key = f.master.signing_key(1).unwrap();
    assert_eq!(
        rotation_tx(
            &a0,
            &f.seal(0),
            &key,
            &f.seal(1),
            Amount::from_sat(SEAL_SAT - 329)
        ),
        Err(BuildError::SealTooSmall {
            have: Amount::from_sat(SEAL_SAT),
            fee: Amount::from_sat(SEAL_SAT - 329)
        })
    );
    // The current (hot) key does not open the seal.
    assert_eq!(
        rotation_tx(
            &a0,
            &f.seal(0),
            &f.master.signing_key(0).unwrap(),
            &f.seal(1),
            Amount::from_sat(200)
        ),
        Err(BuildError::WrongKey)
    );
}

#[test]
fn a_holder_of_the_inception_bundle_follows_two_rotations_from_the_chain_alone() {
    // The owner's log has two rotations; the contact holds only the inception.
    let mut owner = Fixture::new(2);
    let mut contact = Fixture::new(0);
    let a0 = owner.inception();
    let b0 = owner.mine(vec![a0.tx.clone()], 1);
    let a0 = proven(a0, &b0);
    let mut bundle = contact.bundle(vec![a0.clone()]);
    bundle.genesis = owner.chain.at_height(0).unwrap().hash;
    bundle.sealed = owner.sealed(1..5);
    contact.chain = owner.chain.clone();

    let a1 = owner.rotation(&a0, 1);
    let b1 = owner.mine(vec![a1.tx.clone()], 1);
    let proof1 = MerkleBlock::from_block_with_predicate(&b1, |t| *t == a1.txid());
    let a2 = owner.rotation(&a1, 2);
    let b2 = owner.mine(vec![a2.tx.clone()], 2);
    let proof2 = MerkleBlock::from_block_with_predicate(&b2, |t| *t == a2.txid());
    contact.chain = owner.chain.clone();

    // A transaction that does not spend the last seal is not followed.
    assert_eq!(
        follow_spend(&mut bundle.clone(), &a2.tx, None),
        Err(FollowError::NotASpend)
    );
    assert_eq!(follow_spend(&mut bundle, &a1.tx, Some(proof1)), Ok(1));
    assert_eq!(follow_spend(&mut bundle, &a2.tx, Some(proof2)), Ok(2));
    assert_eq!(bundle.log, owner.log);
    let v = contact.verify(&bundle, 2, true);
    assert!(
        matches!(
            v.verdict,
            Verdict::Current {
                rotation_index: 2,
                confirmations: 2,
                ..
            }
        ),
        "{}",
        v.verdict
    );
    assert_eq!(
        v.usable().unwrap().signing_key,
        owner.master.signing_key(2).unwrap().public()
    );

    // Without the sealed event the contact cannot follow: a newer bundle is needed.
    let mut bare = contact.bundle(vec![a0.clone()]);
    bare.genesis = bundle.genesis;
    assert_eq!(
        follow_spend(&mut bare, &a1.tx, None),
        Err(FollowError::NoSealedRotation(1))
    );
    // A sealed event under the wrong index, or tampered with, does not open.
    let mut shifted = bare.clone();
    shifted.sealed = owner.sealed(2..3);
    shifted.sealed[0].index = 1;
    assert_eq!(
        follow_spend(&mut shifted, &a1.tx, None),
        Err(FollowError::Sealed(
            crate::sealed::SealedError::DoesNotOpen(1)
        ))
    );
    let mut tampered = bare.clone();
    tampered.sealed = owner.sealed(1..2);
    tampered.sealed[0].ciphertext[40] ^= 1;
    assert!(matches!(
        follow_spend(&mut tampered, &a1.tx, None),
        Err(FollowError::Sealed(_))
    ));
}

#[test]
fn a_seal_spent_into_anything_but_the_next_seal_is_not_followed() {
    let mut owner = Fixture::new(1);
    let a0 = owner.inception();
    let b0 = owner.mine(vec![a0.tx.clone()], 1);
    let a0 = proven(a0, &b0);
    let mut bundle = owner.bundle(vec![a0.clone()]);
    bundle.log = KeyEventLog::new(owner.log.events()[..1].to_vec());
    bundle.sealed = owner.sealed(1..3);
    // Someone with the seed spends seal 0 with the right key into another output.
    let elsewhere = Seal::new(
        &Secp256k1::new(),
        owner.state.establishment[1].digest,
        &owner.master.signing_key(9).unwrap().public(),
    )
    .unwrap();
    let key = owner.master.signing_key(1).unwrap();
    let tx = rotation_tx(&a0, &owner.seal(0), &key, &elsewhere, Amount::from_sat(200)).unwrap();
    let before = bundle.clone();
    assert_eq!(
        follow_spend(&mut bundle, &tx, None),
        Err(FollowError::NotTheSeal(1))
    );
    assert_eq!(bundle, before, "a failed follow changes nothing");
}
