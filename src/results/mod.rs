//! The "results" stage: one folder per run, `<root>/<run_id>/`, holding
//! - `run.toml`: the resolved configuration (written first),
//! - `epochs.csv`: one row per finished epoch (loss, validation and test metrics, seconds),
//! - `best.safetensors`: the parameters at the best validation epoch,
//! - `metrics.json`: the final record (written last; its presence marks a finished run).
//!
//! Every whole-file write goes to a temporary file in the same folder and is renamed into
//! place, so a file on disk is always complete even if the process is killed.

pub mod aggregate;
pub mod collect;

use crate::eval::Metrics;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (temporary file + fsync + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
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

/// One finished epoch (epoch 0: the untrained model, recorded for runs with modality tables;
/// its loss is NaN and written as an empty cell).
#[derive(Debug, Clone)]
pub struct EpochLog {
    pub epoch: usize,
    pub loss: f64,
    /// Optimiser steps taken in the epoch.
    pub steps: usize,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    pub valid: Metrics,
    /// Test metrics, when the test set was evaluated after this epoch.
    pub test: Option<Metrics>,
    /// Run-specific columns (correlation losses, modality learning rate, drift probes), in a
    /// fixed order for the run.
    pub extra: Vec<(String, f64)>,
}

/// A run's output folder.
pub struct RunDir {
    pub dir: PathBuf,
    csv: std::fs::File,
    header_written: bool,
}

impl RunDir {
    pub fn metrics_path(root: &Path, run_id: &str) -> PathBuf {
        root.join(run_id).join("metrics.json")
    }

    /// Starts (or restarts) a run: writes `run.toml` and an empty `epochs.csv` (its header is
    /// written with the first epoch, whose extra columns fix the run's layout).
    pub fn create(root: &Path, run_id: &str, run_toml: &str) -> Result<Self> {
        let dir = root.join(run_id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(&dir.join("run.toml"), run_toml.as_bytes())?;
        let _ = std::fs::remove_file(dir.join("metrics.json"));
        let _ = std::fs::remove_file(dir.join("failed.json"));
        let path = dir.join("epochs.csv");
        let csv = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { dir, csv, header_written: false })
    }

    pub fn append_epoch(&mut self, e: &EpochLog) -> Result<()> {
        if !self.header_written {
            let mut header = String::from("epoch,loss,steps,train_seconds,eval_seconds");
            for split in ["valid", "test"] {
                for m in Metrics::all() {
                    header += &format!(",{split}_{m}");
                }
            }
            for (name, _) in &e.extra {
                header += &format!(",{name}");
            }
            writeln!(self.csv, "{header}")?;
            self.header_written = true;
        }
        let loss = if e.loss.is_finite() { format!("{:.6}", e.loss) } else { String::new() };
        let mut row = format!("{},{loss},{},{:.3},{:.3}", e.epoch, e.steps, e.train_seconds, e.eval_seconds);
        for m in [Some(&e.valid), e.test.as_ref()] {
            for k in Metrics::all() {
                row += &m.map(|m| format!(",{:.4}", m.get(k))).unwrap_or_else(|| ",".into());
            }
        }
        for (_, v) in &e.extra {
            row += &if v.is_finite() { format!(",{v:.6}") } else { ",".to_string() };
        }
        writeln!(self.csv, "{row}")?;
        self.csv.flush()?;
        Ok(())
    }

    pub fn save_checkpoint(&self, tensors: &std::collections::BTreeMap<String, candle_core::Tensor>) -> Result<()> {
        let path = self.dir.join("best.safetensors");
        let tmp = self.dir.join(format!(".best.safetensors.tmp{}", std::process::id()));
        let map: std::collections::HashMap<String, candle_core::Tensor> =
            tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        candle_core::safetensors::save(&map, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))
    }

    /// Writes the final record; after this the run counts as finished.
    pub fn finish(&self, record: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string_pretty(record)?;
        write_atomic(&self.dir.join("metrics.json"), text.as_bytes())
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
}
