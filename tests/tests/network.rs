//! Many real libp2p nodes on loopback (TCP, Noise, Yamux), with the node's
//! record policy and, where it matters, its RocksDB store (feature `network`,
//! on by default).
#![cfg(feature = "network")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_chain_anchor::{Bundle, ChainNetwork, ChainParams};
use cairn_net::{Keypair, Multiaddr, NetConfig, NetError, NetEvent, Network, Policy};
use cairn_node::chain::unix_now;
use cairn_node::network::{peer_key, RecordPolicy, StoreRecords};
use cairn_node::record::{check_network_record, dht_key, IdentityRecord};
use cairn_node::Store;
use cairn_wallet::kel::{establishment_chain, KeyEventLog};
use cairn_wallet::{IdentityId, MasterKey, SeedPhrase};
use tokio::sync::mpsc;

const DAY: u64 = 86_400;

fn config(bootstrap: Vec<Multiaddr>) -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap,
        query_timeout: Duration::from_secs(10),
        // The tests build their networks themselves.
        mdns: false,
        ..NetConfig::default()
    }
}

/// A policy that accepts anything: a peer that does not check what it sends.
struct Careless;

impl Policy for Careless {
    fn check_record(&self, _: &[u8], _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn replaces(&self, _: &[u8], _: &[u8]) -> bool {
        true
    }
    fn check_announcement(&self, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

struct Node {
    net: Network,
    events: mpsc::Receiver<NetEvent>,
}

async fn start(key: Keypair, bootstrap: Vec<Multiaddr>, policy: Arc<dyn Policy>) -> Node {
    start_with(key, bootstrap, policy, None).await
}

async fn start_with(
    key: Keypair,
    bootstrap: Vec<Multiaddr>,
    policy: Arc<dyn Policy>,
    store: Option<Arc<Store>>,
) -> Node {
    let persist = store.map(|s| Arc::new(StoreRecords(s)) as Arc<dyn cairn_net::Persist>);
    let (net, events) = Network::start(key, config(bootstrap), policy, persist)
        .await
        .unwrap();
    Node { net, events }
}

/// A node with its own settings, the node's record policy and no store; its
/// events are not read (the network counts what it drops).
async fn start_configured(config: NetConfig) -> Network {
    Network::start(
        Keypair::generate_ed25519(),
        config,
        Arc::new(RecordPolicy::new()),
        None,
    )
    .await
    .unwrap()
    .0
}

/// The node's first listen address, with its peer id.
async fn address(n: &Network) -> Multiaddr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = n.status().await.unwrap();
        if let Some(a) = s.listen.first() {
            return a.clone().with(libp2p_p2p(n.peer_id()));
        }
        assert!(Instant::now() < deadline, "no listen address");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn libp2p_p2p(peer: cairn_net::PeerId) -> cairn_net::multiaddr::Protocol<'static> {
    cairn_net::multiaddr::Protocol::P2p(peer)
}

/// Waits until `check` holds, at most `secs` seconds.
async fn eventually<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A bootstrap node and seven more that start from it.
async fn network_of_eight(policy: Arc<dyn Policy>) -> Vec<Node> {
    let first = start(Keypair::generate_ed25519(), vec![], policy.clone()).await;
    let boot = address(&first.net).await;
    let mut nodes = vec![first];
    for _ in 1..8 {
        nodes.push(
            start(
                Keypair::generate_ed25519(),
                vec![boot.clone()],
                policy.clone(),
            )
            .await,
        );
    }
    for n in &nodes {
        eventually(30, "every routing table holds the seven others", || async {
            n.net.status().await.unwrap().routing_table >= 7
        })
        .await;
    }
    nodes
}

/// A fresh identity: its seed's keys, its bundle, its id.
fn identity() -> (MasterKey, Bundle, IdentityId) {
    let master = MasterKey::new(&SeedPhrase::generate(12).unwrap().to_seed(""));
    let (bundle, id) = bundle_of(&master);
    (master, bundle, id)
}

/// The unanchored bundle of the identity `master` makes, and its id.
fn bundle_of(master: &MasterKey) -> (Bundle, IdentityId) {
    let log = KeyEventLog::new(establishment_chain(master, 0).unwrap());
    let id = log.verify().unwrap().id;
    let bundle = Bundle {
        genesis: ChainParams::new(ChainNetwork::Regtest).genesis_hash(),
        log,
        anchors: Vec::new(),
        sealed: Vec::new(),
    };
    (bundle, id)
}

/// The identity's record issued at `issued`, signed by its current key.
fn signed(master: &MasterKey, bundle: &Bundle, issued: u64) -> Vec<u8> {
    let key = master.signing_key(0).unwrap();
    IdentityRecord::sign(bundle.clone(), issued, issued + 7 * DAY, &key)
        .unwrap()
        .encode()
}

/// A fresh identity's record.
fn record(issued: u64) -> (IdentityId, Vec<u8>) {
    let (master, bundle, id) = identity();
    (id, signed(&master, &bundle, issued))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_nodes_reach_each_other_and_keep_a_record_after_its_publisher_leaves() {
    let mut nodes = network_of_eight(Arc::new(RecordPolicy::new())).await;
    // Every node reaches every other through the DHT.
    for i in 0..nodes.len() {
        for j in 0..nodes.len() {
            if i != j {
                let peer = nodes[j].net.peer_id();
                nodes[i].net.reach(peer).await.unwrap();
            }
        }
    }
    // A record published on node 1 is fetched and verified on node 8.
    let (id, bytes) = record(unix_now());
    let key = dht_key(&id).to_vec();
    nodes[1]
        .net
        .publish(key.clone(), bytes.clone())
        .await
        .unwrap();
    let found = nodes[7].net.fetch(key.clone()).await.unwrap();
    assert_eq!(found, bytes);
    let r = check_network_record(&key, &found, unix_now()).unwrap();
    assert_eq!(r.bundle.log.verify().unwrap().id, id);
    // And directly from the publisher, by request.
    let direct = nodes[7]
        .net
        .fetch_from(nodes[1].net.peer_id(), key.clone())
        .await
        .unwrap();
    assert_eq!(direct, bytes);
    // A record nobody has is not found.
    let (other, _) = record(unix_now());
    assert!(matches!(
        nodes[7].net.fetch(dht_key(&other).to_vec()).await,
        Err(NetError::NotFound)
    ));
    // The publisher leaves; the record is still found (replicated).
    let publisher = nodes.remove(1);
    publisher.net.stop().await;
    let found = nodes[4].net.fetch(key.clone()).await.unwrap();
    assert_eq!(found, bytes);
    for n in nodes {
        n.net.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_older_records_are_refused() {
    let nodes = network_of_eight(Arc::new(RecordPolicy::new())).await;
    // A careless peer pushes junk and a record under another identity's key.
    let boot = address(&nodes[0].net).await;
    let mallory = start(Keypair::generate_ed25519(), vec![boot], Arc::new(Careless)).await;
    eventually(30, "mallory joins the DHT", || async {
        mallory.net.status().await.unwrap().routing_table >= 7
    })
    .await;
    let (master, bundle, id) = identity();
    let now = unix_now();
    let (newer, older) = (
        signed(&master, &bundle, now),
        signed(&master, &bundle, now - 600),
    );
    let (other, _) = record(now);
    let key = dht_key(&id).to_vec();
    let _ = mallory
        .net
        .publish(dht_key(&other).to_vec(), newer.clone())
        .await;
    let _ = mallory
        .net
        .publish(key.clone(), b"not a record".to_vec())
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for n in &nodes {
        assert_eq!(n.net.status().await.unwrap().records, 0);
    }
    // The owner publishes; an older record pushed later replaces nothing.
    nodes[2]
        .net
        .publish(key.clone(), newer.clone())
        .await
        .unwrap();
    let _ = mallory.net.publish(key.clone(), older.clone()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let found = nodes[5].net.fetch(key.clone()).await.unwrap();
    assert_eq!(found, newer);
    for n in &nodes {
        let direct = nodes[0].net.fetch_from(n.net.peer_id(), key.clone()).await;
        if let Ok(r) = direct {
            assert_eq!(r, newer, "a node holds the older record");
        }
    }
    mallory.net.stop().await;
    for n in nodes {
        n.net.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_peer_id_and_records_and_reconnects() {
    let boot = start(
        Keypair::generate_ed25519(),
        vec![],
        Arc::new(RecordPolicy::new()),
    )
    .await;
    let boot_addr = address(&boot.net).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = [42u8; 32];
    let (id, bytes) = record(unix_now());
    let key = dht_key(&id).to_vec();
    let first_peer = {
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let node = start_with(
            peer_key(&secret).unwrap(),
            vec![boot_addr.clone()],
            Arc::new(RecordPolicy::new()),
            Some(store),
        )
        .await;
        eventually(30, "connected to the bootstrap node", || async {
            node.net.status().await.unwrap().peers >= 1
        })
        .await;
        node.net.publish(key.clone(), bytes.clone()).await.unwrap();
        let peer = node.net.peer_id();
        node.net.stop().await;
        peer
    };
    // Let the background write of the record land, then reopen.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let store = Arc::new(Store::open(dir.path()).unwrap());
    assert_eq!(store.network_records().unwrap().len(), 1);
    let node = start_with(
        peer_key(&secret).unwrap(),
        vec![boot_addr],
        Arc::new(RecordPolicy::new()),
        Some(store),
    )
    .await;
    assert_eq!(node.net.peer_id(), first_peer);
    let status = node.net.status().await.unwrap();
    assert_eq!(status.records, 1);
    eventually(30, "reconnected to the bootstrap node", || async {
        node.net.status().await.unwrap().peers >= 1
    })
    .await;
    // It serves the record it kept. (The bootstrap node may still hold the
    // closing connection of the first run and dial its old address once:
    // asked again until the new connection answers.)
    eventually(30, "the record served by the restarted node", || async {
        boot.net.fetch_from(first_peer, key.clone()).await.ok() == Some(bytes.clone())
    })
    .await;
    node.net.stop().await;
    boot.net.stop().await;
}

/// The announcements on `events` until `want` arrives (then half a second
/// more, for duplicates), at most `secs` seconds.
async fn announcements(
    events: &mut mpsc::Receiver<NetEvent>,
    want: Option<&[u8]>,
    secs: u64,
) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, events.recv()).await {
        if let NetEvent::Announcement { data, .. } = e {
            if Some(&data[..]) == want {
                deadline = tokio::time::Instant::now() + Duration::from_millis(500);
            }
            seen.push(data);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_announced_on_gossip_reach_everyone_and_forgeries_stop_at_the_first_hop() {
    let mut nodes = network_of_eight(Arc::new(RecordPolicy::new())).await;
    // Let the gossip mesh form.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, bytes) = record(unix_now());
    nodes[0].net.announce(bytes.clone()).await.unwrap();
    for (i, n) in nodes.iter_mut().enumerate().skip(1) {
        let seen = announcements(&mut n.events, Some(&bytes), 15).await;
        assert!(seen.contains(&bytes), "node {i} did not hear the rotation");
        if seen.len() != 1 {
            panic!("node {i} heard {} announcements", seen.len());
        }
    }
    // A careless peer announces a record whose signature is broken.
    let boot = address(&nodes[0].net).await;
    let mallory = start(Keypair::generate_ed25519(), vec![boot], Arc::new(Careless)).await;
    let mp = mallory.net.peer_id();
    for n in &nodes {
        n.net.reach(mp).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut forged = record(unix_now()).1;
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert!(RecordPolicy::new().check_announcement(&forged).is_err());
    mallory.net.announce(forged.clone()).await.unwrap();
    for (i, n) in nodes.iter_mut().enumerate() {
        let seen = announcements(&mut n.events, None, 2).await;
        assert!(!seen.contains(&forged), "node {i} took the forgery");
    }
    // Those who got it from Mallory refused it and lowered her score.
    let mut refused = 0;
    for n in &nodes {
        refused += n.net.status().await.unwrap().announcements_refused;
    }
    assert!(refused >= 1, "nobody got the forgery");
    let mut lowered = 0;
    for n in &nodes {
        if let Some(score) = n.net.gossip_score(mp).await.unwrap() {
            if score < 0.0 {
                lowered += 1;
            }
        }
    }
    assert!(lowered >= 1, "no node lowered the sender's score");
    mallory.net.stop().await;
    for n in nodes {
        n.net.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_that_cannot_dial_each_other_connect_through_a_relay() {
    use cairn_net::multiaddr::Protocol;
    // A full node with a public address relays.
    let relay = start_configured(NetConfig {
        announce_listen: true,
        ..config(vec![])
    })
    .await;
    let relay_addr = address(&relay).await;
    // Bob has no listener of his own: he is reachable only through the
    // relay (as behind a NAT), and he holds his record.
    let circuit = relay_addr.clone().with(Protocol::P2pCircuit);
    let bob_net = start_configured(NetConfig {
        listen: vec![circuit.clone()],
        full: false,
        ..config(vec![relay_addr.clone()])
    })
    .await;
    eventually(30, "Bob's relay reservation", || async {
        let s = bob_net.status().await.unwrap();
        !s.listen.is_empty()
            && s.listen
                .iter()
                .all(|a| a.iter().any(|p| p == Protocol::P2pCircuit))
    })
    .await;
    let (id, bytes) = record(unix_now());
    let key = dht_key(&id).to_vec();
    let _ = bob_net.publish(key.clone(), bytes.clone()).await;
    // Alice knows only the relayed address; it is the only way to Bob.
    let alice = start(
        Keypair::generate_ed25519(),
        vec![relay_addr],
        Arc::new(RecordPolicy::new()),
    )
    .await;
    eventually(30, "Alice connected to the relay", || async {
        alice.net.status().await.unwrap().peers >= 1
    })
    .await;
    let bob_via_relay = circuit.with(Protocol::P2p(bob_net.peer_id()));
    alice.net.dial(bob_via_relay).await.unwrap();
    let got = alice.net.fetch_from(bob_net.peer_id(), key).await.unwrap();
    assert_eq!(got, bytes);
    bob_net.stop().await;
    alice.net.stop().await;
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_travel_over_quic_too() {
    let quic: Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap();
    let server = start_configured(NetConfig {
        listen: vec![quic.clone()],
        ..config(vec![])
    })
    .await;
    let addr = address(&server).await;
    assert!(addr.to_string().contains("/quic-v1"), "{addr}");
    let client = start_configured(NetConfig {
        listen: vec![quic],
        ..config(vec![addr])
    })
    .await;
    let (id, bytes) = record(unix_now());
    let key = dht_key(&id).to_vec();
    let _ = server.publish(key.clone(), bytes.clone()).await;
    eventually(30, "connected over QUIC", || async {
        client.status().await.unwrap().peers >= 1
    })
    .await;
    assert_eq!(
        client.fetch_from(server.peer_id(), key).await.unwrap(),
        bytes
    );
    client.stop().await;
    server.stop().await;
}

/// Privacy: a record names no address of the person's device, and the peer
/// id (from the seed's network branch) says nothing about the identity id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_no_address_and_peer_ids_are_not_identity_ids() {
    let master = MasterKey::new(&SeedPhrase::generate(12).unwrap().to_seed(""));
    let node_key = peer_key(&master.network_secret(0).unwrap()).unwrap();
    let n = start(node_key.clone(), vec![], Arc::new(RecordPolicy::new())).await;
    let listen = address(&n.net).await;
    let (bundle, id) = bundle_of(&master);
    let bytes = signed(&master, &bundle, unix_now());
    // No address of the node, in text or as a multiaddress.
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains("127.0.0.1") && !text.contains("/ip4/") && !text.contains("/ip6/"));
    assert!(!bytes
        .windows(listen.to_vec().len())
        .any(|w| w == listen.to_vec()));
    // The peer id is not the identity id, nor its DHT key, nor derived
    // from either: it comes from another hardened branch of the seed.
    let peer = n.net.peer_id();
    assert_eq!(peer, node_key.public().to_peer_id());
    assert!(!peer
        .to_bytes()
        .windows(32)
        .any(|w| w == id.0 || w == dht_key(&id)));
    assert_ne!(
        *master.network_secret(0).unwrap(),
        master.signing_key(0).unwrap().secret_bytes()[..]
    );
    assert_ne!(
        *master.network_secret(0).unwrap(),
        *master.messaging_key(0).unwrap().secret_bytes()
    );
    n.net.stop().await;
}
