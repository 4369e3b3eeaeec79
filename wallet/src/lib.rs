//! Cairn's identity core: seed phrases (BIP39), key derivation (BIP32), the key
//! event log, identity ids and the keystore. Pure logic: no files, sockets or
//! clocks (the OS random source is the one input it reads itself).

pub mod hash;
pub mod id;
pub mod kel;
pub mod keys;
pub mod keystore;
pub mod seed;

use bitcoin::secp256k1::{All, Secp256k1};
use std::sync::OnceLock;

pub use id::{IdentityId, SafetyNumber};
pub use kel::{KeyEventLog, LogState, SignedEvent};
pub use keys::MasterKey;
pub use seed::{Seed, SeedPhrase, WordsError};

/// The shared secp256k1 context (creating one is expensive).
pub(crate) fn secp() -> &'static Secp256k1<All> {
    static CTX: OnceLock<Secp256k1<All>> = OnceLock::new();
    CTX.get_or_init(Secp256k1::new)
}
