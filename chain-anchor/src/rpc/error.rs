//! What can go wrong talking to Bitcoin Core.

use std::path::PathBuf;

/// Bitcoin Core's RPC error codes that Cairn acts on (`src/rpc/protocol.h`).
pub mod codes {
    /// `RPC_MISC_ERROR`.
    pub const MISC_ERROR: i64 = -1;
    /// `RPC_INVALID_ADDRESS_OR_KEY`: unknown block or transaction.
    pub const INVALID_ADDRESS_OR_KEY: i64 = -5;
    /// `RPC_INVALID_PARAMETER`: e.g. a block height out of range.
    pub const INVALID_PARAMETER: i64 = -8;
    /// `RPC_DESERIALIZATION_ERROR`.
    pub const DESERIALIZATION_ERROR: i64 = -22;
    /// `RPC_VERIFY_ERROR` (`RPC_TRANSACTION_ERROR`): missing or spent inputs.
    pub const VERIFY_ERROR: i64 = -25;
    /// `RPC_VERIFY_REJECTED` (`RPC_TRANSACTION_REJECTED`): policy or consensus reject.
    pub const VERIFY_REJECTED: i64 = -26;
    /// `RPC_VERIFY_ALREADY_IN_CHAIN`.
    pub const VERIFY_ALREADY_IN_CHAIN: i64 = -27;
    /// `RPC_IN_WARMUP`: the node is still loading.
    pub const IN_WARMUP: i64 = -28;
    /// `RPC_INVALID_REQUEST`.
    pub const INVALID_REQUEST: i64 = -32600;
    /// `RPC_METHOD_NOT_FOUND`.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// `RPC_INVALID_PARAMS`.
    pub const INVALID_PARAMS: i64 = -32602;
    /// `RPC_PARSE_ERROR`.
    pub const PARSE_ERROR: i64 = -32700;
}

/// Why an RPC call failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The URL is not one the client can use.
    #[error("bad RPC URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be made, or it broke or timed out.
    #[error("Bitcoin Core at {url} is unreachable: {source}")]
    Unreachable {
        /// Where the client tried.
        url: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The cookie file could not be read.
    #[error("cannot read the RPC cookie file {path}: {reason} (is bitcoind running with this datadir and network?)")]
    Cookie {
        /// The cookie file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// HTTP 401: the user name, password or cookie is wrong.
    #[error("Bitcoin Core at {url} refused the RPC credentials (HTTP 401): check rpcuser/rpcpassword or the cookie file")]
    AuthFailed {
        /// The server.
        url: String,
    },
    /// HTTP 403: the server does not allow this client (`rpcallowip`).
    #[error("Bitcoin Core at {url} forbids RPC from this address (HTTP 403): check rpcallowip")]
    Forbidden {
        /// The server.
        url: String,
    },
    /// The node runs another chain than the one configured.
    #[error("Bitcoin Core runs chain {found:?} but Cairn is configured for {expected:?}")]
    WrongNetwork {
        /// Core's chain name for the configured network.
        expected: String,
        /// What `getblockchaininfo.chain` reported.
        found: String,
    },
    /// The node was still warming up (RPC code -28) after every retry.
    #[error("Bitcoin Core is still starting up after {waited_ms} ms of retries: {message}")]
    WarmingUp {
        /// Core's message ("Loading block index…").
        message: String,
        /// How long the client retried.
        waited_ms: u64,
    },
    /// The server answered with a JSON-RPC error.
    #[error("{method}: Bitcoin Core error {code}: {message}")]
    Server {
        /// The method called.
        method: String,
        /// Core's error code (see [`codes`]).
        code: i64,
        /// Core's message, e.g. a mempool reject reason.
        message: String,
    },
    /// An HTTP status the protocol does not explain.
    #[error("unexpected HTTP status {status} from {url}")]
    HttpStatus {
        /// The server.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The reply is not what Core's documented RPC returns.
    #[error("{method}: malformed reply: {reason}")]
    Malformed {
        /// The method called.
        method: String,
        /// What was wrong.
        reason: String,
    },
}

impl RpcError {
    /// Core's error code, when the server answered with one.
    pub fn code(&self) -> Option<i64> {
        match self {
            RpcError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying later may succeed (connection trouble, warm-up).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RpcError::Unreachable { .. } | RpcError::WarmingUp { .. }
        )
    }
}
