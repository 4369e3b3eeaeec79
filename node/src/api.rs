//! The node's local API: newline-delimited JSON over TCP on a loopback
//! address, authenticated by a token that only the data directory's owner
//! can read. `docs/api.md` documents every request and response.
//!
//! The server runs inside `cairn node`; [`ApiClient`] is what the `cairn`
//! command line uses to reach it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_chain_anchor::{Bundle, ChainNetwork};
use cairn_wallet::IdentityId;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::{debug, warn};

use crate::contacts::{self, ContactError};
use crate::daemon::{Command, CommandError, Snapshot};
use crate::datadir::write_atomic;
use crate::store::Store;

/// File in the data directory that tells clients where the API listens and
/// holds its token (owner-only, removed when the node stops).
pub const API_FILE: &str = "node.api";
/// Longest request line, bytes.
pub const MAX_LINE: usize = 256 * 1024;
/// Longest response line, bytes (a long conversation; a larger answer is
/// refused with `too_large`).
pub const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// Most API connections open at once.
pub const MAX_CONNECTIONS: usize = 16;
/// An idle API connection is closed after this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A new connection must send its first (authenticated) request within this
/// long, and every answer must be taken within it.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for an answer.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait of an `events` request for new events, seconds.
pub const MAX_EVENTS_WAIT_SECS: u64 = 60;

/// What [`API_FILE`] holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiInfo {
    /// Where the API listens.
    pub address: SocketAddr,
    /// The token every request carries.
    pub token: String,
    /// The node's process id.
    pub pid: u32,
}

/// API errors, on both sides.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No node runs on this data directory.
    #[error("no cairn node is running on {0}: start one with `cairn node`")]
    NotRunning(String),
    /// The API address is not a loopback address.
    #[error("the API listens on loopback addresses only, not {0}")]
    NotLoopback(SocketAddr),
    /// Socket or file trouble.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The node answered with an error.
    #[error("{message}")]
    Remote {
        /// Machine-readable code (see `docs/api.md`).
        code: String,
        /// What went wrong.
        message: String,
    },
    /// The node's answer is not valid.
    #[error("the node's answer is not valid: {0}")]
    BadAnswer(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ApiError {
    let what = what.into();
    move |source| ApiError::Io { what, source }
}

/// What API requests act on.
pub struct ApiContext {
    /// The store (shared with the watcher; RocksDB is thread-safe).
    pub store: Arc<Store>,
    /// The Bitcoin network the node follows.
    pub network: ChainNetwork,
    /// The node's own identity, if it has one.
    pub identity: Option<IdentityId>,
    /// How the contact book opens.
    pub contacts: crate::contact_book::ContactKey,
    /// What the watcher saw last.
    pub view: watch::Receiver<Arc<Snapshot>>,
    /// Set to true to stop the node.
    pub stop: watch::Sender<bool>,
    /// Commands for the watcher, which owns the identities' state.
    pub commands: mpsc::Sender<Command>,
    /// The network, when the node runs one.
    #[cfg(feature = "network")]
    pub net: Option<Arc<cairn_net::Network>>,
    /// Messages, when the node runs the network with an identity.
    #[cfg(feature = "network")]
    pub messenger: Option<Arc<crate::delivery::Messenger>>,
    /// When the own record was last published (Unix seconds; 0: not yet).
    #[cfg(feature = "network")]
    pub published: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// A failed request: a code from `docs/api.md` and a message.
struct Failure(&'static str, String);

#[derive(Deserialize)]
struct Request {
    #[serde(default)]
    token: String,
    #[serde(default)]
    id: Value,
    method: String,
    #[serde(default)]
    params: Value,
}

/// Binds the API listener on `addr` (loopback only) and writes
/// [`API_FILE`] with a fresh token.
pub async fn bind(dir: &Path, addr: SocketAddr) -> Result<(TcpListener, String), ApiError> {
    if !addr.ip().is_loopback() {
        return Err(ApiError::NotLoopback(addr));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(io(format!("cannot listen on {addr} for the API")))?;
    let address = listener.local_addr().map_err(io("API listener"))?;
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| ApiError::Io {
        what: "no randomness for the API token".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let info = ApiInfo {
        address,
        token: token.clone(),
        pid: std::process::id(),
    };
    let text = serde_json::to_vec_pretty(&info).expect("serializable");
    write_atomic(&dir.join(API_FILE), &text).map_err(io("cannot write the API file"))?;
    Ok((listener, token))
}

/// Serves API connections until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    token: String,
    ctx: Arc<ApiContext>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let token = Arc::new(token);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let (mut sock, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, say: do not spin.
                        warn!("API accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    let busy = line(&Value::Null, Err(Failure("busy", "too many API connections".into())));
                    let _ = tokio::time::timeout(FIRST_REQUEST_TIMEOUT, sock.write_all(&busy)).await;
                    continue;
                };
                let (ctx, token) = (ctx.clone(), token.clone());
                tokio::spawn(async move {
                    if let Err(e) = connection(sock, &token, &ctx).await {
                        debug!(%peer, "API connection ended: {e}");
                    }
                    drop(permit);
                });
            }
        }
    }
}

fn line(id: &Value, result: Result<Value, Failure>) -> Vec<u8> {
    let v = match result {
        Ok(r) => json!({"id": id, "result": r}),
        Err(Failure(code, message)) => {
            json!({"id": id, "error": {"code": code, "message": message}})
        }
    };
    let mut out = serde_json::to_vec(&v).expect("serializable");
    if out.len() > MAX_ANSWER {
        let f = json!({"id": id, "error": {"code": "too_large",
            "message": format!("the answer is more than {MAX_ANSWER} bytes: ask for less")}});
        out = serde_json::to_vec(&f).expect("serializable");
    }
    out.push(b'\n');
    out
}

async fn connection(
    sock: tokio::net::TcpStream,
    token: &str,
    ctx: &ApiContext,
) -> std::io::Result<()> {
    let (read, mut write) = sock.into_split();
    let mut read = tokio::io::BufReader::new(read);
    let mut buf = Vec::new();
    let mut authenticated = false;
    loop {
        buf.clear();
        let wait = if authenticated {
            IDLE_TIMEOUT
        } else {
            FIRST_REQUEST_TIMEOUT
        };
        let n = tokio::time::timeout(
            wait,
            (&mut read)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut buf),
        )
        .await
        .map_err(|_| std::io::Error::other("idle"))??;
        if n == 0 {
            return Ok(());
        }
        if buf.last() != Some(&b'\n') {
            let f = Failure(
                "bad_request",
                format!("request longer than {MAX_LINE} bytes"),
            );
            send(&mut write, &line(&Value::Null, Err(f))).await?;
            return Ok(());
        }
        let answer = match serde_json::from_slice::<Request>(&buf) {
            Err(e) => line(&Value::Null, Err(Failure("bad_request", e.to_string()))),
            Ok(req) if !same(req.token.as_bytes(), token.as_bytes()) => {
                warn!("API request with a wrong token refused");
                let answer = line(&req.id, Err(Failure("bad_token", "wrong API token".into())));
                send(&mut write, &answer).await?;
                return Ok(());
            }
            Ok(req) => {
                authenticated = true;
                line(&req.id, handle(ctx, &req.method, req.params).await)
            }
        };
        send(&mut write, &answer).await?;
    }
}

/// Writes one answer, giving up on a client that does not read it.
async fn send(write: &mut tokio::net::tcp::OwnedWriteHalf, bytes: &[u8]) -> std::io::Result<()> {
    tokio::time::timeout(FIRST_REQUEST_TIMEOUT, write.write_all(bytes))
        .await
        .map_err(|_| std::io::Error::other("client not reading"))?
}

/// Constant-time comparison of equal-length secrets.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(ctx: &ApiContext, method: &str, params: Value) -> Result<Value, Failure> {
    match method {
        "status" => {
            let view = ctx.view.borrow().clone();
            let store = ctx.store.clone();
            let bytes = tokio::task::spawn_blocking(move || store.disk_size())
                .await
                .map_err(|e| Failure("internal", e.to_string()))?;
            Ok(json!({
                "pid": std::process::id(),
                "bitcoin_network": ctx.network.core_chain_name(),
                "identity": ctx.identity.map(|i| i.to_string()),
                "store_bytes": bytes,
                "chain_tip": view.tip,
                "source": view.source,
                "last_check": view.last_check,
                "watched": view.watched.len(),
                "last_event": view.events.last().map(|e| e.seq).unwrap_or(0),
                "network": network_status(ctx).await,
            }))
        }
        "identities" => {
            let view = ctx.view.borrow().clone();
            Ok(json!(view.watched))
        }
        "events" => {
            let after = match params.get("after") {
                None | Some(Value::Null) => 0,
                Some(v) => v.as_u64().ok_or_else(|| {
                    Failure("bad_request", "\"after\" must be a sequence number".into())
                })?,
            };
            let wait = match params.get("wait") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_u64()
                    .filter(|w| *w <= MAX_EVENTS_WAIT_SECS)
                    .ok_or_else(|| {
                        Failure(
                            "bad_request",
                            format!("\"wait\" must be 0 to {MAX_EVENTS_WAIT_SECS} seconds"),
                        )
                    })?,
            };
            let mut view = ctx.view.clone();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
            loop {
                let events: Vec<_> = view
                    .borrow_and_update()
                    .events
                    .iter()
                    .filter(|e| e.seq > after)
                    .cloned()
                    .collect();
                if !events.is_empty() || tokio::time::Instant::now() >= deadline {
                    let last = events.last().map(|e| e.seq).unwrap_or(after);
                    return Ok(json!({"events": events, "last": last}));
                }
                match tokio::time::timeout_at(deadline, view.changed()).await {
                    Ok(Ok(())) => continue,
                    // Timed out, or the node is stopping.
                    _ => return Ok(json!({"events": [], "last": after})),
                }
            }
        }
        "stop" => {
            let _ = ctx.stop.send(true);
            Ok(json!({"stopping": true}))
        }
        "contacts" => {
            let (store, key) = (ctx.store.clone(), ctx.contacts.clone());
            let list = tokio::task::spawn_blocking(move || contacts::list(&store, &key))
                .await
                .map_err(|e| Failure("internal", e.to_string()))?
                .map_err(|e| Failure("internal", e.to_string()))?;
            Ok(json!(list))
        }
        "contact_add" => {
            let text = required_str(&params, "bundle")?;
            let bundle = Bundle::from_text(text)
                .map_err(|e| Failure("invalid", format!("not a valid identity bundle: {e}")))?;
            let name = string_param(&params, "name")?.map(str::to_string);
            let added = command(ctx, |reply| Command::AddContact {
                bundle: Box::new(bundle),
                name,
                known_only: false,
                reply,
            })
            .await?;
            Ok(json!(added))
        }
        "contact_fetch" => contact_fetch(ctx, &params).await,
        "contact_rename" => {
            let who = required_str(&params, "who")?.to_string();
            let name = required_str(&params, "name")?.to_string();
            let renamed = command(ctx, |reply| Command::RenameContact { who, name, reply }).await?;
            Ok(json!(renamed))
        }
        "contact_remove" => {
            let who = required_str(&params, "who")?.to_string();
            let (id, was) = command(ctx, |reply| Command::RemoveContact { who, reply }).await?;
            let messages = forget_conversation(ctx, id).await?;
            Ok(json!({"id": id, "removed": was, "messages_deleted": messages}))
        }
        "send" | "messages" | "inbox" | "read" | "requests" | "message_events" => {
            messages(ctx, method, &params).await
        }
        "contact_verify" => {
            let who = string_param(&params, "who")?.map(str::to_string);
            let reports = command(ctx, |reply| Command::Verify { who, reply }).await?;
            Ok(json!(reports))
        }
        other => Err(Failure(
            "unknown_method",
            format!("unknown method {other:?}"),
        )),
    }
}

/// The network's part of `status` (null when the node runs none).
async fn network_status(ctx: &ApiContext) -> Value {
    #[cfg(feature = "network")]
    if let Some(net) = &ctx.net {
        return match net.status().await {
            Ok(s) => json!({
                "peer_id": s.peer_id.to_string(),
                "listen": s.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "peers": s.peers,
                "dht_routing_table": s.routing_table,
                "records": s.records,
                "mode": if s.full { "full" } else { "light" },
                "nat": s.nat,
                "record_published": ctx
                    .published
                    .as_ref()
                    .map(|p| p.load(std::sync::atomic::Ordering::Acquire))
                    .filter(|t| *t > 0),
            }),
            Err(e) => json!({ "error": e.to_string() }),
        };
    }
    let _ = ctx;
    Value::Null
}

/// A number parameter, at most `max`, or `default`.
#[cfg(feature = "network")]
fn number_param(params: &Value, name: &str, default: u64, max: u64) -> Result<u64, Failure> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().filter(|n| *n <= max).ok_or_else(|| {
            Failure(
                "bad_request",
                format!("{name:?} must be a number from 0 to {max}"),
            )
        }),
    }
}

/// Message numbers one `read` names, at most.
#[cfg(feature = "network")]
pub const MAX_READ_SEQS: usize = 10_000;

/// The contact named by the parameter `name`, which must be there.
#[cfg(feature = "network")]
async fn required_contact(
    ctx: &ApiContext,
    params: &Value,
    name: &str,
) -> Result<IdentityId, Failure> {
    contact_param(ctx, params, name)
        .await?
        .ok_or_else(|| Failure("bad_request", format!("{name:?} is required")))
}

/// The contact named by the parameter `name` (a contact's name or id),
/// looked up on the blocking pool (the contact book is decrypted).
#[cfg(feature = "network")]
async fn contact_param(
    ctx: &ApiContext,
    params: &Value,
    name: &str,
) -> Result<Option<IdentityId>, Failure> {
    let Some(who) = string_param(params, name)? else {
        return Ok(None);
    };
    let (store, key, who) = (ctx.store.clone(), ctx.contacts.clone(), who.to_string());
    tokio::task::spawn_blocking(move || contacts::find(&store, &key, &who))
        .await
        .map_err(|e| Failure("internal", e.to_string()))?
        .map(|c| Some(c.id))
        .map_err(|e| match e {
            ContactError::Store(e) => Failure("store", e.to_string()),
            other => Failure("not_found", other.to_string()),
        })
}

/// Most messages one `messages` request returns.
pub const MAX_MESSAGES: u64 = 10_000;

/// `send`, `messages`, `inbox`, `message_events`: through the messenger.
async fn messages(ctx: &ApiContext, method: &str, params: &Value) -> Result<Value, Failure> {
    #[cfg(feature = "network")]
    if let Some(m) = &ctx.messenger {
        let failed = |e: crate::delivery::DeliveryError| {
            use crate::conversation::ConversationError as C;
            use crate::delivery::DeliveryError as D;
            match e {
                D::Conversation(C::NotAContact(_)) => Failure("not_found", e.to_string()),
                D::Conversation(C::BadText(_)) => Failure("bad_request", e.to_string()),
                D::Conversation(C::OutboxFull) => Failure("busy", e.to_string()),
                other => Failure("internal", other.to_string()),
            }
        };
        return match method {
            "send" => {
                let to = required_contact(ctx, params, "to").await?;
                let text = required_str(params, "text")?.to_string();
                let seq = m.send(to, text).await.map_err(failed)?;
                Ok(json!({"to": to, "seq": seq, "state": "queued"}))
            }
            "messages" => {
                let with = contact_param(ctx, params, "with").await?;
                let limit = number_param(params, "limit", 100, MAX_MESSAGES)? as usize;
                Ok(json!(m.history(with, limit).await.map_err(failed)?))
            }
            "inbox" => {
                let mark = match params.get("mark_read") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        return Err(Failure(
                            "bad_request",
                            "\"mark_read\" must be true or false".into(),
                        ))
                    }
                };
                Ok(json!(m.unread(mark).await.map_err(failed)?))
            }
            "requests" => {
                let dismiss = match string_param(params, "dismiss")? {
                    None => None,
                    Some(s) => Some(s.parse::<IdentityId>().map_err(|e| {
                        Failure(
                            "bad_request",
                            format!("\"dismiss\" is not an identity id: {e}"),
                        )
                    })?),
                };
                Ok(json!(m.requests(dismiss).await.map_err(failed)?))
            }
            "read" => {
                let who = required_contact(ctx, params, "contact").await?;
                let seqs = params
                    .get("seqs")
                    .and_then(Value::as_array)
                    .filter(|a| a.len() <= MAX_READ_SEQS)
                    .and_then(|a| a.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>())
                    .ok_or_else(|| {
                        Failure(
                            "bad_request",
                            format!("\"seqs\" must be a list of at most {MAX_READ_SEQS} message numbers"),
                        )
                    })?;
                let n = seqs.len();
                m.mark_read(vec![(who, seqs)]).await.map_err(failed)?;
                Ok(json!({"contact": who, "marked": n}))
            }
            _ => {
                let after = number_param(params, "after", 0, u64::MAX)?;
                let wait = number_param(params, "wait", 0, MAX_EVENTS_WAIT_SECS)?;
                let events = m
                    .events(after, Duration::from_secs(wait))
                    .await
                    .map_err(failed)?;
                let last = events.last().map(|e| e.seq).unwrap_or(after);
                Ok(json!({"events": events, "last": last}))
            }
        };
    }
    let _ = (ctx, method, params);
    Err(Failure(
        "no_messaging",
        "this node sends no messages: it runs without the network or without an identity".into(),
    ))
}

/// Deletes the conversation with a contact just removed: through the
/// delivery task when the node runs one (it holds the conversations), else
/// in the store.
async fn forget_conversation(ctx: &ApiContext, id: IdentityId) -> Result<usize, Failure> {
    let failed = |e: String| Failure("store", e);
    #[cfg(feature = "network")]
    if let Some(m) = &ctx.messenger {
        return m.forget(id).await.map_err(|e| failed(e.to_string()));
    }
    let (store, key) = (ctx.store.clone(), ctx.contacts.clone());
    tokio::task::spawn_blocking(move || crate::conversation::forget_in_book(&store, &key, &id))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(e.to_string()))
}

/// `contact_fetch`: the contact's record found in the network, verified,
/// then added as `contact_add` would.
async fn contact_fetch(ctx: &ApiContext, params: &Value) -> Result<Value, Failure> {
    let id: IdentityId = required_str(params, "id")?
        .parse()
        .map_err(|e| Failure("bad_request", format!("\"id\" is not an identity id: {e}")))?;
    let name = string_param(params, "name")?.map(str::to_string);
    #[cfg(feature = "network")]
    if let Some(net) = &ctx.net {
        let key = crate::record::dht_key(&id).to_vec();
        let bytes = net.fetch(key.clone()).await.map_err(|e| match e {
            cairn_net::NetError::NotFound => Failure(
                "not_found",
                format!("no record of {id} was found in the network"),
            ),
            other => Failure("network", other.to_string()),
        })?;
        let record = crate::record::check_network_record(&key, &bytes, crate::chain::unix_now())
            .map_err(|e| Failure("invalid", e.to_string()))?;
        let added = command(ctx, |reply| Command::AddContact {
            bundle: Box::new(record.bundle),
            name,
            known_only: false,
            reply,
        })
        .await?;
        return Ok(json!(added));
    }
    let _ = (ctx, id, name);
    Err(Failure(
        "no_network",
        "this node runs without the network (built without the `network` feature, or [network] enabled = false)".into(),
    ))
}

/// The string parameter `name`, which must be there.
fn required_str<'a>(params: &'a Value, name: &str) -> Result<&'a str, Failure> {
    string_param(params, name)?
        .ok_or_else(|| Failure("bad_request", format!("{name:?} is required")))
}

/// The string parameter `name`, if present.
fn string_param<'a>(params: &'a Value, name: &str) -> Result<Option<&'a str>, Failure> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Failure("bad_request", format!("{name:?} must be a string"))),
    }
}

/// Hands a command to the watcher and waits for its answer.
async fn command<T>(
    ctx: &ApiContext,
    make: impl FnOnce(oneshot::Sender<Result<T, CommandError>>) -> Command,
) -> Result<T, Failure> {
    let (reply, answer) = oneshot::channel();
    let stopping = || Failure("stopping", "the node is stopping".into());
    ctx.commands.try_send(make(reply)).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => {
            Failure("busy", "too many requests are waiting for the node".into())
        }
        mpsc::error::TrySendError::Closed(_) => stopping(),
    })?;
    match answer.await {
        Err(_) => Err(stopping()),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(CommandError::Watch(why))) => Err(Failure("source", why)),
        Ok(Err(CommandError::Contact(e))) => Err(contact_failure(e)),
    }
}

/// The code of a contact error (see `docs/api.md`).
fn contact_failure(e: ContactError) -> Failure {
    let code = match &e {
        ContactError::NotAContact(_) | ContactError::NoSuchName(_) => "not_found",
        ContactError::Diverges(_) | ContactError::NameTaken { .. } => "conflict",
        ContactError::Store(_) => "internal",
        ContactError::InvalidLog(_)
        | ContactError::OtherChain(_)
        | ContactError::Own(_)
        | ContactError::BadName => "invalid",
    };
    Failure(code, e.to_string())
}

/// A connection to the node's API, used by the command line.
pub struct ApiClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    token: String,
    next_id: u64,
}

impl ApiClient {
    /// Connects to the node running on data directory `dir`.
    pub fn connect(dir: &Path) -> Result<ApiClient, ApiError> {
        let path: PathBuf = dir.join(API_FILE);
        let not_running = || ApiError::NotRunning(dir.display().to_string());
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_running()),
            Err(e) => return Err(io(format!("cannot read {}", path.display()))(e)),
        };
        let info: ApiInfo = serde_json::from_slice(&text)
            .map_err(|e| ApiError::BadAnswer(format!("{}: {e}", path.display())))?;
        if !info.address.ip().is_loopback() {
            return Err(ApiError::NotLoopback(info.address));
        }
        let sock = TcpStream::connect_timeout(&info.address, Duration::from_secs(5))
            .map_err(|_| not_running())?;
        sock.set_read_timeout(Some(CLIENT_TIMEOUT))
            .map_err(io("API socket"))?;
        let writer = sock.try_clone().map_err(io("API socket"))?;
        Ok(ApiClient {
            reader: BufReader::new(sock),
            writer,
            token: info.token,
            next_id: 1,
        })
    }

    /// Calls `method` with `params` and returns its result.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, ApiError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = serde_json::to_vec(
            &json!({"token": self.token, "id": id, "method": method, "params": params}),
        )
        .expect("serializable");
        req.push(b'\n');
        self.writer
            .write_all(&req)
            .map_err(io("cannot send to the node"))?;
        let mut buf = Vec::new();
        (&mut self.reader)
            .take(MAX_ANSWER as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(io("no answer from the node"))?;
        if buf.last() != Some(&b'\n') {
            return Err(ApiError::BadAnswer("truncated or too long".into()));
        }
        let v: Value =
            serde_json::from_slice(&buf).map_err(|e| ApiError::BadAnswer(e.to_string()))?;
        if let Some(err) = v.get("error") {
            return Err(ApiError::Remote {
                code: err["code"].as_str().unwrap_or("unknown").to_owned(),
                message: err["message"].as_str().unwrap_or("").to_owned(),
            });
        }
        if v.get("id") != Some(&json!(id)) {
            return Err(ApiError::BadAnswer("answer to another request".into()));
        }
        v.get("result")
            .cloned()
            .ok_or_else(|| ApiError::BadAnswer("no result".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }

    #[test]
    fn a_missing_api_file_means_no_node() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            ApiClient::connect(dir.path()),
            Err(ApiError::NotRunning(_))
        ));
    }
}
