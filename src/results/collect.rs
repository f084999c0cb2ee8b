//! A grid's run records -> one table: a row per finished run with its plan labels, seed, test
//! metrics (at the selected epoch) and provenance; runs without a record are listed as missing
//! with the reason.

use super::CodeVersion;
use crate::eval::{Metric, Metrics};
use crate::sweep::plan::Plan;
use crate::sweep::store::{RunStatus, Store};
use anyhow::{Context, Result};
use polars::prelude::{Column, DataFrame, NamedFrom, Series};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub run_id: String,
    /// One label per [`Collected::columns`] entry (`-` where the setting does not apply).
    pub labels: Vec<String>,
    pub seed: u64,
    /// Test metrics at the selected epoch, in percent.
    pub test: BTreeMap<Metric, f64>,
    pub best_epoch: usize,
    pub epochs_run: usize,
    pub seconds_per_epoch: f64,
    pub protocol: String,
    pub code: CodeVersion,
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
    pub runs: Vec<RunRecord>,
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

    /// The index of a label column.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The records as a DataFrame: label columns (str), `seed`, `run_id`, one f64 column per
    /// metric (`hr@5`, ...), `best_epoch`, `epochs_run`, `seconds_per_epoch`, `protocol`,
    /// `commit`, `dirty`.
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
        let ints = |f: fn(&RunRecord) -> usize| self.runs.iter().map(|r| f(r) as u64).collect::<Vec<u64>>();
        cols.push(Series::new("best_epoch".into(), ints(|r| r.best_epoch)).into());
        cols.push(Series::new("epochs_run".into(), ints(|r| r.epochs_run)).into());
        cols.push(
            Series::new("seconds_per_epoch".into(), self.runs.iter().map(|r| r.seconds_per_epoch).collect::<Vec<_>>())
                .into(),
        );
        cols.push(
            Series::new("protocol".into(), self.runs.iter().map(|r| r.protocol.as_str()).collect::<Vec<_>>()).into(),
        );
        cols.push(
            Series::new("commit".into(), self.runs.iter().map(|r| r.code.commit.as_str()).collect::<Vec<_>>()).into(),
        );
        cols.push(Series::new("dirty".into(), self.runs.iter().map(|r| r.code.dirty).collect::<Vec<_>>()).into());
        DataFrame::new_infer_height(cols).context("building the runs table")
    }
}

/// Reads `<dir>/metrics.json`.
pub fn read_record(dir: &Path, labels: Vec<String>, seed: u64) -> Result<RunRecord> {
    let path = dir.join("metrics.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))?;
    let field = |k: &str| v.get(k).with_context(|| format!("{}: no `{k}` field", path.display()));
    let mut test = BTreeMap::new();
    for m in Metrics::all() {
        if let Some(x) = field("test")?.get(m.to_string()).and_then(|x| x.as_f64()) {
            test.insert(m, x);
        }
    }
    let uint = |k: &str| -> Result<usize> {
        field(k)?.as_u64().map(|x| x as usize).with_context(|| format!("{}: `{k}` is not a count", path.display()))
    };
    let code: CodeVersion = serde_json::from_value(field("code_version")?.clone())
        .with_context(|| format!("{}: bad `code_version`", path.display()))?;
    Ok(RunRecord {
        run_id: field("run_id")?.as_str().unwrap_or_default().to_string(),
        labels,
        seed,
        test,
        best_epoch: uint("best_epoch")?,
        epochs_run: uint("epochs_run")?,
        seconds_per_epoch: v.get("seconds_per_epoch").and_then(|x| x.as_f64()).unwrap_or(f64::NAN),
        protocol: v.get("protocol").and_then(|x| x.as_str()).unwrap_or("?").to_string(),
        code,
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
