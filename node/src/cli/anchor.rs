//! `cairn anchor`, `cairn id export`, `cairn contact
//! add|list|rename|remove|verify`: anchoring the own identity in Bitcoin,
//! and bundles of other identities.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use cairn_chain_anchor::anchor::{BUNDLE_MAGIC, BUNDLE_TEXT_PREFIX, MAX_BUNDLE_LEN};
use cairn_chain_anchor::source::ChainSource;
use cairn_chain_anchor::{Bundle, ChainNetwork};
use cairn_node::anchoring::{self, Standing, DEFAULT_SEAL_VALUE};
use cairn_node::api::MAX_LINE;
use cairn_node::chain::{self, unix_now};
use cairn_node::contact_book;
use cairn_node::contacts::{self, VerifyReport};
use cairn_node::funds;
use cairn_node::identity;
use cairn_node::Store;
use cairn_wallet::{IdentityId, MasterKey};
use serde_json::json;

use super::chain::{connect, synced_headers, Bar, BitcoinArgs};
use super::output::Reported;
use super::secrets::Purpose;
use super::{wallet, Access, Context, Output};

/// How often `cairn anchor` looks for new blocks while it waits.
fn poll_interval(network: ChainNetwork) -> Duration {
    match network {
        ChainNetwork::Regtest => Duration::from_millis(500),
        _ => Duration::from_secs(30),
    }
}

/// `cairn anchor`.
pub fn anchor(
    ctx: &Context,
    out: &Output,
    args: &BitcoinArgs,
    fee_rate: Option<u64>,
    seal_value: Option<&str>,
    no_wait: bool,
) -> Result<()> {
    let settings = args.settings(ctx)?;
    let network = settings.network;
    let value = match seal_value {
        Some(v) => funds::parse_amount(v)?,
        None => DEFAULT_SEAL_VALUE,
    };
    let (store, own) = ctx.load()?;
    let id = own.state.id;
    let mut wallet = wallet::open(ctx, &store, &own, &settings)?;
    let source = wallet::sync(out, &store, &settings, &mut wallet)?;
    let existing = store.anchors(network, &id)?;
    let txid = match existing.first() {
        Some(a) => {
            // Stored before it was sent, and not known confirmed: the
            // wallet keeps its coins spent, and the network gets it again
            // (it may never have gone out).
            if a.proof.is_none() {
                wallet.record(a.tx.clone(), unix_now())?;
                if let Err(e) = source.broadcast(&a.tx) {
                    tracing::info!(error = %e, "rebroadcast of the inception seal");
                }
            }
            if !out.json {
                out.line(&format!(
                    "The inception seal was broadcast before: transaction {}.",
                    a.txid()
                ));
            }
            a.txid()
        }
        None => {
            let rate = funds::choose_fee_rate(&source, fee_rate)?;
            let pass = ctx.passphrase(Purpose::Existing)?;
            let secrets = identity::unlock_seed(&ctx.dir, &own, &pass)?;
            let master = MasterKey::new(&secrets.seed);
            drop(secrets);
            let anchor = anchoring::build_inception(&mut wallet, &master, &own, value, rate)?;
            let sealed = anchoring::future_rotations(&master, &id, 0)?;
            drop(master);
            let fee = wallet.fee_of(&anchor.tx);
            let vsize = anchor.tx.vsize();
            let txid = anchoring::publish_inception(
                &store,
                &mut wallet,
                &source,
                &own,
                &anchor,
                &sealed,
                unix_now(),
            )
            .with_context(|| format!("broadcasting through {}", source.describe()))?;
            if !out.json {
                out.line(&format!(
                    "Broadcast the inception seal: transaction {txid}, {value} in the seal, {vsize} vB{}.",
                    fee.map(|f| format!(", fee {f}")).unwrap_or_default()
                ));
            }
            txid
        }
    };
    let need = settings.confirmations.max(1);
    let standing = wait_for_last(out, &store, &source, network, &id, need, no_wait)?;
    let chain = chain::load(&store, network)?;
    let seal = format!("{txid}:{}", cairn_chain_anchor::anchor::SEAL_VOUT);
    match standing {
        Standing::Confirmed {
            height,
            confirmations,
        } if confirmations >= need => {
            let hash = chain.at_height(height).map(|e| e.hash.to_string());
            if out.json {
                out.json(&json!({
                    "id": id, "anchored": true, "seal": seal, "txid": txid.to_string(),
                    "height": height, "block": hash, "confirmations": confirmations,
                }));
            } else {
                out.line(&format!(
                    "Anchored: seal {seal} in block {height} ({}), {confirmations} confirmations.",
                    hash.unwrap_or_default()
                ));
                out.line("Share `cairn id export`: anyone can now check your key against Bitcoin.");
            }
        }
        other => {
            let have = other.confirmations();
            if out.json {
                out.json(&json!({
                    "id": id, "anchored": false, "seal": seal, "txid": txid.to_string(),
                    "confirmations": have, "needed": need,
                }));
            } else {
                out.line(&format!(
                    "Not confirmed yet: {have} of {need} confirmations. Run `cairn anchor` again to wait."
                ));
            }
        }
    }
    Ok(())
}

/// Syncs headers and refreshes the proofs of `id`'s stored anchors until
/// the last one has `need` confirmations (or once, with `no_wait`).
fn wait_for_last(
    out: &Output,
    store: &Store,
    source: &dyn ChainSource,
    network: ChainNetwork,
    id: &IdentityId,
    need: u32,
    no_wait: bool,
) -> Result<Standing> {
    let mut shown = None;
    loop {
        let chain = synced_headers(store, network, source, &mut Bar::quiet())?;
        let (_, standing) = anchoring::refresh_stored(store, network, id, &chain, source)?;
        let standing = standing.unwrap_or(Standing::Unconfirmed);
        let have = standing.confirmations();
        if have >= need || no_wait {
            return Ok(standing);
        }
        if !out.json && shown != Some(have) {
            out.line(&format!(
                "Waiting for {need} confirmations: {have} so far (Ctrl-C stops waiting; run the command again to resume)."
            ));
            shown = Some(have);
        }
        std::thread::sleep(poll_interval(network));
    }
}

/// `cairn rotate`.
pub fn rotate(
    ctx: &Context,
    out: &Output,
    args: &BitcoinArgs,
    fee_rate: Option<u64>,
    typed_words: bool,
    no_wait: bool,
) -> Result<()> {
    let settings = args.settings(ctx)?;
    let network = settings.network;
    let (store, own) = ctx.load()?;
    let id = own.state.id;
    let anchors = store.anchors(network, &id)?;
    let source = connect(&settings)?;
    let chain = synced_headers(&store, network, &source, &mut Bar::quiet())?;
    let pending = anchors.len() == own.state.establishment.len()
        && anchors.len() > 1
        && matches!(
            anchoring::refresh_stored(&store, network, &id, &chain, &source)?.1,
            Some(Standing::Unconfirmed)
        );
    let index = if pending {
        // A rotation already stored and broadcast: send it again (it may
        // have left the mempool) and wait for it, rather than start another.
        let last = &anchors[anchors.len() - 1];
        if last.tx.input.len() > 1 {
            // Topped up from the wallet: its coins stay spent by this one.
            wallet::open(ctx, &store, &own, &settings)?.record(last.tx.clone(), unix_now())?;
        }
        if let Err(e) = source.broadcast(&last.tx) {
            tracing::info!(error = %e, "rebroadcast of the pending rotation");
        }
        if !out.json {
            out.line(&format!(
                "Rotation {} was broadcast before (transaction {}); waiting for it.",
                own.state.rotation_index(),
                last.txid()
            ));
        }
        own.state.rotation_index()
    } else {
        let rate = funds::choose_fee_rate(&source, fee_rate)?;
        let pass = ctx.passphrase(Purpose::Existing)?;
        let master = if typed_words {
            let typed = super::secrets::seed_words()?;
            let phrase = cairn_wallet::SeedPhrase::parse(&typed)?;
            let bip39 = super::secrets::bip39_passphrase(Purpose::Existing)?;
            if identity::preview(&phrase, &bip39)? != id {
                bail!("these words (with this BIP39 passphrase) give another identity than {id}");
            }
            MasterKey::new(&phrase.to_seed(&bip39))
        } else {
            let secrets = identity::unlock_seed(&ctx.dir, &own, &pass).map_err(|e| match e {
                identity::IdentityError::MissingKeystore(f) => anyhow::anyhow!(
                    "rotating needs the seed, and this node holds only its hot keys ({f} is missing); type the words with `cairn rotate --typed-words`, or rotate on the device that keeps the seed"
                ),
                other => other.into(),
            })?;
            MasterKey::new(&secrets.seed)
        };
        let plain = anchoring::build_rotation(&master, &own, anchors.clone(), rate);
        let seal_left = plain.as_ref().ok().map(|p| p.seal_value);
        let (plan, mut wallet) = if anchoring::wants_top_up(seal_left) {
            // The seal runs low (or cannot pay at all): the funding wallet
            // tops it up and pays the fee, if it can.
            let mut opened = wallet::open(ctx, &store, &own, &settings);
            let topped = match &mut opened {
                Ok(wallet) => wallet::sync(out, &store, &settings, wallet).and_then(|_| {
                    Ok(anchoring::build_topped_rotation(
                        wallet,
                        &master,
                        &own,
                        anchors,
                        rate,
                        DEFAULT_SEAL_VALUE,
                    )?)
                }),
                Err(e) => Err(anyhow::anyhow!("{e:#}")),
            };
            match (topped, plain) {
                (Ok(p), _) => (p, opened.ok()),
                (Err(e), Ok(p)) => {
                    // On standard error: `--json` output stays one object.
                    eprintln!(
                        "The funding wallet cannot top the seal up ({e:#}); the seal pays this rotation and keeps {}.",
                        p.seal_value
                    );
                    (p, None)
                }
                (Err(e), Err(seal)) => bail!(
                    "the seal cannot pay this rotation ({seal}), and the funding wallet cannot top it up ({e}); fund it (`cairn wallet address`) and run `cairn rotate` again"
                ),
            }
        } else {
            (plain?, None)
        };
        // The new event, its anchor and the next sealed events first, then
        // the hot keys of the new rotation, then the broadcast: a node that
        // stops midway resumes with `cairn rotate`.
        store.put_own_bundle(network, &id, &plan.log, &plan.anchors, &plan.sealed)?;
        identity::write_hot_keys(&ctx.dir, &master, plan.index, &pass, Default::default())?;
        drop(master);
        let tx = &plan.anchors[plan.anchors.len() - 1].tx;
        if let Some(w) = &mut wallet {
            // Recorded before it is sent: its coins are never spent twice.
            w.record(tx.clone(), unix_now())?;
        }
        let txid = source.broadcast(tx).with_context(|| format!("broadcasting the rotation through {} (it is stored: `cairn rotate` again sends it)", source.describe()))?;
        if !out.json {
            let paid = if plan.topped_up {
                format!(
                    "the funding wallet topped the seal up to {}",
                    plan.seal_value
                )
            } else {
                format!("paid from the seal, which keeps {}", plan.seal_value)
            };
            out.line(&format!(
                "Rotated to rotation {}: transaction {txid}, {} vB, fee {} ({paid}).",
                plan.index,
                tx.vsize(),
                plan.fee
            ));
        }
        plan.index
    };
    let need = settings.confirmations.max(1);
    let standing = wait_for_last(out, &store, &source, network, &id, need, no_wait)?;
    let confirmations = standing.confirmations();
    let height = match standing {
        Standing::Confirmed { height, .. } => Some(height),
        Standing::Unconfirmed => None,
    };
    if out.json {
        out.json(&json!({
            "id": id, "rotation_index": index, "height": height,
            "confirmations": confirmations, "needed": need,
            "anchored": confirmations >= need,
        }));
    } else if confirmations >= need {
        out.line(&format!(
            "Anchored: rotation {index} in block {}, {confirmations} confirmations. The node now uses the new keys.",
            height.unwrap_or_default()
        ));
    } else {
        out.line(&format!(
            "Not confirmed yet: {confirmations} of {need}. Run `cairn rotate` again to wait."
        ));
    }
    Ok(())
}

/// `cairn id export [FILE]`.
pub fn export(ctx: &Context, out: &Output, args: &BitcoinArgs, file: Option<&Path>) -> Result<()> {
    let settings = args.settings(ctx)?;
    let (store, own) = ctx.load_to_read()?;
    let bundle = anchoring::own_bundle(&store, settings.network, &own)?;
    if let Some(f) = file {
        cairn_node::datadir::write_atomic(f, &bundle.encode())
            .with_context(|| format!("cannot write {}", f.display()))?;
    }
    let text = bundle.to_text();
    if out.json {
        out.json(&json!({
            "id": own.state.id,
            "network": settings.network,
            "events": own.log.len(),
            "anchors": bundle.anchors.len(),
            "file": file,
            "bundle": text,
        }));
    } else {
        if let Some(f) = file {
            eprintln!(
                "Wrote the identity bundle of {} ({} event(s), {} anchor(s)) to {}.",
                own.state.id,
                own.log.len(),
                bundle.anchors.len(),
                f.display()
            );
        }
        out.line(&text);
    }
    Ok(())
}

/// A bundle from its text form, or from a file holding either form.
fn read_bundle(arg: &str) -> Result<Bundle> {
    if arg.trim_start().starts_with(BUNDLE_TEXT_PREFIX) {
        return Ok(Bundle::from_text(arg)?);
    }
    let path = Path::new(arg);
    let len = std::fs::metadata(path)
        .with_context(|| format!("{arg} is neither a bundle (cairn-bundle:…) nor a readable file"))?
        .len();
    // The text form is 4/3 of the binary one, plus prefix and line breaks.
    if len > (MAX_BUNDLE_LEN as u64) * 2 {
        bail!("{arg} is {len} bytes, larger than any identity bundle");
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {arg}"))?;
    if bytes.starts_with(BUNDLE_MAGIC) {
        return Bundle::decode(&bytes).with_context(|| format!("{arg} is not a valid bundle"));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("{arg} is not an identity bundle"))?;
    Bundle::from_text(text).with_context(|| format!("{arg} is not a valid bundle"))
}

/// `cairn contact add BUNDLE|FILE [--name NAME]`; through the running node
/// when there is one.
pub fn add(
    ctx: &Context,
    out: &Output,
    args: &BitcoinArgs,
    what: &str,
    name: Option<&str>,
) -> Result<()> {
    let settings = args.settings(ctx)?;
    let bundle = read_bundle(what)?;
    if let Some(n) = name {
        contacts::check_name(n)?;
    }
    let added = match ctx.store_or_node()? {
        Access::Store(store) => json!(contacts::add(
            &store,
            &ctx.contact_key(&store)?,
            settings.network,
            bundle,
            name,
            unix_now()
        )?),
        Access::Node(mut node) => {
            let text = bundle.to_text();
            if text.len() + 1024 > MAX_LINE {
                bail!("this bundle is too large for the node's API ({} bytes); stop the node and add it again", text.len());
            }
            node.call("contact_add", json!({"bundle": text, "name": name}))?
        }
    };
    if out.json {
        out.json(&added);
        return Ok(());
    }
    let id = added["id"].as_str().unwrap_or_default();
    let name = added["name"].as_str();
    out.line(&format!(
        "Added {}{id} (fingerprint {}, rotation {}, {} anchor(s)).",
        name.map(|n| format!("{n}: ")).unwrap_or_default(),
        added["fingerprint"].as_str().unwrap_or_default(),
        added["rotation_index"],
        added["anchors"],
    ));
    out.line(&format!(
        "Check it against Bitcoin with `cairn contact verify {}`.",
        name.unwrap_or(id)
    ));
    Ok(())
}

/// `cairn contact list`; through the running node when there is one.
pub fn list(ctx: &Context, out: &Output) -> Result<()> {
    let list = match ctx.store_or_node()? {
        Access::Store(store) => json!(contacts::list(&store, &ctx.contact_key(&store)?)?),
        Access::Node(mut node) => node.call("contacts", json!({}))?,
    };
    if out.json {
        out.json(&list);
        return Ok(());
    }
    let list = list.as_array().map(Vec::as_slice).unwrap_or_default();
    if list.is_empty() {
        out.line("No contacts yet; add one with `cairn contact add BUNDLE`.");
    }
    for c in list {
        out.line(&format!(
            "{:<16} {}  {}",
            c["name"].as_str().unwrap_or("-"),
            c["id"].as_str().unwrap_or_default(),
            c["fingerprint"].as_str().unwrap_or_default(),
        ));
    }
    Ok(())
}

/// `cairn contact rename WHO NAME`; through the running node when there is
/// one.
pub fn rename(
    ctx: &Context,
    out: &Output,
    args: &BitcoinArgs,
    who: &str,
    name: &str,
) -> Result<()> {
    let settings = args.settings(ctx)?;
    contacts::check_name(name)?;
    let renamed = match ctx.store_or_node()? {
        Access::Store(store) => {
            let key = ctx.contact_key(&store)?;
            json!(contacts::rename(&store, &key, settings.network, who, name)?)
        }
        Access::Node(mut node) => node.call("contact_rename", json!({"who": who, "name": name}))?,
    };
    if out.json {
        out.json(&renamed);
    } else {
        out.line(&format!(
            "{} is now called {name}.",
            renamed["id"].as_str().unwrap_or_default()
        ));
    }
    Ok(())
}

/// `cairn contact remove WHO [--yes]`: the contact and the conversation
/// with them; through the running node when there is one.
pub fn remove(ctx: &Context, out: &Output, who: &str, yes: bool) -> Result<()> {
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("removing {who} deletes your conversation with them; add --yes to go ahead");
        }
        eprint!("Remove {who} and delete your conversation with them? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("nothing removed");
        }
    }
    let removed = match ctx.store_or_node()? {
        Access::Store(store) => {
            let key = ctx.contact_key(&store)?;
            let (id, was) = contacts::remove(&store, &key, who)?;
            let messages = cairn_node::conversation::forget_in_book(&store, &key, &id)?;
            json!({"id": id, "removed": was, "messages_deleted": messages})
        }
        Access::Node(mut node) => node.call("contact_remove", json!({ "who": who }))?,
    };
    let id = removed["id"].as_str().unwrap_or_default();
    if out.json {
        out.json(&removed);
    } else if removed["removed"] == true {
        out.line(&format!(
            "Removed {id} and {} message(s).",
            removed["messages_deleted"]
        ));
    } else {
        out.line(&format!(
            "{id} was not a contact; {} message(s) of theirs deleted.",
            removed["messages_deleted"]
        ));
    }
    Ok(())
}

/// `cairn contact verify [ID|NAME]`: one contact, or every contact (each
/// followed through the blocks since its last seal, so that rotations and
/// stale identities show up: watching on demand). When a node runs, it
/// does the check.
pub fn verify(ctx: &Context, out: &Output, args: &BitcoinArgs, who: Option<&str>) -> Result<()> {
    let reports = match ctx.store_or_node()? {
        Access::Store(store) => json!(verify_here(ctx, args, &store, who)?),
        Access::Node(mut node) => node.call("contact_verify", json!({ "who": who }))?,
    };
    let reports = reports.as_array().map(Vec::as_slice).unwrap_or_default();
    if out.json {
        // One contact: its object; all of them: a list.
        match (who, reports) {
            (Some(_), [one]) => out.json(one),
            _ => out.json(&json!(reports)),
        }
    } else if who.is_none() && reports.is_empty() {
        out.line("No contacts yet; add one with `cairn contact add BUNDLE`.");
    }
    let mut failed = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        let id = r["id"].as_str().unwrap_or_default();
        let verdict = r["verdict_text"].as_str().unwrap_or_default();
        if r["failed"].as_bool() == Some(true) {
            failed.push(format!("{id}: {verdict}"));
        }
        if out.json {
            continue;
        }
        if i > 0 {
            out.line("");
        }
        let name = r["name"]
            .as_str()
            .map(|n| format!("{n}: "))
            .unwrap_or_default();
        out.line(&format!("Contact        {name}{id}"));
        for index in r["followed_rotations"].as_array().into_iter().flatten() {
            out.line(&format!(
                "Rotated        to rotation {index} (followed from the chain)"
            ));
        }
        out.line(&format!("Status         {verdict}"));
        if let Some(e) = r["follow_error"].as_str() {
            out.line(&format!("Why            {e}"));
        }
        if let Some(key) = r["signing_key"].as_str() {
            out.line(&format!(
                "Signing key    {key} (rotation {})",
                r["rotation_index"]
            ));
        }
    }
    if !failed.is_empty() {
        return Err(Reported(format!("does not verify: {}", failed.join("; "))).into());
    }
    Ok(())
}

/// The contacts' checks, run here on the store.
fn verify_here(
    ctx: &Context,
    args: &BitcoinArgs,
    store: &Store,
    who: Option<&str>,
) -> Result<Vec<VerifyReport>> {
    let settings = args.settings(ctx)?;
    let network = settings.network;
    let key = ctx.contact_key(store)?;
    let targets = match who {
        Some(w) => vec![contacts::find(store, &key, w)?],
        None => contact_book::all(store, &key)?,
    };
    let source = connect(&settings)?;
    let chain = synced_headers(store, network, &source, &mut Bar::quiet())?;
    targets
        .into_iter()
        .map(|c| {
            let checked = cairn_node::watch::check_contact(
                store,
                &key,
                network,
                &chain,
                &source,
                &c,
                settings.confirmations,
            )
            .with_context(|| format!("checking {} through {}", c.id, source.describe()))?;
            Ok(VerifyReport::new(
                c.id,
                &c.record,
                &checked,
                settings.confirmations,
            ))
        })
        .collect()
}

/// What `cairn restore` found on chain.
pub struct Found {
    /// The seals found.
    pub report: anchoring::RestoreReport,
    /// The funding wallet's balance after the scan.
    pub balance: bdk_wallet::Balance,
}

/// `cairn restore`'s chain part: header sync, then one pass over the blocks
/// that restores the funding wallet and finds the identity's seals; then the
/// hot keys of the rotation found. `pass` is the keystore passphrase when
/// the restore just set it (else it is asked for if the hot keys change).
pub(super) fn follow_restore(
    ctx: &Context,
    out: &Output,
    args: &BitcoinArgs,
    store: &Store,
    own: &identity::OwnIdentity,
    master: &MasterKey,
    pass: Option<zeroize::Zeroizing<String>>,
) -> Result<(identity::OwnIdentity, Found)> {
    let settings = args.settings(ctx)?;
    let network = settings.network;
    let source = connect(&settings)?;
    let chain = synced_headers(store, network, &source, &mut Bar::new(out, "headers"))?;
    let mut wallet = match funds::Funds::load(store, network)? {
        Some(f) => f,
        None => {
            let keys = funds::identity_descriptors(master, network)?;
            funds::Funds::create(store, network, &keys)?
        }
    };
    let mut bar = super::chain::Bar::new(out, "blocks");
    let restored = anchoring::restore_from_chain(
        store,
        &mut wallet,
        master,
        own,
        &chain,
        &source,
        &mut |h, t| bar.draw(h, t),
    );
    bar.finish();
    let (restored, report) = restored
        .with_context(|| format!("following the identity through {}", source.describe()))?;
    if restored.state.rotation_index() != own.state.rotation_index() {
        let pass = match pass {
            Some(p) => p,
            None => ctx.passphrase(Purpose::Existing)?,
        };
        identity::write_hot_keys(
            &ctx.dir,
            master,
            restored.state.rotation_index(),
            &pass,
            Default::default(),
        )?;
    }
    let balance = wallet.balance();
    Ok((restored, Found { report, balance }))
}
