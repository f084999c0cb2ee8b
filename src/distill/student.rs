//! The student's correlation losses on trainable modality embeddings `e_i`.
//!
//! Pairs: all ordered pairs `(i, j)`, `i != j`, of distinct items within one input sequence
//! (never across sequences). The released code also supervises `i = j`; `code_faithful`
//! includes it.
//!
//! Holistic (Eqs. 2-3): `s^S_ij = φ(W e_i, W e_j)`. Eq. 3 was lost in extraction; the text
//! describes a temperature-softened "soft match" with a squared-error loss, and the released
//! code divides the score difference by τ. We use the squared error of the τ-scaled scores,
//! summed over a sequence's pairs and averaged over sequences:
//! - soft match (default): `L = mean_b Σ_(i,j)∈b ((s^S_ij - s^T_ij) / τ)²`,
//! - hard match ("w/o τ"): the same with τ = 1,
//! - code_faithful: `L = mean_b ‖M ⊙ sqrt(((S^S - S^T)/τ)² + 1e-8)‖_F` (a norm, not its square)
//!   with W two stacked affine layers (the released code).
//!
//! Dissected (Eqs. 4-5): `logits_ij = W_2 ReLU(W_1 (e_i - e_j))` (code_faithful: `|e_i - e_j|`),
//! cross-entropy against the teacher's code `c_ij`, averaged over pairs. Pairs beyond
//! `max_pairs` per batch are subsampled (seeded) to bound memory on long sequences.

use super::teacher::Teacher;
use crate::model::layers::{linear, Linear};
use candle_core::{Result, Tensor};
use candle_nn::{Init, Module, VarBuilder};
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudentConfig {
    /// Holistic loss weight α.
    pub alpha: f64,
    /// Dissected loss weight β.
    pub beta: f64,
    /// Temperature τ of the soft match.
    pub tau: f64,
    /// Soft match (true) or hard match ("w/o τ").
    pub soft_match: bool,
    /// Use the holistic loss ("w/o holistic" when false).
    pub holistic: bool,
    /// Use the dissected loss ("w/o dissected" when false).
    pub dissected: bool,
    /// At most this many pairs per batch for the dissected loss.
    pub max_pairs: usize,
}

impl Default for StudentConfig {
    /// The paper's Amazon settings: (α, β) = (1, 0.5), τ = 1.5.
    fn default() -> Self {
        Self { alpha: 1.0, beta: 0.5, tau: 1.5, soft_match: true, holistic: true, dissected: true, max_pairs: 65_536 }
    }
}

/// Distinct items of each input row, padded: [rows, width].
#[derive(Debug, Clone, PartialEq)]
pub struct UniqueItems {
    pub rows: usize,
    pub width: usize,
    pub items: Vec<u32>,
}

impl UniqueItems {
    /// From a padded batch `[rows, cols]` of item ids (0 = padding), keeping first occurrences.
    pub fn from_batch(items: &[u32], rows: usize, cols: usize) -> Self {
        let per_row: Vec<Vec<u32>> = items
            .chunks(cols)
            .map(|r| {
                let mut seen = Vec::new();
                for &i in r {
                    if i != 0 && !seen.contains(&i) {
                        seen.push(i);
                    }
                }
                seen
            })
            .collect();
        let width = per_row.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut out = vec![0u32; rows * width];
        for (r, u) in per_row.iter().enumerate() {
            out[r * width..r * width + u.len()].copy_from_slice(u);
        }
        Self { rows, width, items: out }
    }
}

/// Teacher targets for one modality on a batch's pairs.
pub struct PairTargets {
    /// [rows, width, width] 1 for a supervised pair, else 0.
    pub mask: Vec<f32>,
    /// [rows, width, width] teacher holistic scores (0 where masked).
    pub holistic: Vec<f32>,
    /// Flat indices `(r*width + a, r*width + b)` of the dissected pairs, and their codes.
    pub pairs: Vec<(u32, u32)>,
    pub codes: Vec<u32>,
}

impl PairTargets {
    pub fn new(u: &UniqueItems, teacher: &Teacher, include_self: bool, max_pairs: usize, rng: &mut ChaCha8Rng) -> Self {
        let w = u.width;
        let mut mask = vec![0f32; u.rows * w * w];
        let mut holistic = vec![0f32; u.rows * w * w];
        let mut pairs = Vec::new();
        for r in 0..u.rows {
            let row = &u.items[r * w..(r + 1) * w];
            for a in 0..w {
                for b in 0..w {
                    if row[a] == 0 || row[b] == 0 || (a == b && !include_self) {
                        continue;
                    }
                    let k = (r * w + a) * w + b;
                    mask[k] = 1.0;
                    holistic[k] = teacher.holistic(row[a], row[b]);
                    pairs.push(((r * w + a) as u32, (r * w + b) as u32));
                }
            }
        }
        if pairs.len() > max_pairs {
            let mut keep: Vec<usize> = sample(rng, pairs.len(), max_pairs).into_vec();
            keep.sort_unstable();
            pairs = keep.into_iter().map(|k| pairs[k]).collect();
        }
        let codes = pairs.iter().map(|&(a, b)| teacher.code(u.items[a as usize], u.items[b as usize])).collect();
        Self { mask, holistic, pairs, codes }
    }
}

/// The student heads of one modality.
#[derive(Debug, Clone)]
pub struct CdlHead {
    hol: Vec<Linear>,
    dis_1: Linear,
    dis_2: Linear,
}

impl CdlHead {
    pub fn new(dim: usize, n_codes: usize, code_faithful: bool, vb: VarBuilder) -> Result<Self> {
        let init = |fan_in: usize| {
            let b = 1.0 / (fan_in as f64).sqrt();
            Init::Uniform { lo: -b, up: b }
        };
        let n_hol = if code_faithful { 2 } else { 1 };
        let hol = (0..n_hol)
            .map(|l| linear(dim, dim, init(dim), Some(init(dim)), vb.pp(format!("holistic_{l}"))))
            .collect::<Result<_>>()?;
        Ok(Self {
            hol,
            dis_1: linear(dim, dim, init(dim), Some(init(dim)), vb.pp("dissected_1"))?,
            dis_2: linear(dim, n_codes, init(dim), Some(init(dim)), vb.pp("dissected_2"))?,
        })
    }

    /// Holistic loss for embeddings `e` [rows, width, dim].
    pub fn holistic_loss(
        &self,
        e: &Tensor,
        t: &PairTargets,
        teacher: &Teacher,
        cfg: &StudentConfig,
        code_faithful: bool,
    ) -> Result<Tensor> {
        let (rows, w, _) = e.dims3()?;
        let mut p = e.clone();
        for l in &self.hol {
            p = l.forward(&p)?;
        }
        let s = teacher.scoring.pairwise(&p)?; // [rows, w, w]
        let dev = e.device();
        let mask = Tensor::from_slice(&t.mask, (rows, w, w), dev)?;
        let target = Tensor::from_slice(&t.holistic, (rows, w, w), dev)?;
        let tau = if cfg.soft_match || code_faithful { cfg.tau } else { 1.0 };
        let sq = ((&s - &target)? / tau)?.sqr()?; // [rows, w, w]
        if code_faithful {
            return ((sq + 1e-8)? * &mask)?.sum((1, 2))?.sqrt()?.mean_all();
        }
        let rows_with_pairs = t.mask.chunks(w * w).filter(|r| r.iter().any(|&v| v > 0.0)).count().max(1);
        (sq * &mask)?.sum_all()? / rows_with_pairs as f64
    }

    /// Dissected loss for embeddings `e` [rows, width, dim].
    pub fn dissected_loss(&self, e: &Tensor, t: &PairTargets, code_faithful: bool) -> Result<Option<Tensor>> {
        if t.pairs.is_empty() {
            return Ok(None);
        }
        let (rows, w, d) = e.dims3()?;
        let flat = e.reshape((rows * w, d))?;
        let dev = e.device();
        let (a, b): (Vec<u32>, Vec<u32>) = t.pairs.iter().copied().unzip();
        let n = a.len();
        let ea = flat.index_select(&Tensor::from_vec(a, n, dev)?, 0)?;
        let eb = flat.index_select(&Tensor::from_vec(b, n, dev)?, 0)?;
        let diff = (ea - eb)?; // [P, dim]
        let diff = if code_faithful { diff.abs()? } else { diff };
        let logits = self.dis_2.forward(&self.dis_1.forward(&diff)?.relu()?)?; // [P, K]
        Ok(Some(crate::ops::cross_entropy(&logits, &t.codes)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::quantize::Codebook;
    use crate::distill::Scoring;
    use crate::model::params::ParamStore;
    use candle_core::{Device, Var};
    use rand::SeedableRng;

    fn teacher() -> Teacher {
        // Items 1..3 with 2-d representations; codebook of 2 codes on 1 sub-vector.
        let repr = vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        Teacher {
            repr,
            dim: 2,
            scoring: Scoring::Dot,
            subvectors: 1,
            codebook: Codebook { k: 2, dim: 1, centroids: vec![0.0, 1.0] },
            fit_mse: 0.0,
        }
    }

    #[test]
    fn unique_items_keep_first_occurrence() {
        let u = UniqueItems::from_batch(&[3, 1, 3, 0, 2, 2, 0, 0], 2, 4);
        assert_eq!((u.rows, u.width), (2, 2));
        assert_eq!(u.items, vec![3, 1, 2, 0]);
    }

    #[test]
    fn targets_and_losses_on_two_and_three_items() {
        let t = teacher();
        let u = UniqueItems { rows: 1, width: 3, items: vec![1, 2, 3] };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let pt = PairTargets::new(&u, &t, false, 100, &mut rng);
        assert_eq!(pt.pairs.len(), 6);
        // dot scores: (1,2)=0, (1,3)=1, (2,3)=1; codes: nearest of {0, 1}
        assert_eq!(pt.holistic[1], 0.0);
        assert_eq!(pt.holistic[2], 1.0);
        assert_eq!(pt.codes, vec![0, 1, 0, 1, 1, 1]);
        let dev = Device::Cpu;
        // Student embeddings equal to the teacher's, identity projection -> hard loss 0.
        let params = ParamStore::new(1);
        let head = CdlHead::new(2, 2, false, params.var_builder(&dev)).unwrap();
        for (name, var) in params.vars() {
            if name == "holistic_0.weight" {
                var.set(&Tensor::new(&[[1f32, 0.], [0., 1.]], &dev).unwrap()).unwrap();
            } else if name == "holistic_0.bias" {
                var.set(&Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap()).unwrap();
            }
        }
        let e = Tensor::new(&[[[1f32, 0.], [0., 1.], [1., 1.]]], &dev).unwrap();
        let cfg = StudentConfig { soft_match: false, ..Default::default() };
        let l = head.holistic_loss(&e, &pt, &t, &cfg, false).unwrap().to_scalar::<f32>().unwrap();
        assert!(l.abs() < 1e-6, "{l}");
        let soft = head.holistic_loss(&e, &pt, &t, &StudentConfig::default(), false).unwrap();
        assert!(soft.to_scalar::<f32>().unwrap().abs() < 1e-6);
        // Scaling the embeddings changes the student's scores: loss by hand.
        let e2 = (&e * 2.0).unwrap();
        let l2 = head.holistic_loss(&e2, &pt, &t, &cfg, false).unwrap().to_scalar::<f32>().unwrap();
        // student dot = 4 * teacher dot: pairs (1,2)=0, (1,3)=4 vs 1, (2,3)=4 vs 1, both orders
        // -> hard match: sum of squared errors in the one sequence = 4 * 9 = 36
        assert!((l2 - 36.0).abs() < 1e-4, "{l2}");
        // soft match divides the differences by τ = 1.5: 36 / 2.25 = 16
        let soft =
            head.holistic_loss(&e2, &pt, &t, &StudentConfig::default(), false).unwrap().to_scalar::<f32>().unwrap();
        assert!((soft - 16.0).abs() < 1e-4, "{soft}");
        // Code-faithful: sqrt(sum over pairs (diff/τ)^2 + eps) = sqrt(4 * 9 / 2.25) = 4.
        let cf = head.holistic_loss(&e2, &pt, &t, &cfg, true).unwrap().to_scalar::<f32>().unwrap();
        assert!((cf - 4.0).abs() < 1e-4, "{cf}");
    }

    #[test]
    fn dissected_gradients_reach_only_embeddings_and_its_head() {
        let t = teacher();
        let u = UniqueItems { rows: 1, width: 2, items: vec![1, 3] };
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let pt = PairTargets::new(&u, &t, false, 100, &mut rng);
        let dev = Device::Cpu;
        let params = ParamStore::new(1);
        let head = CdlHead::new(2, 2, false, params.var_builder(&dev)).unwrap();
        let e = Var::from_tensor(&Tensor::new(&[[[0.3f32, 0.1], [0.5, 0.9]]], &dev).unwrap()).unwrap();
        let loss = head.dissected_loss(e.as_tensor(), &pt, false).unwrap().unwrap();
        // Two pairs, uniform-ish logits -> loss near ln 2.
        let v = loss.to_scalar::<f32>().unwrap();
        assert!(v > 0.3 && v < 1.5, "{v}");
        let g = loss.backward().unwrap();
        assert!(g.get(e.as_tensor()).is_some());
        for (name, var) in params.vars() {
            let has = g.get(var.as_tensor()).is_some();
            assert_eq!(has, name.starts_with("dissected"), "{name}");
        }
    }
}
