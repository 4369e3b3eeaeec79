//! Key derivation: HMAC-SHA256 and HKDF (RFC 5869) over it, for the double
//! ratchet's root and chain keys and for mailbox addresses.

use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
use zeroize::Zeroizing;

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut engine = hmac::HmacEngine::<sha256::Hash>::new(key);
    for p in parts {
        engine.input(p);
    }
    Zeroizing::new(hmac::Hmac::<sha256::Hash>::from_engine(engine).to_byte_array())
}

/// HKDF-SHA256 with a 64-byte output: two 32-byte keys.
pub(crate) fn hkdf2(
    salt: &[u8],
    ikm: &[&[u8]],
    info: &[u8],
) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let prk = hmac(salt, ikm);
    let t1 = hmac(&*prk, &[info, &[1]]);
    let t2 = hmac(&*prk, &[&*t1, info, &[2]]);
    (t1, t2)
}

/// The chain step of the double ratchet: (message key, next chain key) =
/// (HMAC(ck, 0x01), HMAC(ck, 0x02)), the key set up once for both.
pub(crate) fn chain_step(ck: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    let keyed = hmac::HmacEngine::<sha256::Hash>::new(ck);
    let mut one = keyed.clone();
    let mut two = keyed;
    one.input(&[1]);
    two.input(&[2]);
    (
        Zeroizing::new(hmac::Hmac::<sha256::Hash>::from_engine(one).to_byte_array()),
        Zeroizing::new(hmac::Hmac::<sha256::Hash>::from_engine(two).to_byte_array()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn chain_step_is_two_hmacs() {
        let ck = [9u8; 32];
        let (mk, next) = chain_step(&ck);
        assert_eq!(*mk, *hmac(&ck, &[&[1]]));
        assert_eq!(*next, *hmac(&ck, &[&[2]]));
        assert_ne!(*mk, *next);
    }

    /// RFC 5869, test case 1: its 42-byte OKM is the start of our T(1) ‖ T(2).
    #[test]
    fn hkdf_matches_rfc5869() {
        let ikm = [0x0bu8; 22];
        let salt = unhex("000102030405060708090a0b0c");
        let info = unhex("f0f1f2f3f4f5f6f7f8f9");
        assert_eq!(
            hmac(&salt, &[&ikm]).to_vec(),
            unhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
        );
        let (t1, t2) = hkdf2(&salt, &[&ikm[..10], &ikm[10..]], &info);
        let okm: Vec<u8> = t1.iter().chain(t2.iter()).copied().take(42).collect();
        assert_eq!(
            okm,
            unhex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        );
    }
}
