//! The devnet: a regtest Bitcoin chain for tests and the quick start, with
//! no Internet and nothing to install.
//!
//! When a real `bitcoind` is on `PATH` (and `CAIRN_DEVNET` is not `builtin`),
//! [`Devnet::start`] runs it in regtest mode on loopback with a temporary
//! data directory. Otherwise it starts the built-in stand-in: it mines
//! consensus-valid blocks with the `bitcoin` crate (real proof-of-work at the
//! regtest target, merkle roots, witness commitments, BIP34 heights, coinbase
//! maturity 100), validates scripts with Bitcoin Core's own consensus code
//! (libbitcoinconsensus), keeps a mempool and a UTXO set, and serves the
//! subset of Bitcoin Core's JSON-RPC that Cairn uses. Either way the node
//! talks to it through the same [`cairn_chain_anchor::rpc::RpcClient`] it uses
//! with Bitcoin Core.
//!
//! * [`chain`]: blocks, UTXO set, reorgs (sans I/O).
//! * [`mempool`]: acceptance checks and Core's reject reasons.
//! * [`server`]: the HTTP JSON-RPC server.
//! * [`wallet`]: a one-key wallet that receives rewards and signs spends.

pub mod bitcoind;
pub mod chain;
pub mod mempool;
pub mod server;
pub mod wallet;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cairn_chain_anchor::rpc::{RpcAuth, RpcClient, RpcConfig, RpcError};
use cairn_chain_anchor::ChainNetwork;

pub use chain::DevChain;
pub use server::{Server, LABEL};
pub use wallet::DevWallet;

/// Why a devnet did not start.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// A file or socket operation failed.
    #[error("devnet: {0}")]
    Io(#[from] std::io::Error),
    /// `bitcoind` did not come up.
    #[error("devnet: bitcoind did not start: {0}")]
    Bitcoind(String),
    /// The RPC failed.
    #[error("devnet: {0}")]
    Rpc(#[from] RpcError),
}

enum Backend {
    Builtin(Server),
    Bitcoind(bitcoind::Bitcoind),
}

/// A running devnet. Dropping it stops it and removes its files.
pub struct Devnet {
    backend: Backend,
    url: String,
    cookie: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("url", &self.url)
            .field("kind", &self.kind())
            .finish()
    }
}

impl Devnet {
    /// A real `bitcoind -regtest` if one is on `PATH` (unless `CAIRN_DEVNET=builtin`),
    /// else the built-in stand-in.
    pub fn start() -> Result<Devnet, DevnetError> {
        let forced_builtin = std::env::var("CAIRN_DEVNET").is_ok_and(|v| v == "builtin");
        match bitcoind::find_on_path() {
            Some(path) if !forced_builtin => Devnet::start_bitcoind(&path),
            _ => Devnet::start_builtin(),
        }
    }

    /// The built-in stand-in on a free loopback port, with a cookie file.
    pub fn start_builtin() -> Result<Devnet, DevnetError> {
        Devnet::start_builtin_on("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!()))
    }

    /// The built-in stand-in on `bind` (loopback only).
    pub fn start_builtin_on(bind: SocketAddr) -> Result<Devnet, DevnetError> {
        let dir = tempfile::Builder::new().prefix("cairn-devnet").tempdir()?;
        let cookie_text = server::new_cookie()?;
        let cookie = dir.path().join(".cookie");
        write_private(&cookie, cookie_text.as_bytes())?;
        let (user, pass) = cookie_text
            .split_once(':')
            .unwrap_or_else(|| unreachable!("a cookie has a colon"));
        let auth = vec![cairn_chain_anchor::rpc::http::basic_auth(user, pass)];
        let server = Server::start(DevChain::new(), bind, auth)?;
        Ok(Devnet {
            url: format!("http://{}", server.addr()),
            backend: Backend::Builtin(server),
            cookie,
            _dir: dir,
        })
    }

    /// A real `bitcoind` at `path`, regtest, loopback only, temporary data dir.
    pub fn start_bitcoind(path: &Path) -> Result<Devnet, DevnetError> {
        let dir = tempfile::Builder::new()
            .prefix("cairn-bitcoind")
            .tempdir()?;
        let (process, port) = bitcoind::Bitcoind::spawn(path, dir.path())?;
        let cookie = dir.path().join("regtest").join(".cookie");
        let url = format!("http://127.0.0.1:{port}");
        let devnet = Devnet {
            backend: Backend::Bitcoind(process),
            url,
            cookie,
            _dir: dir,
        };
        devnet.wait_ready()?;
        Ok(devnet)
    }

    fn wait_ready(&self) -> Result<(), DevnetError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let attempt = if self.cookie.exists() {
                self.client().and_then(|c| c.check_network()).map(drop)
            } else {
                Err(RpcError::Cookie {
                    path: self.cookie.clone(),
                    reason: "not written yet".into(),
                })
            };
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if std::time::Instant::now() > deadline => {
                    return Err(DevnetError::Bitcoind(e.to_string()))
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    }

    /// `"builtin"` or `"bitcoind"`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Builtin(_) => "builtin",
            Backend::Bitcoind(_) => "bitcoind",
        }
    }

    /// What to show people: the stand-in's label, or the real node.
    pub fn label(&self) -> &'static str {
        match self.backend {
            Backend::Builtin(_) => LABEL,
            Backend::Bitcoind(_) => "bitcoind -regtest (temporary data dir)",
        }
    }

    /// The RPC URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The cookie file.
    pub fn cookie_path(&self) -> &Path {
        &self.cookie
    }

    /// An RPC configuration for this devnet (regtest, cookie auth).
    pub fn rpc_config(&self) -> RpcConfig {
        RpcConfig::new(
            self.url.clone(),
            RpcAuth::Cookie(self.cookie.clone()),
            ChainNetwork::Regtest,
        )
    }

    /// A client of this devnet.
    pub fn client(&self) -> Result<RpcClient, RpcError> {
        RpcClient::new(self.rpc_config())
    }

    /// The built-in server, when this is the stand-in.
    pub fn builtin(&self) -> Option<&Server> {
        match &self.backend {
            Backend::Builtin(s) => Some(s),
            Backend::Bitcoind(_) => None,
        }
    }

    /// Stops the chain; its RPC becomes unreachable.
    pub fn stop(&mut self) {
        match &mut self.backend {
            Backend::Builtin(s) => s.stop(),
            Backend::Bitcoind(b) => b.stop(),
        }
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}
