//! Session messages from outside (first messages, answers, ratchet
//! messages): opening, answering and decrypting never panic, and a message
//! that fails changes no state. Kept state read back from a damaged store
//! never panics either.
#![no_main]
use std::sync::OnceLock;

use cairn_messaging::{open, start, PeerIdentity, PeerPrekey, Pending, Session};
use cairn_wallet::IdentityId;
use libfuzzer_sys::fuzz_target;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

const BOB_PREKEY: [u8; 32] = [3; 32];

struct Fixture {
    bob: IdentityId,
    pending: Pending,
    session: Session,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (alice, bob) = (IdentityId([1; 32]), IdentityId([2; 32]));
        let (alice_key, bob_key) = ([4u8; 32], [5u8; 32]);
        let public = |s: [u8; 32]| PublicKey::from(&StaticSecret::from(s)).to_bytes();
        let peer = PeerIdentity {
            id: bob,
            messaging_key: public(bob_key),
        };
        let prekey = PeerPrekey {
            id: 1,
            key: public(BOB_PREKEY),
        };
        let (pending, first) = start(alice, &alice_key, &peer, &prekey, b"hi").unwrap();
        let opened = open(&bob, &first, |_| Some(Zeroizing::new(BOB_PREKEY))).unwrap();
        let accepted =
            cairn_messaging::accept(&bob, &public(bob_key), &opened, &public(alice_key), b"")
                .unwrap();
        Fixture {
            bob,
            pending,
            session: accepted.session,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let _ = open(&f.bob, data, |id| {
        (id == 1).then(|| Zeroizing::new(BOB_PREKEY))
    });
    let _ = f.pending.finish(data);
    let _ = Session::from_bytes(data);
    let _ = Pending::from_bytes(data);
    let mut s = f.session.clone();
    if s.decrypt(data).is_err() {
        assert_eq!(s.skipped_keys(), f.session.skipped_keys());
    }
});
