//! KDSR end to end on a real Beauty slice: attribute features, the teacher, the student
//! losses, asynchronous training and the drift probe all show up in the records.

mod common;

use candle_core::Device;
use kdsr::config::RunConfig;
use kdsr::data::{DatasetId, DatasetRef};
use kdsr::distill::config::IdReference;
use kdsr::modality::Modality;
use kdsr::model::{ModalityMode, ModelKind};
use kdsr::train::{train_run, RunOptions};

fn opts() -> RunOptions {
    RunOptions { device: Device::Cpu, progress: false, paths: common::paths(), stop_after: None }
}

fn cdl_config(users: usize, epochs: usize) -> RunConfig {
    let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 2023);
    cfg.max_users = Some(users);
    cfg.train.max_epochs = epochs;
    cfg.train.patience = epochs;
    let mut mc = cfg.default_modality();
    mc.modalities = vec![Modality::Attributes];
    mc.drift.pairs = 2000;
    mc.at.epochs = 2;
    mc.autoencoder.max_epochs = 40; // keep the teacher cheap on a slice
    cfg.modality = Some(mc);
    cfg
}

fn csv_column(path: &std::path::Path, name: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let k = header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no column {name} in {header:?}"));
    // Empty cells (epoch 0's losses) read as NaN.
    lines.map(|l| l.split(',').nth(k).unwrap().parse().unwrap_or(f64::NAN)).collect()
}

#[test]
fn sasrec_with_cdl_records_losses_schedule_and_drift() {
    let users = 800;
    let ds = common::slice(DatasetId::Beauty, users);
    let dir = tempfile::tempdir().unwrap();
    let cfg = cdl_config(users, 3);
    let out = train_run(&cfg, &ds, dir.path(), &opts()).unwrap();
    let csv = out.dir.join("epochs.csv");
    // Asynchronous training: lr/4 in epoch 1, then linear to lr at epoch 1 + E (E = 2).
    // Row 0 is the untrained model (epoch 0), then epochs 1..=3.
    assert_eq!(csv_column(&csv, "epoch"), vec![0.0, 1.0, 2.0, 3.0]);
    let lr = csv_column(&csv, "lr_modality")[1..].to_vec();
    assert_eq!(lr.len(), 3);
    assert!(
        (lr[0] - 2.5e-4).abs() < 1e-12 && (lr[1] - 6.25e-4).abs() < 1e-12 && (lr[2] - 1e-3).abs() < 1e-12,
        "{lr:?}"
    );
    let hol = csv_column(&csv, "cdl_holistic_loss")[1..].to_vec();
    let dis = csv_column(&csv, "cdl_dissected_loss")[1..].to_vec();
    assert!(hol.iter().all(|v| v.is_finite() && *v >= 0.0) && dis.iter().all(|v| *v > 0.0));
    assert!(dis[2] < dis[0], "dissected loss should fall: {dis:?}");
    let drift = csv_column(&csv, "drift_attributes_original");
    assert!(drift.iter().all(|r| (-1.0..=1.0).contains(r)));
    // Epoch 0: the tables are the autoencoder codes themselves.
    assert!((csv_column(&csv, "drift_attributes_ae")[0] - 1.0).abs() < 1e-6);
    // Diagnostics: every term reaches the table, the dissected head learns its codes, and the
    // holistic targets have a spread.
    for col in
        ["grad_attributes_ce", "grad_attributes_holistic", "grad_attributes_dissected", "hol_target_std_attributes"]
    {
        let v = csv_column(&csv, col);
        assert!(v.iter().all(|x| x.is_finite() && *x > 0.0), "{col}: {v:?}");
    }
    let acc = csv_column(&csv, "dis_acc_attributes");
    assert!(acc.iter().all(|a| (0.0..=1.0).contains(a)) && acc[3] > acc[0], "dissected accuracy {acc:?}");
    let r2 = csv_column(&csv, "hol_fit_r2_attributes");
    assert!(r2.iter().all(|r| r.is_finite() && *r <= 1.0), "{r2:?}");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(rec["variant"], "sasrec+cdl");
    assert!(rec["modality"]["attributes"]["items_without_modality"].is_u64());
    // The checkpoint holds the modality table, its projection and the student heads.
    let ckpt = candle_core::safetensors::load(out.dir.join("best.safetensors"), &Device::Cpu).unwrap();
    for key in ["modality_table.attributes", "modality_proj.attributes.weight", "cdl.attributes.dissected_2.weight"] {
        assert!(ckpt.contains_key(key), "missing {key}: {:?}", ckpt.keys().collect::<Vec<_>>());
    }
}

#[test]
fn frozen_tables_do_not_move_and_tuned_tables_have_no_cdl_heads() {
    let users = 300;
    let ds = common::slice(DatasetId::Beauty, users);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = cdl_config(users, 1);
    cfg.modality.as_mut().unwrap().mode = ModalityMode::Frozen;
    let out = train_run(&cfg, &ds, dir.path(), &opts()).unwrap();
    let ckpt = candle_core::safetensors::load(out.dir.join("best.safetensors"), &Device::Cpu).unwrap();
    assert!(!ckpt.keys().any(|k| k.starts_with("modality_table.")), "frozen tables must not be parameters");
    assert!(ckpt.contains_key("modality_proj.attributes.weight"));
    cfg.modality.as_mut().unwrap().mode = ModalityMode::Tuned;
    let out = train_run(&cfg, &ds, dir.path(), &opts()).unwrap();
    let ckpt = candle_core::safetensors::load(out.dir.join("best.safetensors"), &Device::Cpu).unwrap();
    assert!(ckpt.contains_key("modality_table.attributes"));
    assert!(!ckpt.keys().any(|k| k.starts_with("cdl.")));
}

#[test]
fn paused_and_resumed_run_equals_the_run_trained_in_one_go() {
    // KDSR (CDL pair sampling, dropout, the ramping modality learning rate, the drift probes)
    // paused after epochs 1 and 3 of 4 and resumed twice.
    let users = 300;
    let ds = common::slice(DatasetId::Beauty, users);
    let cfg = cdl_config(users, 4);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = train_run(&cfg, &ds, a.path(), &opts()).unwrap();
    let pause = |n| RunOptions { stop_after: Some(n), ..opts() };
    let first = train_run(&cfg, &ds, b.path(), &pause(1)).unwrap();
    assert_eq!(first.paused, Some(1));
    let run = b.path().join(cfg.run_id());
    assert!(run.join("resume/state.json").is_file() && !run.join("metrics.json").exists());
    // A kill after an epoch's row but before its state: the row goes when the run resumes.
    let csv = run.join("epochs.csv");
    let mut text = std::fs::read_to_string(&csv).unwrap();
    text.push_str("2,9.9,1,0.1,0.1\n");
    std::fs::write(&csv, text).unwrap();
    assert_eq!(train_run(&cfg, &ds, b.path(), &pause(2)).unwrap().paused, Some(3));
    let last = train_run(&cfg, &ds, b.path(), &opts()).unwrap();
    assert_eq!(last.paused, None);
    assert!(!run.join("resume").exists(), "the resume state goes with the final record");

    assert_eq!(common::epochs_without_timings(&run), common::epochs_without_timings(&a.path().join(cfg.run_id())));
    assert_eq!(last.test, whole.test);
    assert_eq!(last.valid, whole.valid);
    assert_eq!(last.best_epoch, whole.best_epoch);
    let load = |d: &std::path::Path| candle_core::safetensors::load(d.join("best.safetensors"), &Device::Cpu).unwrap();
    let (wa, wb) = (load(&a.path().join(cfg.run_id())), load(&run));
    assert_eq!(wa.len(), wb.len());
    for (k, t) in &wa {
        let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(flat(t), flat(&wb[k]), "{k}");
    }
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let segments: Vec<(u64, u64)> = rec["resumed_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["epochs"][0].as_u64().unwrap(), s["epochs"][1].as_u64().unwrap()))
        .collect();
    assert_eq!(segments, vec![(1, 1), (2, 3)]);
    assert_eq!(rec["epochs_run"], 4);
    let one_go: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.path().join(cfg.run_id()).join("metrics.json")).unwrap())
            .unwrap();
    assert!(one_go.get("resumed_from").is_none());
}

#[test]
fn drift_twin_reference_is_trained_once_and_gives_r_against_id() {
    // `modality.drift.id_reference = "twin"`: the run's pure-ID twin is trained under the cache
    // before the run, r(modality, ID) is recorded every epoch, and a second run with the same
    // twin (the tuned control of a drift grid) reuses it.
    let users = 300;
    let ds = common::slice(DatasetId::Beauty, users);
    let (cache, runs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut o = opts();
    o.paths.cache_dir = cache.path().to_path_buf();
    let mut cfg = cdl_config(users, 2);
    cfg.modality.as_mut().unwrap().drift.id_reference = Some(IdReference::Twin);
    let out = train_run(&cfg, &ds, runs.path(), &o).unwrap();
    let twin = kdsr::train::reference::twin_config(&cfg);
    assert!(twin.modality.is_none());
    let twin_dir = cache.path().join("id-reference").join(twin.run_id());
    let twin_metrics = twin_dir.join("metrics.json");
    assert!(twin_metrics.exists() && twin_dir.join("best.safetensors").exists(), "no finished twin in {twin_dir:?}");
    let r = csv_column(&out.dir.join("epochs.csv"), "drift_attributes_id");
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|v| v.is_finite() && (-1.0..=1.0).contains(v)), "r(modality, ID) {r:?}");
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(rec["modality"]["id_reference"]["twin"], twin.run_id());

    // The same checkpoint named by path gives the same records.
    let mut by_path = cfg.clone();
    by_path.modality.as_mut().unwrap().drift.id_reference =
        Some(IdReference::Checkpoint(twin_dir.join("best.safetensors")));
    let out_path = train_run(&by_path, &ds, runs.path(), &o).unwrap();
    assert_eq!(common::epochs_without_timings(&out_path.dir), common::epochs_without_timings(&out.dir));

    // The tuned run has the same twin and does not train it again.
    let written = std::fs::metadata(&twin_metrics).unwrap().modified().unwrap();
    let mut tuned = cfg.clone();
    tuned.modality.as_mut().unwrap().mode = ModalityMode::Tuned;
    assert_eq!(kdsr::train::reference::twin_config(&tuned).run_id(), twin.run_id());
    let out_tuned = train_run(&tuned, &ds, runs.path(), &o).unwrap();
    assert_eq!(std::fs::metadata(&twin_metrics).unwrap().modified().unwrap(), written);
    assert!(csv_column(&out_tuned.dir.join("epochs.csv"), "drift_attributes_id").iter().all(|v| v.is_finite()));

    // The keyword round-trips through run.toml; a model that needs modality tables has no twin.
    let toml = std::fs::read_to_string(out.dir.join("run.toml")).unwrap();
    assert!(toml.contains("id_reference = \"twin\""), "{toml}");
    let mut sasrm = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrm, 2023);
    let mut mc = cfg.modality.clone().unwrap();
    mc.mode = ModalityMode::Frozen;
    sasrm.modality = Some(mc);
    let err = sasrm.validate().unwrap_err();
    assert!(err.contains("\"twin\"") && err.contains("needs modality embeddings"), "{err}");
}
