//! The data directory: where the store and the keystore files live, and how
//! files are written so that a crash never leaves half a file behind.
//!
//! ```text
//! DIR/store/              RocksDB
//! DIR/keystore/seed.cks   the seed (cold), encrypted
//! DIR/keystore/hot.cks    the current hot keys, encrypted
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
