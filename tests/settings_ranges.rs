//! Out-of-range settings are refused before any run, with exit code 2 and a message naming the
//! key. The cases are generated from the model registry: every integer setting of every
//! registered model (but seeds) set to 0, every dropout set outside [0, 1), so a new model is
//! covered without new test code.

mod common;

use kdsr::config::RunConfig;
use kdsr::data::{DatasetId, DatasetRef};
use kdsr::model::ModelKind;
use std::path::Path;

fn run(args: &[&str]) -> (i32, String) {
    let out = common::kdsr_bin().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

/// `(model, key, bad value)` for every registered model's out-of-range settings.
fn cases() -> Vec<(ModelKind, String, toml::Value)> {
    let mut out = Vec::new();
    for &kind in ModelKind::ALL {
        let cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), kind, 2023);
        let table = toml::Table::try_from(&cfg.model).unwrap();
        for (key, value) in &table {
            let bad: Vec<toml::Value> = match value {
                toml::Value::Integer(_) if !key.ends_with("seed") => vec![toml::Value::Integer(0)],
                toml::Value::Float(_) if key.contains("dropout") => {
                    [1.0, 1.5, -0.1].into_iter().map(toml::Value::Float).collect()
                }
                _ => Vec::new(),
            };
            out.extend(bad.into_iter().map(|b| (kind, key.clone(), b)));
        }
    }
    out
}

#[test]
fn every_models_out_of_range_settings_are_refused_naming_the_key() {
    let cases = cases();
    // Widths, layers, heads and dropouts of ten backbones: far more than this.
    assert!(cases.len() >= 60, "only {} generated cases", cases.len());
    for &kind in ModelKind::ALL.iter().filter(|&&k| k != ModelKind::Pop) {
        assert!(cases.iter().any(|(k, _, _)| *k == kind), "no case for {}", kind.name());
    }
    for (kind, key, bad) in &cases {
        let cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), *kind, 2023);
        let err = cfg.with_setting(&format!("model.{key}"), &bad.to_string()).unwrap_err();
        assert!(err.contains(&format!("model.{key}")), "{} model.{key} = {bad}: {err}", kind.name());
    }
}

#[test]
fn run_files_with_out_of_range_settings_exit_2_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs");
    // One case per model and key (the first bad value), through `kdsr train --config`.
    let mut seen = std::collections::HashSet::new();
    for (kind, key, bad) in cases() {
        if !seen.insert((kind, key.clone())) {
            continue;
        }
        let cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), kind, 2023);
        let mut table = toml::Table::try_from(&cfg).unwrap();
        table["model"].as_table_mut().unwrap().insert(key.clone(), bad.clone());
        let path = dir.path().join(format!("{}-{key}.toml", kind.name()));
        std::fs::write(&path, toml::to_string(&table).unwrap()).unwrap();
        let (code, err) = train(&path, &out);
        assert_eq!(code, 2, "{} model.{key} = {bad}: {err}", kind.name());
        assert!(err.contains(&format!("model.{key}")) && err.contains(&*path.to_string_lossy()), "{err}");
    }
    assert!(!out.exists(), "nothing may be trained");
}

fn train(config: &Path, out: &Path) -> (i32, String) {
    run(&["train", "--config", config.to_str().unwrap(), "--out", out.to_str().unwrap(), "--quiet"])
}

#[test]
fn patience_zero_and_flags_are_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs");
    let base = ["train", "--dataset", "beauty", "--max-users", "50", "--epochs", "1", "--quiet", "--out"];
    let with = |extra: &[&str]| -> (i32, String) {
        let mut args: Vec<&str> = base.to_vec();
        args.push(out.to_str().unwrap());
        args.extend_from_slice(extra);
        run(&args)
    };
    let (code, err) = with(&["--model", "sasrec", "--patience", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("train.patience"), "{err}");
    let (code, err) = with(&["--model", "sasrec", "--set", "model.hidden=0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("model.hidden"), "{err}");
    let (code, err) = with(&["--model", "gru4rec", "--set", "model.n_layers=0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("model.n_layers"), "{err}");
    // A CDL setting alone does not turn CDL on.
    let (code, err) = with(&["--model", "sasrec", "--set", "modality.student.holistic_form=norm"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("modality.student.holistic_form") && err.contains("no modality"), "{err}");
    // The masking ratio means something only with masked-item (cloze) samples.
    let (code, err) = with(&["--model", "sasrec", "--set", "train.mask_ratio=0.3"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("train.mask_ratio"), "{err}");
    assert!(!out.exists(), "nothing may be trained");
}

fn plan(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("g.toml");
    std::fs::write(&grid, text).unwrap();
    let out = dir.path().join("reports");
    run(&["sweep", "plan", grid.to_str().unwrap(), "--out", out.to_str().unwrap()])
}

#[test]
fn grid_settings_that_apply_to_no_run_are_errors() {
    // train.mask_ratio on an all-SASRec grid: no run masks items.
    let (code, err) = plan("[fixed]\ndataset = \"beauty\"\nmodel = \"sasrec\"\ntrain.mask_ratio = 0.3\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("g.toml:4") && err.contains("`train.mask_ratio` is not a setting of any run"), "{err}");
    // Next to MMSRec it applies to MMSRec alone.
    let (code, err) = plan(
        "seeds = [1]\n[fixed]\ndataset = \"beauty\"\ntrain.mask_ratio = 0.3\n[axes]\nmodel.kind = [\"sasrec\", \"mmsrec\"]\n",
    );
    assert_eq!(code, 0, "{err}");
    // A CDL setting on ID-only runs applies to none of them (it does not turn CDL on).
    let (code, err) =
        plan("[fixed]\ndataset = \"beauty\"\nmodel = \"sasrec\"\nmodality.student.holistic_form = \"norm\"\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("g.toml:4") && err.contains("modality.student.holistic_form"), "{err}");
    // With modality.mode in the grid it applies.
    let (code, err) = plan(
        "seeds = [1]\n[fixed]\ndataset = \"beauty\"\nmodel = \"sasrec\"\nmodality.student.holistic_form = \"norm\"\nmodality.mode = \"cdl\"\n",
    );
    assert_eq!(code, 0, "{err}");
    // Out-of-range model settings in a grid name the line and the key.
    let (code, err) = plan("[fixed]\ndataset = \"beauty\"\nmodel = \"mmsr\"\n[axes]\nmodel.embedding = [64, 0]\n");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("g.toml:5") && err.contains("model.embedding"), "{err}");
}
