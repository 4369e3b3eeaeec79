//! The small, bounded piece of HTTP/1.1 that Bitcoin Core's JSON-RPC needs:
//! message heads, `Content-Length` and chunked bodies, Basic auth. Shared by
//! the RPC client and the devnet's server so both ends parse the same way.
//!
//! Every read is bounded: a head larger than [`MAX_HEAD`] or a body larger
//! than the caller's limit is an error, never an allocation.

use std::io::{self, BufRead, Read};

/// Largest message head (request or status line plus headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header lines in one head.
pub const MAX_HEADERS: usize = 64;

/// A parsed message head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The first line, split at spaces: `[method, target, version]` for a
    /// request, `[version, status, reason…]` for a response.
    pub start: Vec<String>,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the peer asked to close the connection after this message.
    pub fn wants_close(&self) -> bool {
        let version_10 = self.start.iter().any(|s| s == "HTTP/1.0");
        match self.header("connection").map(str::to_ascii_lowercase) {
            Some(c) if c.contains("close") => true,
            Some(c) if c.contains("keep-alive") => false,
            _ => version_10,
        }
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one line (up to `\n`) into `buf`, counting against `budget`.
fn read_line(r: &mut impl BufRead, budget: &mut usize) -> io::Result<String> {
    let mut line = Vec::new();
    loop {
        let available = r.fill_buf()?;
        if available.is_empty() {
            if line.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            return Err(bad("connection closed in the middle of a line"));
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if take > *budget {
            return Err(bad(format!("HTTP head longer than {MAX_HEAD} bytes")));
        }
        *budget -= take;
        line.extend_from_slice(&available[..take]);
        r.consume(take);
        if done {
            break;
        }
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| bad("HTTP head is not UTF-8"))
}

/// Reads a message head. `Ok(None)` when the peer closed the connection
/// cleanly before sending anything (the end of a keep-alive connection).
pub fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut budget = MAX_HEAD;
    let first = match read_line(r, &mut budget) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    };
    let start: Vec<String> = first.split(' ').map(str::to_owned).collect();
    if start.len() < 2 {
        return Err(bad(format!("malformed HTTP start line {first:?}")));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, &mut budget)?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(bad(format!("more than {MAX_HEADERS} HTTP headers")));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("malformed HTTP header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Some(Head { start, headers }))
}

/// Reads the body that follows `head`: by `Content-Length`, chunked, or (for
/// a response that has neither) until the connection closes. At most `limit`
/// bytes.
pub fn read_body(r: &mut impl BufRead, head: &Head, limit: usize) -> io::Result<Vec<u8>> {
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return read_chunked(r, limit);
    }
    if let Some(len) = head.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
        if len > limit {
            return Err(bad(format!("body of {len} bytes, more than {limit}")));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    r.take(limit as u64 + 1).read_to_end(&mut body)?;
    if body.len() > limit {
        return Err(bad(format!("body longer than {limit} bytes")));
    }
    Ok(body)
}

fn read_chunked(r: &mut impl BufRead, limit: usize) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut budget = 1024;
        let line = read_line(r, &mut budget)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            let mut budget = MAX_HEAD;
            while !read_line(r, &mut budget)?.is_empty() {}
            return Ok(body);
        }
        if size > limit.saturating_sub(body.len()) {
            return Err(bad(format!("chunked body longer than {limit} bytes")));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut budget = 2;
        if !read_line(r, &mut budget)?.is_empty() {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648), as HTTP Basic auth uses.
pub fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `Authorization` header value for `user:password`.
pub fn basic_auth(user: &str, password: &str) -> zeroize::Zeroizing<String> {
    let creds = zeroize::Zeroizing::new(format!("{user}:{password}"));
    zeroize::Zeroizing::new(format!("Basic {}", base64(creds.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    #[test]
    fn base64_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in cases {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn parses_content_length_and_chunked_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let mut r = BufReader::new(&raw[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.start[1], "200");
        assert_eq!(read_body(&mut r, &head, 100).unwrap(), b"hello");

        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(read_body(&mut r, &head, 100).unwrap(), b"abcde");
    }

    #[test]
    fn refuses_oversized_and_malformed_input() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert!(read_body(&mut r, &head, 100).is_err());

        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n";
        let mut r = BufReader::new(&raw[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert!(read_body(&mut r, &head, 100).is_err());

        let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        let mut r = BufReader::new(&long[..]);
        assert!(read_head(&mut r).is_err());

        let mut r = BufReader::new(&b"garbage\r\n\r\n"[..]);
        assert!(read_head(&mut r).is_err());
        let mut r = BufReader::new(&b""[..]);
        assert!(read_head(&mut r).unwrap().is_none());
    }
}
