//! Network settings and their bounds. Every default is documented in
//! `docs/network.md`.

use std::time::Duration;

use libp2p::Multiaddr;

/// Bounds on everything a peer can make this node hold or do.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Established connections, all peers.
    pub max_connections: u32,
    /// Established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Connections being set up, each direction.
    pub max_pending: u32,
    /// Yamux streams per connection. A peer that opens more has its
    /// connection closed, so this stays well above
    /// [`Limits::max_concurrent_requests`] plus the other protocols' streams.
    pub max_streams: usize,
    /// The largest record, request or response, bytes.
    pub max_record: usize,
    /// The largest gossip message, bytes.
    pub max_gossip: usize,
    /// Records this node stores for the DHT.
    pub max_records: usize,
    /// Record requests one peer may make per minute (served ones).
    pub requests_per_minute: u32,
    /// Mail requests one peer may make per minute (each carries up to
    /// `mail::MAX_BATCH` envelopes).
    pub mail_per_minute: u32,
    /// Mail requests from peers waiting for the node's answer; more are
    /// answered `Busy`.
    pub max_mail_inbound: usize,
    /// Peers tracked for request rates.
    pub max_tracked_peers: usize,
    /// Commands waiting for the network task.
    pub command_queue: usize,
    /// Events waiting for the node.
    pub event_queue: usize,
    /// Concurrent request-response streams.
    pub max_concurrent_requests: usize,
    /// Peers a full node holds a relay reservation for.
    pub max_relay_reservations: usize,
    /// Circuits a full node relays at once.
    pub max_relay_circuits: usize,
    /// How long one relayed circuit may last.
    pub max_relay_circuit_duration: Duration,
    /// Bytes one relayed circuit may carry (each way).
    pub max_relay_circuit_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            max_connections_per_peer: 2,
            max_pending: 64,
            max_streams: 256,
            max_record: 60 * 1024,
            max_gossip: 8 * 1024,
            max_records: 16_384,
            requests_per_minute: 120,
            mail_per_minute: 1200,
            max_mail_inbound: 64,
            max_tracked_peers: 4_096,
            command_queue: 64,
            event_queue: 256,
            max_concurrent_requests: 64,
            max_relay_reservations: 128,
            max_relay_circuits: 16,
            max_relay_circuit_duration: Duration::from_secs(10 * 60),
            max_relay_circuit_bytes: 4 * 1024 * 1024,
        }
    }
}

/// How the network runs.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to start from: addresses ending in `/p2p/PEER_ID`.
    pub bootstrap: Vec<Multiaddr>,
    /// A full node serves the DHT (Kademlia server mode), stores records
    /// for others and relays for peers behind NAT; a light node only asks.
    pub full: bool,
    /// Addresses others can reach this node at (a server's public address).
    /// A relay serves only with a confirmed external address: these, or one
    /// AutoNAT confirms.
    pub external: Vec<Multiaddr>,
    /// Find peers on the LAN with mDNS (multicast on the local network
    /// only; turn it off on networks you do not trust).
    pub mdns: bool,
    /// Announce the listen addresses as external too (a server whose listen
    /// addresses are public; tests on loopback).
    pub announce_listen: bool,
    /// How long an idle connection stays open.
    pub idle_timeout: Duration,
    /// How long a DHT query or a request may take.
    pub query_timeout: Duration,
    /// How long a stored record is kept without being republished.
    pub record_ttl: Duration,
    /// Bounds.
    pub limits: Limits,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: vec![
                "/ip4/0.0.0.0/tcp/4419".parse().expect("valid address"),
                "/ip4/0.0.0.0/udp/4419/quic-v1"
                    .parse()
                    .expect("valid address"),
            ],
            bootstrap: Vec::new(),
            full: true,
            external: Vec::new(),
            mdns: true,
            announce_listen: false,
            idle_timeout: Duration::from_secs(120),
            query_timeout: Duration::from_secs(30),
            record_ttl: Duration::from_secs(36 * 60 * 60),
            limits: Limits::default(),
        }
    }
}
