//! File output every stage shares: atomic whole-file writes (a file on disk is always complete,
//! even if the process is killed mid-write) and the code version stamped on every result.
//!
//! A write goes to a temporary file in the target's folder, named after the host and process
//! (so sweeps on several machines sharing one folder never share a temporary), is synced, and
//! is renamed over the target.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("syncing {}", tmp.display()))
    })
}

/// Atomic write through a writer that takes a path (safetensors, parquet): `write` fills the
/// temporary file, which is then renamed to `path`; on error the temporary is removed.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = temp_path(path);
    if let Err(e) = write(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Atomic save of named tensors as safetensors.
pub fn save_tensors_atomic<S: AsRef<str>>(
    path: &Path,
    tensors: impl IntoIterator<Item = (S, candle_core::Tensor)>,
) -> Result<()> {
    let map: std::collections::HashMap<String, candle_core::Tensor> =
        tensors.into_iter().map(|(k, v)| (k.as_ref().to_string(), v)).collect();
    write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(&map, tmp).with_context(|| format!("writing {}", tmp.display()))
    })
}

/// `<folder>/.<name>.<host>.<pid>.tmp`: unique per writer, hidden, in the target's folder (so
/// the rename stays on one file system).
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    path.with_file_name(format!(".{name}.{}.{}.tmp", hostname(), std::process::id()))
}

/// An exclusive lock on a file, held until dropped, that other processes on this machine (and
/// on others, where the shared file system supports `flock`) respect: sweep processes that
/// share a cache take turns building it.
#[derive(Debug)]
pub struct FileLock {
    _file: std::fs::File,
}

impl FileLock {
    /// Blocks until the lock on `path` (created if missing, with its folder) is this process's.
    pub fn exclusive(path: &Path) -> Result<Self> {
        let file = Self::open(path)?;
        file.lock().with_context(|| format!("locking {}", path.display()))?;
        Ok(Self { _file: file })
    }

    /// The lock on `path` if no other holder has it now; None when one does. The lock is
    /// released when dropped or when its process ends, however it ends.
    pub fn try_exclusive(path: &Path) -> Result<Option<Self>> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {}", path.display())),
        }
    }

    /// A lock path that is a folder (or under a file) is the user's to fix: bad input.
    fn open(path: &Path) -> Result<std::fs::File> {
        if path.is_dir() {
            return Err(crate::error::bad_input(format!(
                "{}: the lock file's path is a folder; remove it (no process holds a lock there)",
                path.display()
            )));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening lock file {}", path.display()))
    }
}

/// This process's peak resident set size in MiB (`VmHWM` in /proc/self/status), or None where
/// the kernel does not provide it.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib / 1024.0)
}

/// This machine's name (shards on several machines share one reports folder).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().replace(['/', '.'], "_"))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The code that produced a result: git commit and whether the tree had local changes when the
/// binary was built.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CodeVersion {
    pub commit: String,
    pub dirty: bool,
    pub crate_version: String,
}

impl CodeVersion {
    /// The commit and dirty flag of the tree this binary was built from (see build.rs).
    pub fn current() -> Self {
        Self {
            commit: env!("KDSR_GIT_COMMIT").to_string(),
            dirty: env!("KDSR_GIT_DIRTY") == "true",
            crate_version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "second");
        let leftovers: Vec<_> = std::fs::read_dir(d.path()).unwrap().filter_map(|e| e.ok()).collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn peak_rss_grows_with_a_touched_allocation() {
        let before = peak_rss_mib().expect("Linux provides VmHWM");
        let v = vec![1u8; 64 << 20];
        let after = peak_rss_mib().unwrap();
        // A high-water mark: never falls, and covers the 64 MiB just written.
        assert!(after >= before && after >= 64.0, "{before} -> {after}");
        drop(std::hint::black_box(v));
    }

    #[test]
    fn a_lock_path_that_is_a_folder_is_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("work.lock");
        std::fs::create_dir(&path).unwrap();
        for err in [FileLock::exclusive(&path).unwrap_err(), FileLock::try_exclusive(&path).unwrap_err()] {
            assert!(crate::error::is_bad_input(&err) && err.to_string().contains("work.lock"), "{err:#}");
        }
    }

    #[test]
    fn file_lock_excludes_other_holders_until_dropped() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("locks").join("beauty-text.lock");
        let held = FileLock::exclusive(&p).unwrap();
        // Another open file description (as another process would have) cannot take it.
        let other = std::fs::File::open(&p).unwrap();
        assert!(other.try_lock().is_err(), "a second holder got the lock");
        assert!(FileLock::try_exclusive(&p).unwrap().is_none(), "try_exclusive got a held lock");
        drop(held);
        let again = FileLock::try_exclusive(&p).unwrap().expect("free once the holder is dropped");
        drop(again);
        other.try_lock().expect("free once the holder is dropped");
    }

    #[test]
    fn failed_writer_leaves_target_and_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.bin");
        write_atomic(&p, b"kept").unwrap();
        let err = write_atomic_with(&p, |tmp| {
            std::fs::write(tmp, b"half")?;
            anyhow::bail!("writer failed")
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "kept");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
