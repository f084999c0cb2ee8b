//! A grid's run records -> one table: a row per finished run with its plan labels, seed, test
//! metrics (at the selected epoch) and provenance; runs without a record are listed as missing
//! with the reason.

use crate::eval::{Metric, Metrics};
use crate::io::CodeVersion;
use crate::results::record::RunRecord;
use crate::sweep::plan::Plan;
use crate::sweep::store::{RunStatus, Store};
use anyhow::{Context, Result};
use polars::prelude::{Column, DataFrame, NamedFrom, Series};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedRun {
    pub run_id: String,
    /// One label per [`Collected::columns`] entry (`-` where the setting does not apply).
    pub labels: Vec<String>,
    pub seed: u64,
    /// Test metrics at the selected epoch, in percent.
    pub test: BTreeMap<Metric, f64>,
    /// The released code's selection (each metric's best test value over the epochs), where
    /// the run evaluated the test set after every epoch.
    pub released: Option<BTreeMap<Metric, f64>>,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub seconds_per_epoch: f64,
    /// Threads of the (last) process that trained the run.
    pub threads: usize,
    /// Peak resident memory of that process, MiB (absent in older records).
    pub peak_rss_mib: Option<f64>,
    pub protocol: String,
    /// How the reported epoch was selected (the record's `selection`).
    pub selection: String,
    /// Training targets per epoch (prefix samples) under the run's protocol, on `dataset`.
    pub n_train_targets: usize,
    pub dataset: String,
    /// Test instances the run's metrics average over.
    pub n_test: usize,
    /// Whether the run used every user of its dataset (no `max_users`).
    pub all_users: bool,
    pub code: CodeVersion,
    /// The code versions of the earlier processes of a resumed run (oldest first).
    pub earlier_code: Vec<CodeVersion>,
    /// The run's folder (for per-epoch curves).
    pub dir: PathBuf,
}

/// A run of the plan without a finished record.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingRun {
    pub run_id: String,
    pub labels: Vec<String>,
    pub seed: u64,
    /// `not run yet` or `failed: <reason>`.
    pub reason: String,
}

/// Every run of a grid: finished records and missing runs.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    /// Label columns: the grid's plan columns, with `dataset` first when the grid fixes it.
    pub columns: Vec<String>,
    pub runs: Vec<CollectedRun>,
    pub missing: Vec<MissingRun>,
}

impl Collected {
    /// Reads the records of every run of `plan` (all shards) from `store`.
    pub fn from_store(plan: &Plan, store: &Store) -> Result<Self> {
        let mut columns = plan.grid.columns.clone();
        let dataset_fixed = !columns.iter().any(|c| c == "dataset");
        if dataset_fixed {
            columns.insert(0, "dataset".into());
        }
        let mut out = Self { columns, ..Self::default() };
        for run in &plan.all {
            let mut labels = run.labels.clone();
            if dataset_fixed {
                labels.insert(0, run.config.dataset.to_string());
            }
            let dir = store.runs_dir().join(&run.run_id);
            if dir.join("metrics.json").is_file() {
                // A record that does not verify is an error here, not a missing run: a report
                // never leaves out a result it was given without saying why and stopping.
                out.runs.push(read_record(&dir, labels, run.config.seed)?);
                continue;
            }
            match store.status(&run.run_id) {
                RunStatus::Finished => out.runs.push(read_record(&dir, labels, run.config.seed)?),
                RunStatus::Failed(reason) => out.missing.push(MissingRun {
                    run_id: run.run_id.clone(),
                    labels,
                    seed: run.config.seed,
                    reason: format!("failed: {}", reason.lines().next().unwrap_or("")),
                }),
                RunStatus::Pending => out.missing.push(MissingRun {
                    run_id: run.run_id.clone(),
                    labels,
                    seed: run.config.seed,
                    reason: "not run yet".into(),
                }),
            }
        }
        Ok(out)
    }

    /// The runs that kept every epoch's test metrics over more than one epoch (a run with one
    /// epoch, as popularity, has nothing to select), each with its test metrics replaced by the
    /// released code's selection (each metric's best test value over the epochs); None when no
    /// run did.
    pub fn with_released_selection(&self) -> Option<Self> {
        let runs: Vec<CollectedRun> = self
            .runs
            .iter()
            .filter(|r| r.epochs_run > 1)
            .filter_map(|r| Some(CollectedRun { test: r.released.clone()?, ..r.clone() }))
            .collect();
        (!runs.is_empty()).then(|| Self { columns: self.columns.clone(), runs, missing: Vec::new() })
    }

    /// These records restricted to the runs (by id) of `other`.
    pub fn only_runs_of(&self, other: &Self) -> Self {
        let keep = |r: &&CollectedRun| other.runs.iter().any(|o| o.run_id == r.run_id);
        Self {
            columns: self.columns.clone(),
            runs: self.runs.iter().filter(keep).cloned().collect(),
            missing: Vec::new(),
        }
    }

    /// The index of a label column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The records as a DataFrame: label columns (str), `seed`, `run_id`, one f64 column per
    /// metric (`hr@5`, ...), `best_epoch`, `epochs_run`, `seconds_per_epoch`, `protocol`
    /// (unless a label column has the name), `commit`, `dirty`.
    pub fn frame(&self) -> Result<DataFrame> {
        let mut cols: Vec<Column> = Vec::new();
        for (c, name) in self.columns.iter().enumerate() {
            let v: Vec<&str> = self.runs.iter().map(|r| r.labels[c].as_str()).collect();
            cols.push(Series::new(name.as_str().into(), v).into());
        }
        cols.push(Series::new("seed".into(), self.runs.iter().map(|r| r.seed).collect::<Vec<u64>>()).into());
        cols.push(Series::new("run_id".into(), self.runs.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>()).into());
        for m in Metrics::all() {
            let v: Vec<Option<f64>> = self.runs.iter().map(|r| r.test.get(&m).copied()).collect();
            cols.push(Series::new(m.to_string().as_str().into(), v).into());
        }
        let ints = |f: fn(&CollectedRun) -> usize| self.runs.iter().map(|r| f(r) as u64).collect::<Vec<u64>>();
        cols.push(Series::new("best_epoch".into(), ints(|r| r.best_epoch)).into());
        cols.push(Series::new("epochs_run".into(), ints(|r| r.epochs_run)).into());
        cols.push(
            Series::new("seconds_per_epoch".into(), self.runs.iter().map(|r| r.seconds_per_epoch).collect::<Vec<_>>())
                .into(),
        );
        // A grid with a `protocol` axis has it as a label column already.
        if self.column("protocol").is_none() {
            cols.push(
                Series::new("protocol".into(), self.runs.iter().map(|r| r.protocol.as_str()).collect::<Vec<_>>())
                    .into(),
            );
        }
        cols.push(
            Series::new("commit".into(), self.runs.iter().map(|r| r.code.commit.as_str()).collect::<Vec<_>>()).into(),
        );
        cols.push(Series::new("dirty".into(), self.runs.iter().map(|r| r.code.dirty).collect::<Vec<_>>()).into());
        DataFrame::new_infer_height(cols).context("building the runs table")
    }
}

/// Reads `<dir>/metrics.json` ([`RunRecord`]).
pub fn read_record(dir: &Path, labels: Vec<String>, seed: u64) -> Result<CollectedRun> {
    let rec = RunRecord::read(dir)?;
    let percent = |m: &Metrics| Metrics::all().into_iter().map(|k| (k, m.get(k))).collect();
    Ok(CollectedRun {
        run_id: rec.run_id,
        labels,
        seed,
        test: percent(&rec.test),
        released: rec.released_selection.map(|r| r.into_iter().map(|(k, v)| (k, v.value)).collect()),
        best_epoch: rec.best_epoch,
        epochs_run: rec.epochs_run,
        seconds_per_epoch: rec.seconds_per_epoch,
        threads: rec.threads,
        peak_rss_mib: rec.peak_rss_mib,
        protocol: rec.protocol,
        selection: rec.selection,
        n_train_targets: rec.n_train_targets,
        dataset: rec.dataset,
        n_test: rec.n_test,
        all_users: rec.config.max_users.is_none(),
        code: rec.code_version,
        earlier_code: rec.resumed_from.into_iter().map(|s| s.code_version).collect(),
        dir: dir.to_path_buf(),
    })
}

/// A run's per-epoch table (`epochs.csv`) as named columns; empty cells are NaN.
pub fn read_epochs(dir: &Path) -> Result<BTreeMap<String, Vec<f64>>> {
    let path = dir.join("epochs.csv");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let mut out: BTreeMap<String, Vec<f64>> = header.iter().map(|h| (h.to_string(), Vec::new())).collect();
    for (i, line) in lines.enumerate() {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != header.len() {
            anyhow::bail!("{}:{}: {} cells, expected {}", path.display(), i + 2, cells.len(), header.len());
        }
        for (h, c) in header.iter().zip(cells) {
            let x = if c.is_empty() {
                f64::NAN
            } else {
                c.parse().with_context(|| format!("{}:{}: `{h}` = `{c}` is not a number", path.display(), i + 2))?
            };
            out.get_mut(*h).expect("header key").push(x);
        }
    }
    Ok(out)
}
