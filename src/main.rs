//! The `kdsr` command line.

use anyhow::Result;
use clap::{Parser, Subcommand};
use kdsr::data::DataPaths;
use kdsr::error::{bad_input, is_bad_input};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc malloc: a training step allocates and frees hundreds of
/// megabyte-sized tensors, which glibc serves with fresh `mmap`s (a page fault per 4 KiB on
/// every touch) under a threshold that moves with the allocation history; measured in
/// reports/bench/README.md (GRU4Rec's step 1.5 s -> 0.5 s, and it no longer varies between
/// builds).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (position 15 of `mi_option_e` in mimalloc.h, v3), whose
/// documented default in that version is 1000 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped instead of returning it to the OS after a delay: every step
/// frees and reallocates the same tensor sizes, and re-faulting purged (huge) pages cost
/// ~5% of a training epoch (page faults per 1-epoch run: ~50,000 -> ~1,200). Left alone if
/// the option at that position does not hold its documented default (another mimalloc).
fn keep_freed_memory() {
    // SAFETY: plain option getters/setters of the linked mimalloc; no memory is touched.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 1000 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

#[derive(Parser)]
#[command(
    name = "kdsr",
    version,
    about = "Reproduce and extend KDSR (ECIR 2024): sequential recommendation with correlation supervision"
)]
struct Cli {
    /// Directory with the shared datasets (default: $KDSR_DATA_DIR, else ../shared/data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Directory with data fetched by `just data` (default: $KDSR_CACHE_DIR, else .cache).
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Worker threads (default: all cores, or $RAYON_NUM_THREADS); for `sweep run`, the total
    /// budget split between parallel runs.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Where to train: cpu (default), cuda or cuda:N (a CUDA build); a sweep on a GPU runs one
    /// run at a time.
    #[arg(long, global = true, default_value = "cpu")]
    device: kdsr::device::DeviceSpec,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dataset commands.
    Data {
        #[command(subcommand)]
        command: kdsr::data::cli::DataCommand,
    },
    /// Item feature matrices (text, attributes, image) for the modality tables.
    Features {
        #[command(subcommand)]
        command: kdsr::modality::cli::FeaturesCommand,
    },
    /// Train and evaluate one model; writes reports/runs/<run_id>/.
    Train(Box<kdsr::train::cli::TrainArgs>),
    /// Time a SASRec training step and a full evaluation on Beauty's shapes, optionally
    /// against the PyTorch reference.
    Bench(kdsr::bench::BenchArgs),
    /// Experiment grids (experiments/<name>.toml): plan, run (resumable), Slurm script.
    Sweep {
        #[command(subcommand)]
        command: kdsr::sweep::cli::SweepCommand,
    },
    /// Aggregate a grid's records into reports/<grid>/: summary (CSV, Parquet), the table in
    /// the paper's layout (Markdown, LaTeX, CSV), figures (PNG, SVG) and report.md.
    /// `kdsr report claims` instead judges the claims of experiments/claims.toml on every
    /// grid's records (reports/claims/; `--readme README.md` rewrites its generated blocks).
    Report(kdsr::report::cli::ReportArgs),
    /// The CI metric gate: a grid's summary against a committed baseline; exit 1 on a regression.
    Gate(kdsr::report::cli::GateArgs),
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(n) = cli.threads {
        if n == 0 {
            return Err(bad_input("--threads must be at least 1"));
        }
        // A sweep splits the budget itself (threads per run).
        if !matches!(cli.command, Command::Sweep { .. }) {
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
    }
    let paths = DataPaths::resolve(cli.data_dir, cli.cache_dir);
    if matches!(cli.command, Command::Sweep { .. }) {
        // The sweep installs a pool per worker itself.
        return dispatch(cli.command, &paths, cli.threads, cli.device);
    }
    // Everything else runs on a worker of one pool: rayon-parallel code called from outside a
    // pool is injected into it and the caller sleeps until a worker wakes up and finishes, a
    // futex round trip per parallel op (about 10% of a 1-thread training epoch in `perf`).
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cli.threads.unwrap_or(0))
        .stack_size(WORKER_STACK)
        .thread_name(|i| format!("kdsr-{i}"))
        .build()?;
    let (command, device) = (cli.command, cli.device);
    pool.install(move || dispatch(command, &paths, None, device))
}

/// Stack of the pool's threads (rayon's default is the platform's 2 MiB; the main thread gets 8).
const WORKER_STACK: usize = 16 << 20;

fn dispatch(
    command: Command,
    paths: &DataPaths,
    threads: Option<usize>,
    device: kdsr::device::DeviceSpec,
) -> Result<ExitCode> {
    match command {
        Command::Data { command } => kdsr::data::cli::run(command, paths),
        Command::Features { command } => kdsr::modality::cli::run(command, paths),
        Command::Train(a) => kdsr::train::cli::run(*a, paths, device),
        Command::Bench(a) => kdsr::bench::run(&a, paths),
        Command::Report(a) => return kdsr::report::cli::report(&a),
        Command::Gate(a) => return kdsr::report::cli::gate(&a),
        Command::Sweep { command } => {
            return Ok(
                match kdsr::sweep::cli::run(command, paths, threads, device, &|plan| {
                    kdsr::report::Section::of(plan).map(|_| ())
                })? {
                    kdsr::sweep::cli::Outcome::Done => ExitCode::SUCCESS,
                    kdsr::sweep::cli::Outcome::Interrupted => ExitCode::from(130),
                },
            )
        }
    }
    .map(|()| ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    keep_freed_memory();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(if is_bad_input(&err) { 2 } else { 1 })
        }
    }
}
