//! A sweep's runs: the grid expanded and resolved, scaled down if asked, then sharded.

use super::cost::{self, Basis, Estimate};
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

    /// Loads `grid_arg` and builds the plan at `budget` (`quick`: the grid's `[trial]` caps)
    /// with explicit caps on top.
    pub fn scaled(
        grid_arg: &str,
        budget: super::Budget,
        caps: (Option<usize>, Option<usize>, Option<usize>),
        shard: Option<Shard>,
    ) -> Result<Self> {
        let grid = Grid::load(&grid::resolve_path(grid_arg)?)?;
        let (epochs, users, seeds) = caps;
        let scale = Scale::new(budget, epochs, users, seeds, grid.trial)?;
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

    /// The text `kdsr sweep plan` prints: a summary, the cost, then one row per run with its
    /// core-hours (`costs`: one estimate per run of [`Plan::runs`], see [`cost`]).
    pub fn render(&self, store: &Store, costs: &[Estimate]) -> String {
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
        out.push_str(&cost_summary(&self.runs, &statuses, costs));
        let _ = writeln!(out);

        let mut header: Vec<String> = vec!["#".into()];
        header.extend(g.columns.iter().cloned());
        header.extend(["seed".into(), "status".into(), "core-h".into(), "run_id".into()]);
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
            let core_h = match costs.get(i) {
                Some(Estimate { core_seconds: Some(c), basis }) => {
                    format!("{}{}", cost::hours(*c), if *basis == Basis::Record { "" } else { " ~" })
                }
                _ => "?".into(),
            };
            row.extend([r.config.seed.to_string(), status, core_h, r.run_id.clone()]);
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

/// The cost lines of `kdsr sweep plan` and `sweep run`: what the finished runs took, what the
/// rest will take (with what each estimate rests on), and the costliest model variants left.
pub fn cost_summary(runs: &[ResolvedRun], statuses: &[RunStatus], costs: &[Estimate]) -> String {
    let mut out = String::new();
    if costs.len() != runs.len() {
        return out;
    }
    let mut done = 0.0;
    let mut left = 0.0;
    let mut unknown = 0;
    let mut bases: std::collections::BTreeMap<Basis, usize> = Default::default();
    let mut by_variant: std::collections::BTreeMap<String, f64> = Default::default();
    for ((r, s), e) in runs.iter().zip(statuses).zip(costs) {
        match (s, e.core_seconds) {
            (RunStatus::Finished, c) => done += c.unwrap_or(0.0),
            (_, Some(c)) => {
                left += c;
                *bases.entry(e.basis).or_default() += 1;
                *by_variant.entry(r.config.variant_name()).or_default() += c;
            }
            (_, None) => unknown += 1,
        }
    }
    let n_done = statuses.iter().filter(|s| **s == RunStatus::Finished).count();
    let _ = write!(out, "cost: {n_done} finished runs took {} core-h", cost::hours(done));
    let n_left = runs.len() - n_done;
    if n_left == 0 {
        let _ = writeln!(out);
        return out;
    }
    let mut basis: Vec<String> = bases.iter().map(|(b, n)| format!("{n} from {}", b.describe())).collect();
    if unknown > 0 {
        basis.push(format!("{unknown} not estimated: no record of the model"));
    }
    let _ = writeln!(out, "; the {n_left} left: about {} core-h ({})", cost::hours(left), basis.join(", "));
    let mut top: Vec<(String, f64)> = by_variant.into_iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<String> = top.iter().take(5).map(|(v, c)| format!("{v} {}", cost::hours(*c))).collect();
    if !top.is_empty() {
        let _ = writeln!(out, "  left, core-h by model: {}", top.join(", "));
    }
    out
}
