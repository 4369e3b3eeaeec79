//! The node's side of the libp2p network (feature `network`): the policy
//! that verifies every record and announcement before the network stores or
//! forwards it, the store that keeps records across restarts, and the peer
//! key from the hot keys' network secret (never the identity key).

use std::sync::Arc;

use crate::chain::unix_now;
use crate::record::{check_network_record, network_record_replaces, IdentityRecord};
use crate::store::Store;

/// Records and announcements are identity records, verified in full.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordPolicy;

impl cairn_net::Policy for RecordPolicy {
    fn check_record(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        check_network_record(key, value, unix_now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn replaces(&self, new: &[u8], old: &[u8]) -> bool {
        network_record_replaces(new, old)
    }

    /// A rotation is announced with the identity's new record.
    fn check_announcement(&self, data: &[u8]) -> Result<(), String> {
        IdentityRecord::decode(data)
            .and_then(|r| r.verify(unix_now()))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The records the network holds, in the node's RocksDB.
#[derive(Clone)]
pub struct StoreRecords(pub Arc<Store>);

impl cairn_net::Persist for StoreRecords {
    fn load(&self) -> Result<Vec<cairn_net::KeptRecord>, String> {
        self.0.network_records().map_err(|e| e.to_string())
    }

    fn save(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        self.0
            .put_network_record(key, value)
            .map_err(|e| e.to_string())
    }
}

/// The libp2p key pair of the node, from the hot keys' Ed25519 network
/// secret (`m/1128352082'/0'/2'/d'`).
pub fn peer_key(network_secret: &[u8; 32]) -> Result<cairn_net::Keypair, String> {
    cairn_net::Keypair::ed25519_from_bytes(network_secret.to_vec()).map_err(|e| e.to_string())
}
