//! A sweep's records on disk:
//!
//! ```text
//! reports/<grid>/                (reports/<grid>.trial/ for a scaled-down sweep)
//!   grid.toml                    the grid file as last run
//!   plan.json                    every run of the grid: run id, plan labels, seed
//!   runs/<run_id>/               one complete record per run: run.toml, epochs.csv,
//!                                best.safetensors, sweep.json, and metrics.json (finished)
//!                                or failed.json (failed; retried by the next sweep)
//!   .work/<host>.<pid>/<run_id>/ runs in progress, moved into runs/ when they end
//!   .work/resumable/<run_id>/    unfinished runs of dead processes, with their resume state
//!   .locks/<run_id>.lock         held (flock) by the process that trains the run
//!   .locks/work.lock             held (flock) while a process rearranges .work/
//! ```
//!
//! A run is trained in its process's work folder and renamed into `runs/` in one step, so
//! `runs/` only ever holds whole records, and a process killed at any point leaves at most a
//! stale work folder. The next sweep on the same host keeps the runs in it that saved a resume
//! state ([`crate::train::resume`]: they continue after their last finished epoch, in whichever
//! process takes them next; a rename claims one) and removes the rest. Sweeps that start
//! together take turns at this (`.locks/work.lock`), so none removes a resume state another is
//! moving. A process trains a run only while it holds the run's lock, so sweeps (and `kdsr
//! train --out <grid>/runs`) that share a grid never train one run twice at once; the lock ends
//! with its process.

use super::plan::Plan;
use crate::io::{hostname, write_atomic};
use crate::results::record::FailedRecord;
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a run stands according to its record.
#[derive(Debug, Clone, PartialEq)]
pub enum RunStatus {
    Finished,
    /// Failed with this reason; the next sweep retries it.
    Failed(String),
    Pending,
}

impl RunStatus {
    pub fn short(&self) -> &'static str {
        match self {
            Self::Finished => "done",
            Self::Failed(_) => "failed",
            Self::Pending => "todo",
        }
    }
}

/// The records of one grid (or of its scaled-down trials).
#[derive(Debug, Clone)]
pub struct Store {
    pub root: PathBuf,
}

impl Store {
    /// `<out>/<grid>` for the full grid, `<out>/<grid>.trial` for a scaled-down one.
    pub fn for_plan(out: &Path, plan: &Plan) -> Self {
        let name = if plan.scale.is_full() { plan.grid.name.clone() } else { format!("{}.trial", plan.grid.name) };
        Self { root: out.join(name) }
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// The lock of `run_id` if no other process holds it (None: another process trains it).
    pub fn lock_run(&self, run_id: &str) -> Result<Option<crate::io::FileLock>> {
        crate::results::lock_run(&self.root, run_id)
    }

    fn work_root(&self) -> PathBuf {
        self.root.join(".work")
    }

    /// This process's work folder: runs are trained in `<it>/<run_id>/`.
    pub fn work_dir(&self) -> PathBuf {
        self.work_root().join(format!("{}.{}", hostname(), std::process::id()))
    }

    pub fn status(&self, run_id: &str) -> RunStatus {
        let dir = self.runs_dir().join(run_id);
        if dir.join("metrics.json").is_file() {
            // A record that does not verify (copied from another run, edited, truncated) is
            // not finished (`sweep run` refuses to start while one is there).
            return match crate::results::record::RunRecord::read(&dir) {
                Ok(_) => RunStatus::Finished,
                Err(e) => RunStatus::Failed(format!("record does not verify: {e:#}")),
            };
        }
        if !dir.join("failed.json").is_file() {
            return RunStatus::Pending;
        }
        match FailedRecord::read(&dir) {
            Ok(f) => RunStatus::Failed(f.reason),
            Err(e) => RunStatus::Failed(format!("unreadable failure record: {e:#}")),
        }
    }

    /// Creates the folders, removes work folders of dead processes on this host, and writes
    /// `grid.toml` and `plan.json`.
    pub fn prepare(&self, plan: &Plan) -> Result<()> {
        std::fs::create_dir_all(self.runs_dir()).with_context(|| format!("creating {}", self.runs_dir().display()))?;
        std::fs::create_dir_all(self.work_root())?;
        self.clean_stale()?;
        write_atomic(&self.root.join("grid.toml"), plan.grid.source.text.as_bytes())?;
        let runs: Vec<serde_json::Value> = plan
            .all
            .iter()
            .map(|r| {
                let point: serde_json::Map<String, serde_json::Value> =
                    plan.point(r).into_iter().map(|(k, v)| (k, v.into())).collect();
                json!({"run_id": r.run_id, "point": point, "seed": r.config.seed})
            })
            .collect();
        let doc = json!({
            "grid": plan.grid.name,
            "grid_file": plan.grid.source.path,
            "grid_blake3": blake3::hash(plan.grid.source.text.as_bytes()).to_hex().to_string(),
            "columns": plan.grid.columns,
            "scale": plan.scale,
            "runs": runs,
        });
        write_atomic(&self.root.join("plan.json"), serde_json::to_string_pretty(&doc)?.as_bytes())
    }

    fn resumable_dir(&self) -> PathBuf {
        self.work_root().join("resumable")
    }

    /// Held while this process moves or removes anything of another process in `.work/`.
    fn work_lock(&self) -> Result<crate::io::FileLock> {
        crate::io::FileLock::exclusive(&self.root.join(".locks").join("work.lock"))
    }

    /// Removes `.work/<host>.<pid>` folders of this host whose process is gone, after moving
    /// their runs that hold a resume state to `.work/resumable/` (keeping the further one when
    /// a run is there twice).
    fn clean_stale(&self) -> Result<()> {
        let host = hostname();
        let _turn = self.work_lock()?;
        let Ok(entries) = std::fs::read_dir(self.work_root()) else { return Ok(()) };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().to_string();
            let Some((h, pid)) = name.rsplit_once('.') else { continue };
            let Ok(pid) = pid.parse::<u32>() else { continue };
            if h == host && pid != std::process::id() && !process_alive(pid) {
                self.keep_resumable(&e.path())?;
                std::fs::remove_dir_all(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
            }
        }
        Ok(())
    }

    /// Moves the runs of a dead process's work folder that can resume into `.work/resumable/`.
    fn keep_resumable(&self, stale: &Path) -> Result<()> {
        use crate::train::resume;
        let Ok(runs) = std::fs::read_dir(stale) else { return Ok(()) };
        let target = self.resumable_dir();
        for run in runs.filter_map(|e| e.ok()) {
            let from = run.path();
            let Some(epoch) = resume::saved_epoch(&from) else { continue };
            let to = target.join(run.file_name());
            if resume::saved_epoch(&to).is_some_and(|there| there >= epoch) {
                continue;
            }
            std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
            if to.exists() {
                std::fs::remove_dir_all(&to).with_context(|| format!("removing {}", to.display()))?;
            }
            std::fs::rename(&from, &to).with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        }
        Ok(())
    }

    /// Every unfinished run's last saved epoch ([`crate::train::resume`]), listed once: the
    /// latest over `.work/resumable/` and the processes' work folders (which a sweep resumes),
    /// and, flagged `true`, a state in `runs/` itself, which only the `kdsr train --out` that
    /// started it resumes (a sweep cannot tell whether that process still writes there).
    pub fn saved_epochs(&self) -> BTreeMap<String, (usize, bool)> {
        let mut out: BTreeMap<String, (usize, bool)> = BTreeMap::new();
        let mut scan = |dir: PathBuf, by_train: bool| {
            let Ok(entries) = std::fs::read_dir(&dir) else { return };
            for e in entries.filter_map(|e| e.ok()) {
                let Some(epoch) = crate::train::resume::saved_epoch(&e.path()) else { continue };
                let id = e.file_name().to_string_lossy().into_owned();
                let slot = out.entry(id).or_insert((epoch, by_train));
                if epoch > slot.0 {
                    *slot = (epoch, by_train);
                }
            }
        };
        scan(self.runs_dir(), true);
        scan(self.resumable_dir(), false);
        if let Ok(procs) = std::fs::read_dir(self.work_root()) {
            for p in procs.filter_map(|e| e.ok()) {
                scan(p.path(), false);
            }
        }
        out
    }

    /// Moves `run_id`'s resumable folder, if any, into this process's work folder (a rename, so
    /// one process wins when several try); true when it did.
    pub fn claim_resumable(&self, run_id: &str) -> Result<bool> {
        let from = self.resumable_dir().join(run_id);
        if !from.is_dir() {
            return Ok(false);
        }
        let to = self.work_dir().join(run_id);
        let _turn = self.work_lock()?;
        std::fs::create_dir_all(self.work_dir()).with_context(|| format!("creating {}", self.work_dir().display()))?;
        if to.exists() {
            std::fs::remove_dir_all(&to).with_context(|| format!("removing {}", to.display()))?;
        }
        Ok(std::fs::rename(&from, &to).is_ok())
    }

    /// Moves a run's folder from the work folder into `runs/`, replacing an earlier failed
    /// or unverified record. Returns false (and drops the attempt) when another process finished the run
    /// meanwhile.
    pub fn publish(&self, run_id: &str) -> Result<bool> {
        let from = self.work_dir().join(run_id);
        let to = self.runs_dir().join(run_id);
        if matches!(self.status(run_id), RunStatus::Finished) {
            std::fs::remove_dir_all(&from).ok();
            return Ok(false);
        }
        let old = self.work_dir().join(format!("{run_id}.replaced"));
        if to.exists() {
            std::fs::rename(&to, &old).with_context(|| format!("moving aside {}", to.display()))?;
        }
        std::fs::rename(&from, &to).with_context(|| format!("moving {} to {}", from.display(), to.display()))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        }
        Ok(true)
    }

    /// Removes this process's work folder and `.work/resumable/` if they are empty.
    pub fn finish(&self) {
        let _ = std::fs::remove_dir(self.work_dir());
        let _turn = self.work_lock();
        let _ = std::fs::remove_dir(self.resumable_dir());
    }
}

/// Whether a process of this host is alive (on systems without /proc: assume it is).
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::resume::{self, Snapshot, Streams};
    use candle_core::{Device, Tensor};

    /// A resume state of `epoch` finished epochs, as training writes it.
    fn write_state(run_dir: &Path, epoch: usize) {
        let t = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        Snapshot {
            epoch,
            adam_step: 3,
            best: 0.5,
            bad_epochs: 0,
            best_epoch: epoch,
            valid: crate::eval::Metrics::default(),
            epochs: Vec::new(),
            streams: Streams::new(1, 2, None),
            seconds: 1.0,
            segments: Vec::new(),
            params: BTreeMap::from([("w".to_string(), t.clone())]),
            moments: BTreeMap::from([("w".to_string(), (t.clone(), t))]),
            selected: None,
        }
        .write(run_dir, "run-a")
        .unwrap();
    }

    /// Sweeps started together on one grid clean the same dead process's work folder at once:
    /// its resume state must end whole in `.work/resumable/`, never removed by one sweep while
    /// another moves it, and no sweep may fail for it.
    #[test]
    fn sweeps_starting_together_keep_a_dead_process_resume_state() {
        let dead = format!("{}.{}", hostname(), u32::MAX - 1);
        assert!(!process_alive(u32::MAX - 1));
        for round in 0..40 {
            let d = tempfile::tempdir().unwrap();
            let store = Store { root: d.path().join("grid") };
            write_state(&store.work_root().join(&dead).join("run-a"), 7);
            let start = std::sync::Barrier::new(4);
            let results: Vec<Result<()>> = std::thread::scope(|s| {
                let cleaners: Vec<_> = (0..4)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            store.clean_stale()
                        })
                    })
                    .collect();
                cleaners.into_iter().map(|c| c.join().unwrap()).collect()
            });
            for r in results {
                r.unwrap_or_else(|e| panic!("round {round}: a sweep failed: {e:#}"));
            }
            let kept = store.resumable_dir().join("run-a");
            assert_eq!(resume::saved_epoch(&kept), Some(7), "round {round}: the resume state was lost");
            assert!(!store.work_root().join(&dead).exists(), "round {round}: the stale folder was left");
        }
    }

    /// A claim takes the state out of `.work/resumable/` for exactly one process.
    #[test]
    fn a_resumable_run_is_claimed_once() {
        let d = tempfile::tempdir().unwrap();
        let store = Store { root: d.path().join("grid") };
        write_state(&store.resumable_dir().join("run-a"), 2);
        assert!(store.claim_resumable("run-a").unwrap());
        assert_eq!(resume::saved_epoch(&store.work_dir().join("run-a")), Some(2));
        assert!(!store.claim_resumable("run-a").unwrap());
        assert!(!store.claim_resumable("run-b").unwrap());
    }
}
