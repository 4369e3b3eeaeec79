//! A Bitcoin Core JSON-RPC client, written against Core's documented RPC
//! (`bitcoin-cli help <method>`): blocking, one keep-alive HTTP connection,
//! bounded replies, timeouts, cookie or user/password auth, and typed errors.
//!
//! Calls that meet Core's warm-up (code -28, "Loading block index…") are
//! retried with exponential backoff for up to [`RpcConfig::warmup_wait`].
//! Bitcoin Core speaks plain HTTP: reach a remote node through a tunnel, not
//! over an open network.

pub mod error;
pub mod http;
mod types;

use std::io::{BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bitcoin::block::Header;
use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::consensus::Decodable;
use bitcoin::merkle_tree::MerkleBlock;
use bitcoin::{Address, Block, BlockHash, FeeRate, OutPoint, ScriptBuf, Transaction, Txid};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use zeroize::Zeroizing;

pub use error::{codes, RpcError};
pub use types::{BlockchainInfo, MempoolAccept, ScanResult, ScannedOutput, TxOutInfo};

use crate::network::ChainNetwork;

/// Largest reply accepted (a 4 MB block is 8 MB of hex).
pub const MAX_REPLY: usize = 64 * 1024 * 1024;
/// Most calls in one JSON-RPC batch.
pub const MAX_BATCH_CALLS: usize = 2_000;

/// How the client proves itself to Bitcoin Core.
#[derive(Clone)]
pub enum RpcAuth {
    /// Bitcoin Core's cookie file (`<datadir>/<chain>/.cookie`), read at each
    /// connection because Core writes a new one at every start.
    Cookie(PathBuf),
    /// `rpcuser` / `rpcpassword` (or an `rpcauth` entry's user and password).
    UserPass {
        /// The user name.
        user: String,
        /// The password.
        password: Zeroizing<String>,
    },
}

impl std::fmt::Debug for RpcAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RpcAuth::Cookie(p) => f.debug_tuple("Cookie").field(p).finish(),
            RpcAuth::UserPass { user, .. } => f
                .debug_struct("UserPass")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish_non_exhaustive(),
        }
    }
}

impl RpcAuth {
    fn header(&self) -> Result<Zeroizing<String>, RpcError> {
        match self {
            RpcAuth::UserPass { user, password } => Ok(http::basic_auth(user, password)),
            RpcAuth::Cookie(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                    RpcError::Cookie {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?);
                let (user, pass) =
                    text.trim_end()
                        .split_once(':')
                        .ok_or_else(|| RpcError::Cookie {
                            path: path.clone(),
                            reason: "not of the form user:password".into(),
                        })?;
                Ok(http::basic_auth(user, pass))
            }
        }
    }
}

/// Where and how to reach Bitcoin Core.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// `http://host:port[/path]`.
    pub url: String,
    /// Credentials.
    pub auth: RpcAuth,
    /// The network Cairn is configured for; [`RpcClient::check_network`] compares.
    pub network: ChainNetwork,
    /// Connect, read and write timeout of one call.
    pub timeout: Duration,
    /// How long to keep retrying while Core warms up (-28).
    pub warmup_wait: Duration,
}

impl RpcConfig {
    /// A config with the default timeouts (30 s per call, 60 s of warm-up retries).
    pub fn new(url: impl Into<String>, auth: RpcAuth, network: ChainNetwork) -> Self {
        RpcConfig {
            url: url.into(),
            auth,
            network,
            timeout: Duration::from_secs(30),
            warmup_wait: Duration::from_secs(60),
        }
    }
}

type Conn = BufReader<TcpStream>;

/// A Bitcoin Core JSON-RPC client. Calls are serialised over one connection.
pub struct RpcClient {
    config: RpcConfig,
    host: String,
    path: String,
    conn: Mutex<Option<Conn>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for RpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcClient")
            .field("url", &self.config.url)
            .finish_non_exhaustive()
    }
}

fn parse_url(url: &str) -> Result<(String, String), RpcError> {
    let bad = |reason: &str| RpcError::BadUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = if let Some(r) = url.strip_prefix("http://") {
        r
    } else if url.starts_with("https://") {
        return Err(bad(
            "Bitcoin Core's RPC speaks plain HTTP; use http:// (through a tunnel for a remote node)",
        ));
    } else {
        return Err(bad("expected http://host:port"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(bad(
            "put credentials in the auth settings, not in the URL (URLs end up in logs)",
        ));
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(bad("the port is missing (regtest 18443, mainnet 8332)"));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad("expected host:port"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the path has spaces or control characters"));
    }
    Ok((authority.to_owned(), path.to_owned()))
}

enum Reply {
    Ok(Value),
    Err { code: i64, message: String },
}

fn reply_of(method: &str, v: &Value) -> Result<Reply, RpcError> {
    let Some(obj) = v.as_object() else {
        return Err(RpcError::Malformed {
            method: method.into(),
            reason: "reply is not a JSON object".into(),
        });
    };
    match obj.get("error") {
        Some(e) if !e.is_null() => Ok(Reply::Err {
            code: e.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        }),
        _ => Ok(Reply::Ok(obj.get("result").cloned().unwrap_or(Value::Null))),
    }
}

fn decode_hex<T: Decodable>(method: &str, v: Value) -> Result<T, RpcError> {
    let s = v.as_str().ok_or_else(|| RpcError::Malformed {
        method: method.into(),
        reason: "expected a hex string".into(),
    })?;
    deserialize_hex(s).map_err(|e| RpcError::Malformed {
        method: method.into(),
        reason: format!("bad hex encoding: {e}"),
    })
}

fn from_json<T: DeserializeOwned>(method: &str, v: Value) -> Result<T, RpcError> {
    serde_json::from_value(v).map_err(|e| RpcError::Malformed {
        method: method.into(),
        reason: e.to_string(),
    })
}

impl RpcClient {
    /// A client for `config`. Connects lazily, on the first call.
    pub fn new(config: RpcConfig) -> Result<Self, RpcError> {
        let (host, path) = parse_url(&config.url)?;
        Ok(RpcClient {
            config,
            host,
            path,
            conn: Mutex::new(None),
            next_id: AtomicU64::new(1),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RpcConfig {
        &self.config
    }

    fn unreachable(&self, source: std::io::Error) -> RpcError {
        RpcError::Unreachable {
            url: self.config.url.clone(),
            source,
        }
    }

    fn connect(&self) -> Result<Conn, RpcError> {
        let addrs: Vec<_> = self
            .host
            .to_socket_addrs()
            .map_err(|e| self.unreachable(e))?
            .collect();
        let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.config.timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(self.config.timeout))
                        .and_then(|_| s.set_write_timeout(Some(self.config.timeout)))
                        .and_then(|_| s.set_nodelay(true))
                        .map_err(|e| self.unreachable(e))?;
                    return Ok(BufReader::new(s));
                }
                Err(e) => last = e,
            }
        }
        Err(self.unreachable(last))
    }

    /// One HTTP exchange: status, whether the server closes, body.
    fn exchange(
        &self,
        conn: &mut Conn,
        body: &[u8],
        auth: &str,
    ) -> Result<(u16, bool, Vec<u8>), std::io::Error> {
        let mut req =
            Vec::with_capacity(body.len() + auth.len() + self.path.len() + self.host.len() + 200);
        write!(
            req,
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
            self.path,
            self.host,
            auth,
            body.len()
        )?;
        req.extend_from_slice(body);
        let w = conn.get_mut();
        w.write_all(&req)?;
        // The request held the credentials.
        zeroize::Zeroize::zeroize(&mut req);
        w.flush()?;
        let head = http::read_head(conn)?.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "connection closed")
        })?;
        let status: u16 = head
            .start
            .get(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad HTTP status line")
            })?;
        let body = http::read_body(conn, &head, MAX_REPLY)?;
        Ok((status, head.wants_close(), body))
    }

    /// Sends `body`, reusing the connection when it still works.
    fn post(&self, body: &[u8]) -> Result<(u16, Vec<u8>), RpcError> {
        let auth = self.config.auth.header()?;
        let mut slot = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            let reused = slot.is_some();
            let mut conn = match slot.take() {
                Some(c) => c,
                None => self.connect()?,
            };
            match self.exchange(&mut conn, body, &auth) {
                Ok((status, close, reply)) => {
                    if !close {
                        *slot = Some(conn);
                    }
                    return Ok((status, reply));
                }
                // A kept-alive connection the server has since closed: retry once on a new one.
                Err(_) if reused && attempt == 0 => continue,
                Err(e) => return Err(self.unreachable(e)),
            }
        }
        unreachable!("the second attempt always returns")
    }

    fn check_status(&self, status: u16) -> Result<(), RpcError> {
        match status {
            401 => Err(RpcError::AuthFailed {
                url: self.config.url.clone(),
            }),
            403 => Err(RpcError::Forbidden {
                url: self.config.url.clone(),
            }),
            // Core answers errors with 500 (legacy), 404 (unknown method), 400 or 503 and a JSON body.
            200 | 400 | 404 | 500 | 503 => Ok(()),
            status => Err(RpcError::HttpStatus {
                url: self.config.url.clone(),
                status,
            }),
        }
    }

    /// Runs `f` and retries it with backoff while Core answers -28.
    fn with_warmup<T>(
        &self,
        mut f: impl FnMut() -> Result<Result<T, (i64, String, String)>, RpcError>,
    ) -> Result<T, RpcError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match f()? {
                Ok(v) => return Ok(v),
                Err((code, message, _)) if code == codes::IN_WARMUP => {
                    let waited = start.elapsed();
                    if waited >= self.config.warmup_wait {
                        return Err(RpcError::WarmingUp {
                            message,
                            waited_ms: waited.as_millis() as u64,
                        });
                    }
                    std::thread::sleep(delay.min(self.config.warmup_wait - waited));
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err((code, message, method)) => {
                    return Err(RpcError::Server {
                        method,
                        code,
                        message,
                    })
                }
            }
        }
    }

    /// Calls `method` with positional `params` and returns the raw result.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.with_warmup(|| {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let body = serde_json::to_vec(
                &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}),
            )
            .map_err(|e| RpcError::Malformed {
                method: method.into(),
                reason: e.to_string(),
            })?;
            let (status, reply) = self.post(&body)?;
            self.check_status(status)?;
            let v: Value = serde_json::from_slice(&reply).map_err(|e| RpcError::Malformed {
                method: method.into(),
                reason: format!("HTTP {status} with a body that is not JSON: {e}"),
            })?;
            Ok(match reply_of(method, &v)? {
                Reply::Ok(v) => Ok(v),
                Reply::Err { code, message } => Err((code, message, method.to_owned())),
            })
        })
    }

    /// Calls `method` once per element of `params` in one JSON-RPC batch and
    /// returns the results in order. The first failing element fails the batch.
    pub fn batch(&self, method: &str, params: &[Value]) -> Result<Vec<Value>, RpcError> {
        if params.is_empty() {
            return Ok(Vec::new());
        }
        if params.len() > MAX_BATCH_CALLS {
            let mut out = Vec::with_capacity(params.len());
            for chunk in params.chunks(MAX_BATCH_CALLS) {
                out.extend(self.batch(method, chunk)?);
            }
            return Ok(out);
        }
        self.with_warmup(|| {
            let first = self
                .next_id
                .fetch_add(params.len() as u64, Ordering::Relaxed);
            let calls: Vec<Value> = params
                .iter()
                .enumerate()
                .map(|(i, p)| json!({"jsonrpc": "2.0", "id": first + i as u64, "method": method, "params": p}))
                .collect();
            let body = serde_json::to_vec(&calls).map_err(|e| RpcError::Malformed {
                method: method.into(),
                reason: e.to_string(),
            })?;
            let (status, reply) = self.post(&body)?;
            self.check_status(status)?;
            let v: Value = serde_json::from_slice(&reply).map_err(|e| RpcError::Malformed {
                method: method.into(),
                reason: format!("HTTP {status} with a body that is not JSON: {e}"),
            })?;
            let Value::Array(items) = v else {
                // A whole-batch error comes back as one object.
                return Ok(match reply_of(method, &v)? {
                    Reply::Err { code, message } => Err((code, message, method.to_owned())),
                    Reply::Ok(_) => {
                        return Err(RpcError::Malformed {
                            method: method.into(),
                            reason: "a batch reply that is not an array".into(),
                        })
                    }
                });
            };
            if items.len() != params.len() {
                return Err(RpcError::Malformed {
                    method: method.into(),
                    reason: format!("{} replies to {} calls", items.len(), params.len()),
                });
            }
            let mut out = vec![Value::Null; params.len()];
            let mut seen = vec![false; params.len()];
            for item in items {
                let idx = item
                    .get("id")
                    .and_then(Value::as_u64)
                    .and_then(|id| id.checked_sub(first))
                    .filter(|&i| (i as usize) < params.len() && !seen[i as usize])
                    .ok_or_else(|| RpcError::Malformed {
                        method: method.into(),
                        reason: "a batch reply with an unknown or repeated id".into(),
                    })? as usize;
                seen[idx] = true;
                match reply_of(method, &item)? {
                    Reply::Ok(v) => out[idx] = v,
                    Reply::Err { code, message } => {
                        return Ok(Err((code, message, method.to_owned())))
                    }
                }
            }
            Ok(Ok(out))
        })
    }

    /// `getblockchaininfo`.
    pub fn blockchain_info(&self) -> Result<BlockchainInfo, RpcError> {
        from_json(
            "getblockchaininfo",
            self.call("getblockchaininfo", json!([]))?,
        )
    }

    /// Fails with [`RpcError::WrongNetwork`] unless Core runs the configured network.
    pub fn check_network(&self) -> Result<BlockchainInfo, RpcError> {
        let info = self.blockchain_info()?;
        let expected = self.config.network.core_chain_name();
        // Core before 28 called testnet4 "testnet4" too; "test" is testnet3, which Cairn does not use.
        if info.chain != expected {
            return Err(RpcError::WrongNetwork {
                expected: expected.into(),
                found: info.chain,
            });
        }
        Ok(info)
    }

    /// `getnetworkinfo`'s `subversion`: the node's user agent, e.g. `/Satoshi:28.1.0/`.
    pub fn user_agent(&self) -> Result<String, RpcError> {
        let v = self.call("getnetworkinfo", json!([]))?;
        v.get("subversion")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| RpcError::Malformed {
                method: "getnetworkinfo".into(),
                reason: "no subversion".into(),
            })
    }

    /// `getblockcount`.
    pub fn block_count(&self) -> Result<u32, RpcError> {
        from_json("getblockcount", self.call("getblockcount", json!([]))?)
    }

    /// `getblockhash height`.
    pub fn block_hash(&self, height: u32) -> Result<BlockHash, RpcError> {
        from_json("getblockhash", self.call("getblockhash", json!([height]))?)
    }

    /// `getblockhash` for each of `heights`, in one batch.
    pub fn block_hashes(&self, heights: &[u32]) -> Result<Vec<BlockHash>, RpcError> {
        let params: Vec<Value> = heights.iter().map(|h| json!([h])).collect();
        self.batch("getblockhash", &params)?
            .into_iter()
            .map(|v| from_json("getblockhash", v))
            .collect()
    }

    /// `getblockheader hash false`: the 80-byte header.
    pub fn block_header(&self, hash: &BlockHash) -> Result<Header, RpcError> {
        decode_hex(
            "getblockheader",
            self.call("getblockheader", json!([hash, false]))?,
        )
    }

    /// `getblockheader` for many hashes, in one batch.
    pub fn block_headers(&self, hashes: &[BlockHash]) -> Result<Vec<Header>, RpcError> {
        let params: Vec<Value> = hashes.iter().map(|h| json!([h, false])).collect();
        self.batch("getblockheader", &params)?
            .into_iter()
            .map(|v| decode_hex("getblockheader", v))
            .collect()
    }

    /// `getblock hash 0`: the raw block.
    pub fn block(&self, hash: &BlockHash) -> Result<Block, RpcError> {
        decode_hex("getblock", self.call("getblock", json!([hash, 0]))?)
    }

    /// `getrawtransaction txid false [blockhash]`.
    pub fn raw_transaction(
        &self,
        txid: &Txid,
        block: Option<&BlockHash>,
    ) -> Result<Transaction, RpcError> {
        let params = match block {
            Some(b) => json!([txid, false, b]),
            None => json!([txid, false]),
        };
        decode_hex("getrawtransaction", self.call("getrawtransaction", params)?)
    }

    /// `gettxoutproof [txids] [blockhash]`: a BIP37 merkle block.
    pub fn tx_out_proof(
        &self,
        txids: &[Txid],
        block: Option<&BlockHash>,
    ) -> Result<MerkleBlock, RpcError> {
        let params = match block {
            Some(b) => json!([txids, b]),
            None => json!([txids]),
        };
        decode_hex("gettxoutproof", self.call("gettxoutproof", params)?)
    }

    /// `gettxout txid n include_mempool`: `None` when spent or unknown.
    pub fn tx_out(
        &self,
        outpoint: &OutPoint,
        include_mempool: bool,
    ) -> Result<Option<TxOutInfo>, RpcError> {
        let v = self.call(
            "gettxout",
            json!([outpoint.txid, outpoint.vout, include_mempool]),
        )?;
        if v.is_null() {
            return Ok(None);
        }
        from_json("gettxout", v).map(Some)
    }

    /// `scantxoutset start [raw(script)…]`: the unspent outputs paying these scripts.
    pub fn scan_tx_out_set(&self, scripts: &[ScriptBuf]) -> Result<ScanResult, RpcError> {
        let descs: Vec<String> = scripts
            .iter()
            .map(|s| format!("raw({})", s.to_hex_string()))
            .collect();
        from_json(
            "scantxoutset",
            self.call("scantxoutset", json!(["start", descs]))?,
        )
    }

    /// `sendrawtransaction hex`.
    pub fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, RpcError> {
        from_json(
            "sendrawtransaction",
            self.call("sendrawtransaction", json!([serialize_hex(tx)]))?,
        )
    }

    /// `testmempoolaccept [hex…]`.
    pub fn test_mempool_accept(&self, txs: &[Transaction]) -> Result<Vec<MempoolAccept>, RpcError> {
        let hexes: Vec<String> = txs.iter().map(serialize_hex).collect();
        from_json(
            "testmempoolaccept",
            self.call("testmempoolaccept", json!([hexes]))?,
        )
    }

    /// `estimatesmartfee target`: `None` when Core has no estimate yet.
    pub fn estimate_smart_fee(&self, target_blocks: u16) -> Result<Option<FeeRate>, RpcError> {
        let v = self.call("estimatesmartfee", json!([target_blocks]))?;
        let Some(btc_per_kvb) = v.get("feerate").and_then(Value::as_f64) else {
            return Ok(None);
        };
        // BTC/kvB → sat/kwu: × 1e8 sat/BTC ÷ 4 wu/vB.
        let sat_per_kvb = (btc_per_kvb * 1e8).round();
        if !(0.0..=1e12).contains(&sat_per_kvb) {
            return Err(RpcError::Malformed {
                method: "estimatesmartfee".into(),
                reason: format!("fee rate {btc_per_kvb} out of range"),
            });
        }
        Ok(Some(FeeRate::from_sat_per_kwu((sat_per_kvb as u64) / 4)))
    }

    /// `generatetoaddress n address` (regtest): the new block hashes.
    pub fn generate_to_address(
        &self,
        blocks: u32,
        address: &Address,
    ) -> Result<Vec<BlockHash>, RpcError> {
        from_json(
            "generatetoaddress",
            self.call("generatetoaddress", json!([blocks, address.to_string()]))?,
        )
    }

    /// `generateblock address []`: one block with no transactions (the
    /// mempool stays as it is); regtest only.
    pub fn generate_empty_block(&self, address: &Address) -> Result<BlockHash, RpcError> {
        let v = self.call("generateblock", json!([address.to_string(), []]))?;
        from_json(
            "generateblock",
            v.get("hash").cloned().unwrap_or(Value::Null),
        )
    }

    /// `invalidateblock hash`.
    pub fn invalidate_block(&self, hash: &BlockHash) -> Result<(), RpcError> {
        self.call("invalidateblock", json!([hash])).map(drop)
    }

    /// `reconsiderblock hash`.
    pub fn reconsider_block(&self, hash: &BlockHash) -> Result<(), RpcError> {
        self.call("reconsiderblock", json!([hash])).map(drop)
    }

    /// `setmocktime t` (regtest): the node's clock, 0 to restore the real one.
    pub fn set_mock_time(&self, unix: u64) -> Result<(), RpcError> {
        self.call("setmocktime", json!([unix])).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://127.0.0.1:18443").unwrap(),
            ("127.0.0.1:18443".into(), "/".into())
        );
        assert_eq!(
            parse_url("http://[::1]:8332/wallet/x").unwrap(),
            ("[::1]:8332".into(), "/wallet/x".into())
        );
        for bad in [
            "https://h:1",
            "h:1",
            "http://h",
            "http://u:p@h:1",
            "http://:1",
            "http://h:99999",
        ] {
            assert!(
                matches!(parse_url(bad), Err(RpcError::BadUrl { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn auth_debug_hides_the_password() {
        let a = RpcAuth::UserPass {
            user: "u".into(),
            password: Zeroizing::new("hunter2".into()),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
