//! `cairn node`, the daemon: follows the chain source block by block, checks
//! the node's own identity and every contact at each new tip (rotations
//! followed, reorgs reverted, stale seals reported), and serves the local
//! API. It stops cleanly on SIGINT, SIGTERM or an API `stop`: the round in
//! progress finishes (every store write is complete or not started) and the
//! next start resumes from the store.
//!
//! One task owns the watcher's state; it publishes a [`Snapshot`] after
//! every round, which API requests read. Chain and store calls run on the
//! blocking pool, never on the async workers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::BlockHash;
use cairn_chain_anchor::rpc::RpcConfig;
use cairn_chain_anchor::{ChainNetwork, ChainSource, HeaderChain, RpcSource, Verdict};
use cairn_wallet::IdentityId;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::api::{self, ApiContext, ApiError};
use crate::chain::{self, unix_now};
use crate::datadir::DataDir;
use crate::store::Store;
use crate::watch::{check_contact, check_own, Subject, WatchEvent, Watcher};

/// Daemon failures.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The API failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Signals could not be set up.
    #[error("cannot set up signal handling: {0}")]
    Signals(std::io::Error),
}

/// What the daemon runs with.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Where the local API listens (loopback).
    pub api: SocketAddr,
    /// The Bitcoin network.
    pub network: ChainNetwork,
    /// How to reach the chain source (Bitcoin Core's RPC, or the devnet).
    pub rpc: RpcConfig,
    /// Confirmations a seal needs.
    pub confirmations: u32,
    /// How often the chain source is asked for new blocks.
    pub poll: Duration,
}

/// The chain tip the watcher last synced to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TipView {
    /// Height.
    pub height: u32,
    /// Block hash.
    pub hash: BlockHash,
}

/// The chain source, as the watcher last found it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceView {
    /// What it is (`Bitcoin Core 28.0 at …`), once reached.
    pub description: Option<String>,
    /// Why the last round failed, if it did.
    pub error: Option<String>,
}

/// One watched identity.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityView {
    /// Its id.
    pub id: IdentityId,
    /// The contact's name.
    pub name: Option<String>,
    /// Whether it is the node's own.
    pub own: bool,
    /// The last verdict (none until the first round that reached the source).
    pub verdict: Option<Verdict>,
}

/// What the watcher saw last; what the API answers from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// The tip of the validated header chain.
    pub tip: Option<TipView>,
    /// The chain source.
    pub source: SourceView,
    /// When the last round ended, Unix seconds.
    pub last_check: Option<u64>,
    /// The identities watched.
    pub watched: Vec<IdentityView>,
    /// The events kept (at most [`crate::watch::MAX_EVENTS`]), oldest first.
    pub events: Vec<WatchEvent>,
}

/// Runs the daemon until it is told to stop. `started` is called with the
/// API address once the API is up.
pub async fn run(
    dir: &DataDir,
    store: Arc<Store>,
    identity: Option<IdentityId>,
    options: DaemonOptions,
    started: impl FnOnce(SocketAddr),
) -> Result<(), DaemonError> {
    let (listener, token) = api::bind(dir.root(), options.api).await?;
    let api_addr = listener.local_addr().map_err(|e| ApiError::Io {
        what: "API listener".into(),
        source: e,
    })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (view_tx, view_rx) = watch::channel(Arc::new(Snapshot::default()));
    let ctx = Arc::new(ApiContext {
        store: store.clone(),
        network: options.network,
        identity,
        view: view_rx,
        stop: stop_tx,
    });
    let api_task = tokio::spawn(api::serve(listener, token, ctx.clone(), stop_rx.clone()));
    let watch_task = tokio::spawn(watch_loop(
        dir.clone(),
        store,
        options,
        view_tx,
        stop_rx.clone(),
    ));
    started(api_addr);

    let mut stop = stop_rx;
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(DaemonError::Signals)?;
    #[cfg(unix)]
    let terminated = term.recv();
    #[cfg(not(unix))]
    let terminated = std::future::pending::<Option<()>>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("interrupted; stopping"),
        _ = terminated => info!("terminated; stopping"),
        _ = stop.changed() => info!("stop requested through the API"),
    }
    let _ = ctx.stop.send(true);
    // The round in progress ends before the store is closed.
    if let Err(e) = watch_task.await {
        warn!("the watcher ended badly: {e}");
    }
    let _ = api_task.await;
    let _ = std::fs::remove_file(dir.root().join(api::API_FILE));
    info!("stopped");
    Ok(())
}

/// What one round carries between the async task and the blocking pool.
struct Round {
    dir: DataDir,
    store: Arc<Store>,
    options: DaemonOptions,
    source: Option<RpcSource>,
    /// The header chain, loaded once and synced in place (dropped after a
    /// failed sync, so that the next round loads it from the store again).
    chain: Option<HeaderChain>,
    watcher: Watcher,
    /// The tip and the identities of the last complete check.
    checked: Option<(BlockHash, Vec<Subject>)>,
    view: Snapshot,
}

async fn watch_loop(
    dir: DataDir,
    store: Arc<Store>,
    options: DaemonOptions,
    view: watch::Sender<Arc<Snapshot>>,
    mut stop: watch::Receiver<bool>,
) {
    let poll = options.poll;
    let mut round = Round {
        dir,
        store,
        options,
        source: None,
        chain: None,
        watcher: Watcher::new(),
        checked: None,
        view: Snapshot::default(),
    };
    loop {
        round = match tokio::task::spawn_blocking(move || {
            round.once();
            round
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!("the watcher failed: {e}; stopping");
                let _ = view.send(Arc::new(Snapshot::default()));
                return;
            }
        };
        view.send_replace(Arc::new(round.view.clone()));
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
    }
}

impl Round {
    /// One look at the chain source: sync the headers; at a new tip (or when
    /// the identities changed), check every identity and note what changed.
    fn once(&mut self) {
        let seen_before = self.watcher.events().last().map(|e| e.seq).unwrap_or(0);
        if let Err(why) = self.check() {
            warn!("watching: {why}");
            self.source = None;
            self.view.source.error = Some(why.clone());
            self.watcher.source_failed(&why, unix_now());
        }
        self.view.last_check = Some(unix_now());
        self.view.events = self.watcher.events().cloned().collect();
        for e in self.view.events.iter().filter(|e| e.seq > seen_before) {
            info!(seq = e.seq, "{}", e.message);
        }
    }

    fn check(&mut self) -> Result<(), String> {
        let source = match self.source.take() {
            Some(s) => s,
            None => RpcSource::connect(self.options.rpc.clone())
                .map_err(|e| format!("cannot reach the chain source: {e}"))?,
        };
        let result = self.check_with(&source);
        if result.is_ok() {
            self.view.source = SourceView {
                description: Some(source.describe()),
                error: None,
            };
            self.watcher.source_ok(unix_now());
            self.source = Some(source);
        }
        result
    }

    fn check_with(&mut self, source: &RpcSource) -> Result<(), String> {
        let (store, network) = (&*self.store, self.options.network);
        let chain = match &mut self.chain {
            Some(c) => c,
            slot @ None => slot.insert(chain::load(store, network).map_err(|e| e.to_string())?),
        };
        if let Err(e) = chain::sync_loaded(store, chain, source, &mut |_| {}) {
            self.chain = None;
            return Err(format!("syncing headers from {}: {e}", source.describe()));
        }
        let tip = chain.tip();
        let tip_hash = tip.hash;
        self.view.tip = Some(TipView {
            height: tip.height,
            hash: tip.hash,
        });
        let own_id = store.own_identity().map_err(|e| e.to_string())?;
        let contacts = store.contacts().map_err(|e| e.to_string())?;
        let subjects: Vec<Subject> = own_id
            .iter()
            .map(|id| Subject {
                id: *id,
                name: None,
                own: true,
            })
            .chain(contacts.iter().map(|(id, r)| Subject {
                id: *id,
                name: r.name.clone(),
                own: false,
            }))
            .collect();
        if self.checked.as_ref() == Some(&(tip_hash, subjects.clone())) {
            return Ok(());
        }
        // The own log is loaded and verified only when there is something to check.
        let own = match own_id {
            Some(_) => Some(crate::identity::load(store, &self.dir).map_err(|e| e.to_string())?),
            None => None,
        };
        let confirmations = self.options.confirmations;
        let now = unix_now();
        let fail =
            |s: &Subject, e: crate::anchoring::AnchorError| format!("checking {}: {e}", s.label());
        // The own identity first (it leads `subjects`), then the contacts in order.
        let (own_subject, contact_subjects) = match own {
            Some(_) => (subjects.first(), subjects.get(1..).unwrap_or_default()),
            None => (None, &subjects[..]),
        };
        if let (Some(own), Some(s)) = (&own, own_subject) {
            let checked = check_own(store, network, chain, source, own, confirmations)
                .map_err(|e| fail(s, e))?;
            self.watcher.observe(s, &checked, now);
        }
        for (s, (id, record)) in contact_subjects.iter().zip(&contacts) {
            let checked = check_contact(store, network, chain, source, id, record, confirmations)
                .map_err(|e| fail(s, e))?;
            self.watcher.observe(s, &checked, now);
        }
        self.watcher.retain(&subjects);
        self.view.watched = subjects
            .iter()
            .map(|s| IdentityView {
                id: s.id,
                name: s.name.clone(),
                own: s.own,
                verdict: self.watcher.verdict(&s.id).cloned(),
            })
            .collect();
        self.checked = Some((tip_hash, subjects));
        Ok(())
    }
}
