//! Identity ids (`cairn1…`, bech32m), short fingerprints and pairwise safety numbers.

use bitcoin::bech32::{primitives::decode::CheckedHrpstring, Bech32m, Hrp};
use serde::Serialize;

use crate::hash::{tagged_hash, tags};

/// Human-readable prefix of identity ids.
pub const ID_HRP: &str = "cairn";
/// Hash iterations behind each half of a safety number (as Signal does, to make
/// finding a colliding identity expensive).
pub const SAFETY_NUMBER_ITERATIONS: u32 = 5200;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Why a string is not an identity id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not a valid bech32m string.
    #[error("not a valid identity id (expected bech32m starting with cairn1): {0}")]
    NotBech32m(String),
    /// A bech32m string for something else.
    #[error("identity ids start with cairn1, this one has prefix {0:?}")]
    WrongPrefix(String),
    /// Wrong payload length.
    #[error("an identity id holds 32 bytes, this one {0}")]
    WrongLength(usize),
}

/// An identity id: the tagged hash of the encoded inception event.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityId(pub [u8; 32]);

impl IdentityId {
    /// The id of an identity whose inception event encodes to `inception`.
    pub fn of_inception(inception: &[u8]) -> Self {
        IdentityId(tagged_hash(tags::IDENTITY_ID, &[inception]))
    }

    /// A short fingerprint to read aloud: 80 bits as 16 Crockford base32
    /// characters in four groups, e.g. `7K3Q-M2XA-9F0D-RT4W`.
    pub fn fingerprint(&self) -> String {
        let h = tagged_hash(tags::FINGERPRINT, &[&self.0]);
        let mut bits: u128 = 0;
        for b in &h[..10] {
            bits = (bits << 8) | u128::from(*b);
        }
        let mut out = String::with_capacity(19);
        for i in 0..16 {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            let shift = 75 - 5 * i;
            out.push(CROCKFORD[((bits >> shift) & 31) as usize] as char);
        }
        out
    }

    fn safety_half(&self) -> String {
        let mut h = tagged_hash(tags::SAFETY_NUMBER, &[&self.0]);
        for _ in 1..SAFETY_NUMBER_ITERATIONS {
            h = tagged_hash(tags::SAFETY_NUMBER, &[&h, &self.0]);
        }
        (0..6)
            .map(|i| {
                let c = &h[i * 5..i * 5 + 5];
                let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                format!("{:05}", n % 100_000)
            })
            .collect()
    }

    /// The safety number of this identity and `other`: 60 digits in 12 groups of
    /// five, the same on both sides whatever the order.
    pub fn safety_number(&self, other: &IdentityId) -> SafetyNumber {
        let (a, b) = (self.safety_half(), other.safety_half());
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        SafetyNumber(format!("{lo}{hi}"))
    }
}

impl std::fmt::Display for IdentityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hrp = Hrp::parse_unchecked(ID_HRP);
        // Encoding 32 bytes under a valid HRP cannot fail.
        let s = bitcoin::bech32::encode::<Bech32m>(hrp, &self.0).map_err(|_| std::fmt::Error)?;
        f.write_str(&s)
    }
}

impl std::fmt::Debug for IdentityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentityId({self})")
    }
}

impl std::str::FromStr for IdentityId {
    type Err = IdError;

    fn from_str(s: &str) -> Result<Self, IdError> {
        let s = s.trim();
        let checked =
            CheckedHrpstring::new::<Bech32m>(s).map_err(|e| IdError::NotBech32m(e.to_string()))?;
        if checked.hrp().to_lowercase() != ID_HRP {
            return Err(IdError::WrongPrefix(checked.hrp().to_string()));
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let arr: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| IdError::WrongLength(bytes.len()))?;
        let id = IdentityId(arr);
        // The 4 padding bits after 32 bytes must be zero: one id, one string.
        if id.to_string() != s.to_lowercase() {
            return Err(IdError::NotBech32m("non-zero padding bits".into()));
        }
        Ok(id)
    }
}

impl Serialize for IdentityId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for IdentityId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A pairwise safety number (60 digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    /// The 60 digits without spaces.
    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, chunk) in self.0.as_bytes().chunks(5).enumerate() {
            if i > 0 {
                f.write_str(if i % 4 == 0 { "\n" } else { " " })?;
            }
            f.write_str(std::str::from_utf8(chunk).map_err(|_| std::fmt::Error)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bech32m_round_trip_and_errors() {
        let id = IdentityId([7u8; 32]);
        let s = id.to_string();
        assert!(s.starts_with("cairn1"), "{s}");
        assert_eq!(s.parse::<IdentityId>().unwrap(), id);
        assert_eq!(s.to_uppercase().parse::<IdentityId>().unwrap(), id);
        // One changed character breaks the checksum.
        let mut bad = s.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'q' { b'p' } else { b'q' };
        assert!(matches!(
            String::from_utf8(bad).unwrap().parse::<IdentityId>(),
            Err(IdError::NotBech32m(_))
        ));
        // A bech32m string with another prefix.
        let other =
            bitcoin::bech32::encode::<Bech32m>(Hrp::parse("bc").unwrap(), &[7u8; 32]).unwrap();
        assert_eq!(
            other.parse::<IdentityId>(),
            Err(IdError::WrongPrefix("bc".into()))
        );
        let short =
            bitcoin::bech32::encode::<Bech32m>(Hrp::parse("cairn").unwrap(), &[7u8; 20]).unwrap();
        assert_eq!(short.parse::<IdentityId>(), Err(IdError::WrongLength(20)));
        // bech32 (not m) is refused.
        let legacy = bitcoin::bech32::encode::<bitcoin::bech32::Bech32>(
            Hrp::parse("cairn").unwrap(),
            &[7u8; 32],
        )
        .unwrap();
        assert!(legacy.parse::<IdentityId>().is_err());
    }

    #[test]
    fn fingerprint_shape() {
        let f = IdentityId([1u8; 32]).fingerprint();
        assert_eq!(f.len(), 19);
        assert_eq!(f.matches('-').count(), 3);
        assert_ne!(f, IdentityId([2u8; 32]).fingerprint());
    }

    #[test]
    fn safety_number_is_symmetric() {
        let a = IdentityId([1u8; 32]);
        let b = IdentityId([2u8; 32]);
        let c = IdentityId([3u8; 32]);
        assert_eq!(a.safety_number(&b), b.safety_number(&a));
        assert_ne!(a.safety_number(&b), a.safety_number(&c));
        let n = a.safety_number(&b);
        assert_eq!(n.digits().len(), 60);
        assert!(n.digits().bytes().all(|d| d.is_ascii_digit()));
        assert_eq!(n.to_string().split_whitespace().count(), 12);
    }
}
