//! The paper's figures from a grid's records, one file pair (PNG, SVG) per dataset:
//! - Figure 1 (`drift`): Pearson r per epoch between the pairwise similarities of the modality
//!   embeddings and (solid) the original features, (dashed) a pure-ID model's embeddings;
//!   the mean over seeds of the `drift_<modality>_{original,id}` columns of `epochs.csv` (raw
//!   table, random pairs: what the paper plots), from epoch 0 where the runs record it. The
//!   other drift columns (autoencoder codes, projected tables, in-sequence pairs) stay in
//!   `epochs.csv`.
//! - Figure 3 (`compat`): bars of a metric (mean, whisker = std) per backbone (the `x`
//!   column, default `model`), one bar per remaining variant (e.g. frozen / tuned / + CDL).
//! - Figure 4 (`encoders`): the metric against a numeric `x` column (e.g. the embedding
//!   size), one line per remaining variant (e.g. encoder).

use super::plot::{self, Bars, Line};
use super::spec::{FigureKind, ReportSpec};
use super::table::distinct;
use crate::analysis::aggregate::Summary;
use crate::analysis::collect::{read_epochs, Collected};
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A drawn figure.
#[derive(Debug, Clone)]
pub struct Figure {
    pub kind: FigureKind,
    /// The path without extension (`.png` and `.svg` exist).
    pub stem: PathBuf,
    pub title: String,
    /// What the figure shows and from which runs.
    pub note: String,
}

/// Why a requested figure has nothing to draw.
pub fn why_empty(kind: FigureKind) -> &'static str {
    match kind {
        FigureKind::Drift => "no finished run recorded drift columns (runs with a modality config do)",
        FigureKind::Compat | FigureKind::Encoders => "no finished runs",
    }
}

pub fn draw(spec: &ReportSpec, c: &Collected, summary: &Summary, dir: &Path) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    for kind in &spec.figures {
        match kind {
            FigureKind::Drift => out.extend(drift(spec, c, dir)?),
            FigureKind::Compat => out.extend(compat(spec, summary, dir)?),
            FigureKind::Encoders => out.extend(encoders(spec, summary, dir)?),
        }
    }
    Ok(out)
}

/// The datasets of the summary, in order, and the index of the dataset column.
fn datasets(columns: &[String], labels: impl Iterator<Item = String>) -> (usize, Vec<String>) {
    let d = columns.iter().position(|c| c == "dataset").unwrap_or(0);
    (d, distinct(labels))
}

/// The display name of a run's variant: every label but the skipped columns.
fn variant(spec: &ReportSpec, labels: &[String], skip: &[usize]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .enumerate()
        .filter(|(i, l)| !skip.contains(i) && l.as_str() != "-")
        .map(|(_, l)| spec.name(l))
        .collect();
    if parts.is_empty() {
        "all runs".into()
    } else {
        parts.join(" / ")
    }
}

fn drift(spec: &ReportSpec, c: &Collected, dir: &Path) -> Result<Vec<Figure>> {
    let (d, names) = datasets(&c.columns, c.runs.iter().map(|r| r.labels[c.column("dataset").unwrap_or(0)].clone()));
    let mut figs = Vec::new();
    for ds in names {
        // modality -> (variant, against) -> per epoch (sum, count)
        type Curves = BTreeMap<String, BTreeMap<(String, String), Vec<(f64, usize)>>>;
        let mut curves: Curves = BTreeMap::new();
        let mut variants: Vec<String> = Vec::new();
        let mut runs = 0;
        for r in c.runs.iter().filter(|r| r.labels[d] == ds) {
            let table = read_epochs(&r.dir)?;
            // drift_<modality>_original / drift_<modality>_id (modality names have no `_`).
            let figure_col = |k: &str| {
                k.strip_prefix("drift_")
                    .and_then(|w| w.rsplit_once('_'))
                    .is_some_and(|(m, against)| !m.contains('_') && (against == "original" || against == "id"))
            };
            let cols: Vec<&String> = table.keys().filter(|k| figure_col(k)).collect();
            let epochs: Vec<f64> = table.get("epoch").cloned().unwrap_or_default();
            if cols.is_empty() {
                continue;
            }
            runs += 1;
            let v = variant(spec, &r.labels, &[d]);
            if !variants.contains(&v) {
                variants.push(v.clone());
            }
            for col in cols {
                let what = col.trim_start_matches("drift_");
                let (modality, against) = what.rsplit_once('_').unwrap_or((what, "original"));
                let acc = curves
                    .entry(modality.to_string())
                    .or_default()
                    .entry((v.clone(), against.to_string()))
                    .or_default();
                for (row, x) in table[col].iter().enumerate() {
                    // Indexed by epoch (0 = before training, where recorded).
                    let e = epochs.get(row).map_or(row + 1, |&e| e as usize);
                    if acc.len() <= e {
                        acc.resize(e + 1, (0.0, 0));
                    }
                    if x.is_finite() {
                        acc[e].0 += x;
                        acc[e].1 += 1;
                    }
                }
            }
        }
        for (modality, per) in curves {
            let lines: Vec<Line> = per
                .iter()
                .filter(|(_, acc)| acc.iter().any(|a| a.1 > 0))
                .map(|((v, against), acc)| Line {
                    name: format!("{v}: vs {}", if against == "id" { "ID embeddings" } else { "original features" }),
                    points: acc
                        .iter()
                        .enumerate()
                        .filter(|(_, a)| a.1 > 0)
                        .map(|(e, a)| (e as f64, a.0 / a.1 as f64))
                        .collect(),
                    dashed: against == "id",
                    colour: variants.iter().position(|x| x == v).unwrap_or(0),
                })
                .collect();
            if lines.is_empty() {
                continue;
            }
            let stem = dir.join(format!("figure1_drift_{ds}_{modality}"));
            let title = format!("Figure 1: drift of the {modality} embeddings, {}", spec.name(&ds));
            plot::lines(&stem, &title, "epoch", "Pearson r of pairwise similarities", &lines)?;
            let no_id = lines.iter().all(|l| !l.dashed);
            figs.push(Figure {
                kind: FigureKind::Drift,
                stem,
                title,
                note: format!(
                    "Mean over the seeds of {runs} runs per epoch, on a fixed sample of item pairs; solid: against the \
                     original features{}.",
                    if no_id {
                        " (no ID-embedding reference was given: set `modality.drift.id_reference = \"twin\"` for the \
                         dashed curves)"
                    } else {
                        "; dashed: against a pure-ID model's item embeddings (the run's twin without modality \
                         tables, or the checkpoint the grid names)"
                    }
                ),
            });
        }
    }
    Ok(figs)
}

/// Groups of the summary per dataset: (x label, series name) -> (mean, std) of the metric.
type Cells = BTreeMap<String, Vec<(String, String, f64, f64)>>;

fn cells(spec: &ReportSpec, summary: &Summary, default_x: &str) -> Result<(String, Cells)> {
    let x_name = spec.x.clone().unwrap_or_else(|| default_x.to_string());
    let Some(x) = summary.columns.iter().position(|c| *c == x_name) else {
        bail!("report: figure x axis `{x_name}` is not a plan column (plan columns: {})", summary.columns.join(", "));
    };
    let d = summary.columns.iter().position(|c| c == "dataset").unwrap_or(usize::MAX);
    let mut out: Cells = BTreeMap::new();
    for g in &summary.groups {
        let Some(s) = g.stats.get(&spec.figure_metric) else { continue };
        let ds = g.labels.get(d).cloned().unwrap_or_else(|| "all".into());
        out.entry(ds).or_default().push((g.labels[x].clone(), variant(spec, &g.labels, &[d, x]), s.mean, s.std));
    }
    Ok((x_name, out))
}

fn compat(spec: &ReportSpec, summary: &Summary, dir: &Path) -> Result<Vec<Figure>> {
    let (x_name, per_ds) = cells(spec, summary, "model")?;
    let mut figs = Vec::new();
    for (ds, cells) in per_ds {
        let groups = distinct(cells.iter().map(|c| c.0.clone()));
        let series = distinct(cells.iter().map(|c| c.1.clone()));
        let values = groups
            .iter()
            .map(|g| series.iter().map(|s| cells.iter().find(|c| &c.0 == g && &c.1 == s).map(|c| (c.2, c.3))).collect())
            .collect();
        let bars = Bars { groups: groups.iter().map(|g| spec.name(g)).collect(), series, values };
        let stem = dir.join(format!("figure3_compat_{ds}"));
        let metric = spec.name(&spec.figure_metric.to_string());
        let title = format!("Figure 3: backbone compatibility, {} ({metric})", spec.name(&ds));
        plot::bars(&stem, &title, &format!("{metric} (%)"), &bars)?;
        figs.push(Figure {
            kind: FigureKind::Compat,
            stem,
            title,
            note: format!("Bars: mean over seeds per `{x_name}` value and variant; whiskers: ± one sample std."),
        });
    }
    Ok(figs)
}

fn encoders(spec: &ReportSpec, summary: &Summary, dir: &Path) -> Result<Vec<Figure>> {
    let (x_name, per_ds) = cells(spec, summary, "modality.autoencoder.hidden")?;
    let mut figs = Vec::new();
    for (ds, cells) in per_ds {
        let series = distinct(cells.iter().map(|c| c.1.clone()));
        let mut lines = Vec::new();
        for (i, s) in series.iter().enumerate() {
            let mut points = Vec::new();
            for c in cells.iter().filter(|c| &c.1 == s) {
                let Ok(x) = c.0.parse::<f64>() else {
                    bail!("report: figure 4's x axis `{x_name}` needs numeric values, found `{}`", c.0)
                };
                points.push((x, c.2));
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            lines.push(Line { name: s.clone(), points, dashed: false, colour: i });
        }
        let stem = dir.join(format!("figure4_encoders_{ds}"));
        let metric = spec.name(&spec.figure_metric.to_string());
        let title = format!("Figure 4: {metric} against {x_name}, {}", spec.name(&ds));
        plot::lines(&stem, &title, &x_name, &format!("{metric} (%)"), &lines)?;
        figs.push(Figure {
            kind: FigureKind::Encoders,
            stem,
            title,
            note: format!("One line per variant (encoder); mean over seeds at each `{x_name}`."),
        });
    }
    Ok(figs)
}
