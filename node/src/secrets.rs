//! Secrets in the store: sealed with XChaCha20-Poly1305 under the store key
//! (`HotKeys::store_key`), bound to what they are by the associated data, so
//! that a sealed value cannot be moved to another key in the store.
//!
//! ```text
//! sealed = nonce (24, random) ‖ XChaCha20-Poly1305(store key, nonce, secret, ad = the value's store key)
//! ```

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

const NONCE: usize = 24;

/// Why a sealed secret could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// It does not open with this key, or it was altered or moved.
    #[error(
        "a secret in the store does not open: wrong keys for this store, or the store is damaged"
    )]
    Sealed,
    /// The OS gave no randomness.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// 32 random bytes from the OS, for a new secret.
pub fn random32() -> Result<Zeroizing<[u8; 32]>, SecretError> {
    let mut b = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(&mut *b).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(b)
}

/// Seals `secret` for the store entry named by `ad`.
pub fn seal(key: &[u8; 32], ad: &[u8], secret: &[u8]) -> Result<Vec<u8>, SecretError> {
    let mut nonce = [0u8; NONCE];
    getrandom::getrandom(&mut nonce).map_err(|e| SecretError::Random(e.to_string()))?;
    let ct = XChaCha20Poly1305::new(key.into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: ad,
            },
        )
        .map_err(|_| SecretError::Sealed)?;
    Ok([&nonce[..], &ct].concat())
}

/// Opens a value sealed for the store entry named by `ad`.
pub fn open(key: &[u8; 32], ad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    if sealed.len() < NONCE + 16 {
        return Err(SecretError::Sealed);
    }
    let (nonce, ct) = sealed.split_at(NONCE);
    XChaCha20Poly1305::new(key.into())
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: ad })
        .map(Zeroizing::new)
        .map_err(|_| SecretError::Sealed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_place() {
        let key = [7u8; 32];
        let s = seal(&key, b"prekey 1", b"secret").unwrap();
        assert_eq!(&open(&key, b"prekey 1", &s).unwrap()[..], b"secret");
        assert!(open(&[8u8; 32], b"prekey 1", &s).is_err());
        assert!(open(&key, b"prekey 2", &s).is_err());
        let mut bad = s.clone();
        bad[30] ^= 1;
        assert!(open(&key, b"prekey 1", &bad).is_err());
        assert!(open(&key, b"prekey 1", &s[..20]).is_err());
        assert_ne!(seal(&key, b"prekey 1", b"secret").unwrap(), s);
    }
}
