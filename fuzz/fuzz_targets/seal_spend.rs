//! A seal spend's witness from a block: errors, never panics; a witness that
//! passes reveals a key whose leaf is the seal's.
#![no_main]
use bitcoin::hashes::Hash;
use bitcoin::key::Secp256k1;
use bitcoin::taproot::{LeafVersion, TapLeafHash};
use bitcoin::Witness;
use cairn_chain_anchor::seal::{next_key_script, Seal};
use cairn_wallet::kel::Digest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let secp = Secp256k1::verification_only();
    let Some((event, rest)) = data.split_first_chunk::<32>() else {
        return;
    };
    let Some((leaf, rest)) = rest.split_first_chunk::<32>() else {
        return;
    };
    let Ok(seal) = Seal::from_leaf_hash(&secp, Digest(*event), TapLeafHash::from_byte_array(*leaf))
    else {
        return;
    };
    // Split the rest into witness items at 0xff bytes.
    let witness = Witness::from_slice(&rest.split(|b| *b == 0xff).collect::<Vec<_>>());
    if let Ok(key) = seal.check_spend(&secp, &witness) {
        assert_eq!(
            TapLeafHash::from_script(&next_key_script(&key), LeafVersion::TapScript),
            seal.next_leaf
        );
    }
});
