//! `cairn mailboxes`, `cairn send`, `cairn inbox`, `cairn chat`. Messages
//! go through the running node (its local API): it holds the sessions and
//! the network.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::time::Duration;

use anyhow::{Context as _, Result};
use cairn_node::api::ApiClient;
use serde_json::{json, Value};

use super::secrets::Purpose;
use super::{identity, Context, Output};

fn client(ctx: &Context) -> Result<ApiClient> {
    Ok(ApiClient::connect(ctx.dir.root())?)
}

/// `cairn mailboxes [PEER_ID…]`: shows the mailbox nodes the log names, or
/// names these (an interaction event signed with the current key).
pub fn mailboxes(ctx: &Context, out: &Output, peers: &[String]) -> Result<()> {
    let (store, own) = if peers.is_empty() {
        ctx.load_to_read()?
    } else {
        ctx.load()?
    };
    let own = if peers.is_empty() {
        own
    } else {
        let mut bytes = Vec::new();
        for p in peers {
            let id: cairn_net::PeerId = p
                .parse()
                .with_context(|| format!("{p:?} is not a libp2p peer id (12D3KooW…)"))?;
            bytes.push(id.to_bytes());
        }
        let pass = ctx.passphrase(Purpose::Existing)?;
        let hot = identity::unlock_hot(&ctx.dir, &own, &pass)?;
        cairn_node::prekeys::set_mailboxes(
            &store,
            &own,
            &hot,
            bytes,
            cairn_node::chain::unix_now(),
        )?
    };
    let names: Vec<String> = own
        .state
        .mailboxes
        .iter()
        .map(|b| {
            cairn_net::PeerId::from_bytes(b)
                .map(|p| p.to_string())
                .unwrap_or_else(|_| format!("(not a peer id: {} bytes)", b.len()))
        })
        .collect();
    if out.json {
        out.json(&json!({ "mailboxes": names }));
    } else if names.is_empty() {
        out.line("Your log names no mailbox node: contacts reach you only while your node runs. Name some with `cairn mailboxes PEER_ID…`.");
    } else {
        out.line(
            "Your mailbox nodes (in your log; contacts leave messages there while you are away):",
        );
        for n in names {
            out.line(&format!("  {n}"));
        }
    }
    Ok(())
}

/// `cairn send CONTACT [TEXT]`: TEXT, or standard input when it is not
/// given. Returns once the node has stored the message.
pub fn send(ctx: &Context, out: &Output, to: &str, text: Option<&str>) -> Result<()> {
    let text = match text {
        Some(t) => t.to_string(),
        None => {
            let mut s = String::new();
            std::io::stdin()
                .take(cairn_messaging::payload::MAX_TEXT as u64 + 1)
                .read_to_string(&mut s)
                .context("cannot read the message from standard input")?;
            s.trim_end_matches('\n').to_string()
        }
    };
    let r = client(ctx)?.call("send", json!({ "to": to, "text": text }))?;
    if out.json {
        out.json(&r);
    } else {
        out.line(&format!(
            "Message {} to {to} accepted: it is stored and will be delivered (`cairn chat {to}` shows its state).",
            r["seq"]
        ));
    }
    Ok(())
}

fn line(m: &Value, names: &Names) -> String {
    let who = names.name(m["contact"].as_str().unwrap_or("?"));
    let text = m["text"].as_str().unwrap_or_default();
    if m["outgoing"].as_bool().unwrap_or(false) {
        format!(
            "me → {who} #{}  {text}  [{}]",
            m["seq"],
            m["state"].as_str().unwrap_or("?")
        )
    } else {
        format!("{who} #{}  {text}", m["seq"])
    }
}

/// The contacts' ids and names, for display.
struct Names(Vec<(String, Option<String>)>);

impl Names {
    fn load(client: &mut ApiClient) -> Names {
        let list = client.call("contacts", json!({})).unwrap_or(Value::Null);
        Names(
            list.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|c| {
                            Some((
                                c["id"].as_str()?.to_string(),
                                c["name"].as_str().map(str::to_string),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    fn name(&self, id: &str) -> String {
        self.0
            .iter()
            .find(|(i, _)| i == id)
            .and_then(|(_, n)| n.clone())
            .unwrap_or_else(|| id.chars().take(16).collect())
    }

    /// The id of the contact called `who` (a name or an id).
    fn id_of(&self, who: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(i, n)| n.as_deref() == Some(who) || i == who)
            .map(|(i, _)| i.clone())
    }
}

/// `cairn inbox`: messages received and not yet read, marked read (and
/// their senders told) only once they are written out.
pub fn inbox(ctx: &Context, out: &Output) -> Result<()> {
    let mut c = client(ctx)?;
    let unread = c.call("inbox", json!({ "mark_read": false }))?;
    let list = unread.as_array().cloned().unwrap_or_default();
    if out.json {
        out.json(&unread);
    } else {
        let names = Names::load(&mut c);
        if list.is_empty() {
            out.line("No new messages.");
        }
        for m in &list {
            out.line(&line(m, &names));
        }
        let waiting = c
            .call("requests", json!({}))
            .ok()
            .and_then(|r| r.as_array().map(Vec::len))
            .unwrap_or(0);
        if waiting > 0 {
            out.line(&format!(
                "{waiting} people who are not contacts wrote to you first: see `cairn contact requests`."
            ));
        }
    }
    std::io::stdout()
        .flush()
        .context("writing the messages out")?;
    let mut marks: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for m in &list {
        if let (Some(who), Some(seq)) = (m["contact"].as_str(), m["seq"].as_u64()) {
            marks.entry(who).or_default().push(seq);
        }
    }
    for (who, seqs) in marks {
        c.call("read", json!({ "contact": who, "seqs": seqs }))?;
    }
    Ok(())
}

/// `cairn contact requests [--dismiss ID]`: who wrote first without being
/// a contact.
pub fn requests(ctx: &Context, out: &Output, dismiss: Option<&str>) -> Result<()> {
    let list = client(ctx)?.call("requests", json!({ "dismiss": dismiss }))?;
    if out.json {
        out.json(&list);
        return Ok(());
    }
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        out.line("No one who is not a contact has written to you.");
    }
    let now = cairn_node::chain::unix_now();
    for r in &list {
        out.line(&format!(
            "{}  wrote first {} time(s), last {}; not verified until you add them",
            r["id"].as_str().unwrap_or_default(),
            r["count"],
            ago(now.saturating_sub(r["last_seen"].as_u64().unwrap_or(now))),
        ));
    }
    if !list.is_empty() {
        out.line(
            "Add one with `cairn contact fetch ID --name NAME`: their message then comes through.",
        );
    }
    Ok(())
}

/// How long ago, in words: "just now", "5 min ago", "3 h ago", "2 days ago".
fn ago(secs: u64) -> String {
    match secs {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}

/// `cairn messages [CONTACT] [--limit N]`.
pub fn history(ctx: &Context, out: &Output, with: Option<&str>, limit: u64) -> Result<()> {
    let mut c = client(ctx)?;
    let list = c.call("messages", json!({ "with": with, "limit": limit }))?;
    if out.json {
        out.json(&list);
        return Ok(());
    }
    let names = Names::load(&mut c);
    let list = list.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        out.line("No messages.");
    }
    for m in &list {
        out.line(&line(m, &names));
    }
    Ok(())
}

/// `cairn chat CONTACT`: the conversation, then new messages as they
/// arrive and delivery states as they change; each line typed is sent.
pub fn chat(ctx: &Context, out: &Output, with: &str) -> Result<()> {
    let mut c = client(ctx)?;
    let names = Names::load(&mut c);
    let history = c.call("messages", json!({ "with": with, "limit": 20 }))?;
    let contact_id = names.id_of(with).unwrap_or_default();
    let mut shown = Vec::new();
    for m in history.as_array().cloned().unwrap_or_default() {
        out.line(&line(&m, &names));
        if m["outgoing"] == false && m["state"] == "received" {
            shown.extend(m["seq"].as_u64());
        }
    }
    let mut last = c.call("message_events", json!({}))?["last"]
        .as_u64()
        .unwrap_or(0);
    // What is on the screen is read; other contacts' messages stay unread.
    std::io::stdout().flush()?;
    if !shown.is_empty() {
        let _ = c.call("read", json!({ "contact": contact_id, "seqs": shown }));
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        out.line(&format!(
            "— chatting with {with}; type a message and Enter to send, Ctrl-D to leave —"
        ));
    }
    // Lines typed are sent from their own thread, with their own connection.
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let sender_ctx = ctx.dir.root().to_path_buf();
    let to = with.to_string();
    std::thread::spawn(move || {
        let run = || -> Result<()> {
            let mut c = ApiClient::connect(&sender_ctx)?;
            for l in std::io::stdin().lock().lines() {
                let l = l?;
                if l.trim().is_empty() {
                    continue;
                }
                c.call("send", json!({ "to": to, "text": l }))?;
            }
            Ok(())
        };
        if let Err(e) = run() {
            eprintln!("error: {e:#}");
        }
        let _ = done_tx.send(());
    });
    let mut stdout = std::io::stdout();
    loop {
        let ended = done_rx.try_recv().is_ok();
        let r = c.call("message_events", json!({ "after": last, "wait": 1 }))?;
        last = r["last"].as_u64().unwrap_or(last);
        let mut read = Vec::new();
        for e in r["events"].as_array().cloned().unwrap_or_default() {
            if e["contact"].as_str() != Some(&contact_id) {
                continue;
            }
            if e["kind"] == "received" {
                let _ = writeln!(
                    stdout,
                    "{} #{}  {}",
                    names.name(&contact_id),
                    e["message"],
                    e["text"].as_str().unwrap_or_default()
                );
                read.extend(e["message"].as_u64());
            } else if e["outgoing"].as_bool() == Some(true) {
                let _ = writeln!(
                    stdout,
                    "  (#{} {})",
                    e["message"],
                    e["state"].as_str().unwrap_or("?")
                );
            }
        }
        if !read.is_empty() && stdout.flush().is_ok() {
            let _ = c.call("read", json!({ "contact": contact_id, "seqs": read }));
        }
        if ended {
            // Standard input ended: leave once what was typed has been
            // handed to the node.
            std::thread::sleep(Duration::from_millis(200));
            return Ok(());
        }
    }
}
