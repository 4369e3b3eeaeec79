//! BIP39 seed phrases: creation from the OS random source, parsing of typed
//! words with errors a person can act on, and the 64-byte seed.

use bip39::{Language, Mnemonic};
use unicode_normalization::UnicodeNormalization;
use zeroize::{Zeroize, Zeroizing};

/// Word counts a new phrase may have.
pub const NEW_WORD_COUNTS: [usize; 2] = [12, 24];
/// Word counts BIP39 defines, all accepted on restore.
pub const VALID_WORD_COUNTS: [usize; 5] = [12, 15, 18, 21, 24];

/// Why typed words are not a valid seed phrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WordsError {
    /// The number of words is not one BIP39 allows.
    #[error("a seed phrase has 12, 15, 18, 21 or 24 words; {found} were given")]
    WrongCount {
        /// How many words were found.
        found: usize,
    },
    /// A word is not in the BIP39 English list.
    #[error("word {position} ({word:?}) is not in the BIP39 English word list{}", suggestion_text(.suggestions))]
    UnknownWord {
        /// 1-based position of the word.
        position: usize,
        /// The word as typed (normalised).
        word: String,
        /// Closest words of the list, best first (possibly empty).
        suggestions: Vec<&'static str>,
    },
    /// Every word is valid but the checksum is not: a word is wrong or out of order.
    #[error("the checksum of the seed phrase does not match: one of the words is wrong or words are out of order")]
    BadChecksum,
    /// Only 12 or 24 words may be created.
    #[error("a new seed phrase has 12 or 24 words, not {0}")]
    UnsupportedNewCount(usize),
    /// Entropy of a length BIP39 does not define.
    #[error("BIP39 entropy is 16 to 32 bytes in steps of 4, not {0}")]
    BadEntropyLength(usize),
    /// The operating system's random source failed.
    #[error("the operating system's random source failed: {0}")]
    Random(String),
}

fn suggestion_text(s: &[&'static str]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", s.join(" or "))
    }
}

/// A BIP39 phrase, zeroized when dropped.
pub struct SeedPhrase {
    mnemonic: Mnemonic,
}

impl std::fmt::Debug for SeedPhrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeedPhrase({} words, redacted)", self.word_count())
    }
}

impl Drop for SeedPhrase {
    fn drop(&mut self) {
        self.mnemonic.zeroize();
    }
}

impl SeedPhrase {
    /// Creates a new phrase of `words` words (12 or 24) from the OS random source.
    pub fn generate(words: usize) -> Result<Self, WordsError> {
        let len = match words {
            12 => 16,
            24 => 32,
            n => return Err(WordsError::UnsupportedNewCount(n)),
        };
        let mut entropy = Zeroizing::new([0u8; 32]);
        getrandom::getrandom(&mut entropy[..len]).map_err(|e| WordsError::Random(e.to_string()))?;
        Self::from_entropy(&entropy[..len])
    }

    /// The phrase for the given entropy (16–32 bytes, a multiple of 4).
    pub fn from_entropy(entropy: &[u8]) -> Result<Self, WordsError> {
        let mnemonic = Mnemonic::from_entropy_in(Language::English, entropy)
            .map_err(|_| WordsError::BadEntropyLength(entropy.len()))?;
        Ok(Self { mnemonic })
    }

    /// Parses typed words: NFKD-normalised, case-folded, any whitespace between words.
    pub fn parse(typed: &str) -> Result<Self, WordsError> {
        let nfkd: Zeroizing<String> = Zeroizing::new(typed.nfkd().collect());
        let normalized: Zeroizing<String> = Zeroizing::new(nfkd.to_lowercase());
        let words: Vec<&str> = normalized.split_whitespace().collect();
        let list = Language::English;
        for (i, w) in words.iter().enumerate() {
            if list.find_word(w).is_none() {
                return Err(WordsError::UnknownWord {
                    position: i + 1,
                    word: (*w).to_string(),
                    suggestions: closest_words(w),
                });
            }
        }
        if !VALID_WORD_COUNTS.contains(&words.len()) {
            return Err(WordsError::WrongCount { found: words.len() });
        }
        let joined = Zeroizing::new(words.join(" "));
        match Mnemonic::parse_in_normalized(list, &joined) {
            Ok(mnemonic) => Ok(Self { mnemonic }),
            Err(bip39::Error::InvalidChecksum) => Err(WordsError::BadChecksum),
            Err(bip39::Error::BadWordCount(n)) => Err(WordsError::WrongCount { found: n }),
            Err(_) => Err(WordsError::BadChecksum),
        }
    }

    /// Number of words.
    pub fn word_count(&self) -> usize {
        self.mnemonic.word_count()
    }

    /// The words, space separated (a secret: show it only to its owner).
    pub fn phrase(&self) -> Zeroizing<String> {
        Zeroizing::new(self.mnemonic.words().collect::<Vec<_>>().join(" "))
    }

    /// The words one by one.
    pub fn words(&self) -> Vec<&'static str> {
        self.mnemonic.words().collect()
    }

    /// The entropy the phrase encodes (a secret).
    pub fn entropy(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.mnemonic.to_entropy())
    }

    /// The 64-byte BIP39 seed for the optional passphrase (PBKDF2-HMAC-SHA512,
    /// 2048 rounds; the passphrase is NFKD-normalised).
    pub fn to_seed(&self, passphrase: &str) -> Seed {
        let mut raw = self.mnemonic.to_seed(passphrase);
        let seed = Seed(Zeroizing::new(raw));
        raw.zeroize();
        seed
    }
}

/// A 64-byte BIP39 seed, zeroized when dropped.
#[derive(Clone)]
pub struct Seed(Zeroizing<[u8; 64]>);

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed(redacted)")
    }
}

impl Seed {
    /// Wraps seed bytes (for example unlocked from the keystore).
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Seed(Zeroizing::new(bytes))
    }

    /// The seed bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

/// Up to three list words closest to `word`: same 4-letter prefix first (BIP39
/// words are unique in their first four letters), then by edit distance ≤ 2.
pub fn closest_words(word: &str) -> Vec<&'static str> {
    let list = Language::English.word_list();
    let prefix: String = word.chars().take(4).collect();
    let mut out: Vec<&'static str> = Vec::new();
    if prefix.chars().count() == 4 {
        out.extend(list.iter().filter(|w| w.starts_with(&prefix)).copied());
    }
    let mut scored: Vec<(usize, &'static str)> = list
        .iter()
        .filter(|w| !out.contains(w))
        .map(|w| (edit_distance(word, w), *w))
        .filter(|(d, _)| *d <= 2)
        .collect();
    scored.sort();
    out.extend(scored.into_iter().map(|(_, w)| w));
    out.truncate(3);
    out
}

/// Levenshtein distance over chars (inputs are short words), capped work.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(32).collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABANDON: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

    #[test]
    fn generate_gives_valid_phrases() {
        for n in NEW_WORD_COUNTS {
            let p = SeedPhrase::generate(n).unwrap();
            assert_eq!(p.word_count(), n);
            let again = SeedPhrase::parse(&p.phrase()).unwrap();
            assert_eq!(again.entropy(), p.entropy());
        }
        assert_eq!(
            SeedPhrase::generate(13).unwrap_err(),
            WordsError::UnsupportedNewCount(13)
        );
    }

    #[test]
    fn normalises_case_and_spaces() {
        let messy = "  ABANDON abandon\tabandon  abandon abandon abandon\nabandon abandon abandon abandon Abandon about ";
        let a = SeedPhrase::parse(messy).unwrap();
        let b = SeedPhrase::parse(ABANDON).unwrap();
        assert_eq!(a.entropy(), b.entropy());
    }

    #[test]
    fn unknown_word_names_position_and_suggests() {
        let typed = ABANDON.replacen("about", "abuot", 1);
        match SeedPhrase::parse(&typed).unwrap_err() {
            WordsError::UnknownWord {
                position,
                word,
                suggestions,
            } => {
                assert_eq!(position, 12);
                assert_eq!(word, "abuot");
                assert!(suggestions.contains(&"about"), "{suggestions:?}");
            }
            e => panic!("unexpected {e:?}"),
        }
        // A prefix of four letters is enough to suggest the word.
        assert_eq!(closest_words("abanx")[0], "abandon");
        let msg = SeedPhrase::parse("abandon zzzzzzzz")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("word 2"), "{msg}");
    }

    #[test]
    fn bad_checksum_and_count() {
        let typed = ABANDON.replacen("about", "abandon", 1);
        assert_eq!(
            SeedPhrase::parse(&typed).unwrap_err(),
            WordsError::BadChecksum
        );
        let eleven: Vec<&str> = ABANDON.split(' ').take(11).collect();
        assert_eq!(
            SeedPhrase::parse(&eleven.join(" ")).unwrap_err(),
            WordsError::WrongCount { found: 11 }
        );
        assert!(WordsError::WrongCount { found: 11 }
            .to_string()
            .contains("12, 15, 18, 21 or 24"));
    }

    #[test]
    fn debug_redacts() {
        let p = SeedPhrase::parse(ABANDON).unwrap();
        assert!(!format!("{p:?}").contains("abandon"));
        assert_eq!(format!("{:?}", p.to_seed("")), "Seed(redacted)");
    }
}
