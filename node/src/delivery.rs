//! Delivery (feature `network`): moves the envelopes of
//! [`crate::conversation`] over the network, and serves the mail protocol.
//!
//! - Each envelope goes to the contact's node directly when it said where
//!   it is (inside an earlier message); otherwise, or when that fails, it is
//!   left at every one of the contact's mailbox nodes (named in their log),
//!   so that one mailbox node lost loses nothing.
//! - Messages are tried again with a doubling wait until the contact's
//!   receipt arrives ([`Conversations::due`]).
//! - The node looks at its own mailbox nodes every `collect` interval (and
//!   at start, for everything kept while it was away), takes what is there
//!   and removes what it took.
//! - A full node keeps envelopes for others ([`Mailbox`]).
//!
//! Store work runs on the blocking pool; conversations are behind one
//! mutex, so that each change is whole.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_net::{MailRequest, MailResponse, MailStatus, NetError, Network, PeerId};
use cairn_wallet::IdentityId;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn};

use crate::chain::unix_now;
use crate::conversation::{
    ConversationError, Conversations, Message, MessageEvent, Outgoing, Received, Sent,
};
use crate::mailbox::{digest, Deposit, Mailbox};

/// How often messages due are looked for.
const TICK: Duration = Duration::from_secs(1);
/// How long a contact's node is looked for before its mailboxes are used.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);
/// Rounds of one collect (each takes up to a batch of envelopes).
const MAX_COLLECT_ROUNDS: usize = 64;
/// How often the mailbox forgets expired envelopes.
const SWEEP: Duration = Duration::from_secs(3600);
/// Bytes of envelopes per mail request (within `cairn_net::mail::MAX_MAIL`).
const MAX_REQUEST_BYTES: usize = 1024 * 1024 - 64 * 4;
/// Mail requests from peers waiting for this node.
pub const MAIL_QUEUE: usize = 256;

/// Delivery failures, as the API reports them.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The conversation refused.
    #[error(transparent)]
    Conversation(#[from] ConversationError),
    /// The node has no identity: it cannot send or receive messages.
    #[error("this node has no identity: messages need one (`cairn init` or `cairn restore`)")]
    NoIdentity,
    /// A task failed.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The messaging side of a running node: what the API calls.
pub struct Messenger {
    convs: Arc<Mutex<Conversations>>,
    nudge: Arc<Notify>,
    events: watch::Sender<u64>,
    net: Arc<Network>,
}

impl Messenger {
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conversations) -> Result<T, ConversationError> + Send + 'static,
    ) -> Result<T, DeliveryError> {
        let convs = self.convs.clone();
        let r = tokio::task::spawn_blocking(move || {
            let mut c = convs
                .lock()
                .map_err(|_| DeliveryError::Internal("conversations poisoned".into()))?;
            f(&mut c).map_err(DeliveryError::from)
        })
        .await
        .map_err(|e| DeliveryError::Internal(e.to_string()))?;
        self.events.send_replace(self.last_event());
        r
    }

    fn last_event(&self) -> u64 {
        self.convs.lock().map(|c| c.last_event()).unwrap_or(0)
    }

    /// Queues `text` for `to` (durable when this returns) and sends it at
    /// once. Returns the message's number.
    pub async fn send(&self, to: IdentityId, text: String) -> Result<u64, DeliveryError> {
        let seq = self.with(move |c| c.send(&to, &text, unix_now())).await?;
        self.nudge.notify_one();
        Ok(seq)
    }

    /// The conversation with `with` (every one if `None`): the newest
    /// `limit` messages.
    pub async fn history(
        &self,
        with: Option<IdentityId>,
        limit: usize,
    ) -> Result<Vec<Message>, DeliveryError> {
        self.with(move |c| c.history(with.as_ref(), limit)).await
    }

    /// Received messages not yet read; they are marked read and read
    /// receipts go to their senders.
    pub async fn take_unread(&self) -> Result<Vec<Message>, DeliveryError> {
        let (unread, out) = self.with(|c| c.take_unread(unix_now())).await?;
        tokio::spawn(transmit(self.net.clone(), self.convs.clone(), out));
        Ok(unread)
    }

    /// Events after `after`; waits up to `wait` for one if there is none.
    pub async fn events(&self, after: u64, wait: Duration) -> Vec<MessageEvent> {
        let mut rx = self.events.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let found = self
                .convs
                .lock()
                .map(|c| c.events_after(after, 256))
                .unwrap_or_default();
            if !found.is_empty() {
                return found;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Vec::new();
            }
        }
    }
}

/// A peer's mail request, to be answered with `net.respond(id, …)`.
pub struct MailIn {
    /// The network's id of the request.
    pub id: u64,
    /// Who asks.
    pub from: PeerId,
    /// What.
    pub request: MailRequest,
}

/// Starts delivery: the messenger (with an identity) and the loop that
/// sends what is due, collects from the own mailboxes and answers peers'
/// mail requests (`mail`). Ends when `stop` turns true.
pub fn start(
    net: Arc<Network>,
    convs: Option<Conversations>,
    own_mailboxes: Vec<PeerId>,
    mailbox: Option<Mailbox>,
    collect: Duration,
    mut mail: mpsc::Receiver<MailIn>,
    mut stop: watch::Receiver<bool>,
) -> (Option<Arc<Messenger>>, tokio::task::JoinHandle<()>) {
    let convs = convs.map(|c| Arc::new(Mutex::new(c)));
    let mailbox = mailbox.map(|m| Arc::new(Mutex::new(m)));
    let nudge = Arc::new(Notify::new());
    let (events, _) = watch::channel(0);
    let messenger = convs.as_ref().map(|c| {
        Arc::new(Messenger {
            convs: c.clone(),
            nudge: nudge.clone(),
            events: events.clone(),
            net: net.clone(),
        })
    });
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        let mut collect_tick = tokio::time::interval(collect);
        let mut sweep = tokio::time::interval(SWEEP);
        let mut first_collect = true;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Some(c) = &convs { due(&net, c, &events).await; }
                }
                _ = nudge.notified() => {
                    if let Some(c) = &convs { due(&net, c, &events).await; }
                }
                _ = collect_tick.tick() => {
                    if let Some(c) = &convs {
                        if !own_mailboxes.is_empty() {
                            // Everything kept while the node was away first,
                            // then the recent epochs.
                            let epochs = if first_collect { u64::MAX } else { 1 };
                            first_collect = false;
                            tokio::spawn(collect_all(net.clone(), c.clone(), own_mailboxes.clone(), epochs, events.clone()));
                        }
                    }
                }
                _ = sweep.tick() => {
                    if let Some(m) = mailbox.clone() {
                        let _ = tokio::task::spawn_blocking(move || {
                            if let Ok(mut m) = m.lock() {
                                match m.sweep(unix_now()) {
                                    Ok(n) if n > 0 => info!(forgotten = n, "expired envelopes forgotten"),
                                    Ok(_) => {}
                                    Err(e) => warn!("mailbox sweep failed: {e}"),
                                }
                            }
                        }).await;
                    }
                }
                request = mail.recv() => match request {
                    Some(r) => {
                        tokio::spawn(answer(net.clone(), convs.clone(), mailbox.clone(), r, events.clone()));
                    }
                    None => break,
                },
                _ = stop.changed() => break,
            }
        }
    });
    (messenger, task)
}

/// Sends what is due.
async fn due(net: &Arc<Network>, convs: &Arc<Mutex<Conversations>>, events: &watch::Sender<u64>) {
    let c = convs.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut c = c.lock().map_err(|_| "poisoned".to_string())?;
        c.due(unix_now()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match out {
        Ok(out) if !out.is_empty() => {
            events.send_modify(|n| *n += 1);
            tokio::spawn(transmit(net.clone(), convs.clone(), out));
        }
        Ok(_) => {}
        Err(e) => warn!("cannot prepare messages: {e}"),
    }
}

fn peer(bytes: &[u8]) -> Option<PeerId> {
    PeerId::from_bytes(bytes).ok()
}

/// Splits envelopes into requests within the mail protocol's bounds.
fn batches(envelopes: Vec<(usize, Vec<u8>)>) -> Vec<Vec<(usize, Vec<u8>)>> {
    let mut out: Vec<Vec<(usize, Vec<u8>)>> = Vec::new();
    let mut bytes = 0;
    for e in envelopes {
        let fits = out.last().is_some_and(|b| {
            b.len() < cairn_net::mail::MAX_BATCH && bytes + e.1.len() <= MAX_REQUEST_BYTES
        });
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += e.1.len();
        out.last_mut().expect("pushed").push(e);
    }
    out
}

/// Sends `envelopes` (indexed) to `to` as `make` requests; returns the
/// indexes `to` accepted.
async fn send_to(
    net: &Network,
    to: PeerId,
    envelopes: Vec<(usize, Vec<u8>)>,
    make: fn(Vec<Vec<u8>>) -> MailRequest,
) -> Vec<usize> {
    if tokio::time::timeout(REACH_TIMEOUT, net.reach(to))
        .await
        .map_err(|_| ())
        .and_then(|r| r.map_err(|_| ()))
        .is_err()
    {
        debug!(%to, "peer not reached");
        return Vec::new();
    }
    let mut taken = Vec::new();
    for batch in batches(envelopes) {
        let (idx, envs): (Vec<usize>, Vec<Vec<u8>>) = batch.into_iter().unzip();
        match net.mail(to, &make(envs)).await {
            Ok(MailResponse::Status(s)) => {
                for (i, st) in idx.iter().zip(s) {
                    if st == MailStatus::Accepted {
                        taken.push(*i);
                    }
                }
            }
            Ok(other) => debug!(%to, "unexpected mail answer {other:?}"),
            Err(e) => {
                debug!(%to, "mail not taken: {e}");
                if matches!(e, NetError::Stopped) {
                    break;
                }
            }
        }
    }
    taken
}

/// Sends envelopes: directly where the contact's node is known, to the
/// contact's mailboxes otherwise or when that fails; then records what
/// became of the messages they carry.
async fn transmit(net: Arc<Network>, convs: Arc<Mutex<Conversations>>, out: Vec<Outgoing>) {
    let mut how = vec![Sent::No; out.len()];
    let mut direct: HashMap<PeerId, Vec<(usize, Vec<u8>)>> = HashMap::new();
    let mut order: Vec<PeerId> = Vec::new();
    for (i, o) in out.iter().enumerate() {
        if let Some(p) = o.direct.as_deref().and_then(peer) {
            if !direct.contains_key(&p) {
                order.push(p);
            }
            direct.entry(p).or_default().push((i, o.envelope.clone()));
        }
    }
    for p in order {
        let envs = direct.remove(&p).unwrap_or_default();
        for i in send_to(&net, p, envs, MailRequest::Deliver).await {
            how[i] = Sent::Direct;
        }
    }
    let mut deposit: HashMap<PeerId, Vec<(usize, Vec<u8>)>> = HashMap::new();
    let mut order: Vec<PeerId> = Vec::new();
    for (i, o) in out.iter().enumerate() {
        if how[i] == Sent::Direct {
            continue;
        }
        for m in o.mailboxes.iter().filter_map(|m| peer(m)) {
            if !deposit.contains_key(&m) {
                order.push(m);
            }
            deposit.entry(m).or_default().push((i, o.envelope.clone()));
        }
    }
    for m in order {
        let envs = deposit.remove(&m).unwrap_or_default();
        for i in send_to(&net, m, envs, MailRequest::Deposit).await {
            how[i] = Sent::Stored;
        }
    }
    let report: Vec<(IdentityId, Vec<u64>, Sent)> = out
        .iter()
        .zip(&how)
        .filter(|(o, _)| !o.seqs.is_empty())
        .map(|(o, h)| (o.contact, o.seqs.clone(), *h))
        .collect();
    if report.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || {
        if let Ok(mut c) = convs.lock() {
            for (id, seqs, h) in report {
                if let Err(e) = c.sent(&id, &seqs, h) {
                    warn!("cannot record a delivery: {e}");
                }
            }
        }
    })
    .await;
}

/// Takes envelopes (delivered or collected): what became of each, and
/// sends what they call for (answers, receipts).
async fn take(
    net: &Arc<Network>,
    convs: &Arc<Mutex<Conversations>>,
    envelopes: Vec<Vec<u8>>,
    events: &watch::Sender<u64>,
) -> Vec<Received> {
    let n = envelopes.len();
    let c = convs.clone();
    let r = tokio::task::spawn_blocking(move || {
        let mut c = c.lock().map_err(|_| "poisoned".to_string())?;
        c.receive(&envelopes, unix_now()).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match r {
        Ok((answers, out)) => {
            events.send_modify(|n| *n += 1);
            if !out.is_empty() {
                tokio::spawn(transmit(net.clone(), convs.clone(), out));
            }
            answers
        }
        Err(e) => {
            warn!("cannot take envelopes: {e}");
            // Not stored: the sender or the mailbox will offer them again.
            vec![Received::Unknown; n]
        }
    }
}

/// Collects from every own mailbox node what waits under this node's
/// addresses, takes it and removes it there.
async fn collect_all(
    net: Arc<Network>,
    convs: Arc<Mutex<Conversations>>,
    mailboxes: Vec<PeerId>,
    epochs: u64,
    events: watch::Sender<u64>,
) {
    let c = convs.clone();
    let Ok(Ok(addresses)) = tokio::task::spawn_blocking(move || {
        c.lock()
            .map(|mut c| c.collect_addresses(unix_now(), epochs))
            .map_err(|_| ())
    })
    .await
    else {
        return;
    };
    for m in mailboxes {
        if tokio::time::timeout(REACH_TIMEOUT, net.reach(m))
            .await
            .map_err(|_| ())
            .and_then(|r| r.map_err(|_| ()))
            .is_err()
        {
            debug!(mailbox = %m, "mailbox node not reached");
            continue;
        }
        for chunk in addresses.chunks(cairn_net::mail::MAX_BATCH) {
            for _ in 0..MAX_COLLECT_ROUNDS {
                let envs = match net.mail(m, &MailRequest::Collect(chunk.to_vec())).await {
                    Ok(MailResponse::Envelopes(e)) => e,
                    Ok(_) | Err(_) => break,
                };
                if envs.is_empty() {
                    break;
                }
                let full = envs.len() >= cairn_net::mail::MAX_BATCH;
                let answers = take(&net, &convs, envs.clone(), &events).await;
                let done: Vec<([u8; 32], [u8; 32])> = envs
                    .iter()
                    .zip(&answers)
                    .filter(|(_, a)| **a != Received::Unknown)
                    .filter_map(|(e, _)| Some((e.get(..32)?.try_into().ok()?, digest(e))))
                    .collect();
                let removed = done.len();
                if !done.is_empty() {
                    for part in done.chunks(cairn_net::mail::MAX_BATCH) {
                        let _ = net.mail(m, &MailRequest::Remove(part.to_vec())).await;
                    }
                }
                if !full || removed == 0 {
                    break;
                }
            }
        }
    }
}

/// Answers a peer's mail request.
async fn answer(
    net: Arc<Network>,
    convs: Option<Arc<Mutex<Conversations>>>,
    mailbox: Option<Arc<Mutex<Mailbox>>>,
    r: MailIn,
    events: watch::Sender<u64>,
) {
    let now = unix_now();
    let response = match r.request {
        MailRequest::Deliver(envs) => match &convs {
            Some(c) => MailResponse::Status(
                take(&net, c, envs, &events)
                    .await
                    .into_iter()
                    .map(|a| match a {
                        Received::Taken => MailStatus::Accepted,
                        Received::Unknown => MailStatus::Unknown,
                        Received::Refused => MailStatus::Invalid,
                    })
                    .collect(),
            ),
            None => MailResponse::Status(vec![MailStatus::NotServed; envs.len()]),
        },
        MailRequest::Deposit(envs) => {
            let n = envs.len();
            match mailbox {
                Some(m) => {
                    let r = tokio::task::spawn_blocking(move || {
                        m.lock()
                            .map_err(|_| "poisoned".to_string())
                            .and_then(|mut m| m.deposit(&envs, now).map_err(|e| e.to_string()))
                    })
                    .await;
                    match r {
                        Ok(Ok(d)) => MailResponse::Status(
                            d.into_iter()
                                .map(|d| match d {
                                    Deposit::Kept => MailStatus::Accepted,
                                    Deposit::Invalid => MailStatus::Invalid,
                                    Deposit::Full => MailStatus::Full,
                                })
                                .collect(),
                        ),
                        _ => MailResponse::Status(vec![MailStatus::Busy; n]),
                    }
                }
                None => MailResponse::Status(vec![MailStatus::NotServed; n]),
            }
        }
        MailRequest::Collect(addresses) => match mailbox {
            Some(m) => {
                let r = tokio::task::spawn_blocking(move || {
                    m.lock()
                        .map_err(|_| ())
                        .and_then(|m| m.collect(&addresses, now).map_err(|_| ()))
                })
                .await;
                MailResponse::Envelopes(r.ok().and_then(|r| r.ok()).unwrap_or_default())
            }
            None => MailResponse::Envelopes(Vec::new()),
        },
        MailRequest::Remove(entries) => {
            let n = entries.len();
            match mailbox {
                Some(m) => {
                    let ok = tokio::task::spawn_blocking(move || {
                        m.lock()
                            .map_err(|_| ())
                            .and_then(|mut m| m.remove(&entries).map_err(|_| ()))
                    })
                    .await
                    .is_ok_and(|r| r.is_ok());
                    let s = if ok {
                        MailStatus::Accepted
                    } else {
                        MailStatus::Busy
                    };
                    MailResponse::Status(vec![s; n])
                }
                None => MailResponse::Status(vec![MailStatus::NotServed; n]),
            }
        }
    };
    if let Err(e) = net.respond(r.id, &response).await {
        debug!(from = %r.from, "mail answer not sent: {e}");
    }
}
