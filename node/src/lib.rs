//! The Cairn node: its data directory, RocksDB store, own identity, and the
//! daemon that watches identities against Bitcoin and serves the local API. The
//! `cairn` command line (in `main.rs`) is a thin layer over this library.

pub mod anchoring;
pub mod api;
pub mod chain;
pub mod config;
pub mod contact_book;
pub mod contacts;
pub mod conversation;
pub mod daemon;
pub mod datadir;
#[cfg(feature = "network")]
pub mod delivery;
pub mod funds;
pub mod identity;
pub mod mailbox;
#[cfg(feature = "network")]
pub mod network;
pub mod prekeys;
pub mod record;
pub mod secrets;
pub mod store;
pub mod watch;

pub use datadir::DataDir;
pub use store::{Store, StoreError};
