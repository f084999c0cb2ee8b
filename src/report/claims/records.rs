//! The records a claim reads: every committed run record under `<out>/*/runs/` (trial folders
//! `*.trial` excluded), indexed by configuration, and the runs of one side of a comparison.
//!
//! Two records have the *same configuration* when their resolved `RunConfig`s are equal once
//! the seed and the settings that only change what is recorded are dropped
//! ([`RECORD_ONLY`]: ranking the test set every epoch, the drift probe). A side of a
//! comparison is named by a grid and its labels; its records are every record, in any grid,
//! with that side's configuration, one value per seed = the mean over the distinct runs (run
//! ids) of that seed. The same run copied into several grids counts once; the same
//! configuration and seed trained again (another grid, another code version) is a replicate,
//! averaged into its seed and reported per grid by [`super::Comparison::sources`].

use super::spec::{Compare, Measure, Selector};
use crate::analysis::collect::{read_epochs, Collected};
use crate::results::record::RunRecord;
use crate::sweep::plan::Plan;
use crate::sweep::store::Store;
use crate::sweep::Scale;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Settings that do not change training, only what a run records (dotted `RunConfig` paths).
pub const RECORD_ONLY: [&str; 2] = ["train.test_every_epoch", "modality.drift"];

/// One committed run record.
#[derive(Debug, Clone)]
pub struct Rec {
    pub grid: String,
    pub run_id: String,
    pub seed: u64,
    /// The commit (12 hex digits, `+dirty` for a dirty tree) of the last training process.
    pub code: String,
    /// The configuration without the seed and [`RECORD_ONLY`] (canonical JSON).
    pub key: String,
    pub dir: PathBuf,
    pub test: crate::eval::Metrics,
}

/// Every committed record.
#[derive(Debug, Default)]
pub struct Index {
    pub recs: Vec<Rec>,
}

impl Index {
    /// Reads `<out>/<grid>/runs/<run_id>/metrics.json` for every grid folder but `*.trial`.
    pub fn load(out: &Path) -> Result<Self> {
        let mut recs = Vec::new();
        let listing = |d: &Path| -> Result<Vec<PathBuf>> {
            let mut v: Vec<PathBuf> = std::fs::read_dir(d)
                .with_context(|| format!("listing {}", d.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect();
            v.sort();
            Ok(v)
        };
        for grid_dir in listing(out)? {
            let grid = grid_dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let runs = grid_dir.join("runs");
            if grid.ends_with(".trial") || !runs.is_dir() {
                continue;
            }
            for dir in listing(&runs)? {
                if !dir.join("metrics.json").is_file() {
                    continue;
                }
                let r = RunRecord::read(&dir)?;
                let code = format!(
                    "{}{}",
                    &r.code_version.commit[..r.code_version.commit.len().min(12)],
                    if r.code_version.dirty { "+dirty" } else { "" }
                );
                let key = config_key(&r.config)?;
                recs.push(Rec { grid: grid.clone(), run_id: r.run_id, seed: r.seed, code, key, dir, test: r.test });
            }
        }
        Ok(Self { recs })
    }
}

/// The canonical configuration key of [`Rec::key`].
pub fn config_key(config: &crate::config::RunConfig) -> Result<String> {
    let mut v = serde_json::to_value(config).context("serialising a run configuration")?;
    if let Some(o) = v.as_object_mut() {
        o.remove("seed");
    }
    for path in RECORD_ONLY {
        let (parent, last) = path.rsplit_once('.').expect("dotted path");
        if let Some(o) = parent.split('.').try_fold(&mut v, |v, k| v.get_mut(k)).and_then(|v| v.as_object_mut()) {
            o.remove(last);
        }
    }
    Ok(serde_json::to_string(&v)?)
}

/// The records of one side of a comparison.
#[derive(Debug, Clone)]
pub struct Side {
    /// The grid's labels of the side, `column = label`.
    pub describe: String,
    /// Distinct runs (by run id) with the side's configuration, from every grid.
    pub runs: Vec<Rec>,
    /// Per run id, the grids holding it.
    pub grids_of: BTreeMap<String, BTreeSet<String>>,
}

impl Side {
    /// Value of `measure` per seed: the mean over the side's runs of that seed that have it
    /// (a run without the column or epoch is left out).
    pub fn per_seed(&self, measure: &Measure, only_grid: Option<&str>) -> Result<BTreeMap<u64, f64>> {
        let mut sums: BTreeMap<u64, (f64, usize)> = BTreeMap::new();
        for r in &self.runs {
            if only_grid.is_some_and(|g| !self.grids_of[&r.run_id].contains(g)) {
                continue;
            }
            if let Some(x) = value(r, measure)? {
                let e = sums.entry(r.seed).or_default();
                e.0 += x;
                e.1 += 1;
            }
        }
        Ok(sums.into_iter().map(|(s, (sum, n))| (s, sum / n as f64)).collect())
    }

    /// The grids that hold at least one of the side's runs.
    pub fn grids(&self) -> BTreeSet<String> {
        self.grids_of.values().flatten().cloned().collect()
    }
}

/// One run's value of a measure (None: the run's `epochs.csv` lacks the column or epoch, or
/// holds an empty cell there).
pub fn value(r: &Rec, measure: &Measure) -> Result<Option<f64>> {
    Ok(match measure {
        Measure::Test(m) => Some(r.test.get(*m)),
        Measure::Epoch { column, epoch } => {
            let table = read_epochs(&r.dir)?;
            let (Some(epochs), Some(col)) = (table.get("epoch"), table.get(column)) else { return Ok(None) };
            epochs.iter().position(|&e| e == *epoch as f64).map(|i| col[i]).filter(|x| x.is_finite())
        }
    })
}

/// The paper's side of a reproduction: for every seed of `treatment`, a stand-in run whose
/// test metrics are the paper's values of the cell `tags` in `table` (so the paired test of a
/// comparison is a one-sample test against the published number). An error names the cell
/// and measure the table lacks.
pub fn paper_side(
    table: crate::report::spec::PaperTable,
    tags: &[String],
    measures: &[Measure],
    treatment: &Side,
) -> std::result::Result<Side, String> {
    let mut test = crate::eval::Metrics::default();
    for m in measures {
        let Measure::Test(metric) = m else { return Err(format!("{m}: a reproduction compares test metrics")) };
        let mut cell = tags.to_vec();
        cell.push(metric.to_string());
        let v = crate::report::paper::lookup(table, &cell, tags)
            .ok_or_else(|| format!("the paper's table has no single value for {} ({metric})", tags.join(", ")))?;
        test.set(*metric, v);
    }
    let seeds: BTreeSet<u64> = treatment.runs.iter().map(|r| r.seed).collect();
    let runs: Vec<Rec> = seeds
        .into_iter()
        .map(|seed| Rec {
            grid: String::new(),
            run_id: format!("paper-{seed}"),
            seed,
            code: "paper".into(),
            key: String::new(),
            dir: PathBuf::new(),
            test: test.clone(),
        })
        .collect();
    let grids_of = runs.iter().map(|r| (r.run_id.clone(), BTreeSet::new())).collect();
    Ok(Side { describe: format!("the paper's value ({})", tags.join(", ")), runs, grids_of })
}

/// The grids' collected records, loaded once each.
#[derive(Default)]
pub struct Grids {
    loaded: BTreeMap<String, Collected>,
}

impl Grids {
    /// The records of `grid` (its plan at full scale, its store under `out`).
    pub fn get(&mut self, grid: &str, out: &Path) -> Result<&Collected> {
        if !self.loaded.contains_key(grid) {
            let plan = Plan::build(grid, Scale::default(), None)?;
            let c = Collected::from_store(&plan, &Store::for_plan(out, &plan))?;
            self.loaded.insert(grid.to_string(), c);
        }
        Ok(&self.loaded[grid])
    }
}

/// Resolves one side: the single group of `cmp.grid` whose labels match `sel`, then every
/// record of that group's configuration. `err` builds a bad-input error at the comparison.
pub fn side(
    cmp: &Compare,
    sel: &Selector,
    grids: &mut Grids,
    index: &Index,
    out: &Path,
    err: &dyn Fn(String) -> anyhow::Error,
) -> Result<Side> {
    let c = grids.get(&cmp.grid, out).map_err(|e| err(format!("grid `{}`: {e:#}", cmp.grid)))?;
    let mut want = Vec::new();
    for (key, value) in sel {
        let col = c.column(key).ok_or_else(|| {
            err(format!("`{key}` is not a plan column of grid `{}` (columns: {})", cmp.grid, c.columns.join(", ")))
        })?;
        want.push((col, crate::grid::label(value)));
    }
    let describe = want.iter().map(|(col, l)| format!("{} = {l}", c.columns[*col])).collect::<Vec<_>>().join(", ");
    let all = c.runs.iter().map(|r| &r.labels).chain(c.missing.iter().map(|m| &m.labels));
    let groups: BTreeSet<&Vec<String>> = all.filter(|l| want.iter().all(|(col, v)| l[*col] == *v)).collect();
    match groups.len() {
        0 => return Err(err(format!("no run of grid `{}` has {describe}", cmp.grid))),
        1 => {}
        n => {
            let list: Vec<String> = groups.iter().map(|l| l.join(" / ")).collect();
            return Err(err(format!(
                "{describe} matches {n} groups of grid `{}` ({}): name more columns ({})",
                cmp.grid,
                list.join("; "),
                c.columns.join(", ")
            )));
        }
    }
    let labels = groups.into_iter().next().expect("one group");
    let ids: BTreeSet<&str> = c.runs.iter().filter(|r| &r.labels == labels).map(|r| r.run_id.as_str()).collect();
    let keys: BTreeSet<&str> = index
        .recs
        .iter()
        .filter(|r| r.grid == cmp.grid && ids.contains(r.run_id.as_str()))
        .map(|r| r.key.as_str())
        .collect();
    let mut runs: Vec<Rec> = Vec::new();
    let mut grids_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in index.recs.iter().filter(|r| keys.contains(r.key.as_str())) {
        grids_of.entry(r.run_id.clone()).or_default().insert(r.grid.clone());
        if !runs.iter().any(|x| x.run_id == r.run_id) {
            runs.push(r.clone());
        }
    }
    Ok(Side { describe, runs, grids_of })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_only_settings_do_not_change_the_key() {
        use crate::config::RunConfig;
        use crate::data::DatasetRef;
        let mut a =
            RunConfig::new(DatasetRef::Named(crate::data::DatasetId::Beauty), crate::model::ModelKind::Sasrec, 1);
        a.modality = Some(a.default_modality());
        let k = config_key(&a).unwrap();
        a.seed += 1;
        a.train.test_every_epoch = !a.train.test_every_epoch;
        a.modality.as_mut().unwrap().drift.pairs += 1;
        assert_eq!(config_key(&a).unwrap(), k, "seed and test_every_epoch are dropped");
        a.train.lr *= 2.0;
        assert_ne!(config_key(&a).unwrap(), k, "a training setting is kept");
    }
}
