//! The official test vectors, checked in under `wallet/testdata/` and run
//! through the wallet's own code paths.

use std::str::FromStr;

use bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
use bitcoin::secp256k1::{schnorr::Signature, Keypair, Message, Secp256k1, XOnlyPublicKey};
use bitcoin::NetworkKind;
use cairn_wallet::keys::{CoinType, MasterKey, FUNDS_ACCOUNT_EVERYDAY};
use cairn_wallet::SeedPhrase;
use serde_json::Value;

fn data(name: &str) -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn bip39_all_english_vectors() {
    let v: Value = serde_json::from_str(&data("bip39-vectors.json")).unwrap();
    let vectors = v["english"].as_array().unwrap();
    assert_eq!(vectors.len(), 24);
    assert!(
        vectors[0][2]
            .as_str()
            .unwrap()
            .starts_with("c55257c360c07c72"),
        "altered vector file"
    );
    for (i, t) in vectors.iter().enumerate() {
        let (entropy, words, seed, xprv) = (
            t[0].as_str().unwrap(),
            t[1].as_str().unwrap(),
            t[2].as_str().unwrap(),
            t[3].as_str().unwrap(),
        );
        let from_entropy = SeedPhrase::from_entropy(&unhex(entropy)).unwrap();
        assert_eq!(
            *from_entropy.phrase(),
            words,
            "vector {i}: entropy -> words"
        );
        let parsed = SeedPhrase::parse(words).unwrap();
        assert_eq!(
            hex(&parsed.entropy()),
            entropy,
            "vector {i}: words -> entropy"
        );
        let s = parsed.to_seed("TREZOR");
        assert_eq!(hex(s.as_bytes()), seed, "vector {i}: seed");
        let root = Xpriv::new_master(NetworkKind::Main, s.as_bytes()).unwrap();
        assert_eq!(root.to_string(), xprv, "vector {i}: root xprv");
        // And through the wallet's master key: m's derivation is the identity path.
        let m = MasterKey::new(&s);
        assert_eq!(
            m.derive(&DerivationPath::master())
                .unwrap()
                .xpriv()
                .to_string(),
            xprv
        );
    }
}

#[test]
fn bip32_vectors_1_to_5() {
    let v: Value = serde_json::from_str(&data("bip32-vectors.json")).unwrap();
    let secp = Secp256k1::new();
    let mut seen = 0;
    for t in v.as_array().unwrap() {
        let n = t["vector"].as_u64().unwrap();
        if n == 5 {
            let invalid = t["invalid"].as_array().unwrap();
            assert!(invalid.len() >= 14);
            for k in invalid {
                let key = k["key"].as_str().unwrap();
                let reason = k["reason"].as_str().unwrap();
                assert!(
                    cairn_wallet::keys::parse_extended_key(key).is_err(),
                    "vector 5 key accepted: {key} ({reason})"
                );
            }
            seen += 1;
            continue;
        }
        let seed = unhex(t["seed"].as_str().unwrap());
        let m = MasterKey::from_seed_bytes(&seed, NetworkKind::Main).unwrap();
        for c in t["chains"].as_array().unwrap() {
            let path = DerivationPath::from_str(c["path"].as_str().unwrap()).unwrap();
            let k = m.derive(&path).unwrap();
            assert_eq!(
                k.xpriv().to_string(),
                c["xprv"].as_str().unwrap(),
                "vector {n} {path}"
            );
            assert_eq!(
                Xpub::from_priv(&secp, k.xpriv()).to_string(),
                c["xpub"].as_str().unwrap(),
                "vector {n} {path}"
            );
            // The valid keys also parse through the strict parser.
            assert!(cairn_wallet::keys::parse_extended_key(c["xprv"].as_str().unwrap()).is_ok());
            assert!(cairn_wallet::keys::parse_extended_key(c["xpub"].as_str().unwrap()).is_ok());
        }
        seen += 1;
    }
    assert_eq!(seen, 5);
}

#[test]
fn bip86_vectors() {
    let v: Value = serde_json::from_str(&data("bip86-vectors.json")).unwrap();
    let phrase = SeedPhrase::parse(v["mnemonic"].as_str().unwrap()).unwrap();
    let m = MasterKey::new(&phrase.to_seed(""));
    assert_eq!(
        m.derive(&DerivationPath::master())
            .unwrap()
            .xpriv()
            .to_string(),
        v["rootpriv"].as_str().unwrap()
    );
    let secp = Secp256k1::new();
    let derivations = v["derivations"].as_array().unwrap();
    assert_eq!(derivations.len(), 4);
    // The wallet's own account path for everyday funds is the vectors' account 0.
    let account = MasterKey::bip86_account_path(CoinType::Mainnet, FUNDS_ACCOUNT_EVERYDAY).unwrap();
    assert_eq!(
        account.to_string(),
        derivations[0]["path"]
            .as_str()
            .unwrap()
            .trim_start_matches("m/")
    );
    assert_eq!(
        m.bip86_account_xpub(CoinType::Mainnet, FUNDS_ACCOUNT_EVERYDAY)
            .unwrap()
            .to_string(),
        derivations[0]["xpub"].as_str().unwrap()
    );
    for d in &derivations[1..] {
        let path = DerivationPath::from_str(d["path"].as_str().unwrap()).unwrap();
        let k = m.derive(&path).unwrap();
        assert_eq!(k.xpriv().to_string(), d["xprv"].as_str().unwrap());
        let internal = k.xpriv().to_keypair(&secp).x_only_public_key().0;
        assert_eq!(
            hex(&internal.serialize()),
            d["internal_key"].as_str().unwrap()
        );
        let address = bitcoin::Address::p2tr(&secp, internal, None, bitcoin::KnownHrp::Mainnet);
        assert_eq!(address.to_string(), d["address"].as_str().unwrap());
        assert_eq!(
            hex(address.script_pubkey().as_bytes()),
            d["scriptPubKey"].as_str().unwrap()
        );
    }
}

#[test]
fn bip340_vectors() {
    let secp = Secp256k1::new();
    let csv = data("bip340-test-vectors.csv");
    let mut run = 0;
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (index, sk, pk, aux, msg, sig, ok) =
            (f[0], f[1], f[2], f[3], f[4], f[5], f[6] == "TRUE");
        let msg = unhex(msg);
        // Cairn signs only 32-byte digests and secp256k1 0.29 (pinned by `bitcoin`)
        // takes only 32-byte messages; vectors 15-18 test other lengths.
        let Ok(msg32) = <[u8; 32]>::try_from(msg.as_slice()) else {
            assert!(["15", "16", "17", "18"].contains(&index), "vector {index}");
            continue;
        };
        let message = Message::from_digest(msg32);
        if !sk.is_empty() {
            let kp = Keypair::from_seckey_slice(&secp, &unhex(sk)).unwrap();
            let aux: [u8; 32] = unhex(aux).try_into().unwrap();
            let s = secp.sign_schnorr_with_aux_rand(&message, &kp, &aux);
            assert_eq!(
                hex(s.as_ref()).to_uppercase(),
                sig,
                "vector {index}: signature"
            );
        }
        let verified = XOnlyPublicKey::from_slice(&unhex(pk))
            .ok()
            .zip(Signature::from_slice(&unhex(sig)).ok())
            .map(|(pk, s)| secp.verify_schnorr(&s, &message, &pk).is_ok())
            .unwrap_or(false);
        assert_eq!(verified, ok, "vector {index}: verification");
        run += 1;
    }
    assert_eq!(run, 15);
}
