//! The node's side of the libp2p network (feature `network`): the policy
//! that verifies every record and announcement before the network stores or
//! forwards it, the store that keeps records across restarts, the peer key
//! from the hot keys' network secret (never the identity key), and the
//! daemon's network task (the own record published and announced, contacts'
//! announced records handed to the watcher).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::hashes::{sha256, Hash};
use cairn_wallet::IdentityId;

use cairn_chain_anchor::ChainNetwork;
use cairn_net::{MailResponse, NetEvent, Network};
use cairn_wallet::keystore::HotKeys;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::chain::unix_now;
use crate::config::NetworkConfig;
use crate::contact_book::{self, ContactKey};
use crate::daemon::Command;
use crate::identity::OwnIdentity;
use crate::record::{
    check_key, check_window, compare_logs, dht_key, network_record_replaces, Freshness,
    IdentityRecord,
};
use crate::store::Store;

/// Most verified records remembered (oldest forgotten first).
pub const VERIFIED_CACHE: usize = 4096;

/// Records and announcements are identity records, verified in full. Like
/// Bitcoin Core's signature cache, the policy remembers the records it has
/// verified (by the SHA-256 of their bytes, at most [`VERIFIED_CACHE`]), so
/// that the same record fetched or offered again costs a hash, not three
/// signature checks; the validity window and the key are checked every time.
#[derive(Default)]
pub struct RecordPolicy {
    verified: Mutex<Verified>,
}

#[derive(Default)]
struct Verified {
    records: HashMap<[u8; 32], (IdentityId, u64, u64)>,
    order: VecDeque<[u8; 32]>,
}

impl RecordPolicy {
    /// A policy with an empty cache.
    pub fn new() -> Self {
        RecordPolicy::default()
    }

    /// The identity and window of a record whose log and signature verify.
    fn verified(&self, value: &[u8], now: u64) -> Result<(IdentityId, u64, u64), String> {
        let hash = sha256::Hash::hash(value).to_byte_array();
        if let Some(v) = self
            .verified
            .lock()
            .map_err(|_| "policy cache poisoned")?
            .records
            .get(&hash)
        {
            return Ok(*v);
        }
        let record = IdentityRecord::decode(value).map_err(|e| e.to_string())?;
        let id = record.verify(now).map_err(|e| e.to_string())?.id;
        let entry = (id, record.issued, record.expires);
        let mut cache = self.verified.lock().map_err(|_| "policy cache poisoned")?;
        if cache.records.insert(hash, entry).is_none() {
            cache.order.push_back(hash);
            if cache.order.len() > VERIFIED_CACHE {
                if let Some(old) = cache.order.pop_front() {
                    cache.records.remove(&old);
                }
            }
        }
        Ok(entry)
    }
}

impl cairn_net::Policy for RecordPolicy {
    fn check_record(&self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let now = unix_now();
        let (id, issued, expires) = self.verified(value, now)?;
        check_window(issued, expires, now).map_err(|e| e.to_string())?;
        check_key(key, &id).map_err(|e| e.to_string())
    }

    fn replaces(&self, new: &[u8], old: &[u8]) -> bool {
        network_record_replaces(new, old)
    }

    /// A rotation is announced with the identity's new record.
    fn check_announcement(&self, data: &[u8]) -> Result<(), String> {
        let now = unix_now();
        let (_, issued, expires) = self.verified(data, now)?;
        check_window(issued, expires, now).map_err(|e| e.to_string())
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

/// What `cairn node` needs to join the network.
pub struct NodeNetwork {
    /// Listen addresses, bootstrap peers, limits.
    pub config: cairn_net::NetConfig,
    /// The node's peer key: from the identity's network secret
    /// ([`peer_key`]), or kept in the data directory by a node without an
    /// identity ([`node_key`]).
    pub key: cairn_net::Keypair,
    /// The own identity, whose record the node publishes; none on a node
    /// that only serves the network.
    pub identity: Option<NetIdentity>,
    /// The Bitcoin network its anchors are on.
    pub chain: ChainNetwork,
    /// Keep envelopes for others as a mailbox node.
    pub serve_mailbox: bool,
    /// How often the own mailbox nodes are asked for new mail.
    pub collect: Duration,
    /// Tell contacts this node's peer id (for direct delivery).
    pub direct: bool,
}

/// The own identity on the network.
pub struct NetIdentity {
    /// Its hot keys: the key that signs the own record.
    pub hot: HotKeys,
    /// The identity.
    pub own: OwnIdentity,
}

/// The peer key of a node without an identity: 32 random bytes kept
/// (owner-only) at `path`, made on first use, so that its peer id stays the
/// same across restarts. It is a transport key, not an identity's: losing
/// it only changes the peer id.
pub fn node_key(path: &std::path::Path) -> Result<cairn_net::Keypair, String> {
    let secret = match std::fs::read(path) {
        Ok(bytes) => zeroize::Zeroizing::new(
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| format!("{} is not a node key (32 bytes)", path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let fresh = crate::secrets::random32().map_err(|e| e.to_string())?;
            crate::datadir::write_atomic(path, &*fresh)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            fresh
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    peer_key(&secret)
}

/// The `[network]` section as the network's settings.
pub fn net_config(c: &NetworkConfig) -> Result<cairn_net::NetConfig, String> {
    let parse = |what: &str, list: &[String]| -> Result<Vec<cairn_net::Multiaddr>, String> {
        list.iter()
            .map(|a| {
                a.parse()
                    .map_err(|e| format!("[network] {what}: {a:?} is not a multiaddress: {e}"))
            })
            .collect()
    };
    Ok(cairn_net::NetConfig {
        listen: parse("listen", &c.listen)?,
        bootstrap: parse("bootstrap", &c.bootstrap)?,
        full: c.full,
        mdns: c.mdns,
        ..cairn_net::NetConfig::default()
    })
}

/// How long the own record is valid; it is published again well before.
const RECORD_VALIDITY: u64 = 7 * 24 * 60 * 60;
/// How often the own record is published again once it was.
const REPUBLISH: Duration = Duration::from_secs(24 * 60 * 60);
/// How soon a failed publication is tried again at first; the wait doubles
/// up to [`MAX_RETRY`].
const RETRY: Duration = Duration::from_secs(2);
/// The longest wait between two tries.
const MAX_RETRY: Duration = Duration::from_secs(600);
/// How often the contacts' records are fetched again from the network: an
/// announcement of a newer one is missed while the node is away.
pub const REFRESH: Duration = Duration::from_secs(6 * 60 * 60);
/// When the first fetch runs after the start (the DHT connects first). A
/// round where some record could not be fetched runs again after 4 times
/// this, then 16 times, … up to [`REFRESH`].
const REFRESH_FIRST: Duration = Duration::from_secs(5);
/// Contacts whose records are fetched per round, at most.
const MAX_REFRESH: usize = 1000;

/// The own record, signed now.
fn own_record(store: &Store, chain: ChainNetwork, me: &NetIdentity) -> Result<Vec<u8>, String> {
    let bundle = crate::anchoring::own_bundle(store, chain, &me.own).map_err(|e| e.to_string())?;
    let now = unix_now();
    IdentityRecord::sign(bundle, now, now + RECORD_VALIDITY, &me.hot.signing)
        .map(|r| r.encode())
        .map_err(|e| e.to_string())
}

/// What [`start`] gives the daemon.
pub struct Started {
    /// The network, for the API.
    pub net: Arc<Network>,
    /// Messages, for the API (a node with an identity).
    pub messenger: Option<Arc<crate::delivery::Messenger>>,
    /// The task; it ends when `stop` turns true.
    pub task: tokio::task::JoinHandle<()>,
    /// When the own record was last published (Unix seconds; 0: not yet).
    pub published: Arc<std::sync::atomic::AtomicU64>,
}

/// Starts the network for `cairn node`: publishes and announces the own
/// record, publishes it again daily, hands contacts' newer records
/// (announced on gossip) to the watcher through `commands`, and runs
/// message delivery ([`crate::delivery`]).
pub async fn start(
    store: Arc<Store>,
    part: NodeNetwork,
    contacts: ContactKey,
    commands: mpsc::Sender<Command>,
    mut stop: watch::Receiver<bool>,
) -> Result<Started, cairn_net::NetError> {
    let persist = Arc::new(StoreRecords(store.clone()));
    let (net, mut events) = Network::start(
        part.key.clone(),
        part.config.clone(),
        Arc::new(RecordPolicy::new()),
        Some(persist),
    )
    .await?;
    let net = Arc::new(net);
    info!(peer = %net.peer_id(), "network started");
    let handle = net.clone();
    let chain = part.chain;
    // Reading the conversations and counting the mailbox are store work:
    // on the blocking pool.
    let hot = match &part.identity {
        Some(me) => Some(
            HotKeys::decode(&me.hot.encode())
                .map_err(|e| cairn_net::NetError::Start(e.to_string()))?,
        ),
        None => None,
    };
    let own_state = part.identity.as_ref().map(|me| me.own.state.clone());
    let reach = if part.direct {
        net.peer_id().to_bytes()
    } else {
        Vec::new()
    };
    let (s, serve) = (store.clone(), part.serve_mailbox);
    let (mailbox, convs) = tokio::task::spawn_blocking(move || {
        let mailbox = if serve {
            Some(crate::mailbox::Mailbox::open(s.clone(), unix_now()).map_err(|e| e.to_string())?)
        } else {
            None
        };
        let convs = match (hot, &own_state) {
            (Some(hot), Some(state)) => Some(
                crate::conversation::Conversations::open(s, hot, state, reach, unix_now())
                    .map_err(|e| e.to_string())?,
            ),
            _ => None,
        };
        Ok::<_, String>((mailbox, convs))
    })
    .await
    .map_err(|e| cairn_net::NetError::Start(e.to_string()))?
    .map_err(cairn_net::NetError::Start)?;
    let own_mailboxes = part
        .identity
        .as_ref()
        .map(|me| {
            me.own
                .state
                .mailboxes
                .iter()
                .filter_map(|m| cairn_net::PeerId::from_bytes(m).ok())
                .collect()
        })
        .unwrap_or_default();
    let (mail_tx, mail_rx) = mpsc::channel(crate::delivery::MAIL_QUEUE);
    let (messenger, delivery) = crate::delivery::start(
        net.clone(),
        convs,
        own_mailboxes,
        mailbox,
        part.collect,
        mail_rx,
        stop.clone(),
    );
    let me = part.identity.map(Arc::new);
    let published = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let published_at = published.clone();
    tokio::spawn(refresh_contacts(
        net.clone(),
        store.clone(),
        contacts.clone(),
        commands.clone(),
        stop.clone(),
    ));
    let task = tokio::spawn(async move {
        let key = me.as_ref().map(|m| dht_key(&m.own.state.id).to_vec());
        let mut announced = false;
        // A node without an identity has no record to publish.
        let far = tokio::time::Instant::now() + Duration::from_secs(100 * 365 * 24 * 60 * 60);
        let mut next = match me {
            Some(_) => tokio::time::Instant::now(),
            None => far,
        };
        let mut retry = RETRY;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    let (Some(me), Some(key)) = (me.clone(), key.clone()) else {
                        next = far;
                        continue;
                    };
                    let s = store.clone();
                    let made = tokio::task::spawn_blocking(move || own_record(&s, chain, &me))
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r);
                    let record = match made {
                        Ok(r) => r,
                        Err(e) => {
                            warn!("cannot make the own record: {e}");
                            next = tokio::time::Instant::now() + MAX_RETRY;
                            continue;
                        }
                    };
                    match handle.publish(key, record.clone()).await {
                        Ok(()) => {
                            info!("own record published");
                            published_at.store(unix_now(), std::sync::atomic::Ordering::Release);
                            next = tokio::time::Instant::now() + REPUBLISH;
                            retry = RETRY;
                        }
                        Err(e) => {
                            debug!("own record not published yet: {e}");
                            next = tokio::time::Instant::now() + retry;
                            retry = (retry * 2).min(MAX_RETRY);
                        }
                    }
                    if !announced && handle.announce(record).await.is_ok() {
                        announced = true;
                    }
                }
                event = events.recv() => match event {
                    Some(NetEvent::Announcement { data, from }) => {
                        let (s, k, c) = (store.clone(), contacts.clone(), commands.clone());
                        tokio::task::spawn_blocking(move || {
                            contact_announced(&s, &k, &c, &data, &from.to_string())
                        });
                    }
                    Some(NetEvent::RecordStored { .. }) => {}
                    Some(NetEvent::Mail { id, from, request }) => {
                        let r = crate::delivery::MailIn { id, from, request };
                        if let Err(mpsc::error::TrySendError::Full(r)) = mail_tx.try_send(r) {
                            let busy = MailResponse::busy(r.request.items());
                            let h = handle.clone();
                            tokio::spawn(async move { h.respond(r.id, &busy).await });
                        }
                    }
                    None => break,
                },
                _ = stop.changed() => break,
            }
        }
        let _ = delivery.await;
        handle.close().await;
    });
    Ok(Started {
        net,
        messenger,
        task,
        published,
    })
}

/// Fetches every contact's record from the network soon after the start
/// and every [`REFRESH`], and hands the newer ones to the watcher (as an
/// announcement would): a node that was away missed the announcements of
/// new prekeys, mailboxes and rotations. Runs until `stop`.
async fn refresh_contacts(
    net: Arc<Network>,
    store: Arc<Store>,
    key: ContactKey,
    commands: mpsc::Sender<Command>,
    mut stop: watch::Receiver<bool>,
) {
    let mut retry = REFRESH_FIRST;
    let mut wait = REFRESH_FIRST;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
        let (s, k) = (store.clone(), key.clone());
        let ids = match tokio::task::spawn_blocking(move || contact_book::all(&s, &k)).await {
            Ok(Ok(all)) => all.into_iter().map(|c| c.id).take(MAX_REFRESH).collect(),
            Ok(Err(e)) => {
                warn!("cannot read the contacts to refresh them: {e}");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        let mut missed = 0;
        for id in ids {
            if *stop.borrow() {
                return;
            }
            let dht = dht_key(&id).to_vec();
            let record = match net.fetch(dht.clone()).await {
                Ok(bytes) => crate::record::check_network_record(&dht, &bytes, unix_now()),
                Err(e) => {
                    debug!(%id, "a contact's record was not fetched: {e}");
                    missed += 1;
                    continue;
                }
            };
            match record {
                Ok(r) => {
                    let (s, k, c) = (store.clone(), key.clone(), commands.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        offer_newer(&s, &k, &c, r.bundle, "the network")
                    })
                    .await;
                }
                Err(e) => debug!(%id, "a contact's record from the network is refused: {e}"),
            }
        }
        (wait, retry) = if missed > 0 {
            retry = (retry * 4).min(REFRESH);
            (retry, retry)
        } else {
            (REFRESH, REFRESH_FIRST)
        };
    }
}

/// A record announced on gossip (already verified by the policy): if it is
/// a contact's and its log is newer than the one the node holds (the rule
/// of `contact add`, [`compare_logs`]), the watcher takes it like `contact
/// add` and checks it against the chain. Store reads: call it on the
/// blocking pool.
fn contact_announced(
    store: &Store,
    key: &ContactKey,
    commands: &mpsc::Sender<Command>,
    data: &[u8],
    from: &str,
) {
    let Ok(record) = IdentityRecord::decode(data) else {
        return;
    };
    offer_newer(store, key, commands, record.bundle, from);
}

/// Hands `bundle` to the watcher (as `contact add` would) if it is a
/// contact's and its log is newer than the one the node holds (the rule of
/// `contact add`, [`compare_logs`]). Store reads: call it on the blocking
/// pool.
fn offer_newer(
    store: &Store,
    key: &ContactKey,
    commands: &mpsc::Sender<Command>,
    bundle: cairn_chain_anchor::Bundle,
    from: &str,
) {
    let Some(inception) = bundle.log.events().first() else {
        return;
    };
    let id = IdentityId::of_inception(inception.event_bytes());
    let Some(known) = contact_book::get(store, key, &id).ok().flatten() else {
        return;
    };
    if !matches!(
        compare_logs(&bundle.log, &known.bundle.log),
        Ok(Freshness::Newer)
    ) {
        return;
    }
    info!("a contact's newer record came");
    debug!(%id, %from, "a contact's newer record came");
    let (reply, _) = oneshot::channel();
    let _ = commands.try_send(Command::AddContact {
        bundle: Box::new(bundle),
        name: None,
        known_only: true,
        reply,
    });
}
