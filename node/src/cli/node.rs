//! `cairn node` (the daemon) and `cairn node status|identities|events|stop`,
//! which go through the running node's local API.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use cairn_node::api::ApiClient;
use cairn_node::config::Config;
use cairn_node::daemon::{self, DaemonOptions};
use cairn_node::identity;
use serde_json::{json, Value};

use super::chain::BitcoinArgs;
use super::{Context, Output};

/// Command-line overrides of the `[node]` settings.
#[derive(Debug, Default, clap::Args)]
pub struct NodeArgs {
    /// Address of the local API (loopback only), e.g. 127.0.0.1:4418.
    #[arg(long, value_name = "ADDR")]
    pub api: Option<SocketAddr>,
    /// Seconds between two looks at the chain source for new blocks.
    #[arg(long, value_name = "SECONDS")]
    pub poll: Option<u64>,
}

/// `cairn node`: runs the daemon in the foreground until SIGINT, SIGTERM or
/// `cairn node stop`.
pub fn run(ctx: &Context, out: &Output, bitcoin: &BitcoinArgs, args: &NodeArgs) -> Result<()> {
    let settings = bitcoin.settings(ctx)?;
    let mut node = Config::load(ctx.dir.root())?.node;
    if let Some(a) = args.api {
        node.api = a;
    }
    if let Some(p) = args.poll {
        node.poll_secs = p;
    }
    let rpc = settings.rpc_config(std::env::var("CAIRN_RPC_PASSWORD").ok())?;
    ctx.dir
        .create()
        .with_context(|| format!("cannot create {}", ctx.dir.root().display()))?;
    let _lock = ctx.dir.lock_node()?;
    let store = identity::open_store(&ctx.dir)?;
    let own = store.own_identity()?;
    // A node with an identity holds its hot keys: they open the contact
    // book, sign the records and key the network.
    let unlocked = ctx.unlock(&store)?;
    let contacts = match &unlocked {
        Some((_, hot)) => cairn_node::contact_book::unlock(&store, hot)?,
        None => cairn_node::contact_book::ContactKey::Clear,
    };
    let options = DaemonOptions {
        api: node.api,
        network: settings.network,
        rpc,
        confirmations: settings.confirmations,
        poll: node.poll_interval(),
        contacts,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    #[cfg(feature = "network")]
    let net_part = network_part(ctx, out, &store, settings.network, unlocked)?;
    #[cfg(not(feature = "network"))]
    drop(unlocked);
    let store = Arc::new(store);
    let network = settings.network;
    runtime.block_on(daemon::run(
        &ctx.dir,
        store,
        own,
        options,
        #[cfg(feature = "network")]
        net_part,
        |api| {
            if out.json {
                out.json(&json!({
                    "api": api.to_string(),
                    "pid": std::process::id(),
                    "identity": own.map(|i| i.to_string()),
                    "bitcoin_network": network.core_chain_name(),
                }));
            } else {
                out.line(&format!("Cairn node, pid {}", std::process::id()));
                out.line(&format!("API            {api}"));
                match own {
                    Some(id) => out.line(&format!("Identity       {id} (watched)")),
                    None => out.line("Identity       none"),
                }
                out.line(&format!(
                    "Watching       this identity and every contact against {} blocks",
                    network.core_chain_name()
                ));
                out.line("Stop with Ctrl-C or `cairn node stop`.");
            }
        },
    ))?;
    Ok(())
}

/// The network part of `cairn node`: with the identity's hot keys (the
/// peer key and the key that signs the own record), the prekeys refreshed.
#[cfg(feature = "network")]
fn network_part(
    ctx: &Context,
    out: &Output,
    store: &cairn_node::Store,
    chain: cairn_chain_anchor::ChainNetwork,
    unlocked: Option<(identity::OwnIdentity, cairn_wallet::keystore::HotKeys)>,
) -> Result<Option<cairn_node::network::NodeNetwork>> {
    let config = Config::load(ctx.dir.root())?.network;
    if !config.enabled {
        return Ok(None);
    }
    let net = cairn_node::network::net_config(&config).map_err(anyhow::Error::msg)?;
    let (key, identity) = match unlocked {
        // A node without an identity serves the network (DHT, relay) and
        // fetches contacts' records; it has nothing to publish.
        None => (
            cairn_node::network::node_key(&ctx.dir.node_key_file()).map_err(anyhow::Error::msg)?,
            None,
        ),
        Some((own, hot)) => {
            let now = cairn_node::chain::unix_now();
            let refreshed = cairn_node::prekeys::refresh(store, &own, &hot, now)?;
            // A rotation leaves the mailboxes behind: named again under the new key.
            let own_now = cairn_node::prekeys::carry_mailboxes(store, &refreshed.own, &hot, now)?;
            if let Some(id) = refreshed.made {
                if !out.json {
                    out.line(&format!("Prekey {id} published in your log."));
                }
            }
            let key = cairn_node::network::peer_key(&hot.network).map_err(anyhow::Error::msg)?;
            (
                key,
                Some(cairn_node::network::NetIdentity { hot, own: own_now }),
            )
        }
    };
    Ok(Some(cairn_node::network::NodeNetwork {
        config: net,
        key,
        identity,
        chain,
        serve_mailbox: config.full && config.mailbox,
        collect: config.collect_interval(),
        direct: config.direct,
    }))
}

/// `cairn contact fetch ID [--name NAME]`: through the running node.
pub fn fetch(ctx: &Context, out: &Output, id: &str, name: Option<&str>) -> Result<()> {
    if let Some(n) = name {
        cairn_node::contacts::check_name(n)?;
    }
    let added = client(ctx)?.call("contact_fetch", json!({ "id": id, "name": name }))?;
    if out.json {
        out.json(&added);
        return Ok(());
    }
    out.line(&format!(
        "Fetched and verified {}{} (fingerprint {}, rotation {}, {} anchor(s)) from the network.",
        added["name"]
            .as_str()
            .map(|n| format!("{n}: "))
            .unwrap_or_default(),
        added["id"].as_str().unwrap_or_default(),
        added["fingerprint"].as_str().unwrap_or_default(),
        added["rotation_index"],
        added["anchors"],
    ));
    Ok(())
}

fn client(ctx: &Context) -> Result<ApiClient> {
    Ok(ApiClient::connect(ctx.dir.root())?)
}

/// `cairn node status`.
pub fn status(ctx: &Context, out: &Output) -> Result<()> {
    let s = client(ctx)?.call("status", json!({}))?;
    if out.json {
        out.json(&s);
        return Ok(());
    }
    out.line(&format!("Node           running, pid {}", s["pid"]));
    match s["chain_tip"].as_object() {
        Some(t) => out.line(&format!(
            "Chain tip      {} at height {} ({})",
            t["hash"].as_str().unwrap_or("?"),
            t["height"],
            s["bitcoin_network"].as_str().unwrap_or("?")
        )),
        None => out.line("Chain tip      no headers yet"),
    }
    let src = &s["source"];
    match (src["error"].as_str(), src["description"].as_str()) {
        (Some(e), _) => out.line(&format!("Chain source   failing: {e}")),
        (None, Some(d)) => out.line(&format!("Chain source   {d}")),
        (None, None) => out.line("Chain source   not reached yet"),
    }
    out.line(&format!("Watching       {} identities", s["watched"]));
    out.line(&format!("Events         {} so far", s["last_event"]));
    out.line(&format!("Store          {} bytes", s["store_bytes"]));
    match s["identity"].as_str() {
        Some(id) => out.line(&format!("Identity       {id}")),
        None => out.line("Identity       none"),
    }
    Ok(())
}

/// `cairn node identities`: the verdict of each watched identity.
pub fn identities(ctx: &Context, out: &Output) -> Result<()> {
    let list = client(ctx)?.call("identities", json!({}))?;
    if out.json {
        out.json(&list);
        return Ok(());
    }
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        out.line("Nothing watched yet: no identity and no contacts (or no round done).");
    }
    for i in items {
        let who = match (i["own"].as_bool(), i["name"].as_str()) {
            (Some(true), _) => "you".to_string(),
            (_, Some(n)) => n.to_string(),
            _ => "-".to_string(),
        };
        let verdict = i["verdict"]["status"].as_str().unwrap_or("not checked yet");
        out.line(&format!(
            "{who:<14} {} {verdict}",
            i["id"].as_str().unwrap_or("?")
        ));
    }
    Ok(())
}

/// `cairn node events [--after N] [--wait SECONDS]`: what the watcher
/// noticed, oldest first.
pub fn events(ctx: &Context, out: &Output, after: u64, wait: u64) -> Result<()> {
    let r = client(ctx)?.call("events", json!({"after": after, "wait": wait}))?;
    if out.json {
        out.json(&r);
        return Ok(());
    }
    let events = r["events"].as_array().cloned().unwrap_or_default();
    if events.is_empty() {
        out.line("No events.");
    }
    for e in events {
        out.line(&format!(
            "#{:<5} {}  {}",
            e["seq"],
            time_text(&e["time"]),
            e["message"].as_str().unwrap_or("")
        ));
    }
    Ok(())
}

fn time_text(v: &Value) -> String {
    v.as_u64()
        .map(cairn_node::chain::utc_text)
        .unwrap_or_else(|| "?".into())
}

/// `cairn node stop`.
pub fn stop(ctx: &Context, out: &Output) -> Result<()> {
    client(ctx)?.call("stop", json!({}))?;
    // The node releases its lock when it has stopped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while ctx.dir.running_node().is_some() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the node was asked to stop but is still running after 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if out.json {
        out.json(&json!({"stopped": true}));
    } else {
        out.line("Node stopped.");
    }
    Ok(())
}
