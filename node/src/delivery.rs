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
//! One task owns the conversations and the mailbox; the API and the
//! network's helpers ask it over a bounded channel ([`Ask`]), and it runs
//! each store operation on the blocking pool. Network I/O (sending,
//! collecting) runs in tasks of its own that ask the owner for what they
//! need, so that a slow peer never holds the conversations.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_net::{MailRequest, MailResponse, MailStatus, NetError, Network, PeerId};
use cairn_wallet::IdentityId;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::{debug, info, warn};

use crate::chain::unix_now;
use crate::conversation::{
    ConversationError, Conversations, Message, MessageEvent, Outgoing, Received, Request, Sent,
};
use crate::mailbox::{digest, Deposit, Mailbox};

// The mail protocol bounds an envelope by itself (cairn-net does not depend
// on cairn-messaging): the two must agree.
const _: () = assert!(cairn_net::mail::MAX_ENVELOPE == cairn_messaging::payload::MAX_ENVELOPE);

/// How often messages due are looked for.
const TICK: Duration = Duration::from_secs(1);
/// How long a contact's node is looked for before its mailboxes are used.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);
/// Rounds of one collect (each takes up to a batch of envelopes).
const MAX_COLLECT_ROUNDS: usize = 64;
/// How often the mailbox forgets expired envelopes.
const SWEEP: Duration = Duration::from_secs(3600);
/// Mail requests from peers waiting for this node.
pub const MAIL_QUEUE: usize = 256;
/// Requests waiting for the task that owns the conversations.
const ASK_QUEUE: usize = 256;
/// Tasks sending envelopes at once.
const MAX_SENDING: usize = 32;
/// Bytes one peer may leave at this mailbox node per hour.
pub const DEPOSIT_PER_HOUR: u64 = 64 * 1024 * 1024;
/// Peers whose deposits are counted (beyond, new depositors wait).
const MAX_DEPOSITORS: usize = 4096;

/// Delivery failures, as the API reports them.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The conversation refused.
    #[error(transparent)]
    Conversation(#[from] ConversationError),
    /// The delivery task has stopped.
    #[error("the node is stopping")]
    Stopped,
}

/// What the owner of the conversations is asked.
enum Ask {
    Send {
        to: IdentityId,
        text: String,
        reply: oneshot::Sender<Result<u64, ConversationError>>,
    },
    History {
        with: Option<IdentityId>,
        limit: usize,
        reply: oneshot::Sender<Result<Vec<Message>, ConversationError>>,
    },
    Unread {
        mark: bool,
        reply: oneshot::Sender<Result<Vec<Message>, ConversationError>>,
    },
    Forget {
        id: IdentityId,
        reply: oneshot::Sender<Result<usize, ConversationError>>,
    },
    Requests {
        dismiss: Option<IdentityId>,
        reply: oneshot::Sender<Result<Vec<Request>, ConversationError>>,
    },
    MarkRead {
        marks: Vec<(IdentityId, Vec<u64>)>,
        reply: oneshot::Sender<Result<(), ConversationError>>,
    },
    Events {
        after: u64,
        reply: oneshot::Sender<Vec<MessageEvent>>,
    },
    Take {
        envelopes: Vec<Vec<u8>>,
        reply: oneshot::Sender<Vec<Received>>,
    },
    Sent {
        report: Vec<(IdentityId, Vec<u64>, Sent)>,
    },
    Addresses {
        epochs: u64,
        reply: oneshot::Sender<Vec<[u8; 32]>>,
    },
}

/// A handle on the owner of the conversations.
#[derive(Clone)]
struct Owner(mpsc::Sender<Ask>);

impl Owner {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Ask,
    ) -> Result<T, DeliveryError> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send(make(reply))
            .await
            .map_err(|_| DeliveryError::Stopped)?;
        answer.await.map_err(|_| DeliveryError::Stopped)
    }
}

/// The messaging side of a running node: what the API calls.
pub struct Messenger {
    owner: Owner,
    events: watch::Receiver<u64>,
}

impl Messenger {
    /// Queues `text` for `to` (durable when this returns) and sends it at
    /// once. Returns the message's number.
    pub async fn send(&self, to: IdentityId, text: String) -> Result<u64, DeliveryError> {
        Ok(self
            .owner
            .ask(|reply| Ask::Send { to, text, reply })
            .await??)
    }

    /// The conversation with `with` (every one if `None`): the newest
    /// `limit` messages.
    pub async fn history(
        &self,
        with: Option<IdentityId>,
        limit: usize,
    ) -> Result<Vec<Message>, DeliveryError> {
        Ok(self
            .owner
            .ask(|reply| Ask::History { with, limit, reply })
            .await??)
    }

    /// Received messages not yet read. With `mark`, they are marked read
    /// at once and read receipts go to their senders; without, nothing
    /// changes until [`Messenger::mark_read`].
    pub async fn unread(&self, mark: bool) -> Result<Vec<Message>, DeliveryError> {
        Ok(self
            .owner
            .ask(|reply| Ask::Unread { mark, reply })
            .await??)
    }

    /// Who wrote first without being a contact (after forgetting the
    /// request of `dismiss`, if given).
    pub async fn requests(
        &self,
        dismiss: Option<IdentityId>,
    ) -> Result<Vec<Request>, DeliveryError> {
        Ok(self
            .owner
            .ask(|reply| Ask::Requests { dismiss, reply })
            .await??)
    }

    /// Deletes the conversation with `id`; returns how many messages went.
    pub async fn forget(&self, id: IdentityId) -> Result<usize, DeliveryError> {
        Ok(self.owner.ask(|reply| Ask::Forget { id, reply }).await??)
    }

    /// Marks read the messages named (per contact, by number), and sends
    /// the read receipts.
    pub async fn mark_read(&self, marks: Vec<(IdentityId, Vec<u64>)>) -> Result<(), DeliveryError> {
        Ok(self
            .owner
            .ask(|reply| Ask::MarkRead { marks, reply })
            .await??)
    }

    /// Events after `after`; waits up to `wait` for one if there is none.
    pub async fn events(
        &self,
        after: u64,
        wait: Duration,
    ) -> Result<Vec<MessageEvent>, DeliveryError> {
        let mut rx = self.events.clone();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            rx.borrow_and_update();
            let found = self.owner.ask(|reply| Ask::Events { after, reply }).await?;
            if !found.is_empty() {
                return Ok(found);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Ok(Vec::new());
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

/// Runs `f` on the blocking pool with the value `slot` holds, and puts it
/// back: the task that owns it lends it to one store operation at a time.
async fn lend<V: Send + 'static, T: Send + 'static>(
    slot: &mut Option<V>,
    f: impl FnOnce(&mut V) -> T + Send + 'static,
) -> Option<T> {
    let mut v = slot.take()?;
    match tokio::task::spawn_blocking(move || {
        let r = f(&mut v);
        (v, r)
    })
    .await
    {
        Ok((v, r)) => {
            *slot = Some(v);
            Some(r)
        }
        Err(e) => {
            // A panic in a store operation: the state it held is gone; the
            // node goes on without it and says so.
            warn!("a store operation failed: {e}");
            None
        }
    }
}

/// What the owning task holds.
struct State {
    convs: Option<Conversations>,
    mailbox: Option<Mailbox>,
    net: Arc<Network>,
    owner: Owner,
    events: watch::Sender<u64>,
    sending: Arc<Semaphore>,
    /// Bytes each peer left at this mailbox in the current hour.
    deposits: HashMap<PeerId, (u64, std::time::Instant)>,
}

/// Starts delivery: the task that owns the conversations (with an
/// identity) and the mailbox (on a full node), sends what is due, collects
/// from the own mailboxes and answers peers' mail requests (`mail`). Ends
/// when `stop` turns true.
pub fn start(
    net: Arc<Network>,
    convs: Option<Conversations>,
    own_mailboxes: Vec<PeerId>,
    mailbox: Option<Mailbox>,
    collect: Duration,
    mut mail: mpsc::Receiver<MailIn>,
    mut stop: watch::Receiver<bool>,
) -> (Option<Arc<Messenger>>, tokio::task::JoinHandle<()>) {
    let (ask_tx, mut asks) = mpsc::channel(ASK_QUEUE);
    let owner = Owner(ask_tx);
    let (events, events_rx) = watch::channel(0);
    let messenger = convs.as_ref().map(|_| {
        Arc::new(Messenger {
            owner: owner.clone(),
            events: events_rx,
        })
    });
    let has_identity = convs.is_some();
    let mut st = State {
        convs,
        mailbox,
        net,
        owner,
        events,
        sending: Arc::new(Semaphore::new(MAX_SENDING)),
        deposits: HashMap::new(),
    };
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        let mut collect_tick = tokio::time::interval(collect);
        let mut sweep = tokio::time::interval(SWEEP);
        // When a collect last went through (0: not since the start; every
        // epoch kept is asked for until one does), and whether one runs now.
        let last_ok = Arc::new(AtomicU64::new(0));
        let collecting = Arc::new(AtomicBool::new(false));
        loop {
            tokio::select! {
                _ = tick.tick() => st.due().await,
                _ = collect_tick.tick() => {
                    if has_identity && !own_mailboxes.is_empty() && !collecting.swap(true, Ordering::AcqRel) {
                        // Everything kept while the node was away first,
                        // then the recent epochs.
                        let now = unix_now();
                        let since = last_ok.load(Ordering::Acquire);
                        let epochs = if since == 0 {
                            u64::MAX
                        } else {
                            now.saturating_sub(since) / cairn_messaging::mailbox::EPOCH_SECS + 1
                        };
                        let (net, owner, boxes) = (st.net.clone(), st.owner.clone(), own_mailboxes.clone());
                        let (last_ok, collecting) = (last_ok.clone(), collecting.clone());
                        tokio::spawn(async move {
                            if collect_all(net, owner, boxes, epochs).await {
                                last_ok.store(now, Ordering::Release);
                            }
                            collecting.store(false, Ordering::Release);
                        });
                    }
                }
                _ = sweep.tick() => {
                    // A page at a time, so that requests are served between.
                    let (mut from, mut forgotten) = (Vec::new(), 0);
                    loop {
                        let start = std::mem::take(&mut from);
                        match lend(&mut st.mailbox, move |m| m.sweep_page(&start, unix_now())).await {
                            Some(Ok((n, next))) => {
                                forgotten += n;
                                match next {
                                    Some(k) => from = k,
                                    None => break,
                                }
                            }
                            Some(Err(e)) => {
                                warn!("mailbox sweep failed: {e}");
                                break;
                            }
                            None => break,
                        }
                    }
                    if forgotten > 0 {
                        info!(forgotten, "expired envelopes forgotten");
                    }
                    // The records that recognise copies, once no copy can come.
                    loop {
                        match lend(&mut st.convs, |c| c.forget_kept(unix_now())).await {
                            Some(Ok(n)) if n == crate::conversation::FORGET_PAGE => {}
                            Some(Err(e)) => {
                                warn!("cannot forget old records: {e}");
                                break;
                            }
                            _ => break,
                        }
                    }
                }
                ask = asks.recv() => match ask {
                    Some(a) => st.ask(a).await,
                    None => break,
                },
                request = mail.recv() => match request {
                    Some(r) => st.mail(r).await,
                    None => break,
                },
                _ = stop.changed() => break,
            }
        }
    });
    (messenger, task)
}

impl State {
    fn changed(&self) {
        self.events.send_modify(|n| *n += 1);
    }

    /// Sends `out` from a task of its own; at most [`MAX_SENDING`] such
    /// tasks run at once (beyond, `out` is dropped: texts are tried again
    /// by `due`, receipts are sent again when their text comes again).
    fn transmit(&self, out: Vec<Outgoing>) {
        if out.is_empty() {
            return;
        }
        match self.sending.clone().try_acquire_owned() {
            Ok(permit) => {
                let (net, owner) = (self.net.clone(), self.owner.clone());
                tokio::spawn(async move {
                    transmit(net, owner, out).await;
                    drop(permit);
                });
            }
            Err(_) => debug!(
                "{} envelopes not sent now: too many sends at once",
                out.len()
            ),
        }
    }

    /// Sends what is due.
    async fn due(&mut self) {
        match lend(&mut self.convs, |c| c.due(unix_now())).await {
            Some(Ok(out)) => {
                if !out.is_empty() {
                    self.changed();
                }
                self.transmit(out);
            }
            Some(Err(e)) => {
                warn!("cannot prepare messages: {e}");
                self.reload().await;
            }
            None => {}
        }
    }

    /// After a failed store write: the conversations again from the store.
    async fn reload(&mut self) {
        if let Some(Err(e)) = lend(&mut self.convs, |c| c.reload()).await {
            warn!("cannot read the conversations again: {e}");
        }
    }

    /// Takes envelopes (delivered or collected): what became of each; sends
    /// what they call for (answers, receipts).
    async fn take(&mut self, envelopes: Vec<Vec<u8>>) -> Vec<Received> {
        let n = envelopes.len();
        match lend(&mut self.convs, move |c| c.receive(&envelopes, unix_now())).await {
            Some(Ok((answers, out))) => {
                self.changed();
                self.transmit(out);
                answers
            }
            Some(Err(e)) => {
                warn!("cannot take envelopes: {e}");
                self.reload().await;
                // Not stored: the sender or the mailbox offers them again.
                vec![Received::Unknown; n]
            }
            None => vec![Received::Unknown; n],
        }
    }

    async fn ask(&mut self, ask: Ask) {
        let gone = || ConversationError::Damaged("the conversations are unavailable".into());
        match ask {
            Ask::Send { to, text, reply } => {
                let r = lend(&mut self.convs, move |c| c.send(&to, &text, unix_now())).await;
                let _ = reply.send(r.unwrap_or_else(|| Err(gone())));
                self.changed();
                // At once, not at the next tick.
                self.due().await;
            }
            Ask::History { with, limit, reply } => {
                let r = lend(&mut self.convs, move |c| c.history(with.as_ref(), limit)).await;
                let _ = reply.send(r.unwrap_or_else(|| Err(gone())));
            }
            Ask::Unread { mark: false, reply } => {
                let r = lend(&mut self.convs, |c| c.unread()).await;
                let _ = reply.send(r.unwrap_or_else(|| Err(gone())));
            }
            Ask::Unread { mark: true, reply } => {
                let r = lend(&mut self.convs, |c| c.take_unread(unix_now())).await;
                let r = r.unwrap_or_else(|| Err(gone())).map(|(unread, out)| {
                    self.transmit(out);
                    unread
                });
                if r.is_err() {
                    self.reload().await;
                }
                let _ = reply.send(r);
            }
            Ask::Requests { dismiss, reply } => {
                let r = lend(&mut self.convs, move |c| {
                    if let Some(id) = dismiss {
                        c.dismiss(&id)?;
                    }
                    c.requests()
                })
                .await;
                let _ = reply.send(r.unwrap_or_else(|| Err(gone())));
            }
            Ask::Forget { id, reply } => {
                let r = lend(&mut self.convs, move |c| c.forget(&id)).await;
                let r = r.unwrap_or_else(|| Err(gone()));
                if r.is_err() {
                    self.reload().await;
                }
                let _ = reply.send(r);
            }
            Ask::MarkRead { marks, reply } => {
                let r = lend(&mut self.convs, move |c| c.mark_read(&marks, unix_now())).await;
                let r = r
                    .unwrap_or_else(|| Err(gone()))
                    .map(|out| self.transmit(out));
                if r.is_err() {
                    self.reload().await;
                }
                let _ = reply.send(r);
            }
            Ask::Events { after, reply } => {
                let found = self
                    .convs
                    .as_ref()
                    .map(|c| c.events_after(after, 256))
                    .unwrap_or_default();
                let _ = reply.send(found);
            }
            Ask::Take { envelopes, reply } => {
                let r = self.take(envelopes).await;
                let _ = reply.send(r);
            }
            Ask::Sent { report } => {
                let r = lend(&mut self.convs, move |c| {
                    for (id, seqs, how) in report {
                        c.sent(&id, &seqs, how)?;
                    }
                    Ok::<(), ConversationError>(())
                })
                .await;
                if let Some(Err(e)) = r {
                    warn!("cannot record a delivery: {e}");
                    self.reload().await;
                }
                self.changed();
            }
            Ask::Addresses { epochs, reply } => {
                let r = lend(&mut self.convs, move |c| {
                    c.collect_addresses(unix_now(), epochs)
                })
                .await
                .unwrap_or_default();
                let _ = reply.send(r);
            }
        }
    }

    /// Whether `peer` may leave `bytes` more this hour
    /// ([`DEPOSIT_PER_HOUR`]; at most [`MAX_DEPOSITORS`] peers tracked).
    fn deposit_allowed(&mut self, peer: PeerId, bytes: u64) -> bool {
        let now = std::time::Instant::now();
        let hour = Duration::from_secs(3600);
        if self.deposits.len() >= MAX_DEPOSITORS && !self.deposits.contains_key(&peer) {
            self.deposits
                .retain(|_, (_, since)| now.duration_since(*since) < hour);
            if self.deposits.len() >= MAX_DEPOSITORS {
                return false;
            }
        }
        let (used, since) = self.deposits.entry(peer).or_insert((0, now));
        if now.duration_since(*since) >= hour {
            *used = 0;
            *since = now;
        }
        if *used + bytes > DEPOSIT_PER_HOUR {
            return false;
        }
        *used += bytes;
        true
    }

    /// Answers a peer's mail request.
    async fn mail(&mut self, r: MailIn) {
        let now = unix_now();
        let response = match r.request {
            MailRequest::Deliver(envs) => {
                if self.convs.is_some() {
                    MailResponse::Status(
                        self.take(envs)
                            .await
                            .into_iter()
                            .map(|a| match a {
                                Received::Taken => MailStatus::Accepted,
                                Received::Unknown => MailStatus::Unknown,
                                Received::Refused => MailStatus::Invalid,
                            })
                            .collect(),
                    )
                } else {
                    MailResponse::Status(vec![MailStatus::NotServed; envs.len()])
                }
            }
            MailRequest::Deposit(envs) => {
                let n = envs.len();
                let bytes: u64 = envs.iter().map(|e| e.len() as u64).sum();
                if self.mailbox.is_none() {
                    MailResponse::Status(vec![MailStatus::NotServed; n])
                } else if !self.deposit_allowed(r.from, bytes) {
                    debug!(from = %r.from, "deposits over the hourly budget");
                    MailResponse::Status(vec![MailStatus::Full; n])
                } else {
                    match lend(&mut self.mailbox, move |m| m.deposit(&envs, now)).await {
                        Some(Ok(d)) => MailResponse::Status(
                            d.into_iter()
                                .map(|d| match d {
                                    Deposit::Kept => MailStatus::Accepted,
                                    Deposit::Invalid => MailStatus::Invalid,
                                    Deposit::Full => MailStatus::Full,
                                })
                                .collect(),
                        ),
                        _ => MailResponse::busy(n),
                    }
                }
            }
            MailRequest::Collect(addresses) => MailResponse::Envelopes(
                lend(&mut self.mailbox, move |m| m.collect(&addresses, now))
                    .await
                    .and_then(|r| r.ok())
                    .unwrap_or_default(),
            ),
            MailRequest::Remove(entries) => {
                let n = entries.len();
                let status = if self.mailbox.is_none() {
                    MailStatus::NotServed
                } else {
                    match lend(&mut self.mailbox, move |m| m.remove(&entries)).await {
                        Some(Ok(())) => MailStatus::Accepted,
                        _ => MailStatus::Busy,
                    }
                };
                MailResponse::Status(vec![status; n])
            }
        };
        let (net, id, from) = (self.net.clone(), r.id, r.from);
        // The answer goes out from its own task: the network's command queue
        // may be full, and this task must not wait on it.
        tokio::spawn(async move {
            if let Err(e) = net.respond(id, &response).await {
                debug!(%from, "mail answer not sent: {e}");
            }
        });
    }
}

/// Whether `peer` is connected, or was found and dialled, within
/// [`REACH_TIMEOUT`].
async fn reached(net: &Network, peer: PeerId) -> bool {
    matches!(
        tokio::time::timeout(REACH_TIMEOUT, net.reach(peer)).await,
        Ok(Ok(()))
    )
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
            b.len() < cairn_net::mail::MAX_BATCH
                && bytes + e.1.len() <= crate::mailbox::MAX_COLLECT_BYTES
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
    if !reached(net, to).await {
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
async fn transmit(net: Arc<Network>, owner: Owner, out: Vec<Outgoing>) {
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
    if !report.is_empty() {
        let _ = owner.0.send(Ask::Sent { report }).await;
    }
}

/// Collects from every own mailbox node what waits under this node's
/// addresses, takes it and removes it there. Returns whether every collect
/// asked of at least one mailbox node went through.
async fn collect_all(net: Arc<Network>, owner: Owner, mailboxes: Vec<PeerId>, epochs: u64) -> bool {
    let Ok(addresses) = owner.ask(|reply| Ask::Addresses { epochs, reply }).await else {
        return false;
    };
    let mut through = false;
    for m in mailboxes {
        if !reached(&net, m).await {
            debug!(mailbox = %m, "mailbox node not reached");
            continue;
        }
        let mut all = true;
        for chunk in addresses.chunks(cairn_net::mail::MAX_BATCH) {
            for _ in 0..MAX_COLLECT_ROUNDS {
                let envs = match net.mail(m, &MailRequest::Collect(chunk.to_vec())).await {
                    Ok(MailResponse::Envelopes(e)) => e,
                    Ok(_) | Err(_) => {
                        all = false;
                        break;
                    }
                };
                if envs.is_empty() {
                    break;
                }
                let Ok(answers) = owner
                    .ask(|reply| Ask::Take {
                        envelopes: envs.clone(),
                        reply,
                    })
                    .await
                else {
                    return false;
                };
                // What was taken (or refused for good) is removed there.
                let done: Vec<([u8; 32], [u8; 32])> = envs
                    .iter()
                    .zip(&answers)
                    .filter(|(_, a)| **a != Received::Unknown)
                    .filter_map(|(e, _)| Some((e.get(..32)?.try_into().ok()?, digest(e))))
                    .collect();
                for part in done.chunks(cairn_net::mail::MAX_BATCH) {
                    let _ = net.mail(m, &MailRequest::Remove(part.to_vec())).await;
                }
                // Another round while this one took something: a response
                // holds at most a batch, or a megabyte.
                if done.is_empty() {
                    break;
                }
            }
        }
        through |= all;
    }
    through
}
