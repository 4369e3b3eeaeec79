//! The data directory: where the store and the keystore files live, and how
//! files are written so that a crash never leaves half a file behind.
//!
//! ```text
//! DIR/store/              RocksDB
//! DIR/keystore/seed.cks   the seed (cold), encrypted
//! DIR/keystore/hot.cks    the current hot keys, encrypted
//! DIR/cairn.toml          configuration (optional)
//! DIR/node.lock           held by the running `cairn node` (its pid inside)
//! DIR/node.api            the running node's API address and token (owner-only)
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A Cairn data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root` (nothing is created until needed).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    /// The platform default: `$XDG_DATA_HOME/cairn` on Linux, the platform's
    /// application-data directory elsewhere.
    pub fn platform_default() -> Option<Self> {
        dirs::data_dir().map(|d| DataDir::new(d.join("cairn")))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the RocksDB store.
    pub fn store_path(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Directory of the keystore files.
    pub fn keystore_dir(&self) -> PathBuf {
        self.root.join("keystore")
    }

    /// Keystore file of the seed.
    pub fn seed_file(&self) -> PathBuf {
        self.keystore_dir().join("seed.cks")
    }

    /// Keystore file of the hot keys.
    pub fn hot_file(&self) -> PathBuf {
        self.keystore_dir().join("hot.cks")
    }

    /// The peer key of a node without an identity (see
    /// `network::node_key`).
    pub fn node_key_file(&self) -> PathBuf {
        self.root.join("node.key")
    }

    /// The lock file a running node holds.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("node.lock")
    }

    /// Takes the node lock: only one `cairn node` runs on a data directory.
    /// The lock is released when the returned value is dropped or the
    /// process ends, however it ends.
    pub fn lock_node(&self) -> Result<NodeLock, LockError> {
        let path = self.lock_file();
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| LockError::Io(path.display().to_string(), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut file, &mut text);
                return Err(LockError::Running {
                    dir: self.root.display().to_string(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(LockError::Io(path.display().to_string(), e))
            }
        }
        file.set_len(0)
            .and_then(|_| file.write_all(std::process::id().to_string().as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| LockError::Io(path.display().to_string(), e))?;
        Ok(NodeLock { _file: file })
    }

    /// The pid of the node running on this directory, if one is.
    pub fn running_node(&self) -> Option<Option<u32>> {
        match self.lock_node() {
            Err(LockError::Running { pid, .. }) => Some(pid),
            _ => None,
        }
    }

    /// Creates the root and keystore directories. Directories created here, and
    /// the keystore directory always, are owner-only on Unix; an existing root
    /// (say, one the user chose) keeps its permissions.
    pub fn create(&self) -> std::io::Result<()> {
        if !self.root.exists() {
            create_private_dir(&self.root)?;
        }
        create_private_dir(&self.keystore_dir())
    }
}

/// The lock of a running node (released on drop).
#[derive(Debug)]
pub struct NodeLock {
    _file: fs::File,
}

/// Why the node lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another node holds it.
    #[error("a cairn node is already running on {dir}{}; stop it first (cairn node stop)", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Running {
        /// The data directory.
        dir: String,
        /// The other node's pid, if readable.
        pid: Option<u32>,
    },
    /// The lock file could not be used.
    #[error("cannot use the lock file {0}: {1}")]
    Io(String, #[source] std::io::Error),
}

fn create_private_dir(p: &Path) -> std::io::Result<()> {
    fs::create_dir_all(p)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: a synced temporary file (owner-only on
/// Unix) renamed over the target, then the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut o = fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_per_directory() {
        let d = tempfile::tempdir().unwrap();
        let dd = DataDir::new(d.path());
        assert!(dd.running_node().is_none());
        let lock = dd.lock_node().unwrap();
        match dd.lock_node() {
            Err(e @ LockError::Running { pid, .. }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert!(e.to_string().contains("already running"), "{e}");
            }
            other => panic!("second lock taken: {other:?}"),
        }
        assert_eq!(dd.running_node(), Some(Some(std::process::id())));
        drop(lock);
        assert!(dd.running_node().is_none());
        dd.lock_node().unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_is_private() {
        let d = tempfile::tempdir().unwrap();
        let dd = DataDir::new(d.path().join("x"));
        dd.create().unwrap();
        write_atomic(&dd.seed_file(), b"one").unwrap();
        write_atomic(&dd.seed_file(), b"two").unwrap();
        assert_eq!(fs::read(dd.seed_file()).unwrap(), b"two");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(dd.seed_file()).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                fs::metadata(dd.keystore_dir())
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o700
            );
        }
        assert_eq!(
            fs::read_dir(dd.keystore_dir()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
