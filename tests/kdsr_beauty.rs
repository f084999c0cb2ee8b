//! KDSR end to end on a real Beauty slice: attribute features, the teacher, the student
//! losses, asynchronous training and the drift probe all show up in the records.

mod common;

use candle_core::Device;
use kdsr::config::RunConfig;
use kdsr::data::{DatasetId, DatasetRef};
use kdsr::modality::Modality;
use kdsr::model::{ModalityMode, ModelKind};
use kdsr::train::{train_run, RunOptions};

fn opts() -> RunOptions {
    RunOptions { device: Device::Cpu, progress: false, paths: common::paths() }
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
