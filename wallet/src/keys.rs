//! Key derivation from the seed (BIP32), on documented hardened paths.
//!
//! | purpose | path | key |
//! |---|---|---|
//! | identity signing key, rotation index k | `m/1128352082'/0'/0'/k'` | secp256k1, BIP340 x-only |
//! | messaging key, rotation index k | `m/1128352082'/0'/1'/k'` → tagged hash `cairn/messaging-key/x25519/v1` | X25519 |
//! | network (libp2p) key, device d | `m/1128352082'/0'/2'/d'` → tagged hash `cairn/network-key/ed25519/v1` | Ed25519 seed |
//! | everyday funds (BIP86) | `m/86'/coin'/0'` | taproot |
//! | identity funding (BIP86, seals) | `m/86'/coin'/1'` | taproot |
//!
//! `1128352082` is `0x43414952`, ASCII "CAIR". The second level is the identity
//! account (always 0 today). `coin` is 0 on mainnet and 1 on every test network.
//! All levels below the purpose are hardened, so no public key reveals a sibling,
//! and the network key is a one-way hash of a separate branch: a peer id says
//! nothing about the identity.

use bitcoin::bip32::{ChildNumber, DerivationPath, Xpriv, Xpub};
use bitcoin::secp256k1::{Keypair, XOnlyPublicKey};
use bitcoin::NetworkKind;
use zeroize::Zeroizing;

use crate::hash::{tagged_hash, tags};
use crate::secp;
use crate::seed::Seed;

/// The BIP32 purpose of Cairn's identity branches ("CAIR").
pub const CAIRN_PURPOSE: u32 = 0x4341_4952;
/// Branch under the identity account holding signing keys.
pub const BRANCH_SIGNING: u32 = 0;
/// Branch under the identity account holding messaging keys.
pub const BRANCH_MESSAGING: u32 = 1;
/// Branch under the identity account holding network keys.
pub const BRANCH_NETWORK: u32 = 2;
/// BIP86 account of everyday funds.
pub const FUNDS_ACCOUNT_EVERYDAY: u32 = 0;
/// BIP86 account that funds identity seals, kept apart from everyday coins.
pub const FUNDS_ACCOUNT_IDENTITY: u32 = 1;
/// Largest usable rotation or device index (hardened indices are 31-bit).
pub const MAX_INDEX: u32 = (1 << 31) - 1;

/// Key derivation failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The index does not fit a hardened BIP32 child.
    #[error("index {0} is too large (at most {MAX_INDEX})")]
    IndexTooLarge(u32),
    /// An extended key string that is not valid.
    #[error("invalid extended key: {0}")]
    BadExtendedKey(String),
    /// BIP32 derivation failed (probability ~2^-127).
    #[error("BIP32 derivation failed: {0}")]
    Derivation(String),
}

/// Which Bitcoin network a BIP86 account is for (it changes the coin type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoinType {
    /// Mainnet, coin type 0.
    Mainnet,
    /// Any test network (testnet4, signet, regtest), coin type 1.
    Test,
}

/// The BIP32 master key of a seed, wiped when dropped.
pub struct MasterKey(Xpriv);

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.private_key.non_secure_erase();
        self.0.chain_code = [0u8; 32].into();
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(redacted)")
    }
}

fn hardened(i: u32) -> Result<ChildNumber, KeyError> {
    ChildNumber::from_hardened_idx(i).map_err(|_| KeyError::IndexTooLarge(i))
}

impl MasterKey {
    /// The master key of `seed`.
    pub fn new(seed: &Seed) -> Self {
        // Only fails for seeds outside 16..=64 bytes; ours is 64.
        let xpriv = Xpriv::new_master(NetworkKind::Main, seed.as_bytes())
            .unwrap_or_else(|_| unreachable!("64-byte seed is always accepted"));
        MasterKey(xpriv)
    }

    /// The master key from a BIP32 seed of any allowed length (16–64 bytes); for test vectors.
    pub fn from_seed_bytes(seed: &[u8], kind: NetworkKind) -> Result<Self, KeyError> {
        Xpriv::new_master(kind, seed)
            .map(MasterKey)
            .map_err(|e| KeyError::Derivation(e.to_string()))
    }

    /// Derives the extended private key at `path`.
    pub fn derive(&self, path: &DerivationPath) -> Result<DerivedKey, KeyError> {
        self.0
            .derive_priv(secp(), path)
            .map(DerivedKey)
            .map_err(|e| KeyError::Derivation(e.to_string()))
    }

    fn identity_child(&self, branch: u32, index: u32) -> Result<DerivedKey, KeyError> {
        let path = DerivationPath::from(vec![
            hardened(CAIRN_PURPOSE)?,
            hardened(0)?,
            hardened(branch)?,
            hardened(index)?,
        ]);
        self.derive(&path)
    }

    /// The identity signing key for rotation index `index`.
    pub fn signing_key(&self, index: u32) -> Result<SigningKey, KeyError> {
        let child = self.identity_child(BRANCH_SIGNING, index)?;
        Ok(SigningKey(Keypair::from_secret_key(
            secp(),
            &child.0.private_key,
        )))
    }

    /// The X25519 messaging key for rotation index `index`.
    pub fn messaging_key(&self, index: u32) -> Result<MessagingKey, KeyError> {
        let child = self.identity_child(BRANCH_MESSAGING, index)?;
        let secret = Zeroizing::new(child.0.private_key.secret_bytes());
        let bytes = Zeroizing::new(tagged_hash(tags::MESSAGING_KEY, &[&secret[..]]));
        Ok(MessagingKey::from_secret_bytes(*bytes))
    }

    /// The 32-byte Ed25519 secret of the network (libp2p) key for device `device`.
    pub fn network_secret(&self, device: u32) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let child = self.identity_child(BRANCH_NETWORK, device)?;
        let secret = Zeroizing::new(child.0.private_key.secret_bytes());
        Ok(Zeroizing::new(tagged_hash(
            tags::NETWORK_KEY,
            &[&secret[..]],
        )))
    }

    /// The BIP86 account path `m/86'/coin'/account'`.
    pub fn bip86_account_path(coin: CoinType, account: u32) -> Result<DerivationPath, KeyError> {
        let coin = match coin {
            CoinType::Mainnet => 0,
            CoinType::Test => 1,
        };
        Ok(DerivationPath::from(vec![
            hardened(86)?,
            hardened(coin)?,
            hardened(account)?,
        ]))
    }

    /// The extended public key of BIP86 account `account`.
    pub fn bip86_account_xpub(&self, coin: CoinType, account: u32) -> Result<Xpub, KeyError> {
        let k = self.derive(&Self::bip86_account_path(coin, account)?)?;
        Ok(Xpub::from_priv(secp(), &k.0))
    }

    /// The output descriptors of BIP86 account `account`: `tr([fp/86'/coin'/account']xprv/0/*)`
    /// for receiving and `…/1/*` for change, with the master fingerprint as
    /// key origin so that PSBT signers and other wallets recognise the keys.
    /// The strings hold the account's private key and are wiped when dropped.
    pub fn bip86_descriptors(
        &self,
        coin: CoinType,
        account: u32,
    ) -> Result<Bip86Descriptors, KeyError> {
        let path = Self::bip86_account_path(coin, account)?;
        let mut account_key = self.derive(&path)?;
        // Test networks serialise keys as tprv (BIP32 versions); the key bytes are the same.
        account_key.0.network = match coin {
            CoinType::Mainnet => NetworkKind::Main,
            CoinType::Test => NetworkKind::Test,
        };
        let fingerprint = self.0.fingerprint(secp());
        let origin = path.to_string();
        let origin = origin.trim_start_matches("m/");
        let key = Zeroizing::new(account_key.0.to_string());
        let branch = |b: u32| Zeroizing::new(format!("tr([{fingerprint}/{origin}]{}/{b}/*)", *key));
        Ok(Bip86Descriptors {
            external: branch(0),
            internal: branch(1),
        })
    }

    /// Signs every input of `psbt` whose BIP32 key origin (BIP174/BIP371
    /// fields) is this master key: ECDSA or Schnorr as the input asks.
    /// Returns how many inputs were signed.
    pub fn sign_psbt(&self, psbt: &mut bitcoin::Psbt) -> Result<usize, KeyError> {
        match psbt.sign(&self.0, secp()) {
            Ok(signed) => Ok(signed.len()),
            Err((_, errors)) => Err(KeyError::Derivation(format!(
                "signing failed for inputs {:?}",
                errors.keys().collect::<Vec<_>>()
            ))),
        }
    }
}

/// The two descriptors of a BIP86 account (secret: they hold the account's
/// extended private key).
pub struct Bip86Descriptors {
    /// Receiving addresses, `…/0/*`.
    pub external: Zeroizing<String>,
    /// Change addresses, `…/1/*`.
    pub internal: Zeroizing<String>,
}

impl std::fmt::Debug for Bip86Descriptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bip86Descriptors(redacted)")
    }
}

/// An extended key parsed from its base58 form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtendedKey {
    /// An `xprv`/`tprv`.
    Private(Xpriv),
    /// An `xpub`/`tpub`.
    Public(Xpub),
}

/// Parses an extended key strictly, with every check BIP32 test vector 5 asks
/// for (some of which the `bitcoin` crate leaves out): version, length, key
/// prefix byte, point validity, and a depth-0 key having no parent fingerprint
/// and child number 0.
pub fn parse_extended_key(s: &str) -> Result<ExtendedKey, KeyError> {
    let bad = |why: &str| KeyError::BadExtendedKey(why.to_string());
    let data = bitcoin::base58::decode_check(s).map_err(|_| bad("not valid base58check"))?;
    if data.len() != 78 {
        return Err(bad("wrong length"));
    }
    if data[4] == 0 && (data[5..9] != [0; 4] || data[9..13] != [0; 4]) {
        return Err(bad("depth 0 with a parent fingerprint or child number"));
    }
    let private = match data[..4] {
        [0x04, 0x88, 0xad, 0xe4] | [0x04, 0x35, 0x83, 0x94] => true,
        [0x04, 0x88, 0xb2, 0x1e] | [0x04, 0x35, 0x87, 0xcf] => false,
        _ => return Err(bad("unknown version bytes")),
    };
    if private {
        if data[45] != 0 {
            return Err(bad("private key without its 0x00 prefix"));
        }
        Xpriv::decode(&data)
            .map(ExtendedKey::Private)
            .map_err(|e| bad(&e.to_string()))
    } else {
        if !matches!(data[45], 2 | 3) {
            return Err(bad("public key prefix is not 02 or 03"));
        }
        Xpub::decode(&data)
            .map(ExtendedKey::Public)
            .map_err(|e| bad(&e.to_string()))
    }
}

/// An extended private key derived from the master, wiped when dropped.
pub struct DerivedKey(Xpriv);

impl DerivedKey {
    /// The extended private key (a secret).
    pub fn xpriv(&self) -> &Xpriv {
        &self.0
    }
}

impl Drop for DerivedKey {
    fn drop(&mut self) {
        self.0.private_key.non_secure_erase();
        self.0.chain_code = [0u8; 32].into();
    }
}

/// Checks a BIP340 signature over a 32-byte digest.
pub fn verify_digest(
    key: &XOnlyPublicKey,
    digest: &[u8; 32],
    signature: &bitcoin::secp256k1::schnorr::Signature,
) -> bool {
    let msg = bitcoin::secp256k1::Message::from_digest(*digest);
    secp().verify_schnorr(signature, &msg, key).is_ok()
}

/// A BIP340 signing key, wiped when dropped.
pub struct SigningKey(Keypair);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", self.public())
    }
}

impl Drop for SigningKey {
    fn drop(&mut self) {
        self.0.non_secure_erase();
    }
}

impl SigningKey {
    /// From 32 secret bytes (as kept in the keystore).
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Option<Self> {
        Keypair::from_seckey_slice(secp(), bytes)
            .ok()
            .map(SigningKey)
    }

    /// The x-only public key.
    pub fn public(&self) -> XOnlyPublicKey {
        self.0.x_only_public_key().0
    }

    /// A BIP340 signature over a 32-byte digest (made with a tagged hash,
    /// so that it cannot be taken for a signature of anything else).
    pub fn sign_digest(&self, digest: &[u8; 32]) -> bitcoin::secp256k1::schnorr::Signature {
        let msg = bitcoin::secp256k1::Message::from_digest(*digest);
        secp().sign_schnorr_no_aux_rand(&msg, &self.0)
    }

    /// The secret bytes (for the keystore).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.secret_bytes())
    }

    /// The keypair, for signing.
    pub fn keypair(&self) -> &Keypair {
        &self.0
    }
}

/// An X25519 messaging key pair.
pub struct MessagingKey {
    secret: x25519_dalek::StaticSecret,
    public: x25519_dalek::PublicKey,
}

impl std::fmt::Debug for MessagingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MessagingKey(public {:02x?})", self.public.as_bytes())
    }
}

impl MessagingKey {
    /// From 32 secret bytes (clamped on use, as X25519 specifies).
    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let secret = x25519_dalek::StaticSecret::from(bytes);
        let public = x25519_dalek::PublicKey::from(&secret);
        MessagingKey { secret, public }
    }

    /// The public key bytes.
    pub fn public(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// The secret bytes (for the keystore).
    pub fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.secret.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::SeedPhrase;

    fn master() -> MasterKey {
        let p = SeedPhrase::parse("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about").unwrap();
        MasterKey::new(&p.to_seed(""))
    }

    #[test]
    fn keys_differ_per_index_and_branch() {
        let m = master();
        let s0 = m.signing_key(0).unwrap().public();
        let s1 = m.signing_key(1).unwrap().public();
        assert_ne!(s0, s1);
        let m0 = m.messaging_key(0).unwrap().public();
        let m1 = m.messaging_key(1).unwrap().public();
        assert_ne!(m0, m1);
        assert_ne!(*m.network_secret(0).unwrap(), *m.network_secret(1).unwrap());
        // Deterministic.
        assert_eq!(master().signing_key(0).unwrap().public(), s0);
        assert_eq!(master().messaging_key(0).unwrap().public(), m0);
    }

    #[test]
    fn index_bound() {
        assert_eq!(
            master().signing_key(MAX_INDEX + 1).unwrap_err(),
            KeyError::IndexTooLarge(MAX_INDEX + 1)
        );
        assert!(master().signing_key(MAX_INDEX).is_ok());
    }

    #[test]
    fn secret_round_trip() {
        let m = master();
        let k = m.signing_key(3).unwrap();
        let again = SigningKey::from_secret_bytes(&k.secret_bytes()).unwrap();
        assert_eq!(again.public(), k.public());
        let mk = m.messaging_key(3).unwrap();
        assert_eq!(
            MessagingKey::from_secret_bytes(*mk.secret_bytes()).public(),
            mk.public()
        );
    }
}
