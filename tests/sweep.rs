//! `kdsr sweep` end to end on small real slices of Beauty: plans and shards, bad grid files,
//! failures recorded and retried, Ctrl-C, and resume after SIGKILL with every run recorded
//! exactly once.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Sweep {
    dir: tempfile::TempDir,
    grid: PathBuf,
}

impl Sweep {
    fn new(name: &str, text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let grid = dir.path().join(format!("{name}.toml"));
        std::fs::write(&grid, text).unwrap();
        Self { dir, grid }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("reports")
    }

    fn runs_dir(&self) -> PathBuf {
        self.out().join(self.grid.file_stem().unwrap()).join("runs")
    }

    fn cmd(&self, sub: &str, extra: &[&str]) -> Command {
        let mut c = common::kdsr_bin();
        c.args(["sweep", sub, self.grid.to_str().unwrap(), "--out", self.out().to_str().unwrap()]).args(extra);
        c
    }

    fn run(&self, sub: &str, extra: &[&str]) -> (i32, String, String) {
        let out: Output = self.cmd(sub, extra).output().unwrap();
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        assert!(!stderr.contains("panicked"), "panic: {stderr}");
        (out.status.code().unwrap_or(-1), stdout, stderr)
    }

    fn spawn(&self, extra: &[&str]) -> Child {
        self.cmd("run", extra).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
    }

    /// Run ids of `sweep plan`, in plan order.
    fn plan_ids(&self, extra: &[&str]) -> Vec<String> {
        let (code, stdout, stderr) = self.run("plan", extra);
        assert_eq!(code, 0, "{stderr}");
        stdout
            .lines()
            .filter_map(|l| l.split_whitespace().last())
            .filter(|w| w.starts_with("beauty-"))
            .map(String::from)
            .collect()
    }

    /// Entries of runs/ (the record folders).
    fn records(&self) -> BTreeSet<String> {
        match std::fs::read_dir(self.runs_dir()) {
            Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect(),
            Err(_) => BTreeSet::new(),
        }
    }

    fn finished(&self) -> BTreeSet<String> {
        self.records().into_iter().filter(|r| self.runs_dir().join(r).join("metrics.json").is_file()).collect()
    }
}

/// Every record folder is whole: run.toml, sweep.json, and metrics.json or failed.json; no
/// temporary files.
fn assert_whole(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let run = e.unwrap().path();
        let names: BTreeSet<String> =
            std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
        assert!(names.contains("run.toml") && names.contains("sweep.json"), "{}: {names:?}", run.display());
        assert!(names.contains("metrics.json") ^ names.contains("failed.json"), "{}: {names:?}", run.display());
        assert!(!names.iter().any(|n| n.starts_with('.')), "temporary file in {}: {names:?}", run.display());
    }
}

/// Run folders in the work folders of sweep processes (`.work/<host>.<pid>/<run_id>`).
fn runs_in_flight(work: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for proc_dir in std::fs::read_dir(work).into_iter().flatten().filter_map(|e| e.ok()) {
        for run in std::fs::read_dir(proc_dir.path()).into_iter().flatten().filter_map(|e| e.ok()) {
            out.push(run.file_name().to_string_lossy().to_string());
        }
    }
    out
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Pop runs over several seeds, then 1-epoch SASRec runs, on the first 300 Beauty users.
const SMALL: &str = r#"
seeds = [1, 2, 3]
[fixed]
dataset = "beauty"
max_users = 300
train.max_epochs = 1
[axes]
model = ["pop", "sasrec"]
"#;

#[test]
fn plan_shards_and_budget() {
    let s = Sweep::new("small", SMALL);
    let ids = s.plan_ids(&[]);
    assert_eq!(ids.len(), 6);
    assert!(ids[..3].iter().all(|i| i.starts_with("beauty-pop-")) && ids[3].starts_with("beauty-sasrec-"));
    // Shards partition the grid exactly, whatever n.
    for n in [1usize, 2, 4, 7] {
        let mut union = Vec::new();
        for i in 0..n {
            union.extend(s.plan_ids(&["--shard", &format!("{i}/{n}")]));
        }
        let set: BTreeSet<&String> = union.iter().collect();
        assert_eq!(union.len(), ids.len(), "shards of {n} overlap");
        assert_eq!(set, ids.iter().collect(), "shards of {n} miss runs");
    }
    // A scaled-down plan has other run ids (other RunConfigs) and its own records folder.
    let (code, stdout, _) = s.run("plan", &["--budget", "quick", "--max-users", "200"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("2 runs") && stdout.contains("small.trial/runs"), "{stdout}");
    let trial = s.plan_ids(&["--budget", "quick", "--max-users", "200"]);
    assert!(trial.iter().all(|t| !ids.contains(t)));
    // Bad flags are bad input.
    let (code, _, err) = s.run("plan", &["--shard", "3/3"]);
    assert_eq!(code, 2, "{err}");
    // A Slurm array script with one shard per task.
    let script = s.dir.path().join("small.sbatch");
    let (code, stdout, err) = s.run("slurm", &["--tasks", "3", "--script", script.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("sbatch"), "{stdout}");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("#SBATCH --array=0-2") && text.contains("--shard \"${SLURM_ARRAY_TASK_ID}/3\""), "{text}");
    // The data and cache folders travel with the script, absolute (a node need not share the
    // working directory's relative layout, nor the build directory).
    let data = std::path::absolute(common::paths().data_dir).unwrap();
    assert!(text.contains(&format!("--data-dir {}", data.display())), "{text}");
    assert!(Command::new("bash").arg("-n").arg(&script).status().unwrap().success());
}

#[test]
fn bad_grid_files_name_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        ("[fixed]\ndataset = \"beauty\"\n[axis]\nmodel = [\"pop\"]\n", ":3: unknown field `axis`"),
        (
            "[fixed]\ndataset = \"beauty\"\n[axes]\nmodel = [\"pop\", \"sasrac\"]\n",
            ":4: model: unknown variant `sasrac`",
        ),
        ("[fixed]\ndataset = \"beuty\"\nmodel = \"pop\"\n", ":2: dataset: unknown dataset `beuty`"),
        (
            "[fixed]\ndataset = \"beauty\"\nmodel = \"sasrec\"\n[axes]\ntrain.lr = [1e-3, \"fast\"]\n",
            ":5: train.lr: invalid type: string \"fast\"",
        ),
        (
            "[fixed]\ndataset = \"beauty\"\nmodel = \"pop\"\ntrain.lrr = 0.1\n",
            ":4: `train.lrr` is not a setting of any run",
        ),
        (
            "[fixed]\ndataset = \"beauty\"\n[axes]\nmodel.kind = [\"pop\", \"gru4rec\"]\nmodel.n_heads = [1, 2]\n",
            ":5: `model.n_heads` is not a setting of any run",
        ),
        (
            "[fixed]\ndataset = \"beauty\"\nmodel = \"sasrec\"\n[axes]\nmodel.hidden = [64, 63]\n",
            ":5: impossible combination (model.hidden=63, seed=2023): model.hidden (63) must be a multiple",
        ),
        (
            "[fixed]\ndataset = \"beauty\"\nmodel = \"pop\"\n[axes]\nprotocol = \"paper\"\n",
            ":5: axes: `protocol` must be a list",
        ),
        ("seeds = [1, 1]\n[fixed]\ndataset = \"beauty\"\nmodel = \"pop\"\n", ":1: seeds: 1 is listed twice"),
        (
            "[fixed]\ndataset = \"beauty\"\n[axes]\nmodel = [\"pop\"]\n[[exclude]]\nmodel = \"sasrec\"\n",
            ":6: exclude: model = sasrec matches no value of axis `model`",
        ),
        ("[fixed]\ndataset = \"beauty\"\n[axes]\nmodel = [\"pop\"]\nmodel.hidden = [1]\n", ":5: cannot extend"),
        (
            "[fixed]\ndataset = \"beauty\"\nmodel = \"pop\"\nseed = 4\n",
            ":4: fixed: `seed` is set by the top-level `seeds`",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let s = Sweep::new(&format!("bad{i}"), text);
        let (code, _, err) = s.run("plan", &[]);
        assert_eq!(code, 2, "case {i}: {err}");
        let want = format!("{}{want}", s.grid.display());
        assert!(err.contains(&want), "case {i}: expected `{want}` in:\n{err}");
        // `sweep run` checks the same way before running anything.
        let (code, _, _) = s.run("run", &[]);
        assert_eq!(code, 2);
        assert!(!s.out().join(format!("bad{i}")).exists());
    }
    let (code, _, err) = Sweep::new("x", SMALL).run("plan", &[]);
    assert_eq!(code, 0, "{err}");
    let out = common::kdsr_bin().args(["sweep", "plan", "no-such-grid"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no grid `no-such-grid`"));
}

#[test]
fn resume_after_sigkill_records_every_run_exactly_once() {
    let s = Sweep::new("small", SMALL);
    let ids: BTreeSet<String> = s.plan_ids(&[]).into_iter().collect();
    let work = s.runs_dir().parent().unwrap().join(".work");
    let mut child = s.spawn(&["--jobs", "1", "--quiet"]);
    // Kill it once the pop runs and the first SASRec run are recorded and the next SASRec run
    // is in flight (its folder exists in the process's work folder).
    let killed_mid_run =
        wait_until(Duration::from_secs(120), || s.finished().len() >= 4 && runs_in_flight(&work).len() == 1);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(killed_mid_run, "the sweep did not get far enough");
    assert_eq!(runs_in_flight(&work).len(), 1, "the half-trained run stays in the work folder");
    let before = s.finished();
    assert!(before.len() < ids.len(), "the sweep finished before it was killed");
    assert_whole(&s.runs_dir());
    let stamps: Vec<(String, String)> = before
        .iter()
        .map(|r| (r.clone(), std::fs::read_to_string(s.runs_dir().join(r).join("metrics.json")).unwrap()))
        .collect();

    let (code, _, err) = s.run("run", &["--jobs", "2"]);
    assert_eq!(code, 0, "{err}");
    // Both workers share one load of Beauty.
    assert_eq!(err.matches("loaded dataset beauty").count(), 1, "{err}");
    assert!(err.contains(&format!("{} already finished", before.len())), "{err}");
    assert_eq!(s.records(), ids, "runs/ must hold exactly the grid's runs");
    assert_eq!(s.finished(), ids);
    assert_whole(&s.runs_dir());
    // Runs finished before the kill were not run again.
    for (r, text) in stamps {
        assert_eq!(std::fs::read_to_string(s.runs_dir().join(&r).join("metrics.json")).unwrap(), text, "{r} rerun");
    }
    // The killed process's work folder is gone; a third sweep has nothing to do.
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0, "stale work folders left");
    let (code, _, err) = s.run("run", &[]);
    assert_eq!(code, 0);
    assert!(err.contains("0 to run"), "{err}");
    // Records carry the grid point and the full config.
    let any = ids.iter().find(|i| i.contains("sasrec")).unwrap();
    let sweep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.runs_dir().join(any).join("sweep.json")).unwrap()).unwrap();
    assert_eq!(sweep["point"]["model"], "sasrec");
    assert_eq!(sweep["grid"], "small");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.runs_dir().join(any).join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["config"]["max_users"], 300);
}

#[test]
fn failed_runs_are_recorded_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("later.txt");
    let grid = format!(
        "seeds = [1]\n[fixed]\nmodel = \"pop\"\nmax_users = 300\n[axes]\ndataset = [\"beauty\", \"seq:{}\"]\n",
        data.display()
    );
    let s = Sweep::new("flaky", &grid);
    let (code, _, err) = s.run("run", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("FAILED") && err.contains("1 of 2 runs failed"), "{err}");
    assert_eq!(s.records().len(), 2);
    assert_eq!(s.finished().len(), 1);
    assert_whole(&s.runs_dir());
    let failed = s.records().into_iter().find(|r| !r.starts_with("beauty")).unwrap();
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.runs_dir().join(&failed).join("failed.json")).unwrap())
            .unwrap();
    assert!(rec["reason"].as_str().unwrap().contains("later.txt"), "{rec}");
    let (_, plan, _) = s.run("plan", &[]);
    assert!(plan.contains("1 finished, 1 failed"), "{plan}");

    // The input appears; the next sweep retries the failed run only.
    let seqs: String = (1..=40)
        .map(|u| format!("{u} {} {} {} {} {}\n", u % 7 + 1, u % 5 + 8, u % 3 + 13, u % 4 + 16, u % 6 + 20))
        .collect();
    std::fs::write(&data, seqs).unwrap();
    let (code, _, err) = s.run("run", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("1 already finished, 1 to run (1 failed before)"), "{err}");
    assert_eq!(s.finished().len(), 2);
    assert_eq!(s.records().len(), 2);
    assert_whole(&s.runs_dir());
}

#[test]
fn ctrl_c_lets_runs_in_flight_finish() {
    let s = Sweep::new("small", SMALL);
    let ids = s.plan_ids(&[]);
    let work = s.runs_dir().parent().unwrap().join(".work");
    let mut child = s.spawn(&["--jobs", "1", "--quiet"]);
    // Interrupt while the first SASRec run is in flight (its folder exists in the work dir).
    let in_flight = wait_until(Duration::from_secs(120), || runs_in_flight(&work).iter().any(|r| r.contains("sasrec")));
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = child.wait().unwrap();
    assert!(in_flight, "no SASRec run started");
    assert_eq!(status.code(), Some(130));
    // The run in flight finished and was recorded; nothing after it started.
    let done = s.finished();
    assert_eq!(done.len(), 4, "{done:?}");
    assert_eq!(s.records(), done);
    assert_whole(&s.runs_dir());
    let (code, _, err) = s.run("run", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.finished().len(), ids.len());
}

/// Copies a report folder as a clone of the repository has it: the run records without their
/// checkpoints (`.gitignore` keeps `best.safetensors`, `.work/`, `plan.json` and `grid.toml`
/// out of git), and nothing generated.
fn copy_committed_records(from: &Path, to: &Path) {
    for run in std::fs::read_dir(from.join("runs")).unwrap().map(|e| e.unwrap().path()) {
        let dest = to.join("runs").join(run.file_name().unwrap());
        std::fs::create_dir_all(&dest).unwrap();
        for f in std::fs::read_dir(&run).unwrap().map(|e| e.unwrap().path()) {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            match name.as_str() {
                "run.toml" | "epochs.csv" | "metrics.json" | "sweep.json" | "failed.json" => {
                    std::fs::copy(&f, dest.join(&name)).unwrap();
                }
                "best.safetensors" => {}
                other => panic!("{}: a record file neither committed nor ignored: {other}", run.display()),
            }
        }
    }
}

/// The generated files of a report folder (everything but the records and the sweep's own
/// bookkeeping), with the folder's path replaced so that two folders compare.
fn report_files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let root = dir.to_string_lossy().to_string();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !["plan.json", "grid.toml"].iter().any(|n| p.ends_with(n)))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let bytes = match String::from_utf8(bytes) {
                Ok(text) => text.replace(&root, "<out>").into_bytes(),
                Err(e) => e.into_bytes(),
            };
            (p.file_name().unwrap().to_string_lossy().to_string(), bytes)
        })
        .collect()
}

#[test]
fn committed_records_rebuild_the_report_and_resume_elsewhere() {
    let s = Sweep::new("small", SMALL);
    let (code, _, err) = s.run("run", &["--quiet"]);
    assert_eq!(code, 0, "{err}");
    let report = |out: &Path| {
        let o = common::kdsr_bin()
            .args(["report", s.grid.to_str().unwrap(), "--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    report(&s.out());
    let first = report_files(s.runs_dir().parent().unwrap());
    assert!(first.contains_key("report.md") && first.contains_key("summary.parquet"), "{:?}", first.keys());

    // Another machine: a clone has only the committed record files.
    let other = tempfile::tempdir().unwrap();
    let grid_dir = other.path().join("small");
    copy_committed_records(s.runs_dir().parent().unwrap(), &grid_dir);
    report(other.path());
    let second = report_files(&grid_dir);
    assert_eq!(first.keys().collect::<Vec<_>>(), second.keys().collect::<Vec<_>>());
    for (name, bytes) in &first {
        assert!(&second[name] == bytes, "{name} differs when rebuilt from the committed records");
    }

    // A resumed sweep there runs only the missing run, and trains it to the same metrics.
    let gone = s.plan_ids(&[]).into_iter().find(|i| i.contains("sasrec")).unwrap();
    std::fs::remove_dir_all(grid_dir.join("runs").join(&gone)).unwrap();
    let o = common::kdsr_bin()
        .args(["sweep", "run", s.grid.to_str().unwrap(), "--out", other.path().to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("5 already finished, 1 to run"), "{err}");
    let read = |dir: &Path| kdsr::results::record::RunRecord::read(&dir.join(&gone)).unwrap();
    let (a, b) = (read(&s.runs_dir()), read(&grid_dir.join("runs")));
    assert_eq!((a.test, a.valid, a.best_epoch), (b.test, b.valid, b.best_epoch));
}

/// One SASRec run of 6 epochs on the first 300 Beauty users (no early stop).
const LONG: &str = r#"
seeds = [5]
[fixed]
dataset = "beauty"
max_users = 300
train.max_epochs = 6
train.patience = 6
[axes]
model = ["sasrec"]
"#;

/// The last finished epoch saved in a run folder's resume state.
fn saved_epoch(run: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(run.join("resume/state.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["epoch"].as_u64()
}

#[test]
fn a_run_killed_mid_training_resumes_after_its_last_epoch() {
    let s = Sweep::new("long", LONG);
    let ids = s.plan_ids(&[]);
    assert_eq!(ids.len(), 1);
    let work = s.runs_dir().parent().unwrap().join(".work");
    let mut child = s.spawn(&["--quiet"]);
    let in_flight = || -> Option<PathBuf> {
        let procs = std::fs::read_dir(&work).ok()?;
        procs.filter_map(|e| e.ok()).map(|p| p.path().join(&ids[0])).find(|r| r.is_dir())
    };
    // SIGKILL once the state of epoch 2 (or later, before the last) is saved.
    let killed = wait_until(Duration::from_secs(120), || {
        in_flight().and_then(|r| saved_epoch(&r)).is_some_and(|e| (2..6).contains(&e))
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(killed, "the run did not get far enough");
    let at_kill = saved_epoch(&in_flight().unwrap()).unwrap();
    assert!(s.finished().is_empty(), "the run finished before it was killed");
    let snapshot = tempfile::tempdir().unwrap();
    copy_dir(&in_flight().unwrap(), snapshot.path());
    // `sweep plan` shows how far the unfinished run got (its state moves to .work/resumable/
    // when the next sweep starts).
    let (code, plan, err) = s.run("plan", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(plan.contains(&format!("todo (epoch {at_kill} saved)")), "{plan}");

    let (code, _, err) = s.run("run", &["--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(s.finished().len(), 1);
    assert_whole(&s.runs_dir());
    assert_eq!(std::fs::read_dir(&work).unwrap().count(), 0, "work folders left: {:?}", runs_in_flight(&work));
    let run = s.runs_dir().join(&ids[0]);
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let first = &rec["resumed_from"][0]["epochs"];
    assert_eq!((first[0].as_u64(), first[1].as_u64()), (Some(1), Some(at_kill)), "{rec}");
    assert_eq!(rec["epochs_run"], 6);

    // The same grid swept in one go gives the same epochs and test metrics.
    let t = Sweep::new("long", LONG);
    let (code, _, err) = t.run("run", &["--quiet"]);
    assert_eq!(code, 0, "{err}");
    let one_go = t.runs_dir().join(&ids[0]);
    assert_eq!(common::epochs_without_timings(&run), common::epochs_without_timings(&one_go));
    let other: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(one_go.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(rec["test"], other["test"]);
    // The report names both processes' code and says the run was resumed.
    let o = common::kdsr_bin()
        .args(["report", s.grid.to_str().unwrap(), "--out", s.out().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(s.runs_dir().parent().unwrap().join("report.md")).unwrap();
    assert!(md.contains("(1 of the runs resumed after a stop;"), "{md}");

    // A state in runs/ itself is a `kdsr train --out` run's, which that command resumes.
    let u = Sweep::new("long", LONG);
    copy_dir(snapshot.path(), &u.runs_dir().join(&ids[0]));
    let (code, plan, err) = u.run("plan", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(plan.contains(&format!("todo (epoch {at_kill} saved by kdsr train, which resumes it)")), "{plan}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().map(|e| e.unwrap()) {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A run whose lock another process holds (it trains the run) is left to that process: the
/// sweep trains the others and names it, `kdsr train --out <grid>/runs` of that run refuses,
/// and once the lock is free the next sweep trains it.
#[test]
fn runs_in_training_elsewhere_are_left_to_that_process() {
    let s =
        Sweep::new("shared", "seeds = [1, 2, 3]\n[fixed]\ndataset = \"beauty\"\nmax_users = 300\nmodel = \"pop\"\n");
    let ids = s.plan_ids(&[]);
    assert_eq!(ids.len(), 3);
    let grid = s.out().join("shared");
    let held = kdsr::results::lock_run(&grid, &ids[1]).unwrap().expect("free");
    let (code, _, err) = s.run("run", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("skipped {}", ids[1])) && err.contains("in training in another process"), "{err}");
    assert!(
        err.contains(&format!("1 run left to other processes (in training or finished there): {}", ids[1])),
        "{err}"
    );
    assert_eq!(s.finished(), [ids[0].clone(), ids[2].clone()].into_iter().collect());

    let train = |extra: &[&str]| {
        let out = common::kdsr_bin()
            .args(["train", "--dataset", "beauty", "--model", "pop", "--seed", "2", "--max-users", "300", "--out"])
            .arg(s.runs_dir())
            .args(extra)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, err) = train(&[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("run {} is in training in another process", ids[1])), "{err}");
    assert!(!s.runs_dir().join(&ids[1]).exists(), "nothing written while the lock is held");

    drop(held);
    let (code, _, err) = s.run("run", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("2 already finished, 1 to run"), "{err}");
    assert_eq!(s.finished().len(), 3);
    assert_whole(&s.runs_dir());
}

#[test]
fn plan_prints_the_cost_of_finished_runs_and_estimates_the_rest_from_them() {
    let grid =
        "seeds = [1]\n[fixed]\ndataset = \"beauty\"\nmax_users = 200\nmodel = \"sasrec\"\ntrain.max_epochs = 2\n";
    let s = Sweep::new("costly", grid);
    let (code, _, err) = s.run("run", &["--quiet"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("cost: 0 finished runs took 0.00 core-h; the 1 left"), "{err}");
    assert!(err.contains("1 not estimated: no record of the model"), "{err}");
    // The same grid with a second seed: the new run is estimated from the first's record.
    std::fs::write(&s.grid, grid.replace("seeds = [1]", "seeds = [1, 2]")).unwrap();
    let (code, plan, err) = s.run("plan", &[]);
    assert_eq!(code, 0, "{err}");
    assert!(plan.contains("cost: 1 finished runs took"), "{plan}");
    assert!(plan.contains("the 1 left: about") && plan.contains("(1 from same configuration)"), "{plan}");
    assert!(plan.contains("left, core-h by model: sasrec"), "{plan}");
    let rows: Vec<&str> = plan.lines().filter(|l| l.contains("beauty-sasrec-")).collect();
    assert_eq!(rows.len(), 2, "{plan}");
    assert!(rows[0].contains("done") && !rows[0].contains(" ~ "), "{}", rows[0]);
    assert!(rows[1].contains("todo") && rows[1].contains(" ~ "), "{}", rows[1]);
}
