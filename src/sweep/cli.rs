//! The `kdsr sweep` subcommands.

use super::cost;
use super::plan::Plan;
use super::scheduler::{self, SweepOptions, Workers};
use super::slurm::{self, SlurmOptions};
use super::store::{RunStatus, Store};
use super::{Budget, Shard};
use crate::data::DataPaths;
use crate::device::DeviceSpec;
use crate::error::bad_input;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum SweepCommand {
    /// Print a grid's runs (count, axes, run ids, status) without running anything.
    Plan(PlanArgs),
    /// Run a grid's unfinished runs; finished runs are skipped, failed ones retried.
    /// Ctrl-C once: start no new runs and let those in flight finish; twice: abandon them.
    Run(RunArgs),
    /// Write an sbatch array script running one shard of the grid per array task.
    Slurm(SlurmArgs),
    /// Seal the grid's finished records written before records carried checksums (before
    /// 2026-12-07): each must verify against its folder; its metrics are left as they are.
    Seal(SealArgs),
}

#[derive(Args)]
pub struct SealArgs {
    #[command(flatten)]
    pub grid: GridArgs,
}

/// Which runs: the grid, a trial scale, a shard.
#[derive(Args, Clone)]
pub struct GridArgs {
    /// A grid name (experiments/<name>.toml) or the path of a grid file.
    pub grid: String,
    /// `quick` scales the grid down for a trial: the grid's `[trial]` caps, or at most 3
    /// epochs, 1000 users (100 on MovieLens: about 10k training targets either way) and the
    /// first seed where it has none (the flags below override them).
    #[arg(long, value_enum, default_value_t = Budget::Full)]
    pub budget: Budget,
    /// Cap every run's maximum number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Cap every run's number of users (the first N).
    #[arg(long)]
    pub max_users: Option<usize>,
    /// Keep only the grid's first N seeds.
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Only shard i of n (0 <= i < n): runs sorted by run id, every n-th from the i-th.
    #[arg(long)]
    pub shard: Option<Shard>,
    /// Reports folder; records go to <out>/<grid>/runs/<run_id>/ (<grid>.trial when scaled).
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
}

impl GridArgs {
    pub fn plan(&self) -> Result<(Plan, Store)> {
        let plan = Plan::scaled(&self.grid, self.budget, (self.epochs, self.max_users, self.seeds), self.shard)?;
        let store = Store::for_plan(&self.out, &plan);
        Ok((plan, store))
    }
}

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    #[command(flatten)]
    pub ignored: IgnoredRunFlags,
}

/// `sweep run`'s own flags, accepted and ignored by `sweep plan`, so that `just sweep NAME
/// ARGS` can hand the same flags to both.
#[derive(Args)]
pub struct IgnoredRunFlags {
    #[arg(long, hide = true)]
    pub jobs: Option<usize>,
    #[arg(long, hide = true)]
    pub run_threads: Option<usize>,
    #[arg(long, hide = true)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    /// Runs at the same time (default: the thread budget / --run-threads, at most one per run).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Threads inside each run (default: 1, or the threads left over when there are fewer
    /// runs than threads). The global --threads is the total budget.
    #[arg(long)]
    pub run_threads: Option<usize>,
    /// No progress bar (one line per finished run is printed either way).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct SlurmArgs {
    #[command(flatten)]
    pub grid: GridArgs,
    #[command(flatten)]
    pub slurm: SlurmOptions,
    /// Where to write the script (default: <out>/<grid>/slurm.sbatch).
    #[arg(long)]
    pub script: Option<PathBuf>,
}

/// How a sweep command ended, for the exit code.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Stopped by Ctrl-C / SIGTERM before every run was started (exit code 130).
    Interrupted,
}

/// A check of the grid by a later stage, run before anything is planned or trained (the
/// report's layout: a typo in `[report]` is reported before a long sweep, not after it).
pub type GridCheck<'a> = &'a dyn Fn(&Plan) -> Result<()>;

/// Runs a sweep subcommand. `threads` is the global `--threads` (the total thread budget).
pub fn run(
    cmd: SweepCommand,
    paths: &DataPaths,
    threads: Option<usize>,
    device: DeviceSpec,
    check: GridCheck,
) -> Result<Outcome> {
    match cmd {
        SweepCommand::Plan(a) => {
            let (plan, store) = a.grid.plan()?;
            check(&plan)?;
            let costs = estimate_costs(&plan, &a.grid.out, paths);
            print!("{}", plan.render(&store, &costs));
            Ok(Outcome::Done)
        }
        SweepCommand::Run(a) => sweep_run(a, paths, threads, device, check),
        SweepCommand::Seal(a) => {
            let (plan, store) = a.grid.plan()?;
            let (mut sealed, mut already) = (0, 0);
            for run in &plan.all {
                let dir = store.runs_dir().join(&run.run_id);
                if dir.join("metrics.json").is_file() {
                    if crate::results::record::RunRecord::seal_legacy(&dir)? {
                        sealed += 1;
                    } else {
                        already += 1;
                    }
                }
            }
            println!("sealed {sealed} records ({already} were sealed already) in {}", store.runs_dir().display());
            Ok(Outcome::Done)
        }
        SweepCommand::Slurm(a) => {
            if a.grid.shard.is_some() {
                return Err(bad_input("--shard: the script gives every array task its own shard"));
            }
            a.slurm.check()?;
            let (plan, store) = a.grid.plan()?;
            check(&plan)?;
            let abs = |p: &Path| std::path::absolute(p).with_context(|| format!("resolving {}", p.display()));
            let workdir = std::env::current_dir().context("reading the working directory")?;
            let binary = std::env::current_exe().context("locating the kdsr binary")?;
            let log_dir = abs(&store.root.join("slurm"))?;
            // The tasks may start on another node: pass the data and cache folders on, absolute.
            let data = DataPaths { data_dir: abs(&paths.data_dir)?, cache_dir: abs(&paths.cache_dir)? };
            let (text, tasks) = slurm::script(
                &plan,
                &a.slurm,
                &data,
                &binary,
                &workdir,
                &abs(&plan.grid.source.path)?,
                &abs(&a.grid.out)?,
                &log_dir,
            )?;
            let path = a.script.unwrap_or_else(|| store.root.join("slurm.sbatch"));
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
            crate::io::write_atomic(&path, text.as_bytes())?;
            println!(
                "wrote {} ({} runs in {tasks} array tasks of {} CPUs); submit with: sbatch {}",
                path.display(),
                plan.all.len(),
                a.slurm.cpus_per_task,
                slurm::quote(&path.display().to_string())
            );
            Ok(Outcome::Done)
        }
    }
}

/// A record in the grid's folder that does not verify (copied from another run, edited after
/// the run, a sealed file changed) stops the sweep before anything trains, as it stops
/// `report` and `gate`: retraining over it would replace the evidence without a word.
fn refuse_records_that_do_not_verify(plan: &Plan, store: &Store) -> Result<()> {
    for run in &plan.runs {
        let dir = store.runs_dir().join(&run.run_id);
        if dir.join("metrics.json").is_file() {
            crate::results::record::RunRecord::read(&dir)
                .map_err(|e| bad_input(format!("{e:#}; remove {} to train the run again", dir.display())))?;
        }
    }
    Ok(())
}

fn sweep_run(
    a: RunArgs,
    paths: &DataPaths,
    threads: Option<usize>,
    device: DeviceSpec,
    check: GridCheck,
) -> Result<Outcome> {
    let (plan, store) = a.grid.plan()?;
    check(&plan)?;
    refuse_records_that_do_not_verify(&plan, &store)?;
    let pending = plan.runs.iter().filter(|r| store.status(&r.run_id) != RunStatus::Finished).count();
    let mut workers = Workers::choose(threads, a.jobs, a.run_threads, pending)?;
    let costs = estimate_costs(&plan, &a.grid.out, paths);
    let statuses: Vec<RunStatus> = plan.runs.iter().map(|r| store.status(&r.run_id)).collect();
    eprint!("{}", super::plan::cost_summary(&plan.runs, &statuses, &costs));
    if device.is_gpu() {
        // One run at a time on a GPU; its threads serve the CPU side (data, evaluation ranks).
        if a.jobs.is_some_and(|j| j > 1) {
            return Err(bad_input(format!(
                "--jobs {}: a sweep on {device} runs one run at a time",
                a.jobs.unwrap_or(1)
            )));
        }
        workers = Workers::choose(threads, Some(1), a.run_threads, 1)?;
    }
    let device = device.open()?;
    let stop = Arc::new(AtomicBool::new(false));
    install_interrupt_handler(stop.clone())?;
    let opts = SweepOptions { workers, paths: paths.clone(), device, stop: stop.clone(), progress: !a.quiet };
    let s = scheduler::run(&plan, &store, &opts)?;
    eprintln!(
        "sweep {}: {} finished now, {} skipped (finished before), {} failed, {} not started; {:.0} s",
        plan.grid.name,
        s.finished,
        s.skipped,
        s.failed.len(),
        s.not_started,
        s.seconds
    );
    for (id, reason) in &s.failed {
        eprintln!("  failed: {id}: {}", reason.lines().next().unwrap_or(""));
    }
    if !s.elsewhere.is_empty() {
        eprintln!(
            "{} run{} left to other processes (in training or finished there): {}",
            s.elsewhere.len(),
            if s.elsewhere.len() == 1 { "" } else { "s" },
            s.elsewhere.join(", ")
        );
    }
    if s.not_started > 0 {
        eprintln!("interrupted: run the same command again to finish the grid");
        return Ok(Outcome::Interrupted);
    }
    if !s.failed.is_empty() {
        anyhow::bail!(
            "{} of {} runs failed (reasons in {}/<run_id>/failed.json); run the sweep again to retry them",
            s.failed.len(),
            s.total,
            store.runs_dir().display()
        );
    }
    Ok(Outcome::Done)
}

/// Each of the plan's runs' cost, estimated from every grid's records under `out`.
fn estimate_costs(plan: &Plan, out: &Path, paths: &DataPaths) -> Vec<cost::Estimate> {
    let history = cost::History::load(out);
    let work = cost::WorkTable::new(paths);
    plan.runs.iter().map(|r| history.estimate(&r.config, &|c| work.get(c))).collect()
}

/// First Ctrl-C (or SIGTERM): start no new runs. Second: exit at once; runs in flight leave
/// only their work folder, which the next sweep removes.
fn install_interrupt_handler(stop: Arc<AtomicBool>) -> Result<()> {
    let count = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if count.fetch_add(1, Ordering::SeqCst) == 0 {
            stop.store(true, Ordering::SeqCst);
            eprintln!(
                "\ninterrupt: starting no new runs; waiting for the runs in flight (interrupt again to abandon them)"
            );
        } else {
            eprintln!("\ninterrupt: abandoning the runs in flight (no records written for them)");
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")
}

/// `just sweep <grid> <flags>`: the command that (re)produces a grid's records.
pub fn reproduce_command(a: &GridArgs, plan: &Plan) -> String {
    let mut parts = vec!["just sweep".to_string(), a.grid.clone()];
    parts.extend(plan.scale.to_flags());
    parts.join(" ")
}
