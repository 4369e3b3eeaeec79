//! `cairn wallet address|balance|send`: the identity funding wallet.

use anyhow::{Context as _, Result};
use cairn_chain_anchor::source::ChainSource;
use cairn_chain_anchor::RpcSource;
use cairn_node::chain::unix_now;
use cairn_node::config::BitcoinConfig;
use cairn_node::funds::{self, Funds};
use cairn_node::identity::{self, OwnIdentity};
use cairn_node::Store;
use cairn_wallet::MasterKey;
use serde_json::json;

use super::chain::{connect, Bar, BitcoinArgs};
use super::secrets::Purpose;
use super::{Context, Output};

/// The wallet of the configured network; created from the seed (asking for
/// the keystore passphrase) the first time.
pub(super) fn open<'s>(
    ctx: &Context,
    store: &'s Store,
    own: &OwnIdentity,
    settings: &BitcoinConfig,
) -> Result<Funds<'s>> {
    if let Some(f) = Funds::load(store, settings.network)? {
        return Ok(f);
    }
    if store.is_read_only() {
        anyhow::bail!(
            "the funding wallet is not set up yet, and the running node holds the store; stop it (`cairn node stop`) and run `cairn wallet address`"
        );
    }
    eprintln!(
        "Setting up the funding wallet for {} (once per network): unlocking the seed.",
        settings.network.core_chain_name()
    );
    let pass = ctx.passphrase(Purpose::Existing)?;
    let secrets = identity::unlock_seed(&ctx.dir, own, &pass)?;
    let master = MasterKey::new(&secrets.seed);
    let keys = funds::identity_descriptors(&master, settings.network)?;
    Ok(Funds::create(store, settings.network, &keys)?)
}

/// Syncs headers from the source, then scans new blocks into the wallet.
pub(super) fn sync(
    out: &Output,
    store: &Store,
    settings: &BitcoinConfig,
    funds: &mut Funds<'_>,
) -> Result<RpcSource> {
    let source = connect(settings)?;
    let chain = super::chain::synced_headers(
        store,
        settings.network,
        &source,
        &mut Bar::new(out, "headers"),
    )?;
    let mut bar = Bar::new(out, "blocks");
    let scanned = funds.scan(&chain, &source, store.identity_birthday()?, &mut |h, t| {
        bar.draw(h, t)
    });
    bar.finish();
    let report = scanned.with_context(|| format!("scanning blocks from {}", source.describe()))?;
    tracing::info!(
        blocks = report.blocks,
        height = report.height,
        "funding wallet scanned"
    );
    Ok(source)
}

/// `cairn wallet address`.
pub fn address(ctx: &Context, out: &Output, args: &BitcoinArgs) -> Result<()> {
    let settings = args.settings(ctx)?;
    let (store, own) = ctx.load()?;
    let mut funds = open(ctx, &store, &own, &settings)?;
    let info = funds.receive_address()?;
    if out.json {
        out.json(&json!({
            "address": info.address.to_string(),
            "index": info.index,
            "network": settings.network,
        }));
    } else {
        out.line(&info.address.to_string());
    }
    Ok(())
}

/// `cairn wallet balance`.
pub fn balance(ctx: &Context, out: &Output, args: &BitcoinArgs) -> Result<()> {
    let settings = args.settings(ctx)?;
    let (store, own) = ctx.load_to_read()?;
    let mut funds = open(ctx, &store, &own, &settings)?;
    // Without a source, or while the node holds the store, show what the
    // wallet knew at its last scan.
    let fresh = if store.is_read_only() {
        Err(anyhow::anyhow!(
            "the node is running and holds the store: stop it to bring the wallet up to date"
        ))
    } else {
        sync(out, &store, &settings, &mut funds).map(|_| ())
    };
    let b = funds.balance();
    let tip = funds.tip();
    let note = fresh.as_ref().err().map(|e| format!("{e:#}"));
    if out.json {
        out.json(&json!({
            "network": settings.network,
            "confirmed_sat": b.confirmed.to_sat(),
            "pending_sat": b.trusted_pending.to_sat(),
            "incoming_unconfirmed_sat": b.untrusted_pending.to_sat(),
            "immature_sat": b.immature.to_sat(),
            "total_sat": b.total().to_sat(),
            "height": tip.height,
            "block": tip.hash.to_string(),
            "stale": note,
        }));
        return Ok(());
    }
    out.line(&format!("Confirmed      {}", b.confirmed));
    if b.trusted_pending.to_sat() > 0 {
        out.line(&format!(
            "Pending        {} (own change, unconfirmed)",
            b.trusted_pending
        ));
    }
    if b.untrusted_pending.to_sat() > 0 {
        out.line(&format!(
            "Incoming       {} (unconfirmed)",
            b.untrusted_pending
        ));
    }
    if b.immature.to_sat() > 0 {
        out.line(&format!("Immature       {} (coinbase)", b.immature));
    }
    out.line(&format!("As of block    {} ({})", tip.height, tip.hash));
    if let Some(n) = note {
        out.line(&format!(
            "Warning        not up to date, the chain source failed: {n}"
        ));
    }
    Ok(())
}

/// `cairn wallet send ADDRESS AMOUNT`.
pub fn send(
    ctx: &Context,
    out: &Output,
    args: &BitcoinArgs,
    address: &str,
    amount: &str,
    fee_rate: Option<u64>,
) -> Result<()> {
    let settings = args.settings(ctx)?;
    // Check what was typed before touching anything.
    let to = funds::parse_address(address, settings.network)?;
    let amount = funds::parse_amount(amount)?;
    let (store, own) = ctx.load()?;
    let mut funds = open(ctx, &store, &own, &settings)?;
    let source = sync(out, &store, &settings, &mut funds)?;
    let rate = funds::choose_fee_rate(&source, fee_rate)?;
    let pass = ctx.passphrase(Purpose::Existing)?;
    let secrets = identity::unlock_seed(&ctx.dir, &own, &pass)?;
    let master = MasterKey::new(&secrets.seed);
    drop(secrets);
    let tx = funds.build_payment(&to, amount, rate, &master)?;
    drop(master);
    let fee = funds.fee_of(&tx);
    let vsize = tx.vsize();
    let txid = funds
        .broadcast(&source, tx, unix_now())
        .with_context(|| format!("broadcasting through {}", source.describe()))?;
    if out.json {
        out.json(&json!({
            "txid": txid.to_string(),
            "amount_sat": amount.to_sat(),
            "fee_sat": fee.map(|f| f.to_sat()),
            "vsize": vsize,
            "fee_rate_sat_vb": rate.to_sat_per_vb_ceil(),
        }));
    } else {
        out.line(&format!("Sent {amount} to {to}"));
        out.line(&format!("Transaction    {txid}"));
        if let Some(f) = fee {
            out.line(&format!(
                "Fee            {f} ({vsize} vB at {} sat/vB)",
                rate.to_sat_per_vb_ceil()
            ));
        }
    }
    Ok(())
}
