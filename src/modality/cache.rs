//! The feature cache: `<cache>/features/<dataset>/<modality>-<encoder>.safetensors` (one
//! tensor `features`, `[catalogue items, dim]`, rows in catalogue order, zero rows for items
//! without text) and `<...>.manifest.json` next to it.
//!
//! The manifest records what produced the matrix: BLAKE3 hashes of the input files, of the
//! catalogue content (tokens and texts), of every encoder file (weights, tokenizer, configs),
//! the encoder settings, and the hash of the matrix file itself. `key` hashes all inputs; an
//! entry is used only when its manifest parses, its `key` equals the key computed now and the
//! matrix file's bytes hash to `output_hash`. Otherwise the entry is rebuilt (never reused),
//! and the reason is returned. Both files are written atomically, matrix first.

use super::encoder::{EncoderFiles, TextEncoder};
use super::{Catalogue, FeatureOptions, Modality};
use crate::data::{DataPaths, DatasetId};
use crate::error::bad_input;
use crate::io::{write_atomic, CodeVersion};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bump when the layout or the computation of cached features changes.
pub const FORMAT: u32 = 1;

/// What produced a cached feature matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// BLAKE3 over every input field below (format, dataset, modality, hashes, settings).
    pub key: String,
    pub dataset: String,
    pub modality: Modality,
    /// Input file -> BLAKE3 of its bytes.
    pub inputs: BTreeMap<String, String>,
    /// BLAKE3 of the catalogue: every token and text, in order.
    pub content_hash: String,
    pub encoder: EncoderFiles,
    /// Encoder file -> BLAKE3 of its bytes.
    pub encoder_hashes: BTreeMap<String, String>,
    pub rows: usize,
    pub dim: usize,
    /// Catalogue items without text (zero rows).
    pub zero_rows: usize,
    /// BLAKE3 of the matrix file.
    pub output_hash: String,
    pub seconds: f64,
    pub created_unix: u64,
    pub code: CodeVersion,
}

/// A catalogue-level matrix, loaded or built.
pub struct Built {
    pub rows: Vec<f32>,
    pub dim: usize,
    pub path: PathBuf,
    pub from_cache: bool,
    pub rebuild_reason: Option<String>,
    pub source: String,
}

pub fn hash_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| bad_input(format!("{}: cannot read: {e}", path.display())))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

fn hash_map(paths: &[PathBuf]) -> Result<BTreeMap<String, String>> {
    paths.iter().map(|p| Ok((p.display().to_string(), hash_file(p)?))).collect()
}

/// BLAKE3 over tokens and texts (length-prefixed, so boundaries are unambiguous).
pub fn content_hash(cat: &Catalogue<Option<String>>) -> String {
    let mut h = blake3::Hasher::new();
    for (t, v) in cat.tokens.iter().zip(&cat.values) {
        for s in [Some(t.as_str()), v.as_deref()] {
            match s {
                Some(s) => h.update(&(s.len() as u64).to_le_bytes()).update(s.as_bytes()),
                None => h.update(&u64::MAX.to_le_bytes()),
            };
        }
    }
    h.finalize().to_hex().to_string()
}

/// The key of a manifest: BLAKE3 of its input fields. Paths are left out on purpose (the same
/// bytes elsewhere give the same key); file hashes are sorted by file name.
fn key_of(m: &Manifest) -> String {
    let names = |map: &BTreeMap<String, String>| -> Vec<(String, String)> {
        let mut v: Vec<_> = map
            .iter()
            .map(|(p, h)| {
                (Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), h.clone())
            })
            .collect();
        v.sort();
        v
    };
    let e = &m.encoder;
    let fields = serde_json::json!([
        m.format,
        m.dataset,
        m.modality,
        names(&m.inputs),
        m.content_hash,
        names(&m.encoder_hashes),
        e.pooling,
        e.normalize,
        e.max_len
    ]);
    blake3::hash(fields.to_string().as_bytes()).to_hex().to_string()
}

/// Why an existing entry cannot be used, or `None` if it can.
fn stale_reason(want: &Manifest, matrix: &Path, manifest: &Path) -> Option<String> {
    let Ok(text) = std::fs::read_to_string(manifest) else { return Some("no cache entry".into()) };
    let Ok(have) = serde_json::from_str::<Manifest>(&text) else { return Some("manifest unreadable".into()) };
    if have.key != want.key {
        let mut what = Vec::new();
        if have.format != want.format {
            what.push("cache format");
        }
        if have.content_hash != want.content_hash {
            what.push("item texts");
        }
        if have.inputs.values().collect::<Vec<_>>() != want.inputs.values().collect::<Vec<_>>() {
            what.push("input files");
        }
        if have.encoder_hashes.values().collect::<Vec<_>>() != want.encoder_hashes.values().collect::<Vec<_>>() {
            what.push("encoder files");
        }
        if what.is_empty() {
            what.push("encoder settings");
        }
        return Some(format!("{} changed", what.join(", ")));
    }
    match hash_file(matrix) {
        Ok(h) if h == have.output_hash => None,
        _ => Some("matrix file does not match its manifest".into()),
    }
}

/// The text features of a catalogue: from the cache when valid, else encoded and stored.
pub fn text_features(
    id: DatasetId,
    cat: &Catalogue<Option<String>>,
    files: &EncoderFiles,
    paths: &DataPaths,
    opts: &FeatureOptions,
) -> Result<Built> {
    let want = Manifest {
        format: FORMAT,
        key: String::new(),
        dataset: id.name().into(),
        modality: Modality::Text,
        inputs: hash_map(&cat.inputs)?,
        content_hash: content_hash(cat),
        encoder: files.clone(),
        encoder_hashes: hash_map(&files.files)?,
        rows: cat.tokens.len(),
        dim: 0,
        zero_rows: cat.values.iter().filter(|v| v.is_none()).count(),
        output_hash: String::new(),
        seconds: 0.0,
        created_unix: 0,
        code: CodeVersion::current(),
    };
    let dir = paths.cache_dir.join("features").join(id.name());
    let stem = format!("{}-{}", Modality::Text.name(), files.name);
    let mut built = cached_matrix(want, &dir, &stem, opts.force, || {
        let encoder = TextEncoder::load(files, &candle_core::Device::Cpu)?;
        let present: Vec<usize> = (0..cat.values.len()).filter(|&r| cat.values[r].is_some()).collect();
        let texts: Vec<&str> = present.iter().map(|&r| cat.values[r].as_deref().unwrap_or("")).collect();
        let total = texts.len();
        let mut next_report = total / 10;
        let enc = encoder.encode(&texts, opts.batch_size, |done| {
            if total >= 2000 && done >= next_report && done < total {
                eprintln!("  encoded {done}/{total} texts");
                next_report = done + total / 10;
            }
        })?;
        let dim = encoder.dim;
        let mut rows = vec![0f32; cat.values.len() * dim];
        for (k, &r) in present.iter().enumerate() {
            rows[r * dim..(r + 1) * dim].copy_from_slice(&enc[k * dim..(k + 1) * dim]);
        }
        Ok((rows, dim))
    })?;
    built.source = files.describe();
    Ok(built)
}

/// Returns the matrix described by `want` (its input fields filled in, outputs empty) from
/// `<dir>/<stem>.safetensors` when that entry is valid, else calls `build` (-> rows, dim),
/// stores the result with its manifest and returns it.
pub fn cached_matrix(
    mut want: Manifest,
    dir: &Path,
    stem: &str,
    force: bool,
    build: impl FnOnce() -> Result<(Vec<f32>, usize)>,
) -> Result<Built> {
    want.key = key_of(&want);
    let matrix = dir.join(format!("{stem}.safetensors"));
    let manifest_path = dir.join(format!("{stem}.manifest.json"));
    let reason = if force { Some("forced".to_string()) } else { stale_reason(&want, &matrix, &manifest_path) };
    let Some(reason) = reason else {
        let t = candle_core::safetensors::load(&matrix, &candle_core::Device::Cpu)?;
        let t = t.get("features").with_context(|| format!("{}: no tensor `features`", matrix.display()))?;
        let (rows, dim) = t.dims2()?;
        anyhow::ensure!(rows == want.rows, "{}: {rows} rows, expected {}", matrix.display(), want.rows);
        let rows = t.flatten_all()?.to_vec1::<f32>()?;
        return Ok(Built { rows, dim, path: matrix, from_cache: true, rebuild_reason: None, source: String::new() });
    };
    let start = std::time::Instant::now();
    let (rows, dim) = build()?;
    anyhow::ensure!(rows.len() == want.rows * dim, "built {} values, expected {} x {dim}", rows.len(), want.rows);
    want.dim = dim;
    want.seconds = start.elapsed().as_secs_f64();
    want.created_unix =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tensor = candle_core::Tensor::from_slice(&rows, (want.rows, dim), &candle_core::Device::Cpu)?;
    crate::io::write_atomic_with(&matrix, |tmp| {
        candle_core::safetensors::save(&std::collections::HashMap::from([("features", tensor)]), tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        want.output_hash = hash_file(tmp)?;
        Ok(())
    })?;
    write_atomic(&manifest_path, serde_json::to_string_pretty(&want)?.as_bytes())?;
    Ok(Built { rows, dim, path: matrix, from_cache: false, rebuild_reason: Some(reason), source: String::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_sees_token_and_text_boundaries() {
        let c = |t: &[&str], v: &[Option<&str>]| Catalogue {
            tokens: t.iter().map(|s| s.to_string()).collect(),
            values: v.iter().map(|s| s.map(str::to_string)).collect(),
            inputs: vec![],
        };
        let a = content_hash(&c(&["1", "2"], &[Some("ab"), None]));
        assert_eq!(a, content_hash(&c(&["1", "2"], &[Some("ab"), None])));
        assert_ne!(a, content_hash(&c(&["1", "2"], &[Some("ab"), Some("")])));
        assert_ne!(a, content_hash(&c(&["1", "2"], &[Some("a"), None])));
        assert_ne!(content_hash(&c(&["1"], &[Some("2b")])), content_hash(&c(&["12"], &[Some("b")])));
    }

    fn manifest(content: &str, weights: &str) -> Manifest {
        let encoder = EncoderFiles {
            dir: "/enc/model".into(),
            name: "enc".into(),
            pooling: super::super::encoder::Pooling::Mean,
            normalize: true,
            max_len: 256,
            files: vec!["/enc/model/model.safetensors".into()],
        };
        Manifest {
            format: FORMAT,
            key: String::new(),
            dataset: "beauty".into(),
            modality: Modality::Text,
            inputs: BTreeMap::from([("/data/texts.txt.gz".to_string(), "aa".to_string())]),
            content_hash: content.into(),
            encoder,
            encoder_hashes: BTreeMap::from([("/enc/model/model.safetensors".to_string(), weights.to_string())]),
            rows: 2,
            dim: 0,
            zero_rows: 0,
            output_hash: String::new(),
            seconds: 0.0,
            created_unix: 0,
            code: CodeVersion { commit: "x".into(), dirty: false, crate_version: "0".into() },
        }
    }

    /// Runs `cached_matrix` and returns (rebuild reason, rows); the builder returns `value`.
    fn get(dir: &Path, m: Manifest, force: bool, value: f32) -> (Option<String>, Vec<f32>) {
        let b = cached_matrix(m, dir, "text-enc", force, || Ok((vec![value; 6], 3))).unwrap();
        assert_eq!(b.dim, 3);
        (b.rebuild_reason, b.rows)
    }

    #[test]
    fn cache_is_reused_only_when_everything_matches() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("features/beauty");
        let (why, rows) = get(&dir, manifest("c1", "w1"), false, 1.0);
        assert_eq!((why.as_deref(), rows[0]), (Some("no cache entry"), 1.0));
        assert_eq!(get(&dir, manifest("c1", "w1"), false, 2.0), (None, vec![1.0; 6]));
        // The same bytes at another path are the same input.
        let mut moved = manifest("c1", "w1");
        moved.encoder.dir = "/elsewhere/model".into();
        moved.inputs = BTreeMap::from([("/other/texts.txt.gz".to_string(), "aa".to_string())]);
        assert_eq!(get(&dir, moved, false, 2.0).0, None);
        assert_eq!(get(&dir, manifest("c2", "w1"), false, 3.0).0.as_deref(), Some("item texts changed"));
        assert_eq!(get(&dir, manifest("c2", "w2"), false, 4.0).0.as_deref(), Some("encoder files changed"));
        let mut settings = manifest("c2", "w2");
        settings.encoder.max_len = 8;
        assert_eq!(get(&dir, settings, false, 5.0).0.as_deref(), Some("encoder settings changed"));
        assert_eq!(get(&dir, manifest("c2", "w2"), true, 6.0), (Some("forced".into()), vec![6.0; 6]));
        // A matrix file that no longer matches its manifest is rebuilt, not read.
        let m = dir.join("text-enc.safetensors");
        let mut bytes = std::fs::read(&m).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&m, bytes).unwrap();
        let (why, rows) = get(&dir, manifest("c2", "w2"), false, 7.0);
        assert_eq!((why.as_deref(), rows[0]), (Some("matrix file does not match its manifest"), 7.0));
        std::fs::write(dir.join("text-enc.manifest.json"), "{").unwrap();
        assert_eq!(get(&dir, manifest("c2", "w2"), false, 8.0).0.as_deref(), Some("manifest unreadable"));
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "temporary files left: {names:?}");
    }
}
