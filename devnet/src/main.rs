//! `cairn-devnet`: runs the devnet until interrupted, for the quick start and
//! for trying Cairn against a local chain.

use std::io::Write as _;

use anyhow::{Context as _, Result};
use cairn_devnet::{DevWallet, Devnet};

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
                println!("usage: cairn-devnet [--blocks N]\n\nStarts a regtest devnet on loopback (bitcoind when on PATH, else the built-in stand-in),\nmines N blocks (default 101) to a devnet wallet, prints the RPC URL and cookie file, and runs until interrupted.");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?}; try --help"),
        }
    }
    let devnet = Devnet::start()?;
    let wallet = DevWallet::from_secret([1u8; 32])?;
    let client = devnet.client()?;
    client.generate_to_address(blocks, &wallet.address())?;
    println!("{}", devnet.label());
    println!("rpc_url    = {:?}", devnet.url());
    println!(
        "rpc_cookie = {:?}",
        devnet.cookie_path().display().to_string()
    );
    println!("height     = {blocks}");
    println!("Running until interrupted (Ctrl-C).");
    std::io::stdout().flush()?;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
