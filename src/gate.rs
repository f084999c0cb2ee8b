//! The CI metric gate: a grid's summary against a committed baseline (`reports/baseline.toml`).
//!
//! The gate fails when
//! - a baseline cell's mean falls below `baseline - tolerance`, or the cell has no runs;
//! - a `[[beat]]` rule breaks: in some dataset, the model's mean does not exceed the
//!   reference's mean by `margin`.
//!
//! `kdsr gate <grid> --write-baseline` writes the file from the current summary: one cell per
//! group and gate metric with `tolerance = max(rel * mean, k * std, floor)`, and a beat rule
//! for each group that beats the grid's report reference by more than the tolerances of both.

use crate::analysis::aggregate::Summary;
use crate::eval::Metric;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// A floor for one metric of one cell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    pub baseline: f64,
    pub tolerance: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellEntry {
    /// The group's labels, by plan column.
    pub labels: BTreeMap<String, String>,
    pub metrics: BTreeMap<Metric, Bound>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeatEntry {
    /// Labels that pick the model's groups: all of a group's labels when the baseline was
    /// written (so a rule holds where it held then: SASRec beats popularity on Toys, say).
    pub model: BTreeMap<String, String>,
    /// The labels that replace them to find the reference group.
    pub reference: BTreeMap<String, String>,
    pub metric: Metric,
    #[serde(default)]
    pub margin: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub grid: String,
    /// How the file was produced.
    pub command: String,
    pub commit: String,
    #[serde(default)]
    pub cell: Vec<CellEntry>,
    #[serde(default)]
    pub beat: Vec<BeatEntry>,
}

/// How tolerances are set when writing a baseline.
#[derive(Debug, Clone, Copy)]
pub struct TolerancePolicy {
    pub rel: f64,
    pub k_std: f64,
    pub floor: f64,
}

impl Default for TolerancePolicy {
    fn default() -> Self {
        Self { rel: 0.15, k_std: 2.0, floor: 0.05 }
    }
}

/// One line of the gate's table.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub what: String,
    pub value: Option<f64>,
    pub floor: f64,
    pub ok: bool,
}

impl Baseline {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::error::bad_input(format!("{}: cannot read the baseline: {e}", path.display())))?;
        toml::from_str(&text).map_err(|e| {
            let line = e.span().map_or(0, |s| text[..s.start].matches('\n').count() + 1);
            crate::error::bad_input(format!("{}:{line}: {}", path.display(), e.message().trim()))
        })
    }

    /// The baseline of `summary`: every group, `metrics`, tolerances by `policy`; beat rules
    /// against the summary's reference where the lead exceeds both tolerances.
    pub fn from_summary(
        summary: &Summary,
        metrics: &[Metric],
        policy: TolerancePolicy,
        grid: &str,
        command: &str,
    ) -> Self {
        let labels_of = |l: &[String]| -> BTreeMap<String, String> {
            summary.columns.iter().cloned().zip(l.iter().cloned()).collect()
        };
        let tol = |mean: f64, std: f64| {
            let s = if std.is_finite() { policy.k_std * std } else { 0.0 };
            (policy.rel * mean).max(s).max(policy.floor)
        };
        let mut cell = Vec::new();
        for g in &summary.groups {
            let mut m = BTreeMap::new();
            for &metric in metrics {
                if let Some(s) = g.stats.get(&metric) {
                    m.insert(metric, Bound { baseline: round4(s.mean), tolerance: round4(tol(s.mean, s.std)) });
                }
            }
            cell.push(CellEntry { labels: labels_of(&g.labels), metrics: m });
        }
        let mut beat: Vec<BeatEntry> = Vec::new();
        if let Some(r) = &summary.reference {
            let ref_map: BTreeMap<String, String> =
                r.labels.iter().map(|(c, l)| (summary.columns[*c].clone(), l.clone())).collect();
            for g in summary.groups.iter().filter(|g| !r.is(&g.labels)) {
                let Some(rg) = summary.find(&r.applied(&g.labels)) else { continue };
                for &metric in metrics {
                    let (Some(a), Some(b)) = (g.stats.get(&metric), rg.stats.get(&metric)) else { continue };
                    let rule =
                        BeatEntry { model: labels_of(&g.labels), reference: ref_map.clone(), metric, margin: 0.0 };
                    if a.mean - b.mean > tol(a.mean, a.std) + tol(b.mean, b.std) && !beat.contains(&rule) {
                        beat.push(rule);
                    }
                }
            }
        }
        Self {
            grid: grid.into(),
            command: command.into(),
            commit: crate::io::CodeVersion::current().commit,
            cell,
            beat,
        }
    }

    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string(self).context("serialising the baseline")?;
        Ok(format!(
            "# The CI metric gate's baseline (see src/gate.rs): `just gate` fails when a cell's mean falls\n\
             # below baseline - tolerance, or a [[beat]] rule breaks in some dataset.\n\
             # Produced by: {}\n\n{body}",
            self.command
        ))
    }

    /// Every check of the gate against `summary`.
    pub fn check(&self, summary: &Summary) -> Vec<Check> {
        let mut out = Vec::new();
        let find = |want: &BTreeMap<String, String>| {
            summary.groups.iter().find(|g| {
                want.len() == summary.columns.len()
                    && summary.columns.iter().zip(&g.labels).all(|(c, l)| want.get(c) == Some(l))
            })
        };
        let show = |l: &BTreeMap<String, String>| l.values().cloned().collect::<Vec<_>>().join(" / ");
        for c in &self.cell {
            let g = find(&c.labels);
            for (m, b) in &c.metrics {
                let value = g.and_then(|g| g.stats.get(m)).map(|s| s.mean);
                let floor = b.baseline - b.tolerance;
                out.push(Check {
                    what: format!("{} {m} (baseline {:.3})", show(&c.labels), b.baseline),
                    value,
                    floor,
                    ok: value.is_some_and(|v| v >= floor),
                });
            }
        }
        for rule in &self.beat {
            let matches = |g: &&crate::analysis::aggregate::Group| {
                rule.model
                    .iter()
                    .all(|(k, v)| summary.columns.iter().position(|c| c == k).is_some_and(|i| &g.labels[i] == v))
            };
            let mut any = false;
            for g in summary.groups.iter().filter(matches) {
                any = true;
                let mut ref_labels = g.labels.clone();
                for (k, v) in &rule.reference {
                    if let Some(i) = summary.columns.iter().position(|c| c == k) {
                        ref_labels[i] = v.clone();
                    }
                }
                let value = g.stats.get(&rule.metric).map(|s| s.mean);
                let floor =
                    summary.find(&ref_labels).and_then(|r| r.stats.get(&rule.metric)).map(|s| s.mean + rule.margin);
                out.push(Check {
                    what: format!("{} beats {} on {}", g.labels.join(" / "), ref_labels.join(" / "), rule.metric),
                    value,
                    floor: floor.unwrap_or(f64::NAN),
                    ok: matches!((value, floor), (Some(v), Some(f)) if v > f),
                });
            }
            if !any {
                out.push(Check {
                    what: format!("{} has runs", show(&rule.model)),
                    value: None,
                    floor: f64::NAN,
                    ok: false,
                });
            }
        }
        out
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The gate's table: one line per check, failures marked.
pub fn render(checks: &[Check]) -> String {
    let w = checks.iter().map(|c| c.what.chars().count()).max().unwrap_or(5).max(5);
    let mut out = format!("{:<w$}  {:>9}  {:>9}  result\n", "check", "value", "floor");
    for c in checks {
        let v = c.value.map_or("missing".into(), |v| format!("{v:.4}"));
        let f = if c.floor.is_finite() { format!("{:.4}", c.floor) } else { "missing".into() };
        let _ = writeln!(out, "{:<w$}  {v:>9}  {f:>9}  {}", c.what, if c.ok { "ok" } else { "FAIL" });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::aggregate::{Group, Reference, Stat};

    fn summary(sasrec: f64, pop: f64) -> Summary {
        let m: Metric = "ndcg@20".parse().unwrap();
        let g = |model: &str, mean: f64| Group {
            labels: vec!["beauty".into(), model.into()],
            seeds: vec![1, 2],
            stats: BTreeMap::from([(m, Stat { mean, std: 0.05, n: 2, ci95: 0.4, p: None })]),
        };
        Summary {
            columns: vec!["dataset".into(), "model".into()],
            groups: vec![g("sasrec", sasrec), g("pop", pop)],
            reference: Some(Reference::one(1, "pop")),
        }
    }

    #[test]
    fn gate_passes_on_its_baseline_and_fails_on_a_planted_regression() {
        let m: Metric = "ndcg@20".parse().unwrap();
        let base = Baseline::from_summary(&summary(3.0, 1.0), &[m], TolerancePolicy::default(), "ci", "test");
        assert_eq!(base.beat.len(), 1, "sasrec beats pop by far more than the tolerances");
        let text = base.to_toml().unwrap();
        let back: Baseline = toml::from_str(&text).unwrap();
        assert_eq!(back, base);
        assert!(base.check(&summary(3.0, 1.0)).iter().all(|c| c.ok));
        // Within tolerance (15% of 3.0 = 0.45).
        assert!(base.check(&summary(2.7, 1.0)).iter().all(|c| c.ok));
        // Planted regression: SASRec loses 30%.
        let checks = base.check(&summary(2.1, 1.0));
        let failed: Vec<&Check> = checks.iter().filter(|c| !c.ok).collect();
        assert_eq!(failed.len(), 1, "{}", render(&checks));
        assert!(failed[0].what.contains("sasrec"));
        // SASRec no longer beats pop (pop rose within its own tolerance is not enough: both fail).
        let checks = base.check(&summary(3.0, 3.2));
        assert!(checks.iter().any(|c| !c.ok && c.what.contains("beats")), "{}", render(&checks));
        // A missing cell fails.
        let mut s = summary(3.0, 1.0);
        s.groups.remove(0);
        assert!(base.check(&s).iter().any(|c| !c.ok && c.value.is_none()));
    }
}
