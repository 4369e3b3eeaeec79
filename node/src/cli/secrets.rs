//! Reading secrets from the person at the keyboard, or from scripts: keystore
//! passphrases, BIP39 passphrases and seed words. Nothing read here is echoed
//! or logged.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};
use zeroize::Zeroizing;

/// Environment variable holding the keystore passphrase for scripts and tests.
pub const ENV_PASSPHRASE: &str = "CAIRN_PASSPHRASE";
/// Environment variable holding the optional BIP39 passphrase.
pub const ENV_BIP39_PASSPHRASE: &str = "CAIRN_BIP39_PASSPHRASE";
/// Shortest keystore passphrase accepted for a new keystore.
pub const MIN_PASSPHRASE_LEN: usize = 8;
/// Longest seed-phrase input read from standard input.
const MAX_WORDS_INPUT: u64 = 4096;

/// Whether a passphrase is being chosen or entered.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Choosing a new one: asked twice on a terminal, length checked.
    New,
    /// Unlocking.
    Existing,
}

fn prompt(text: &str) -> Result<Zeroizing<String>> {
    rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .context("cannot read from the terminal")
}

fn has_terminal() -> bool {
    std::fs::File::open("/dev/tty").is_ok() || std::io::stdin().is_terminal()
}

/// The keystore passphrase: `--passphrase-file`, else `CAIRN_PASSPHRASE`, else a prompt.
pub fn keystore_passphrase(file: Option<&Path>, purpose: Purpose) -> Result<Zeroizing<String>> {
    let pass = if let Some(f) = file {
        let raw = Zeroizing::new(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read passphrase file {}", f.display()))?,
        );
        Zeroizing::new(raw.lines().next().unwrap_or("").to_string())
    } else if let Ok(v) = std::env::var(ENV_PASSPHRASE) {
        Zeroizing::new(v)
    } else if has_terminal() {
        let first = prompt(match purpose {
            Purpose::New => "Choose a passphrase for the keystore on this machine: ",
            Purpose::Existing => "Keystore passphrase: ",
        })?;
        if purpose == Purpose::New {
            check_new(&first)?;
            let again = prompt("Type it again: ")?;
            if *again != *first {
                bail!("the two passphrases differ; nothing was changed");
            }
        }
        first
    } else {
        bail!("no keystore passphrase: set {ENV_PASSPHRASE}, pass --passphrase-file FILE, or run on a terminal");
    };
    if pass.is_empty() {
        bail!("the keystore passphrase is empty");
    }
    if purpose == Purpose::New {
        check_new(&pass)?;
    }
    Ok(pass)
}

fn check_new(p: &str) -> Result<()> {
    if p.chars().count() < MIN_PASSPHRASE_LEN {
        bail!("choose a keystore passphrase of at least {MIN_PASSPHRASE_LEN} characters");
    }
    Ok(())
}

/// The optional BIP39 passphrase (only read when asked for with a flag).
pub fn bip39_passphrase(purpose: Purpose) -> Result<Zeroizing<String>> {
    let pass = if let Ok(v) = std::env::var(ENV_BIP39_PASSPHRASE) {
        Zeroizing::new(v)
    } else if has_terminal() {
        let first = prompt("BIP39 passphrase (the optional 13th/25th word): ")?;
        if purpose == Purpose::New {
            let again = prompt("Type it again: ")?;
            if *again != *first {
                bail!("the two BIP39 passphrases differ; nothing was created");
            }
        }
        first
    } else {
        bail!("--bip39-passphrase needs {ENV_BIP39_PASSPHRASE} or a terminal");
    };
    if pass.is_empty() {
        bail!("the BIP39 passphrase is empty; leave out --bip39-passphrase to use none");
    }
    Ok(pass)
}

/// Seed words: prompted (hidden) on a terminal, else read from standard input.
pub fn seed_words() -> Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return prompt("Seed phrase (words separated by spaces; input is hidden): ");
    }
    // Pre-sized so that growing never leaves copies of the words in freed memory.
    let mut buf = Zeroizing::new(String::with_capacity(MAX_WORDS_INPUT as usize + 1));
    stdin
        .lock()
        .take(MAX_WORDS_INPUT + 1)
        .read_to_string(&mut buf)
        .context("cannot read the seed phrase from standard input")?;
    if buf.len() as u64 > MAX_WORDS_INPUT {
        bail!("standard input is too long for a seed phrase");
    }
    Ok(buf)
}

/// Asks the person to type back the words at three random positions.
pub fn confirm_words(words: &[&str]) -> Result<()> {
    if !has_terminal() {
        bail!(
            "confirming the words needs a terminal; pass --yes to skip the confirmation in scripts"
        );
    }
    let mut r = [0u8; 8];
    getrandom_positions(&mut r)?;
    let mut positions: Vec<usize> = Vec::new();
    for b in r {
        let p = usize::from(b) % words.len();
        if !positions.contains(&p) {
            positions.push(p);
        }
        if positions.len() == 3 {
            break;
        }
    }
    positions.sort_unstable();
    eprintln!("\nTo check that you wrote them down, type three of the words.");
    for p in positions {
        let mut tries = 0;
        loop {
            let typed = prompt(&format!("Word #{}: ", p + 1))?;
            if typed.trim().to_lowercase() == words[p] {
                break;
            }
            tries += 1;
            if tries == 3 {
                bail!(
                    "word #{} does not match; nothing was created. Run `cairn init` again",
                    p + 1
                );
            }
            eprintln!(
                "That is not word #{}; look at your copy and try again.",
                p + 1
            );
        }
    }
    Ok(())
}

fn getrandom_positions(buf: &mut [u8]) -> Result<()> {
    getrandom::getrandom(buf)
        .map_err(|e| anyhow::anyhow!("the operating system's random source failed: {e}"))
}
