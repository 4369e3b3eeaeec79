//! The mail protocol (`/cairn/mail/1`): envelopes handed to a contact's
//! node directly, or left at and collected from mailbox nodes. The network
//! only frames and bounds them; what an envelope holds is end-to-end
//! encrypted, and what to do with a request is the node's business.
//!
//! ```text
//! request  = kind (1) ‖ count (u16) ‖ items
//!   1 deliver  items: count × (length u32 ‖ envelope)   to the recipient's own node
//!   2 deposit  items: count × (length u32 ‖ envelope)   to a mailbox node, kept under the envelope's address
//!   3 collect  items: count × address (32)              what a mailbox node holds under these addresses
//!   4 remove   items: count × (address 32 ‖ digest 32)  collected envelopes to forget (digest = SHA-256 of the envelope)
//! response = kind (1) ‖ count (u16) ‖ items
//!   1 status     items: count × status (1), one per envelope or entry of the request
//!   2 envelopes  items: count × (length u32 ‖ envelope)
//! ```
//!
//! An envelope is a mailbox address (32 bytes) followed by a padded
//! session message (`cairn_messaging::payload`).

/// The mail protocol's name.
pub const MAIL_PROTOCOL: &str = "/cairn/mail/1";
/// The largest envelope: a 32-byte address and a 65,535-byte message.
pub const MAX_ENVELOPE: usize = 32 + 65_535;
/// The most envelopes, addresses or entries in one request or response.
pub const MAX_BATCH: usize = 64;
/// The largest request or response, bytes.
pub const MAX_MAIL: usize = 1024 * 1024 + 1024;

/// What a peer asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailRequest {
    /// Envelopes for the node's own identity.
    Deliver(Vec<Vec<u8>>),
    /// Envelopes to keep for whoever collects their address.
    Deposit(Vec<Vec<u8>>),
    /// The envelopes kept under these addresses.
    Collect(Vec<[u8; 32]>),
    /// Collected envelopes to forget: `(address, SHA-256 of the envelope)`.
    Remove(Vec<([u8; 32], [u8; 32])>),
}

/// What happened to one envelope or entry of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MailStatus {
    /// Taken: stored durably (delivered, kept, or forgotten as asked).
    Accepted = 0,
    /// Not an envelope this node can accept (malformed, does not decrypt).
    Invalid = 1,
    /// Over a quota: try another mailbox, or later.
    Full = 2,
    /// This node does not keep mail for others.
    NotServed = 3,
    /// The node is busy: try again later.
    Busy = 4,
    /// The address is not one this node knows (yet): try again later.
    Unknown = 5,
}

impl MailStatus {
    fn from_u8(b: u8) -> Option<MailStatus> {
        Some(match b {
            0 => MailStatus::Accepted,
            1 => MailStatus::Invalid,
            2 => MailStatus::Full,
            3 => MailStatus::NotServed,
            4 => MailStatus::Busy,
            5 => MailStatus::Unknown,
            _ => return None,
        })
    }
}

/// The answer to a [`MailRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailResponse {
    /// One status per envelope or entry, in the request's order.
    Status(Vec<MailStatus>),
    /// Envelopes collected.
    Envelopes(Vec<Vec<u8>>),
}

/// Why mail bytes do not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed mail: {0}")]
pub struct MailError(pub &'static str);

fn put_envelopes(out: &mut Vec<u8>, envelopes: &[Vec<u8>]) -> Result<(), MailError> {
    for e in envelopes {
        if e.len() > MAX_ENVELOPE {
            return Err(MailError("envelope too large"));
        }
        out.extend_from_slice(&(e.len() as u32).to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(())
}

fn header(kind: u8, count: usize) -> Result<Vec<u8>, MailError> {
    if count > MAX_BATCH {
        return Err(MailError("too many items"));
    }
    let mut out = vec![kind];
    out.extend_from_slice(&(count as u16).to_be_bytes());
    Ok(out)
}

fn finish(out: Vec<u8>) -> Result<Vec<u8>, MailError> {
    if out.len() > MAX_MAIL {
        return Err(MailError("larger than a mail frame"));
    }
    Ok(out)
}

impl MailRequest {
    /// How many envelopes, addresses or entries it names: the length of
    /// its answer's status list.
    pub fn items(&self) -> usize {
        match self {
            MailRequest::Deliver(e) | MailRequest::Deposit(e) => e.len(),
            MailRequest::Collect(a) => a.len(),
            MailRequest::Remove(r) => r.len(),
        }
    }

    /// Encodes the request, within the protocol's bounds.
    pub fn encode(&self) -> Result<Vec<u8>, MailError> {
        let mut out;
        match self {
            MailRequest::Deliver(e) | MailRequest::Deposit(e) => {
                let kind = if matches!(self, MailRequest::Deliver(_)) {
                    1
                } else {
                    2
                };
                out = header(kind, e.len())?;
                put_envelopes(&mut out, e)?;
            }
            MailRequest::Collect(a) => {
                out = header(3, a.len())?;
                for x in a {
                    out.extend_from_slice(x);
                }
            }
            MailRequest::Remove(r) => {
                out = header(4, r.len())?;
                for (a, d) in r {
                    out.extend_from_slice(a);
                    out.extend_from_slice(d);
                }
            }
        }
        finish(out)
    }

    /// Decodes a request: bounded, every byte accounted for.
    pub fn decode(bytes: &[u8]) -> Result<MailRequest, MailError> {
        let mut r = Reader::new(bytes)?;
        let (kind, n) = r.header()?;
        let request = match kind {
            1 => MailRequest::Deliver(r.envelopes(n)?),
            2 => MailRequest::Deposit(r.envelopes(n)?),
            3 => MailRequest::Collect((0..n).map(|_| r.array()).collect::<Result<_, _>>()?),
            4 => MailRequest::Remove(
                (0..n)
                    .map(|_| Ok((r.array()?, r.array()?)))
                    .collect::<Result<_, MailError>>()?,
            ),
            _ => return Err(MailError("request kind")),
        };
        r.end()?;
        Ok(request)
    }
}

impl MailResponse {
    /// The answer to a request of `items` that is not taken now: busy.
    pub fn busy(items: usize) -> MailResponse {
        MailResponse::Status(vec![MailStatus::Busy; items])
    }

    /// Encodes the response, within the protocol's bounds.
    pub fn encode(&self) -> Result<Vec<u8>, MailError> {
        let mut out;
        match self {
            MailResponse::Status(s) => {
                out = header(1, s.len())?;
                out.extend(s.iter().map(|s| *s as u8));
            }
            MailResponse::Envelopes(e) => {
                out = header(2, e.len())?;
                put_envelopes(&mut out, e)?;
            }
        }
        finish(out)
    }

    /// Decodes a response: bounded, every byte accounted for.
    pub fn decode(bytes: &[u8]) -> Result<MailResponse, MailError> {
        let mut r = Reader::new(bytes)?;
        let (kind, n) = r.header()?;
        let response = match kind {
            1 => MailResponse::Status(
                (0..n)
                    .map(|_| MailStatus::from_u8(r.u8()?).ok_or(MailError("status")))
                    .collect::<Result<_, _>>()?,
            ),
            2 => MailResponse::Envelopes(r.envelopes(n)?),
            _ => return Err(MailError("response kind")),
        };
        r.end()?;
        Ok(response)
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, MailError> {
        if bytes.len() > MAX_MAIL {
            return Err(MailError("larger than a mail frame"));
        }
        Ok(Reader(bytes))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], MailError> {
        if self.0.len() < n {
            return Err(MailError("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, MailError> {
        Ok(self.take(1)?[0])
    }
    fn header(&mut self) -> Result<(u8, usize), MailError> {
        let kind = self.u8()?;
        let n = usize::from(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ));
        if n > MAX_BATCH {
            return Err(MailError("too many items"));
        }
        Ok((kind, n))
    }
    fn array(&mut self) -> Result<[u8; 32], MailError> {
        Ok(self.take(32)?.try_into().expect("32 bytes"))
    }
    fn envelopes(&mut self, n: usize) -> Result<Vec<Vec<u8>>, MailError> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
            if len > MAX_ENVELOPE {
                return Err(MailError("envelope too large"));
            }
            out.push(self.take(len)?.to_vec());
        }
        Ok(out)
    }
    fn end(&self) -> Result<(), MailError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(MailError("bytes after the end"))
        }
    }
}
