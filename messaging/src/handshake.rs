//! Starting a session: the first message, sealed to a prekey of the
//! recipient's, and the answer that completes the handshake.
//!
//! ```text
//! Initial = 0x01 ‖ prekey id (u32) ‖ N(seal prologue, to prekey P_B){ id_A ‖ KK₁ }
//! KK₁     = Noise_KK message 1 (-> e, es, ss), s = M_A, rs = P_B, payload = padded content
//! Answer  = 0x02 ‖ answer address (32) ‖ KK₂
//! KK₂     = Noise_KK message 2 (<- e, ee, se), payload = ratchet key R_B ‖ padded reply
//! ```
//!
//! The outer Noise `N` layer hides the sender (and the inner handshake's
//! ephemeral key) from everyone but the recipient. The inner `KK`
//! handshake authenticates both sides: the sender by their messaging key
//! `M_A` (from their verified key event log), the recipient by the prekey
//! `P_B` that their log signs. Its prologue binds both identity ids, the
//! prekey, the recipient's messaging key and the protocol version.

use cairn_wallet::hash::{tagged_hash, tags};
use cairn_wallet::IdentityId;
use zeroize::Zeroizing;

use crate::codec::Reader;
use crate::kdf::hkdf2;
use crate::pad::{pad, unpad};
use crate::session::Session;
use crate::{random_secret, Kind, SessionError};

/// The sealed outer layer: one-way, to the recipient's prekey.
const SEAL_PATTERN: &str = "Noise_N_25519_ChaChaPoly_BLAKE2s";
/// The handshake: both static keys known in advance.
const SESSION_PATTERN: &str = "Noise_KK_25519_ChaChaPoly_BLAKE2s";
/// Noise's limit on one message.
const NOISE_MAX: usize = 65535;
const KEY: usize = 32;
const TAG: usize = 16;
const PENDING_VERSION: u8 = 1;
/// Framing around the padded content of an initial message.
pub const INITIAL_OVERHEAD: usize = 1 + 4 + (KEY + TAG) + KEY + (KEY + TAG);
/// Framing around the padded content of an answer.
pub const ANSWER_OVERHEAD: usize = 1 + KEY + KEY + KEY + TAG;

/// The other side, as their verified key event log gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Their identity id.
    pub id: IdentityId,
    /// Their current messaging key (X25519).
    pub messaging_key: [u8; 32],
}

/// A signed prekey of the recipient's, from their log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerPrekey {
    /// The prekey's id.
    pub id: u32,
    /// The X25519 public key.
    pub key: [u8; 32],
}

fn seal_prologue(recipient: &IdentityId, prekey_id: u32) -> Vec<u8> {
    [
        tags::SESSION_SEAL.as_bytes(),
        &recipient.0,
        &prekey_id.to_be_bytes(),
    ]
    .concat()
}

fn session_prologue(
    initiator: &IdentityId,
    responder: &IdentityId,
    prekey_id: u32,
    responder_messaging_key: &[u8; 32],
) -> Vec<u8> {
    [
        tags::SESSION_HANDSHAKE.as_bytes(),
        &initiator.0,
        &responder.0,
        &prekey_id.to_be_bytes(),
        responder_messaging_key,
    ]
    .concat()
}

fn params(pattern: &str) -> snow::params::NoiseParams {
    pattern.parse().expect("a valid Noise pattern")
}

/// Where the answer to a first message is stored: a hash of the inner
/// handshake's ephemeral key, which only the two sides know.
fn answer_address(kk1: &[u8]) -> [u8; 32] {
    tagged_hash(tags::MAILBOX_ANSWER, &[&kk1[..KEY.min(kk1.len())]])
}

/// The root key of the double ratchet, from the handshake's split and hash.
fn root_key(hs: &mut snow::HandshakeState) -> (Zeroizing<[u8; 32]>, [u8; 32]) {
    let (k1, k2) = hs.dangerously_get_raw_split();
    let (k1, k2) = (Zeroizing::new(k1), Zeroizing::new(k2));
    let mut h = [0u8; 32];
    h.copy_from_slice(&hs.get_handshake_hash()[..32]);
    let (root, _) = hkdf2(&h, &[&*k1, &*k2], tags::SESSION_ROOT.as_bytes());
    (root, h)
}

/// A first message waiting for its answer. It holds what it needs to
/// check the answer again after a failure (an altered or foreign answer
/// changes nothing), including the sender's messaging secret: keep it
/// where secrets are kept.
#[derive(Clone)]
pub struct Pending {
    me: IdentityId,
    my_secret: Zeroizing<[u8; 32]>,
    peer: PeerIdentity,
    prekey: PeerPrekey,
    ephemeral: Zeroizing<[u8; 32]>,
    padded: Zeroizing<Vec<u8>>,
    answer_to: [u8; 32],
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("peer", &self.peer.id)
            .field("prekey", &self.prekey.id)
            .finish_non_exhaustive()
    }
}

impl Pending {
    /// The pending first message as bytes, for the node to keep (sealed) in
    /// its store until the answer comes, across restarts. It holds secrets.
    ///
    /// `version 1 ‖ me ‖ my secret ‖ peer id ‖ peer messaging key ‖ prekey id
    /// ‖ prekey ‖ ephemeral secret ‖ padded length (u32) ‖ padded content`
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(200 + self.padded.len()));
        out.push(PENDING_VERSION);
        out.extend_from_slice(&self.me.0);
        out.extend_from_slice(&*self.my_secret);
        out.extend_from_slice(&self.peer.id.0);
        out.extend_from_slice(&self.peer.messaging_key);
        out.extend_from_slice(&self.prekey.id.to_be_bytes());
        out.extend_from_slice(&self.prekey.key);
        out.extend_from_slice(&*self.ephemeral);
        out.extend_from_slice(&(self.padded.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.padded);
        out
    }

    /// A pending first message kept with [`Pending::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Pending, SessionError> {
        let mut r = Reader::new(bytes);
        if r.u8()? != PENDING_VERSION {
            return Err(SessionError::Malformed("unknown pending state version"));
        }
        let me = IdentityId(r.array()?);
        let my_secret = Zeroizing::new(r.array()?);
        let peer = PeerIdentity {
            id: IdentityId(r.array()?),
            messaging_key: r.array()?,
        };
        let prekey = PeerPrekey {
            id: r.u32()?,
            key: r.array()?,
        };
        let ephemeral = Zeroizing::new(r.array()?);
        let len = r.u32()? as usize;
        if len > NOISE_MAX {
            return Err(SessionError::Malformed("pending content length"));
        }
        let padded = Zeroizing::new(r.take(len)?.to_vec());
        r.end()?;
        let mut pending = Pending {
            me,
            my_secret,
            peer,
            prekey,
            ephemeral,
            padded,
            answer_to: [0; 32],
        };
        let (_, kk1) = pending.replay()?;
        pending.answer_to = answer_address(&kk1);
        Ok(pending)
    }

    /// The mailbox address the answer will be stored under.
    pub fn answer_address(&self) -> [u8; 32] {
        self.answer_to
    }

    /// Who the first message went to.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }

    /// The initiator's handshake state after message 1, rebuilt from the
    /// same ephemeral key and content (so the same bytes).
    fn replay(&self) -> Result<(snow::HandshakeState, Vec<u8>), SessionError> {
        let prologue = session_prologue(
            &self.me,
            &self.peer.id,
            self.prekey.id,
            &self.peer.messaging_key,
        );
        let mut hs = snow::Builder::new(params(SESSION_PATTERN))
            .local_private_key(&*self.my_secret)?
            .remote_public_key(&self.prekey.key)?
            .prologue(&prologue)?
            .fixed_ephemeral_key_for_testing_only(&*self.ephemeral)
            .build_initiator()?;
        let mut kk1 = vec![0u8; NOISE_MAX];
        let n = hs.write_message(&self.padded, &mut kk1)?;
        kk1.truncate(n);
        Ok((hs, kk1))
    }

    /// Completes the handshake with the recipient's `answer`: the session,
    /// and the content the answer carried. A failure leaves `self` as it
    /// was, so the real answer can still be taken.
    pub fn finish(&self, answer: &[u8]) -> Result<(Session, Vec<u8>), SessionError> {
        if Kind::of(answer)? != Kind::Answer {
            return Err(SessionError::Malformed("not an answer"));
        }
        if answer.len() > NOISE_MAX || answer.len() < ANSWER_OVERHEAD {
            return Err(SessionError::Malformed("answer length"));
        }
        if answer[1..1 + KEY] != self.answer_to {
            return Err(SessionError::NotOurAnswer);
        }
        let (mut hs, _) = self.replay()?;
        let mut payload = Zeroizing::new(vec![0u8; NOISE_MAX]);
        let n = hs.read_message(&answer[1 + KEY..], &mut payload)?;
        let payload = &payload[..n];
        let ratchet: [u8; 32] = payload
            .get(..KEY)
            .and_then(|k| k.try_into().ok())
            .ok_or(SessionError::Malformed("answer payload"))?;
        let reply = unpad(&payload[KEY..])?;
        let (root, h) = root_key(&mut hs);
        let session = Session::initiator(root, h, ratchet, self.me, self.peer.id)?;
        Ok((session, reply))
    }
}

/// Starts a session with `peer` by sending `content` to their `prekey`:
/// the first message (to their prekey's mailbox) and the state that waits
/// for the answer. `my_secret` is the sender's current messaging secret.
pub fn start(
    me: IdentityId,
    my_secret: &[u8; 32],
    peer: &PeerIdentity,
    prekey: &PeerPrekey,
    content: &[u8],
) -> Result<(Pending, Vec<u8>), SessionError> {
    let padded = Zeroizing::new(pad(content, INITIAL_OVERHEAD)?);
    let ephemeral = Zeroizing::new(random_secret()?.to_bytes());
    let mut pending = Pending {
        me,
        my_secret: Zeroizing::new(*my_secret),
        peer: *peer,
        prekey: *prekey,
        ephemeral,
        padded,
        answer_to: [0; 32],
    };
    let (_, kk1) = pending.replay()?;
    pending.answer_to = answer_address(&kk1);

    let mut seal = snow::Builder::new(params(SEAL_PATTERN))
        .remote_public_key(&prekey.key)?
        .prologue(&seal_prologue(&peer.id, prekey.id))?
        .build_initiator()?;
    let inner = [&me.0[..], &kk1].concat();
    let mut out = vec![0u8; NOISE_MAX];
    out[0] = Kind::Initial as u8;
    out[1..5].copy_from_slice(&prekey.id.to_be_bytes());
    let n = seal.write_message(&inner, &mut out[5..])?;
    out.truncate(5 + n);
    Ok((pending, out))
}

/// A first message opened with one of the recipient's prekeys: who says
/// they sent it. Nothing is authenticated yet: look up the sender's
/// verified log and [`accept`] with their messaging key.
pub struct Opened {
    /// The identity the sender claims to be.
    pub from: IdentityId,
    /// The prekey it was sealed to.
    pub prekey_id: u32,
    prekey_secret: Zeroizing<[u8; 32]>,
    kk1: Vec<u8>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("from", &self.from)
            .field("prekey_id", &self.prekey_id)
            .finish_non_exhaustive()
    }
}

/// Opens the sealed layer of a first message to `me`. `prekey_secret` gives
/// the secret of a prekey id, if this identity still holds it.
pub fn open(
    me: &IdentityId,
    initial: &[u8],
    prekey_secret: impl Fn(u32) -> Option<Zeroizing<[u8; 32]>>,
) -> Result<Opened, SessionError> {
    if Kind::of(initial)? != Kind::Initial {
        return Err(SessionError::Malformed("not a first message"));
    }
    if initial.len() > NOISE_MAX || initial.len() < INITIAL_OVERHEAD {
        return Err(SessionError::Malformed("first message length"));
    }
    let prekey_id = u32::from_be_bytes(initial[1..5].try_into().expect("4 bytes"));
    let secret = prekey_secret(prekey_id).ok_or(SessionError::UnknownPrekey(prekey_id))?;
    let mut seal = snow::Builder::new(params(SEAL_PATTERN))
        .local_private_key(&*secret)?
        .prologue(&seal_prologue(me, prekey_id))?
        .build_responder()?;
    let mut inner = vec![0u8; NOISE_MAX];
    let n = seal.read_message(&initial[5..], &mut inner)?;
    inner.truncate(n);
    if inner.len() < KEY + KEY + TAG {
        return Err(SessionError::Malformed("sealed content"));
    }
    let from = IdentityId(inner[..KEY].try_into().expect("32 bytes"));
    Ok(Opened {
        from,
        prekey_id,
        prekey_secret: secret,
        kk1: inner.split_off(KEY),
    })
}

/// A first message accepted: the session, the answer to send back, and
/// the content.
pub struct Accepted {
    /// The session with the sender.
    pub session: Session,
    /// The answer (to [`Accepted::answer_address`]).
    pub answer: Vec<u8>,
    /// Where the sender looks for the answer.
    pub answer_address: [u8; 32],
    /// What the first message said.
    pub content: Vec<u8>,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("answer_address", &self.answer_address)
            .finish_non_exhaustive()
    }
}

/// Authenticates an opened first message against `sender_key`, the
/// messaging key of `opened.from`'s verified log, and answers it with
/// `reply`. `me` and `my_messaging_key` are the recipient's id and
/// current messaging public key.
pub fn accept(
    me: &IdentityId,
    my_messaging_key: &[u8; 32],
    opened: &Opened,
    sender_key: &[u8; 32],
    reply: &[u8],
) -> Result<Accepted, SessionError> {
    let prologue = session_prologue(&opened.from, me, opened.prekey_id, my_messaging_key);
    let mut hs = snow::Builder::new(params(SESSION_PATTERN))
        .local_private_key(&*opened.prekey_secret)?
        .remote_public_key(sender_key)?
        .prologue(&prologue)?
        .build_responder()?;
    let mut payload = Zeroizing::new(vec![0u8; NOISE_MAX]);
    let n = hs.read_message(&opened.kk1, &mut payload)?;
    let content = unpad(&payload[..n])?;

    let ratchet = random_secret()?;
    let ratchet_public = x25519_dalek::PublicKey::from(&ratchet).to_bytes();
    let padded = Zeroizing::new(pad(reply, ANSWER_OVERHEAD)?);
    let answer_to = answer_address(&opened.kk1);
    let mut answer = vec![0u8; NOISE_MAX];
    answer[0] = Kind::Answer as u8;
    answer[1..1 + KEY].copy_from_slice(&answer_to);
    let inner = Zeroizing::new([&ratchet_public[..], &padded].concat());
    let n = hs.write_message(&inner, &mut answer[1 + KEY..])?;
    answer.truncate(1 + KEY + n);
    let (root, h) = root_key(&mut hs);
    let session = Session::responder(root, h, ratchet, *me, opened.from);
    Ok(Accepted {
        session,
        answer,
        answer_address: answer_to,
        content,
    })
}
