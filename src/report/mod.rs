//! The "report" stage: a grid's records -> `reports/<grid>/`:
//! - `summary.csv`, `summary.parquet`: mean, std, n, 95% CI and paired p-value per group and
//!   metric ([`crate::analysis::aggregate`]);
//! - `table.md`, `table.tex`, `table.csv`: the summary in the paper's layout ([`table`]),
//!   with the paper's numbers beside ours ([`paper`]);
//! - `figure*.png` / `.svg`: the figures the grid's `[report]` asks for ([`figures`]);
//! - `report.md`: provenance (runs, seeds, protocol, machine, code version), the table, the
//!   figures, and every missing run with the reason.

pub mod claims;
pub mod cli;
pub mod diagnostics;
pub mod figures;
pub mod hit_counts;
pub mod ordering;
pub mod paper;
pub mod plot;
pub mod readme;
pub mod spec;
pub mod table;

pub use spec::ReportSpec;

use crate::analysis::aggregate::{Reference, Summary};
use crate::analysis::collect::Collected;
use crate::error::bad_input;
use crate::io::write_atomic;
use crate::sweep::plan::Plan;
use crate::sweep::store::Store;
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;

/// What `kdsr report` wrote.
#[derive(Debug)]
pub struct Written {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub finished: usize,
    pub missing: usize,
}

/// A grid's `[report]` section (defaults where the grid has none) and where it is written.
#[derive(Debug, Clone)]
pub struct Section {
    pub spec: ReportSpec,
    span: Option<std::ops::Range<usize>>,
}

impl Section {
    /// Parses the section from the grid's file; a bad section names its line.
    pub fn of(plan: &Plan) -> Result<Self> {
        Ok(match spec::parse(&plan.grid.source)? {
            Some(s) => Self { span: Some(s.span()), spec: s.into_inner() },
            None => Self { spec: ReportSpec::default(), span: None },
        })
    }

    /// A bad-input error at the section's line.
    fn error(&self, plan: &Plan, msg: impl std::fmt::Display) -> anyhow::Error {
        match &self.span {
            Some(span) => plan.grid.source.error(span, msg),
            None => bad_input(format!("{}: {msg}", plan.grid.source.path.display())),
        }
    }
}

/// The reference of the paired tests, checked against the label columns: one or more
/// `column = "label"` pairs (`"-"`: the column unset), which some run has together.
pub fn reference_of(plan: &Plan, section: &Section, c: &Collected) -> Result<Option<Reference>> {
    let Some(table) = &section.spec.reference else { return Ok(None) };
    let at = |msg: String| section.error(plan, msg);
    if table.is_empty() {
        return Err(at("report.reference: expected `column = \"label\"` pairs, e.g. { model = \"sasrec\" }".into()));
    }
    let mut labels = Vec::new();
    for (key, value) in table {
        let column = c.column(key).ok_or_else(|| {
            at(format!("report.reference: `{key}` is not a plan column (plan columns: {})", c.columns.join(", ")))
        })?;
        labels.push((column, crate::grid::label(value)));
    }
    labels.sort();
    let reference = Reference { labels };
    let all_labels = c.runs.iter().map(|r| &r.labels).chain(c.missing.iter().map(|m| &m.labels));
    if !all_labels.clone().any(|l| reference.is(l)) {
        let known: BTreeSet<String> = all_labels
            .map(|l| reference.labels.iter().map(|(col, _)| l[*col].as_str()).collect::<Vec<_>>().join(" / "))
            .collect();
        return Err(at(format!(
            "report.reference: no run has {} (values: {})",
            reference.describe(&c.columns),
            known.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(Some(reference))
}

/// A grid's `table.md`, as [`write`] renders it from the grid's records under `out` (README
/// block `table:<grid>`; `<grid>.trial`: its `--budget quick` trial's).
pub fn table_markdown(grid: &str, out: &std::path::Path) -> Result<String> {
    use crate::sweep::Budget;
    let (name, budget) = match grid.strip_suffix(".trial") {
        Some(name) => (name, Budget::Quick),
        None => (grid, Budget::Full),
    };
    let plan = Plan::scaled(name, budget, (None, None, None), None)?;
    let store = Store::for_plan(out, &plan);
    let collected = Collected::from_store(&plan, &store)?;
    let section = Section::of(&plan)?;
    let reference = reference_of(&plan, &section, &collected)?;
    let summary = Summary::compute(&collected, reference)?;
    let table = table::Table::build(&section.spec, &summary).map_err(|e| section.error(&plan, e))?;
    Ok(table.markdown())
}

/// Aggregates the grid's records and writes the summary, tables, figures and report.
pub fn write(plan: &Plan, store: &Store, command: &str) -> Result<Written> {
    let collected = Collected::from_store(plan, store)?;
    let section = Section::of(plan)?;
    let reference = reference_of(plan, &section, &collected)?;
    let spec = &section.spec;
    let summary = Summary::compute(&collected, reference)?;
    let dir = store.root.clone();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    summary.write(&dir)?;
    let mut files = vec![dir.join("summary.csv"), dir.join("summary.parquet")];
    let table = table::Table::build(spec, &summary).map_err(|e| section.error(plan, e))?;
    for (ext, text) in [("md", table.markdown()), ("tex", table.latex()), ("csv", table.csv())] {
        let path = dir.join(format!("table.{ext}"));
        write_atomic(&path, text.as_bytes())?;
        files.push(path);
    }
    remove_old_figures(&dir)?;
    let figs = figures::draw(spec, &collected, &summary, &dir)?;
    files.extend(figs.iter().flat_map(|f| [f.stem.with_extension("png"), f.stem.with_extension("svg")]));
    let sections = Sections {
        protocol_bias: diagnostics::protocol_bias(&collected, summary.reference.clone(), &spec.metrics)?,
        gradient_shares: diagnostics::gradient_shares(&collected, &summary)?,
        cost: diagnostics::cost(&collected, &summary),
        ordering: ordering::section(&table),
        hit_counts: paper_hit_counts(spec, &collected),
    };
    let text = render(plan, store, spec, &collected, &summary, &table, &figs, &sections, command);
    let path = dir.join("report.md");
    write_atomic(&path, text.as_bytes())?;
    files.push(path);
    Ok(Written { dir, files, finished: collected.runs.len(), missing: collected.missing.len() })
}

/// The report's optional sections ([`diagnostics`], [`ordering`]).
struct Sections {
    protocol_bias: Option<String>,
    gradient_shares: Option<String>,
    cost: Option<String>,
    ordering: Option<String>,
    hit_counts: Option<String>,
}

/// The hit-count check of the paper's Beauty HR values ([`hit_counts`]), in a report that
/// shows Table 2 and holds Beauty runs on the paper's full test set (protocol `paper` or
/// `released`, every user), whose instance count it uses.
fn paper_hit_counts(spec: &ReportSpec, c: &Collected) -> Option<String> {
    if spec.paper != Some(spec::PaperTable::Table2) {
        return None;
    }
    let n: BTreeSet<usize> = c
        .runs
        .iter()
        .filter(|r| r.all_users && r.dataset == "beauty" && (r.protocol == "paper" || r.protocol == "released"))
        .map(|r| r.n_test)
        .collect();
    let n = *n.iter().max()?;
    hit_counts::markdown("Beauty", n)
}

#[allow(clippy::too_many_arguments)]
fn render(
    plan: &Plan,
    store: &Store,
    spec: &ReportSpec,
    c: &Collected,
    summary: &Summary,
    table: &table::Table,
    figs: &[figures::Figure],
    sections: &Sections,
    command: &str,
) -> String {
    let g = &plan.grid;
    let mut out = format!("# Report: {}\n\n", g.name);
    if let Some(d) = &g.description {
        let _ = writeln!(out, "{}\n", d.trim());
    }
    let seeds: BTreeSet<u64> = c.runs.iter().map(|r| r.seed).collect();
    let _ = writeln!(
        out,
        "- Grid: `{}` (BLAKE3 {})",
        g.source.path.display(),
        &blake3::hash(g.source.text.as_bytes()).to_hex()[..16]
    );
    let _ = writeln!(
        out,
        "- Runs: {} finished of {} planned; seeds: {}",
        c.runs.len(),
        c.runs.len() + c.missing.len(),
        seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    );
    if !plan.scale.is_full() {
        let _ = writeln!(out, "- **Scaled down** for a trial: {} (not the paper's settings)", plan.scale.describe());
    }
    out += &protocol_lines(&c.runs);
    let short = |v: &crate::io::CodeVersion| {
        format!("{}{}", &v.commit[..v.commit.len().min(12)], if v.dirty { " (dirty)" } else { "" })
    };
    let codes: BTreeSet<String> =
        c.runs.iter().flat_map(|r| std::iter::once(&r.code).chain(&r.earlier_code)).map(short).collect();
    let resumed = c.runs.iter().filter(|r| !r.earlier_code.is_empty()).count();
    let _ = writeln!(
        out,
        "- Code: {}{}",
        if codes.is_empty() { "none".to_string() } else { codes.into_iter().collect::<Vec<_>>().join(", ") },
        match resumed {
            0 => String::new(),
            n => format!(
                " ({n} of the runs resumed after a stop; `resumed_from` in their metrics.json lists each process)"
            ),
        }
    );
    let _ = writeln!(
        out,
        "- Machine: {} ({} CPUs); median seconds per epoch: {}",
        crate::io::hostname(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        median(c.runs.iter().map(|r| r.seconds_per_epoch)).map_or("n/a".into(), |s| format!("{s:.1}"))
    );
    let _ = writeln!(out, "- Records: `{}`; reproduce with `{command}`\n", store.runs_dir().display());
    let _ = writeln!(out, "## Table\n");
    let _ = writeln!(
        out,
        "Test metrics in percent, mean ± sample std over seeds (bold: best, underlined: second on each line{}).\n",
        match &table.reference {
            Some(r) => format!("; `*`: p < 0.05 in a paired t-test against {r} over shared seeds"),
            None => String::new(),
        }
    );
    out += &table.markdown();
    if let Some(p) = spec.paper {
        let _ = writeln!(out, "\n{}", paper::caveat(p));
        let protocols: BTreeSet<&str> = c.runs.iter().map(|r| r.protocol.as_str()).collect();
        let _ = writeln!(out, "\n{}", paper::protocol_caveat(&protocols));
    }
    let _ = writeln!(
        out,
        "\nAlso: `table.tex`, `table.csv`, `summary.csv`, `summary.parquet` ({} groups).\n",
        summary.groups.len()
    );
    if !figs.is_empty() || !spec.figures.is_empty() {
        let _ = writeln!(out, "## Figures\n");
        for f in figs {
            let name = f.stem.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let _ = writeln!(out, "### {}\n\n![{}]({name}.png)\n\n{}\n", f.title, f.title, f.note);
        }
        for kind in &spec.figures {
            if !figs.iter().any(|f| f.kind == *kind) {
                let _ = writeln!(out, "- {kind:?}: nothing to draw ({})\n", figures::why_empty(*kind));
            }
        }
    }
    if let Some(text) = &sections.ordering {
        let _ = writeln!(out, "## Model ordering against the paper\n\n{text}");
    }
    if let Some(text) = &sections.hit_counts {
        let _ = writeln!(out, "## Are the paper's numbers single runs?\n\n{text}");
    }
    if let Some(text) = &sections.protocol_bias {
        let _ = writeln!(out, "## Protocol bias: our selection against the released code's\n\n{text}");
    }
    if let Some(text) = &sections.gradient_shares {
        let _ = writeln!(out, "## Gradient shares on the modality tables\n\n{text}");
    }
    if let Some(text) = &sections.cost {
        let _ = writeln!(out, "## Cost\n\n{text}");
    }
    let _ = writeln!(out, "## Missing runs\n");
    if c.missing.is_empty() {
        let _ = writeln!(out, "None: every planned run has a record.");
    } else {
        let _ = writeln!(
            out,
            "| run | {} | seed | why |\n|---|{}---|---|",
            c.columns.join(" | "),
            "---|".repeat(c.columns.len())
        );
        for m in &c.missing {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                m.run_id,
                m.labels.join(" | "),
                m.seed,
                m.reason.replace('|', "/")
            );
        }
    }
    out
}

/// The provenance lines on protocols: per protocol, how its runs selected the reported epoch
/// (test-selected protocols say so), and per dataset the training targets and test instances.
fn protocol_lines(runs: &[crate::analysis::collect::CollectedRun]) -> String {
    type Sizes = BTreeSet<(String, usize, usize)>;
    let mut by: std::collections::BTreeMap<&str, (BTreeSet<&str>, Sizes)> = Default::default();
    for r in runs {
        let e = by.entry(r.protocol.as_str()).or_default();
        e.0.insert(r.selection.as_str());
        e.1.insert((r.dataset.clone(), r.n_train_targets, r.n_test));
    }
    if by.is_empty() {
        return "- Protocol: none\n".into();
    }
    let mut out = String::new();
    for (protocol, (selections, targets)) in by {
        let targets: Vec<String> =
            targets.into_iter().map(|(d, n, t)| format!("{d} {n} training targets, {t} test instances")).collect();
        let _ = writeln!(
            out,
            "- Protocol `{protocol}`: {} ({})",
            selections.into_iter().collect::<Vec<_>>().join("; "),
            targets.join(", ")
        );
    }
    out
}

/// Figures of an earlier report (their set depends on the records, so stale ones would linger).
fn remove_old_figures(dir: &std::path::Path) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("figure") && (name.ends_with(".png") || name.ends_with(".svg")) {
            std::fs::remove_file(e.path()).with_context(|| format!("removing {}", e.path().display()))?;
        }
    }
    Ok(())
}

fn median(it: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = it.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}
