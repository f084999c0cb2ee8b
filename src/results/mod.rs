//! The "results" stage: one folder per run, `<root>/<run_id>/`, holding
//! - `run.toml`: the resolved configuration (written first),
//! - `epochs.csv`: one row per finished epoch (loss, validation and test metrics, seconds),
//! - `best.safetensors`: the parameters at the best validation epoch,
//! - `metrics.json`: the final record (written last; its presence marks a finished run).
//!
//! Every whole-file write is atomic ([`crate::io::write_atomic`]), so a file on disk is always
//! complete even if the process is killed.

pub mod record;
pub mod seal;

use crate::eval::Metrics;
use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// The lock of `run_id` in the records of a grid (`grid`: `reports/<grid>`, whose `runs/`
/// holds the records), held by the process that trains the run: `.locks/<run_id>.lock`.
/// None when another process holds it.
pub fn lock_run(grid: &Path, run_id: &str) -> Result<Option<crate::io::FileLock>> {
    crate::io::FileLock::try_exclusive(&grid.join(".locks").join(format!("{run_id}.lock")))
}

/// The grid folder whose records are `runs` (`reports/<grid>` for `reports/<grid>/runs`), or
/// None when `runs` is not named `runs`.
pub fn grid_of_runs(runs: &Path) -> Option<&Path> {
    (runs.file_name()? == "runs").then(|| runs.parent()).flatten()
}

/// The columns every `epochs.csv` starts with; the run's extra columns follow.
fn fixed_header() -> String {
    let mut header = String::from("epoch,loss,steps,train_seconds,eval_seconds");
    for split in ["valid", "test"] {
        for m in Metrics::all() {
            header += &format!(",{split}_{m}");
        }
    }
    header
}

/// A run's output folder.
pub struct RunDir {
    pub dir: PathBuf,
    csv: std::fs::File,
    /// The extra columns of `epochs.csv`'s header once it is written (by the first epoch, or
    /// by the process that started a resumed run): rows follow it, so a resumed run keeps a
    /// well-formed file even where this code logs other columns (cells it lacks stay empty).
    extra_columns: Option<Vec<String>>,
}

impl RunDir {
    pub fn metrics_path(root: &Path, run_id: &str) -> PathBuf {
        root.join(run_id).join("metrics.json")
    }

    /// Starts (or restarts) a run: writes `run.toml` and an empty `epochs.csv` (its header is
    /// written with the first epoch, whose extra columns fix the run's layout).
    pub fn create(root: &Path, cfg: &crate::config::RunConfig) -> Result<Self> {
        let dir = root.join(cfg.run_id());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        record::write_run_toml(&dir, cfg)?;
        let _ = std::fs::remove_file(dir.join("metrics.json"));
        let _ = std::fs::remove_file(dir.join("failed.json"));
        let path = dir.join("epochs.csv");
        let csv = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { dir, csv, extra_columns: None })
    }

    /// Continues a run after epoch `epoch` ([`crate::train::resume`]): keeps `run.toml` and the
    /// rows of `epochs.csv` up to that epoch (a later row is from an epoch whose state was never
    /// saved), and appends from there.
    pub fn reopen(root: &Path, cfg: &crate::config::RunConfig, epoch: usize) -> Result<Self> {
        let dir = root.join(cfg.run_id());
        let path = dir.join("epochs.csv");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut kept = String::new();
        for (i, line) in text.lines().enumerate() {
            let keep = i == 0 || {
                let e = line.split(',').next().and_then(|c| c.parse::<usize>().ok());
                e.with_context(|| format!("{}:{}: no epoch number", path.display(), i + 1))? <= epoch
            };
            if keep {
                kept.push_str(line);
                kept.push('\n');
            }
        }
        crate::io::write_atomic(&path, kept.as_bytes())?;
        let _ = std::fs::remove_file(dir.join("failed.json"));
        let csv = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let fixed = fixed_header().split(',').count();
        let extra_columns = kept.lines().next().map(|h| h.split(',').skip(fixed).map(String::from).collect());
        Ok(Self { dir, csv, extra_columns })
    }

    pub fn append_epoch(&mut self, e: &EpochLog) -> Result<()> {
        if self.extra_columns.is_none() {
            let mut header = fixed_header();
            for (name, _) in &e.extra {
                header += &format!(",{name}");
            }
            writeln!(self.csv, "{header}")?;
            self.extra_columns = Some(e.extra.iter().map(|(n, _)| n.clone()).collect());
        }
        let loss = if e.loss.is_finite() { format!("{:.6}", e.loss) } else { String::new() };
        let mut row = format!("{},{loss},{},{:.3},{:.3}", e.epoch, e.steps, e.train_seconds, e.eval_seconds);
        for m in [Some(&e.valid), e.test.as_ref()] {
            for k in Metrics::all() {
                row += &m.map(|m| format!(",{:.4}", m.get(k))).unwrap_or_else(|| ",".into());
            }
        }
        for name in self.extra_columns.iter().flatten() {
            let v = e.extra.iter().find(|(n, _)| n == name).map_or(f64::NAN, |(_, v)| *v);
            row += &if v.is_finite() { format!(",{v:.6}") } else { ",".to_string() };
        }
        writeln!(self.csv, "{row}")?;
        self.csv.flush()?;
        Ok(())
    }

    pub fn save_checkpoint(&self, tensors: &std::collections::BTreeMap<String, candle_core::Tensor>) -> Result<()> {
        crate::io::save_tensors_atomic(&self.dir.join("best.safetensors"), tensors.iter().map(|(k, v)| (k, v.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RunConfig;
    use crate::data::{DatasetId, DatasetRef};
    use crate::model::ModelKind;

    fn epoch(epoch: usize, extra: &[(&str, f64)]) -> EpochLog {
        EpochLog {
            epoch,
            loss: 1.0,
            steps: 3,
            train_seconds: 0.5,
            eval_seconds: 0.1,
            valid: Metrics::default(),
            test: None,
            extra: extra.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        }
    }

    /// A run resumed by code that logs other extra columns keeps the header it started with:
    /// every row has the header's width, a column this code lacks stays empty, one it adds is
    /// left out.
    #[test]
    fn a_resumed_run_keeps_its_columns() {
        let root = tempfile::tempdir().unwrap();
        let cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 7);
        let mut d = RunDir::create(root.path(), &cfg).unwrap();
        d.append_epoch(&epoch(1, &[("lr_modality", 0.5), ("old", 2.0)])).unwrap();
        d.append_epoch(&epoch(2, &[("lr_modality", 0.25), ("old", 3.0)])).unwrap();
        drop(d);
        let mut d = RunDir::reopen(root.path(), &cfg, 1).unwrap();
        d.append_epoch(&epoch(2, &[("lr_modality", 0.125), ("rss_peak_mib", 99.0)])).unwrap();
        let text = std::fs::read_to_string(d.dir.join("epochs.csv")).unwrap();
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 3, "{text}");
        assert!(rows.iter().all(|r| r.len() == rows[0].len()), "{text}");
        assert_eq!(&rows[0][rows[0].len() - 2..], ["lr_modality", "old"]);
        assert_eq!(&rows[2][rows[2].len() - 2..], ["0.125000", ""]);
        assert_eq!(rows[2][0], "2");
    }
}
