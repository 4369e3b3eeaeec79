//! Secrets at rest: Argon2id stretches the passphrase, XChaCha20-Poly1305 seals
//! the secret, and a checksum over the whole file tells a damaged file from a
//! wrong passphrase.
//!
//! ```text
//! file = magic:"CAIRNKS1" version:u8(=1) kind:u8 m_cost_kib:u32 t_cost:u32
//!        parallelism:u32 salt:16 nonce:24 ct_len:u32 ciphertext:ct_len
//!        checksum:32
//! ```
//!
//! Everything before the ciphertext is the AEAD's associated data, so the KDF
//! parameters cannot be changed without detection. `checksum` is a tagged
//! SHA-256 of all bytes before it: it is not a security measure (anyone can
//! recompute it) but it lets the node say "this file is damaged" rather than
//! "wrong passphrase" when a byte flips on disk.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::hash::{tagged_hash, tags};
use crate::keys::{KeyError, MasterKey, MessagingKey, SigningKey};
use crate::seed::Seed;

const MAGIC: &[u8; 8] = b"CAIRNKS1";
const VERSION: u8 = 1;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 8 + 1 + 1 + 12 + SALT_LEN + NONCE_LEN + 4;
const CHECKSUM_LEN: usize = 32;
/// Largest sealed secret.
pub const MAX_SECRET_LEN: usize = 4096;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// The minimum (and default): 64 MiB, 3 passes, 1 lane.
    pub const MINIMUM: KdfParams = KdfParams {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        parallelism: 1,
    };
    /// Upper bounds accepted when reading a file (so a file cannot demand
    /// unbounded memory or time).
    pub const MAXIMUM: KdfParams = KdfParams {
        m_cost_kib: 4 * 1024 * 1024,
        t_cost: 64,
        parallelism: 16,
    };

    fn check(&self) -> Result<(), KeystoreError> {
        let (lo, hi) = (Self::MINIMUM, Self::MAXIMUM);
        if self.m_cost_kib < lo.m_cost_kib
            || self.t_cost < lo.t_cost
            || self.parallelism < lo.parallelism
        {
            return Err(KeystoreError::WeakParameters);
        }
        if self.m_cost_kib > hi.m_cost_kib
            || self.t_cost > hi.t_cost
            || self.parallelism > hi.parallelism
        {
            return Err(KeystoreError::ExcessiveParameters);
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::MINIMUM
    }
}

/// What a keystore file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// The seed (cold: needed to rotate).
    Seed = 1,
    /// The current hot keys (needed to run the node).
    HotKeys = 2,
}

impl SecretKind {
    fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(SecretKind::Seed),
            2 => Some(SecretKind::HotKeys),
            _ => None,
        }
    }
}

/// Keystore failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoreError {
    /// The passphrase does not open the file.
    #[error("wrong passphrase: it does not unlock this keystore")]
    WrongPassphrase,
    /// The file is not intact.
    #[error("the keystore file is damaged ({0}); restore it from a backup or restore the identity from its seed phrase")]
    Damaged(&'static str),
    /// A format version this build does not know.
    #[error("the keystore file has format version {0}, which this version of cairn cannot read; upgrade cairn")]
    UnknownVersion(u8),
    /// KDF parameters weaker than the minimum.
    #[error(
        "the keystore's key-derivation parameters are weaker than the minimum (64 MiB, 3 passes)"
    )]
    WeakParameters,
    /// KDF parameters above the accepted maximum (4 GiB, 64 passes, 16 lanes).
    #[error("the keystore's key-derivation parameters exceed the maximum this version accepts (4 GiB, 64 passes, 16 lanes)")]
    ExcessiveParameters,
    /// The file holds another kind of secret.
    #[error("the keystore file holds a {found:?} secret, not a {expected:?} secret")]
    WrongKind {
        /// Expected kind.
        expected: SecretKind,
        /// Found kind.
        found: SecretKind,
    },
    /// An empty passphrase.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// Secret larger than allowed.
    #[error("secret too large to seal")]
    TooLarge,
    /// Randomness or KDF failure.
    #[error("key derivation failed: {0}")]
    Kdf(String),
    /// The plaintext is malformed (after a successful decryption).
    #[error("the keystore holds malformed secrets ({0})")]
    Malformed(&'static str),
    /// Key derivation for the hot keys failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn stretch(
    passphrase: &str,
    salt: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let normalized = Zeroizing::new(passphrase.nfkd().collect::<String>());
    let p = Params::new(
        params.m_cost_kib,
        params.t_cost,
        params.parallelism,
        Some(32),
    )
    .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(normalized.as_bytes(), salt, &mut key[..])
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(key)
}

/// Encrypts `secret` under `passphrase` into a keystore file.
pub fn seal(
    kind: SecretKind,
    secret: &[u8],
    passphrase: &str,
    params: KdfParams,
) -> Result<Vec<u8>, KeystoreError> {
    if passphrase.is_empty() {
        return Err(KeystoreError::EmptyPassphrase);
    }
    if secret.len() > MAX_SECRET_LEN {
        return Err(KeystoreError::TooLarge);
    }
    params.check()?;
    let mut random = [0u8; SALT_LEN + NONCE_LEN];
    getrandom::getrandom(&mut random).map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let (salt, nonce) = random.split_at(SALT_LEN);
    let key = stretch(passphrase, salt, params)?;
    let ct_len = (secret.len() + 16) as u32;
    let mut out = Vec::with_capacity(HEADER_LEN + secret.len() + 16 + CHECKSUM_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&params.m_cost_kib.to_be_bytes());
    out.extend_from_slice(&params.t_cost.to_be_bytes());
    out.extend_from_slice(&params.parallelism.to_be_bytes());
    out.extend_from_slice(salt);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&ct_len.to_be_bytes());
    let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key[..]));
    let ct = cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: secret,
                aad: &out,
            },
        )
        .map_err(|_| KeystoreError::Kdf("encryption failed".into()))?;
    out.extend_from_slice(&ct);
    let sum = tagged_hash(tags::KEYSTORE_CHECKSUM, &[&out]);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// Decrypts a keystore file.
pub fn open(
    file: &[u8],
    passphrase: &str,
    expected: SecretKind,
) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
    if file.len() < HEADER_LEN + 16 + CHECKSUM_LEN
        || file.len() > HEADER_LEN + MAX_SECRET_LEN + 16 + CHECKSUM_LEN
    {
        return Err(KeystoreError::Damaged("wrong size"));
    }
    let (body, sum) = file.split_at(file.len() - CHECKSUM_LEN);
    if tagged_hash(tags::KEYSTORE_CHECKSUM, &[body]) != sum {
        return Err(KeystoreError::Damaged("checksum mismatch"));
    }
    if &body[..8] != MAGIC {
        return Err(KeystoreError::Damaged("not a keystore file"));
    }
    if body[8] != VERSION {
        return Err(KeystoreError::UnknownVersion(body[8]));
    }
    let found =
        SecretKind::from_u8(body[9]).ok_or(KeystoreError::Damaged("unknown secret kind"))?;
    if found != expected {
        return Err(KeystoreError::WrongKind { expected, found });
    }
    let u32_at = |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    let params = KdfParams {
        m_cost_kib: u32_at(10),
        t_cost: u32_at(14),
        parallelism: u32_at(18),
    };
    params.check()?;
    let salt = &body[22..22 + SALT_LEN];
    let nonce = &body[22 + SALT_LEN..22 + SALT_LEN + NONCE_LEN];
    let ct_len = u32_at(HEADER_LEN - 4) as usize;
    let (header, ct) = body.split_at(HEADER_LEN);
    if ct.len() != ct_len {
        return Err(KeystoreError::Damaged("length mismatch"));
    }
    let key = stretch(passphrase, salt, params)?;
    let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&key[..]));
    let plain = cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: header,
            },
        )
        .map_err(|_| KeystoreError::WrongPassphrase)?;
    Ok(Zeroizing::new(plain))
}

/// The cold secrets: the phrase's entropy (to show the words again) and the seed.
pub struct SeedSecrets {
    /// BIP39 entropy.
    pub entropy: Zeroizing<Vec<u8>>,
    /// BIP39 seed (with the passphrase applied).
    pub seed: Seed,
}

impl SeedSecrets {
    /// Plaintext encoding: `version:u8 entropy_len:u8 entropy seed:64`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(2 + self.entropy.len() + 64));
        v.push(1);
        v.push(self.entropy.len() as u8);
        v.extend_from_slice(&self.entropy);
        v.extend_from_slice(self.seed.as_bytes());
        v
    }

    /// Decodes the plaintext.
    pub fn decode(b: &[u8]) -> Result<Self, KeystoreError> {
        if b.len() < 2 || b[0] != 1 {
            return Err(KeystoreError::Malformed("seed record version"));
        }
        let n = usize::from(b[1]);
        if !matches!(n, 16 | 20 | 24 | 28 | 32) || b.len() != 2 + n + 64 {
            return Err(KeystoreError::Malformed("seed record length"));
        }
        let mut seed = Zeroizing::new([0u8; 64]);
        seed.copy_from_slice(&b[2 + n..]);
        Ok(SeedSecrets {
            entropy: Zeroizing::new(b[2..2 + n].to_vec()),
            seed: Seed::from_bytes(*seed),
        })
    }
}

/// The hot keys a running node needs: current signing and messaging keys and the
/// network key. Rotation needs the seed, which is not among them.
pub struct HotKeys {
    /// Rotation index these keys belong to.
    pub index: u32,
    /// Current identity signing key.
    pub signing: SigningKey,
    /// Current messaging key.
    pub messaging: MessagingKey,
    /// Ed25519 secret of the network (libp2p) key.
    pub network: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for HotKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HotKeys(index {}, {:?}, {:?})",
            self.index, self.signing, self.messaging
        )
    }
}

impl HotKeys {
    /// The hot keys for rotation index `index` (device 0's network key).
    pub fn derive(master: &MasterKey, index: u32) -> Result<Self, KeystoreError> {
        Ok(HotKeys {
            index,
            signing: master.signing_key(index)?,
            messaging: master.messaging_key(index)?,
            network: master.network_secret(0)?,
        })
    }

    /// The key that seals this device's secrets in the node's store
    /// (prekeys, sessions, messages): a tagged hash of the network secret,
    /// so the same words give it back and it does not change with rotations.
    pub fn store_key(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(tagged_hash(tags::STORE_KEY, &[&self.network[..]]))
    }

    /// Plaintext encoding: `version:u8 index:u32 signing:32 messaging:32 network:32`.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut v = Zeroizing::new(Vec::with_capacity(101));
        v.push(1);
        v.extend_from_slice(&self.index.to_be_bytes());
        v.extend_from_slice(&self.signing.secret_bytes()[..]);
        v.extend_from_slice(&self.messaging.secret_bytes()[..]);
        v.extend_from_slice(&self.network[..]);
        v
    }

    /// Decodes the plaintext.
    pub fn decode(b: &[u8]) -> Result<Self, KeystoreError> {
        if b.len() != 101 || b[0] != 1 {
            return Err(KeystoreError::Malformed("hot key record"));
        }
        let index = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
        let mut s = Zeroizing::new([0u8; 32]);
        s.copy_from_slice(&b[5..37]);
        let signing =
            SigningKey::from_secret_bytes(&s).ok_or(KeystoreError::Malformed("signing key"))?;
        s.copy_from_slice(&b[37..69]);
        let messaging = MessagingKey::from_secret_bytes(*s);
        let mut network = Zeroizing::new([0u8; 32]);
        network.copy_from_slice(&b[69..101]);
        Ok(HotKeys {
            index,
            signing,
            messaging,
            network,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_errors() {
        let secret = b"thirty-two bytes of secret......";
        let file = seal(
            SecretKind::Seed,
            secret,
            "correct horse",
            KdfParams::default(),
        )
        .unwrap();
        assert_eq!(
            &open(&file, "correct horse", SecretKind::Seed).unwrap()[..],
            secret
        );
        assert_eq!(
            open(&file, "wrong horse", SecretKind::Seed).unwrap_err(),
            KeystoreError::WrongPassphrase
        );
        assert!(matches!(
            open(&file, "correct horse", SecretKind::HotKeys).unwrap_err(),
            KeystoreError::WrongKind { .. }
        ));
        // Every single flipped byte is caught, as damage (not a wrong passphrase).
        for i in (0..file.len()).step_by(7) {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(
                matches!(
                    open(&bad, "correct horse", SecretKind::Seed),
                    Err(KeystoreError::Damaged(_))
                ),
                "byte {i}"
            );
        }
        assert!(matches!(
            open(&file[..20], "x", SecretKind::Seed),
            Err(KeystoreError::Damaged(_))
        ));
        assert_eq!(
            seal(SecretKind::Seed, secret, "", KdfParams::default()).unwrap_err(),
            KeystoreError::EmptyPassphrase
        );
        let weak = KdfParams {
            m_cost_kib: 1024,
            ..KdfParams::default()
        };
        assert_eq!(
            seal(SecretKind::Seed, secret, "x", weak).unwrap_err(),
            KeystoreError::WeakParameters
        );
    }

    #[test]
    fn ciphertext_tamper_with_fixed_checksum_is_rejected() {
        let file = seal(
            SecretKind::HotKeys,
            b"abc",
            "pw-pw-pw",
            KdfParams::default(),
        )
        .unwrap();
        let mut bad = file.clone();
        let i = HEADER_LEN; // first ciphertext byte
        bad[i] ^= 0x80;
        let n = bad.len() - CHECKSUM_LEN;
        let sum = tagged_hash(tags::KEYSTORE_CHECKSUM, &[&bad[..n]]);
        bad[n..].copy_from_slice(&sum);
        // Authenticated encryption still refuses it.
        assert_eq!(
            open(&bad, "pw-pw-pw", SecretKind::HotKeys).unwrap_err(),
            KeystoreError::WrongPassphrase
        );
    }

    #[test]
    fn secrets_records_round_trip() {
        let phrase = crate::seed::SeedPhrase::generate(12).unwrap();
        let seed = phrase.to_seed("");
        let s = SeedSecrets {
            entropy: phrase.entropy(),
            seed: seed.clone(),
        };
        let back = SeedSecrets::decode(&s.encode()).unwrap();
        assert_eq!(back.seed.as_bytes(), seed.as_bytes());
        assert_eq!(back.entropy, phrase.entropy());
        let m = MasterKey::new(&seed);
        let hot = HotKeys::derive(&m, 2).unwrap();
        let back = HotKeys::decode(&hot.encode()).unwrap();
        assert_eq!(back.index, 2);
        assert_eq!(back.signing.public(), hot.signing.public());
        assert_eq!(back.messaging.public(), hot.messaging.public());
        assert_eq!(*back.network, *hot.network);
        assert!(HotKeys::decode(&hot.encode()[..100]).is_err());
    }
}
