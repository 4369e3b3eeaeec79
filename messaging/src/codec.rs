//! Byte encodings of the state a node keeps (sessions and pending first
//! messages), with a bounded reader: a damaged store gives an error, never
//! a panic or a huge allocation.

use crate::SessionError;

/// Reads fixed-size fields from a byte slice.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], SessionError> {
        if self.bytes.len() < n {
            return Err(SessionError::Malformed("stored state is truncated"));
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

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], SessionError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    pub(crate) fn end(&self) -> Result<(), SessionError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(SessionError::Malformed("stored state has trailing bytes"))
        }
    }
}
