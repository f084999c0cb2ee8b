//! The protocols on a real slice of Beauty: `released` trains on one more target per user than
//! the hold-out `paper` protocol, ranks the test set every epoch and reports each metric's best
//! test epoch; `valid-users` trains on the same targets and splits the test instances by user.

mod common;

use candle_core::Device;
use kdsr::config::RunConfig;
use kdsr::data::split::{Protocol, Split};
use kdsr::data::{DatasetId, DatasetRef};
use kdsr::eval::Metrics;
use kdsr::model::ModelKind;
use kdsr::train::{train_run, RunOptions};

const USERS: usize = 600;

fn config(protocol: Protocol, epochs: usize) -> RunConfig {
    let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 2023);
    cfg.max_users = Some(USERS);
    cfg.protocol = protocol;
    cfg.train.max_epochs = epochs;
    cfg.train.patience = epochs;
    cfg.train.lr = 3e-3;
    cfg
}

fn opts() -> RunOptions {
    RunOptions { device: Device::Cpu, progress: false, paths: common::paths(), stop_after: None }
}

fn record(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn released_reports_each_metrics_best_test_epoch_on_every_training_target() {
    let ds = common::slice(DatasetId::Beauty, USERS);
    let dir = tempfile::tempdir().unwrap();
    // Long enough to overfit a slice this small, so that the metrics peak at different epochs.
    let out = train_run(&config(Protocol::Released, 25), &ds, dir.path(), &opts()).unwrap();
    let rec = record(&out.dir);
    // Every user with a history of two or more training items trains on one more target.
    let holdout = Split::new(&ds.sequences, Protocol::Paper);
    let with_valid = holdout.valid.len();
    assert_eq!(rec["n_train_targets"].as_u64().unwrap() as usize, holdout.n_train_targets() + with_valid);
    assert_eq!(rec["n_valid"], 0);
    assert_eq!(rec["n_test"].as_u64().unwrap() as usize, holdout.test.len());
    assert!(rec["selection"].as_str().unwrap().starts_with("test-selected"), "{}", rec["selection"]);
    // Each reported metric is that metric's best over the epochs' test metrics.
    let tests: Vec<&Metrics> = out.epochs.iter().map(|e| e.test.as_ref().expect("test every epoch")).collect();
    assert!(tests.len() > 3);
    for m in Metrics::all() {
        let best = tests.iter().map(|t| t.get(m)).fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(out.test.get(m), best, "{m}");
        assert!((rec["test"][m.to_string()].as_f64().unwrap() - best).abs() < 1e-12, "{m}");
    }
    // The selection differs from any single epoch's here (else this test could not tell them
    // apart): no epoch holds every metric's best.
    assert!(tests.iter().all(|t| Metrics::all().iter().any(|&m| t.get(m) < out.test.get(m))));
    // How many epochs the released stopping rule let it run (at most 25).
    eprintln!("released: {} epochs", tests.len());
}

#[test]
fn valid_users_train_like_released_and_test_on_the_other_users() {
    let ds = common::slice(DatasetId::Beauty, USERS);
    let dir = tempfile::tempdir().unwrap();
    let out = train_run(&config(Protocol::ValidUsers, 2), &ds, dir.path(), &opts()).unwrap();
    let rec = record(&out.dir);
    let released = Split::new(&ds.sequences, Protocol::Released);
    assert_eq!(rec["n_train_targets"].as_u64().unwrap() as usize, released.n_train_targets());
    let (n_valid, n_test) = (rec["n_valid"].as_u64().unwrap() as usize, rec["n_test"].as_u64().unwrap() as usize);
    assert_eq!(n_valid + n_test, released.test.len());
    // About a tenth of the test instances validate (whole users: not exactly).
    assert!(
        n_valid > released.test.len() / 20 && n_valid < released.test.len() / 5,
        "{n_valid} of {}",
        released.test.len()
    );
    assert!(rec["selection"].as_str().unwrap().starts_with("test metrics at the best validation"));
    // Different protocols are different runs.
    assert_ne!(config(Protocol::ValidUsers, 2).run_id(), config(Protocol::Released, 2).run_id());
}
