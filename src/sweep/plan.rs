//! A sweep's runs: the grid expanded and resolved, scaled down if asked, then sharded.

use super::store::{RunStatus, Store};
use super::{Scale, Shard};
use crate::grid::{self, Grid, ResolvedRun};
use anyhow::Result;
use std::collections::HashSet;
use std::fmt::Write as _;

/// The runs one `kdsr sweep` invocation is responsible for.
#[derive(Debug, Clone)]
pub struct Plan {
    pub grid: Grid,
    pub scale: Scale,
    pub shard: Option<Shard>,
    /// Every run of the (scaled) grid, in plan order.
    pub all: Vec<ResolvedRun>,
    /// This shard's runs (all of them without a shard), in plan order.
    pub runs: Vec<ResolvedRun>,
}

impl Plan {
    /// Loads `grid_arg` (a name under experiments/ or a path) and builds the plan.
    pub fn build(grid_arg: &str, scale: Scale, shard: Option<Shard>) -> Result<Self> {
        let grid = Grid::load(&grid::resolve_path(grid_arg)?)?;
        Self::from_grid(grid, scale, shard)
    }

    pub fn from_grid(grid: Grid, scale: Scale, shard: Option<Shard>) -> Result<Self> {
        let resolved = grid::resolve(&grid, &grid::expand(&grid)?)?;
        let mut seen = HashSet::new();
        let mut all = Vec::new();
        for r in resolved {
            let Some(config) = scale.apply(r.seed_index, &r.config) else { continue };
            let run_id = config.run_id();
            if seen.insert(run_id.clone()) {
                all.push(ResolvedRun { config, run_id, ..r });
            }
        }
        let runs = match shard {
            None => all.clone(),
            Some(s) => {
                let ids: Vec<&str> = all.iter().map(|r| r.run_id.as_str()).collect();
                let mask = s.mask(&ids);
                all.iter().zip(mask).filter(|(_, keep)| *keep).map(|(r, _)| r.clone()).collect()
            }
        };
        Ok(Self { grid, scale, shard, all, runs })
    }

    /// Dataset files (`seq:` / `csv:`) of this shard's runs that do not exist now: their runs
    /// will fail unless the file appears before they start (a failed run is retried by the
    /// next `sweep run`).
    pub fn missing_files(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for r in &self.runs {
            let ds = &r.config.dataset;
            if let crate::data::DatasetRef::SequenceFile(p) | crate::data::DatasetRef::RatingsCsv(p) = ds {
                if seen.insert(p.clone()) && !p.is_file() {
                    out.push(format!("dataset `{ds}`: no such file {}; its runs will fail", p.display()));
                }
            }
        }
        out
    }

    /// The label of each plan column for `run`, as `key=value` pairs (n/a columns left out).
    pub fn point(&self, run: &ResolvedRun) -> Vec<(String, String)> {
        self.grid.columns.iter().cloned().zip(run.labels.iter().cloned()).filter(|(_, l)| l != "-").collect()
    }

    /// A one-line description of a run: `model=sasrec train.lr=0.001 seed=2023`.
    pub fn describe(&self, run: &ResolvedRun) -> String {
        let mut parts: Vec<String> = self.point(run).into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.push(format!("seed={}", run.config.seed));
        parts.join(" ")
    }

    /// The text `kdsr sweep plan` prints: a summary, then one row per run.
    pub fn render(&self, store: &Store) -> String {
        let g = &self.grid;
        let mut out = String::new();
        let _ = writeln!(out, "grid {} ({})", g.name, g.source.path.display());
        if let Some(d) = &g.description {
            let _ = writeln!(out, "  {}", d.trim());
        }
        let axes: Vec<String> = g.axes.iter().map(|a| format!("{} ({})", a.key, a.values.len())).collect();
        let _ = writeln!(
            out,
            "axes: {}; seeds: {}; {} include, {} exclude rules",
            if axes.is_empty() { "none".into() } else { axes.join(" x ") },
            g.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
            g.include.len(),
            g.exclude.len()
        );
        if !self.scale.is_full() {
            let _ = writeln!(out, "scaled down: {} (records kept apart from the full grid's)", self.scale.describe());
        }
        let statuses: Vec<RunStatus> = self.runs.iter().map(|r| store.status(&r.run_id)).collect();
        let count = |f: fn(&RunStatus) -> bool| statuses.iter().filter(|s| f(s)).count();
        let (done, failed) =
            (count(|s| matches!(s, RunStatus::Finished)), count(|s| matches!(s, RunStatus::Failed(_))));
        let shard = match self.shard {
            Some(s) => format!(" (shard {s} of {} runs)", self.all.len()),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "{} runs{shard}: {done} finished, {failed} failed, {} to run",
            self.runs.len(),
            self.runs.len() - done
        );
        let _ = writeln!(out, "records: {}", store.runs_dir().display());
        for w in self.missing_files() {
            let _ = writeln!(out, "warning: {w}");
        }
        let _ = writeln!(out);

        let mut header: Vec<String> = vec!["#".into()];
        header.extend(g.columns.iter().cloned());
        header.extend(["seed".into(), "status".into(), "run_id".into()]);
        let mut rows = vec![header];
        let saved = store.saved_epochs();
        for (i, (r, s)) in self.runs.iter().zip(&statuses).enumerate() {
            let mut row = vec![(i + 1).to_string()];
            row.extend(r.labels.iter().cloned());
            let status = match (s, saved.get(&r.run_id)) {
                (RunStatus::Finished, _) | (_, None) => s.short().to_string(),
                (_, Some((e, false))) => format!("{} (epoch {e} saved)", s.short()),
                (_, Some((e, true))) => format!("{} (epoch {e} saved by kdsr train, which resumes it)", s.short()),
            };
            row.extend([r.config.seed.to_string(), status, r.run_id.clone()]);
            rows.push(row);
        }
        let widths: Vec<usize> =
            (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
        for row in rows {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        out
    }
}
