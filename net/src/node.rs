//! The network task: one loop owns the swarm and everything it holds; the
//! node reaches it through [`Network`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId, PeerScoreParams,
    PeerScoreThresholds, TopicScoreParams, ValidationMode,
};
use libp2p::identity::Keypair;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{
    self, GetClosestPeersOk, GetRecordOk, InboundRequest, Mode, QueryId, QueryResult, Quorum,
    Record, RecordKey, StoreInserts,
};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    autonat, connection_limits, dcutr, identify, mdns, noise, ping, relay, tcp, yamux, Multiaddr,
    PeerId, StreamProtocol, Swarm, SwarmBuilder,
};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::codec::RecordCodec;
use crate::config::NetConfig;
use crate::mail::{MailRequest, MailResponse, MAIL_PROTOCOL, MAX_MAIL};
use crate::{NetError, Persist, Policy, KAD_PROTOCOL, RECORD_PROTOCOL, ROTATION_TOPIC};

/// Invalid records or requests a peer may send before it is disconnected
/// and refused for [`BAN_TIME`].
const MAX_STRIKES: u32 = 3;
/// How long a peer that misbehaved is refused.
const BAN_TIME: Duration = Duration::from_secs(600);
/// Most peers banned at once (the oldest ban is lifted first).
const MAX_BANNED: usize = 1024;
/// Strikes waiting for the network task.
const STRIKE_QUEUE: usize = 64;
/// Queries and requests in flight at once (DHT lookups and publications,
/// direct requests, connection attempts); more get `Busy`.
const MAX_IN_FLIGHT: usize = 512;
/// How often the network task looks after lost relay reservations.
const UPKEEP: Duration = Duration::from_secs(2);

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    gossip: gossipsub::Behaviour,
    records: request_response::Behaviour<RecordCodec>,
    /// Mail: envelopes to contacts' nodes and mailbox nodes.
    mail: request_response::Behaviour<RecordCodec>,
    /// Relay server: full nodes relay for peers behind NAT.
    relay: Toggle<relay::Behaviour>,
    /// Relay client: every node can listen and dial through a relay.
    relay_client: relay::client::Behaviour,
    /// Hole punching over a relayed connection.
    dcutr: dcutr::Behaviour,
    /// Whether this node is reachable from outside.
    autonat: autonat::Behaviour,
    /// Peers on the same LAN, found without a bootstrap list.
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// What the network tells the node.
#[derive(Debug, Clone)]
pub enum NetEvent {
    /// A rotation announcement, accepted by the policy.
    Announcement {
        /// Its bytes.
        data: Vec<u8>,
        /// The peer it came from.
        from: PeerId,
    },
    /// A record from a peer was accepted and stored.
    RecordStored {
        /// Its DHT key.
        key: Vec<u8>,
    },
    /// A peer's mail request (decoded and bounded). The node must answer
    /// it with [`Network::respond`] and this `id`.
    Mail {
        /// What to answer with.
        id: u64,
        /// The peer that asks.
        from: PeerId,
        /// What it asks.
        request: MailRequest,
    },
}

/// The network as it is now.
#[derive(Debug, Clone)]
pub struct NetStatus {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Where it listens.
    pub listen: Vec<Multiaddr>,
    /// Peers connected.
    pub peers: usize,
    /// Peers in the DHT routing table.
    pub routing_table: usize,
    /// Records stored for the DHT.
    pub records: usize,
    /// Full node (DHT server) or light.
    pub full: bool,
    /// Events dropped because the node did not take them in time.
    pub events_dropped: u64,
    /// Announcements refused by the policy (not forwarded).
    pub announcements_refused: u64,
    /// What AutoNAT found: `public`, `private` or `unknown`.
    pub nat: String,
}

enum Command {
    Publish {
        key: Vec<u8>,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Fetch {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    FetchFrom {
        peer: PeerId,
        key: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, NetError>>,
    },
    Reach {
        peer: PeerId,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Dial {
        address: Multiaddr,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Announce {
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Status {
        reply: oneshot::Sender<NetStatus>,
    },
    GossipScore {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
    Mail {
        peer: PeerId,
        request: Vec<u8>,
        reply: MailReply,
    },
    Respond {
        id: u64,
        response: Vec<u8>,
    },
    Stop,
}

/// Who waits for a mail response.
type MailReply = oneshot::Sender<Result<MailResponse, NetError>>;

/// The handle to a running network.
pub struct Network {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    task: tokio::task::JoinHandle<()>,
}

impl Network {
    /// Starts the network with peer key `key` (the node's network key,
    /// never the identity key): listens, dials the bootstrap peers, loads
    /// the records kept by `persist`. Must be called within a tokio
    /// runtime.
    pub async fn start(
        key: Keypair,
        config: NetConfig,
        policy: Arc<dyn Policy>,
        persist: Option<Arc<dyn Persist>>,
    ) -> Result<(Network, mpsc::Receiver<NetEvent>), NetError> {
        let peer_id = key.public().to_peer_id();
        let kept = match &persist {
            Some(p) => {
                let p = p.clone();
                tokio::task::spawn_blocking(move || p.load())
                    .await
                    .map_err(|e| NetError::Start(e.to_string()))?
                    .map_err(NetError::Start)?
            }
            None => Vec::new(),
        };
        let mut swarm = build_swarm(key, &config)?;
        let mut relayed = HashMap::new();
        for addr in &config.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Start(format!("cannot listen on {addr}: {e}")))?;
            if is_relayed(addr) {
                relayed.insert(addr.clone(), Some(id));
            }
        }
        for addr in &config.external {
            swarm.add_external_address(addr.clone());
        }
        let mut loaded = 0;
        for (k, v) in kept {
            if policy.check_record(&k, &v).is_ok() {
                let mut record = Record::new(RecordKey::new(&k), v);
                record.expires = Some(Instant::now() + config.record_ttl);
                if swarm.behaviour_mut().kad.store_mut().put(record).is_ok() {
                    loaded += 1;
                }
            }
        }
        if loaded > 0 {
            info!(records = loaded, "records loaded from the store");
        }
        for addr in &config.bootstrap {
            match peer_of(addr) {
                Some(peer) => {
                    swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
                    if let Err(e) = swarm.dial(addr.clone()) {
                        warn!(%addr, "cannot dial bootstrap peer: {e}");
                    }
                }
                None => warn!(%addr, "bootstrap address without /p2p/PEER_ID ignored"),
            }
        }
        let (commands, command_rx) = mpsc::channel(config.limits.command_queue);
        let (events, event_rx) = mpsc::channel(config.limits.event_queue);
        let topic = IdentTopic::new(ROTATION_TOPIC);
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(&topic)
            .map_err(|e| NetError::Start(format!("cannot subscribe: {e}")))?;
        let (strikes_tx, strikes_rx) = mpsc::channel(STRIKE_QUEUE);
        let state = State {
            relayed,
            swarm,
            strikes_tx,
            config,
            policy,
            persist,
            events,
            events_dropped: 0,
            announcements_refused: 0,
            topic,
            gets: HashMap::new(),
            puts: HashMap::new(),
            closest: HashMap::new(),
            reaching: HashMap::new(),
            requests: HashMap::new(),
            rates: HashMap::new(),
            mail_out: HashMap::new(),
            mail_in: HashMap::new(),
            next_mail: 0,
            mail_rates: HashMap::new(),
            strikes: HashMap::new(),
            banned: VecDeque::new(),
            bootstrapped: false,
        };
        let task = tokio::spawn(state.run(command_rx, strikes_rx));
        Ok((
            Network {
                commands,
                peer_id,
                task,
            },
            event_rx,
        ))
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (reply, answer) = oneshot::channel();
        self.commands.try_send(make(reply)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => NetError::Busy,
            mpsc::error::TrySendError::Closed(_) => NetError::Stopped,
        })?;
        answer.await.map_err(|_| NetError::Stopped)
    }

    /// Stores a record here (after the policy accepts it) and publishes it
    /// to the DHT peers closest to its key.
    pub async fn publish(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), NetError> {
        self.ask(|reply| Command::Publish { key, value, reply })
            .await?
    }

    /// Finds the freshest valid record under `key` in the DHT.
    pub async fn fetch(&self, key: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.ask(|reply| Command::Fetch { key, reply }).await?
    }

    /// Asks `peer` directly (request-response) for its record under `key`.
    pub async fn fetch_from(&self, peer: PeerId, key: Vec<u8>) -> Result<Vec<u8>, NetError> {
        self.ask(|reply| Command::FetchFrom { peer, key, reply })
            .await?
    }

    /// Finds `peer` through the DHT and connects to it.
    pub async fn reach(&self, peer: PeerId) -> Result<(), NetError> {
        self.ask(|reply| Command::Reach { peer, reply }).await?
    }

    /// Connects to the peer at `address` (which ends in `/p2p/PEER_ID`; a
    /// relayed address `…/p2p/RELAY/p2p-circuit/p2p/PEER_ID` goes through
    /// the relay).
    pub async fn dial(&self, address: Multiaddr) -> Result<(), NetError> {
        self.ask(|reply| Command::Dial { address, reply }).await?
    }

    /// Announces a rotation on gossipsub.
    pub async fn announce(&self, data: Vec<u8>) -> Result<(), NetError> {
        self.ask(|reply| Command::Announce { data, reply }).await?
    }

    /// The network's status.
    pub async fn status(&self) -> Result<NetStatus, NetError> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// Sends a mail request to `peer` (connected, or reachable at an
    /// address the network knows: [`Network::reach`] first) and waits for
    /// its answer.
    pub async fn mail(
        &self,
        peer: PeerId,
        request: &MailRequest,
    ) -> Result<MailResponse, NetError> {
        let request = request
            .encode()
            .map_err(|e| NetError::Failed(e.to_string()))?;
        self.ask(|reply| Command::Mail {
            peer,
            request,
            reply,
        })
        .await?
    }

    /// Answers the mail request `id` ([`NetEvent::Mail`]). Waits for room
    /// in the command queue: an answer is never dropped for being late.
    pub async fn respond(&self, id: u64, response: &MailResponse) -> Result<(), NetError> {
        let response = response
            .encode()
            .map_err(|e| NetError::Failed(e.to_string()))?;
        self.commands
            .send(Command::Respond { id, response })
            .await
            .map_err(|_| NetError::Stopped)
    }

    /// Gossipsub's score of `peer`, if it is known.
    pub async fn gossip_score(&self, peer: PeerId) -> Result<Option<f64>, NetError> {
        self.ask(|reply| Command::GossipScore { peer, reply }).await
    }

    /// Asks the network task to stop (its connections close as it ends).
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Stop).await;
    }

    /// Stops the network and waits for its task to end.
    pub async fn stop(self) {
        self.close().await;
        let _ = self.task.await;
    }
}

/// Whether `addr` goes through a relay (`…/p2p-circuit…`).
fn is_relayed(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| p == libp2p::multiaddr::Protocol::P2pCircuit)
}

/// The peer id at the end of an address, if any (for a relayed address,
/// the peer behind the relay, not the relay).
fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .last()
}

fn build_swarm(key: Keypair, config: &NetConfig) -> Result<Swarm<Behaviour>, NetError> {
    let limits = &config.limits;
    let mut yamux_config = yamux::Config::default();
    yamux_config.set_max_num_streams(limits.max_streams);
    let full = config.full;
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, {
            let y = yamux_config.clone();
            move || y.clone()
        })
        .map_err(|e| NetError::Start(e.to_string()))?
        .with_quic()
        .with_relay_client(noise::Config::new, move || yamux_config.clone())
        .map_err(|e| NetError::Start(e.to_string()))?
        .with_behaviour(|key, relay_client| behaviour(key, relay_client, config, full))
        .map_err(|e| NetError::Start(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_timeout))
        .build();
    Ok(swarm)
}

fn behaviour(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    config: &NetConfig,
    full: bool,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let limits = &config.limits;
    let peer_id = key.public().to_peer_id();
    let connection_limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(limits.max_connections))
        .with_max_established_per_peer(Some(limits.max_connections_per_peer))
        .with_max_pending_incoming(Some(limits.max_pending))
        .with_max_pending_outgoing(Some(limits.max_pending));

    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config
        .set_query_timeout(config.query_timeout)
        .set_record_ttl(Some(config.record_ttl))
        .set_record_filtering(StoreInserts::FilterBoth)
        .set_max_packet_size(limits.max_record + 4 * 1024)
        .set_periodic_bootstrap_interval(Some(Duration::from_secs(300)));
    let store = MemoryStore::with_config(
        peer_id,
        MemoryStoreConfig {
            max_records: limits.max_records,
            max_value_bytes: limits.max_record,
            max_providers_per_key: 0,
            max_provided_keys: 0,
        },
    );
    let mut kad = kad::Behaviour::with_config(peer_id, store, kad_config);
    // rust-libp2p stays a DHT client until it has a confirmed external
    // address; a full node serves the DHT from the start.
    kad.set_mode(Some(if full { Mode::Server } else { Mode::Client }));

    let gossip_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(limits.max_gossip)
        .message_id_fn(|m: &gossipsub::Message| MessageId::from(Sha256::digest(&m.data).to_vec()))
        .build()?;
    let mut gossip =
        gossipsub::Behaviour::new(MessageAuthenticity::Signed(key.clone()), gossip_config)?;
    let topic = IdentTopic::new(ROTATION_TOPIC);
    // Rotations are rare: the topic is quiet, so delivery-rate penalties
    // (P3, P3b) are off; time in the mesh and first deliveries add a little
    // (at most 36 + 10); one invalid message costs 100, so a peer that sends
    // a forgery drops below zero at once, and the penalty halves about
    // every 12 minutes (decay per 1 s interval).
    let mut params = PeerScoreParams::default();
    params.topics.insert(
        topic.hash(),
        TopicScoreParams {
            topic_weight: 1.0,
            time_in_mesh_weight: 0.01,
            time_in_mesh_quantum: Duration::from_secs(1),
            time_in_mesh_cap: 3600.0,
            first_message_deliveries_weight: 1.0,
            first_message_deliveries_decay: 0.99,
            first_message_deliveries_cap: 10.0,
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            invalid_message_deliveries_weight: -100.0,
            invalid_message_deliveries_decay: 0.999,
            ..TopicScoreParams::default()
        },
    );
    // Loopback peers are this machine's own: not a Sybil cluster.
    params.ip_colocation_factor_whitelist = HashSet::from([
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]);
    gossip.with_peer_score(params, PeerScoreThresholds::default())?;

    let records = request_response::Behaviour::with_codec(
        RecordCodec {
            max_request: crate::MAX_KEY,
            max_response: limits.max_record,
        },
        [(StreamProtocol::new(RECORD_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.query_timeout)
            .with_max_concurrent_streams(limits.max_concurrent_requests),
    );
    let mail = request_response::Behaviour::with_codec(
        RecordCodec {
            max_request: MAX_MAIL,
            max_response: MAX_MAIL,
        },
        [(StreamProtocol::new(MAIL_PROTOCOL), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.query_timeout)
            .with_max_concurrent_streams(limits.max_concurrent_requests),
    );
    let relay = full.then(|| {
        relay::Behaviour::new(
            peer_id,
            relay::Config {
                max_reservations: limits.max_relay_reservations,
                max_circuits: limits.max_relay_circuits,
                max_circuit_duration: limits.max_relay_circuit_duration,
                max_circuit_bytes: limits.max_relay_circuit_bytes,
                ..relay::Config::default()
            },
        )
    });
    let mdns = if config.mdns {
        Some(mdns::tokio::Behaviour::new(
            mdns::Config::default(),
            peer_id,
        )?)
    } else {
        None
    };
    Ok(Behaviour {
        mdns: Toggle::from(mdns),
        relay: Toggle::from(relay),
        relay_client,
        dcutr: dcutr::Behaviour::new(peer_id),
        autonat: autonat::Behaviour::new(peer_id, autonat::Config::default()),
        limits: connection_limits::Behaviour::new(connection_limits),
        identify: identify::Behaviour::new(identify::Config::new(
            "/cairn/1.0.0".into(),
            key.public(),
        )),
        ping: ping::Behaviour::default(),
        kad,
        gossip,
        records,
        mail,
    })
}

/// Who waits for a record.
type RecordReply = oneshot::Sender<Result<Vec<u8>, NetError>>;

/// A DHT lookup in progress: the best valid record so far.
struct Get {
    key: Vec<u8>,
    best: Option<Vec<u8>>,
    reply: RecordReply,
}

/// A request's token bucket.
struct Rate {
    tokens: f64,
    at: Instant,
}

struct State {
    /// Relayed listen addresses and their listeners (none while the
    /// reservation is to be asked for again).
    relayed: HashMap<Multiaddr, Option<libp2p::core::transport::ListenerId>>,
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    policy: Arc<dyn Policy>,
    persist: Option<Arc<dyn Persist>>,
    events: mpsc::Sender<NetEvent>,
    events_dropped: u64,
    announcements_refused: u64,
    topic: IdentTopic,
    gets: HashMap<QueryId, Get>,
    puts: HashMap<QueryId, oneshot::Sender<Result<(), NetError>>>,
    closest: HashMap<QueryId, PeerId>,
    reaching: HashMap<PeerId, Vec<oneshot::Sender<Result<(), NetError>>>>,
    /// Direct record requests in flight: the key asked for, and who waits.
    requests: HashMap<OutboundRequestId, (Vec<u8>, RecordReply)>,
    rates: HashMap<PeerId, Rate>,
    /// Mail requests in flight: who waits for each.
    mail_out: HashMap<OutboundRequestId, MailReply>,
    /// Peers' mail requests waiting for the node's answer, by id.
    mail_in: HashMap<u64, (request_response::ResponseChannel<Vec<u8>>, Instant)>,
    next_mail: u64,
    mail_rates: HashMap<PeerId, Rate>,
    strikes: HashMap<PeerId, u32>,
    /// Strikes found off the network task (bounded; extra ones are dropped).
    strikes_tx: mpsc::Sender<(PeerId, String)>,
    banned: VecDeque<(PeerId, Instant)>,
    bootstrapped: bool,
}

impl State {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut strikes: mpsc::Receiver<(PeerId, String)>,
    ) {
        let mut upkeep = tokio::time::interval(UPKEEP);
        loop {
            tokio::select! {
                _ = upkeep.tick() => self.upkeep(),
                command = commands.recv() => match command {
                    None | Some(Command::Stop) => break,
                    Some(c) => self.command(c),
                },
                Some((peer, why)) = strikes.recv() => self.strike(peer, &why),
                event = self.swarm.select_next_some() => self.event(event),
            }
        }
        debug!("network stopped");
    }

    /// Periodic care: relay reservations that were refused or lost are
    /// asked for again; mail requests the node never answered are dropped
    /// (their streams have timed out).
    fn upkeep(&mut self) {
        let timeout = self.config.query_timeout;
        self.mail_in
            .retain(|_, (_, at)| at.elapsed() < timeout + Duration::from_secs(5));
        let lost: Vec<Multiaddr> = self
            .relayed
            .iter()
            .filter(|(_, id)| id.is_none())
            .map(|(a, _)| a.clone())
            .collect();
        for addr in lost {
            match self.swarm.listen_on(addr.clone()) {
                Ok(id) => {
                    self.relayed.insert(addr, Some(id));
                }
                Err(e) => debug!(%addr, "relay listen failed again: {e}"),
            }
        }
    }

    /// Answers everyone waiting to reach `peer` (commands `Reach` and `Dial`).
    fn settle(&mut self, peer: &PeerId, result: impl Fn() -> Result<(), NetError>) {
        for reply in self.reaching.remove(peer).unwrap_or_default() {
            let _ = reply.send(result());
        }
    }

    fn emit(&mut self, event: NetEvent) {
        if self.events.try_send(event).is_err() {
            self.events_dropped += 1;
        }
    }

    /// Stores `value` under `key` if the policy accepts it and it is not
    /// older than what is there; persists it. Returns whether it was new.
    fn store(&mut self, key: &[u8], value: Vec<u8>) -> Result<bool, String> {
        self.policy.check_record(key, &value)?;
        let rkey = RecordKey::new(&key);
        let store = self.swarm.behaviour_mut().kad.store_mut();
        if let Some(old) = store.get(&rkey) {
            if old.value == value || !self.policy.replaces(&value, &old.value) {
                return Ok(false);
            }
        }
        let mut record = Record::new(rkey, value.clone());
        record.expires = Some(Instant::now() + self.config.record_ttl);
        store
            .put(record)
            .map_err(|e| format!("cannot store: {e:?}"))?;
        if let Some(p) = self.persist.clone() {
            let key = key.to_vec();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = p.save(&key, &value) {
                    warn!("cannot keep a record: {e}");
                }
            });
        }
        Ok(true)
    }

    /// Queries and requests in flight, all kinds.
    fn in_flight(&self) -> usize {
        self.gets.len()
            + self.puts.len()
            + self.closest.len()
            + self.requests.len()
            + self.reaching.len()
            + self.mail_out.len()
    }

    fn command(&mut self, command: Command) {
        // Every query waits in a map until it ends: a bound on them all.
        if self.in_flight() >= MAX_IN_FLIGHT {
            match command {
                Command::Publish { reply, .. }
                | Command::Reach { reply, .. }
                | Command::Dial { reply, .. } => {
                    let _ = reply.send(Err(NetError::Busy));
                    return;
                }
                Command::Fetch { reply, .. } | Command::FetchFrom { reply, .. } => {
                    let _ = reply.send(Err(NetError::Busy));
                    return;
                }
                Command::Mail { reply, .. } => {
                    let _ = reply.send(Err(NetError::Busy));
                    return;
                }
                other => return self.command_now(other),
            }
        }
        self.command_now(command)
    }

    fn command_now(&mut self, command: Command) {
        match command {
            Command::Publish { key, value, reply } => {
                if let Err(e) = self.store(&key, value.clone()) {
                    let _ = reply.send(Err(NetError::Invalid(e)));
                    return;
                }
                let record = Record::new(RecordKey::new(&key), value);
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, Quorum::One)
                {
                    Ok(q) => {
                        self.puts.insert(q, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Failed(format!("{e:?}"))));
                    }
                }
            }
            Command::Fetch { key, reply } => {
                let q = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(RecordKey::new(&key));
                self.gets.insert(
                    q,
                    Get {
                        key,
                        best: None,
                        reply,
                    },
                );
            }
            Command::FetchFrom { peer, key, reply } => {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .records
                    .send_request(&peer, key.clone());
                self.requests.insert(id, (key, reply));
            }
            Command::Reach { peer, reply } => {
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                let waiting = self.reaching.entry(peer).or_default();
                waiting.push(reply);
                if waiting.len() == 1 {
                    let q = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
                    self.closest.insert(q, peer);
                }
            }
            Command::Dial { address, reply } => {
                let Some(peer) = peer_of(&address) else {
                    let _ = reply.send(Err(NetError::Failed(format!(
                        "{address} does not end in /p2p/PEER_ID"
                    ))));
                    return;
                };
                if self.swarm.is_connected(&peer) {
                    let _ = reply.send(Ok(()));
                    return;
                }
                match self.swarm.dial(address) {
                    Ok(()) => self.reaching.entry(peer).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(NetError::Failed(e.to_string())));
                    }
                }
            }
            Command::Announce { data, reply } => {
                let topic = self.topic.clone();
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossip
                    .publish(topic, data)
                    .map(|_| ())
                    .map_err(|e| NetError::Failed(format!("cannot announce: {e}")));
                let _ = reply.send(r);
            }
            Command::Status { reply } => {
                let behaviour = self.swarm.behaviour_mut();
                let routing_table = behaviour.kad.kbuckets().map(|b| b.num_entries()).sum();
                let records = behaviour.kad.store_mut().records().count();
                let _ = reply.send(NetStatus {
                    peer_id: *self.swarm.local_peer_id(),
                    listen: self.swarm.listeners().cloned().collect(),
                    peers: self.swarm.connected_peers().count(),
                    routing_table,
                    records,
                    full: self.config.full,
                    events_dropped: self.events_dropped,
                    announcements_refused: self.announcements_refused,
                    nat: match self.swarm.behaviour().autonat.nat_status() {
                        autonat::NatStatus::Public(_) => "public",
                        autonat::NatStatus::Private => "private",
                        autonat::NatStatus::Unknown => "unknown",
                    }
                    .into(),
                });
            }
            Command::GossipScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossip.peer_score(&peer));
            }
            Command::Mail {
                peer,
                request,
                reply,
            } => {
                let id = self.swarm.behaviour_mut().mail.send_request(&peer, request);
                self.mail_out.insert(id, reply);
            }
            Command::Respond { id, response } => {
                if let Some((channel, _)) = self.mail_in.remove(&id) {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .mail
                        .send_response(channel, response);
                }
            }
            Command::Stop => {}
        }
    }

    /// A peer sent something invalid: after [`MAX_STRIKES`] it is
    /// disconnected and refused for a while.
    fn strike(&mut self, peer: PeerId, why: &str) {
        let n = self.strikes.entry(peer).or_insert(0);
        *n += 1;
        warn!(%peer, strikes = *n, "invalid data from a peer: {why}");
        if *n >= MAX_STRIKES {
            self.strikes.remove(&peer);
            if self.banned.len() >= MAX_BANNED {
                self.banned.pop_front();
            }
            self.banned.push_back((peer, Instant::now()));
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        if self.strikes.len() > self.config.limits.max_tracked_peers {
            self.strikes.clear();
        }
    }

    fn is_banned(&mut self, peer: &PeerId) -> bool {
        let now = Instant::now();
        while self
            .banned
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > BAN_TIME)
        {
            self.banned.pop_front();
        }
        self.banned.iter().any(|(p, _)| p == peer)
    }

    /// Whether `peer` may make one more expensive request now.
    fn allow(&mut self, peer: PeerId) -> bool {
        let per_minute = self.config.limits.requests_per_minute;
        let max = self.config.limits.max_tracked_peers;
        take_token(&mut self.rates, peer, per_minute, max)
    }

    /// Whether `peer` may make one more mail request now.
    fn allow_mail(&mut self, peer: PeerId) -> bool {
        let per_minute = self.config.limits.mail_per_minute;
        let max = self.config.limits.max_tracked_peers;
        take_token(&mut self.mail_rates, peer, per_minute, max)
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if self.config.announce_listen && !is_relayed(&address) {
                    self.swarm.add_external_address(address);
                }
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                for id in self.relayed.values_mut() {
                    if *id == Some(listener_id) {
                        debug!("a relay reservation ended; asking again soon");
                        *id = None;
                    }
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if self.is_banned(&peer_id) {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                self.settle(&peer_id, || Ok(()));
                if !self.bootstrapped {
                    self.bootstrapped = self.swarm.behaviour_mut().kad.bootstrap().is_ok();
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if !self.swarm.is_connected(&peer) => {
                self.settle(&peer, || {
                    Err(NetError::Failed(format!(
                        "cannot connect to {peer}: {error}"
                    )))
                });
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocols.iter().any(|p| p.as_ref() == KAD_PROTOCOL) => {
                for addr in info.listen_addrs {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    debug!(%peer, %addr, "found on the LAN");
                    self.swarm.behaviour_mut().kad.add_address(&peer, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.kad_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossip(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let verdict = self.policy.check_announcement(&message.data);
                let acceptance = match &verdict {
                    Ok(()) => MessageAcceptance::Accept,
                    Err(_) => MessageAcceptance::Reject,
                };
                self.swarm
                    .behaviour_mut()
                    .gossip
                    .report_message_validation_result(&message_id, &propagation_source, acceptance);
                match verdict {
                    Ok(()) => self.emit(NetEvent::Announcement {
                        data: message.data,
                        from: propagation_source,
                    }),
                    Err(why) => {
                        self.announcements_refused += 1;
                        warn!(peer = %propagation_source, "announcement refused: {why}");
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Records(e)) => self.request_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mail(e)) => self.mail_event(e),
            _ => {}
        }
    }

    fn kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => {
                if !self.allow(source) {
                    return;
                }
                let key = record.key.to_vec();
                match self.store(&key, record.value) {
                    Ok(true) => self.emit(NetEvent::RecordStored { key }),
                    Ok(false) => {}
                    Err(why) => self.strike(source, &why),
                }
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                QueryResult::GetRecord(Ok(GetRecordOk::FoundRecord(found))) => {
                    let Some(get) = self.gets.get_mut(&id) else {
                        return;
                    };
                    let value = found.record.value;
                    match self.policy.check_record(&get.key, &value) {
                        Ok(()) => {
                            let better = match &get.best {
                                None => true,
                                Some(b) => self.policy.replaces(&value, b),
                            };
                            if better {
                                get.best = Some(value);
                            }
                        }
                        Err(why) => {
                            if let Some(peer) = found.peer {
                                self.strike(peer, &why);
                            }
                        }
                    }
                    if step.last {
                        self.finish_get(id);
                    }
                }
                QueryResult::GetRecord(_) => self.finish_get(id),
                QueryResult::PutRecord(r) => {
                    if let Some(reply) = self.puts.remove(&id) {
                        let _ = reply.send(r.map(|_| ()).map_err(|e| {
                            NetError::Failed(format!(
                                "stored here, but no DHT peer took it yet: {e:?}"
                            ))
                        }));
                    }
                }
                QueryResult::GetClosestPeers(r) => {
                    let Some(peer) = self.closest.remove(&id) else {
                        return;
                    };
                    let addrs: Vec<Multiaddr> = match r {
                        Ok(GetClosestPeersOk { peers, .. }) => peers
                            .into_iter()
                            .filter(|p| p.peer_id == peer)
                            .flat_map(|p| p.addrs)
                            .collect(),
                        Err(_) => Vec::new(),
                    };
                    if self.swarm.is_connected(&peer) {
                        self.settle(&peer, || Ok(()));
                        return;
                    }
                    let dialed = !addrs.is_empty()
                        && self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(addrs).build())
                            .is_ok();
                    if !dialed {
                        self.settle(&peer, || {
                            Err(NetError::Failed(format!("{peer} was not found in the DHT")))
                        });
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn finish_get(&mut self, id: QueryId) {
        let Some(get) = self.gets.remove(&id) else {
            return;
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .kad
            .query_mut(&id)
            .map(|mut q| q.finish());
        match get.best {
            Some(value) => {
                // Keep what was found, so this node serves it too.
                if let Ok(true) = self.store(&get.key, value.clone()) {
                    debug!("fetched record cached");
                }
                let _ = get.reply.send(Ok(value));
            }
            None => {
                let _ = get.reply.send(Err(NetError::NotFound));
            }
        }
    }

    /// Answers a mail request that is not taken now: busy, for each item.
    fn answer_busy(&mut self, channel: request_response::ResponseChannel<Vec<u8>>, items: usize) {
        if let Ok(b) = MailResponse::busy(items).encode() {
            let _ = self.swarm.behaviour_mut().mail.send_response(channel, b);
        }
    }

    /// A mail request from a peer goes to the node (bounded: rate per
    /// peer, requests waiting, the event queue); a response to ours goes
    /// to whoever waits for it.
    fn mail_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let request = match MailRequest::decode(&request) {
                    Ok(r) => r,
                    Err(e) => {
                        self.strike(peer, &e.to_string());
                        return;
                    }
                };
                if !self.allow_mail(peer)
                    || self.mail_in.len() >= self.config.limits.max_mail_inbound
                {
                    debug!(%peer, "mail request over a limit: answered busy");
                    self.answer_busy(channel, request.items());
                    return;
                }
                let items = request.items();
                self.next_mail += 1;
                let id = self.next_mail;
                match self.events.try_send(NetEvent::Mail {
                    id,
                    from: peer,
                    request,
                }) {
                    Ok(()) => {
                        self.mail_in.insert(id, (channel, Instant::now()));
                    }
                    Err(_) => {
                        self.events_dropped += 1;
                        self.answer_busy(channel, items);
                    }
                }
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some(reply) = self.mail_out.remove(&request_id) else {
                    return;
                };
                let decoded = MailResponse::decode(&response);
                if let Err(e) = &decoded {
                    self.strike(peer, &e.to_string());
                }
                let _ = reply.send(decoded.map_err(|e| NetError::Failed(e.to_string())));
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.mail_out.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Failed(error.to_string())));
                }
            }
            _ => {}
        }
    }

    fn request_event(&mut self, event: request_response::Event<Vec<u8>, Vec<u8>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let answer = if self.allow(peer) {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .store_mut()
                        .get(&RecordKey::new(&request))
                        .map(|r| r.value.clone())
                        .unwrap_or_default()
                } else {
                    debug!(%peer, "record request over the rate limit");
                    Vec::new()
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .records
                    .send_response(channel, answer);
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                let Some((key, reply)) = self.requests.remove(&request_id) else {
                    return;
                };
                if response.is_empty() {
                    let _ = reply.send(Err(NetError::NotFound));
                    return;
                }
                // Verifying is the expensive part (signatures): off the
                // network task, so that other peers are served meanwhile.
                let (policy, strikes) = (self.policy.clone(), self.strikes_tx.clone());
                tokio::task::spawn_blocking(move || match policy.check_record(&key, &response) {
                    Ok(()) => {
                        let _ = reply.send(Ok(response));
                    }
                    Err(why) => {
                        let _ = strikes.try_send((peer, why.clone()));
                        let _ = reply.send(Err(NetError::Invalid(why)));
                    }
                });
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some((_, reply)) = self.requests.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Failed(error.to_string())));
                }
            }
            _ => {}
        }
    }
}

/// Takes one token from `peer`'s bucket in `rates` (`per_minute` tokens,
/// refilled continuously); tracks at most `max_tracked` peers.
fn take_token(
    rates: &mut HashMap<PeerId, Rate>,
    peer: PeerId,
    per_minute: u32,
    max_tracked: usize,
) -> bool {
    let per_minute = f64::from(per_minute);
    let now = Instant::now();
    if rates.len() >= max_tracked && !rates.contains_key(&peer) {
        rates.retain(|_, r| now.duration_since(r.at) < Duration::from_secs(60));
        if rates.len() >= max_tracked {
            return false;
        }
    }
    let rate = rates.entry(peer).or_insert(Rate {
        tokens: per_minute,
        at: now,
    });
    let refill = now.duration_since(rate.at).as_secs_f64() * per_minute / 60.0;
    rate.tokens = (rate.tokens + refill).min(per_minute);
    rate.at = now;
    if rate.tokens >= 1.0 {
        rate.tokens -= 1.0;
        true
    } else {
        false
    }
}
