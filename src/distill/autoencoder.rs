//! The teacher's autoencoder: `z = σ(W_e x + b_e)`, `x̂ = W_d z + b_d`, trained with the mean
//! squared reconstruction error `|x - x̂|² / d` and Adam. Its codes `z ∈ (0, 1)^h` (h = 128)
//! are the teacher representation and the initial student modality embeddings. The paper
//! calls the autoencoder linear, `z = W_e x + b_e` (`activation = "linear"`, the default since
//! it was chosen on validation NDCG@20, see the README's Findings); the released code's sigmoid
//! is `activation = "sigmoid"`. Sigmoid codes share a positive mean, which puts the teacher's
//! cosines in a narrow band near 1 (their standard deviation on Beauty text pairs is 0.006).
//!
//! Training follows the released code's schedule (lr 1e-3, batch 256, at most 500 epochs; every
//! 10 epochs the loss is checked and training stops after 4 checks without improvement), but
//! shuffles batches (seeded), counts only improvements above `min_rel_improvement` (the
//! released rule never fires while the loss creeps down, so it always runs 500 epochs), and
//! keeps a real copy of the best weights (the released code's `best_state` aliases the live
//! weights, so it ends with the last ones).

use crate::model::params::ParamStore;
use crate::optim::Adam;
use candle_core::{Device, Result, Tensor};
use candle_nn::{Init, Module};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoencoderConfig {
    pub hidden: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub max_epochs: usize,
    pub check_every: usize,
    pub patience_checks: usize,
    /// A check counts as an improvement only if the loss fell by more than this fraction.
    pub min_rel_improvement: f64,
    /// The encoder's output activation. A TOML without the key means `sigmoid`, the only
    /// encoder before the key existed (and the key is left out for it), so older run files and
    /// teacher caches keep their meaning and names.
    #[serde(default = "Activation::legacy", skip_serializing_if = "Activation::is_legacy")]
    pub activation: Activation,
}

/// The autoencoder encoder's output activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `σ(W_e x + b_e)`, codes in (0, 1) (the released code).
    Sigmoid,
    /// `W_e x + b_e` (the paper's "linear autoencoder").
    #[default]
    Linear,
}

impl Activation {
    pub fn legacy() -> Self {
        Self::Sigmoid
    }

    pub fn is_legacy(&self) -> bool {
        *self == Self::legacy()
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Sigmoid => candle_nn::ops::sigmoid(x),
            Self::Linear => Ok(x.clone()),
        }
    }
}

impl Default for AutoencoderConfig {
    fn default() -> Self {
        Self {
            hidden: 128,
            lr: 1e-3,
            batch_size: 256,
            max_epochs: 500,
            check_every: 10,
            patience_checks: 4,
            min_rel_improvement: 0.01,
            activation: Activation::Linear,
        }
    }
}

/// Result of training: codes for every row of the input (zero rows stay zero).
pub struct Trained {
    /// [rows, hidden], row-major.
    pub codes: Vec<f32>,
    pub hidden: usize,
    pub epochs: usize,
    pub final_mse: f64,
}

/// Trains the autoencoder on the non-zero rows of `features` ([rows, d], row-major) and
/// returns the codes of every row; all-zero rows (padding, items without this modality) get
/// all-zero codes.
pub fn train(features: &[f32], d: usize, cfg: &AutoencoderConfig, seed: u64) -> Result<Trained> {
    let dev = Device::Cpu;
    let rows = features.len() / d;
    let live: Vec<usize> = (0..rows).filter(|&r| features[r * d..(r + 1) * d].iter().any(|&v| v != 0.0)).collect();
    if live.is_empty() {
        candle_core::bail!("autoencoder: every feature row is zero");
    }
    let params = ParamStore::new(seed);
    let vb = params.var_builder(&dev);
    let b_e = 1.0 / (d as f64).sqrt();
    let b_d = 1.0 / (cfg.hidden as f64).sqrt();
    let enc = crate::model::layers::linear(
        d,
        cfg.hidden,
        Init::Uniform { lo: -b_e, up: b_e },
        Some(Init::Uniform { lo: -b_e, up: b_e }),
        vb.pp("encoder"),
    )?;
    let dec = crate::model::layers::linear(
        cfg.hidden,
        d,
        Init::Uniform { lo: -b_d, up: b_d },
        Some(Init::Uniform { lo: -b_d, up: b_d }),
        vb.pp("decoder"),
    )?;
    let mut adam = Adam::new(params.vars(), cfg.lr, 0.0)?;
    let x_all = Tensor::from_vec(
        live.iter().flat_map(|&r| features[r * d..(r + 1) * d].to_vec()).collect::<Vec<_>>(),
        (live.len(), d),
        &dev,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<u32> = (0..live.len() as u32).collect();
    let (mut best, mut best_state, mut bad, mut epochs) = (f64::INFINITY, params.tensors(), 0, 0);
    for epoch in 1..=cfg.max_epochs {
        epochs = epoch;
        order.shuffle(&mut rng);
        let mut total = 0f64;
        for idx in order.chunks(cfg.batch_size) {
            let x = x_all.index_select(&Tensor::from_slice(idx, idx.len(), &dev)?, 0)?;
            let z = cfg.activation.apply(&enc.forward(&x)?)?;
            let loss = (dec.forward(&z)? - &x)?.sqr()?.mean_all()?;
            total += loss.to_scalar::<f32>()? as f64 * idx.len() as f64;
            adam.step(&loss.backward()?)?;
        }
        if epoch % cfg.check_every == 0 {
            if total < best * (1.0 - cfg.min_rel_improvement) {
                best = total;
                best_state = params.tensors();
                bad = 0;
            } else {
                bad += 1;
                if bad >= cfg.patience_checks {
                    break;
                }
            }
        }
    }
    if best.is_finite() {
        params.load(&best_state)?;
    }
    let z = cfg.activation.apply(&enc.forward(&x_all)?)?;
    let final_mse = (dec.forward(&z)? - &x_all)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
    let z = z.flatten_all()?.to_vec1::<f32>()?;
    let mut codes = vec![0f32; rows * cfg.hidden];
    for (k, &r) in live.iter().enumerate() {
        codes[r * cfg.hidden..(r + 1) * cfg.hidden].copy_from_slice(&z[k * cfg.hidden..(k + 1) * cfg.hidden]);
    }
    Ok(Trained { codes, hidden: cfg.hidden, epochs, final_mse })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_low_rank_data_and_keeps_zero_rows() {
        // 200 rows of rank-3 data in 12 dims, plus a zero row at the top (padding).
        let d = 12;
        let mut feats = vec![0f32; d];
        for r in 0..200 {
            let (a, b, c) = ((r as f32 * 0.37).sin(), (r as f32 * 0.11).cos(), (r % 7) as f32 / 7.0);
            for j in 0..d {
                feats.push(a * (j as f32 * 0.5).sin() + b * (j as f32 * 0.3).cos() + c * (j % 3) as f32);
            }
        }
        let cfg = AutoencoderConfig {
            hidden: 8,
            max_epochs: 300,
            batch_size: 32,
            lr: 1e-2,
            activation: Activation::Sigmoid,
            ..Default::default()
        };
        let t = train(&feats, d, &cfg, 5).unwrap();
        let var: f64 = feats[d..].iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / (200 * d) as f64;
        assert!(t.final_mse < 0.1 * var, "mse {} vs signal power {var}", t.final_mse);
        assert!(t.codes[..8].iter().all(|&v| v == 0.0));
        assert!(t.codes[8..].iter().all(|&v| v > 0.0 && v < 1.0));
        let again = train(&feats, d, &cfg, 5).unwrap();
        assert_eq!(t.codes, again.codes);
        let linear = train(&feats, d, &AutoencoderConfig { activation: Activation::Linear, ..cfg }, 5).unwrap();
        assert!(linear.final_mse < 0.1 * var && linear.codes[8..].iter().any(|&v| v < 0.0));
    }
}
