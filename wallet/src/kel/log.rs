//! A whole key event log and its file encoding.
//!
//! ```text
//! log   = magic:"CAIRNKEL" version:u8(=1) count:u32 (len:u16 signed_event:len)*count
//! ```

use super::codec::Reader;
use super::{DecodeError, SignedEvent, MAX_EVENT_LEN};

/// Magic bytes at the start of a log file.
pub const LOG_MAGIC: &[u8; 8] = b"CAIRNKEL";
/// Log file format version.
pub const LOG_VERSION: u8 = 1;
/// Upper bound on events in one log.
pub const MAX_LOG_EVENTS: usize = 10_000;

/// An ordered list of signed events, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyEventLog {
    events: Vec<SignedEvent>,
}

impl KeyEventLog {
    /// A log of the given events (in order).
    pub fn new(events: Vec<SignedEvent>) -> Self {
        KeyEventLog { events }
    }

    /// The events.
    pub fn events(&self) -> &[SignedEvent] {
        &self.events
    }

    /// Appends an event (check it with [`KeyEventLog::verify`]).
    pub fn push(&mut self, e: SignedEvent) {
        self.events.push(e);
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the log has no events.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The file encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(13 + self.events.len() * 210);
        out.extend_from_slice(LOG_MAGIC);
        out.push(LOG_VERSION);
        out.extend_from_slice(&(self.events.len() as u32).to_be_bytes());
        for e in &self.events {
            let bytes = e.encode();
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }

    /// Decodes a log file. Bounded: at most [`MAX_LOG_EVENTS`] events of at most
    /// [`MAX_EVENT_LEN`] bytes; rejects trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.take(LOG_MAGIC.len())? != LOG_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = r.u8()?;
        if version != LOG_VERSION {
            return Err(DecodeError::UnknownVersion(version));
        }
        let count = r.u32()? as usize;
        if count > MAX_LOG_EVENTS {
            return Err(DecodeError::FieldTooLarge {
                field: "event count",
                len: count,
                max: MAX_LOG_EVENTS,
            });
        }
        // Each event takes at least 2 + 2 + 64 bytes: do not trust `count` for allocation.
        let mut events = Vec::with_capacity(count.min(r.remaining() / 68));
        for index in 0..count {
            let wrap = |e: DecodeError| DecodeError::InEvent {
                index,
                source: Box::new(e),
            };
            let len = usize::from(r.u16().map_err(wrap)?);
            if len > MAX_EVENT_LEN {
                return Err(wrap(DecodeError::FieldTooLarge {
                    field: "event",
                    len,
                    max: MAX_EVENT_LEN,
                }));
            }
            let body = r.take(len).map_err(wrap)?;
            events.push(SignedEvent::decode(body).map_err(wrap)?);
        }
        r.finish()?;
        Ok(KeyEventLog { events })
    }
}
