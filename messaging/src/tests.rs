//! The properties the session layer promises, one test each.

use cairn_wallet::IdentityId;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::handshake::{accept, open, start, Accepted, PeerIdentity, PeerPrekey, Pending};
use crate::mailbox::{epoch, prekey_address};
use crate::pad::BUCKETS;
use crate::session::{MAX_SKIP, MAX_SKIPPED_KEYS};
use crate::{Kind, Session, SessionError};

/// One side: an identity id, a messaging key, a prekey.
struct Person {
    id: IdentityId,
    messaging: [u8; 32],
    prekey_id: u32,
    prekey: [u8; 32],
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).unwrap();
    b
}

fn public(secret: &[u8; 32]) -> [u8; 32] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

impl Person {
    fn new() -> Person {
        Person {
            id: IdentityId(random32()),
            messaging: random32(),
            prekey_id: 7,
            prekey: random32(),
        }
    }
    fn as_peer(&self) -> PeerIdentity {
        PeerIdentity {
            id: self.id,
            messaging_key: public(&self.messaging),
        }
    }
    fn published_prekey(&self) -> PeerPrekey {
        PeerPrekey {
            id: self.prekey_id,
            key: public(&self.prekey),
        }
    }
    fn prekeys(&self) -> impl Fn(u32) -> Option<Zeroizing<[u8; 32]>> + '_ {
        move |id| (id == self.prekey_id).then(|| Zeroizing::new(self.prekey))
    }
    /// Sends a first message to `to` (who may be offline).
    fn first_message(&self, to: &Person, content: &[u8]) -> (Pending, Vec<u8>) {
        start(
            self.id,
            &self.messaging,
            &to.as_peer(),
            &to.published_prekey(),
            content,
        )
        .unwrap()
    }
    /// Receives a first message from `from`, whose log gives their key.
    fn receive_first(&self, from: &Person, message: &[u8], reply: &[u8]) -> Accepted {
        let opened = open(&self.id, message, self.prekeys()).unwrap();
        assert_eq!(opened.from, from.id);
        accept(
            &self.id,
            &public(&self.messaging),
            &opened,
            &public(&from.messaging),
            reply,
        )
        .unwrap()
    }
}

/// Alice starts a session with Bob; Bob answers; both have a session.
fn pair() -> (Session, Session) {
    let (alice, bob) = (Person::new(), Person::new());
    let (pending, first) = alice.first_message(&bob, b"hi Bob");
    let accepted = bob.receive_first(&alice, &first, b"hi Alice");
    assert_eq!(accepted.content, b"hi Bob");
    let (a, reply) = pending.finish(&accepted.answer).unwrap();
    assert_eq!(reply, b"hi Alice");
    (a, accepted.session)
}

#[test]
fn a_first_message_reaches_an_offline_recipient_and_both_sides_authenticate() {
    let (alice, bob, mallory) = (Person::new(), Person::new(), Person::new());
    // Alice needs only Bob's published keys: Bob takes no part until later.
    let (pending, first) = alice.first_message(&bob, b"hello while you sleep");
    assert_eq!(Kind::of(&first).unwrap(), Kind::Initial);
    // The sender's identity is not on the wire.
    assert!(!first.windows(32).any(|w| w == alice.id.0));
    assert!(!first.windows(32).any(|w| w == public(&alice.messaging)));

    // Only Bob's prekey opens it.
    assert!(matches!(
        open(&mallory.id, &first, |_| Some(Zeroizing::new(
            mallory.prekey
        ))),
        Err(SessionError::Handshake(_))
    ));
    assert!(matches!(
        open(&bob.id, &first, |_| None),
        Err(SessionError::UnknownPrekey(7))
    ));
    // Sealed to Bob's prekey but for another identity id: the prologue differs.
    assert!(open(&mallory.id, &first, bob.prekeys()).is_err());

    // Someone claiming to be Alice without her messaging key fails.
    let (_, forged) = start(
        alice.id,
        &mallory.messaging,
        &bob.as_peer(),
        &bob.published_prekey(),
        b"it is me, Alice",
    )
    .unwrap();
    let opened = open(&bob.id, &forged, bob.prekeys()).unwrap();
    assert_eq!(opened.from, alice.id);
    assert!(matches!(
        accept(
            &bob.id,
            &public(&bob.messaging),
            &opened,
            &public(&alice.messaging),
            b""
        ),
        Err(SessionError::Handshake(_))
    ));

    // The prologue binds Bob's messaging key (and so his current rotation).
    let opened = open(&bob.id, &first, bob.prekeys()).unwrap();
    assert!(accept(
        &bob.id,
        &random32(),
        &opened,
        &public(&alice.messaging),
        b""
    )
    .is_err());

    let accepted = bob.receive_first(&alice, &first, b"good morning");
    assert_eq!(accepted.content, b"hello while you sleep");
    assert_eq!(accepted.answer_address, pending.answer_address());
    let (mut a, reply) = pending.finish(&accepted.answer).unwrap();
    assert_eq!(reply, b"good morning");
    let mut b = accepted.session;
    assert_eq!(a.handshake_hash(), b.handshake_hash());
    assert_eq!((a.peer(), b.peer()), (bob.id, alice.id));
    let m = a.encrypt(b"now in session").unwrap();
    assert_eq!(b.decrypt(&m).unwrap(), b"now in session");
}

#[test]
fn an_altered_or_foreign_answer_changes_nothing() {
    let (alice, bob) = (Person::new(), Person::new());
    let (pending, first) = alice.first_message(&bob, b"one");
    let (other_pending, _) = alice.first_message(&bob, b"two");
    let accepted = bob.receive_first(&alice, &first, b"reply");
    assert!(matches!(
        other_pending.finish(&accepted.answer),
        Err(SessionError::NotOurAnswer)
    ));
    let mut altered = accepted.answer.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert!(matches!(
        pending.finish(&altered),
        Err(SessionError::Handshake(_))
    ));
    assert!(pending.finish(&altered[..50]).is_err());
    // The real answer still completes it.
    assert_eq!(pending.finish(&accepted.answer).unwrap().1, b"reply");
}

#[test]
fn conversation_in_both_directions_with_ratchet_turns() {
    let (mut a, mut b) = pair();
    for round in 0..5u8 {
        for i in 0..3u8 {
            let m = a.encrypt(&[round, i, 1]).unwrap();
            assert_eq!(b.decrypt(&m).unwrap(), [round, i, 1]);
        }
        for i in 0..2u8 {
            let m = b.encrypt(&[round, i, 2]).unwrap();
            assert_eq!(a.decrypt(&m).unwrap(), [round, i, 2]);
        }
    }
    // The responder may write before the initiator's first session message.
    let (mut a, mut b) = pair();
    let early = b.encrypt(b"early").unwrap();
    let m = a.encrypt(b"first").unwrap();
    assert_eq!(b.decrypt(&m).unwrap(), b"first");
    assert_eq!(a.decrypt(&early).unwrap(), b"early");
}

#[test]
fn forward_secrecy_old_messages_stay_closed_after_every_key_leaks() {
    let (mut a, mut b) = pair();
    let captured: Vec<Vec<u8>> = (0..3).map(|i| a.encrypt(&[i]).unwrap()).collect();
    for m in &captured {
        b.decrypt(m).unwrap();
    }
    let reply = b.encrypt(b"ack").unwrap();
    a.decrypt(&reply).unwrap();
    // Later, both sides' session states leak (the long-term messaging keys
    // were only used in the handshake, whose ephemeral keys are gone).
    let (mut leaked_a, mut leaked_b) = (a.clone(), b.clone());
    for m in &captured {
        assert!(leaked_b.decrypt(m).is_err());
        assert!(leaked_a.decrypt(m).is_err());
    }
    assert!(leaked_a.decrypt(&reply).is_err());
}

#[test]
fn after_a_leak_the_session_heals_once_both_sides_have_spoken() {
    let (mut a, mut b) = pair();
    let m = a.encrypt(b"before").unwrap();
    b.decrypt(&m).unwrap();
    // An attacker copies both sides' whole session state, then sees every
    // message.
    let (mut thief_of_b, mut thief_of_a) = (b.clone(), a.clone());
    let m1 = a.encrypt(b"read by the thief").unwrap();
    assert!(thief_of_b.decrypt(&m1).is_ok());
    b.decrypt(&m1).unwrap();
    // Each side now speaks with a ratchet key made after the leak: first
    // Bob's key is used against a key of Alice's from before it, then
    // Alice's new key against Bob's.
    let m2 = b.encrypt(b"bob speaks").unwrap();
    a.decrypt(&m2).unwrap();
    let _ = thief_of_a.decrypt(&m2);
    let m3 = a.encrypt(b"alice answers").unwrap();
    b.decrypt(&m3).unwrap();
    let _ = thief_of_b.decrypt(&m3);
    let m4 = b.encrypt(b"bob, fresh key").unwrap();
    assert_eq!(a.decrypt(&m4).unwrap(), b"bob, fresh key");
    assert!(thief_of_a.decrypt(&m4).is_err());
    let m5 = a.encrypt(b"alice, fresh key").unwrap();
    assert_eq!(b.decrypt(&m5).unwrap(), b"alice, fresh key");
    assert!(thief_of_b.decrypt(&m5).is_err());
    // And it stays healed.
    for i in 0..3u8 {
        let m = a.encrypt(&[i]).unwrap();
        b.decrypt(&m).unwrap();
        assert!(thief_of_b.decrypt(&m).is_err());
        let m = b.encrypt(&[i]).unwrap();
        a.decrypt(&m).unwrap();
        assert!(thief_of_a.decrypt(&m).is_err());
    }
}

#[test]
fn replays_are_refused_and_reordering_within_the_bound_is_fine() {
    let (mut a, mut b) = pair();
    let ms: Vec<Vec<u8>> = (0..6u8).map(|i| a.encrypt(&[i]).unwrap()).collect();
    // Out of order: 3, 0, 5, 1, 2, 4.
    for i in [3, 0, 5, 1, 2, 4] {
        assert_eq!(b.decrypt(&ms[i]).unwrap(), [i as u8]);
    }
    assert_eq!(b.skipped_keys(), 0);
    // Nothing opens twice.
    for m in &ms {
        assert!(matches!(
            b.decrypt(m),
            Err(SessionError::Replayed { .. }) | Err(SessionError::Undecryptable)
        ));
    }
    assert!(matches!(
        b.decrypt(&ms[5]),
        Err(SessionError::Replayed { n: 5 })
    ));
    // Across a ratchet turn, a late message of the old chain still opens once.
    let late = a.encrypt(b"late").unwrap();
    let next = a.encrypt(b"next").unwrap();
    b.decrypt(&next).unwrap();
    let turn = b.encrypt(b"turn").unwrap();
    a.decrypt(&turn).unwrap();
    let newer = a.encrypt(b"newer").unwrap();
    b.decrypt(&newer).unwrap();
    assert_eq!(b.decrypt(&late).unwrap(), b"late");
    assert!(b.decrypt(&late).is_err());
}

#[test]
fn gaps_beyond_the_bound_are_refused_and_skipped_keys_are_bounded() {
    let (mut a, mut b) = pair();
    let mut last = Vec::new();
    for _ in 0..=MAX_SKIP + 1 {
        last = a.encrypt(b"x").unwrap();
    }
    let before = b.skipped_keys();
    assert!(matches!(
        b.decrypt(&last),
        Err(SessionError::TooFarAhead { skipped, max: MAX_SKIP }) if skipped == MAX_SKIP + 1
    ));
    assert_eq!(b.skipped_keys(), before);

    // Many gaps: the keys kept never exceed the bound, oldest dropped first.
    let (mut a, mut b) = pair();
    let first = a.encrypt(b"first").unwrap();
    for round in 0..3 {
        for _ in 0..MAX_SKIP - 1 {
            a.encrypt(b"lost").unwrap();
        }
        let m = a.encrypt(&[round]).unwrap();
        b.decrypt(&m).unwrap();
        assert!(b.skipped_keys() <= MAX_SKIPPED_KEYS);
    }
    assert_eq!(b.skipped_keys(), MAX_SKIPPED_KEYS);
    assert!(matches!(
        b.decrypt(&first),
        Err(SessionError::Replayed { n: 0 })
    ));
}

#[test]
fn a_failed_decrypt_changes_nothing() {
    let (mut a, mut b) = pair();
    let m0 = a.encrypt(b"zero").unwrap();
    let m1 = a.encrypt(b"one").unwrap();
    // Altered ciphertext, altered header (skips ahead / new ratchet key),
    // truncated, wrong kind: each fails and leaves Bob as he was.
    let mut bad_body = m1.clone();
    let last = bad_body.len() - 1;
    bad_body[last] ^= 0x80;
    let mut bad_counter = m1.clone();
    bad_counter[40] = 200;
    let mut bad_key = m1.clone();
    bad_key[5] ^= 1;
    for bad in [
        &bad_body[..],
        &bad_counter,
        &bad_key,
        &m1[..100],
        &[9u8; 1100][..],
    ] {
        assert!(b.decrypt(bad).is_err());
        assert_eq!(b.skipped_keys(), 0);
    }
    assert_eq!(b.decrypt(&m0).unwrap(), b"zero");
    assert_eq!(b.decrypt(&m1).unwrap(), b"one");
    // A message of another session does not open in this one.
    let (mut c, _) = pair();
    assert!(matches!(
        b.decrypt(&c.encrypt(b"x").unwrap()),
        Err(SessionError::Undecryptable)
    ));
}

#[test]
fn noise_limits_sizes_and_counter_exhaustion() {
    let (mut a, mut b) = pair();
    let max = crate::pad::max_content(crate::session::RATCHET_OVERHEAD);
    let big = vec![7u8; max];
    let m = a.encrypt(&big).unwrap();
    assert_eq!(m.len(), 65535);
    assert_eq!(b.decrypt(&m).unwrap(), big);
    assert!(matches!(
        a.encrypt(&vec![0; max + 1]),
        Err(SessionError::TooLarge { .. })
    ));
    // Every message on the wire is one of the four sizes.
    let (alice, bob) = (Person::new(), Person::new());
    for len in [0usize, 10, 900, 1000, 3000, 10_000, 60_000] {
        let (p, first) = alice.first_message(&bob, &vec![1; len]);
        let acc = bob.receive_first(&alice, &first, &vec![2; len]);
        let (mut s, _) = p.finish(&acc.answer).unwrap();
        let m = s.encrypt(&vec![3; len]).unwrap();
        for wire in [&first, &acc.answer, &m] {
            assert!(BUCKETS.contains(&wire.len()), "{len}: {}", wire.len());
        }
    }
    // The sending counter ends the session rather than wrapping around.
    a.set_sent(u32::MAX - 1);
    a.encrypt(b"last one").unwrap();
    assert!(matches!(
        a.encrypt(b"one too many"),
        Err(SessionError::Exhausted)
    ));
}

#[test]
fn kept_state_resumes_exactly_and_damaged_state_is_refused() {
    let (alice, bob) = (Person::new(), Person::new());
    let (pending, first) = alice.first_message(&bob, b"kept");
    // The pending first message survives a restart.
    let kept = Pending::from_bytes(&pending.to_bytes()).unwrap();
    assert_eq!(kept.answer_address(), pending.answer_address());
    let acc = bob.receive_first(&alice, &first, b"answer");
    let (mut a, reply) = kept.finish(&acc.answer).unwrap();
    assert_eq!(reply, b"answer");
    let mut b = acc.session;
    // Sessions too, with skipped keys, at every step.
    let ms: Vec<Vec<u8>> = (0..4u8).map(|i| a.encrypt(&[i]).unwrap()).collect();
    b.decrypt(&ms[3]).unwrap();
    assert_eq!(b.skipped_keys(), 3);
    let mut b = Session::from_bytes(&b.to_bytes()).unwrap();
    assert_eq!(b.skipped_keys(), 3);
    assert_eq!(b.decrypt(&ms[1]).unwrap(), [1]);
    let mut a = Session::from_bytes(&a.to_bytes()).unwrap();
    let m = b.encrypt(b"back").unwrap();
    assert_eq!(a.decrypt(&m).unwrap(), b"back");
    assert_eq!(
        a.to_bytes()[..],
        Session::from_bytes(&a.to_bytes()).unwrap().to_bytes()[..]
    );
    // Damage is an error.
    let bytes = b.to_bytes();
    assert!(Session::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(Session::from_bytes(&[bytes.to_vec(), vec![0]].concat()).is_err());
    let mut wrong = bytes.to_vec();
    wrong[0] = 9;
    assert!(Session::from_bytes(&wrong).is_err());
    let p = pending.to_bytes();
    assert!(Pending::from_bytes(&p[..p.len() - 1]).is_err());
}

#[test]
fn mailbox_addresses_match_across_sides_rotate_and_do_not_link_contacts() {
    let (a, b) = pair();
    let (c, d) = pair();
    let today = epoch(1_800_000_000);
    assert_eq!(a.send_address(today), b.receive_address(today));
    assert_eq!(b.send_address(today), a.receive_address(today));
    assert_ne!(a.send_address(today), a.receive_address(today));
    assert_ne!(a.send_address(today), a.send_address(today + 1));
    assert_ne!(a.send_address(today), c.send_address(today));
    assert_ne!(b.send_address(today), d.send_address(today));
    let k = random32();
    assert_ne!(prekey_address(&k, today), prekey_address(&k, today + 1));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Bytes from outside, of every kind: opening, answering and decrypting
    /// never panic, and a failure leaves the session as it was.
    #[test]
    fn arbitrary_bytes_never_panic_and_change_nothing(
        kind in 0u8..5,
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1200),
    ) {
        let (alice, bob) = (Person::new(), Person::new());
        let (pending, first) = alice.first_message(&bob, b"x");
        let acc = bob.receive_first(&alice, &first, b"y");
        let mut session = acc.session;
        let mut data = vec![kind];
        data.extend_from_slice(&body);
        let _ = open(&bob.id, &data, bob.prekeys());
        let _ = pending.finish(&data);
        let before = session.skipped_keys();
        if session.decrypt(&data).is_err() {
            proptest::prop_assert_eq!(session.skipped_keys(), before);
        }
        // The real messages still work afterwards.
        let (mut a, _) = pending.finish(&acc.answer).unwrap();
        let m = a.encrypt(b"after").unwrap();
        proptest::prop_assert_eq!(session.decrypt(&m).unwrap(), b"after".to_vec());
    }
}
