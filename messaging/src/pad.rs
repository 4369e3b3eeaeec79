//! Padding: every message Cairn's sessions put on the wire is exactly one
//! of [`BUCKETS`] bytes long, whatever it carries, so that a mailbox or a
//! relay learns a size class and nothing finer.
//!
//! Padded plaintext: `length (u32, big-endian) ‖ content ‖ zeros`, sized so
//! that it plus the message's fixed overhead fills the smallest bucket that
//! holds it.

use crate::SessionError;

/// The sizes of every session message on the wire, bytes. The largest is
/// Noise's limit on one message.
pub const BUCKETS: [usize; 4] = [1024, 4096, 16384, 65535];

/// Bytes of the length prefix.
const LEN: usize = 4;

/// The most content a message with `overhead` bytes of framing can carry.
pub fn max_content(overhead: usize) -> usize {
    BUCKETS[BUCKETS.len() - 1] - overhead - LEN
}

/// Pads `content` for a message with `overhead` bytes of framing.
pub(crate) fn pad(content: &[u8], overhead: usize) -> Result<Vec<u8>, SessionError> {
    let mut out = Vec::new();
    pad_into(&mut out, content, overhead)?;
    Ok(out)
}

/// Appends `content`, padded for a message with `overhead` bytes of
/// framing, to `out`.
pub(crate) fn pad_into(
    out: &mut Vec<u8>,
    content: &[u8],
    overhead: usize,
) -> Result<(), SessionError> {
    let need = content.len() + LEN + overhead;
    let bucket = BUCKETS
        .iter()
        .copied()
        .find(|b| *b >= need)
        .ok_or(SessionError::TooLarge {
            len: content.len(),
            max: max_content(overhead),
        })?;
    let start = out.len();
    out.reserve(bucket - overhead);
    out.extend_from_slice(&(content.len() as u32).to_be_bytes());
    out.extend_from_slice(content);
    out.resize(start + bucket - overhead, 0);
    Ok(())
}

/// The content of a padded plaintext. The padding must be zeros.
pub(crate) fn unpad(padded: &[u8]) -> Result<Vec<u8>, SessionError> {
    content(padded).map(<[u8]>::to_vec)
}

/// The content inside a padded plaintext.
pub(crate) fn content(padded: &[u8]) -> Result<&[u8], SessionError> {
    let bad = || SessionError::Malformed("padding");
    let len = padded
        .get(..LEN)
        .ok_or_else(bad)?
        .try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| bad())? as usize;
    let rest = &padded[LEN..];
    if len > rest.len() || rest[len..].iter().any(|b| *b != 0) {
        return Err(bad());
    }
    Ok(&rest[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_lands_in_a_bucket() {
        for overhead in [0, 57, 133] {
            for len in [
                0,
                1,
                500,
                1024 - 4 - overhead,
                1025,
                4000,
                16000,
                30000,
                max_content(overhead),
            ] {
                let content = vec![0xabu8; len];
                let p = pad(&content, overhead).unwrap();
                assert!(
                    BUCKETS.contains(&(p.len() + overhead)),
                    "{len} + {overhead}"
                );
                assert_eq!(unpad(&p).unwrap(), content);
            }
            assert!(matches!(
                pad(&vec![0; max_content(overhead) + 1], overhead),
                Err(SessionError::TooLarge { .. })
            ));
        }
    }

    #[test]
    fn bad_padding_is_refused() {
        let mut p = pad(b"hello", 0).unwrap();
        *p.last_mut().unwrap() = 1;
        assert!(unpad(&p).is_err());
        let mut p = pad(b"hello", 0).unwrap();
        p[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(unpad(&p).is_err());
        assert!(unpad(&[0, 0]).is_err());
    }
}
