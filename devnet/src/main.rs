//! `cairn-devnet`: runs the devnet until interrupted, for the quick start and
//! for trying Cairn against a local chain. Lines on standard input drive it
//! (`mine N`, `pay ADDRESS BTC`), each answered by one line on standard
//! output.

use std::io::{BufRead as _, Write as _};
use std::str::FromStr as _;

use anyhow::{Context as _, Result};
use bitcoin::{Address, Amount, Denomination, Network, OutPoint};
use cairn_chain_anchor::rpc::RpcClient;
use cairn_devnet::{DevWallet, Devnet};

/// Longest command line read from standard input.
const MAX_COMMAND: usize = 1024;
/// The fee of a devnet payment.
const PAY_FEE: Amount = Amount::from_sat(2_000);

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut blocks = 101u32;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--blocks" => {
                blocks = args
                    .next()
                    .context("--blocks needs a number")?
                    .parse()
                    .context("--blocks needs a number")?
            }
            "-h" | "--help" => {
                println!("usage: cairn-devnet [--blocks N]\n\nStarts a regtest devnet on loopback (bitcoind when on PATH, else the built-in stand-in),\nmines N blocks (default 101) to a devnet wallet, prints a [bitcoin] section for cairn.toml,\nand runs until standard input closes or the process is interrupted.\n\nCommands on standard input, one per line, each answered by one line (ok … or error: …):\n  mine N             mine N blocks to the devnet wallet\n  pay ADDRESS BTC    pay from the devnet wallet's next mature coinbase (into the mempool)");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}; try --help"),
        }
    }
    let devnet = Devnet::start()?;
    let wallet = DevWallet::from_secret([1u8; 32])?;
    let client = devnet.client()?;
    client.generate_to_address(blocks, &wallet.address())?;
    println!("# {} ({blocks} blocks mined)", devnet.label());
    println!("[bitcoin]");
    println!("network = \"regtest\"");
    println!("rpc_url = {:?}", devnet.url());
    println!(
        "rpc_cookie = {:?}",
        devnet.cookie_path().display().to_string()
    );
    std::io::stdout().flush()?;
    // Run until standard input closes (then clean up) or the process is
    // killed, answering the commands that arrive meanwhile.
    let mut next_coinbase = 1u32;
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n =
            std::io::Read::take(&mut stdin, MAX_COMMAND as u64 + 1).read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        let answer = if line.len() > MAX_COMMAND {
            // Skip the rest of an overlong line.
            let mut rest = Vec::new();
            stdin.read_until(b'\n', &mut rest)?;
            format!("error: a command is at most {MAX_COMMAND} bytes")
        } else {
            let text = String::from_utf8_lossy(&line);
            match command(&client, &wallet, &mut next_coinbase, text.trim()) {
                Ok(done) => format!("ok {done}"),
                Err(e) => format!("error: {e:#}"),
            }
        };
        println!("{answer}");
        std::io::stdout().flush()?;
    }
    drop(devnet);
    Ok(())
}

/// Runs one command from standard input.
fn command(
    client: &RpcClient,
    wallet: &DevWallet,
    next_coinbase: &mut u32,
    text: &str,
) -> Result<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [] => Ok(String::new()),
        ["mine", n] => {
            let n: u32 = n.parse().context("mine N: N is a number of blocks")?;
            anyhow::ensure!((1..=1_000).contains(&n), "mine N: 1 to 1000 blocks");
            let hashes = client.generate_to_address(n, &wallet.address())?;
            let height = client.block_count()?;
            Ok(format!(
                "mined {n} block(s), tip {height} {}",
                hashes.last().map(|h| h.to_string()).unwrap_or_default()
            ))
        }
        ["pay", address, btc] => {
            let to = Address::from_str(address)
                .context("pay ADDRESS BTC: not an address")?
                .require_network(Network::Regtest)
                .context("pay ADDRESS BTC: not a regtest address")?;
            let amount = Amount::from_str_in(btc, Denomination::Bitcoin)
                .context("pay ADDRESS BTC: not an amount in BTC")?;
            let tip = client.block_count()?;
            anyhow::ensure!(
                *next_coinbase + 100 <= tip,
                "no mature coinbase left: mine more blocks first"
            );
            let block = client.block(&client.block_hash(*next_coinbase)?)?;
            let coinbase = block.txdata.first().context("a block without coinbase")?;
            let coin = (
                OutPoint::new(coinbase.compute_txid(), 0),
                coinbase.output[0].clone(),
            );
            anyhow::ensure!(
                amount + PAY_FEE <= coin.1.value,
                "at most {} per payment",
                coin.1.value - PAY_FEE
            );
            let tx = wallet.pay(coin, to.script_pubkey(), amount, PAY_FEE);
            let txid = client.send_raw_transaction(&tx)?;
            *next_coinbase += 1;
            Ok(format!(
                "paid {amount} in {txid} (in the mempool until the next block)"
            ))
        }
        _ => anyhow::bail!("unknown command {text:?}: mine N, or pay ADDRESS BTC"),
    }
}
