//! An established session: the double ratchet (as in Signal's
//! specification) seeded from the Noise handshake.
//!
//! ```text
//! Ratchet message = 0x03 ‖ DH ratchet key (32) ‖ PN (u32) ‖ N (u32) ‖ AEAD(mk, padded content)
//! AEAD            = ChaCha20-Poly1305, nonce 0 (each message key is used once),
//!                   associated data = handshake hash ‖ sender id ‖ header
//! KDF_RK(rk, dh)  = HKDF-SHA256(salt rk, dh, "cairn/session/ratchet/v1") → (rk', ck)
//! KDF_CK(ck)      = (HMAC(ck, 0x01) → message key, HMAC(ck, 0x02) → next ck)
//! ```
//!
//! Every message key is derived, used once and erased: keys captured later
//! open no earlier message (forward secrecy). Each turn of the conversation
//! mixes a fresh X25519 exchange into the root key: a copy of the state
//! taken by an attacker stops working once both sides have sent a message
//! after it (healing). Keys of skipped messages are kept, up to a bound, so
//! that late and reordered messages still open; a message opens once.

use std::collections::VecDeque;

use cairn_wallet::hash::tags;
use cairn_wallet::IdentityId;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::ChaCha20Poly1305;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::codec::Reader;
use crate::kdf::{chain_step, hkdf2};
use crate::pad::{content, pad_into};
use crate::{random_secret, Kind, SessionError};

/// The most messages one chain may skip (arrive later than a message
/// after them).
pub const MAX_SKIP: u32 = 1000;
/// The most skipped-message keys a session keeps; the oldest go first.
pub const MAX_SKIPPED_KEYS: usize = 2000;
/// Framing around the padded content of a ratchet message.
pub const RATCHET_OVERHEAD: usize = 1 + HEADER + TAG;
const HEADER: usize = 32 + 4 + 4;
const TAG: usize = 16;
const STATE_VERSION: u8 = 1;

#[derive(Clone)]
struct Skipped {
    dh: [u8; 32],
    n: u32,
    key: Zeroizing<[u8; 32]>,
}

/// One side of a session. Cloning copies secrets: the node keeps one copy,
/// in its encrypted store.
#[derive(Clone)]
pub struct Session {
    /// The handshake hash: binds every message to this session.
    hash: [u8; 32],
    me: IdentityId,
    peer: IdentityId,
    root: Zeroizing<[u8; 32]>,
    dh_self: StaticSecret,
    /// `dh_self`'s public key (computed once per turn, not per message).
    dh_self_public: [u8; 32],
    dh_remote: Option<[u8; 32]>,
    chain_send: Option<Zeroizing<[u8; 32]>>,
    chain_recv: Option<Zeroizing<[u8; 32]>>,
    sent: u32,
    received: u32,
    previous: u32,
    skipped: VecDeque<Skipped>,
    mailbox_send: Zeroizing<[u8; 32]>,
    mailbox_recv: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("me", &self.me)
            .field("peer", &self.peer)
            .field("sent", &self.sent)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

fn dh(secret: &StaticSecret, public: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(secret.diffie_hellman(&PublicKey::from(*public)).to_bytes())
}

/// The mailbox keys of the two directions, initiator→responder first.
fn mailbox_keys(root: &[u8; 32]) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>) {
    hkdf2(&[], &[root], tags::MAILBOX_SESSION.as_bytes())
}

impl Session {
    /// A session just out of the handshake, before either side's first
    /// ratchet step: ratchet key `dh_self`, no chains yet, the mailbox keys
    /// of the two directions (initiator → responder first) assigned to this
    /// side.
    fn fresh(
        root: Zeroizing<[u8; 32]>,
        hash: [u8; 32],
        dh_self: StaticSecret,
        me: IdentityId,
        peer: IdentityId,
        initiator: bool,
    ) -> Session {
        let (forward, backward) = mailbox_keys(&root);
        let (mailbox_send, mailbox_recv) = if initiator {
            (forward, backward)
        } else {
            (backward, forward)
        };
        Session {
            hash,
            me,
            peer,
            root,
            dh_self_public: PublicKey::from(&dh_self).to_bytes(),
            dh_self,
            dh_remote: None,
            chain_send: None,
            chain_recv: None,
            sent: 0,
            received: 0,
            previous: 0,
            skipped: VecDeque::new(),
            mailbox_send,
            mailbox_recv,
        }
    }

    /// The chain the responder may send on before the initiator speaks.
    fn first_chain(root: &[u8; 32], hash: &[u8; 32]) -> Zeroizing<[u8; 32]> {
        hkdf2(root, &[hash], tags::SESSION_FIRST_CHAIN.as_bytes()).0
    }

    /// The initiator's side, after the answer: it turns the ratchet at once
    /// with a fresh key against the responder's ratchet key.
    pub(crate) fn initiator(
        root: Zeroizing<[u8; 32]>,
        hash: [u8; 32],
        responder_ratchet: [u8; 32],
        me: IdentityId,
        peer: IdentityId,
    ) -> Result<Session, SessionError> {
        let mut s = Session::fresh(root, hash, random_secret()?, me, peer, true);
        let (root, chain_send) = hkdf2(
            &*s.root,
            &[&*dh(&s.dh_self, &responder_ratchet)],
            tags::SESSION_RATCHET.as_bytes(),
        );
        s.chain_recv = Some(Session::first_chain(&s.root, &hash));
        s.root = root;
        s.chain_send = Some(chain_send);
        s.dh_remote = Some(responder_ratchet);
        Ok(s)
    }

    /// The responder's side, after it answered: it may send on the first
    /// chain at once; its ratchet turns when the initiator speaks.
    pub(crate) fn responder(
        root: Zeroizing<[u8; 32]>,
        hash: [u8; 32],
        ratchet: StaticSecret,
        me: IdentityId,
        peer: IdentityId,
    ) -> Session {
        let mut s = Session::fresh(root, hash, ratchet, me, peer, false);
        s.chain_send = Some(Session::first_chain(&s.root, &hash));
        s
    }

    /// The identity on the other side.
    pub fn peer(&self) -> IdentityId {
        self.peer
    }

    /// The handshake hash, the same on both sides: compare it to check
    /// that two sessions are one.
    pub fn handshake_hash(&self) -> [u8; 32] {
        self.hash
    }

    /// Key of the mailbox addresses this side writes to.
    pub(crate) fn mailbox_send_key(&self) -> &[u8; 32] {
        &self.mailbox_send
    }

    /// Key of the mailbox addresses this side reads from.
    pub(crate) fn mailbox_recv_key(&self) -> &[u8; 32] {
        &self.mailbox_recv
    }

    fn associated_data(&self, sender: &IdentityId, header: &[u8]) -> Vec<u8> {
        [&self.hash[..], &sender.0, header].concat()
    }

    /// Encrypts `content` as the next message to the peer.
    pub fn encrypt(&mut self, content: &[u8]) -> Result<Vec<u8>, SessionError> {
        if self.sent == u32::MAX {
            return Err(SessionError::Exhausted);
        }
        let chain = self.chain_send.as_ref().ok_or(SessionError::Exhausted)?;
        let mut out = Vec::new();
        out.push(Kind::Ratchet as u8);
        out.extend_from_slice(&self.dh_self_public);
        out.extend_from_slice(&self.previous.to_be_bytes());
        out.extend_from_slice(&self.sent.to_be_bytes());
        pad_into(&mut out, content, RATCHET_OVERHEAD)?;
        let (key, next) = chain_step(chain);
        let (header, body) = out.split_at_mut(1 + HEADER);
        let ad = self.associated_data(&self.me, header);
        let tag = ChaCha20Poly1305::new((&*key).into())
            .encrypt_in_place_detached(&[0u8; 12].into(), &ad, body)
            .map_err(|_| SessionError::Undecryptable)?;
        out.extend_from_slice(&tag);
        self.chain_send = Some(next);
        self.sent += 1;
        Ok(out)
    }

    /// Decrypts a message from the peer. On any failure the session is left
    /// exactly as it was.
    pub fn decrypt(&mut self, message: &[u8]) -> Result<Vec<u8>, SessionError> {
        let mut next = self.clone();
        let content = next.decrypt_in_place(message)?;
        *self = next;
        Ok(content)
    }

    fn decrypt_in_place(&mut self, message: &[u8]) -> Result<Vec<u8>, SessionError> {
        if Kind::of(message)? != Kind::Ratchet {
            return Err(SessionError::Malformed("not a session message"));
        }
        if message.len() < RATCHET_OVERHEAD || message.len() > crate::pad::BUCKETS[3] {
            return Err(SessionError::Malformed("session message length"));
        }
        let (header, sealed) = message.split_at(1 + HEADER);
        let remote: [u8; 32] = header[1..33].try_into().expect("32 bytes");
        let previous = u32::from_be_bytes(header[33..37].try_into().expect("4 bytes"));
        let n = u32::from_be_bytes(header[37..41].try_into().expect("4 bytes"));

        let key = if let Some(i) = self.skipped.iter().position(|s| s.dh == remote && s.n == n) {
            self.skipped.remove(i).expect("found").key
        } else {
            if self.dh_remote != Some(remote) {
                if self.chain_recv.is_some() {
                    self.skip_until(previous)?;
                }
                self.turn(&remote)?;
            } else if n < self.received {
                return Err(SessionError::Replayed { n });
            }
            self.skip_until(n)?;
            let chain = self
                .chain_recv
                .as_ref()
                .ok_or(SessionError::Undecryptable)?;
            let (key, next) = chain_step(chain);
            self.chain_recv = Some(next);
            self.received = n.checked_add(1).ok_or(SessionError::Exhausted)?;
            key
        };
        let ad = self.associated_data(&self.peer, header);
        let (body, tag) = sealed.split_at(sealed.len() - TAG);
        let mut padded = body.to_vec();
        ChaCha20Poly1305::new((&*key).into())
            .decrypt_in_place_detached(&[0u8; 12].into(), &ad, &mut padded, tag.into())
            .map_err(|_| SessionError::Undecryptable)?;
        content(&padded).map(<[u8]>::to_vec)
    }

    /// Keeps the keys of the messages before `until` on the receiving chain.
    fn skip_until(&mut self, until: u32) -> Result<(), SessionError> {
        if until <= self.received {
            return Ok(());
        }
        let skipped = until - self.received;
        if skipped > MAX_SKIP {
            return Err(SessionError::TooFarAhead {
                skipped,
                max: MAX_SKIP,
            });
        }
        let (Some(mut chain), Some(dh)) = (self.chain_recv.clone(), self.dh_remote) else {
            return Ok(());
        };
        while self.received < until {
            let (key, next) = chain_step(&chain);
            self.skipped.push_back(Skipped {
                dh,
                n: self.received,
                key,
            });
            if self.skipped.len() > MAX_SKIPPED_KEYS {
                self.skipped.pop_front();
            }
            chain = next;
            self.received += 1;
        }
        self.chain_recv = Some(chain);
        Ok(())
    }

    /// A DH ratchet step on the peer's new ratchet key.
    fn turn(&mut self, remote: &[u8; 32]) -> Result<(), SessionError> {
        let (root, chain_recv) = hkdf2(
            &*self.root,
            &[&*dh(&self.dh_self, remote)],
            tags::SESSION_RATCHET.as_bytes(),
        );
        let dh_self = random_secret()?;
        let (root, chain_send) = hkdf2(
            &*root,
            &[&*dh(&dh_self, remote)],
            tags::SESSION_RATCHET.as_bytes(),
        );
        self.previous = self.sent;
        self.sent = 0;
        self.received = 0;
        self.dh_remote = Some(*remote);
        self.dh_self_public = PublicKey::from(&dh_self).to_bytes();
        self.dh_self = dh_self;
        self.root = root;
        self.chain_recv = Some(chain_recv);
        self.chain_send = Some(chain_send);
        Ok(())
    }

    /// The whole state as bytes, for the node to keep (sealed) in its store.
    /// It holds secrets.
    ///
    /// `version 1 ‖ hash ‖ me ‖ peer ‖ root ‖ DH secret ‖ flags ‖ [DH remote]
    /// ‖ [sending chain] ‖ [receiving chain] ‖ sent ‖ received ‖ previous ‖
    /// mailbox keys (2 × 32) ‖ skipped count (u16) ‖ (DH ‖ n ‖ key)*`
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(300 + self.skipped.len() * 68));
        out.push(STATE_VERSION);
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.me.0);
        out.extend_from_slice(&self.peer.0);
        out.extend_from_slice(&*self.root);
        out.extend_from_slice(&*Zeroizing::new(self.dh_self.to_bytes()));
        let flags = u8::from(self.dh_remote.is_some())
            | u8::from(self.chain_send.is_some()) << 1
            | u8::from(self.chain_recv.is_some()) << 2;
        out.push(flags);
        if let Some(d) = &self.dh_remote {
            out.extend_from_slice(d);
        }
        for c in [&self.chain_send, &self.chain_recv].into_iter().flatten() {
            out.extend_from_slice(&c[..]);
        }
        for n in [self.sent, self.received, self.previous] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&*self.mailbox_send);
        out.extend_from_slice(&*self.mailbox_recv);
        out.extend_from_slice(&(self.skipped.len() as u16).to_be_bytes());
        for k in &self.skipped {
            out.extend_from_slice(&k.dh);
            out.extend_from_slice(&k.n.to_be_bytes());
            out.extend_from_slice(&*k.key);
        }
        out
    }

    /// A session kept with [`Session::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Session, SessionError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != STATE_VERSION {
            return Err(SessionError::Malformed("unknown session state version"));
        }
        let hash = r.array()?;
        let me = IdentityId(r.array()?);
        let peer = IdentityId(r.array()?);
        let root = Zeroizing::new(r.array()?);
        let dh_self = StaticSecret::from(*Zeroizing::new(r.array::<32>()?));
        let flags = r.u8()?;
        if flags > 0b111 {
            return Err(SessionError::Malformed("session state flags"));
        }
        let dh_remote = if flags & 1 != 0 {
            Some(r.array()?)
        } else {
            None
        };
        let chain_send = if flags & 2 != 0 {
            Some(Zeroizing::new(r.array()?))
        } else {
            None
        };
        let chain_recv = if flags & 4 != 0 {
            Some(Zeroizing::new(r.array()?))
        } else {
            None
        };
        let (sent, received, previous) = (r.u32()?, r.u32()?, r.u32()?);
        let mailbox_send = Zeroizing::new(r.array()?);
        let mailbox_recv = Zeroizing::new(r.array()?);
        let count = r.u16()? as usize;
        if count > MAX_SKIPPED_KEYS {
            return Err(SessionError::Malformed("too many skipped keys"));
        }
        let mut skipped = VecDeque::with_capacity(count);
        for _ in 0..count {
            skipped.push_back(Skipped {
                dh: r.array()?,
                n: r.u32()?,
                key: Zeroizing::new(r.array()?),
            });
        }
        r.end()?;
        Ok(Session {
            hash,
            me,
            peer,
            root,
            dh_self_public: PublicKey::from(&dh_self).to_bytes(),
            dh_self,
            dh_remote,
            chain_send,
            chain_recv,
            sent,
            received,
            previous,
            skipped,
            mailbox_send,
            mailbox_recv,
        })
    }

    /// Keys of skipped messages held (for tests and status).
    pub fn skipped_keys(&self) -> usize {
        self.skipped.len()
    }

    #[cfg(test)]
    pub(crate) fn set_sent(&mut self, n: u32) {
        self.sent = n;
    }
}
