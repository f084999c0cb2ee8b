//! Builds what a run trains: the backbone, the optional modality embeddings, the KDSR teacher
//! and student heads, and the drift probes, from a [`RunConfig`].

use crate::config::RunConfig;
use crate::data::split::Split;
use crate::data::Dataset;
use crate::distill::autoencoder::{self, AutoencoderConfig};
use crate::distill::cdl::Cdl;
use crate::distill::drift::DriftProbe;
use crate::distill::Teacher;
use crate::error::bad_input;
use crate::modality::{load_features, FeatureMatrix, Modality};
use crate::model::params::ParamStore;
use crate::model::{
    Backbone, Dims, Inputs, ModalityClusters, ModalityEmbeddings, ModalityMode, ModalityUse, Recommender,
};
use crate::train::RunOptions;
use anyhow::{Context, Result};
use candle_core::Tensor;
use serde_json::json;
use std::path::Path;

pub struct Setup {
    pub params: ParamStore,
    pub model: Recommender,
    pub cdl: Option<Cdl>,
    /// (modality name, probe)
    pub probes: Vec<(String, DriftProbe)>,
    /// What was built, for metrics.json (feature sources, missing items, teacher fit).
    pub info: serde_json::Value,
}

pub fn build(cfg: &RunConfig, ds: &Dataset, split: &Split, opts: &RunOptions) -> Result<Setup> {
    let params = ParamStore::new(cfg.seed);
    let hidden = cfg.model.width().context("popularity has no trainable model")?;
    let mut dims = Dims::ids(ds.n_items, cfg.train.max_len);
    let Some(mc) = &cfg.modality else {
        let backbone =
            Backbone::new(&cfg.model, &dims, params.var_builder(&opts.device))?.context("neural backbone")?;
        return Ok(Setup {
            params,
            model: Recommender { backbone, modality: None },
            cdl: None,
            probes: Vec::new(),
            info: json!(null),
        });
    };
    if mc.modalities.is_empty() {
        return Err(bad_input("modality.modalities is empty: list at least one of text, attributes, image"));
    }
    if let Some(c) = cfg.model.traits().and_then(|t| t.clusters) {
        if c.clusters > ds.n_items {
            return Err(bad_input(format!(
                "model.clusters ({}) exceeds the dataset's {} items: k-means needs at most one cluster per item",
                c.clusters, ds.n_items
            )));
        }
    }
    if cfg.model.traits().is_some_and(|t| t.inputs == Inputs::Tables) && mc.autoencoder.hidden != hidden {
        return Err(bad_input(format!(
            "{} reads the modality tables unprojected: modality.autoencoder.hidden ({}) must equal the model's embedding width ({hidden})",
            cfg.model.kind().name(),
            mc.autoencoder.hidden
        )));
    }
    let train_inputs: Vec<&[u32]> = ds.sequences.iter().zip(&split.train_end).map(|(s, &e)| &s[..e as usize]).collect();
    let mut info = serde_json::Map::new();
    let id_reference = match &mc.drift.id_reference {
        Some(r) if mc.drift.pairs > 0 => {
            let (path, twin) = super::reference::checkpoint(r, cfg, ds, opts)?;
            let (t, d) = load_id_reference(&path)?;
            if t.len() / d != ds.n_items + 1 {
                return Err(bad_input(format!(
                    "{}: modality.drift.id_reference has {} items, this dataset {}",
                    path.display(),
                    (t.len() / d).saturating_sub(1),
                    ds.n_items
                )));
            }
            info.insert("id_reference".into(), json!({ "checkpoint": path, "twin": twin }));
            Some((t, d))
        }
        _ => None,
    };
    let mut inits = Vec::new();
    let mut teachers = Vec::new();
    let mut probes = Vec::new();
    for &m in &mc.modalities {
        // Parallel runs that need the same inputs take turns, in this process and across the
        // processes sharing the cache (array tasks on one node): the first builds and caches
        // the features and teacher codes, the others then read the caches.
        let key = format!("{}-{}", ds.name.replace(['/', ':'], "_"), m.name());
        let lock = input_lock(key.clone());
        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        let file_lock =
            crate::io::FileLock::exclusive(&opts.paths.cache_dir.join("locks").join(format!("{key}.lock")))?;
        let loaded = load_features(ds, m, &opts.paths, &mc.features)
            .with_context(|| format!("loading {} features of {}", m.name(), ds.name))?;
        let feats = &loaded.matrix;
        let (mut codes, ae_info) =
            teacher_codes(ds, m, feats, &mc.autoencoder, mc.teacher_seed, &opts.paths.cache_dir)?;
        drop(file_lock);
        drop(guard);
        if mc.teacher.centre {
            crate::distill::teacher::centre_codes(&mut codes, mc.autoencoder.hidden);
        }
        let dim = mc.autoencoder.hidden;
        let teacher = Teacher::fit(codes.clone(), dim, &mc.teacher, &train_inputs, mc.teacher_seed)?;
        info.insert(
            m.name().into(),
            json!({
                "source": loaded.source,
                "feature_dim": feats.dim,
                "items_without_modality": feats.missing.len(),
                "autoencoder": ae_info,
                "codebook_fit_mse": teacher.fit_mse,
            }),
        );
        if mc.drift.pairs > 0 {
            let reference = id_reference.as_ref().map(|(t, d)| (t.as_slice(), *d));
            let probe = DriftProbe::new(
                mc.drift.pairs,
                ds.n_items,
                (&feats.data, feats.dim),
                (&codes, mc.autoencoder.hidden),
                reference,
                &train_inputs,
                mc.teacher_seed,
            );
            probes.push((m.name().to_string(), probe));
        }
        if m == Modality::Attributes && cfg.model.traits().is_some_and(|t| t.attribute_labels) {
            let labels = Tensor::from_slice(&feats.data, (ds.n_items + 1, feats.dim), &opts.device)?;
            dims.attribute_labels = Some(labels.ne(0f32)?.to_dtype(candle_core::DType::F32)?);
        }
        if let Some(c) = cfg.model.traits().and_then(|t| t.clusters) {
            let book = crate::distill::quantize::kmeans(&codes[dim..], dim, c.clusters, 100, c.seed);
            let links = codes.chunks(dim).flat_map(|v| book.nearest_k(v, c.link_k)).collect();
            dims.clusters.push(ModalityClusters { name: m.name().to_string(), dim, centroids: book.centroids, links });
        }
        inits.push((m.name().to_string(), codes, dim));
        teachers.push((m.name().to_string(), teacher));
    }
    dims.streams = inits.len();
    let backbone = Backbone::new(&cfg.model, &dims, params.var_builder(&opts.device))
        .with_context(|| format!("building {}", cfg.model.kind().name()))?
        .context("neural backbone")?;
    for (name, value) in backbone.data_init() {
        params.set(&name, &value)?;
    }
    // A backbone that reads only the codes or the attribute ids gets no modality tables.
    let inputs = backbone.traits.inputs;
    let modality = match backbone.traits.modality {
        ModalityUse::Codes | ModalityUse::Attributes => None,
        _ => Some(ModalityEmbeddings::new(&inits, ds.n_items + 1, hidden, mc.mode, inputs, &params, &opts.device)?),
    };
    let cdl = match mc.mode {
        ModalityMode::Cdl => {
            Some(Cdl::new(teachers, mc.student.clone(), mc.code_faithful, &params, &opts.device, cfg.seed)?)
        }
        _ => None,
    };
    Ok(Setup { params, model: Recommender { backbone, modality }, cdl, probes, info: info.into() })
}

/// One lock per dataset and modality in this process (taken in [`build`]).
fn input_lock(key: String) -> std::sync::Arc<std::sync::Mutex<()>> {
    type Locks = std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<std::sync::Mutex<()>>>>;
    static LOCKS: std::sync::OnceLock<Locks> = std::sync::OnceLock::new();
    let mut map = LOCKS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    map.entry(key).or_default().clone()
}

/// The teacher representation of every item (autoencoder codes), cached under
/// `<cache>/teacher/` by a hash of everything that determines it.
fn teacher_codes(
    ds: &Dataset,
    m: Modality,
    feats: &FeatureMatrix,
    cfg: &AutoencoderConfig,
    seed: u64,
    cache_dir: &Path,
) -> Result<(Vec<f32>, serde_json::Value)> {
    let mut h = blake3::Hasher::new();
    h.update(ds.name.as_bytes());
    h.update(m.name().as_bytes());
    h.update(&(feats.dim as u64).to_le_bytes());
    for v in &feats.data {
        h.update(&v.to_le_bytes());
    }
    h.update(toml::to_string(cfg).unwrap_or_default().as_bytes());
    h.update(&seed.to_le_bytes());
    let key = h.finalize().to_hex()[..20].to_string();
    let dir = cache_dir.join("teacher");
    let path = dir.join(format!("{}-{}-{key}.safetensors", m.name(), ds.name.replace(['/', ':'], "_")));
    if path.exists() {
        let t = candle_core::safetensors::load(&path, &candle_core::Device::Cpu)
            .with_context(|| format!("reading cached teacher {}", path.display()))?;
        if let Some(codes) = t.get("codes") {
            let codes = codes.flatten_all()?.to_vec1::<f32>()?;
            if codes.len() == (ds.n_items + 1) * cfg.hidden {
                return Ok((codes, json!({"cache": path.display().to_string(), "from_cache": true})));
            }
        }
    }
    let t0 = std::time::Instant::now();
    let trained = autoencoder::train(&feats.data, feats.dim, cfg, seed)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tensor =
        candle_core::Tensor::from_slice(&trained.codes, (ds.n_items + 1, cfg.hidden), &candle_core::Device::Cpu)?;
    crate::io::save_tensors_atomic(&path, [("codes", tensor)])?;
    let info = json!({
        "cache": path.display().to_string(),
        "from_cache": false,
        "epochs": trained.epochs,
        "reconstruction_mse": trained.final_mse,
        "seconds": t0.elapsed().as_secs_f64(),
    });
    Ok((trained.codes, info))
}

/// `item_embedding.weight` of a pure-ID model's checkpoint: (values, dim).
fn load_id_reference(path: &Path) -> Result<(Vec<f32>, usize)> {
    let t = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
        .map_err(|e| bad_input(format!("{}: cannot read the drift ID reference: {e}", path.display())))?;
    let w = t
        .get("item_embedding.weight")
        .ok_or_else(|| bad_input(format!("{}: no `item_embedding.weight` tensor", path.display())))?;
    let d = match w.dims() {
        &[_, d] if d > 0 => d,
        dims => {
            return Err(bad_input(format!(
                "{}: `item_embedding.weight` has shape {dims:?}, want [items + 1, hidden]",
                path.display()
            )))
        }
    };
    Ok((w.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?, d))
}

/// Pearson drift of each modality table (and of its projection by the holistic head, for
/// KDSR runs) for the epoch log; see [`DriftProbe`].
pub fn drift_columns(
    probes: &[(String, DriftProbe)],
    model: &Recommender,
    cdl: Option<&Cdl>,
) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    let Some(me) = &model.modality else { return Ok(out) };
    for (m, ((name, probe), table)) in probes.iter().zip(&me.tables).enumerate() {
        let d = table.dim(1)?;
        let values = table.flatten_all()?.to_vec1::<f32>()?;
        let projected = match cdl {
            Some(c) => {
                let p = c.project(m, table)?;
                Some((p.dim(1)?, p.flatten_all()?.to_vec1::<f32>()?))
            }
            None => None,
        };
        let cols = probe.measure((&values, d), projected.as_ref().map(|(pd, v)| (v.as_slice(), *pd)));
        out.extend(cols.into_iter().map(|(k, r)| (format!("drift_{name}_{k}"), r)));
    }
    Ok(out)
}
