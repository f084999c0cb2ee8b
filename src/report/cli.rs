//! `kdsr report` and `kdsr gate`: a grid's records rendered, and judged against a baseline.

use crate::analysis::aggregate::Summary;
use crate::analysis::collect::Collected;
use crate::error::bad_input;
use crate::sweep::cli::{reproduce_command, GridArgs};
use crate::sweep::Budget;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// `kdsr report`'s arguments: a grid, or `claims`.
#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub plan: crate::sweep::cli::PlanArgs,
    /// `kdsr report claims`: the claims file.
    #[arg(long, default_value = "experiments/claims.toml")]
    pub claims: PathBuf,
    /// `kdsr report claims`: also rewrite the generated blocks of this Markdown file
    /// (`<!-- generated:NAME -->` ... `<!-- /generated:NAME -->`).
    #[arg(long)]
    pub readme: Option<PathBuf>,
    /// `kdsr report claims`: write nothing; exit 1 when `reports/claims/` or the --readme
    /// file's blocks differ from what the records give.
    #[arg(long)]
    pub check: bool,
}

/// Runs `kdsr report`: `claims` judges the claims file ([`claims`]), any other name is a grid.
pub fn report(a: &ReportArgs) -> Result<ExitCode> {
    if a.plan.grid.grid == "claims" {
        return claims(a);
    }
    if a.readme.is_some() || a.check {
        return Err(bad_input("--readme and --check belong to `kdsr report claims`"));
    }
    grid_report(&a.plan.grid).map(|()| ExitCode::SUCCESS)
}

/// Runs `kdsr report claims`: writes `<out>/claims/claims.md` and `claims.csv` and the
/// README's generated blocks, or with `--check` lists what is stale and exits 1.
pub fn claims(a: &ReportArgs) -> Result<ExitCode> {
    use super::claims::{render, spec::ClaimsFile, Claims};
    let g = &a.plan.grid;
    if g.shard.is_some() || g.epochs.is_some() || g.max_users.is_some() || g.seeds.is_some() || g.budget != Budget::Full
    {
        return Err(bad_input("`kdsr report claims` reads the full grids' records: no --budget, --epochs, --max-users, --seeds or --shard"));
    }
    let c = Claims::compute(ClaimsFile::read(&a.claims)?, &g.out)?;
    let dir = g.out.join("claims");
    let files = [
        (dir.join("claims.md"), render::markdown(&c, "kdsr report claims")),
        (dir.join("claims.csv"), render::csv(&c)),
    ];
    let mut stale = Vec::new();
    for (path, text) in &files {
        if std::fs::read_to_string(path).ok().as_deref() != Some(text.as_str()) {
            stale.push(path.display().to_string());
        }
    }
    let mut readme = None;
    if let Some(path) = &a.readme {
        let text =
            std::fs::read_to_string(path).map_err(|e| bad_input(format!("{}: cannot read: {e}", path.display())))?;
        let name = path.display().to_string();
        let blocks = super::readme::generated(&c, &text, &name, &g.out)?;
        let (new, changed) = super::readme::update(&text, &name, &blocks)?;
        stale.extend(changed.iter().map(|b| format!("{} block `{b}`", path.display())));
        readme = Some((path, new, changed.is_empty()));
    }
    let verdicts = c.judged.iter().map(|j| format!("{} {}", j.claim.id, j.verdict.as_str())).collect::<Vec<_>>();
    if a.check {
        if stale.is_empty() {
            println!("claims: {} claims, everything generated is current ({})", c.judged.len(), verdicts.join("; "));
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!(
            "claims: stale, differs from what the records give (run `kdsr report claims{}`):",
            match &a.readme {
                Some(p) => format!(" --readme {}", p.display()),
                None => String::new(),
            }
        );
        for s in &stale {
            eprintln!("  {s}");
        }
        return Ok(ExitCode::from(1));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (path, text) in &files {
        crate::io::write_atomic(path, text.as_bytes())?;
    }
    if let Some((path, text, same)) = readme {
        if !same {
            crate::io::write_atomic(path, text.as_bytes())?;
        }
    }
    println!(
        "claims: {} claims judged ({}); {} updated",
        c.judged.len(),
        verdicts.join("; "),
        if stale.is_empty() { "nothing".into() } else { stale.join(", ") }
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `kdsr report <grid>`.
fn grid_report(a: &GridArgs) -> Result<()> {
    let (plan, store) = a.plan()?;
    let w = super::write(&plan, &store, &reproduce_command(a, &plan))?;
    println!(
        "report {}: {} finished runs, {} missing; wrote {} files, see {}",
        plan.grid.name,
        w.finished,
        w.missing,
        w.files.len(),
        w.dir.join("report.md").display()
    );
    Ok(())
}

#[derive(Args)]
pub struct GateArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// The baseline file.
    #[arg(long, default_value = "reports/baseline.toml")]
    pub baseline: PathBuf,
    /// Write the baseline from the current records instead of checking them.
    #[arg(long)]
    pub write_baseline: bool,
    /// Metrics the baseline covers (with --write-baseline).
    #[arg(long, value_delimiter = ',', default_value = "hr@20,ndcg@20")]
    pub metrics: Vec<crate::eval::Metric>,
}

/// Runs `kdsr gate`: exit 1 when a check fails.
pub fn gate(a: &GateArgs) -> Result<ExitCode> {
    use crate::gate::{Baseline, TolerancePolicy};
    let (plan, store) = a.grid.plan()?;
    let collected = Collected::from_store(&plan, &store)?;
    let section = super::Section::of(&plan)?;
    let reference = super::reference_of(&plan, &section, &collected)?;
    let summary = Summary::compute(&collected, reference)?;
    if a.write_baseline {
        if !collected.missing.is_empty() {
            return Err(bad_input(format!(
                "{} of the grid's runs have no record: run `{}` first",
                collected.missing.len(),
                reproduce_command(&a.grid, &plan)
            )));
        }
        let command = format!("{}; kdsr gate {} --write-baseline", reproduce_command(&a.grid, &plan), a.grid.grid);
        let base = Baseline::from_summary(&summary, &a.metrics, TolerancePolicy::default(), &plan.grid.name, &command);
        crate::io::write_atomic(&a.baseline, base.to_toml()?.as_bytes())?;
        println!("wrote {} ({} cells, {} beat rules)", a.baseline.display(), base.cell.len(), base.beat.len());
        return Ok(ExitCode::SUCCESS);
    }
    let base = Baseline::read(&a.baseline)?;
    if base.grid != plan.grid.name {
        return Err(bad_input(format!(
            "{}: the baseline is for grid `{}`, not `{}`",
            a.baseline.display(),
            base.grid,
            plan.grid.name
        )));
    }
    let checks = base.check(&summary);
    print!("{}", crate::gate::render(&checks));
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        eprintln!(
            "gate: {failed} of {} checks failed against {} ({})",
            checks.len(),
            a.baseline.display(),
            base.command
        );
        return Ok(ExitCode::from(1));
    }
    println!("gate: all {} checks passed against {}", checks.len(), a.baseline.display());
    Ok(ExitCode::SUCCESS)
}
