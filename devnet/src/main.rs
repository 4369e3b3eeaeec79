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
                println!("usage: cairn-devnet [--blocks N]\n\nStarts a regtest devnet on loopback (bitcoind when on PATH, else the built-in stand-in),\nmines N blocks (default 101) to a devnet wallet, prints a [bitcoin] section for cairn.toml,\nand runs until standard input closes or the process is interrupted.");
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
    // Run until standard input closes (then clean up) or the process is killed.
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    drop(devnet);
    Ok(())
}
