//! The node's configuration file, `DIR/cairn.toml`. Every setting has a
//! default and can be overridden by a command-line flag.
//!
//! ```toml
//! [bitcoin]
//! network = "main"                     # main, testnet4, signet or regtest
//! rpc_url = "http://127.0.0.1:8332"    # default: Core's port for the network
//! rpc_cookie = "/home/me/.bitcoin/.cookie"  # default: Core's cookie path for the network
//! # or, instead of the cookie:
//! # rpc_user = "cairn"
//! # rpc_password_file = "/home/me/.cairn-rpc-password"   # or CAIRN_RPC_PASSWORD
//! confirmations = 6
//! rpc_timeout_secs = 30
//!
//! [node]                               # `cairn node`, the daemon
//! api = "127.0.0.1:4418"               # the local API; loopback only
//! poll_secs = 10                       # how often the chain source is asked for new blocks
//! log_level = "info"
//!
//! [network]                            # the libp2p network (builds with the `network` feature)
//! enabled = true
//! listen = ["/ip4/0.0.0.0/tcp/4419", "/ip4/0.0.0.0/udp/4419/quic-v1"]
//! bootstrap = ["/ip4/192.0.2.1/tcp/4419/p2p/12D3KooW…"]
//! full = true                          # serve the DHT, keep records for others, relay
//! mdns = true                          # find peers on the LAN
//! mailbox = true                       # a full node keeps envelopes for others (30 days, quotas)
//! collect_secs = 30                    # how often the own mailbox nodes are asked for new mail
//! direct = true                        # contacts may deliver to this node directly (false: only through mailboxes)
//! ```
//!
//! The password is never read from this file: a file of its own (owner-only)
//! or the environment keeps it out of configs people share.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_chain_anchor::rpc::{RpcAuth, RpcConfig};
use cairn_chain_anchor::ChainNetwork;
use serde::Deserialize;
use zeroize::Zeroizing;

/// File name of the configuration in the data directory.
pub const CONFIG_FILE: &str = "cairn.toml";
/// Largest configuration file read.
pub const MAX_CONFIG_LEN: u64 = 64 * 1024;

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
    /// A user name without a password, or the reverse.
    #[error("rpc_user needs a password: set rpc_password_file or CAIRN_RPC_PASSWORD")]
    MissingPassword,
    /// The platform has no home directory for the default cookie path.
    #[error("no default cookie path on this platform: set rpc_cookie")]
    NoCookiePath,
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[bitcoin]`.
    #[serde(default)]
    pub bitcoin: BitcoinConfig,
    /// `[node]`.
    #[serde(default)]
    pub node: NodeConfig,
    /// `[network]`.
    #[serde(default)]
    pub network: NetworkConfig,
}

/// The default TCP port of the network.
pub const DEFAULT_NETWORK_PORT: u16 = 4419;

/// `[network]`: the libp2p network of `cairn node` (used by builds with the
/// `network` feature; addresses are checked when the network starts).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Whether `cairn node` joins the network.
    pub enabled: bool,
    /// Multiaddresses to listen on.
    pub listen: Vec<String>,
    /// Peers to start from (multiaddresses ending in `/p2p/PEER_ID`).
    pub bootstrap: Vec<String>,
    /// A full node serves the DHT and keeps records for others.
    pub full: bool,
    /// Find peers on the LAN with mDNS.
    pub mdns: bool,
    /// A full node also keeps envelopes for others as a mailbox node
    /// (within quotas, for 30 days).
    pub mailbox: bool,
    /// Seconds between two looks at the own mailbox nodes for new mail
    /// (1 to [`MAX_POLL_SECS`]).
    pub collect_secs: u64,
    /// Tell contacts where this node is, so that they deliver to it
    /// directly; `false`: every message comes through the mailbox nodes,
    /// and contacts never learn this node's peer id (or its address).
    pub direct: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            enabled: true,
            listen: vec![
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_NETWORK_PORT}"),
                format!("/ip4/0.0.0.0/udp/{DEFAULT_NETWORK_PORT}/quic-v1"),
            ],
            bootstrap: Vec::new(),
            full: true,
            mdns: true,
            mailbox: true,
            collect_secs: 30,
            direct: true,
        }
    }
}

/// The default port of the local API.
pub const DEFAULT_API_PORT: u16 = 4418;
/// Longest interval between two looks at the chain source, seconds.
pub const MAX_POLL_SECS: u64 = 3600;

/// `[node]`: the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Address of the local API (loopback only).
    pub api: SocketAddr,
    /// Seconds between two looks at the chain source for new blocks
    /// (1 to [`MAX_POLL_SECS`]).
    pub poll_secs: u64,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            api: SocketAddr::from(([127, 0, 0, 1], DEFAULT_API_PORT)),
            poll_secs: 10,
            log_level: "info".into(),
        }
    }
}

impl NetworkConfig {
    /// The interval between looks at the own mailboxes, clamped to
    /// 1 s ..= [`MAX_POLL_SECS`].
    pub fn collect_interval(&self) -> Duration {
        Duration::from_secs(self.collect_secs.clamp(1, MAX_POLL_SECS))
    }
}

impl NodeConfig {
    /// The poll interval, clamped to 1 s ..= [`MAX_POLL_SECS`].
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_secs.clamp(1, MAX_POLL_SECS))
    }
}

/// `[bitcoin]`: the chain and how to reach Bitcoin Core.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BitcoinConfig {
    /// The network.
    #[serde(default = "default_network", deserialize_with = "network_from_str")]
    pub network: ChainNetwork,
    /// Core's RPC URL (default: localhost and the network's port).
    pub rpc_url: Option<String>,
    /// Core's cookie file (default: `~/.bitcoin/[chain/].cookie`).
    pub rpc_cookie: Option<PathBuf>,
    /// RPC user name (instead of the cookie).
    pub rpc_user: Option<String>,
    /// File holding the RPC password (first line).
    pub rpc_password_file: Option<PathBuf>,
    /// Confirmations a seal needs before it counts.
    #[serde(default = "default_confirmations")]
    pub confirmations: u32,
    /// Timeout of one RPC call, seconds.
    #[serde(default = "default_timeout")]
    pub rpc_timeout_secs: u64,
}

fn default_network() -> ChainNetwork {
    ChainNetwork::Mainnet
}
fn default_confirmations() -> u32 {
    6
}
fn default_timeout() -> u64 {
    30
}

fn network_from_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ChainNetwork, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl Default for BitcoinConfig {
    fn default() -> Self {
        BitcoinConfig {
            network: default_network(),
            rpc_url: None,
            rpc_cookie: None,
            rpc_user: None,
            rpc_password_file: None,
            confirmations: default_confirmations(),
            rpc_timeout_secs: default_timeout(),
        }
    }
}

/// Bitcoin Core's default RPC port of `network`.
pub fn default_rpc_port(network: ChainNetwork) -> u16 {
    match network {
        ChainNetwork::Mainnet => 8332,
        ChainNetwork::Testnet4 => 48332,
        ChainNetwork::Signet => 38332,
        ChainNetwork::Regtest => 18443,
    }
}

/// Bitcoin Core's default cookie path of `network` (`~/.bitcoin/...` on Linux).
pub fn default_cookie_path(network: ChainNetwork) -> Option<PathBuf> {
    let base = if cfg!(target_os = "macos") {
        dirs::home_dir()?.join("Library/Application Support/Bitcoin")
    } else if cfg!(windows) {
        dirs::data_dir()?.join("Bitcoin")
    } else {
        dirs::home_dir()?.join(".bitcoin")
    };
    Some(match network {
        ChainNetwork::Mainnet => base.join(".cookie"),
        ChainNetwork::Testnet4 => base.join("testnet4").join(".cookie"),
        ChainNetwork::Signet => base.join("signet").join(".cookie"),
        ChainNetwork::Regtest => base.join("regtest").join(".cookie"),
    })
}

impl Config {
    /// Reads `DIR/cairn.toml`; a missing file gives the defaults.
    pub fn load(dir: &Path) -> Result<Config, ConfigError> {
        let path = dir.join(CONFIG_FILE);
        let read = |source| ConfigError::Read {
            path: path.clone(),
            source,
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(read(e)),
        };
        if meta.len() > MAX_CONFIG_LEN {
            return Err(ConfigError::Invalid {
                path,
                message: format!("larger than {MAX_CONFIG_LEN} bytes"),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(read)?;
        Config::parse(&text).map_err(|message| ConfigError::Invalid { path, message })
    }

    /// Parses the text of a configuration file.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }
}

impl BitcoinConfig {
    /// The RPC configuration these settings describe. The password comes
    /// from `rpc_password_file` or, failing that, `env_password`.
    pub fn rpc_config(&self, env_password: Option<String>) -> Result<RpcConfig, ConfigError> {
        let url = self
            .rpc_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", default_rpc_port(self.network)));
        let auth = match &self.rpc_user {
            Some(user) => {
                let password = match &self.rpc_password_file {
                    Some(p) => {
                        let text =
                            Zeroizing::new(std::fs::read_to_string(p).map_err(|source| {
                                ConfigError::Read {
                                    path: p.clone(),
                                    source,
                                }
                            })?);
                        Zeroizing::new(text.lines().next().unwrap_or("").to_owned())
                    }
                    None => Zeroizing::new(env_password.ok_or(ConfigError::MissingPassword)?),
                };
                RpcAuth::UserPass {
                    user: user.clone(),
                    password,
                }
            }
            None => RpcAuth::Cookie(match &self.rpc_cookie {
                Some(p) => p.clone(),
                None => default_cookie_path(self.network).ok_or(ConfigError::NoCookiePath)?,
            }),
        };
        let mut cfg = RpcConfig::new(url, auth, self.network);
        cfg.timeout = Duration::from_secs(self.rpc_timeout_secs.max(1));
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_section() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.node.api.port(), DEFAULT_API_PORT);
        assert!(c.node.api.ip().is_loopback());
        assert_eq!(c.node.poll_interval(), Duration::from_secs(10));
        let c = Config::parse("[node]\napi = \"127.0.0.1:0\"\npoll_secs = 0\n").unwrap();
        assert_eq!(c.node.api.port(), 0);
        assert_eq!(c.node.poll_interval(), Duration::from_secs(1));
        assert!(Config::parse("[node]\nlisten = []\n").is_err());
        let c = Config::parse("[network]\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\nfull = false\n")
            .unwrap();
        assert_eq!(c.network.listen, ["/ip4/127.0.0.1/tcp/0"]);
        assert!(!c.network.full && c.network.enabled);
        assert!(Config::default().network.bootstrap.is_empty());
        assert!(Config::parse("[network]\nlisten = \"x\"\n").is_err());
        assert!(Config::parse("[node]\napi = \"localhost\"\n").is_err());
    }

    #[test]
    fn defaults_and_a_full_file() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.bitcoin.network, ChainNetwork::Mainnet);
        assert_eq!(c.bitcoin.confirmations, 6);
        let c = Config::parse(
            "[bitcoin]\nnetwork = \"regtest\"\nrpc_url = \"http://127.0.0.1:1\"\nrpc_cookie = \"/x/.cookie\"\nconfirmations = 2\n",
        )
        .unwrap();
        assert_eq!(c.bitcoin.network, ChainNetwork::Regtest);
        let rpc = c.bitcoin.rpc_config(None).unwrap();
        assert_eq!(rpc.url, "http://127.0.0.1:1");
        assert!(matches!(rpc.auth, RpcAuth::Cookie(ref p) if p == Path::new("/x/.cookie")));
    }

    #[test]
    fn bad_files_are_explained() {
        let e = Config::parse("[bitcoin]\nnetwork = \"moon\"\n").unwrap_err();
        assert!(e.contains("moon"), "{e}");
        let e = Config::parse("[bitcoin]\nrpc_pasword = \"x\"\n").unwrap_err();
        assert!(e.contains("rpc_pasword"), "{e}");
        let e = Config::parse("[bitcoin\n").unwrap_err();
        assert!(e.contains("line 1") || e.contains("1:"), "{e}");
        let c = Config::parse("[bitcoin]\nrpc_user = \"u\"\n").unwrap();
        assert!(matches!(
            c.bitcoin.rpc_config(None),
            Err(ConfigError::MissingPassword)
        ));
        assert!(c.bitcoin.rpc_config(Some("pw".into())).is_ok());
    }
}
