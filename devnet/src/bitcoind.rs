//! Running a real `bitcoind -regtest` as the devnet, when one is installed:
//! loopback only, no peers, a temporary data directory, cookie auth, and the
//! transaction index so lookups behave like the built-in stand-in.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::DevnetError;

/// `bitcoind` on `PATH`, if any.
pub fn find_on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("bitcoind"))
        .find(|p| p.is_file())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running `bitcoind`. Dropping it stops it.
#[derive(Debug)]
pub struct Bitcoind {
    child: Option<Child>,
}

impl Bitcoind {
    /// Starts `bitcoind` at `exe` with `datadir`; returns it and its RPC port.
    pub fn spawn(exe: &Path, datadir: &Path) -> Result<(Bitcoind, u16), DevnetError> {
        let rpc_port = free_port()?;
        let p2p_port = free_port()?;
        let child = Command::new(exe)
            .arg("-regtest")
            .arg(format!("-datadir={}", datadir.display()))
            .arg("-server=1")
            .arg("-rpcbind=127.0.0.1")
            .arg("-rpcallowip=127.0.0.1")
            .arg(format!("-rpcport={rpc_port}"))
            .arg(format!("-port={p2p_port}"))
            .arg("-bind=127.0.0.1")
            .arg("-listen=0")
            .arg("-connect=0")
            .arg("-dnsseed=0")
            .arg("-fixedseeds=0")
            .arg("-discover=0")
            .arg("-upnp=0")
            .arg("-natpmp=0")
            .arg("-txindex=1")
            .arg("-printtoconsole=0")
            .arg("-disablewallet=1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| DevnetError::Bitcoind(format!("{}: {e}", exe.display())))?;
        Ok((Bitcoind { child: Some(child) }, rpc_port))
    }

    /// Stops the process (SIGTERM-like kill after a grace period).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        #[cfg(unix)]
        {
            // Ask politely first: bitcoind shuts down cleanly on SIGTERM.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Bitcoind {
    fn drop(&mut self) {
        self.stop();
    }
}
