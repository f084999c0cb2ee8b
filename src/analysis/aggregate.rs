//! Seed aggregation: runs grouped by every label column (all axes but the seed) ->
//! mean, sample std, n and a 95% confidence interval per metric, and a paired t-test of each
//! group against a reference group over the seeds they share.
//!
//! - `std` is the sample standard deviation (ddof = 1); NaN when n < 2.
//! - `ci95` is the half-width `t_{0.975, n-1} * std / sqrt(n)` (Student t; NaN when n < 2).
//! - `p` is the two-sided paired t-test p-value of `d_s = x_s - ref_s` over the shared seeds s:
//!   `t = mean(d) / (std(d) / sqrt(n))`, `n - 1` degrees of freedom (needs n >= 2 shared
//!   seeds; a constant nonzero difference gives p = 0, no difference at all p = 1).

use super::collect::Collected;
use crate::eval::{Metric, Metrics};
use anyhow::{Context, Result};
use polars::prelude::{Column, DataFrame, NamedFrom, Series};
use statrs::distribution::{ContinuousCDF, StudentsT};
use std::collections::BTreeMap;

/// The reference of the paired tests: a group's reference is the group with its labels, except
/// in the reference's columns, where it has the reference's labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// `(label column, label)` pairs, at least one.
    pub labels: Vec<(usize, String)>,
}

impl Reference {
    /// The reference of one column.
    pub fn one(column: usize, label: impl Into<String>) -> Self {
        Self { labels: vec![(column, label.into())] }
    }

    /// Whether a group with `labels` is a reference group.
    pub fn is(&self, labels: &[String]) -> bool {
        self.labels.iter().all(|(c, l)| labels[*c] == *l)
    }

    /// Whether the reference sets label column `column`.
    pub fn covers(&self, column: usize) -> bool {
        self.labels.iter().any(|(c, _)| *c == column)
    }

    /// `labels` with the reference's put in: the reference group of a group with `labels`.
    pub fn applied(&self, labels: &[String]) -> Vec<String> {
        let mut out = labels.to_vec();
        for (c, l) in &self.labels {
            out[*c] = l.clone();
        }
        out
    }

    /// `model = sasrec, modality.mode unset` for label columns `columns`.
    pub fn describe(&self, columns: &[String]) -> String {
        let one = |(c, l): &(usize, String)| match l.as_str() {
            "-" => format!("{} unset", columns[*c]),
            _ => format!("{} = {l}", columns[*c]),
        };
        self.labels.iter().map(one).collect::<Vec<_>>().join(", ")
    }
}

/// One metric of one group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stat {
    pub mean: f64,
    pub std: f64,
    pub n: usize,
    pub ci95: f64,
    /// Paired test against the reference group (None: no reference, it is the reference, or
    /// fewer than 2 shared seeds).
    pub p: Option<f64>,
}

/// The runs sharing every label.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub labels: Vec<String>,
    pub seeds: Vec<u64>,
    pub stats: BTreeMap<Metric, Stat>,
}

/// The aggregated grid.
#[derive(Debug, Clone)]
pub struct Summary {
    pub columns: Vec<String>,
    /// In plan order (first appearance).
    pub groups: Vec<Group>,
    pub reference: Option<Reference>,
}

impl Summary {
    /// Groups by the label columns with Polars and computes the statistics above.
    pub fn compute(c: &Collected, reference: Option<Reference>) -> Result<Self> {
        let mut groups = Vec::new();
        if !c.runs.is_empty() {
            let df = c.frame()?;
            let metrics: Vec<String> = Metrics::all().iter().map(Metric::to_string).collect();
            #[allow(deprecated)] // polars' eager aggregations: the lazy API pulls a cloud stack
            let (means, stds) = {
                let g = df.group_by_stable(c.columns.iter().map(String::as_str)).context("grouping runs")?;
                let sel = g.select(metrics.iter().map(String::as_str));
                (sel.mean().context("group means")?, sel.std(1).context("group stds")?)
            };
            for row in 0..means.height() {
                let labels: Vec<String> = c
                    .columns
                    .iter()
                    .map(|name| str_at(&means, name, row))
                    .collect::<Result<_>>()
                    .context("reading group labels")?;
                let seeds: Vec<u64> = c.runs.iter().filter(|r| r.labels == labels).map(|r| r.seed).collect();
                let mut stats = BTreeMap::new();
                for m in Metrics::all() {
                    let mean = f64_at(&means, &format!("{m}_mean"), row)?;
                    let std = f64_at(&stds, &format!("{m}_agg_std"), row)?;
                    let n = c.runs.iter().filter(|r| r.labels == labels && r.test.contains_key(&m)).count();
                    stats.insert(m, Stat { mean, std, n, ci95: ci95(std, n), p: None });
                }
                groups.push(Group { labels, seeds, stats });
            }
        }
        if let Some(r) = &reference {
            for g in &mut groups {
                if r.is(&g.labels) {
                    continue;
                }
                let mut ref_labels = r.applied(&g.labels);
                if !c.runs.iter().any(|x| x.labels == ref_labels) {
                    // A reference that leaves other columns unset (an include such as plain
                    // SASRec next to SASRec + CDL with a quantizer): the one group with the
                    // reference's labels that agrees with this group wherever it sets a label.
                    let fits = |l: &[String]| {
                        r.is(l)
                            && l.iter().zip(&g.labels).enumerate().all(|(i, (a, b))| r.covers(i) || a == b || a == "-")
                    };
                    let mut cands: Vec<&Vec<String>> = c.runs.iter().map(|x| &x.labels).filter(|l| fits(l)).collect();
                    cands.sort();
                    cands.dedup();
                    if cands.len() == 1 {
                        ref_labels = cands[0].clone();
                    }
                }
                for (m, stat) in g.stats.iter_mut() {
                    let pairs: Vec<(f64, f64)> = c
                        .runs
                        .iter()
                        .filter(|x| x.labels == g.labels)
                        .filter_map(|x| {
                            let y = c.runs.iter().find(|y| y.labels == ref_labels && y.seed == x.seed)?;
                            Some((*x.test.get(m)?, *y.test.get(m)?))
                        })
                        .collect();
                    stat.p = paired_t_test(&pairs);
                }
            }
        }
        Ok(Self { columns: c.columns.clone(), groups, reference })
    }

    /// The group with exactly these labels.
    pub fn find(&self, labels: &[String]) -> Option<&Group> {
        self.groups.iter().find(|g| g.labels == labels)
    }

    /// One row per group: labels, `n`, `seeds`, then `<metric>_{mean,std,ci95,p}`.
    pub fn frame(&self) -> Result<DataFrame> {
        let mut cols: Vec<Column> = Vec::new();
        for (c, name) in self.columns.iter().enumerate() {
            let v: Vec<&str> = self.groups.iter().map(|g| g.labels[c].as_str()).collect();
            cols.push(Series::new(name.as_str().into(), v).into());
        }
        let n: Vec<u64> = self.groups.iter().map(|g| g.seeds.len() as u64).collect();
        cols.push(Series::new("n".into(), n).into());
        let seeds: Vec<String> =
            self.groups.iter().map(|g| g.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")).collect();
        cols.push(Series::new("seeds".into(), seeds).into());
        for m in Metrics::all() {
            type Get = fn(&Stat) -> Option<f64>;
            let parts: [(&str, Get); 4] = [
                ("mean", |s| Some(s.mean)),
                ("std", |s| Some(s.std).filter(|x| x.is_finite())),
                ("ci95", |s| Some(s.ci95).filter(|x| x.is_finite())),
                ("p", |s| s.p),
            ];
            for (suffix, get) in parts {
                let v: Vec<Option<f64>> = self.groups.iter().map(|g| g.stats.get(&m).and_then(get)).collect();
                cols.push(Series::new(format!("{m}_{suffix}").as_str().into(), v).into());
            }
        }
        DataFrame::new_infer_height(cols).context("building the summary table")
    }

    /// Writes `summary.csv` and `summary.parquet` into `dir` (each atomically).
    pub fn write(&self, dir: &std::path::Path) -> Result<()> {
        use polars::prelude::{CsvWriter, ParquetWriter, SerWriter};
        let mut df = self.frame()?;
        let mut csv = Vec::new();
        CsvWriter::new(&mut csv).finish(&mut df).context("writing summary.csv")?;
        crate::io::write_atomic(&dir.join("summary.csv"), &csv)?;
        let mut pq = Vec::new();
        ParquetWriter::new(&mut pq).finish(&mut df).context("writing summary.parquet")?;
        crate::io::write_atomic(&dir.join("summary.parquet"), &pq)
    }
}

fn str_at(df: &DataFrame, name: &str, row: usize) -> Result<String> {
    let s = df.column(name)?.as_materialized_series().str()?.get(row).unwrap_or("-");
    Ok(s.to_string())
}

fn f64_at(df: &DataFrame, name: &str, row: usize) -> Result<f64> {
    let col = df.column(name).with_context(|| format!("no column {name}"))?;
    Ok(col.as_materialized_series().f64()?.get(row).unwrap_or(f64::NAN))
}

/// Two-sided 97.5% Student t quantile for `df` degrees of freedom.
fn t975(df: usize) -> f64 {
    StudentsT::new(0.0, 1.0, df as f64).map_or(f64::NAN, |t| t.inverse_cdf(0.975))
}

/// Half-width of the 95% confidence interval of a mean.
pub fn ci95(std: f64, n: usize) -> f64 {
    if n < 2 || !std.is_finite() {
        return f64::NAN;
    }
    t975(n - 1) * std / (n as f64).sqrt()
}

/// Two-sided paired t-test p-value over `(x, reference)` pairs; None with fewer than 2 pairs.
pub fn paired_t_test(pairs: &[(f64, f64)]) -> Option<f64> {
    let n = pairs.len();
    if n < 2 {
        return None;
    }
    let d: Vec<f64> = pairs.iter().map(|(x, y)| x - y).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    if var <= 0.0 {
        return Some(if mean == 0.0 { 1.0 } else { 0.0 });
    }
    let t = mean / (var / n as f64).sqrt();
    let dist = StudentsT::new(0.0, 1.0, (n - 1) as f64).ok()?;
    Some(2.0 * (1.0 - dist.cdf(t.abs())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::collect::CollectedRun;
    use crate::io::CodeVersion;

    fn rec(model: &str, seed: u64, hr20: f64) -> CollectedRun {
        let mut test = BTreeMap::new();
        test.insert("hr@20".parse().unwrap(), hr20);
        CollectedRun {
            run_id: format!("beauty-{model}-{seed}"),
            labels: vec!["beauty".into(), model.into()],
            seed,
            test,
            released: None,
            best_epoch: 1,
            epochs_run: 1,
            seconds_per_epoch: 1.0,
            threads: 1,
            peak_rss_mib: None,
            protocol: "paper".into(),
            selection: "test metrics at the best validation ndcg@20 epoch".into(),
            n_train_targets: 0,
            dataset: "beauty".into(),
            n_test: 0,
            all_users: true,
            code: CodeVersion { commit: "x".into(), dirty: false, crate_version: "0".into() },
            earlier_code: Vec::new(),
            dir: ".".into(),
        }
    }

    #[test]
    fn hand_made_records_give_known_statistics() {
        let c = Collected {
            columns: vec!["dataset".into(), "model".into()],
            runs: vec![
                rec("sasrec", 1, 10.0),
                rec("pop", 1, 4.0),
                rec("sasrec", 2, 12.0),
                rec("pop", 2, 5.0),
                rec("sasrec", 3, 14.0),
                rec("pop", 3, 7.0),
            ],
            missing: vec![],
        };
        let s = Summary::compute(&c, Some(Reference::one(1, "pop"))).unwrap();
        assert_eq!(s.groups.len(), 2);
        assert_eq!(s.groups[0].labels, ["beauty", "sasrec"]);
        let m: Metric = "hr@20".parse().unwrap();
        let st = s.groups[0].stats[&m];
        assert!((st.mean - 12.0).abs() < 1e-12);
        assert!((st.std - 2.0).abs() < 1e-12);
        assert_eq!(st.n, 3);
        // t_{0.975, 2} = 4.302653
        assert!((st.ci95 - 4.302653 * 2.0 / 3f64.sqrt()).abs() < 1e-5, "{}", st.ci95);
        // d = 6, 7, 7: mean 6.667, sd 0.5774 -> t = 20, p = 0.00249
        let p = st.p.unwrap();
        assert!((p - 0.002490).abs() < 1e-5, "{p}");
        assert_eq!(s.groups[1].stats[&m].p, None, "the reference has no test against itself");
        let pop = s.groups[1].stats[&m];
        assert!((pop.mean - 16.0 / 3.0).abs() < 1e-12);
        let df = s.frame().unwrap();
        assert_eq!(df.height(), 2);
        assert!(df.column("hr@20_ci95").is_ok());
    }

    /// A group whose reference leaves a column unset (SASRec + CDL with a quantizer against
    /// popularity, which has none) pairs with the one reference group that fits.
    #[test]
    fn reference_that_leaves_a_column_unset() {
        let with = |model: &str, quantizer: &str, seed: u64, hr20: f64| {
            let mut r = rec(model, seed, hr20);
            r.labels.push(quantizer.into());
            r
        };
        let c = Collected {
            columns: vec!["dataset".into(), "model".into(), "quantizer".into()],
            runs: vec![
                with("pop", "-", 1, 4.0),
                with("pop", "-", 2, 5.0),
                with("pop", "-", 3, 7.0),
                with("sasrec", "vq", 1, 10.0),
                with("sasrec", "vq", 2, 12.0),
                with("sasrec", "vq", 3, 14.0),
            ],
            missing: vec![],
        };
        let s = Summary::compute(&c, Some(Reference::one(1, "pop"))).unwrap();
        let m: Metric = "hr@20".parse().unwrap();
        let sas = s.find(&["beauty".into(), "sasrec".into(), "vq".into()]).unwrap();
        assert!((sas.stats[&m].p.unwrap() - 0.002490).abs() < 1e-5, "{:?}", sas.stats[&m]);
        let two = Reference { labels: vec![(1, "pop".into()), (2, "-".into())] };
        assert!(two.is(&["beauty".into(), "pop".into(), "-".into()]));
        assert!(!two.is(&["beauty".into(), "pop".into(), "vq".into()]));
        assert_eq!(two.applied(&["sports".into(), "sasrec".into(), "vq".into()]), ["sports", "pop", "-"]);
        assert_eq!(two.describe(&c.columns), "model = pop, quantizer unset");
    }

    #[test]
    fn paired_test_edge_cases() {
        assert_eq!(paired_t_test(&[(1.0, 0.0)]), None);
        assert_eq!(paired_t_test(&[(1.0, 1.0), (2.0, 2.0)]), Some(1.0));
        assert_eq!(paired_t_test(&[(2.0, 1.0), (3.0, 2.0)]), Some(0.0));
        assert!(ci95(1.0, 1).is_nan());
    }
}
