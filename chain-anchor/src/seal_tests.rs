use bitcoin::hashes::{sha256, Hash};
use bitcoin::hex::{DisplayHex, FromHex};
use bitcoin::key::{Keypair, Secp256k1, XOnlyPublicKey};
use bitcoin::taproot::{LeafVersion, TapLeafHash, TaprootBuilder};
use bitcoin::Witness;
use cairn_wallet::kel::Digest;

use super::*;

fn key(secret: u8) -> XOnlyPublicKey {
    let secp = Secp256k1::new();
    Keypair::from_seckey_slice(&secp, &[secret; 32])
        .expect("valid secret")
        .x_only_public_key()
        .0
}

#[test]
fn nums_point_is_bip341s() {
    // BIP341: H = lift_x(SHA256(uncompressed encoding of G)).
    let g = Vec::<u8>::from_hex(concat!(
        "04",
        "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
        "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"
    ))
    .expect("hex");
    assert_eq!(sha256::Hash::hash(&g).to_byte_array(), NUMS_H);
}

#[test]
fn owner_and_verifier_compute_the_same_output() {
    let secp = Secp256k1::new();
    let event = Digest([0x42; 32]);
    let next = key(7);
    let seal = Seal::new(&secp, event, &next).expect("seal");
    // Independently, through the taproot builder.
    let built = TaprootBuilder::new()
        .add_leaf(1, commit_script(&event))
        .and_then(|b| b.add_leaf(1, next_key_script(&next)))
        .expect("tree")
        .finalize(&secp, internal_key(&secp, &event).expect("key"))
        .expect("finalize");
    assert_eq!(built.output_key(), seal.output_key);
    // A verifier who holds only the leaf hash.
    let leaf = TapLeafHash::from_script(&next_key_script(&next), LeafVersion::TapScript);
    assert_eq!(
        Seal::from_leaf_hash(&secp, event, leaf).expect("seal"),
        seal
    );
    assert_eq!(seal.script_pubkey().len(), 34);
    assert!(seal.script_pubkey().is_p2tr());
}

#[test]
fn each_event_and_key_gives_its_own_seal() {
    let secp = Secp256k1::new();
    let (a, b) = (Digest([1; 32]), Digest([2; 32]));
    let h = XOnlyPublicKey::from_slice(&NUMS_H).expect("H");
    let ka = internal_key(&secp, &a).expect("key");
    assert_ne!(ka, h, "the internal key is tweaked away from H");
    assert_ne!(ka, internal_key(&secp, &b).expect("key"));
    let s = |e, k| Seal::new(&secp, e, &key(k)).expect("seal").output_key;
    assert_ne!(s(a, 1), s(b, 1));
    assert_ne!(s(a, 1), s(a, 2));
}

#[test]
fn leaves_have_their_documented_shape() {
    let event = Digest([0xab; 32]);
    let commit = commit_script(&event);
    assert_eq!(commit.as_bytes()[0], 0x6a, "OP_RETURN first");
    assert_eq!(&commit.as_bytes()[1..], [&[32u8][..], &[0xab; 32]].concat());
    let next = key(3);
    let spend = next_key_script(&next);
    assert_eq!(spend.len(), 34);
    assert_eq!(next_key_of(&spend), Some(next));
    assert_eq!(next_key_of(&commit), None);
}

fn spend_witness(
    secp: &Secp256k1<bitcoin::secp256k1::All>,
    seal: &Seal,
    next: &XOnlyPublicKey,
) -> Witness {
    let control = seal.control_block(secp, next).expect("control block");
    let mut w = Witness::new();
    w.push([0u8; 64]);
    w.push(next_key_script(next).as_bytes());
    w.push(control.serialize());
    w
}

#[test]
fn a_spend_reveals_the_next_key_and_nothing_else_passes() {
    let secp = Secp256k1::new();
    let event = Digest([9; 32]);
    let next = key(5);
    let seal = Seal::new(&secp, event, &next).expect("seal");
    let good = spend_witness(&secp, &seal, &next);
    assert_eq!(seal.check_spend(&secp, &good), Ok(next));

    // The owner cannot build a control block for a key the seal does not hold.
    assert_eq!(
        seal.control_block(&secp, &key(6)),
        Err(SealError::WrongLeaf)
    );

    // Another key's leaf, with the control block of that other seal.
    let other = Seal::new(&secp, Digest([8; 32]), &key(6)).expect("seal");
    let wrong = spend_witness(&secp, &other, &key(6));
    assert_eq!(seal.check_spend(&secp, &wrong), Err(SealError::WrongLeaf));

    // The right leaf with the other seal's control block (another internal key).
    let mut mixed = Witness::new();
    mixed.push(&good[0]);
    mixed.push(&good[1]);
    mixed.push(&wrong[2]);
    assert_eq!(
        seal.check_spend(&secp, &mixed),
        Err(SealError::BadControlBlock)
    );

    // Revealing the commitment leaf, a key-path spend, garbage.
    let mut commit = Witness::new();
    commit.push([0u8; 64]);
    commit.push(commit_script(&event).as_bytes());
    commit.push(&good[2]);
    assert_eq!(
        seal.check_spend(&secp, &commit),
        Err(SealError::NotNextKeyLeaf)
    );
    let mut keypath = Witness::new();
    keypath.push([0u8; 64]);
    assert_eq!(
        seal.check_spend(&secp, &keypath),
        Err(SealError::WitnessShape(1))
    );
    let mut junk = Witness::new();
    junk.push([0u8; 64]);
    junk.push(&good[1]);
    junk.push([0xffu8; 5]);
    assert_eq!(
        seal.check_spend(&secp, &junk),
        Err(SealError::BadControlBlock)
    );
}

/// `testdata/seal_vectors.txt`: one vector per line, hex fields
/// `event next_key internal_key next_leaf_hash script_pubkey`.
#[test]
fn vectors() {
    let secp = Secp256k1::new();
    let text = include_str!("../testdata/seal_vectors.txt");
    let mut n = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f.len(), 5, "vector line: {line}");
        let event = Digest(<[u8; 32]>::from_hex(f[0]).expect("event hex"));
        let next = XOnlyPublicKey::from_slice(&Vec::from_hex(f[1]).expect("key hex")).expect("key");
        let seal = Seal::new(&secp, event, &next).expect("seal");
        let got = format!(
            "{} {} {} {} {}",
            f[0],
            f[1],
            seal.internal_key.serialize().to_lower_hex_string(),
            seal.next_leaf.to_byte_array().to_lower_hex_string(),
            seal.script_pubkey().as_bytes().to_lower_hex_string()
        );
        assert_eq!(got, line.trim(), "seal vector");
        n += 1;
    }
    assert!(n >= 3, "at least three vectors");
}
