//! The Cairn node: its data directory, RocksDB store and own identity. The
//! `cairn` command line (in `main.rs`) is a thin layer over this library.

pub mod anchoring;
pub mod chain;
pub mod config;
pub mod datadir;
pub mod funds;
pub mod identity;
pub mod store;

pub use datadir::DataDir;
pub use store::{Store, StoreError};
