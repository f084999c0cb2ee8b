//! `claims.md`, `claims.csv` and the README blocks of the judged claims. Numbers are rounded
//! once, from the unrounded effect: means and differences to 2 decimals (test metrics, in
//! percent) or 3 (`epochs.csv` quantities), relative differences to 1 decimal, p-values to two
//! significant digits (`< 0.001` below that).

use super::spec::{Kind, Measure};
use super::stats::Effect;
use super::{Claims, Comparison, Judged};
use std::fmt::Write as _;

/// A p-value to two significant digits (at least 2 decimals), `< 0.001` below 0.001.
pub fn fmt_p(p: Option<f64>) -> String {
    match p {
        None => "-".into(),
        Some(p) if p < 0.001 => "< 0.001".into(),
        Some(p) => {
            let decimals = (1 - p.log10().floor() as i64).max(2) as usize;
            format!("{p:.decimals$}")
        }
    }
}

fn fmt_signed(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        format!("{x:+.decimals$}")
    } else {
        "-".into()
    }
}

/// The summary table (README block `claims`).
pub fn summary(c: &Claims) -> String {
    let mut out = String::from(
        "| claim | paper | comparisons | seeds | verdict | significant for / against (tests) | strongest test (p; corrected p) |\n\
         |---|---|---:|---|---|---|---|\n",
    );
    for j in &c.judged {
        let seeds: std::collections::BTreeSet<usize> = j.comparisons.iter().map(|c| c.seeds.len()).collect();
        let seeds = seeds.iter().map(usize::to_string).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            out,
            "| `{}`: {} | {} | {} | {} | **{}** | {} / {} ({}) | {} |",
            j.claim.id,
            j.claim.claim,
            j.claim.paper.as_deref().unwrap_or("-"),
            j.comparisons.len(),
            if seeds.is_empty() { "-".into() } else { seeds },
            j.verdict.as_str(),
            j.for_claim,
            j.against,
            j.tests,
            strongest(j),
        );
    }
    out
}

/// The claim's strongest test, the one with the smallest p (Holm keeps the order):
/// `H@20 +0.25, SASRec (p 0.012; 0.11)`, the second p corrected.
fn strongest(j: &Judged) -> String {
    let mut best: Option<(f64, String)> = None;
    for c in &j.comparisons {
        for ((m, e), ph) in j.claim.measures.iter().zip(&c.effects).zip(&c.p_holm) {
            if let (Some(e), Some(p), Some(ph)) = (e, e.and_then(|e| e.p), ph) {
                if best.as_ref().is_none_or(|(b, _)| p < *b) {
                    let what = format!("{} {}, {}", m.name(), fmt_signed(e.diff, m.decimals()), c.name);
                    best = Some((p, format!("{what} (p {}; {})", fmt_p(Some(p)), fmt_p(Some(*ph)))));
                }
            }
        }
    }
    best.map_or("-".into(), |(_, s)| s)
}

/// One claim's tables (README block `claim:<id>`).
pub fn claim(j: &Judged) -> String {
    let (id, text, paper) = (&j.claim.id, &j.claim.claim, j.claim.paper.as_deref().unwrap_or("paper"));
    let mut out = match j.claim.kind {
        Kind::Compare(direction) => format!(
            "**`{id}`**: {text} ({paper}). Claimed: treatment {} control. Verdict: **{}** ({} of {} tests significant for, {} against; Holm over this claim's {} tests).\n",
            direction.symbol(),
            j.verdict.as_str(),
            j.for_claim,
            j.tests,
            j.against,
            j.tests,
        ),
        Kind::Reproduce(_) => format!(
            "**`{id}`**: {text} ({paper}). Claimed: the treatment reaches the paper's number (control: the published value; each seed's difference from it, two-sided one-sample t-test). Verdict: **{}** ({} of {} tests differ significantly from the paper; Holm over this claim's {} tests).\n",
            j.verdict.as_str(),
            j.against,
            j.tests,
            j.tests,
        ),
    };
    for c in &j.comparisons {
        out += &comparison(c, &j.claim.measures);
    }
    out
}

fn comparison(c: &Comparison, measures: &[Measure]) -> String {
    let grids = |s: &super::records::Side| {
        let g = s.grids().into_iter().collect::<Vec<_>>();
        if g.is_empty() && !s.runs.is_empty() {
            "the paper".to_string()
        } else {
            g.join(", ")
        }
    };
    let mut out = format!(
        "\n*{}* (grid `{}`): treatment {} [records: {}] vs control {} [records: {}]; seeds {}.\n\n",
        c.name,
        c.grid,
        c.treatment.describe,
        grids(&c.treatment),
        c.control.describe,
        grids(&c.control),
        if c.seeds.is_empty() {
            "none".into()
        } else {
            c.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        },
    );
    out += "| measure | treatment | control | diff [95% CI] | rel. | p | p (Holm) | n |\n|---|---:|---:|---|---:|---:|---:|---:|\n";
    for ((m, e), ph) in measures.iter().zip(&c.effects).zip(&c.p_holm) {
        let d = m.decimals();
        let _ = match e {
            None => writeln!(out, "| {} | - | - | - | - | - | - | 0 |", m.name()),
            Some(e) => writeln!(
                out,
                "| {} | {:.d$} | {:.d$} | {} | {} | {} | {} | {} |",
                m.name(),
                e.treatment,
                e.control,
                interval(e, d),
                if e.rel.is_finite() { format!("{:+.1}%", e.rel) } else { "-".into() },
                fmt_p(e.p),
                fmt_p(*ph),
                e.n
            ),
        };
    }
    out
}

fn interval(e: &Effect, d: usize) -> String {
    if e.ci95.is_finite() {
        format!("{} [{}, {}]", fmt_signed(e.diff, d), fmt_signed(e.diff - e.ci95, d), fmt_signed(e.diff + e.ci95, d))
    } else {
        fmt_signed(e.diff, d)
    }
}

/// The comparisons whose records exist in more than one grid as different runs (README block
/// `replicates`): each grid's own difference and paired p per measure.
pub fn replicates(c: &Claims) -> String {
    let mut out = String::new();
    for j in &c.judged {
        for cmp in c_with_sources(j) {
            let names: Vec<String> = j.claim.measures.iter().map(Measure::name).collect();
            let _ = writeln!(
                out,
                "\n`{}`, *{}*: treatment {} vs control {}\n\n| grids | code | {} |\n|---|---|{}",
                j.claim.id,
                cmp.name,
                cmp.treatment.describe,
                cmp.control.describe,
                names.join(" | "),
                "---|".repeat(names.len())
            );
            for s in &cmp.sources {
                let cells: Vec<String> = j
                    .claim
                    .measures
                    .iter()
                    .zip(&s.effects)
                    .map(|(m, e)| match e {
                        Some(e) => format!("{} (p {})", fmt_signed(e.diff, m.decimals()), fmt_p(e.p)),
                        None => "-".into(),
                    })
                    .collect();
                let codes: Vec<&str> = s.codes.iter().map(String::as_str).collect();
                let _ = writeln!(out, "| {} | {} | {} |", s.grids.join(", "), codes.join(", "), cells.join(" | "));
            }
        }
    }
    if out.is_empty() {
        out = "No comparison has its configuration recorded by more than one grid as different runs.\n".into();
    }
    out.trim_start().to_string()
}

fn c_with_sources(j: &Judged) -> impl Iterator<Item = &Comparison> {
    j.comparisons.iter().filter(|c| !c.sources.is_empty())
}

/// The README blocks: `claims`, `claim:<id>` per claim, `replicates`.
pub fn blocks(c: &Claims) -> std::collections::BTreeMap<String, String> {
    let mut out: std::collections::BTreeMap<String, String> =
        c.judged.iter().map(|j| (format!("claim:{}", j.claim.id), claim(j))).collect();
    out.insert("claims".into(), summary(c));
    out.insert("replicates".into(), replicates(c));
    out
}

/// `claims.md`.
pub fn markdown(c: &Claims, command: &str) -> String {
    let mut out = format!(
        "# Claims of the paper, judged on the committed records\n\n\
         Generated by `{command}` from `{}` and the run records under `reports/*/runs/` (trial folders excluded); do not edit.\n\n\
         - Each comparison pairs the treatment's and the control's runs by seed. A seed's value is the mean over every run, in any grid, with the side's configuration (seed and the settings that only change what is recorded excluded: {}); the same run copied into several grids counts once.\n\
         - Effect: difference of means `diff = mean(t_s - c_s)` over the shared seeds, relative to the control's mean, with the 95% Student t interval of the mean difference; p: two-sided paired t-test.\n\
         - Correction: Holm-Bonferroni within each claim, over all its comparisons x measures (the family); a test is significant when its corrected p < {}.\n\
         - Verdict: **contradicted** when a test is significant against the claimed direction; else **supported** when every comparison has a test significant in the claimed direction; else **not supported**; **not tested** without a paired test.\n\
         - Reproductions (`reproduces`): the control is the paper's published value of the cell, so each seed's difference from it is tested (two-sided one-sample t-test); **reproduced** when every comparison is tested and no test is significant, i.e. within seed noise of the paper's number at the seeds run; else **above the paper**, **below the paper** or **above and below the paper**.\n\n\
         ## Summary\n\n{}\n",
        c.file.source.path.display(),
        super::records::RECORD_ONLY.join(", "),
        c.file.alpha,
        summary(c)
    );
    out += "## Claims\n";
    for j in &c.judged {
        let _ = write!(out, "\n### {}\n\n{}", j.claim.id, claim(j));
    }
    let _ = write!(out, "\n## The same configuration in several grids\n\n{}", replicates(c));
    out
}

/// `claims.csv`: one row per claim, comparison and measure, unrounded.
pub fn csv(c: &Claims) -> String {
    let mut out = String::from(
        "claim,verdict,comparison,grid,treatment,control,measure,n,seeds,treatment_mean,control_mean,diff,ci95_low,ci95_high,rel_pct,p,p_holm\n",
    );
    let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let num = |x: f64| if x.is_finite() { x.to_string() } else { String::new() };
    for j in &c.judged {
        for cmp in &j.comparisons {
            for ((m, e), ph) in j.claim.measures.iter().zip(&cmp.effects).zip(&cmp.p_holm) {
                let seeds = cmp.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
                let stats = match e {
                    None => ",,,,,,,".to_string(),
                    Some(e) => [
                        e.treatment,
                        e.control,
                        e.diff,
                        e.diff - e.ci95,
                        e.diff + e.ci95,
                        e.rel,
                        e.p.unwrap_or(f64::NAN),
                        ph.unwrap_or(f64::NAN),
                    ]
                    .map(num)
                    .join(","),
                };
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{stats}",
                    j.claim.id,
                    j.verdict.as_str(),
                    q(&cmp.name),
                    cmp.grid,
                    q(&cmp.treatment.describe),
                    q(&cmp.control.describe),
                    m,
                    e.map_or(0, |e| e.n),
                    seeds
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_round_to_two_significant_digits() {
        assert_eq!(fmt_p(Some(0.0046)), "0.0046");
        assert_eq!(fmt_p(Some(0.1647)), "0.16");
        assert_eq!(fmt_p(Some(0.0549)), "0.055");
        assert_eq!(fmt_p(Some(0.00049)), "< 0.001");
        assert_eq!(fmt_p(Some(1.0)), "1.00");
        assert_eq!(fmt_p(None), "-");
    }
}
