//! `kdsr report` and `kdsr gate`: a grid's records rendered, and judged against a baseline.

use crate::analysis::aggregate::Summary;
use crate::analysis::collect::Collected;
use crate::error::bad_input;
use crate::sweep::cli::{reproduce_command, GridArgs};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs `kdsr report`.
pub fn report(a: &GridArgs) -> Result<()> {
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
