//! End to end on a real slice of Beauty: a trained SASRec beats popularity, the seed fixes the
//! metrics, records are complete, and a finished run is not retrained.

mod common;

use candle_core::Device;
use kdsr::config::{RunConfig, Selection};
use kdsr::data::{DatasetId, DatasetRef};
use kdsr::model::ModelKind;
use kdsr::train::{train_run, RunOptions};

fn config(model: ModelKind, users: usize, epochs: usize) -> RunConfig {
    let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), model, 2023);
    cfg.max_users = Some(users);
    cfg.train.max_epochs = epochs;
    cfg.train.patience = epochs;
    cfg
}

fn opts() -> RunOptions {
    RunOptions { device: Device::Cpu, progress: false, paths: common::paths(), stop_after: None }
}

#[test]
fn trained_sasrec_beats_popularity() {
    let users = 4000;
    let ds = common::slice(DatasetId::Beauty, users);
    let dir = tempfile::tempdir().unwrap();
    let pop = train_run(&config(ModelKind::Pop, users, 1), &ds, dir.path(), &opts()).unwrap();
    let mut cfg = config(ModelKind::Sasrec, users, 12);
    cfg.train.lr = 3e-3;
    // The last epoch, as in the CI gate: at this scale validation noise can pick an early epoch.
    cfg.train.selection = Selection::Last;
    let sas = train_run(&cfg, &ds, dir.path(), &opts()).unwrap();
    assert_eq!(sas.best_epoch, sas.epochs.len());
    eprintln!("pop test hr@20 {:.3}, sasrec {:.3} (epoch {})", pop.test.hr[2], sas.test.hr[2], sas.best_epoch);
    assert!(sas.test.hr[2] > pop.test.hr[2] * 1.2, "sasrec hr@20 {} vs pop {}", sas.test.hr[2], pop.test.hr[2]);
    assert!(sas.test.ndcg[2] > pop.test.ndcg[2], "sasrec ndcg@20 {} vs pop {}", sas.test.ndcg[2], pop.test.ndcg[2]);
    // The record is complete and names protocol, selection and code version.
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sas.dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(rec["protocol"], "valid-users");
    assert_eq!(rec["selection"], "test metrics at the last epoch trained");
    assert_eq!(rec["best_epoch"].as_u64().unwrap() as usize, sas.best_epoch);
    assert!(rec["code_version"]["commit"].is_string());
    assert!(sas.dir.join("best.safetensors").exists());
    let csv = std::fs::read_to_string(sas.dir.join("epochs.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + sas.epochs.len());
    // Peak resident memory: per epoch in epochs.csv and its largest value in the record.
    assert!(csv.lines().next().unwrap().ends_with(",rss_peak_mib"), "{csv}");
    let peak = rec["peak_rss_mib"].as_f64().expect("peak_rss_mib in metrics.json");
    assert!(peak > 10.0, "{peak}");
    let last: f64 = csv.lines().last().unwrap().rsplit(',').next().unwrap().parse().unwrap();
    assert!((peak - last).abs() < 1e-5, "the peak only grows: {peak} vs {last}");
}

#[test]
fn same_seed_same_metrics_and_gru4rec_learns() {
    let users = 1500;
    let ds = common::slice(DatasetId::Beauty, users);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let cfg = config(ModelKind::Gru4rec, users, 2);
    let r1 = train_run(&cfg, &ds, a.path(), &opts()).unwrap();
    let r2 = train_run(&cfg, &ds, b.path(), &opts()).unwrap();
    let rows = |d: &std::path::Path| common::epochs_without_timings(&d.join(cfg.run_id()));
    assert_eq!(rows(a.path()), rows(b.path()));
    assert_eq!(r1.test, r2.test);
    // Default selection: the best validation epoch. The test set is ranked once, after
    // training, with that epoch's weights: no epoch row carries test metrics.
    let metric = cfg.train.valid_metric;
    let best = r1.epochs.iter().reduce(|x, y| if y.valid.get(metric) > x.valid.get(metric) { y } else { x }).unwrap();
    assert_eq!(r1.best_epoch, best.epoch);
    assert!(r1.epochs.iter().all(|e| e.test.is_none() && e.steps > 0));
    // Ranking the test set after every epoch (in one pass with validation) reports the same
    // numbers: the selected epoch's row equals the deferred evaluation of its weights.
    let mut every = cfg.clone();
    every.train.test_every_epoch = true;
    let c = tempfile::tempdir().unwrap();
    let r4 = train_run(&every, &ds, c.path(), &opts()).unwrap();
    assert_eq!(r4.best_epoch, r1.best_epoch);
    assert_eq!(r4.test, r1.test);
    assert_eq!(r4.epochs[r4.best_epoch - 1].test.as_ref(), Some(&r1.test));
    assert!(r4.epochs.iter().all(|e| e.test.is_some()));
    assert_eq!(
        r4.epochs.iter().map(|e| &e.valid).collect::<Vec<_>>(),
        r1.epochs.iter().map(|e| &e.valid).collect::<Vec<_>>()
    );
    // The other epoch's test metrics differ: the deferred evaluation did restore the weights.
    assert_ne!(r4.epochs[2 - r4.best_epoch].test.as_ref(), Some(&r1.test));
    assert!(
        r1.epochs[1].loss < r1.epochs[0].loss,
        "loss should fall: {:?}",
        r1.epochs.iter().map(|e| e.loss).collect::<Vec<_>>()
    );
    let mut other = cfg.clone();
    other.seed = 7;
    let r3 = train_run(&other, &ds, a.path(), &opts()).unwrap();
    assert_ne!(r3.epochs[0].loss, r1.epochs[0].loss);
}

#[test]
fn cli_train_writes_records_and_skips_finished_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let args = [
        "train",
        "--dataset",
        "beauty",
        "--model",
        "sasrec",
        "--max-users",
        "300",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        out,
    ];
    let first = common::kdsr_bin().args(args).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let runs: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(runs.len(), 1);
    let run = runs[0].as_ref().unwrap().path();
    for f in ["run.toml", "epochs.csv", "metrics.json", "best.safetensors"] {
        assert!(run.join(f).exists(), "missing {f}");
    }
    // run.toml round-trips into the same run id.
    let cfg = RunConfig::from_file(&run.join("run.toml")).unwrap();
    assert_eq!(run.file_name().unwrap().to_str().unwrap(), cfg.run_id());
    let second = common::kdsr_bin().args(args).output().unwrap();
    assert!(String::from_utf8_lossy(&second.stdout).contains("already finished"));
}
