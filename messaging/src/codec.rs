//! Byte encodings of the state a node keeps (sessions and pending first
//! messages), with a bounded reader: a damaged store gives an error, never
//! a panic or a huge allocation. Payloads (`crate::payload`) are read with
//! the same reader.

use crate::SessionError;

/// Reads fixed-size fields from a byte slice.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    /// What a short read is called.
    truncated: &'static str,
    /// What bytes left over are called.
    trailing: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader of stored state.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader::named(
            bytes,
            "stored state is truncated",
            "stored state has trailing bytes",
        )
    }

    /// A reader whose errors say `truncated` and `trailing`.
    pub(crate) fn named(bytes: &'a [u8], truncated: &'static str, trailing: &'static str) -> Self {
        Reader {
            bytes,
            truncated,
            trailing,
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], SessionError> {
        if self.bytes.len() < n {
            return Err(SessionError::Malformed(self.truncated));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, SessionError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, SessionError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, SessionError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SessionError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], SessionError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    pub(crate) fn end(&self) -> Result<(), SessionError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(SessionError::Malformed(self.trailing))
        }
    }
}
