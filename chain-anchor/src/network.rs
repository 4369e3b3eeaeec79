//! Per-network chain parameters: consensus parameters, genesis, checkpoints,
//! and the name Bitcoin Core reports for the chain.

use bitcoin::block::Header;
use bitcoin::consensus::Params;
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Network};

/// The networks Cairn anchors on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainNetwork {
    /// Bitcoin mainnet.
    Mainnet,
    /// Testnet4 (BIP94).
    Testnet4,
    /// The default signet.
    Signet,
    /// Regtest (and the devnet stand-in).
    Regtest,
}

impl ChainNetwork {
    /// Every network, mainnet first.
    pub const ALL: [ChainNetwork; 4] = [
        ChainNetwork::Mainnet,
        ChainNetwork::Testnet4,
        ChainNetwork::Signet,
        ChainNetwork::Regtest,
    ];

    /// The `chain` field Bitcoin Core's `getblockchaininfo` reports.
    pub fn core_chain_name(self) -> &'static str {
        match self {
            ChainNetwork::Mainnet => "main",
            ChainNetwork::Testnet4 => "testnet4",
            ChainNetwork::Signet => "signet",
            ChainNetwork::Regtest => "regtest",
        }
    }

    /// The `bitcoin` crate's network.
    pub fn bitcoin_network(self) -> Network {
        match self {
            ChainNetwork::Mainnet => Network::Bitcoin,
            ChainNetwork::Testnet4 => Network::Testnet4,
            ChainNetwork::Signet => Network::Signet,
            ChainNetwork::Regtest => Network::Regtest,
        }
    }
}

impl std::str::FromStr for ChainNetwork {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "main" | "mainnet" | "bitcoin" => Ok(ChainNetwork::Mainnet),
            "testnet4" => Ok(ChainNetwork::Testnet4),
            "signet" => Ok(ChainNetwork::Signet),
            "regtest" => Ok(ChainNetwork::Regtest),
            other => Err(format!(
                "unknown network {other:?}: use main, testnet4, signet or regtest"
            )),
        }
    }
}

/// Bitcoin Core's historical mainnet checkpoints (`checkpointData`, public facts).
const MAINNET_CHECKPOINTS: &[(u32, &str)] = &[
    (
        11111,
        "0000000069e244f73d78e8fd29ba2fd2ed618bd6fa2ee92559f542fdb26e7c1d",
    ),
    (
        33333,
        "000000002dd5588a74784eaa7ab0507a18ad16a236e7b1ce69f00d7ddfb5d0a6",
    ),
    (
        74000,
        "0000000000573993a3c9e41ce34471c079dcf5f52a0e824a81e7f953b8661a20",
    ),
    (
        105000,
        "00000000000291ce28027faea320c8d2b054b2e0fe44a773f3eefb151d6bdc97",
    ),
    (
        134444,
        "00000000000005b12ffd4cd315cd34ffd4a594f430ac814c91184a0d42d2b0fe",
    ),
    (
        168000,
        "000000000000099e61ea72015e79632f216fe6cb33d7899acb35b75c8303b763",
    ),
    (
        193000,
        "000000000000059f452a5f7340de6682a977387c17010ff6e6c3bd83ca8b1317",
    ),
    (
        210000,
        "000000000000048b95347e83192f69cf0366076336c639f9b7228e9ba171342e",
    ),
    (
        216116,
        "00000000000001b4f4b433e81ee46494af945cf96014816a4e2370f11b23df4e",
    ),
    (
        225430,
        "00000000000001c108384350f74090433e7fcf79a606b8e797f065b130575932",
    ),
    (
        250000,
        "000000000000003887df1f29024b06fc2200b55f8af8f35453d7be294df2d214",
    ),
    (
        295000,
        "00000000000000004d9b4ef50f0f9d686fd69db2e03af35a100370c64632a983",
    ),
];

/// Everything the header chain needs to know about a network.
#[derive(Debug, Clone)]
pub struct ChainParams {
    /// Which network.
    pub network: ChainNetwork,
    /// Consensus parameters (retarget interval, limits, min-difficulty rules).
    pub consensus: Params,
    /// The genesis header.
    pub genesis: Header,
    /// Hard-coded checkpoints `(height, hash)`, ascending.
    pub checkpoints: Vec<(u32, BlockHash)>,
    /// BIP94 (testnet4): retarget from the period's first block's bits, and the
    /// time-warp rule at period boundaries.
    pub enforce_bip94: bool,
}

impl ChainParams {
    /// The parameters of `network`.
    pub fn new(network: ChainNetwork) -> Self {
        let consensus = Params::new(network.bitcoin_network());
        let genesis = bitcoin::blockdata::constants::genesis_block(&consensus).header;
        let checkpoints = match network {
            ChainNetwork::Mainnet => MAINNET_CHECKPOINTS
                .iter()
                .map(|(h, s)| {
                    (
                        *h,
                        s.parse()
                            .unwrap_or_else(|_| unreachable!("checkpoint hashes are valid hex")),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        ChainParams {
            network,
            consensus,
            genesis,
            checkpoints,
            enforce_bip94: network == ChainNetwork::Testnet4,
        }
    }

    /// The genesis block hash.
    pub fn genesis_hash(&self) -> BlockHash {
        self.genesis.block_hash()
    }

    /// Blocks per difficulty period (2016).
    pub fn interval(&self) -> u32 {
        self.consensus.difficulty_adjustment_interval() as u32
    }

    /// The last checkpoint, if any.
    pub fn last_checkpoint(&self) -> Option<(u32, BlockHash)> {
        self.checkpoints.last().copied()
    }

    /// The checkpoint at `height`, if there is one.
    pub fn checkpoint_at(&self, height: u32) -> Option<BlockHash> {
        self.checkpoints
            .iter()
            .find(|(h, _)| *h == height)
            .map(|(_, b)| *b)
    }
}

/// All-zero block hash (the genesis block's parent).
pub fn null_hash() -> BlockHash {
    BlockHash::all_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_hashes_are_the_known_ones() {
        let main = ChainParams::new(ChainNetwork::Mainnet);
        assert_eq!(
            main.genesis_hash().to_string(),
            "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
        );
        let reg = ChainParams::new(ChainNetwork::Regtest);
        assert_eq!(
            reg.genesis_hash().to_string(),
            "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
        );
        assert_eq!(main.interval(), 2016);
        assert_eq!(main.last_checkpoint().map(|c| c.0), Some(295000));
        assert!(ChainParams::new(ChainNetwork::Testnet4).enforce_bip94);
        assert_eq!("main".parse::<ChainNetwork>(), Ok(ChainNetwork::Mainnet));
        assert!("testnet3".parse::<ChainNetwork>().is_err());
    }
}
