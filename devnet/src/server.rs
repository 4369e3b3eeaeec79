//! The devnet's JSON-RPC server: Bitcoin Core's HTTP interface on loopback,
//! Basic auth (cookie file or user/password), legacy and 2.0 JSON-RPC,
//! batches, and the replies, error codes and messages Core documents.
//!
//! Bounds: at most [`MAX_CONNECTIONS`] connections at once (more get 503),
//! requests of at most [`MAX_REQUEST`] bytes, an idle timeout per connection.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Address, Amount, BlockHash, Network, OutPoint, ScriptBuf, Transaction, Txid};
use cairn_chain_anchor::rpc::http;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::chain::{ChainError, DevChain};

/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 32;
/// Largest request body.
pub const MAX_REQUEST: usize = 32 * 1024 * 1024;
/// Most calls in one batch.
pub const MAX_BATCH: usize = 10_000;
/// A connection idle this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// What the devnet calls itself wherever it shows.
pub const LABEL: &str = "Cairn devnet: built-in stand-in for bitcoind -regtest";

struct Shared {
    chain: Mutex<DevChain>,
    auth: Vec<Zeroizing<String>>,
    warmup: Mutex<Option<String>>,
    stop: AtomicBool,
    open: AtomicUsize,
    /// Handles of the open connections, so `stop` can close them.
    conns: Mutex<HashMap<u64, TcpStream>>,
}

/// A running server. Dropping it stops it.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

type RpcResult = Result<Value, ChainError>;

fn err(code: i64, msg: impl Into<String>) -> ChainError {
    ChainError {
        code,
        message: msg.into(),
    }
}

fn param<'a>(params: &'a [Value], i: usize, name: &str) -> Result<&'a Value, ChainError> {
    params
        .get(i)
        .filter(|v| !v.is_null())
        .ok_or_else(|| err(-1, format!("missing required parameter {name}")))
}

fn str_param<'a>(params: &'a [Value], i: usize, name: &str) -> Result<&'a str, ChainError> {
    param(params, i, name)?
        .as_str()
        .ok_or_else(|| err(-3, format!("Expected type string for {name}")))
}

fn hash_param<T: std::str::FromStr>(
    params: &[Value],
    i: usize,
    name: &str,
) -> Result<T, ChainError> {
    let s = str_param(params, i, name)?;
    if s.len() != 64 {
        return Err(err(
            -8,
            format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
        ));
    }
    s.parse()
        .map_err(|_| err(-8, format!("{name} must be hexadecimal string (not '{s}')")))
}

fn u64_param(params: &[Value], i: usize, name: &str) -> Result<u64, ChainError> {
    param(params, i, name)?
        .as_u64()
        .ok_or_else(|| err(-3, format!("Expected type number for {name}")))
}

fn bool_or_int(v: Option<&Value>, default: bool) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0) != 0,
        _ => default,
    }
}

fn decode_tx(hex: &str) -> Result<Transaction, ChainError> {
    deserialize_hex(hex).map_err(|_| {
        err(
            -22,
            "TX decode failed. Make sure the tx has at least one input.",
        )
    })
}

fn btc(a: Amount) -> Value {
    // Core prints amounts with 8 decimals; a JSON number with the same value.
    json!(a.to_btc())
}

fn script_json(s: &ScriptBuf) -> Value {
    let mut v = json!({"hex": s.to_hex_string(), "asm": s.to_asm_string()});
    if let Ok(a) = Address::from_script(s, Network::Regtest) {
        v["address"] = json!(a.to_string());
    }
    v
}

/// Parses a `scantxoutset` descriptor: `addr(…)` or `raw(…)`, checksum optional.
fn descriptor_script(desc: &str) -> Result<ScriptBuf, ChainError> {
    let body = desc.split('#').next().unwrap_or(desc).trim();
    if let Some(inner) = body.strip_prefix("raw(").and_then(|r| r.strip_suffix(')')) {
        return ScriptBuf::from_hex(inner)
            .map_err(|_| err(-5, format!("raw(): invalid hex script '{inner}'")));
    }
    if let Some(inner) = body.strip_prefix("addr(").and_then(|r| r.strip_suffix(')')) {
        let a: Address<bitcoin::address::NetworkUnchecked> = inner
            .parse()
            .map_err(|_| err(-5, format!("Address {inner} is not valid")))?;
        let a = a
            .require_network(Network::Regtest)
            .map_err(|_| err(-5, format!("Address {inner} is not valid for regtest")))?;
        return Ok(a.script_pubkey());
    }
    Err(err(
        -5,
        format!("'{desc}': the devnet stand-in understands only addr() and raw() descriptors"),
    ))
}

fn dispatch(shared: &Shared, method: &str, params: &[Value]) -> RpcResult {
    if let Some(msg) = shared
        .warmup
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
    {
        return Err(err(-28, msg));
    }
    let mut chain = shared.chain.lock().unwrap_or_else(|p| p.into_inner());
    let c = &mut *chain;
    match method {
        "getblockchaininfo" => {
            let tip = c.tip();
            Ok(json!({
                "chain": "regtest",
                "blocks": c.height(),
                "headers": c.height(),
                "bestblockhash": tip,
                "bits": "207fffff",
                "difficulty": 4.656542373906925e-10,
                "time": c.block(&tip).map(|(b, _)| b.header.time).unwrap_or(0),
                "mediantime": c.median_time_past(&tip),
                "verificationprogress": 1,
                "initialblockdownload": false,
                "chainwork": c.chain_work().to_be_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>(),
                "size_on_disk": 0,
                "pruned": false,
                "warnings": [LABEL],
            }))
        }
        "getnetworkinfo" => Ok(json!({
            "version": 0,
            "subversion": format!("/{LABEL}/"),
            "protocolversion": 70016,
            "networkactive": false,
            "connections": 0,
            "relayfee": 0.00001,
            "warnings": [LABEL],
        })),
        "getblockcount" => Ok(json!(c.height())),
        "getbestblockhash" => Ok(json!(c.tip())),
        "getblockhash" => {
            let h = param(params, 0, "height")?
                .as_i64()
                .ok_or_else(|| err(-3, "Expected type number for height"))?;
            u32::try_from(h)
                .ok()
                .and_then(|h| c.hash_at(h))
                .map(|h| json!(h))
                .ok_or_else(|| err(-8, "Block height out of range"))
        }
        "getblockheader" => {
            let hash: BlockHash = hash_param(params, 0, "blockhash")?;
            let (b, height) = c.block(&hash).ok_or_else(ChainError::block_not_found)?;
            if !bool_or_int(params.get(1), true) {
                return Ok(json!(serialize_hex(&b.header)));
            }
            Ok(json!({
                "hash": hash,
                "confirmations": if c.is_active(&hash) { i64::from(c.confirmations(&hash)) } else { -1 },
                "height": height,
                "version": b.header.version.to_consensus(),
                "merkleroot": b.header.merkle_root,
                "time": b.header.time,
                "nonce": b.header.nonce,
                "bits": format!("{:08x}", b.header.bits.to_consensus()),
                "previousblockhash": b.header.prev_blockhash,
                "nTx": b.txdata.len(),
            }))
        }
        "getblock" => {
            let hash: BlockHash = hash_param(params, 0, "blockhash")?;
            let (b, height) = c.block(&hash).ok_or_else(ChainError::block_not_found)?;
            let verbosity = params.get(1).and_then(Value::as_i64).unwrap_or(1);
            if verbosity == 0 {
                return Ok(json!(serialize_hex(b)));
            }
            let txids: Vec<Txid> = b.txdata.iter().map(|t| t.compute_txid()).collect();
            Ok(json!({
                "hash": hash,
                "confirmations": if c.is_active(&hash) { i64::from(c.confirmations(&hash)) } else { -1 },
                "height": height,
                "merkleroot": b.header.merkle_root,
                "time": b.header.time,
                "previousblockhash": b.header.prev_blockhash,
                "tx": txids,
            }))
        }
        "getrawtransaction" => {
            let txid: Txid = hash_param(params, 0, "txid")?;
            let tx = if let Some(bh) = params.get(2).filter(|v| !v.is_null()) {
                let bh: BlockHash = bh
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| err(-8, "blockhash must be a block hash"))?;
                let (b, _) = c
                    .block(&bh)
                    .ok_or_else(|| err(-5, "Block hash not found"))?;
                b.txdata
                    .iter()
                    .find(|t| t.compute_txid() == txid)
                    .cloned()
                    .ok_or_else(|| {
                        err(-5, "No such transaction found in the provided block. Use gettransaction for wallet transactions.")
                    })?
            } else if let Some(t) = c.mempool.get(&txid) {
                t.clone()
            } else {
                c.confirmed_tx(&txid).map(|(t, _)| t.clone()).ok_or_else(|| {
                    err(-5, "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.")
                })?
            };
            if bool_or_int(params.get(1), false) {
                return Ok(json!({"txid": txid, "hex": serialize_hex(&tx)}));
            }
            Ok(json!(serialize_hex(&tx)))
        }
        "gettxoutproof" => {
            let list = param(params, 0, "txids")?
                .as_array()
                .ok_or_else(|| err(-3, "Expected type array for txids"))?;
            let mut txids = Vec::with_capacity(list.len());
            for (i, _) in list.iter().enumerate() {
                txids.push(hash_param::<Txid>(list, i, "txid")?);
            }
            let block = match params.get(1).filter(|v| !v.is_null()) {
                Some(_) => Some(hash_param::<BlockHash>(params, 1, "blockhash")?),
                None => None,
            };
            Ok(json!(serialize_hex(&c.tx_out_proof(&txids, block)?)))
        }
        "gettxout" => {
            let txid: Txid = hash_param(params, 0, "txid")?;
            let vout = u32::try_from(u64_param(params, 1, "n")?)
                .map_err(|_| err(-8, "Invalid parameter, vout cannot be negative"))?;
            let op = OutPoint::new(txid, vout);
            let include_mempool = bool_or_int(params.get(2), true);
            let tip = c.tip();
            if include_mempool {
                if c.mempool.spends(&op) {
                    return Ok(Value::Null);
                }
                if let Some(out) = c.mempool.output(&op) {
                    return Ok(json!({
                        "bestblock": tip, "confirmations": 0, "value": btc(out.value),
                        "scriptPubKey": script_json(&out.script_pubkey), "coinbase": false,
                    }));
                }
            }
            Ok(match c.coin(&op) {
                None => Value::Null,
                Some(coin) => json!({
                    "bestblock": tip,
                    "confirmations": c.height() - coin.height + 1,
                    "value": btc(coin.out.value),
                    "scriptPubKey": script_json(&coin.out.script_pubkey),
                    "coinbase": coin.coinbase,
                }),
            })
        }
        "scantxoutset" => {
            match str_param(params, 0, "action")? {
                "start" => {}
                "status" => return Ok(Value::Null),
                "abort" => return Ok(json!(false)),
                other => return Err(err(-8, format!("Invalid action '{other}'"))),
            }
            let list = param(params, 1, "scanobjects")?
                .as_array()
                .ok_or_else(|| err(-8, "scanobjects argument is required for the start action"))?;
            let mut scripts = HashSet::new();
            for d in list {
                let text = d
                    .as_str()
                    .or_else(|| d.get("desc").and_then(Value::as_str))
                    .ok_or_else(|| {
                        err(-8, "Scan object needs to be either a string or an object")
                    })?;
                scripts.insert(descriptor_script(text)?);
            }
            let found = c.coins_paying(&scripts);
            let total: Amount = found.iter().map(|(_, c)| c.out.value).sum();
            let unspents: Vec<Value> = found
                .iter()
                .map(|(op, coin)| {
                    json!({
                        "txid": op.txid, "vout": op.vout,
                        "scriptPubKey": coin.out.script_pubkey.to_hex_string(),
                        "desc": format!("raw({})", coin.out.script_pubkey.to_hex_string()),
                        "amount": btc(coin.out.value), "coinbase": coin.coinbase,
                        "height": coin.height,
                        "blockhash": c.hash_at(coin.height),
                        "confirmations": c.height() - coin.height + 1,
                    })
                })
                .collect();
            Ok(json!({
                "success": true, "txouts": unspents.len(), "height": c.height(),
                "bestblock": c.tip(), "unspents": unspents, "total_amount": btc(total),
            }))
        }
        "sendrawtransaction" => {
            let tx = decode_tx(str_param(params, 0, "hexstring")?)?;
            let txid = tx.compute_txid();
            if c.mempool.get(&txid).is_some() {
                // Core answers a resend with the txid.
                return Ok(json!(txid));
            }
            c.accept(&tx, false)
                .map(|a| json!(a.txid))
                .map_err(|r| err(r.rpc_code(), r.rpc_message()))
        }
        "testmempoolaccept" => {
            let list = param(params, 0, "rawtxs")?
                .as_array()
                .ok_or_else(|| err(-3, "Expected type array for rawtxs"))?;
            if list.is_empty() || list.len() > 25 {
                return Err(err(-8, "Array must contain between 1 and 25 transactions."));
            }
            let mut out = Vec::new();
            for v in list {
                let tx = decode_tx(v.as_str().unwrap_or(""))?;
                out.push(match c.accept(&tx, true) {
                    Ok(a) => json!({
                        "txid": a.txid, "wtxid": a.wtxid, "allowed": true, "vsize": a.vsize,
                        "fees": {"base": btc(a.fee)},
                    }),
                    Err(r) => json!({
                        "txid": tx.compute_txid(), "wtxid": tx.compute_wtxid(), "allowed": false,
                        "reject-reason": r.test_accept_reason(),
                    }),
                });
            }
            Ok(json!(out))
        }
        "getrawmempool" => Ok(json!(c.mempool.txids())),
        "estimatesmartfee" => {
            let target = u64_param(params, 0, "conf_target")?;
            if !(1..=1008).contains(&target) {
                return Err(err(-8, "Invalid conf_target, must be between 1 and 1008"));
            }
            Ok(match c.estimate_fee_rate() {
                Some(sat_per_kvb) => json!({
                    "feerate": btc(Amount::from_sat(sat_per_kvb)),
                    "blocks": target.max(2),
                }),
                None => json!({"errors": ["Insufficient data or no feerate found"], "blocks": 0}),
            })
        }
        "generatetoaddress" => {
            let n = u64_param(params, 0, "nblocks")?;
            let addr = str_param(params, 1, "address")?;
            let script = descriptor_script(&format!("addr({addr})"))
                .map_err(|_| err(-5, "Error: Invalid address"))?;
            let n = u32::try_from(n).map_err(|_| err(-8, "nblocks out of range"))?;
            Ok(json!(c.generate(n, &script)?))
        }
        "generateblock" => {
            let out = str_param(params, 0, "output")?;
            let script = descriptor_script(&format!("addr({out})"))
                .or_else(|_| descriptor_script(out))
                .map_err(|_| err(-5, "Error: Invalid address or descriptor"))?;
            match params.get(1) {
                Some(Value::Array(txs)) if txs.is_empty() => {}
                _ => {
                    return Err(err(
                        -8,
                        "the devnet's generateblock mines only empty blocks: pass []",
                    ))
                }
            }
            Ok(json!({ "hash": c.generate_empty(&script)? }))
        }
        "invalidateblock" => {
            let hash: BlockHash = hash_param(params, 0, "blockhash")?;
            c.invalidate(&hash).map(|_| Value::Null)
        }
        "reconsiderblock" => {
            let hash: BlockHash = hash_param(params, 0, "blockhash")?;
            c.reconsider(&hash).map(|_| Value::Null)
        }
        "setmocktime" => {
            c.set_mock_time(u64_param(params, 0, "timestamp")?);
            Ok(Value::Null)
        }
        "uptime" => Ok(json!(0)),
        "stop" => {
            shared.stop.store(true, Ordering::SeqCst);
            Ok(json!("Bitcoin Core stopping"))
        }
        _ => Err(err(-32601, "Method not found")),
    }
}

/// One JSON-RPC request object → its reply object and whether it failed.
fn handle_one(shared: &Shared, req: &Value) -> (Value, Option<i64>) {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let v2 = req.get("jsonrpc").and_then(Value::as_str) == Some("2.0");
    let result = match req.get("method").and_then(Value::as_str) {
        None => Err(err(-32600, "Method must be a string")),
        Some(m) => match req.get("params") {
            None | Some(Value::Null) => dispatch(shared, m, &[]),
            Some(Value::Array(p)) => dispatch(shared, m, p),
            Some(_) => Err(err(
                -32602,
                "the devnet stand-in takes positional params only",
            )),
        },
    };
    match result {
        Ok(v) if v2 => (json!({"jsonrpc": "2.0", "result": v, "id": id}), None),
        Ok(v) => (json!({"result": v, "error": null, "id": id}), None),
        Err(e) => {
            let error = json!({"code": e.code, "message": e.message});
            if v2 {
                (json!({"jsonrpc": "2.0", "error": error, "id": id}), None)
            } else {
                (
                    json!({"result": null, "error": error, "id": id}),
                    Some(e.code),
                )
            }
        }
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &[u8], extra: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

fn serve(shared: &Shared, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(head) = http::read_head(&mut reader)? else {
            return Ok(());
        };
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        if head.start[0] != "POST" {
            respond(&mut writer, "405 Method Not Allowed", b"", "")?;
            return Ok(());
        }
        let authorized = head
            .header("authorization")
            .is_some_and(|a| shared.auth.iter().any(|ok| ok.as_str() == a));
        if !authorized {
            // Core waits before answering a bad password, to slow guessing.
            std::thread::sleep(Duration::from_millis(50));
            respond(
                &mut writer,
                "401 Unauthorized",
                b"",
                "WWW-Authenticate: Basic realm=\"jsonrpc\"\r\n",
            )?;
            return Ok(());
        }
        let body = http::read_body(&mut reader, &head, MAX_REQUEST)?;
        let (status, reply) = match serde_json::from_slice::<Value>(&body) {
            Err(_) => (
                "500 Internal Server Error",
                json!({"result": null, "error": {"code": -32700, "message": "Parse error"}, "id": null}),
            ),
            Ok(Value::Array(reqs)) if reqs.len() > MAX_BATCH => (
                "500 Internal Server Error",
                json!({"result": null, "error": {"code": -32600, "message": format!("batch of more than {MAX_BATCH} calls")}, "id": null}),
            ),
            Ok(Value::Array(reqs)) => (
                "200 OK",
                Value::Array(reqs.iter().map(|r| handle_one(shared, r).0).collect()),
            ),
            Ok(req) => {
                let (reply, failed) = handle_one(shared, &req);
                let status = match failed {
                    None => "200 OK",
                    Some(-32601) => "404 Not Found",
                    Some(-32600) => "400 Bad Request",
                    Some(_) => "500 Internal Server Error",
                };
                (status, reply)
            }
        };
        let bytes = serde_json::to_vec(&reply).unwrap_or_default();
        respond(&mut writer, status, &bytes, "")?;
        if head.wants_close() {
            return Ok(());
        }
    }
}

impl Server {
    /// Serves `chain` on `bind` (use port 0 for any free port), accepting
    /// the given `Authorization` header values.
    pub fn start(
        chain: DevChain,
        bind: SocketAddr,
        auth: Vec<Zeroizing<String>>,
    ) -> std::io::Result<Server> {
        if !bind.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the devnet serves loopback only",
            ));
        }
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            chain: Mutex::new(chain),
            auth,
            warmup: Mutex::new(None),
            stop: AtomicBool::new(false),
            open: AtomicUsize::new(0),
            conns: Mutex::new(HashMap::new()),
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("devnet-accept".into())
            .spawn(move || {
                let mut next_id = 0u64;
                for stream in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    if s.open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                        let _ = respond(
                            &mut stream,
                            "503 Service Unavailable",
                            b"",
                            "Connection: close\r\n",
                        );
                        continue;
                    }
                    next_id += 1;
                    let id = next_id;
                    if let Ok(c) = stream.try_clone() {
                        s.conns
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(id, c);
                    }
                    s.open.fetch_add(1, Ordering::SeqCst);
                    let s2 = s.clone();
                    let spawned = std::thread::Builder::new()
                        .name("devnet-conn".into())
                        .spawn(move || {
                            let _ = serve(&s2, stream);
                            s2.conns
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&id);
                            s2.open.fetch_sub(1, Ordering::SeqCst);
                        });
                    if spawned.is_err() {
                        s.conns
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .remove(&id);
                        s.open.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })?;
        Ok(Server {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs `f` on the chain (for tests and the quick start).
    pub fn with_chain<T>(&self, f: impl FnOnce(&mut DevChain) -> T) -> T {
        f(&mut self.shared.chain.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// While `Some`, every call answers -28 with this message, the way
    /// Bitcoin Core does while it loads.
    pub fn set_warmup(&self, message: Option<&str>) {
        *self.shared.warmup.lock().unwrap_or_else(|p| p.into_inner()) = message.map(str::to_owned);
    }

    /// Whether a `stop` call asked the server to stop.
    pub fn stop_requested(&self) -> bool {
        self.shared.stop.load(Ordering::SeqCst)
    }

    /// Stops listening and closes every connection.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for c in self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            let _ = c.1.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh cookie: `__cookie__:<64 hex>` (Core's format).
pub fn new_cookie() -> std::io::Result<Zeroizing<String>> {
    let mut secret = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(secret.as_mut()).map_err(|e| std::io::Error::other(e.to_string()))?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Zeroizing::new(format!("__cookie__:{hex}")))
}
