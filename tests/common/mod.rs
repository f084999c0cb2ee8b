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
