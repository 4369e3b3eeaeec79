//! The commands of `cairn`, over the node library.

pub mod anchor;
pub mod chain;
#[cfg(feature = "network")]
pub mod messages;
pub mod node;
mod output;
mod secrets;
pub mod wallet;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use cairn_node::identity::{self, IdentityError, OwnIdentity};
use cairn_node::DataDir;
use cairn_wallet::kel::{KeyEventLog, LogView, MAX_EVENT_LEN, MAX_LOG_EVENTS};
use cairn_wallet::keystore::KdfParams;
use cairn_wallet::{IdentityId, SeedPhrase};
use serde_json::json;

use cairn_node::contact_book::ContactKey;
pub use output::Output;
use secrets::Purpose;

/// Where the command works and how it gets the keystore passphrase.
pub struct Context {
    dir: DataDir,
    passphrase_file: Option<PathBuf>,
    /// The keystore passphrase once asked for: a command that unlocks
    /// twice (the wallet set up, then a payment signed) asks once.
    known: std::sync::Mutex<Option<zeroize::Zeroizing<String>>>,
}

impl Context {
    /// The context from the global flags.
    pub fn new(data_dir: Option<PathBuf>, passphrase_file: Option<PathBuf>) -> Result<Self> {
        let dir = match data_dir {
            Some(d) => DataDir::new(d),
            None => DataDir::platform_default()
                .context("this platform has no default data directory; pass --data-dir DIR")?,
        };
        Ok(Context {
            dir,
            passphrase_file,
            known: std::sync::Mutex::new(None),
        })
    }

    fn passphrase(&self, purpose: Purpose) -> Result<zeroize::Zeroizing<String>> {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if let (Purpose::Existing, Some(p)) = (purpose, known.as_ref()) {
            return Ok(p.clone());
        }
        let p = secrets::keystore_passphrase(self.passphrase_file.as_deref(), purpose)?;
        if purpose == Purpose::Existing {
            *known = Some(p.clone());
        }
        Ok(p)
    }

    fn load(&self) -> Result<(cairn_node::Store, OwnIdentity)> {
        let store = identity::open_store(&self.dir)?;
        let own = identity::load(&store, &self.dir)?;
        Ok((store, own))
    }

    /// As [`Context::load`], for a command that only reads: it works while
    /// a node runs on the data directory (the store opened read-only).
    fn load_to_read(&self) -> Result<(cairn_node::Store, OwnIdentity)> {
        let store = identity::open_store_to_read(&self.dir)?;
        let own = identity::load(&store, &self.dir)?;
        Ok((store, own))
    }

    /// How the store's contact book opens: under the identity's store key
    /// (so the keystore passphrase is asked for), or in the clear on a
    /// node without an identity. Contacts still in the clear are sealed.
    fn contact_key(&self, store: &cairn_node::Store) -> Result<ContactKey> {
        Ok(match self.unlock(store)? {
            Some((_, hot)) => cairn_node::contact_book::unlock(store, &hot)?,
            None => ContactKey::Clear,
        })
    }

    /// The own identity and its hot keys (the passphrase asked for), if
    /// the store has an identity.
    fn unlock(
        &self,
        store: &cairn_node::Store,
    ) -> Result<Option<(OwnIdentity, cairn_wallet::keystore::HotKeys)>> {
        if store.own_identity()?.is_none() {
            return Ok(None);
        }
        let own = identity::load(store, &self.dir)?;
        let pass = self.passphrase(Purpose::Existing)?;
        let hot = identity::unlock_hot(&self.dir, &own, &pass)?;
        Ok(Some((own, hot)))
    }

    /// The store, or the API of the node that holds it.
    fn store_or_node(&self) -> Result<Access> {
        match identity::open_store(&self.dir) {
            Ok(s) => Ok(Access::Store(s)),
            Err(IdentityError::NodeRunning(_)) => Ok(Access::Node(
                cairn_node::api::ApiClient::connect(self.dir.root())?,
            )),
            Err(e) => Err(e.into()),
        }
    }
}

/// How a command reaches the node's state: the store itself, or the running
/// node (which holds the store) through its API.
enum Access {
    Store(cairn_node::Store),
    Node(cairn_node::api::ApiClient),
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `anchors`: how many of the identity's establishment events have a seal
/// on the configured network.
fn identity_json(own: &OwnIdentity, anchors: usize) -> serde_json::Value {
    let cur = own.state.current();
    json!({
        "id": own.state.id,
        "fingerprint": own.state.id.fingerprint(),
        "rotation_index": cur.index,
        "signing_key": hex(&cur.signing_key.serialize()),
        "messaging_key": hex(&cur.messaging_key.0),
        "next_key_digest": cur.next_key_digest,
        "events": own.state.len,
        "anchored": anchors > 0,
        "anchors": anchors,
    })
}

fn identity_text(own: &OwnIdentity, anchors: usize) -> String {
    let cur = own.state.current();
    let anchored = match anchors {
        0 => "no (not yet anchored in Bitcoin; see `cairn anchor`)".to_string(),
        n => format!("yes ({n} seal(s); `cairn id export` shares the proofs)"),
    };
    format!(
        "Identity       {}\nFingerprint    {}\nRotation       {}\nSigning key    {}\nMessaging key  {}\nLog            {} event(s)\nAnchored       {anchored}",
        own.state.id,
        own.state.id.fingerprint(),
        cur.index,
        hex(&cur.signing_key.serialize()),
        hex(&cur.messaging_key.0),
        own.state.len,
    )
}

/// `cairn init`.
pub fn init(ctx: &Context, out: &Output, words: usize, yes: bool, with_bip39: bool) -> Result<()> {
    let store = identity::open_store(&ctx.dir)?;
    if let Some(existing) = store.own_identity()? {
        bail!(
            "{} already holds identity {existing}; use another --data-dir",
            ctx.dir.root().display()
        );
    }
    let bip39 = if with_bip39 {
        secrets::bip39_passphrase(Purpose::New)?
    } else {
        Default::default()
    };
    let pass = ctx.passphrase(Purpose::New)?;
    let phrase = SeedPhrase::generate(words)?;
    let list = phrase.words();
    if !out.json {
        out.line("Your seed phrase. Write the words down, in order, and keep them offline.");
        out.line(
            "Anyone with these words is you; without them a lost device loses the identity.\n",
        );
        for (i, chunk) in list.chunks(4).enumerate() {
            let row: Vec<String> = chunk
                .iter()
                .enumerate()
                .map(|(j, w)| format!("{:>2}. {w:<10}", i * 4 + j + 1))
                .collect();
            out.line(row.join(" ").trim_end());
        }
    }
    if !yes {
        if out.json {
            // The JSON result comes after the confirmation; show the words on the terminal first.
            eprintln!("Your seed phrase: {}", *phrase.phrase());
        }
        secrets::confirm_words(&list)?;
    }
    let own = identity::create(
        &store,
        &ctx.dir,
        &phrase,
        &bip39,
        &pass,
        KdfParams::default(),
    )?;
    // New words: no coins can have reached their addresses before now, so the
    // funding wallet need not scan older blocks.
    store.set_identity_birthday(cairn_node::chain::unix_now())?;
    if out.json {
        let mut v = identity_json(&own, 0);
        v["words"] = json!(*phrase.phrase());
        out.json(&v);
    } else {
        out.line(&format!(
            "\nCreated a new identity in {}.\n",
            ctx.dir.root().display()
        ));
        out.line(&identity_text(&own, 0));
    }
    Ok(())
}

/// `cairn restore`: the identity from its words, then (unless `offline`)
/// followed on chain: its seals, its current rotation and the funding
/// wallet's coins, with nothing but the words and the chain source.
pub fn restore(
    ctx: &Context,
    out: &Output,
    args: &chain::BitcoinArgs,
    with_bip39: bool,
    offline: bool,
) -> Result<()> {
    let typed = secrets::seed_words()?;
    let phrase = SeedPhrase::parse(&typed)?;
    let bip39 = if with_bip39 {
        secrets::bip39_passphrase(Purpose::Existing)?
    } else {
        Default::default()
    };
    let new_id = identity::preview(&phrase, &bip39)?;
    let store = identity::open_store(&ctx.dir)?;
    let (own, pass, already) = match store.own_identity()? {
        Some(existing) if existing == new_id => (identity::load(&store, &ctx.dir)?, None, true),
        Some(existing) => {
            return Err(IdentityError::HoldsDifferentIdentity {
                existing,
                new: new_id,
            }
            .into())
        }
        None => {
            let pass = ctx.passphrase(Purpose::New)?;
            let own = identity::create(
                &store,
                &ctx.dir,
                &phrase,
                &bip39,
                &pass,
                KdfParams::default(),
            )?;
            // When the words were made is unknown; no identity is older than Cairn.
            store.set_identity_birthday(cairn_node::funds::CAIRN_EPOCH)?;
            (own, Some(pass), false)
        }
    };
    let master = cairn_wallet::MasterKey::new(&phrase.to_seed(&bip39));
    drop(phrase);
    let followed = if offline {
        None
    } else {
        Some(anchor::follow_restore(
            ctx, out, args, &store, &own, &master, pass,
        ))
    };
    drop(master);
    let (own, found) = match followed {
        Some(Ok((own, found))) => (own, Some(Ok(found))),
        Some(Err(e)) => (own, Some(Err(format!("{e:#}")))),
        None => (own, None),
    };
    let anchors = match &found {
        Some(Ok(f)) => f.report.heights.len(),
        _ => 0,
    };
    if out.json {
        let mut v = identity_json(&own, anchors);
        v["already_present"] = json!(already);
        match &found {
            Some(Ok(f)) => {
                v["chain"] = json!({
                    "anchor_heights": f.report.heights,
                    "rotation_index": f.report.rotation_index(),
                    "blocks_scanned": f.report.blocks,
                    "funds_confirmed_sat": f.balance.confirmed.to_sat(),
                    "funds_total_sat": f.balance.total().to_sat(),
                });
            }
            Some(Err(e)) => v["chain_error"] = json!(e),
            None => {}
        }
        out.json(&v);
        return Ok(());
    }
    if already {
        out.line(&format!(
            "{} already holds this identity.\n",
            ctx.dir.root().display()
        ));
    } else {
        out.line(&format!(
            "Restored identity into {}.\n",
            ctx.dir.root().display()
        ));
    }
    out.line(&identity_text(&own, anchors));
    match &found {
        Some(Ok(f)) => {
            match f.report.rotation_index() {
                None => out.line(&format!(
                    "On chain       no seal found in {} blocks (never anchored, or not on this chain)",
                    f.report.blocks
                )),
                Some(i) => out.line(&format!(
                    "On chain       inception at block {}, rotation {i} current{}",
                    f.report.heights[0],
                    if i > 0 { format!(" (last rotation at block {})", f.report.heights[i as usize]) } else { String::new() }
                )),
            }
            out.line(&format!("Funds          {} confirmed", f.balance.confirmed));
        }
        Some(Err(e)) => out.line(&format!(
            "On chain       not followed: {e}\n               Run `cairn restore` again with a chain source to find the seals and coins."
        )),
        None => {}
    }
    if !already {
        out.line(&format!(
            "\nCheck the fingerprint {}: if your identity had another one, these words{} are not the ones you created it with.",
            own.state.id.fingerprint(),
            if with_bip39 { " or this BIP39 passphrase" } else { " (or the BIP39 passphrase you used then)" }
        ));
    }
    Ok(())
}

/// `cairn id`.
pub fn show_id(ctx: &Context, out: &Output, args: &chain::BitcoinArgs) -> Result<()> {
    let settings = args.settings(ctx)?;
    let (store, own) = ctx.load_to_read()?;
    let anchors = store.anchors(settings.network, &own.state.id)?.len();
    if out.json {
        out.json(&identity_json(&own, anchors));
    } else {
        out.line(&identity_text(&own, anchors));
    }
    Ok(())
}

/// `cairn safety-number ID`.
pub fn safety_number(ctx: &Context, out: &Output, other: &str) -> Result<()> {
    let other: IdentityId = other.parse()?;
    let (_store, own) = ctx.load_to_read()?;
    let n = own.state.id.safety_number(&other);
    if out.json {
        out.json(&json!({ "own": own.state.id, "other": other, "safety_number": n.digits() }));
    } else {
        out.line(&format!("Safety number with {other}:\n\n{n}\n"));
        out.line("Compare it with your contact in person or on a call: both of you must see the same digits.");
    }
    Ok(())
}

/// `cairn log export FILE`.
pub fn log_export(ctx: &Context, out: &Output, file: &Path) -> Result<()> {
    let (_store, own) = ctx.load_to_read()?;
    let bytes = own.log.encode();
    cairn_node::datadir::write_atomic(file, &bytes)
        .with_context(|| format!("cannot write {}", file.display()))?;
    if out.json {
        out.json(&json!({ "id": own.state.id, "file": file, "events": own.state.len, "bytes": bytes.len() }));
    } else {
        out.line(&format!(
            "Wrote the key event log of {} ({} event(s), {} bytes) to {}.",
            own.state.id,
            own.state.len,
            bytes.len(),
            file.display()
        ));
    }
    Ok(())
}

/// `cairn log verify FILE`.
pub fn log_verify(out: &Output, file: &Path) -> Result<()> {
    let max = (13 + MAX_LOG_EVENTS * (2 + MAX_EVENT_LEN)) as u64;
    let len = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    if len > max {
        bail!(
            "{} is {len} bytes, larger than any valid key event log",
            file.display()
        );
    }
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let log = KeyEventLog::decode(&bytes)
        .with_context(|| format!("{} is not a valid key event log file", file.display()))?;
    match cairn_chain_anchor::verify_without_chain(&log) {
        Ok((state, verdict)) => {
            if out.json {
                out.json(&json!({
                    "valid": true,
                    "id": state.id,
                    "fingerprint": state.id.fingerprint(),
                    "rotation_index": state.rotation_index(),
                    "verdict": verdict,
                    "log": LogView::from(&log),
                }));
            } else {
                let cur = state.current();
                out.line(&format!(
                    "Valid key event log.\nIdentity       {}\nFingerprint    {}\nEvents         {}\nRotation       {}\nSigning key    {}\nStatus         {verdict}",
                    state.id,
                    state.id.fingerprint(),
                    state.len,
                    cur.index,
                    hex(&cur.signing_key.serialize())
                ));
            }
            Ok(())
        }
        Err(verdict) => {
            let msg = format!("{} is not a valid key event log: {verdict}", file.display());
            if out.json {
                out.json(&json!({ "valid": false, "verdict": verdict, "error": msg }));
            }
            Err(output::Reported(msg).into())
        }
    }
}

/// `cairn keystore check`.
pub fn keystore_check(ctx: &Context, out: &Output) -> Result<()> {
    let (_store, own) = ctx.load_to_read()?;
    let pass = ctx.passphrase(Purpose::Existing)?;
    let hot = identity::unlock_hot(&ctx.dir, &own, &pass)?;
    identity::unlock_seed(&ctx.dir, &own, &pass)?;
    if out.json {
        out.json(&json!({ "id": own.state.id, "unlocked": true, "rotation_index": hot.index }));
    } else {
        out.line(&format!(
            "The keystore unlocks and its keys belong to {} (rotation {}).",
            own.state.id, hot.index
        ));
    }
    Ok(())
}

fn print_prekeys(out: &Output, list: &[cairn_node::prekeys::PrekeyView]) {
    if list.is_empty() {
        out.line("No prekeys yet: contacts cannot write to you while you are offline. Publish one with `cairn prekeys refresh`.");
    }
    for p in list {
        out.line(&format!(
            "Prekey {:<4} {}  expires {}{}",
            p.id,
            p.key,
            cairn_node::chain::utc_text(p.expires),
            if p.secret_held {
                ""
            } else {
                "  (secret erased)"
            }
        ));
    }
}

/// `cairn prekeys`.
pub fn prekeys_list(ctx: &Context, out: &Output) -> Result<()> {
    let (store, own) = ctx.load_to_read()?;
    let list = cairn_node::prekeys::list(&store, &own)?;
    if out.json {
        out.json(&json!(list));
    } else {
        print_prekeys(out, &list);
    }
    Ok(())
}

/// `cairn prekeys refresh`.
pub fn prekeys_refresh(ctx: &Context, out: &Output) -> Result<()> {
    let (store, own) = ctx.load()?;
    let pass = ctx.passphrase(Purpose::Existing)?;
    let hot = identity::unlock_hot(&ctx.dir, &own, &pass)?;
    let r = cairn_node::prekeys::refresh(&store, &own, &hot, cairn_node::chain::unix_now())?;
    let list = cairn_node::prekeys::list(&store, &r.own)?;
    if out.json {
        out.json(&json!({ "made": r.made, "erased": r.erased, "prekeys": list }));
        return Ok(());
    }
    match r.made {
        Some(id) => out.line(&format!(
            "Published prekey {id} in your log; share it with `cairn id export` (the network will publish it for you)."
        )),
        None => out.line("Your newest prekey is good for more than 7 days: nothing to publish."),
    }
    if r.erased > 0 {
        out.line(&format!(
            "Erased the secrets of {} expired prekey(s).",
            r.erased
        ));
    }
    print_prekeys(out, &list);
    Ok(())
}
