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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::BlockHash;
use cairn_chain_anchor::rpc::RpcConfig;
use cairn_chain_anchor::{Bundle, ChainNetwork, ChainSource, HeaderChain, RpcSource, Verdict};
use cairn_wallet::IdentityId;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::api::{self, ApiContext, ApiError};
use crate::chain::{self, unix_now};
use crate::contact_book::{self, ContactKey};
use crate::contacts::{self, Added, ContactError, ContactView, VerifyReport};
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
    /// The network could not start.
    #[cfg(feature = "network")]
    #[error(transparent)]
    Network(#[from] cairn_net::NetError),
}

/// Most API commands waiting for the watcher.
pub const MAX_PENDING_COMMANDS: usize = 16;

/// What the API asks of the watcher, which owns the identities' state:
/// changes to the contacts, and checks on demand. Each is answered on its
/// `reply` channel.
#[derive(Debug)]
pub enum Command {
    /// Add or update a contact, then check the contacts at once.
    AddContact {
        /// The contact's identity bundle.
        bundle: Box<Bundle>,
        /// Its name, if given.
        name: Option<String>,
        /// Only update a contact the node has (a newer record seen in the
        /// network): a contact removed meanwhile is not added back.
        known_only: bool,
        /// The answer.
        reply: oneshot::Sender<Result<Added, CommandError>>,
    },
    /// Give a contact (by id or name) another name.
    RenameContact {
        /// Which contact.
        who: String,
        /// The new name.
        name: String,
        /// The answer.
        reply: oneshot::Sender<Result<ContactView, CommandError>>,
    },
    /// Remove a contact (by id or name) from the contact book.
    RemoveContact {
        /// Which contact.
        who: String,
        /// The answer: its id, and whether it was a contact.
        reply: oneshot::Sender<Result<(IdentityId, bool), CommandError>>,
    },
    /// Sync the headers and check one contact (by id or name) or every
    /// contact, as `cairn contact verify` does.
    Verify {
        /// Which contact; every contact if `None`.
        who: Option<String>,
        /// The answer: one report per contact, in the store's order.
        reply: oneshot::Sender<Result<Vec<VerifyReport>, CommandError>>,
    },
}

/// Why a [`Command`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The contact could not be added or found.
    #[error(transparent)]
    Contact(#[from] ContactError),
    /// The chain source or a check failed.
    #[error("{0}")]
    Watch(String),
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
    /// How the contact book is opened: sealed under the identity's store
    /// key, or in the clear on a node without an identity.
    pub contacts: ContactKey,
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
    #[cfg(feature = "network")] network: Option<crate::network::NodeNetwork>,
    started: impl FnOnce(SocketAddr),
) -> Result<(), DaemonError> {
    let (listener, token) = api::bind(dir.root(), options.api).await?;
    let api_addr = listener.local_addr().map_err(|e| ApiError::Io {
        what: "API listener".into(),
        source: e,
    })?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (view_tx, view_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (command_tx, command_rx) = mpsc::channel(MAX_PENDING_COMMANDS);
    #[cfg(feature = "network")]
    let (net, messenger, net_task, published) = match network {
        Some(part) => {
            let s = crate::network::start(
                store.clone(),
                part,
                options.contacts.clone(),
                command_tx.clone(),
                stop_rx.clone(),
            )
            .await?;
            (Some(s.net), s.messenger, Some(s.task), Some(s.published))
        }
        None => (None, None, None, None),
    };
    let ctx = Arc::new(ApiContext {
        store: store.clone(),
        network: options.network,
        identity,
        contacts: options.contacts.clone(),
        view: view_rx,
        stop: stop_tx,
        commands: command_tx,
        #[cfg(feature = "network")]
        net,
        #[cfg(feature = "network")]
        messenger,
        #[cfg(feature = "network")]
        published,
    });
    let api_task = tokio::spawn(api::serve(listener, token, ctx.clone(), stop_rx.clone()));
    let watch_task = tokio::spawn(watch_loop(
        dir.clone(),
        store,
        options,
        view_tx,
        command_rx,
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
    #[cfg(feature = "network")]
    if let Some(t) = net_task {
        let _ = t.await;
    }
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
    /// The contacts' reports of that check.
    reports: HashMap<IdentityId, VerifyReport>,
    view: Snapshot,
}

async fn watch_loop(
    dir: DataDir,
    store: Arc<Store>,
    options: DaemonOptions,
    view: watch::Sender<Arc<Snapshot>>,
    mut commands: mpsc::Receiver<Command>,
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
        reports: HashMap::new(),
        view: Snapshot::default(),
    };
    let mut next: Option<Command> = None;
    loop {
        let command = next.take();
        round = match tokio::task::spawn_blocking(move || {
            round.run(command);
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
            Some(c) = commands.recv() => next = Some(c),
        }
    }
}

impl Round {
    /// A round: a command and the round it needs, or a poll.
    fn run(&mut self, command: Option<Command>) {
        match command {
            None => {
                let _ = self.once();
            }
            Some(Command::AddContact {
                bundle,
                name,
                known_only,
                reply,
            }) => {
                let (store, key, network) =
                    (&self.store, &self.options.contacts, self.options.network);
                let added = if known_only {
                    contacts::update(store, key, network, *bundle, unix_now())
                } else {
                    contacts::add(store, key, network, *bundle, name.as_deref(), unix_now())
                };
                if let Ok(a) = &added {
                    info!("a contact added or updated");
                    debug!("contact {} added or updated", a.id);
                }
                // Checked again at once: its log may have changed even if
                // its id and name did not.
                self.answer_change(reply, added);
            }
            Some(Command::RenameContact { who, name, reply }) => {
                let (store, key) = (&self.store, &self.options.contacts);
                let renamed = contacts::rename(store, key, self.options.network, &who, &name);
                self.answer_change(reply, renamed);
            }
            Some(Command::RemoveContact { who, reply }) => {
                let removed = contacts::remove(&self.store, &self.options.contacts, &who);
                self.answer_change(reply, removed);
            }
            Some(Command::Verify { who, reply }) => {
                let _ = reply.send(self.verify(who.as_deref()));
            }
        }
    }

    /// Answers a change to the contacts; when it was made, the contacts are
    /// checked again at once (the view lists them).
    fn answer_change<T>(
        &mut self,
        reply: oneshot::Sender<Result<T, CommandError>>,
        result: Result<T, ContactError>,
    ) {
        let ok = result.is_ok();
        let _ = reply.send(result.map_err(CommandError::from));
        if ok {
            self.checked = None;
            let _ = self.once();
        }
    }

    /// `contact verify` on the node: the contact(s) named, checked at the
    /// tip (a round first, which checks everything at a new tip).
    fn verify(&mut self, who: Option<&str>) -> Result<Vec<VerifyReport>, CommandError> {
        let wanted = match who {
            Some(w) => vec![contacts::find(&self.store, &self.options.contacts, w)?.id],
            None => contact_book::all(&self.store, &self.options.contacts)
                .map_err(ContactError::from)?
                .into_iter()
                .map(|c| c.id)
                .collect(),
        };
        self.once().map_err(CommandError::Watch)?;
        wanted
            .iter()
            .map(|id| {
                self.reports.get(id).cloned().ok_or_else(|| {
                    CommandError::Watch(format!("{id} was removed while it was checked"))
                })
            })
            .collect()
    }

    /// One look at the chain source: sync the headers; at a new tip (or when
    /// the identities changed), check every identity and note what changed.
    fn once(&mut self) -> Result<(), String> {
        let seen_before = self.watcher.events().last().map(|e| e.seq).unwrap_or(0);
        let result = self.check();
        if let Err(why) = &result {
            warn!("watching: {why}");
            self.source = None;
            self.view.source.error = Some(why.clone());
            self.watcher.source_failed(why, unix_now());
        }
        self.view.last_check = Some(unix_now());
        self.view.events = self.watcher.events().cloned().collect();
        for e in self.view.events.iter().filter(|e| e.seq > seen_before) {
            // The log names no contact unless asked for debug output; the
            // events themselves are for the node's own clients (the API).
            if e.own || e.identity.is_none() {
                info!(seq = e.seq, "{}", e.message);
            } else {
                info!(
                    seq = e.seq,
                    "an event about a contact (`cairn node events`)"
                );
                debug!(seq = e.seq, "{}", e.message);
            }
        }
        result
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
        let key = &self.options.contacts;
        let contacts = contact_book::all(store, key).map_err(|e| e.to_string())?;
        let subjects: Vec<Subject> = own_id
            .iter()
            .map(|id| Subject {
                id: *id,
                name: None,
                own: true,
            })
            .chain(contacts.iter().map(|c| Subject {
                id: c.id,
                name: c.record.name.clone(),
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
        let mut reports = HashMap::with_capacity(contacts.len());
        for (s, c) in contact_subjects.iter().zip(&contacts) {
            let checked = check_contact(store, key, network, chain, source, c, confirmations)
                .map_err(|e| fail(s, e))?;
            self.watcher.observe(s, &checked, now);
            reports.insert(
                c.id,
                VerifyReport::new(c.id, &c.record, &checked, confirmations),
            );
        }
        self.reports = reports;
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
