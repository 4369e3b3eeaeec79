//! Several identities together, through the node library with real RocksDB
//! stores and keystore files: each creates an identity, they swap logs, each
//! verifies and stores the others', and a restore on a fresh data dir gives
//! back the same identity and keys.

use cairn_chain_anchor::{verify_without_chain, Verdict};
use cairn_node::identity;
use cairn_node::DataDir;
use cairn_wallet::keystore::KdfParams;
use cairn_wallet::{KeyEventLog, SeedPhrase};

const PASS: &str = "integration passphrase";

#[test]
fn three_identities_swap_and_verify_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let names = ["alice", "bob", "carol"];
    let mut people = Vec::new();
    for n in names {
        let dir = DataDir::new(tmp.path().join(n));
        let store = identity::open_store(&dir).unwrap();
        let phrase = SeedPhrase::generate(12).unwrap();
        let own = identity::create(&store, &dir, &phrase, "", PASS, KdfParams::default()).unwrap();
        people.push((dir, store, own, phrase));
    }
    // Everyone receives everyone's exported log as bytes, verifies and stores it.
    let exported: Vec<Vec<u8>> = people.iter().map(|p| p.2.log.encode()).collect();
    for (i, (_, store, own, _)) in people.iter().enumerate() {
        for (j, bytes) in exported.iter().enumerate() {
            if i == j {
                continue;
            }
            let log = KeyEventLog::decode(bytes).unwrap();
            let (state, verdict) = verify_without_chain(&log).unwrap();
            assert_eq!(verdict, Verdict::Unanchored { rotation_index: 0 });
            assert_eq!(state.id, people[j].2.state.id);
            store.put_log(&state.id, &log).unwrap();
            // Pairwise safety numbers agree.
            assert_eq!(
                own.state.id.safety_number(&state.id),
                state.id.safety_number(&own.state.id)
            );
        }
    }
    // Ids are distinct, as are fingerprints.
    let ids: std::collections::BTreeSet<_> = people.iter().map(|p| p.2.state.id).collect();
    assert_eq!(ids.len(), 3);
    let fps: std::collections::BTreeSet<_> =
        people.iter().map(|p| p.2.state.id.fingerprint()).collect();
    assert_eq!(fps.len(), 3);

    // Restart: drop the stores and reopen; everything is still there.
    let ids: Vec<_> = people.iter().map(|p| p.2.state.id).collect();
    let mut kept = Vec::new();
    for (dir, store, _, phrase) in people {
        drop(store);
        kept.push((dir, phrase));
    }
    for (i, (dir, _)) in kept.iter().enumerate() {
        let store = identity::open_store(dir).unwrap();
        assert_eq!(identity::load(&store, dir).unwrap().state.id, ids[i]);
        for (j, id) in ids.iter().enumerate() {
            if i != j {
                assert_eq!(store.log(id).unwrap().unwrap().encode(), exported[j]);
            }
        }
    }

    // Alice restores on a new machine from her words alone: same id, same keys.
    let (alice_dir, alice_words) = &kept[0];
    let original = {
        let store = identity::open_store(alice_dir).unwrap();
        let own = identity::load(&store, alice_dir).unwrap();
        let hot = identity::unlock_hot(alice_dir, &own, PASS).unwrap();
        (
            own.log.encode(),
            hot.signing.public(),
            hot.messaging.public(),
            *hot.network,
        )
    };
    let fresh = DataDir::new(tmp.path().join("alice-new"));
    let store = identity::open_store(&fresh).unwrap();
    let typed = SeedPhrase::parse(&alice_words.phrase()).unwrap();
    let own = identity::create(
        &store,
        &fresh,
        &typed,
        "",
        "a different passphrase",
        KdfParams::default(),
    )
    .unwrap();
    let hot = identity::unlock_hot(&fresh, &own, "a different passphrase").unwrap();
    assert_eq!(own.log.encode(), original.0);
    assert_eq!(
        (hot.signing.public(), hot.messaging.public(), *hot.network),
        (original.1, original.2, original.3)
    );
    assert!(identity::unlock_seed(&fresh, &own, "a different passphrase").is_ok());
    assert!(matches!(
        identity::unlock_hot(&fresh, &own, PASS),
        Err(identity::IdentityError::Keystore(
            cairn_wallet::keystore::KeystoreError::WrongPassphrase
        ))
    ));
}
