//! `cairn`: the command line of a Cairn node.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Cairn: a messenger with no server to trust. Your identity is a seed phrase;
/// your keys are checked against Bitcoin.
#[derive(Parser)]
#[command(name = "cairn", version, propagate_version = true)]
struct Cli {
    /// Data directory (default: the platform data directory, e.g. ~/.local/share/cairn).
    #[arg(long, global = true, env = "CAIRN_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Log level on standard error: error, warn, info, debug or trace
    /// (default: warn; for `cairn node`, [node] log_level or info).
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<tracing::Level>,
    /// Read the keystore passphrase from the first line of FILE (instead of
    /// CAIRN_PASSPHRASE or a prompt).
    #[arg(long, global = true, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new identity: shows a new seed phrase once and asks you to confirm it.
    Init {
        /// Number of words: 12 or 24.
        #[arg(long, default_value_t = 12, value_parser = parse_word_count)]
        words: usize,
        /// Skip the confirmation of the words (for scripts).
        #[arg(long)]
        yes: bool,
        /// Also protect the seed with a BIP39 passphrase (from CAIRN_BIP39_PASSPHRASE or a prompt).
        #[arg(long)]
        bip39_passphrase: bool,
    },
    /// Restore an identity from its seed phrase (from the terminal, or standard input).
    Restore {
        #[command(flatten)]
        bitcoin: cli::chain::BitcoinArgs,
        /// The seed was created with a BIP39 passphrase (from CAIRN_BIP39_PASSPHRASE or a prompt).
        #[arg(long)]
        bip39_passphrase: bool,
        /// Only regenerate the identity from the words; do not follow it on chain.
        #[arg(long)]
        offline: bool,
    },
    /// Show this node's identity: id, fingerprint, rotation index and keys.
    Id {
        #[command(flatten)]
        bitcoin: cli::chain::BitcoinArgs,
        #[command(subcommand)]
        command: Option<IdCommand>,
    },
    /// Anchor this identity in Bitcoin: create the inception seal from the
    /// funding wallet, broadcast it and wait for its confirmations.
    Anchor {
        #[command(flatten)]
        bitcoin: cli::chain::BitcoinArgs,
        /// Fee rate in sat/vB (default: the chain source's estimate).
        #[arg(long, value_name = "SAT_PER_VB")]
        fee_rate: Option<u64>,
        /// What the seal holds, paying for later rotations (default 10000 sat).
        #[arg(long, value_name = "AMOUNT")]
        seal_value: Option<String>,
        /// Broadcast (or check) and return without waiting for confirmations.
        #[arg(long)]
        no_wait: bool,
    },
    /// Rotate to the next pre-committed keys: spend the current seal with the
    /// next key (which only the seed gives) into the seal of the new event.
    Rotate {
        #[command(flatten)]
        bitcoin: cli::chain::BitcoinArgs,
        /// Fee rate in sat/vB (default: the chain source's estimate).
        #[arg(long, value_name = "SAT_PER_VB")]
        fee_rate: Option<u64>,
        /// Type the seed words instead of unlocking the seed keystore.
        #[arg(long)]
        typed_words: bool,
        /// Broadcast and return without waiting for confirmations.
        #[arg(long)]
        no_wait: bool,
    },
    /// Other people's identities: add their bundles, check them against Bitcoin.
    Contact {
        #[command(flatten)]
        bitcoin: cli::chain::BitcoinArgs,
        #[command(subcommand)]
        command: ContactCommand,
    },
    /// Show the safety number between this identity and another, to compare out of band.
    SafetyNumber {
        /// The other identity's id (cairn1…).
        id: String,
    },
    /// Export or verify key event logs.
    #[command(subcommand)]
    Log(LogCommand),
    /// Check the keystore.
    #[command(subcommand)]
    Keystore(KeystoreCommand),
    /// The prekeys contacts use to write to you while you are offline:
    /// list them, or publish a new one in your log (asks the passphrase).
    Prekeys {
        #[command(subcommand)]
        command: Option<PrekeysCommand>,
    },
    /// Send a message to a contact (TEXT, or standard input): stored at
    /// once, delivered by the running node.
    #[cfg(feature = "network")]
    Send {
        /// The contact's name or id.
        contact: String,
        /// The message (default: read from standard input).
        text: Option<String>,
    },
    /// Messages received and not yet read (marked read once written out).
    #[cfg(feature = "network")]
    Inbox,
    /// The conversation with a contact (every conversation without one):
    /// messages in order, with the state of those you sent.
    #[cfg(feature = "network")]
    Messages {
        /// The contact's name or id.
        contact: Option<String>,
        /// How many of the newest to show.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Chat with a contact in the terminal: new messages appear as they
    /// arrive, delivery states as they change; each line typed is sent.
    #[cfg(feature = "network")]
    Chat {
        /// The contact's name or id.
        contact: String,
    },
    /// The mailbox nodes that keep your messages while your node is away:
    /// show them, or name new ones in your log (asks the passphrase).
    #[cfg(feature = "network")]
    Mailboxes {
        /// Peer ids of full nodes (12D3KooW…); none: show the current ones.
        peers: Vec<String>,
    },
    /// The Bitcoin header chain: status and sync from Bitcoin Core.
    Chain {
        #[command(flatten)]
        bitcoin: cli::chain::BitcoinArgs,
        #[command(subcommand)]
        command: ChainCommand,
    },
    /// Run the node in the foreground (until Ctrl-C): it follows Bitcoin
    /// block by block, checks this identity and every contact at each new
    /// block, and serves the local API; or talk to the running node.
    Node {
        #[command(flatten)]
        bitcoin: cli::chain::BitcoinArgs,
        #[command(flatten)]
        args: cli::node::NodeArgs,
        #[command(subcommand)]
        command: Option<NodeCommand>,
    },
    /// The identity funding wallet (BIP86, from the seed): it pays for anchoring.
    Wallet {
        #[command(flatten)]
        bitcoin: cli::chain::BitcoinArgs,
        #[command(subcommand)]
        command: WalletCommand,
    },
}

#[derive(Subcommand)]
enum IdCommand {
    /// Print the identity bundle (log and seal proofs) as a text string to
    /// share, and write it to FILE when given.
    Export {
        /// Also write the binary bundle here.
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ContactCommand {
    /// Add (or update) a contact from its bundle: the text string or a file.
    Add {
        /// The bundle text (cairn-bundle:…) or a file holding it.
        bundle: String,
        /// A name to call the contact by.
        #[arg(long)]
        name: Option<String>,
    },
    /// List contacts.
    List,
    /// Who wrote to you first without being a contact (their messages wait
    /// until you add them, e.g. with `cairn contact fetch ID`).
    #[cfg(feature = "network")]
    Requests {
        /// Forget the request of this identity id.
        #[arg(long, value_name = "ID")]
        dismiss: Option<String>,
    },
    /// Give a contact another name.
    Rename {
        /// Identity id or current name.
        contact: String,
        /// The new name.
        name: String,
    },
    /// Remove a contact and delete your conversation with them (their first
    /// messages are refused from then on, as a stranger's).
    Remove {
        /// Identity id or contact name.
        contact: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Find a contact's identity record in the network by its id, verify it
    /// and add it (through the running node).
    Fetch {
        /// The contact's identity id (cairn1…).
        id: String,
        /// A name to call the contact by.
        #[arg(long)]
        name: Option<String>,
    },
    /// Check a contact's key against Bitcoin (every contact without an
    /// argument): current, pending, stale, reorged, invalid or unanchored;
    /// rotations since the last check are followed from the chain.
    Verify {
        /// Identity id or contact name (default: every contact).
        contact: Option<String>,
    },
}

#[derive(Subcommand)]
enum NodeCommand {
    /// Chain tip, chain source, identities watched, store size.
    Status,
    /// The verdict of this identity and of each contact at the last block.
    Identities,
    /// What the node noticed (rotations followed, identities gone stale or
    /// reorged, the chain source failing), oldest first.
    Events {
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0, value_name = "SEQ")]
        after: u64,
        /// Wait up to this many seconds (at most 60) for a new event.
        #[arg(long, default_value_t = 0, value_name = "SECONDS")]
        wait: u64,
    },
    /// Stop the running node.
    Stop,
}

#[derive(Subcommand)]
enum WalletCommand {
    /// A fresh receive address.
    Address,
    /// Sync, then show the balance.
    Balance,
    /// Pay AMOUNT (BTC, or with a unit: "1000 sat") to ADDRESS; needs the keystore passphrase.
    Send {
        /// Where to.
        address: String,
        /// How much: BTC, or a number and a unit ("0.001 BTC", "25000 sat").
        amount: String,
        /// Fee rate in sat/vB (default: the chain source's estimate, at least 1).
        #[arg(long, value_name = "SAT_PER_VB")]
        fee_rate: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ChainCommand {
    /// Network, tip, chain work, the source and how far behind it the node is.
    Status,
    /// Fetch and validate headers from the chain source up to its tip.
    Sync,
}

#[derive(Subcommand)]
enum LogCommand {
    /// Write this identity's key event log to FILE.
    Export {
        /// Where to write it.
        file: PathBuf,
    },
    /// Check a key event log file: signatures, hash chain, numbering, pre-rotation.
    Verify {
        /// The log file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum PrekeysCommand {
    /// Publish a new prekey if the newest expires within 7 days, and erase
    /// the secrets of prekeys expired for more than 7 days.
    Refresh,
}

#[derive(Subcommand)]
enum KeystoreCommand {
    /// Unlock the keystore and check that its keys are this identity's.
    Check,
}

fn parse_word_count(s: &str) -> Result<usize, String> {
    match s {
        "12" => Ok(12),
        "24" => Ok(24),
        _ => Err(format!("a new seed phrase has 12 or 24 words, not {s:?}")),
    }
}

fn main() -> ExitCode {
    let args = Cli::parse();
    let level = args.log_level.unwrap_or_else(|| default_log_level(&args));
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let out = cli::Output { json: args.json };
    match run(args, &out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.error(&e);
            ExitCode::FAILURE
        }
    }
}

/// `warn`, except for the daemon: its configured level, else `info`.
fn default_log_level(args: &Cli) -> tracing::Level {
    if !matches!(args.command, Command::Node { command: None, .. }) {
        return tracing::Level::WARN;
    }
    args.data_dir
        .clone()
        .or_else(|| cairn_node::DataDir::platform_default().map(|d| d.root().to_path_buf()))
        .and_then(|d| cairn_node::config::Config::load(&d).ok())
        .and_then(|c| c.node.log_level.parse().ok())
        .unwrap_or(tracing::Level::INFO)
}

fn run(args: Cli, out: &cli::Output) -> anyhow::Result<()> {
    let ctx = cli::Context::new(args.data_dir, args.passphrase_file)?;
    match args.command {
        Command::Init {
            words,
            yes,
            bip39_passphrase,
        } => cli::init(&ctx, out, words, yes, bip39_passphrase),
        Command::Restore {
            bitcoin,
            bip39_passphrase,
            offline,
        } => cli::restore(&ctx, out, &bitcoin, bip39_passphrase, offline),
        Command::Id { bitcoin, command } => match command {
            None => cli::show_id(&ctx, out, &bitcoin),
            Some(IdCommand::Export { file }) => {
                cli::anchor::export(&ctx, out, &bitcoin, file.as_deref())
            }
        },
        Command::Anchor {
            bitcoin,
            fee_rate,
            seal_value,
            no_wait,
        } => cli::anchor::anchor(
            &ctx,
            out,
            &bitcoin,
            fee_rate,
            seal_value.as_deref(),
            no_wait,
        ),
        Command::Rotate {
            bitcoin,
            fee_rate,
            typed_words,
            no_wait,
        } => cli::anchor::rotate(&ctx, out, &bitcoin, fee_rate, typed_words, no_wait),
        Command::Contact { bitcoin, command } => match command {
            ContactCommand::Add { bundle, name } => {
                cli::anchor::add(&ctx, out, &bitcoin, &bundle, name.as_deref())
            }
            ContactCommand::List => cli::anchor::list(&ctx, out),
            #[cfg(feature = "network")]
            ContactCommand::Requests { dismiss } => {
                cli::messages::requests(&ctx, out, dismiss.as_deref())
            }
            ContactCommand::Rename { contact, name } => {
                cli::anchor::rename(&ctx, out, &bitcoin, &contact, &name)
            }
            ContactCommand::Remove { contact, yes } => {
                cli::anchor::remove(&ctx, out, &contact, yes)
            }
            ContactCommand::Fetch { id, name } => cli::node::fetch(&ctx, out, &id, name.as_deref()),
            ContactCommand::Verify { contact } => {
                cli::anchor::verify(&ctx, out, &bitcoin, contact.as_deref())
            }
        },
        Command::SafetyNumber { id } => cli::safety_number(&ctx, out, &id),
        Command::Log(LogCommand::Export { file }) => cli::log_export(&ctx, out, &file),
        Command::Log(LogCommand::Verify { file }) => cli::log_verify(out, &file),
        Command::Keystore(KeystoreCommand::Check) => cli::keystore_check(&ctx, out),
        Command::Prekeys { command: None } => cli::prekeys_list(&ctx, out),
        Command::Prekeys {
            command: Some(PrekeysCommand::Refresh),
        } => cli::prekeys_refresh(&ctx, out),
        #[cfg(feature = "network")]
        Command::Send { contact, text } => {
            cli::messages::send(&ctx, out, &contact, text.as_deref())
        }
        #[cfg(feature = "network")]
        Command::Inbox => cli::messages::inbox(&ctx, out),
        #[cfg(feature = "network")]
        Command::Messages { contact, limit } => {
            cli::messages::history(&ctx, out, contact.as_deref(), limit)
        }
        #[cfg(feature = "network")]
        Command::Chat { contact } => cli::messages::chat(&ctx, out, &contact),
        #[cfg(feature = "network")]
        Command::Mailboxes { peers } => cli::messages::mailboxes(&ctx, out, &peers),
        Command::Chain { bitcoin, command } => match command {
            ChainCommand::Status => cli::chain::status(&ctx, out, &bitcoin),
            ChainCommand::Sync => cli::chain::sync(&ctx, out, &bitcoin),
        },
        Command::Node {
            bitcoin,
            args,
            command,
        } => match command {
            None => cli::node::run(&ctx, out, &bitcoin, &args),
            Some(NodeCommand::Status) => cli::node::status(&ctx, out),
            Some(NodeCommand::Identities) => cli::node::identities(&ctx, out),
            Some(NodeCommand::Events { after, wait }) => cli::node::events(&ctx, out, after, wait),
            Some(NodeCommand::Stop) => cli::node::stop(&ctx, out),
        },
        Command::Wallet { bitcoin, command } => match command {
            WalletCommand::Address => cli::wallet::address(&ctx, out, &bitcoin),
            WalletCommand::Balance => cli::wallet::balance(&ctx, out, &bitcoin),
            WalletCommand::Send {
                address,
                amount,
                fee_rate,
            } => cli::wallet::send(&ctx, out, &bitcoin, &address, &amount, fee_rate),
        },
    }
}
