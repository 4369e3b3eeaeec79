//! `cairn chain status` and `cairn chain sync`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use cairn_chain_anchor::source::ChainSource;
use cairn_chain_anchor::{ChainNetwork, RpcSource, SyncEvent};
use cairn_node::config::{BitcoinConfig, Config};
use cairn_node::{chain, identity};
use serde_json::json;

use super::{hex, Context, Output};

/// Command-line overrides of the `[bitcoin]` settings.
#[derive(Debug, Default, clap::Args)]
pub struct BitcoinArgs {
    /// Network: main, testnet4, signet or regtest (overrides [bitcoin] network).
    #[arg(long, global = true, value_name = "NETWORK")]
    pub network: Option<ChainNetwork>,
    /// Bitcoin Core's RPC URL, e.g. http://127.0.0.1:8332.
    #[arg(long, global = true, value_name = "URL")]
    pub rpc_url: Option<String>,
    /// Bitcoin Core's cookie file.
    #[arg(long, global = true, value_name = "FILE")]
    pub rpc_cookie: Option<PathBuf>,
    /// RPC user (the password comes from --rpc-password-file or CAIRN_RPC_PASSWORD).
    #[arg(long, global = true, value_name = "USER")]
    pub rpc_user: Option<String>,
    /// File whose first line is the RPC password.
    #[arg(long, global = true, value_name = "FILE")]
    pub rpc_password_file: Option<PathBuf>,
}

impl BitcoinArgs {
    /// The `[bitcoin]` settings of the data dir with these overrides applied.
    pub(super) fn settings(&self, ctx: &Context) -> Result<BitcoinConfig> {
        let mut b = Config::load(ctx.dir.root())?.bitcoin;
        if let Some(n) = self.network {
            b.network = n;
        }
        if let Some(u) = &self.rpc_url {
            b.rpc_url = Some(u.clone());
        }
        if let Some(c) = &self.rpc_cookie {
            b.rpc_cookie = Some(c.clone());
            b.rpc_user = None;
        }
        if let Some(u) = &self.rpc_user {
            b.rpc_user = Some(u.clone());
        }
        if let Some(p) = &self.rpc_password_file {
            b.rpc_password_file = Some(p.clone());
        }
        Ok(b)
    }
}

/// Connects to the configured chain source (checking its network).
pub(super) fn connect(settings: &BitcoinConfig) -> Result<RpcSource> {
    let cfg = settings.rpc_config(std::env::var("CAIRN_RPC_PASSWORD").ok())?;
    Ok(RpcSource::connect(cfg)?)
}

/// `cairn chain status`.
pub fn status(ctx: &Context, out: &Output, args: &BitcoinArgs) -> Result<()> {
    let settings = args.settings(ctx)?;
    let store = identity::open_store_to_read(&ctx.dir)?;
    let chain = chain::load(&store, settings.network)?;
    let tip = chain.tip();
    // The source is optional for a status: show what the node has either way.
    let source = connect(&settings).and_then(|s| {
        let (h, hash) = s.tip()?;
        Ok((s.describe(), h, hash))
    });
    let (source_json, sync_state) = match &source {
        Ok((desc, h, hash)) => {
            let state = if *hash == tip.hash {
                "synced".to_string()
            } else if *h > tip.height {
                format!("behind by {} blocks", h - tip.height)
            } else {
                "diverged: run `cairn chain sync`".to_string()
            };
            (
                json!({"description": desc, "height": h, "tip": hash.to_string()}),
                state,
            )
        }
        Err(e) => (
            json!({"error": format!("{e:#}")}),
            "source unavailable".into(),
        ),
    };
    let work = hex(&tip.chain_work.to_be_bytes());
    if out.json {
        out.json(&json!({
            "network": settings.network,
            "height": tip.height,
            "tip": tip.hash.to_string(),
            "chain_work": work,
            "headers_stored": chain.len(),
            "side_branch_headers": chain.side_len(),
            "source": source_json,
            "sync": sync_state,
        }));
        return Ok(());
    }
    out.line(&format!(
        "Network        {}",
        settings.network.core_chain_name()
    ));
    out.line(&format!(
        "Tip            {} at height {}",
        tip.hash, tip.height
    ));
    out.line(&format!("Chain work     {}", work.trim_start_matches('0')));
    out.line(&format!(
        "Headers        {} stored ({} on side branches)",
        chain.len(),
        chain.side_len()
    ));
    match &source {
        Ok((desc, h, _)) => out.line(&format!("Source         {desc}, tip at height {h}")),
        Err(e) => out.line(&format!("Source         unavailable: {e:#}")),
    }
    out.line(&format!("Sync           {sync_state}"));
    Ok(())
}

/// The stored header chain of `network`, synced from `source` (progress on
/// `bar`). After a failure the chain in memory may be ahead of the store,
/// so it is dropped with the error.
pub(super) fn synced_headers(
    store: &cairn_node::Store,
    network: ChainNetwork,
    source: &dyn ChainSource,
    bar: &mut Bar,
) -> Result<cairn_chain_anchor::HeaderChain> {
    let mut loaded = chain::load(store, network)?;
    let synced = chain::sync_loaded(store, &mut loaded, source, &mut |e| {
        if let SyncEvent::Progress { height, target } = e {
            bar.draw(height, target);
        }
    });
    bar.finish();
    synced.with_context(|| format!("syncing headers from {}", source.describe()))?;
    Ok(loaded)
}

/// A one-line progress bar on standard error, drawn only on a terminal.
pub(super) struct Bar {
    on: bool,
    drawn: bool,
    unit: &'static str,
}

impl Bar {
    /// A bar counting `unit` (shown only when standard error is a terminal
    /// and the output is not JSON).
    pub(super) fn new(out: &Output, unit: &'static str) -> Self {
        Bar {
            on: std::io::stderr().is_terminal() && !out.json,
            drawn: false,
            unit,
        }
    }

    /// A bar that never shows.
    pub(super) fn quiet() -> Self {
        Bar {
            on: false,
            drawn: false,
            unit: "",
        }
    }

    pub(super) fn draw(&mut self, height: u32, target: u32) {
        if !self.on {
            return;
        }
        let frac = if target == 0 {
            1.0
        } else {
            f64::from(height) / f64::from(target)
        };
        let filled = (frac * 30.0).round() as usize;
        eprint!(
            "\r[{}{}] {:>5.1}%  {height}/{target} {}",
            "#".repeat(filled.min(30)),
            ".".repeat(30 - filled.min(30)),
            frac * 100.0,
            self.unit
        );
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }

    pub(super) fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}

/// `cairn chain sync`.
pub fn sync(ctx: &Context, out: &Output, args: &BitcoinArgs) -> Result<()> {
    let settings = args.settings(ctx)?;
    let store = identity::open_store(&ctx.dir)?;
    let source = connect(&settings)?;
    let mut bar = Bar::new(out, "headers");
    let mut reorgs = Vec::new();
    let outcome = chain::sync(&store, settings.network, &source, &mut |e| match e {
        SyncEvent::Target { height, hash } => {
            tracing::info!(height, %hash, source = %source.describe(), "sync target");
        }
        SyncEvent::Progress { height, target } => {
            tracing::info!(height, target, "headers synced");
            bar.draw(height, target);
        }
        SyncEvent::Reorg {
            disconnected,
            connected,
        } => {
            tracing::warn!(left = disconnected.len(), joined = connected.len(), "reorg");
            reorgs.push(json!({
                "disconnected": disconnected.iter().map(|(h, b)| json!({"height": h, "hash": b.to_string()})).collect::<Vec<_>>(),
                "connected": connected.iter().map(|(h, b)| json!({"height": h, "hash": b.to_string()})).collect::<Vec<_>>(),
            }));
        }
    });
    bar.finish();
    let outcome = outcome.with_context(|| format!("syncing from {}", source.describe()))?;
    if out.json {
        out.json(&json!({
            "network": settings.network,
            "height": outcome.height,
            "tip": outcome.tip.to_string(),
            "added": outcome.added,
            "reorgs": reorgs,
        }));
    } else {
        for r in &reorgs {
            out.line(&format!(
                "Reorg: {} block(s) left the best chain, {} joined",
                r["disconnected"].as_array().map_or(0, Vec::len),
                r["connected"].as_array().map_or(0, Vec::len)
            ));
        }
        out.line(&format!(
            "Synced to height {} ({}), {} new header(s), from {}",
            outcome.height,
            outcome.tip,
            outcome.added,
            source.describe()
        ));
    }
    Ok(())
}
