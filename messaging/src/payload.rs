//! What a session message carries, once decrypted, and the envelope that
//! carries a session message to a mailbox address. No I/O.
//!
//! ```text
//! envelope = mailbox address (32) ‖ session message (Initial, Answer or Ratchet; padded)
//! payload  = version (1) ‖ kind (1) ‖ reach ‖ body
//! reach    = length (1, ≤ 64) ‖ the sender node's libp2p peer id (bytes), or length 0
//! text     = kind 1 ‖ reach ‖ stream (u64) ‖ seq (u64) ‖ sent at (u64, Unix seconds) ‖ length (u32) ‖ UTF-8
//! receipt  = kind 2 ‖ reach ‖ count (u16, ≤ 512) ‖ count × seq (u64) ‖ read up to (u64)
//! ```
//!
//! Numbers are big-endian. `seq` numbers a sender's messages to one contact
//! from 1: it is the message's id in the conversation, the order it is
//! shown in, and what receipts name. `stream` is random per installation and
//! conversation: a sender restored from its words on a new machine numbers
//! from 1 again in a new stream, and the receiver does not take its new
//! texts for old ones. `reach` tells the contact where this
//! side's node can be reached directly; it travels only inside the
//! ciphertext, so only the contact learns it. A receipt says which messages
//! were stored (delivered) and up to which one the user has read.

use crate::codec::Reader;
use crate::SessionError;

/// The payload format's version.
pub const PAYLOAD_VERSION: u8 = 1;
/// The longest text a message may carry, bytes of UTF-8 (it fits the
/// largest padding bucket with every framing).
pub const MAX_TEXT: usize = 32 * 1024;
/// The most messages one receipt names.
pub const MAX_RECEIPT_SEQS: usize = 512;
/// The longest `reach` (a libp2p peer id is 38 bytes for Ed25519 keys).
pub const MAX_REACH: usize = 64;
/// Bytes of a mailbox address.
pub const ADDRESS: usize = 32;
/// The largest envelope: an address and the largest session message.
pub const MAX_ENVELOPE: usize = ADDRESS + crate::pad::BUCKETS[3];

/// A decrypted session message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// Where the sender's node can be reached (its peer id), if it says.
    pub reach: Vec<u8>,
    /// What it carries.
    pub body: Body,
}

/// What a payload carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A text message.
    Text {
        /// The sender's numbering (random per installation and contact).
        stream: u64,
        /// Its number in the sender's messages to this contact, from 1.
        seq: u64,
        /// When it was written, by the sender's clock (Unix seconds).
        sent_at: u64,
        /// The text.
        text: String,
    },
    /// Which of the contact's messages arrived, and how far they are read.
    Receipt {
        /// Messages stored by the recipient (their `seq`s).
        delivered: Vec<u64>,
        /// Every message up to this `seq` has been read (0: none said).
        read_up_to: u64,
    },
}

fn malformed(what: &'static str) -> SessionError {
    SessionError::Malformed(what)
}

impl Payload {
    /// Encodes the payload; refuses what a recipient would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, SessionError> {
        if self.reach.len() > MAX_REACH {
            return Err(malformed("reach too long"));
        }
        let mut out = vec![PAYLOAD_VERSION];
        out.push(match self.body {
            Body::Text { .. } => 1,
            Body::Receipt { .. } => 2,
        });
        out.push(self.reach.len() as u8);
        out.extend_from_slice(&self.reach);
        match &self.body {
            Body::Text {
                stream,
                seq,
                sent_at,
                text,
            } => {
                if text.len() > MAX_TEXT {
                    return Err(SessionError::TooLarge {
                        len: text.len(),
                        max: MAX_TEXT,
                    });
                }
                if *seq == 0 {
                    return Err(malformed("message number 0"));
                }
                out.extend_from_slice(&stream.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&sent_at.to_be_bytes());
                out.extend_from_slice(&(text.len() as u32).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            Body::Receipt {
                delivered,
                read_up_to,
            } => {
                if delivered.len() > MAX_RECEIPT_SEQS {
                    return Err(malformed("receipt names too many messages"));
                }
                out.extend_from_slice(&(delivered.len() as u16).to_be_bytes());
                for s in delivered {
                    out.extend_from_slice(&s.to_be_bytes());
                }
                out.extend_from_slice(&read_up_to.to_be_bytes());
            }
        }
        Ok(out)
    }

    /// Decodes a payload: bounded, and every byte accounted for.
    pub fn decode(bytes: &[u8]) -> Result<Payload, SessionError> {
        let mut r = Reader::named(bytes, "payload truncated", "bytes after the payload");
        if r.u8()? != PAYLOAD_VERSION {
            return Err(malformed("payload version"));
        }
        let kind = r.u8()?;
        let reach_len = usize::from(r.u8()?);
        if reach_len > MAX_REACH {
            return Err(malformed("reach too long"));
        }
        let reach = r.take(reach_len)?.to_vec();
        let body = match kind {
            1 => {
                let stream = r.u64()?;
                let seq = r.u64()?;
                let sent_at = r.u64()?;
                let len = r.u32()? as usize;
                if len > MAX_TEXT {
                    return Err(malformed("text too long"));
                }
                if seq == 0 {
                    return Err(malformed("message number 0"));
                }
                let text = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| malformed("text is not UTF-8"))?
                    .to_string();
                Body::Text {
                    stream,
                    seq,
                    sent_at,
                    text,
                }
            }
            2 => {
                let n = usize::from(r.u16()?);
                if n > MAX_RECEIPT_SEQS {
                    return Err(malformed("receipt names too many messages"));
                }
                let mut delivered = Vec::with_capacity(n);
                for _ in 0..n {
                    delivered.push(r.u64()?);
                }
                let read_up_to = r.u64()?;
                Body::Receipt {
                    delivered,
                    read_up_to,
                }
            }
            _ => return Err(malformed("payload kind")),
        };
        r.end()?;
        Ok(Payload { reach, body })
    }
}

/// An envelope's address and session message.
pub fn split_envelope(envelope: &[u8]) -> Result<([u8; ADDRESS], &[u8]), SessionError> {
    if envelope.len() > MAX_ENVELOPE {
        return Err(malformed("envelope too large"));
    }
    if envelope.len() <= ADDRESS {
        return Err(malformed("envelope too short"));
    }
    let (address, message) = envelope.split_at(ADDRESS);
    crate::Kind::of(message)?;
    Ok((address.try_into().expect("32 bytes"), message))
}

/// The envelope that carries `message` to `address`.
pub fn envelope(address: &[u8; ADDRESS], message: &[u8]) -> Vec<u8> {
    [&address[..], message].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(seq: u64, t: &str) -> Payload {
        Payload {
            reach: vec![0, 36, 8, 1],
            body: Body::Text {
                stream: 77,
                seq,
                sent_at: 1_800_000_000,
                text: t.into(),
            },
        }
    }

    #[test]
    fn payloads_round_trip_and_every_byte_counts() {
        let receipt = Payload {
            reach: Vec::new(),
            body: Body::Receipt {
                delivered: vec![1, 2, 9],
                read_up_to: 2,
            },
        };
        for p in [text(1, "hello"), text(7, ""), receipt] {
            let b = p.encode().unwrap();
            assert_eq!(Payload::decode(&b).unwrap(), p);
            for cut in 0..b.len() {
                assert!(Payload::decode(&b[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = b.clone();
            longer.push(0);
            assert!(Payload::decode(&longer).is_err());
        }
    }

    #[test]
    fn bad_payloads_are_refused() {
        assert!(text(0, "x").encode().is_err());
        assert!(text(1, &"x".repeat(MAX_TEXT + 1)).encode().is_err());
        let mut b = text(1, "hé").encode().unwrap();
        let last = b.len() - 1;
        b[last] = 0xff;
        assert!(Payload::decode(&b).is_err(), "not UTF-8");
        let mut b = text(1, "x").encode().unwrap();
        b[0] = 2;
        assert!(Payload::decode(&b).is_err(), "version");
        b[0] = 1;
        b[1] = 9;
        assert!(Payload::decode(&b).is_err(), "kind");
        let many = Payload {
            reach: Vec::new(),
            body: Body::Receipt {
                delivered: vec![1; MAX_RECEIPT_SEQS + 1],
                read_up_to: 0,
            },
        };
        assert!(many.encode().is_err());
    }

    #[test]
    fn envelopes_split_only_when_well_formed() {
        let e = envelope(&[5; 32], &[3, 1, 2]);
        let (a, m) = split_envelope(&e).unwrap();
        assert_eq!((a, m), ([5; 32], &[3u8, 1, 2][..]));
        assert!(split_envelope(&e[..32]).is_err());
        assert!(split_envelope(&envelope(&[5; 32], &[9])).is_err());
        assert!(split_envelope(&vec![3; MAX_ENVELOPE + 1]).is_err());
    }
}
