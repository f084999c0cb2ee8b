//! Three report sections that read more of each record than the test metrics:
//! - the protocol-bias table: our numbers (test metrics at the best validation epoch) beside the
//!   released code's selection (each metric's best test value over all epochs), on the same
//!   runs, with each selection's margin over the reference group and its paired p-value;
//! - the gradient-share table: how large each loss term's gradient on each modality table is
//!   (recommendation CE, holistic, dissected; the per-epoch probe in `epochs.csv`), at epochs
//!   1, 5 and the last one trained;
//! - the cost table: epochs, seconds per training epoch and peak resident memory per group.

use crate::analysis::aggregate::{Group, Reference, Summary};
use crate::analysis::collect::{read_epochs, Collected, CollectedRun};
use crate::eval::Metric;
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The group's labels in the columns that vary over all of the grid's collected runs, joined
/// by " / " (the group's name in a diagnostic table; a section that covers a subset of the runs,
/// e.g. those with per-epoch test metrics, still names each group as the main table does).
fn group_name(c: &Collected, g: &Group) -> String {
    let varies = |i: usize| c.runs.iter().any(|r| r.labels[i] != c.runs[0].labels[i]);
    let parts: Vec<&str> =
        (0..g.labels.len()).filter(|&i| varies(i) && g.labels[i] != "-").map(|i| g.labels[i].as_str()).collect();
    if parts.is_empty() {
        "all runs".into()
    } else {
        parts.join(" / ")
    }
}

fn p_text(p: Option<f64>) -> String {
    p.map_or("-".into(), |p| format!("{p:.3}"))
}

/// The protocol-bias section (Markdown), or None when no run kept every epoch's test metrics
/// (`train.test_every_epoch`).
pub fn protocol_bias(c: &Collected, reference: Option<Reference>, metrics: &[Metric]) -> Result<Option<String>> {
    let Some(released) = c.with_released_selection() else { return Ok(None) };
    let ours = Summary::compute(&c.only_runs_of(&released), reference.clone())?;
    let theirs = Summary::compute(&released, reference.clone())?;
    let mut out = String::from(
        "Test metrics (percent, mean over seeds) of the same runs under two selections: ours (the epoch with \
         the best validation metric) and the released code's (each metric's best test value over all epochs, \
         each from its own epoch). Δ: what the released code's selection adds.",
    );
    if let Some(r) = &reference {
        let _ = write!(out, " p: paired t-test against {} under the same selection.", r.describe(&c.columns));
    }
    out += "\n\n| runs | seeds | metric | ours | released | Δ |";
    if reference.is_some() {
        out += " p ours | p released |";
    }
    let _ = writeln!(out, "\n|---|---:|---|---:|---:|---:|{}", if reference.is_some() { "---:|---:|" } else { "" });
    for g in &ours.groups {
        let Some(h) = theirs.find(&g.labels) else { continue };
        for m in metrics {
            let (a, b) = (g.stats[m], h.stats[m]);
            let _ = write!(
                out,
                "| {} | {} | {m} | {:.2} | {:.2} | {:+.2} |",
                group_name(c, g),
                g.seeds.len(),
                a.mean,
                b.mean,
                b.mean - a.mean
            );
            if reference.is_some() {
                let _ = write!(out, " {} | {} |", p_text(a.p), p_text(b.p));
            }
            out.push('\n');
        }
    }
    Ok(Some(out))
}

/// Gradient-norm columns of `epochs.csv`: `grad_<modality>_<term>`.
const TERMS: [&str; 3] = ["ce", "holistic", "dissected"];

/// The gradient-share section (Markdown), or None when no run recorded the probe.
pub fn gradient_shares(c: &Collected, summary: &Summary) -> Result<Option<String>> {
    let mut rows = String::new();
    for g in &summary.groups {
        let runs: Vec<_> = c.runs.iter().filter(|r| r.labels == g.labels).collect();
        // modality -> epoch tag -> term -> values over seeds
        let mut acc: BTreeMap<String, BTreeMap<usize, [Vec<f64>; 3]>> = BTreeMap::new();
        for r in &runs {
            let cols = read_epochs(&r.dir)?;
            let Some(epochs) = cols.get("epoch") else { continue };
            let modalities: Vec<String> =
                cols.keys().filter_map(|k| k.strip_prefix("grad_")?.strip_suffix("_ce").map(String::from)).collect();
            let last = epochs.len().saturating_sub(1);
            let at = |e: f64| epochs.iter().position(|&x| x == e);
            for (tag, row) in [(0, at(1.0)), (1, at(5.0)), (2, Some(last))] {
                let Some(row) = row else { continue };
                for m in &modalities {
                    let slot = acc.entry(m.clone()).or_default().entry(tag).or_default();
                    for (t, term) in TERMS.iter().enumerate() {
                        let v = cols.get(&format!("grad_{m}_{term}")).map_or(f64::NAN, |v| v[row]);
                        slot[t].push(if v.is_finite() { v } else { 0.0 });
                    }
                }
            }
        }
        for (m, by_epoch) in &acc {
            let _ = write!(rows, "| {} | {m} |", group_name(c, g));
            for tag in 0..3 {
                match by_epoch.get(&tag) {
                    Some(v) => {
                        let mean = |x: &Vec<f64>| x.iter().sum::<f64>() / x.len().max(1) as f64;
                        let means: Vec<f64> = v.iter().map(mean).collect();
                        let total: f64 = means.iter().sum();
                        let share = |x: f64| if total > 0.0 { 100.0 * x / total } else { 0.0 };
                        let _ = write!(
                            rows,
                            " {:.0} / {:.0} / {:.0} ({:.1e}) |",
                            share(means[0]),
                            share(means[1]),
                            share(means[2]),
                            means[0]
                        );
                    }
                    None => rows += " - |",
                }
            }
            rows.push('\n');
        }
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let text = "Each loss term's gradient norm on each modality table, as a percentage of their sum \
        (CE / holistic / dissected; weighted as trained, on the fixed probe step of `epochs.csv`, mean over \
        seeds; in brackets the CE gradient's norm). Last: each run's last trained epoch. A run without correlation losses has 100 / 0 / 0.\n\n\
        | runs | modality | epoch 1 | epoch 5 | last |\n|---|---|---:|---:|---:|\n";
    Ok(Some(format!("{text}{rows}")))
}

/// The cost section (Markdown), or None without runs: per group, the threads, epochs run and
/// seconds per training epoch (medians over seeds) and the peak resident memory of the
/// training process (the largest over seeds; "-" where no record has it).
pub fn cost(c: &Collected, summary: &Summary) -> Option<String> {
    if c.runs.is_empty() {
        return None;
    }
    let mut out = String::from(
        "Per group: threads, epochs run and seconds per training epoch (medians over seeds), and the peak \
         resident memory of the process that trained each run (the largest over seeds; \"-\": records \
         from before it was measured). A sweep that trains several runs in one process shares one peak.\n\n\
         | runs | seeds | threads | epochs | s / epoch | peak RSS (MiB) |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for g in &summary.groups {
        let runs: Vec<_> = c.runs.iter().filter(|r| r.labels == g.labels).collect();
        let med = |v: &dyn Fn(&CollectedRun) -> f64| {
            super::median(runs.iter().map(|r| v(r))).map_or("-".into(), |m| format!("{m:.0}"))
        };
        let rss = runs.iter().filter_map(|r| r.peak_rss_mib).reduce(f64::max);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            group_name(c, g),
            runs.len(),
            med(&|r| r.threads as f64),
            med(&|r| r.epochs_run as f64),
            med(&|r| r.seconds_per_epoch),
            rss.map_or("-".into(), |m| format!("{m:.0}"))
        );
    }
    Some(out)
}
