//! Helpers shared by the integration tests: the real data directory and small slices of it.

#![allow(dead_code)]

use kdsr::data::{DataPaths, Dataset, DatasetId, DatasetRef};

pub fn paths() -> DataPaths {
    DataPaths::resolve(None, None)
}

/// The first `n` users of a named dataset from ../shared/data.
pub fn slice(id: DatasetId, n: usize) -> Dataset {
    Dataset::load(&DatasetRef::Named(id), &paths()).expect("shared data present").truncate_users(n)
}

pub fn kdsr_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_kdsr"))
}

/// A JSON fixture under tests/fixtures/.
pub fn fixture(name: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A JSON array of numbers as f32.
pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// Element-wise `|got - want| <= 1e-4 · max|want| + 1e-6`.
pub fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max).max(1e-6);
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * scale + 1e-6, "{what}[{k}]: candle {g} vs torch {w} (scale {scale})");
    }
}

/// Sets every parameter (sorted by name) p, element j, to `amp · sin(0.37 (j + 1) + 1.3 p)`
/// (the pattern of the PyTorch parity scripts in bench/) and checks the names against the
/// reference's.
pub fn fill_pattern(params: &kdsr::model::params::ParamStore, amp: f64, reference_names: &[&str]) {
    let vars = params.vars();
    let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
    let mut want = reference_names.to_vec();
    want.sort();
    assert_eq!(names, want, "parameter names (sorted)");
    for (p, (_, var)) in vars.iter().enumerate() {
        let n = var.elem_count();
        let v: Vec<f32> = (0..n).map(|j| (amp * (0.37 * (j as f64 + 1.0) + 1.3 * p as f64).sin()) as f32).collect();
        var.set(&candle_core::Tensor::from_vec(v, var.shape(), var.device()).unwrap()).unwrap();
    }
}

/// A finished run's `metrics.json` for `cfg`, as the training stage writes it, with the given
/// test metrics (percent; the others 0) at epoch 2 of 3.
pub fn hand_record(cfg: &kdsr::config::RunConfig, test: &[(&str, f64)]) -> String {
    use kdsr::eval::Metrics;
    use kdsr::results::record::{RecordStatus, RunRecord};
    let mut metrics: serde_json::Value = serde_json::to_value(Metrics::default()).unwrap();
    for (k, v) in test {
        metrics[*k] = (*v).into();
    }
    let metrics: Metrics = serde_json::from_value(metrics).unwrap();
    let rec = RunRecord {
        run_id: cfg.run_id(),
        status: RecordStatus::Finished,
        dataset: cfg.dataset.to_string(),
        model: cfg.model.kind().name().to_string(),
        variant: cfg.variant_name(),
        protocol: cfg.protocol.name().to_string(),
        selection: "test metrics at the best validation ndcg@20 epoch".into(),
        seed: cfg.seed,
        config: cfg.clone(),
        code_version: kdsr::io::CodeVersion {
            commit: "0123456789abcdef".into(),
            dirty: false,
            crate_version: "0.1.0".into(),
        },
        threads: 1,
        finished_at_unix: 0,
        n_users: 100,
        n_items: 50,
        n_train_targets: 300,
        n_valid: 100,
        n_test: 100,
        modality: serde_json::Value::Null,
        epochs_run: 3,
        best_epoch: 2,
        seconds_per_epoch: 1.5,
        eval_seconds_per_epoch: 0.1,
        peak_rss_mib: None,
        total_seconds: 5.0,
        valid: metrics.clone(),
        test: metrics,
        released_selection: None,
        resumed_from: Vec::new(),
        seal: None,
    };
    serde_json::to_string_pretty(&rec).unwrap()
}

/// Compares the gradient of every parameter of `params` under `loss` with the reference's
/// `want[name]` (a JSON array; a parameter without a gradient counts as zeros) and checks that
/// more than `min_nonzero` reference entries are non-zero.
pub fn assert_grads(
    params: &kdsr::model::params::ParamStore,
    loss: &candle_core::Tensor,
    want: &serde_json::Value,
    min_nonzero: usize,
    what: &str,
) {
    let grads = loss.backward().unwrap();
    let mut checked = 0;
    for (name, var) in params.vars() {
        let w = floats(&want[&name]);
        let g = grads
            .get(var.as_tensor())
            .map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .unwrap_or_else(|| vec![0.0; w.len()]);
        assert_close(&g, &w, &format!("{what}: grad {name}"));
        checked += w.iter().filter(|v| **v != 0.0).count();
    }
    assert!(checked > min_nonzero, "{what}: the gradients are mostly non-zero ({checked})");
}

/// The rows of a run folder's `epochs.csv` without the timing columns (train and eval seconds).
pub fn epochs_without_timings(run_dir: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(run_dir.join("epochs.csv")).unwrap();
    // The measured columns: train_seconds, eval_seconds and rss_peak_mib.
    let header: Vec<&str> = text.lines().next().unwrap_or("").split(',').collect();
    let rss = header.iter().position(|h| *h == "rss_peak_mib");
    text.lines()
        .map(|l| {
            let c: Vec<&str> = l.split(',').collect();
            let kept: Vec<&str> =
                c.iter().enumerate().filter(|(i, _)| !(3..5).contains(i) && Some(*i) != rss).map(|(_, v)| *v).collect();
            kept.join(",")
        })
        .collect()
}
