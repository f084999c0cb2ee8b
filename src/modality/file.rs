//! Precomputed item features from a file (image features, or any modality computed elsewhere).
//!
//! Formats: `.npy` (2-D, any float dtype) or `.safetensors` (one 2-D tensor, or the one named
//! `features`). One row per item, **no padding row**. Which row belongs to which item:
//! 1. if `<file stem>.items.txt` exists next to the file, its line r is the item token of row r;
//! 2. else, when every item token of the dataset is a positive integer no larger than the row
//!    count (Amazon sequence files, ml-100k), row r is the item whose token is r + 1;
//! 3. else the row count must equal the dataset's item count and row r is kdsr item id r + 1.
//!
//! An all-zero row means "no feature" and counts as missing; NaN or infinite values are errors.

use super::FeatureMatrix;
use crate::data::Dataset;
use crate::error::bad_input;
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// Reads a `[rows, dim]` f32 matrix (row-major) from `.npy` or `.safetensors`.
pub fn read_matrix(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    if !path.exists() {
        return Err(bad_input(format!("{}: feature file not found", path.display())));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tensor = match ext {
        "npy" => {
            Tensor::read_npy(path).map_err(|e| bad_input(format!("{}: cannot read as .npy: {e}", path.display())))?
        }
        "safetensors" => {
            let mut map = candle_core::safetensors::load(path, &Device::Cpu)
                .map_err(|e| bad_input(format!("{}: cannot read as safetensors: {e}", path.display())))?;
            if let Some(t) = map.remove("features") {
                t
            } else if map.len() == 1 {
                map.into_values().next().expect("one tensor")
            } else {
                let mut names: Vec<_> = map.keys().cloned().collect();
                names.sort();
                return Err(bad_input(format!(
                    "{}: expected one tensor or one named `features`, found {}",
                    path.display(),
                    names.join(", ")
                )));
            }
        }
        _ => return Err(bad_input(format!("{}: expected a .npy or .safetensors file", path.display()))),
    };
    let &[rows, dim] = tensor.dims() else {
        return Err(bad_input(format!(
            "{}: expected a 2-D [items, dim] matrix, found shape {:?}",
            path.display(),
            tensor.dims()
        )));
    };
    if rows == 0 || dim == 0 {
        return Err(bad_input(format!("{}: empty matrix [{rows}, {dim}]", path.display())));
    }
    let data = tensor.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>())?;
    if let Some(k) = data.iter().position(|v| !v.is_finite()) {
        return Err(bad_input(format!("{}: row {}, column {}: value is not finite", path.display(), k / dim, k % dim)));
    }
    Ok((data, rows, dim))
}

/// The sidecar naming the item of each row: `<stem>.items.txt`.
pub fn tokens_path(path: &Path) -> PathBuf {
    path.with_extension("items.txt")
}

/// Loads a feature file and places its rows on the items of `ds` (rules in the module docs).
pub fn load_for_dataset(path: &Path, ds: &Dataset) -> Result<FeatureMatrix> {
    let (rows, n, dim) = read_matrix(path)?;
    let side = tokens_path(path);
    let tokens: Vec<String> = if side.exists() {
        let text =
            std::fs::read_to_string(&side).map_err(|e| bad_input(format!("{}: cannot read: {e}", side.display())))?;
        let t: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
        if t.len() != n {
            return Err(bad_input(format!(
                "{}: {} lines, but {} has {n} rows",
                side.display(),
                t.len(),
                path.display()
            )));
        }
        t
    } else if ds.item_tokens.iter().all(|t| t.parse::<usize>().is_ok_and(|v| v >= 1 && v <= n)) {
        (1..=n).map(|r| r.to_string()).collect()
    } else if n == ds.n_items {
        ds.item_tokens.clone()
    } else {
        return Err(bad_input(format!(
            "{}: {n} rows, but `{}` has {} items; give one row per item, in kdsr item-id order, or name each \
             row's item in {}",
            path.display(),
            ds.name,
            ds.n_items,
            side.display()
        )));
    };
    let zero: Vec<bool> = rows.chunks(dim).map(|r| r.iter().all(|&v| v == 0.0)).collect();
    Ok(FeatureMatrix::select(ds, &tokens, &rows, dim, &zero))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(tokens: &[&str]) -> Dataset {
        Dataset {
            name: "x".into(),
            n_items: tokens.len(),
            sequences: vec![vec![1]],
            item_tokens: tokens.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn npy_and_safetensors_rows_follow_tokens() {
        let d = tempfile::tempdir().unwrap();
        let t = Tensor::new(&[[1f64, 2.0], [0.0, 0.0], [5.0, 6.0]], &Device::Cpu).unwrap();
        let npy = d.path().join("img.npy");
        t.write_npy(&npy).unwrap();
        // Numeric tokens: row r is token r + 1 (a truncated Amazon slice keeps original ids).
        let m = load_for_dataset(&npy, &ds(&["3", "2"])).unwrap();
        assert_eq!((m.dim, m.data.clone(), m.missing.clone()), (2, vec![0.0, 0.0, 5.0, 6.0, 0.0, 0.0], vec![2]));
        // Named rows through the sidecar.
        std::fs::write(d.path().join("img.items.txt"), "a\nb\nc\n").unwrap();
        let m = load_for_dataset(&npy, &ds(&["c", "a"])).unwrap();
        assert_eq!(m.data, vec![0.0, 0.0, 5.0, 6.0, 1.0, 2.0]);
        let st = d.path().join("f.safetensors");
        candle_core::safetensors::save(&std::collections::HashMap::from([("features", t.clone())]), &st).unwrap();
        assert_eq!(read_matrix(&st).unwrap().1, 3);
    }

    #[test]
    fn bad_files_are_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("v.npy");
        Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap().write_npy(&p).unwrap();
        assert!(read_matrix(&p).unwrap_err().to_string().contains("2-D"));
        Tensor::new(&[[1f32, f32::NAN]], &Device::Cpu).unwrap().write_npy(&p).unwrap();
        assert!(read_matrix(&p).unwrap_err().to_string().contains("row 0, column 1"));
        std::fs::write(&p, b"not numpy").unwrap();
        let e = read_matrix(&p).unwrap_err();
        assert!(crate::error::is_bad_input(&e) && e.to_string().contains("v.npy"), "{e}");
        Tensor::new(&[[1f32], [2.0]], &Device::Cpu).unwrap().write_npy(&p).unwrap();
        let e = load_for_dataset(&p, &ds(&["a", "b", "c"])).unwrap_err().to_string();
        assert!(e.contains("2 rows") && e.contains("3 items"), "{e}");
        assert!(read_matrix(&d.path().join("x.csv")).unwrap_err().to_string().contains("not found"));
    }
}
