//! Runs a plan's unfinished runs in this process: `jobs` runs at a time, each confined to its
//! own rayon pool of `threads_per_run` threads.
//!
//! Why in-process rather than one `kdsr train` subprocess per run: each dataset is loaded once
//! and shared by every run that needs it (workers wait for one load instead of repeating it),
//! and a run's failure (error, NaN loss, panic) is caught and recorded while the sweep goes
//! on. What a process cannot isolate (an abort, the OOM killer) ends the sweep; the next sweep
//! resumes where it stopped, since records only appear whole.
//!
//! Confinement (checked in candle-core 0.11.1's source): rayon-parallel code (our kernels,
//! evaluation) runs in the pool installed around the run, and candle's matmul (gemm) splits
//! its work into `RAYON_NUM_THREADS` tasks on the current pool, so the sweep sets that variable
//! to `threads_per_run` for the whole process (every run of one sweep has the same thread
//! count). candle's element-wise ops over 64K+ elements use a process-wide "barrier pool" of
//! `CANDLE_NUM_THREADS - 1` threads that serialises concurrent callers; with several runs in
//! parallel the sweep sets `CANDLE_NUM_THREADS=1`, so those ops run on the run's own thread
//! (with one thread per run, the default, that pool is empty anyway). candle reads
//! `RAYON_NUM_THREADS` at every matmul and `CANDLE_NUM_THREADS` when that pool starts (the
//! first large element-wise op), so both are set before the first run of the process.

use super::plan::Plan;
use super::store::{RunStatus, Store};
use crate::data::{DataPaths, Dataset, DatasetRef};
use crate::error::bad_input;
use crate::grid::ResolvedRun;
use crate::io::hostname;
use crate::io::write_atomic;
use crate::results::record;
use crate::train::{train_run, RunOptions, RunOutcome};
use anyhow::{Context, Result};
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// How the CPU threads are split between parallel runs and threads inside each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workers {
    /// Runs trained at the same time.
    pub jobs: usize,
    /// Threads inside each run.
    pub threads_per_run: usize,
}

impl Workers {
    /// `total` threads (default: all cores) split for `n_runs` runs. By default as many
    /// single-thread runs in parallel as there are threads (candle's backward pass barely
    /// gains from more threads), with leftover threads given to the runs when there are fewer
    /// runs than threads. `jobs` or `per_run` fix one side of the split.
    pub fn choose(total: Option<usize>, jobs: Option<usize>, per_run: Option<usize>, n_runs: usize) -> Result<Self> {
        for (flag, v) in [("--threads", total), ("--jobs", jobs), ("--run-threads", per_run)] {
            if v == Some(0) {
                return Err(bad_input(format!("{flag} must be at least 1")));
            }
        }
        let total = total.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let n_runs = n_runs.max(1);
        Ok(match (jobs, per_run) {
            (Some(j), Some(k)) => Self { jobs: j, threads_per_run: k },
            (Some(j), None) => Self { jobs: j, threads_per_run: (total / j).max(1) },
            (None, Some(k)) => Self { jobs: (total / k).clamp(1, n_runs), threads_per_run: k },
            (None, None) => {
                let jobs = total.min(n_runs);
                Self { jobs, threads_per_run: (total / jobs).max(1) }
            }
        })
    }
}

pub struct SweepOptions {
    pub workers: Workers,
    pub paths: DataPaths,
    /// Where runs train (a GPU sweep has one worker).
    pub device: candle_core::Device,
    /// Set (by Ctrl-C) to start no further runs; runs in flight finish.
    pub stop: Arc<AtomicBool>,
    /// Show a progress bar over runs (log lines are printed either way).
    pub progress: bool,
}

/// What a sweep did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Runs of this shard.
    pub total: usize,
    /// Already finished before this sweep.
    pub skipped: usize,
    pub finished: usize,
    /// (run id, reason)
    pub failed: Vec<(String, String)>,
    /// Left unstarted because the sweep was stopped.
    pub not_started: usize,
    /// Left to other processes: in training there (their lock was held) or finished there
    /// since this sweep planned.
    pub elsewhere: Vec<String>,
    pub seconds: f64,
}

/// Trains every unfinished run of `plan` and records it in `store`.
pub fn run(plan: &Plan, store: &Store, opts: &SweepOptions) -> Result<Summary> {
    store.prepare(plan)?;
    let t0 = Instant::now();
    let mut todo: Vec<&ResolvedRun> = Vec::new();
    let mut retried = 0;
    for r in &plan.runs {
        match store.status(&r.run_id) {
            RunStatus::Finished => {}
            RunStatus::Failed(_) => {
                retried += 1;
                todo.push(r);
            }
            RunStatus::Pending => todo.push(r),
        }
    }
    let mut summary = Summary { total: plan.runs.len(), skipped: plan.runs.len() - todo.len(), ..Default::default() };
    let w = opts.workers;
    eprintln!(
        "sweep {}: {} runs, {} already finished, {} to run ({retried} failed before); {} at a time, {} thread{} each; records in {}",
        plan.grid.name,
        summary.total,
        summary.skipped,
        todo.len(),
        w.jobs,
        w.threads_per_run,
        if w.threads_per_run == 1 { "" } else { "s" },
        store.runs_dir().display()
    );
    for w in plan.missing_files() {
        eprintln!("warning: {w}");
    }
    if todo.is_empty() {
        store.finish();
        return Ok(summary);
    }
    // Group runs by dataset (stable), so each dataset is loaded once and freed when done.
    let first_of: HashMap<&DatasetRef, usize> =
        plan.runs.iter().enumerate().rev().map(|(i, r)| (&r.config.dataset, i)).collect();
    todo.sort_by_key(|r| first_of[&r.config.dataset]);

    std::env::set_var("RAYON_NUM_THREADS", w.threads_per_run.to_string());
    if w.jobs > 1 {
        // See the module docs: keep candle's element-wise ops on each run's own thread.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let bar =
        if opts.progress { indicatif::ProgressBar::new(todo.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} runs, ETA {eta_precise} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let ctx = Ctx {
        plan,
        store,
        cache: DataCache::new(&opts.paths, &todo),
        queue: Mutex::new(todo.iter().copied().collect()),
        stop: &opts.stop,
        device: opts.device.clone(),
        bar,
        n_todo: todo.len(),
        done: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        workers: w,
        outcomes: Mutex::new(Vec::new()),
        elsewhere: Mutex::new(Vec::new()),
    };
    let errors: Vec<anyhow::Error> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..w.jobs)
            .map(|i| {
                s.spawn({
                    let ctx = &ctx;
                    move || ctx.worker(i)
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("worker panicked"))).err())
            .collect()
    });
    ctx.bar.finish_and_clear();
    store.finish();
    for (run_id, result) in ctx.outcomes.into_inner().unwrap_or_default() {
        match result {
            Ok(()) => summary.finished += 1,
            Err(reason) => summary.failed.push((run_id, reason)),
        }
    }
    summary.not_started = ctx.queue.into_inner().map(|q| q.len()).unwrap_or(0);
    summary.elsewhere = ctx.elsewhere.into_inner().unwrap_or_default();
    summary.seconds = t0.elapsed().as_secs_f64();
    if let Some(e) = errors.into_iter().next() {
        return Err(e.context("the sweep stopped: a record could not be written"));
    }
    Ok(summary)
}

/// Datasets loaded once per sweep and dropped after their last run.
struct DataCache<'a> {
    paths: &'a DataPaths,
    slots: Mutex<HashMap<DatasetRef, Slot>>,
}

/// One dataset: its load (done once, by whichever worker comes first; the others wait for
/// it) and the number of runs still to use it.
#[derive(Default)]
struct Slot {
    load: Arc<OnceLock<Result<Arc<Dataset>, String>>>,
    runs_left: usize,
}

impl<'a> DataCache<'a> {
    fn new(paths: &'a DataPaths, runs: &[&ResolvedRun]) -> Self {
        let mut slots: HashMap<DatasetRef, Slot> = HashMap::new();
        for r in runs {
            slots.entry(r.config.dataset.clone()).or_default().runs_left += 1;
        }
        Self { paths, slots: Mutex::new(slots) }
    }

    /// The dataset, loading it if no worker has; `log` gets a line when this call loaded it.
    fn get(&self, d: &DatasetRef, log: impl FnOnce(String)) -> Result<Arc<Dataset>, String> {
        let cell = self.slots.lock().expect("cache lock").entry(d.clone()).or_default().load.clone();
        let mut loaded = None;
        let result = cell
            .get_or_init(|| {
                let t0 = Instant::now();
                let ds = Dataset::load(d, self.paths).map(Arc::new).map_err(|e| format!("{e:#}"));
                loaded = Some(t0.elapsed().as_secs_f64());
                ds
            })
            .clone();
        if let (Some(secs), Ok(ds)) = (loaded, &result) {
            log(format!(
                "loaded dataset {d} ({} users, {} items) in {secs:.2} s, shared by its runs",
                ds.sequences.len(),
                ds.n_items
            ));
        }
        result
    }

    fn release(&self, d: &DatasetRef) {
        let mut slots = self.slots.lock().expect("cache lock");
        if let Some(slot) = slots.get_mut(d) {
            slot.runs_left = slot.runs_left.saturating_sub(1);
            if slot.runs_left == 0 {
                slots.remove(d);
            }
        }
    }
}

struct Ctx<'a> {
    plan: &'a Plan,
    store: &'a Store,
    cache: DataCache<'a>,
    queue: Mutex<VecDeque<&'a ResolvedRun>>,
    stop: &'a AtomicBool,
    device: candle_core::Device,
    bar: indicatif::ProgressBar,
    n_todo: usize,
    done: AtomicUsize,
    in_flight: AtomicUsize,
    workers: Workers,
    outcomes: Mutex<Vec<(String, Result<(), String>)>>,
    elsewhere: Mutex<Vec<String>>,
}

impl Ctx<'_> {
    fn worker(&self, index: usize) -> Result<()> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.workers.threads_per_run)
            .thread_name(move |i| format!("sweep-{index}-{i}"))
            .build()
            .context("building a worker's thread pool")?;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let Some(run) = self.queue.lock().expect("queue lock").pop_front() else { return Ok(()) };
            let lock = self.store.lock_run(&run.run_id).inspect_err(|_| self.stop.store(true, Ordering::SeqCst))?;
            let why = match &lock {
                None => Some("in training in another process"),
                Some(_) if self.store.status(&run.run_id) == RunStatus::Finished => {
                    Some("finished by another process meanwhile")
                }
                Some(_) => None,
            };
            if let Some(why) = why {
                self.bar.suspend(|| eprintln!("skipped {}  {} | {why}", run.run_id, self.plan.describe(run)));
                self.bar.inc(1);
                self.elsewhere.lock().expect("elsewhere lock").push(run.run_id.clone());
                continue;
            }
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            self.bar.set_message(format!("({} running)", self.in_flight.load(Ordering::SeqCst)));
            let started = Instant::now();
            let result = pool.install(|| self.train(run));
            self.cache.release(&run.config.dataset);
            let recorded = self.record(run, &result, started.elapsed().as_secs_f64());
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Err(e) = recorded {
                self.stop.store(true, Ordering::SeqCst);
                return Err(e);
            }
            let n = self.done.fetch_add(1, Ordering::SeqCst) + 1;
            let secs = started.elapsed().as_secs_f64();
            let line = match &result {
                Ok(o) => format!(
                    "[{n}/{}] done   {}  {} | test ndcg@20 {:.2}% hr@20 {:.2}% | best epoch {} of {} | {secs:.0} s",
                    self.n_todo,
                    run.run_id,
                    self.plan.describe(run),
                    o.test.ndcg[2],
                    o.test.hr[2],
                    o.best_epoch,
                    o.epochs.len()
                ),
                Err(reason) => format!(
                    "[{n}/{}] FAILED {}  {} | {}",
                    self.n_todo,
                    run.run_id,
                    self.plan.describe(run),
                    reason.lines().next().unwrap_or("")
                ),
            };
            self.bar.suspend(|| eprintln!("{line}"));
            self.bar.inc(1);
            self.bar.set_message(format!("({} running)", self.in_flight.load(Ordering::SeqCst)));
            self.outcomes.lock().expect("outcomes lock").push((run.run_id.clone(), result.map(|_| ())));
            drop(lock);
        }
    }

    /// Trains one run into this process's work folder; errors and panics become the reason.
    fn train(&self, run: &ResolvedRun) -> Result<RunOutcome, String> {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let full = self.cache.get(&run.config.dataset, |line| self.bar.suspend(|| eprintln!("{line}")))?;
            let sliced;
            let ds: &Dataset = match run.config.max_users {
                Some(n) if n < full.sequences.len() => {
                    sliced = (*full).clone().truncate_users(n);
                    &sliced
                }
                _ => &full,
            };
            self.store.claim_resumable(&run.run_id).map_err(|e| format!("{e:#}"))?;
            let opts = RunOptions {
                device: self.device.clone(),
                progress: false,
                paths: self.cache.paths.clone(),
                stop_after: None,
            };
            train_run(&run.config, ds, &self.store.work_dir(), &opts).map_err(|e| format!("{e:#}"))
        }));
        attempt.unwrap_or_else(|payload| {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(format!("panicked: {msg}"))
        })
    }

    /// Completes the run's folder (run.toml, sweep.json, failed.json) and moves it into runs/.
    fn record(&self, run: &ResolvedRun, result: &Result<RunOutcome, String>, seconds: f64) -> Result<()> {
        let dir = self.store.work_dir().join(&run.run_id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if !dir.join("run.toml").is_file() {
            record::write_run_toml(&dir, &run.config)?;
        }
        let now = record::unix_now();
        if let Err(reason) = result {
            record::write_failed(&dir, &run.run_id, reason)?;
        }
        let point: serde_json::Map<String, serde_json::Value> =
            self.plan.point(run).into_iter().map(|(k, v)| (k, v.into())).collect();
        let sweep = json!({
            "run_id": run.run_id,
            "status": if result.is_ok() { "finished" } else { "failed" },
            "grid": self.plan.grid.name,
            "grid_file": self.plan.grid.source.path,
            "point": point,
            "seed": run.config.seed,
            "scale": self.plan.scale,
            "scaled_down": !self.plan.scale.is_full(),
            "shard": self.plan.shard.map(|s| s.to_string()),
            "host": hostname(),
            "pid": std::process::id(),
            "parallel_runs": self.workers.jobs,
            "threads_per_run": self.workers.threads_per_run,
            "seconds": seconds,
            "ended_at_unix": now,
        });
        write_atomic(&dir.join("sweep.json"), serde_json::to_string_pretty(&sweep)?.as_bytes())?;
        self.store.publish(&run.run_id)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_split() {
        let w = |t, j, k, n| Workers::choose(Some(t), j, k, n).unwrap();
        assert_eq!(w(2, None, None, 9), Workers { jobs: 2, threads_per_run: 1 });
        assert_eq!(w(8, None, None, 2), Workers { jobs: 2, threads_per_run: 4 });
        assert_eq!(w(8, None, Some(2), 9), Workers { jobs: 4, threads_per_run: 2 });
        assert_eq!(w(8, Some(3), None, 9), Workers { jobs: 3, threads_per_run: 2 });
        assert_eq!(w(1, None, Some(4), 9), Workers { jobs: 1, threads_per_run: 4 });
        assert!(Workers::choose(Some(2), Some(0), None, 3).is_err());
    }
}
