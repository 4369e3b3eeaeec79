use super::*;
use crate::id::IdentityId;
use crate::keys::{MasterKey, SigningKey};
use crate::seed::SeedPhrase;
use proptest::prelude::*;

const WORDS: &str = "legal winner thank year wave sausage worth useful legal winner thank yellow";

fn master() -> MasterKey {
    MasterKey::new(&SeedPhrase::parse(WORDS).unwrap().to_seed(""))
}

/// A log with `rotations` rotations and `per` interactions after each establishment event.
fn sample_log(m: &MasterKey, rotations: u32, per: u32) -> KeyEventLog {
    let chain = establishment_chain(m, rotations).unwrap();
    let mut log = KeyEventLog::default();
    for (k, est) in chain.into_iter().enumerate() {
        let mut prev = est.digest();
        log.push(est);
        let key = m.signing_key(k as u32).unwrap();
        for seq in 1..=per {
            let items = vec![
                Item::Mailbox(vec![seq as u8; 38]),
                Item::Prekey {
                    id: seq,
                    key: [seq as u8 + 1; 32],
                    expires: 1_900_000_000,
                },
            ];
            let e = Interaction::new(k as u32, seq, prev, 1_800_000_000 + u64::from(seq), items)
                .unwrap();
            let s = Event::Interaction(e).sign(&key).unwrap();
            prev = s.digest();
            log.push(s);
        }
    }
    log
}

#[test]
fn establishment_events_are_deterministic_from_the_seed() {
    let a = establishment_chain(&master(), 3).unwrap();
    let b = establishment_chain(&master(), 3).unwrap();
    assert_eq!(
        a.iter().map(SignedEvent::encode).collect::<Vec<_>>(),
        b.iter().map(SignedEvent::encode).collect::<Vec<_>>()
    );
    let other = MasterKey::new(&SeedPhrase::parse(WORDS).unwrap().to_seed("passphrase"));
    assert_ne!(
        establishment_chain(&other, 0).unwrap()[0].encode(),
        a[0].encode()
    );
}

#[test]
fn valid_log_verifies_and_reports_state() {
    let m = master();
    let log = sample_log(&m, 2, 3);
    let st = log.verify().unwrap();
    assert_eq!(st.rotation_index(), 2);
    assert_eq!(st.establishment.len(), 3);
    assert_eq!(st.current().signing_key, m.signing_key(2).unwrap().public());
    assert_eq!(
        st.current().messaging_key.0,
        m.messaging_key(2).unwrap().public()
    );
    assert_eq!(st.last_seq, 3);
    assert_eq!(st.mailboxes, vec![vec![3u8; 38]]);
    assert_eq!(st.prekeys.len(), 3);
    assert_eq!(
        st.id,
        IdentityId::of_inception(log.events()[0].event_bytes())
    );
    assert_eq!(st.len, 12);
}

#[test]
fn round_trip_every_event_type() {
    let log = sample_log(&master(), 2, 2);
    for e in log.events() {
        let bytes = e.encode();
        let back = SignedEvent::decode(&bytes).unwrap();
        assert_eq!(&back, e);
        assert_eq!(back.encode(), bytes);
        assert_eq!(Event::decode(e.event_bytes()).unwrap(), *e.event());
    }
    let file = log.encode();
    let back = KeyEventLog::decode(&file).unwrap();
    assert_eq!(back, log);
    assert_eq!(back.encode(), file);
}

#[test]
fn every_flipped_byte_is_caught() {
    let log = sample_log(&master(), 1, 1);
    for (n, e) in log.events().iter().enumerate() {
        let bytes = e.encode();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                let caught = match SignedEvent::decode(&bad) {
                    Err(_) => true,
                    Ok(ev) => {
                        let mut events = log.events().to_vec();
                        events[n] = ev;
                        KeyEventLog::new(events).verify().is_err()
                    }
                };
                assert!(caught, "event {n} byte {i} bit {bit:#x} not caught");
            }
        }
    }
}

#[test]
fn decoder_rejects_malformed_input() {
    let log = sample_log(&master(), 1, 1);
    let inc = log.events()[0].encode();
    let mut trailing = inc.clone();
    trailing.push(0);
    assert_eq!(
        SignedEvent::decode(&trailing),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
    let mut v2 = inc.clone();
    v2[0] = 2;
    assert_eq!(
        SignedEvent::decode(&v2),
        Err(DecodeError::UnknownVersion(2))
    );
    let mut kind = inc.clone();
    kind[1] = 9;
    assert_eq!(SignedEvent::decode(&kind), Err(DecodeError::UnknownKind(9)));
    assert!(matches!(
        SignedEvent::decode(&inc[..inc.len() - 1]),
        Err(DecodeError::Truncated { .. })
    ));
    assert!(matches!(
        SignedEvent::decode(&vec![1u8; MAX_EVENT_LEN + 1]),
        Err(DecodeError::TooLarge { .. })
    ));
    // An x-only key that is not on the curve (x = p - 1 has no square root... use all 0xff, > p).
    let mut badkey = inc.clone();
    badkey[2..34].copy_from_slice(&[0xff; 32]);
    assert!(matches!(
        SignedEvent::decode(&badkey),
        Err(DecodeError::InvalidKey(_))
    ));
    // Interaction items out of order are non-canonical.
    let m = master();
    let key = m.signing_key(1).unwrap();
    let int = Interaction {
        index: 1,
        seq: 1,
        prev: Digest([0; 32]),
        timestamp: 0,
        items: vec![Item::Mailbox(vec![2]), Item::Mailbox(vec![1])],
    };
    let unsorted = Event::Interaction(int).sign(&key).unwrap().encode();
    assert_eq!(
        SignedEvent::decode(&unsorted),
        Err(DecodeError::NonCanonical("items not in ascending order"))
    );
    let dup = Interaction::new(
        1,
        1,
        Digest([0; 32]),
        0,
        vec![Item::Mailbox(vec![1]), Item::Mailbox(vec![1])],
    );
    assert_eq!(dup.unwrap_err(), BuildError::DuplicateItem);
    // Log file: bad magic, huge count, trailing bytes.
    let file = log.encode();
    let mut magic = file.clone();
    magic[0] = b'X';
    assert_eq!(KeyEventLog::decode(&magic), Err(DecodeError::BadMagic));
    let mut count = file.clone();
    count[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        KeyEventLog::decode(&count),
        Err(DecodeError::FieldTooLarge { .. })
    ));
    let mut extra = file.clone();
    extra.push(7);
    assert_eq!(
        KeyEventLog::decode(&extra),
        Err(DecodeError::TrailingBytes { count: 1 })
    );
}

fn fault_at(log: &KeyEventLog) -> (usize, LogFault) {
    let e = log.verify().unwrap_err();
    (e.position, e.fault)
}

#[test]
fn verifier_names_first_failing_event() {
    let m = master();
    let good = sample_log(&m, 2, 1); // E0 I E1 I E2 I
    let ev = good.events().to_vec();

    // Pre-rotation: a rotation revealing a key that was not committed to.
    let rogue = SigningKey::from_secret_bytes(&[9u8; 32]).unwrap();
    let Event::Rotation(r) = ev[2].event().clone() else {
        panic!()
    };
    let forged = Event::Rotation(Rotation {
        signing_key: rogue.public(),
        ..r.clone()
    })
    .sign(&rogue)
    .unwrap();
    let mut bad = ev.clone();
    bad[2] = forged;
    assert_eq!(
        fault_at(&KeyEventLog::new(bad)),
        (2, LogFault::PreRotationMismatch { index: 0 })
    );

    // A rotation signed by the old (current) key instead of the revealed one.
    let old = m.signing_key(0).unwrap();
    let enc = ev[2].event().encode();
    let _ = enc;
    let mut bad = ev.clone();
    bad[2] = resign_unchecked(ev[2].event(), &old);
    assert_eq!(
        fault_at(&KeyEventLog::new(bad)),
        (2, LogFault::BadSignature { index: 1 })
    );

    // Broken hash chain.
    let mut bad = ev.clone();
    let k1 = m.signing_key(1).unwrap();
    bad[2] = Event::Rotation(Rotation {
        prev: Digest([1; 32]),
        ..r.clone()
    })
    .sign(&k1)
    .unwrap();
    assert!(matches!(
        fault_at(&KeyEventLog::new(bad)),
        (2, LogFault::BrokenChain { .. })
    ));

    // Skipped rotation index.
    let mut bad = ev.clone();
    bad.remove(2);
    bad.remove(2);
    assert!(matches!(
        fault_at(&KeyEventLog::new(bad)),
        (
            2,
            LogFault::WrongIndex {
                expected: 1,
                found: 2
            }
        )
    ));

    // Interactions: wrong sequence, reordered, wrong signer.
    let mut bad = ev.clone();
    bad.swap(0, 1);
    assert_eq!(
        fault_at(&KeyEventLog::new(bad)),
        (0, LogFault::NotInception("interaction"))
    );
    let mut bad = ev.clone();
    bad.insert(2, ev[1].clone());
    assert!(matches!(
        fault_at(&KeyEventLog::new(bad)),
        (
            2,
            LogFault::WrongSequence {
                expected: 2,
                found: 1
            }
        )
    ));
    let mut bad = ev.clone();
    bad[1] = resign_unchecked(ev[1].event(), &k1);
    assert_eq!(
        fault_at(&KeyEventLog::new(bad)),
        (1, LogFault::BadSignature { index: 0 })
    );
    let mut bad = ev.clone();
    bad.push(ev[0].clone());
    assert_eq!(
        fault_at(&KeyEventLog::new(bad)),
        (6, LogFault::UnexpectedInception)
    );
    assert_eq!(fault_at(&KeyEventLog::default()), (0, LogFault::Empty));

    // Time going backwards within a rotation.
    let k2 = m.signing_key(2).unwrap();
    let Event::Interaction(i) = ev[5].event().clone() else {
        panic!()
    };
    let next = Interaction::new(2, 2, ev[5].digest(), i.timestamp - 1, vec![]).unwrap();
    let mut bad = ev.clone();
    bad.push(Event::Interaction(next).sign(&k2).unwrap());
    assert!(matches!(
        fault_at(&KeyEventLog::new(bad)),
        (6, LogFault::TimeRegression { .. })
    ));

    // The error message names the event.
    let mut bad = ev.clone();
    bad[1] = resign_unchecked(ev[1].event(), &k1);
    let msg = KeyEventLog::new(bad).verify().unwrap_err().to_string();
    assert!(msg.starts_with("event 1 (interaction)"), "{msg}");
}

/// Signs any event with any key, bypassing the builder's own-key check (for forgeries).
fn resign_unchecked(e: &Event, key: &SigningKey) -> SignedEvent {
    let mut bytes = e.encode();
    let digest = crate::hash::tagged_hash(crate::hash::tags::EVENT, &[&bytes]);
    let msg = bitcoin::secp256k1::Message::from_digest(digest);
    let sig = crate::secp().sign_schnorr_no_aux_rand(&msg, key.keypair());
    bytes.extend_from_slice(sig.as_ref());
    SignedEvent::decode(&bytes).unwrap()
}

fn arb_item() -> impl Strategy<Value = Item> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..=MAX_MAILBOX_LEN).prop_map(Item::Mailbox),
        (any::<u32>(), any::<[u8; 32]>(), any::<u64>())
            .prop_map(|(id, mut k, e)| {
                k[31] &= 0x3f;
                (id, k, e)
            })
            .prop_filter("non-zero key", |(_, k, _)| k.iter().any(|b| *b != 0))
            .prop_map(|(id, key, expires)| Item::Prekey { id, key, expires }),
    ]
}

fn arb_event() -> impl Strategy<Value = Event> {
    let key = any::<[u8; 32]>().prop_filter_map("valid key", |b| {
        SigningKey::from_secret_bytes(&b).map(|k| k.public())
    });
    let mkey = any::<[u8; 32]>()
        .prop_map(|mut k| {
            k[31] &= 0x3f; // canonical: top bit clear, below 2^255 - 19
            k
        })
        .prop_filter("non-zero", |k| k.iter().any(|b| *b != 0))
        .prop_map(MessagingPublicKey);
    prop_oneof![
        (key.clone(), any::<[u8; 32]>(), mkey.clone()).prop_map(
            |(signing_key, n, messaging_key)| Event::Inception(Inception {
                signing_key,
                next_key_digest: Digest(n),
                messaging_key
            })
        ),
        (1u32.., any::<[u8; 32]>(), key, any::<[u8; 32]>(), mkey).prop_map(
            |(index, p, signing_key, n, messaging_key)| {
                Event::Rotation(Rotation {
                    index,
                    prev: Digest(p),
                    signing_key,
                    next_key_digest: Digest(n),
                    messaging_key,
                })
            }
        ),
        (
            any::<u32>(),
            1u32..,
            any::<[u8; 32]>(),
            any::<u64>(),
            proptest::collection::vec(arb_item(), 0..8)
        )
            .prop_filter_map("distinct items", |(index, seq, p, t, items)| {
                Interaction::new(index, seq, Digest(p), t, items).ok()
            })
            .prop_map(Event::Interaction),
    ]
}

proptest! {
    #[test]
    fn prop_encode_decode_encode_is_identical(event in arb_event()) {
        let bytes = event.encode();
        let back = Event::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &event);
        prop_assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn prop_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = SignedEvent::decode(&bytes);
        let _ = KeyEventLog::decode(&bytes);
    }

    #[test]
    fn prop_signed_round_trip(event in arb_event(), secret in any::<[u8; 32]>()) {
        if let Some(key) = SigningKey::from_secret_bytes(&secret) {
            let signed = resign_unchecked(&event, &key);
            let bytes = signed.encode();
            let back = SignedEvent::decode(&bytes).unwrap();
            prop_assert_eq!(back.encode(), bytes);
            prop_assert!(back.verify_signature(&key.public()));
        }
    }
}
