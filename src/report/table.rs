//! A summary pivoted into the paper's layout, rendered as Markdown, LaTeX and CSV.
//!
//! Each plan column (and `metric`) goes to the rows or the columns as the grid's `[report]`
//! says; `variant` stands for every plan column placed nowhere else (their labels joined by
//! " / "). A cell is "mean ± std" over the seeds; the best mean of each comparison line
//! (along the row when `metric` is a row dimension, else down the column) is bold and the
//! second underlined; `*` marks p < 0.05 in the paired test against the reference; the paper's
//! number, where it reports one, is in the column to the right.

use super::paper;
use super::spec::ReportSpec;
use crate::analysis::aggregate::{Stat, Summary};
use crate::eval::Metric;
use anyhow::{bail, Result};
use std::fmt::Write as _;

/// Where each label column goes.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Row and column dimensions, outermost first.
    rows: Vec<Dim>,
    cols: Vec<Dim>,
    /// Label columns that make up the variant.
    variant: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dim {
    Label(usize),
    Metric,
    Variant,
}

impl Layout {
    /// Places the summary's label columns; an unknown name, or a column with several values
    /// that is placed nowhere (and no `variant` to absorb it), is an error naming it.
    pub fn new(spec: &ReportSpec, summary: &Summary) -> Result<Self> {
        let parse = |key: &str, names: &[String]| -> Result<Vec<Dim>> {
            names
                .iter()
                .map(|n| match n.as_str() {
                    "metric" => Ok(Dim::Metric),
                    "variant" => Ok(Dim::Variant),
                    _ => match summary.columns.iter().position(|c| c == n) {
                        Some(i) => Ok(Dim::Label(i)),
                        None => bail!(
                            "report.{key}: `{n}` is not a plan column, `metric` or `variant` (plan columns: {})",
                            summary.columns.join(", ")
                        ),
                    },
                })
                .collect()
        };
        let rows = parse("rows", &spec.rows)?;
        let cols = parse("columns", &spec.columns)?;
        let placed = |i: usize| rows.iter().chain(&cols).any(|d| *d == Dim::Label(i));
        let has_variant = rows.iter().chain(&cols).any(|d| *d == Dim::Variant);
        let mut variant = Vec::new();
        for i in 0..summary.columns.len() {
            if placed(i) {
                continue;
            }
            let distinct = distinct(summary.groups.iter().map(|g| g.labels[i].clone()));
            if has_variant {
                variant.push(i);
            } else if distinct.len() > 1 {
                bail!(
                    "report: plan column `{}` has several values ({}) but is in neither `rows` nor `columns`",
                    summary.columns[i],
                    distinct.join(", ")
                );
            }
        }
        if !rows.iter().chain(&cols).any(|d| *d == Dim::Metric) {
            bail!("report: `metric` must be in `rows` or `columns`");
        }
        Ok(Self { rows, cols, variant })
    }
}

/// One cell: our statistics, the paper's value, and the rank of our mean on its comparison line.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub ours: Option<Stat>,
    pub paper: Option<f64>,
    /// 1 = best, 2 = second.
    pub rank: Option<usize>,
}

/// The pivoted table.
#[derive(Debug, Clone)]
pub struct Table {
    pub row_header: Vec<String>,
    pub row_keys: Vec<Vec<String>>,
    pub col_keys: Vec<Vec<String>>,
    /// `cells[r][c]`.
    pub cells: Vec<Vec<Cell>>,
    /// Columns that have at least one paper value.
    pub paper_cols: Vec<bool>,
    pub reference: Option<String>,
    /// Each line is one metric (the cells of a line are comparable).
    pub metric_in_rows: bool,
}

/// A cell before pivoting: row key, column key, statistics, the paper's value.
type Entry = (Vec<String>, Vec<String>, Stat, Option<f64>);

/// The values in first-appearance order, without repeats.
pub(crate) fn distinct(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in it {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

impl Table {
    pub fn build(spec: &ReportSpec, summary: &Summary) -> Result<Self> {
        let layout = Layout::new(spec, summary)?;
        // The variant's labels (other than "-"), and the whole variant's display name if it has one.
        let variant_labels = |labels: &[String]| -> Vec<String> {
            layout.variant.iter().filter(|&&i| labels[i] != "-").map(|&i| labels[i].clone()).collect()
        };
        let variant_name = |labels: &[String]| -> Option<String> {
            let parts = variant_labels(labels);
            spec.variant_name(&parts.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let variant_of = |labels: &[String]| -> String {
            let parts: Vec<String> = variant_labels(labels).iter().map(|l| spec.name(l)).collect();
            match variant_name(labels) {
                Some(name) => name,
                None if parts.is_empty() => "-".into(),
                None => parts.join(" / "),
            }
        };
        let key = |dims: &[Dim], labels: &[String], metric: Metric| -> Vec<String> {
            dims.iter()
                .map(|d| match d {
                    Dim::Label(i) => spec.name(&labels[*i]),
                    Dim::Metric => spec.name(&metric.to_string()),
                    Dim::Variant => variant_of(labels),
                })
                .collect()
        };
        // Columns whose labels the paper's value need not name: the dataset (a tag of its own)
        // and the protocol (the report's caveat says which protocol selects as the paper did).
        let untagged: Vec<usize> = summary
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| *c == "dataset" || *c == "protocol")
            .map(|(i, _)| i)
            .collect();
        // Cells in group order, then metric order.
        let mut entries: Vec<Entry> = Vec::new();
        for g in &summary.groups {
            // The paper's value must name every label of the cell but the dataset and protocol (so that
            // "SASRec + CDL" does not borrow the paper's SASRec number); a variant with its own
            // display name counts as that one label ("KDSR").
            let named = variant_name(&g.labels);
            let shown = |i: usize| named.is_none() || !layout.variant.contains(&i);
            let mut required: Vec<String> = g
                .labels
                .iter()
                .enumerate()
                .filter(|(i, l)| !untagged.contains(i) && l.as_str() != "-" && shown(*i))
                .map(|(_, l)| spec.name(l))
                .collect();
            required.extend(named.clone());
            let mut cell_tags: Vec<String> =
                g.labels.iter().enumerate().filter(|(i, _)| shown(*i)).map(|(_, l)| spec.name(l)).collect();
            cell_tags.extend(named);
            for &m in &spec.metrics {
                let Some(stat) = g.stats.get(&m) else { continue };
                let mut tags = cell_tags.clone();
                tags.push(m.to_string());
                let paper = spec.paper.and_then(|t| paper::lookup(t, &tags, &required));
                entries.push((key(&layout.rows, &g.labels, m), key(&layout.cols, &g.labels, m), *stat, paper));
            }
        }
        let order = |pick: fn(&Entry) -> &Vec<String>, dims: &[Dim]| {
            let keys = distinct_keys(entries.iter().map(pick));
            sort_metric_major(keys, dims, spec)
        };
        let row_keys = order(|e| &e.0, &layout.rows);
        let col_keys = order(|e| &e.1, &layout.cols);
        let mut cells = vec![vec![Cell::default(); col_keys.len()]; row_keys.len()];
        for (rk, ck, stat, paper) in &entries {
            let r = row_keys.iter().position(|k| k == rk).expect("row key");
            let c = col_keys.iter().position(|k| k == ck).expect("col key");
            cells[r][c].ours = Some(*stat);
            cells[r][c].paper = *paper;
        }
        let along_rows = layout.rows.contains(&Dim::Metric);
        rank_cells(&mut cells, along_rows);
        let paper_cols = (0..col_keys.len()).map(|c| cells.iter().any(|row| row[c].paper.is_some())).collect();
        let row_header = layout
            .rows
            .iter()
            .map(|d| match d {
                Dim::Label(i) => summary.columns[*i].clone(),
                Dim::Metric => "metric".into(),
                Dim::Variant => "variant".into(),
            })
            .collect();
        let reference = summary.reference.as_ref().map(|r| r.describe(&summary.columns));
        Ok(Self { row_header, row_keys, col_keys, cells, paper_cols, reference, metric_in_rows: along_rows })
    }

    fn col_title(&self, c: usize) -> String {
        self.col_keys[c].join(" ")
    }

    pub fn markdown(&self) -> String {
        let mut head: Vec<String> = self.row_header.clone();
        for c in 0..self.col_keys.len() {
            head.push(self.col_title(c));
            if self.paper_cols[c] {
                head.push(format!("{} (paper)", self.col_title(c)));
            }
        }
        let mut out = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
        for (r, rk) in self.row_keys.iter().enumerate() {
            let mut row = rk.clone();
            for c in 0..self.col_keys.len() {
                let cell = &self.cells[r][c];
                let text = cell.ours.map_or("–".to_string(), fmt_stat);
                row.push(match cell.rank {
                    Some(1) => format!("**{text}**"),
                    Some(2) => format!("<u>{text}</u>"),
                    _ => text,
                });
                if self.paper_cols[c] {
                    row.push(cell.paper.map_or("–".into(), |p| format!("{p:.2}")));
                }
            }
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out
    }

    pub fn latex(&self) -> String {
        let ncols = self.row_header.len() + self.col_keys.len() + self.paper_cols.iter().filter(|&&b| b).count();
        let mut out = format!(
            "\\begin{{tabular}}{{{}}}\n\\toprule\n",
            "l".repeat(self.row_header.len()) + &"r".repeat(ncols - self.row_header.len())
        );
        let mut head: Vec<String> = self.row_header.iter().map(|h| tex_escape(h)).collect();
        for c in 0..self.col_keys.len() {
            head.push(tex_escape(&self.col_title(c)));
            if self.paper_cols[c] {
                head.push("paper".into());
            }
        }
        let _ = writeln!(out, "{} \\\\\n\\midrule", head.join(" & "));
        for (r, rk) in self.row_keys.iter().enumerate() {
            let mut row: Vec<String> = rk.iter().map(|k| tex_escape(k)).collect();
            for c in 0..self.col_keys.len() {
                let cell = &self.cells[r][c];
                let text = cell.ours.map_or("--".to_string(), |s| {
                    let mut t = format!("{:.2}", s.mean);
                    if s.std.is_finite() {
                        t += &format!(" $\\pm$ {:.2}", s.std);
                    }
                    if s.p.is_some_and(|p| p < 0.05) {
                        t += "$^*$";
                    }
                    t
                });
                row.push(match cell.rank {
                    Some(1) => format!("\\textbf{{{text}}}"),
                    Some(2) => format!("\\underline{{{text}}}"),
                    _ => text,
                });
                if self.paper_cols[c] {
                    row.push(cell.paper.map_or("--".into(), |p| format!("{p:.2}")));
                }
            }
            let _ = writeln!(out, "{} \\\\", row.join(" & "));
        }
        out + "\\bottomrule\n\\end{tabular}\n"
    }

    /// The same layout; each of our columns as `<col> mean`, `<col> std`, `<col> n`, then
    /// `<col> paper` where the paper has values.
    pub fn csv(&self) -> String {
        let mut head: Vec<String> = self.row_header.clone();
        for c in 0..self.col_keys.len() {
            let t = self.col_title(c);
            head.extend([format!("{t} mean"), format!("{t} std"), format!("{t} n"), format!("{t} p")]);
            if self.paper_cols[c] {
                head.push(format!("{t} paper"));
            }
        }
        let mut out = String::new();
        let _ = writeln!(out, "{}", head.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(","));
        let num = |x: Option<f64>| x.filter(|v| v.is_finite()).map_or(String::new(), |v| format!("{v:.4}"));
        for (r, rk) in self.row_keys.iter().enumerate() {
            let mut row: Vec<String> = rk.iter().map(|k| csv_field(k)).collect();
            for c in 0..self.col_keys.len() {
                let s = self.cells[r][c].ours;
                row.push(num(s.map(|s| s.mean)));
                row.push(num(s.map(|s| s.std)));
                row.push(s.map_or(String::new(), |s| s.n.to_string()));
                row.push(s.and_then(|s| s.p).map_or(String::new(), |p| format!("{p:.4}")));
                if self.paper_cols[c] {
                    row.push(num(self.cells[r][c].paper));
                }
            }
            let _ = writeln!(out, "{}", row.join(","));
        }
        out
    }
}

/// Keys in first-appearance order.
fn distinct_keys<'a>(it: impl Iterator<Item = &'a Vec<String>>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for k in it {
        if !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

/// Orders keys by their dimensions left to right: each dimension's values in first-appearance
/// order, metrics in the spec's order.
fn sort_metric_major(keys: Vec<Vec<String>>, dims: &[Dim], spec: &ReportSpec) -> Vec<Vec<String>> {
    let metric_names: Vec<String> = spec.metrics.iter().map(|m| spec.name(&m.to_string())).collect();
    let orders: Vec<Vec<String>> = (0..dims.len())
        .map(|d| match dims[d] {
            Dim::Metric => metric_names.clone(),
            _ => distinct(keys.iter().map(|k| k[d].clone())),
        })
        .collect();
    let mut keys = keys;
    keys.sort_by_key(|k| k.iter().enumerate().map(|(d, v)| orders[d].iter().position(|x| x == v)).collect::<Vec<_>>());
    keys
}

/// Marks the best (1) and second-best (2) mean on each comparison line, compared as shown
/// (two decimals): ties share a rank, and a line whose cells all show the same value has none.
fn rank_cells(cells: &mut [Vec<Cell>], along_rows: bool) {
    let (n_rows, n_cols) = (cells.len(), cells.first().map_or(0, Vec::len));
    let lines: Vec<Vec<(usize, usize)>> = if along_rows {
        (0..n_rows).map(|r| (0..n_cols).map(|c| (r, c)).collect()).collect()
    } else {
        (0..n_cols).map(|c| (0..n_rows).map(|r| (r, c)).collect()).collect()
    };
    let shown = |x: f64| (x * 100.0).round() as i64;
    for line in lines {
        let mut values: Vec<i64> = line.iter().filter_map(|&(r, c)| cells[r][c].ours.map(|s| shown(s.mean))).collect();
        values.sort_unstable_by(|a, b| b.cmp(a));
        values.dedup();
        if values.len() < 2 {
            continue;
        }
        for &(r, c) in &line {
            if let Some(s) = cells[r][c].ours {
                let v = shown(s.mean);
                cells[r][c].rank = values.iter().take(2).position(|&x| x == v).map(|p| p + 1);
            }
        }
    }
}

/// `6.08 ± 0.12*` (no `±` with a single seed).
fn fmt_stat(s: Stat) -> String {
    let mut t = format!("{:.2}", s.mean);
    if s.std.is_finite() {
        t += &format!(" ± {:.2}", s.std);
    }
    if s.p.is_some_and(|p| p < 0.05) {
        t += "\\*";
    }
    t
}

fn tex_escape(s: &str) -> String {
    s.replace('\\', "\\textbackslash{}").replace('&', "\\&").replace('%', "\\%").replace('_', "\\_").replace('#', "\\#")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
