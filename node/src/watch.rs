//! Watching identities against Bitcoin: the node's own and its contacts'.
//!
//! [`check_contact`] and [`check_own`] check one identity against the
//! validated header chain and the chain source (proofs refreshed, spends of
//! the last seal followed from the blocks, the verdict). `cairn contact
//! verify` runs them on demand; the daemon runs them at every new tip.
//!
//! [`Watcher`] holds no I/O: it turns successive checks into the events
//! people read ("alice rotated to key 2 at block 812", "bob is stale"),
//! kept in a bounded list with sequence numbers so that clients can ask for
//! what they have not seen.

use std::collections::{HashMap, VecDeque};

use cairn_chain_anchor::source::ChainSource;
use cairn_chain_anchor::{ChainNetwork, HeaderChain, Verdict};
use cairn_wallet::IdentityId;
use serde::Serialize;

use crate::anchoring::{self, AnchorError, Checked};
use crate::contact_book::{self, Contact, ContactKey};
use crate::identity::OwnIdentity;
use crate::store::Store;

/// Most events kept; older ones are dropped first.
pub const MAX_EVENTS: usize = 256;

/// Checks `contact` against `chain` (synced by the caller) and `source`,
/// and stores its bundle when the check changed it (new proofs, rotations
/// followed from the chain).
pub fn check_contact(
    store: &Store,
    key: &ContactKey,
    network: ChainNetwork,
    chain: &HeaderChain,
    source: &dyn ChainSource,
    contact: &Contact,
    confirmations: u32,
) -> Result<Checked, AnchorError> {
    let mut bundle = contact.bundle_on(network);
    let checked = anchoring::check_bundle(&mut bundle, chain, source, confirmations)?;
    if checked.changed {
        contact_book::put(store, key, network, &contact.id, &bundle, &contact.record)?;
    }
    Ok(checked)
}

/// Checks the node's own identity the way a contact would see it. Nothing
/// is stored: only `cairn rotate` (or `cairn restore`) changes the own log.
pub fn check_own(
    store: &Store,
    network: ChainNetwork,
    chain: &HeaderChain,
    source: &dyn ChainSource,
    own: &OwnIdentity,
    confirmations: u32,
) -> Result<Checked, AnchorError> {
    let mut bundle = anchoring::own_bundle(store, network, own)?;
    anchoring::check_bundle(&mut bundle, chain, source, confirmations)
}

/// An identity being watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Its id.
    pub id: IdentityId,
    /// The contact's name, if the user gave one.
    pub name: Option<String>,
    /// Whether it is the node's own identity.
    pub own: bool,
}

impl Subject {
    /// How messages name it.
    pub fn label(&self) -> String {
        if self.own {
            return format!("your identity ({})", self.id.fingerprint());
        }
        match &self.name {
            Some(n) => format!("{n} ({})", self.id.fingerprint()),
            None => self.id.to_string(),
        }
    }
}

/// What an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A rotation was followed from the chain.
    Rotated,
    /// An identity's verdict changed (or is bad when first seen).
    Verdict,
    /// The chain source became unreachable, or reachable again.
    Source,
}

/// One thing the watcher noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WatchEvent {
    /// Sequence number, from 1, increasing.
    pub seq: u64,
    /// When, Unix seconds.
    pub time: u64,
    /// What kind of event.
    pub kind: EventKind,
    /// The identity, unless the event is about the chain source.
    pub identity: Option<IdentityId>,
    /// The contact's name, if any.
    pub name: Option<String>,
    /// Whether the identity is the node's own.
    pub own: bool,
    /// The new rotation index (rotations).
    pub rotation_index: Option<u32>,
    /// The verdict after the event.
    pub verdict: Option<Verdict>,
    /// For people.
    pub message: String,
}

/// The event log (sans I/O): compares each check with the last one of the
/// same identity.
#[derive(Debug, Default)]
pub struct Watcher {
    last: HashMap<IdentityId, Verdict>,
    events: VecDeque<WatchEvent>,
    next_seq: u64,
    source_down: bool,
}

/// The verdict's name (`current`, `stale`…).
fn kind_of(v: &Verdict) -> &'static str {
    match v {
        Verdict::Unanchored { .. } => "unanchored",
        Verdict::Current { .. } => "current",
        Verdict::Pending { .. } => "pending",
        Verdict::Stale { .. } => "stale",
        Verdict::Reorged { .. } => "reorged",
        Verdict::Invalid { .. } => "invalid",
    }
}

impl Watcher {
    /// An empty log.
    pub fn new() -> Watcher {
        Watcher::default()
    }

    fn push(&mut self, mut event: WatchEvent) {
        self.next_seq += 1;
        event.seq = self.next_seq;
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn about(subject: &Subject, time: u64, kind: EventKind, message: String) -> WatchEvent {
        WatchEvent {
            seq: 0,
            time,
            kind,
            identity: Some(subject.id),
            name: subject.name.clone(),
            own: subject.own,
            rotation_index: None,
            verdict: None,
            message,
        }
    }

    /// Records a check of `subject`: one event per rotation followed, and
    /// one when the verdict changes kind (or, the first time an identity is
    /// seen, when it is stale, reorged or invalid).
    pub fn observe(&mut self, subject: &Subject, checked: &Checked, now: u64) {
        let verdict = &checked.verification.verdict;
        for &index in &checked.followed {
            let at = match verdict {
                Verdict::Current {
                    rotation_index,
                    anchor_height,
                    ..
                } if *rotation_index == index => format!(" at block {anchor_height}"),
                _ => String::new(),
            };
            let mut e = Self::about(
                subject,
                now,
                EventKind::Rotated,
                format!("{} rotated to key {index}{at}", subject.label()),
            );
            e.rotation_index = Some(index);
            e.verdict = Some(verdict.clone());
            self.push(e);
        }
        let before = self.last.insert(subject.id, verdict.clone());
        let changed = match &before {
            Some(b) => kind_of(b) != kind_of(verdict),
            None => matches!(
                verdict,
                Verdict::Stale { .. } | Verdict::Reorged { .. } | Verdict::Invalid { .. }
            ),
        };
        if changed {
            let mut message = format!("{} is {verdict}", subject.label());
            if let Some(why) = &checked.follow_error {
                message.push_str(&format!(" (the spend could not be followed: {why})"));
            }
            let mut e = Self::about(subject, now, EventKind::Verdict, message);
            e.verdict = Some(verdict.clone());
            self.push(e);
        }
    }

    /// Forgets identities no longer watched (a removed contact).
    pub fn retain(&mut self, watched: &[Subject]) {
        self.last
            .retain(|id, _| watched.iter().any(|s| s.id == *id));
    }

    /// The chain source failed: one event until it works again.
    pub fn source_failed(&mut self, why: &str, now: u64) {
        if self.source_down {
            return;
        }
        self.source_down = true;
        self.push_source(
            now,
            format!("the chain source failed, keys cannot be checked until it is back: {why}"),
        );
    }

    /// The chain source answered: an event if it had failed.
    pub fn source_ok(&mut self, now: u64) {
        if !std::mem::take(&mut self.source_down) {
            return;
        }
        self.push_source(now, "the chain source is reachable again".into());
    }

    fn push_source(&mut self, time: u64, message: String) {
        self.push(WatchEvent {
            seq: 0,
            time,
            kind: EventKind::Source,
            identity: None,
            name: None,
            own: false,
            rotation_index: None,
            verdict: None,
            message,
        });
    }

    /// Whether the chain source failed last time.
    pub fn source_down(&self) -> bool {
        self.source_down
    }

    /// The last verdict of `id`.
    pub fn verdict(&self, id: &IdentityId) -> Option<&Verdict> {
        self.last.get(id)
    }

    /// The events kept, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &WatchEvent> {
        self.events.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_chain_anchor::Verification;

    fn subject(n: u8, name: &str) -> Subject {
        Subject {
            id: IdentityId([n; 32]),
            name: Some(name.into()),
            own: false,
        }
    }

    fn checked(verdict: Verdict, followed: Vec<u32>) -> Checked {
        Checked {
            verification: Verification {
                state: None,
                verdict,
            },
            changed: !followed.is_empty(),
            followed,
            follow_error: None,
        }
    }

    fn current(rotation_index: u32, anchor_height: u32) -> Verdict {
        Verdict::Current {
            rotation_index,
            seal: "00:0".into(),
            anchor_height,
            confirmations: 1,
            tip_height: anchor_height,
            tip_hash: "00".into(),
        }
    }

    #[test]
    fn rotations_and_verdict_changes_become_events() {
        let mut w = Watcher::new();
        let alice = subject(1, "alice");
        // First sight of a good identity: nothing to say.
        w.observe(&alice, &checked(current(0, 104), vec![]), 10);
        w.observe(&alice, &checked(current(0, 104), vec![]), 11);
        assert_eq!(w.events().count(), 0);
        // A rotation followed from the chain.
        w.observe(&alice, &checked(current(1, 106), vec![1]), 12);
        let e: Vec<_> = w.events().cloned().collect();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].seq, 1);
        assert_eq!(e[0].kind, EventKind::Rotated);
        assert_eq!(e[0].rotation_index, Some(1));
        assert!(
            e[0].message.contains("alice") && e[0].message.contains("key 1 at block 106"),
            "{}",
            e[0].message
        );
        // The rotation's block leaves the best chain.
        let reorged = Verdict::Reorged {
            rotation_index: Some(0),
            left_index: 1,
        };
        w.observe(&alice, &checked(reorged.clone(), vec![]), 13);
        w.observe(&alice, &checked(reorged, vec![]), 14);
        let e: Vec<_> = w.events().cloned().collect();
        assert_eq!(e.len(), 2);
        assert_eq!(e[1].kind, EventKind::Verdict);
        assert!(e[1].message.contains("reorged"), "{}", e[1].message);
        assert_eq!(e[1].seq, 2);
        // Then stale: the seal spent by an event the node cannot follow.
        let mut c = checked(
            Verdict::Stale {
                rotation_index: 1,
                seal: "ab:0".into(),
            },
            vec![],
        );
        c.follow_error = Some("not a rotation of this log".into());
        w.observe(&alice, &c, 15);
        let last = w.events().last().unwrap().clone();
        assert!(last.message.contains("stale") && last.message.contains("not a rotation"));
        assert_eq!(w.verdict(&alice.id).map(kind_of), Some("stale"));
    }

    #[test]
    fn a_bad_identity_is_reported_when_first_seen() {
        let mut w = Watcher::new();
        let own = Subject {
            own: true,
            ..subject(2, "ignored")
        };
        w.observe(
            &own,
            &checked(
                Verdict::Stale {
                    rotation_index: 0,
                    seal: "cd:0".into(),
                },
                vec![],
            ),
            1,
        );
        let e = w.events().next().unwrap();
        assert!(
            e.own && e.message.starts_with("your identity"),
            "{}",
            e.message
        );
    }

    #[test]
    fn source_failures_are_reported_once_and_the_log_is_bounded() {
        let mut w = Watcher::new();
        w.source_ok(1);
        assert_eq!(w.events().count(), 0);
        w.source_failed("connection refused", 2);
        w.source_failed("connection refused", 3);
        assert!(w.source_down());
        w.source_ok(4);
        assert_eq!(w.events().count(), 2);
        let alice = subject(1, "alice");
        for i in 0..MAX_EVENTS as u32 + 10 {
            w.observe(&alice, &checked(current(i + 1, 100 + i), vec![i + 1]), 5);
        }
        assert_eq!(w.events().count(), MAX_EVENTS);
        let seqs: Vec<u64> = w.events().map(|e| e.seq).collect();
        assert!(seqs.windows(2).all(|p| p[1] == p[0] + 1));
        assert_eq!(*seqs.last().unwrap(), MAX_EVENTS as u64 + 12);
        w.retain(&[]);
        assert!(w.verdict(&alice.id).is_none());
    }
}
