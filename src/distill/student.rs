//! The student's correlation losses on trainable modality embeddings `e_i`.
//!
//! Pairs: all ordered pairs `(i, j)`, `i != j`, of distinct items within one input sequence
//! (never across sequences, also when several sequences share a packed row). The released code also supervises `i = j`; `code_faithful`
//! includes it.
//!
//! Holistic (Eqs. 2-3): `s^S_ij = φ(W e_i, W e_j)`. Eq. 3 was lost in extraction; the text
//! describes a temperature-softened "soft match" with a squared-error loss, and the released
//! code divides the score difference by τ. We use the squared error of the τ-scaled scores,
//! summed over a sequence's pairs and averaged over sequences:
//! - soft match (default): `L = mean_b Σ_(i,j)∈b ((s^S_ij - s^T_ij) / τ)²`,
//! - hard match ("w/o τ"): the same with τ = 1,
//! - `holistic_form = "norm"`: `L = mean_b sqrt(Σ_(i,j)∈b ((s^S_ij - s^T_ij) / τ)² + 1e-8)`, the
//!   Frobenius norm of each sequence's difference matrix (not its square), as the released code;
//! - code_faithful: `L = mean_b ‖M ⊙ sqrt(((S^S - S^T)/τ)² + 1e-8)‖_F` averaged over all
//!   sequences, with W two stacked affine layers (the released code).
//!
//! Dissected (Eqs. 4-5): `logits_ij = W_2 ReLU(W_1 (e_i - e_j))` (code_faithful: `|e_i - e_j|`),
//! cross-entropy against the teacher's code `c_ij`, averaged over pairs. Pairs beyond
//! `max_pairs` per batch are subsampled (seeded) to bound memory on long sequences.
//!
//! Both losses work on the batch's distinct items `e` [U, d] and its list of pairs: each
//! projection runs once per item, scores are computed for supervised pairs only, and nothing
//! is spent on the padding of a [B, L, L] grid (a Beauty batch pads to L = 50 while rows hold
//! about 8 distinct items, so the grid would be ~97% padding).

use super::teacher::Teacher;
use crate::model::layers::{linear, Linear};
use candle_core::{Device, Result, Tensor};
use candle_nn::{Init, Module, VarBuilder};
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

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
    /// Form of the holistic loss per sequence: squared error (the text) or its norm (the
    /// released code); see the module docs.
    pub holistic_form: HolisticForm,
    /// Per-modality weights overriding (α, β), by modality name, e.g.
    /// `weights.text = { holistic = 0.5 }` (the released code's effective weights are image ×4,
    /// text ×0.5).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<String, LossWeights>,
}

/// Form of the holistic loss of one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum HolisticForm {
    /// `Σ_pairs ((s^S - s^T) / τ)²`.
    #[default]
    Squared,
    /// `sqrt(Σ_pairs ((s^S - s^T) / τ)² + 1e-8)`.
    Norm,
}

/// One modality's loss weights; an unset weight falls back to α (holistic) or β (dissected).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LossWeights {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holistic: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dissected: Option<f64>,
}

impl Default for StudentConfig {
    /// The paper's Amazon settings: (α, β) = (1, 0.5), τ = 1.5.
    fn default() -> Self {
        Self {
            alpha: 1.0,
            beta: 0.5,
            tau: 1.5,
            soft_match: true,
            holistic: true,
            dissected: true,
            max_pairs: 65_536,
            holistic_form: HolisticForm::Squared,
            weights: BTreeMap::new(),
        }
    }
}

impl StudentConfig {
    /// (holistic, dissected) weights of modality `name`.
    pub fn weights_of(&self, name: &str) -> (f64, f64) {
        let w = self.weights.get(name).copied().unwrap_or_default();
        (w.holistic.unwrap_or(self.alpha), w.dissected.unwrap_or(self.beta))
    }
}

/// The supervised pairs of a batch, shared by every modality: all ordered pairs `(i, j)` of
/// distinct items within one input sequence (with `i = j` when `include_self`), sequence by
/// sequence. "Rows" below are the batch's sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPairs {
    /// Distinct items of the whole batch in first-occurrence order: the rows of the gathered
    /// embeddings `e` [U, d].
    pub items: Vec<u32>,
    /// Per pair: positions in `items` of `i` and of `j`, and the batch row it comes from.
    pub a: Vec<u32>,
    pub b: Vec<u32>,
    pub row: Vec<u32>,
    /// Per pair `(i, j)`: the index of `(j, i)` (itself for `i = j`). Every teacher score is
    /// symmetric to the bit (`φ(a, b)` and its sub-vector scores take the same operations in
    /// the same order either way round), so targets are computed once per unordered pair.
    pub mirror: Vec<u32>,
    pub rows: usize,
    /// Rows with at least one pair.
    pub rows_with_pairs: usize,
}

impl BatchPairs {
    /// From a padded batch `[rows, cols]` of item ids (0 = padding), one sequence per row.
    pub fn from_batch(items: &[u32], rows: usize, cols: usize, include_self: bool) -> Self {
        Self::from_sequences(items.chunks(cols).take(rows), include_self)
    }

    /// From the item slices of a batch's sequences (0 = padding, skipped).
    pub fn from_sequences<'a>(seqs: impl Iterator<Item = &'a [u32]>, include_self: bool) -> Self {
        let mut slot: HashMap<u32, u32> = HashMap::new();
        let mut distinct = Vec::new();
        let (mut a, mut b, mut row, mut mirror) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut rows, mut rows_with_pairs) = (0, 0);
        let mut seen: Vec<u32> = Vec::new();
        for (r, line) in seqs.enumerate() {
            rows = r + 1;
            seen.clear();
            for &i in line {
                if i != 0 && !seen.contains(&i) {
                    seen.push(i);
                }
            }
            let pos: Vec<u32> = seen
                .iter()
                .map(|&i| {
                    *slot.entry(i).or_insert_with(|| {
                        distinct.push(i);
                        distinct.len() as u32 - 1
                    })
                })
                .collect();
            let before = a.len();
            // (x, y) is pair `before + x * per + y`, less one when y > x without self pairs.
            let k = pos.len();
            let per = if include_self { k } else { k.saturating_sub(1) };
            let index = |x: usize, y: usize| (before + x * per + y - usize::from(!include_self && y > x)) as u32;
            for (x, &pa) in pos.iter().enumerate() {
                for (y, &pb) in pos.iter().enumerate() {
                    if x != y || include_self {
                        a.push(pa);
                        b.push(pb);
                        row.push(r as u32);
                        mirror.push(index(y, x));
                    }
                }
            }
            rows_with_pairs += usize::from(a.len() > before);
        }
        Self { items: distinct, a, b, row, mirror, rows, rows_with_pairs }
    }

    pub fn len(&self) -> usize {
        self.a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// The item ids of pair `p`.
    fn ids(&self, p: usize) -> (u32, u32) {
        (self.items[self.a[p] as usize], self.items[self.b[p] as usize])
    }
}

/// Teacher targets for one modality on a batch's pairs.
pub struct PairTargets {
    /// Teacher holistic score `s^T` of every pair of the [`BatchPairs`].
    pub holistic: Vec<f32>,
    /// The dissected loss's pairs (indices into the pair list: all of them, or a seeded sample
    /// of `max_pairs`) and the teacher's code `c_ij` of each.
    pub dissected: Vec<u32>,
    pub codes: Vec<u32>,
}

impl PairTargets {
    /// The dissected loss's pairs as positions in [`BatchPairs::items`]: (firsts, seconds).
    fn dissected_ends(&self, pairs: &BatchPairs) -> (Vec<u32>, Vec<u32>) {
        self.dissected.iter().map(|&p| (pairs.a[p as usize], pairs.b[p as usize])).unzip()
    }

    pub fn new(pairs: &BatchPairs, teacher: &Teacher, max_pairs: usize, rng: &mut ChaCha8Rng) -> Self {
        Self::cached(pairs, teacher, max_pairs, rng, &mut TargetCache::default())
    }

    /// [`Self::new`], looking each unordered pair up in `cache` first and adding what it computes.
    pub fn cached(
        pairs: &BatchPairs,
        teacher: &Teacher,
        max_pairs: usize,
        rng: &mut ChaCha8Rng,
        cache: &mut TargetCache,
    ) -> Self {
        let (holistic, all_codes) = cache.targets(pairs, teacher);
        if pairs.len() > max_pairs {
            let mut dissected: Vec<u32> = sample(rng, pairs.len(), max_pairs).into_iter().map(|k| k as u32).collect();
            dissected.sort_unstable();
            let codes = dissected.iter().map(|&p| all_codes[p as usize]).collect();
            return Self { holistic, dissected, codes };
        }
        Self { holistic, dissected: (0..pairs.len() as u32).collect(), codes: all_codes }
    }
}

/// A teacher's targets by unordered item pair, `(s^T_ij, c_ij)`, kept across a run's batches:
/// a prefix-mode epoch scores every pair of a user's sequence in each of its prefixes, and
/// every epoch the same pairs again. Both targets are symmetric to the bit and deterministic,
/// so a hit returns what the teacher would compute. Holds at most [`TargetCache::CAPACITY`]
/// pairs (about 100 MB); pairs beyond are computed every time.
#[derive(Default)]
pub struct TargetCache {
    map: HashMap<u64, (f32, u32)>,
}

impl TargetCache {
    pub const CAPACITY: usize = 1 << 22;

    fn key(i: u32, j: u32) -> u64 {
        let (lo, hi) = if i <= j { (i, j) } else { (j, i) };
        (u64::from(lo) << 32) | u64::from(hi)
    }

    /// Holistic score and code of every pair of `pairs` (each unordered pair computed once).
    fn targets(&mut self, pairs: &BatchPairs, teacher: &Teacher) -> (Vec<f32>, Vec<u32>) {
        let first: Vec<u32> = (0..pairs.len() as u32).filter(|&p| pairs.mirror[p as usize] >= p).collect();
        let keys: Vec<u64> = first
            .iter()
            .map(|&p| {
                let (i, j) = pairs.ids(p as usize);
                Self::key(i, j)
            })
            .collect();
        let mut values = vec![(0f32, 0u32); first.len()];
        let mut missing = Vec::new();
        for (q, key) in keys.iter().enumerate() {
            match self.map.get(key) {
                Some(&v) => values[q] = v,
                None => missing.push(q),
            }
        }
        let computed: Vec<(f32, u32)> = missing
            .par_iter()
            .map(|&q| {
                let (i, j) = pairs.ids(first[q] as usize);
                (teacher.holistic(i, j), teacher.code(i, j))
            })
            .collect();
        for (&q, &v) in missing.iter().zip(&computed) {
            values[q] = v;
            if self.map.len() < Self::CAPACITY {
                self.map.insert(keys[q], v);
            }
        }
        let (mut holistic, mut codes) = (vec![0f32; pairs.len()], vec![0u32; pairs.len()]);
        for (&p, &(s, c)) in first.iter().zip(&values) {
            for at in [p as usize, pairs.mirror[p as usize] as usize] {
                holistic[at] = s;
                codes[at] = c;
            }
        }
        (holistic, codes)
    }
}

/// A batch's pairs on the device: `a`, `b` (positions in [`BatchPairs::items`]) and `row` [P].
pub struct PairIndex {
    pub a: Tensor,
    pub b: Tensor,
    pub row: Tensor,
    pub rows: usize,
    pub rows_with_pairs: usize,
}

impl PairIndex {
    pub fn new(p: &BatchPairs, dev: &Device) -> Result<Self> {
        let n = p.len();
        Ok(Self {
            a: Tensor::from_slice(&p.a, n, dev)?,
            b: Tensor::from_slice(&p.b, n, dev)?,
            row: Tensor::from_slice(&p.row, n, dev)?,
            rows: p.rows,
            rows_with_pairs: p.rows_with_pairs,
        })
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

    /// `W e`: the holistic head's projection of embeddings `e` [U, dim].
    pub fn project(&self, e: &Tensor) -> Result<Tensor> {
        let mut p = e.clone();
        for l in &self.hol {
            p = l.forward(&p)?; // [U, dim]
        }
        Ok(p)
    }

    /// Holistic loss for the batch's distinct-item embeddings `e` [U, dim]: the squared
    /// τ-scaled error of every pair, summed per row and averaged over rows with pairs (`norm`:
    /// the square root of each row's sum; code-faithful: that, averaged over all rows). Also
    /// returns the student scores `s^S` [P].
    pub fn holistic_loss(
        &self,
        e: &Tensor,
        index: &PairIndex,
        t: &PairTargets,
        teacher: &Teacher,
        cfg: &StudentConfig,
        code_faithful: bool,
    ) -> Result<(Tensor, Tensor)> {
        let p = self.project(e)?;
        let s = teacher.scoring().paired(&p, &index.a, &index.b)?; // [P]
        let target = Tensor::from_slice(&t.holistic, t.holistic.len(), e.device())?;
        let tau = if cfg.soft_match || code_faithful { cfg.tau } else { 1.0 };
        let sq = ((&s - target)? / tau)?.sqr()?; // [P]
        let loss = if code_faithful || cfg.holistic_form == HolisticForm::Norm {
            let per_row =
                Tensor::zeros(index.rows, sq.dtype(), e.device())?.index_add(&index.row, &sq.affine(1.0, 1e-8)?, 0)?;
            if code_faithful {
                per_row.sqrt()?.mean_all()? // over all rows, as the released code's batch mean
            } else {
                // Rows without pairs contribute sqrt(1e-8) each; leave them out of the mean.
                let with_pairs = per_row.ge(2e-8)?.to_dtype(sq.dtype())?;
                (per_row.sqrt()? * with_pairs)?.sum_all()?.affine(1.0 / index.rows_with_pairs.max(1) as f64, 0.0)?
            }
        } else {
            (sq.sum_all()? / index.rows_with_pairs.max(1) as f64)?
        };
        Ok((loss, s))
    }

    /// Dissected loss for the batch's distinct-item embeddings `e` [U, dim]: the mean
    /// cross-entropy of the supervised pairs' logits against the teacher's codes.
    pub fn dissected_loss(
        &self,
        e: &Tensor,
        pairs: &BatchPairs,
        t: &PairTargets,
        code_faithful: bool,
    ) -> Result<Option<Tensor>> {
        if t.dissected.is_empty() {
            return Ok(None);
        }
        if code_faithful {
            let logits = self.dissected_logits(e, pairs, t, true)?;
            return Ok(Some(crate::ops::cross_entropy(&logits, &t.codes)?));
        }
        let (a, b) = t.dissected_ends(pairs);
        let (h, c, w) = self.dissected_parts(e)?;
        Ok(Some(crate::ops::pair_code_cross_entropy(&h, &c, &w, &a, &b, &t.codes)?))
    }

    /// The dissected logits [P', K] of the supervised pairs (for diagnostics: the loss never
    /// materialises them on CPU).
    pub fn dissected_logits(
        &self,
        e: &Tensor,
        pairs: &BatchPairs,
        t: &PairTargets,
        code_faithful: bool,
    ) -> Result<Tensor> {
        let (a, b) = t.dissected_ends(pairs);
        if code_faithful {
            let dev = e.device();
            let (a, b) = (Tensor::from_slice(&a, a.len(), dev)?, Tensor::from_slice(&b, b.len(), dev)?);
            let diff = (e.index_select(&a, 0)? - e.index_select(&b, 0)?)?.abs()?; // [P, dim]
            return self.dis_2.forward(&self.dis_1.forward(&diff)?.relu()?);
        }
        let (h, c, w) = self.dissected_parts(e)?;
        crate::ops::pair_code_logits(&h, &c, &w, &a, &b)
    }

    /// `W_1 (e_a - e_b) + b_1 = (W_1 e)_a - (W_1 e)_b + b_1`: the first layer runs once per
    /// distinct item instead of once per pair. Returns `W_1 e` [U, dim], `b_1` and
    /// `[W_2 | b_2]` [K, dim + 1].
    fn dissected_parts(&self, e: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let h = e.matmul(&self.dis_1.weight().t()?)?; // [U, dim]
        let bias = |l: &Linear, n: usize| match l.bias() {
            Some(c) => Ok(c.clone()),
            None => Tensor::zeros(n, h.dtype(), h.device()),
        };
        let c = bias(&self.dis_1, h.dim(1)?)?;
        let w2 = self.dis_2.weight();
        let b2 = bias(&self.dis_2, w2.dim(0)?)?;
        let w = Tensor::cat(&[w2, &b2.unsqueeze(1)?], 1)?;
        Ok((h, c, w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distill::quantize::Codebook;
    use crate::distill::Scoring;
    use crate::model::params::ParamStore;
    use candle_core::Var;
    use rand::{Rng, SeedableRng};

    fn teacher(scoring: Scoring) -> Teacher {
        // Items 1..3 with 2-d representations; codebook of 2 codes on 1 sub-vector.
        let repr = vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        Teacher::new(repr, 2, scoring, 1, Codebook { k: 2, dim: 1, centroids: vec![0.0, 1.0] })
    }

    fn head(dim: usize, identity: bool) -> (ParamStore, CdlHead) {
        let dev = Device::Cpu;
        let params = ParamStore::new(1);
        let head = CdlHead::new(dim, 2, false, params.var_builder(&dev)).unwrap();
        if identity {
            for (name, var) in params.vars() {
                if name == "holistic_0.weight" {
                    var.set(&Tensor::eye(dim, candle_core::DType::F32, &dev).unwrap()).unwrap();
                } else if name == "holistic_0.bias" {
                    var.set(&Tensor::zeros(dim, candle_core::DType::F32, &dev).unwrap()).unwrap();
                }
            }
        }
        (params, head)
    }

    #[test]
    fn batch_pairs_keep_rows_apart_and_items_distinct() {
        let p = BatchPairs::from_batch(&[3, 1, 3, 0, 2, 2, 0, 0, 1, 2, 0, 0], 3, 4, false);
        assert_eq!(p.items, vec![3, 1, 2]);
        // Row 0: (3,1), (1,3); row 1 has one distinct item, no pair; row 2: (1,2), (2,1).
        assert_eq!((p.a.clone(), p.b.clone(), p.row.clone()), (vec![0, 1, 1, 2], vec![1, 0, 2, 1], vec![0, 0, 2, 2]));
        assert_eq!((p.rows, p.rows_with_pairs), (3, 2));
        let s = BatchPairs::from_batch(&[3, 1, 3, 0, 2, 2, 0, 0], 2, 4, true);
        assert_eq!((s.len(), s.rows_with_pairs), (5, 2), "2x2 pairs in row 0, (2,2) in row 1");
    }

    #[test]
    fn mirrors_pair_up_and_symmetric_targets_equal_direct_ones_to_the_bit() {
        // 5 items with 4-d representations and 2 sub-vectors; codes from 3 centroids.
        let repr: Vec<f32> = (0..24).map(|i| ((i * 7919) % 101) as f32 / 37.0 - 1.3).collect();
        let codebook = Codebook { k: 3, dim: 2, centroids: vec![0.9, -0.2, 0.1, 0.4, -0.5, 0.8] };
        let batch = [3, 1, 4, 1, 5, 2, 2, 0, 4, 0, 0, 0, 5, 3, 2, 1];
        for include_self in [false, true] {
            let pairs = BatchPairs::from_batch(&batch, 4, 4, include_self);
            for p in 0..pairs.len() {
                let m = pairs.mirror[p] as usize;
                assert_eq!((pairs.a[m], pairs.b[m], pairs.row[m]), (pairs.b[p], pairs.a[p], pairs.row[p]), "pair {p}");
            }
            for scoring in [Scoring::Cos, Scoring::Dot, Scoring::Euclidean, Scoring::Manhattan] {
                let t = Teacher::new(repr.clone(), 4, scoring, 2, codebook.clone());
                let pt = PairTargets::new(&pairs, &t, 1000, &mut ChaCha8Rng::seed_from_u64(0));
                for p in 0..pairs.len() {
                    let (i, j) = pairs.ids(p);
                    assert_eq!(pt.holistic[p].to_bits(), t.holistic(i, j).to_bits(), "{scoring:?} ({i}, {j})");
                    assert_eq!(pt.codes[p], t.code(i, j), "{scoring:?} ({i}, {j})");
                }
                assert!(pt.codes.iter().any(|&c| c != pt.codes[0]), "{scoring:?}: the codes should vary");
            }
        }
    }

    #[test]
    fn cached_targets_equal_fresh_ones_and_the_sample_stream_is_unchanged() {
        let repr: Vec<f32> = (0..28).map(|i| ((i * 7919) % 101) as f32 / 37.0 - 1.3).collect();
        let t = Teacher::new(
            repr,
            4,
            Scoring::Cos,
            2,
            Codebook { k: 3, dim: 2, centroids: vec![0.9, -0.2, 0.1, 0.4, -0.5, 0.8] },
        );
        let batches = [[3u32, 1, 4, 1, 5, 2, 6, 0], [2, 6, 3, 0, 5, 1, 4, 3], [6, 5, 4, 3, 2, 1, 0, 0]];
        let mut cache = TargetCache::default();
        let (mut r1, mut r2) = (ChaCha8Rng::seed_from_u64(9), ChaCha8Rng::seed_from_u64(9));
        for batch in &batches {
            let pairs = BatchPairs::from_batch(batch, 2, 4, false);
            for max_pairs in [1000, 5] {
                let fresh = PairTargets::new(&pairs, &t, max_pairs, &mut r1);
                let cached = PairTargets::cached(&pairs, &t, max_pairs, &mut r2, &mut cache);
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&fresh.holistic), bits(&cached.holistic));
                assert_eq!((&fresh.dissected, &fresh.codes), (&cached.dissected, &cached.codes));
                for (q, &p) in cached.dissected.iter().enumerate() {
                    let (i, j) = pairs.ids(p as usize);
                    assert_eq!(cached.codes[q], t.code(i, j));
                }
            }
        }
        assert!(!cache.map.is_empty() && cache.map.len() <= 21, "{} unordered pairs of 7 items", cache.map.len());
    }

    #[test]
    fn targets_and_losses_on_three_items() {
        let t = teacher(Scoring::Dot);
        let pairs = BatchPairs::from_batch(&[1, 2, 3], 1, 3, false);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let pt = PairTargets::new(&pairs, &t, 100, &mut rng);
        assert_eq!(pairs.len(), 6);
        // dot scores: (1,2)=0, (1,3)=1, (2,3)=1; codes: nearest of {0, 1}
        assert_eq!(pt.holistic, vec![0.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
        assert_eq!(pt.codes, vec![0, 1, 0, 1, 1, 1]);
        let dev = Device::Cpu;
        let index = PairIndex::new(&pairs, &dev).unwrap();
        // Student embeddings equal to the teacher's, identity projection -> hard loss 0.
        let (_params, head) = head(2, true);
        let e = Tensor::new(&[[1f32, 0.], [0., 1.], [1., 1.]], &dev).unwrap();
        let hard = StudentConfig { soft_match: false, ..Default::default() };
        let loss = |e: &Tensor, cfg: &StudentConfig, cf: bool| {
            head.holistic_loss(e, &index, &pt, &t, cfg, cf).unwrap().0.to_scalar::<f32>().unwrap()
        };
        assert!(loss(&e, &hard, false).abs() < 1e-6);
        assert!(loss(&e, &StudentConfig::default(), false).abs() < 1e-6);
        // Scaling the embeddings changes the student's scores: loss by hand.
        // student dot = 4 * teacher dot: pairs (1,2)=0, (1,3)=4 vs 1, (2,3)=4 vs 1, both orders
        // -> hard match: sum of squared errors in the one sequence = 4 * 9 = 36
        let e2 = (&e * 2.0).unwrap();
        assert!((loss(&e2, &hard, false) - 36.0).abs() < 1e-4);
        // soft match divides the differences by τ = 1.5: 36 / 2.25 = 16
        assert!((loss(&e2, &StudentConfig::default(), false) - 16.0).abs() < 1e-4);
        // Code-faithful: sqrt(sum over pairs (diff/τ)^2 + eps) = sqrt(4 * 9 / 2.25) = 4.
        assert!((loss(&e2, &hard, true) - 4.0).abs() < 1e-4);
        // Norm form: the same square root of the one sequence's sum.
        let norm = StudentConfig { holistic_form: HolisticForm::Norm, ..Default::default() };
        assert!((loss(&e2, &norm, false) - 4.0).abs() < 1e-4);
        assert!((loss(&e2, &StudentConfig { soft_match: false, ..norm.clone() }, false) - 6.0).abs() < 1e-4);
    }

    /// The holistic loss written out on the host over a padded [B, L, L] grid, as the text
    /// defines it: Σ_b Σ_(i,j) ((φ(W e_i, W e_j) - s^T_ij) / τ)² / (rows with pairs).
    fn dense_reference(
        items: &[u32],
        rows: usize,
        cols: usize,
        repr: &[Vec<f32>],
        proj: impl Fn(&[f32]) -> Vec<f32>,
        t: &Teacher,
        tau: f32,
    ) -> f32 {
        let (mut total, mut with_pairs) = (0f32, 0);
        for line in items.chunks(cols).take(rows) {
            let mut u: Vec<u32> = Vec::new();
            for &i in line {
                if i != 0 && !u.contains(&i) {
                    u.push(i);
                }
            }
            let mut row_sum = 0f32;
            for &i in &u {
                for &j in &u {
                    if i != j {
                        let s = t.scoring().score(&proj(&repr[i as usize]), &proj(&repr[j as usize]));
                        row_sum += ((s - t.holistic(i, j)) / tau).powi(2);
                    }
                }
            }
            with_pairs += usize::from(u.len() > 1);
            total += row_sum;
        }
        total / with_pairs.max(1) as f32
    }

    #[test]
    fn holistic_loss_matches_the_dense_definition_for_every_scoring() {
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (n, d, rows, cols) = (9usize, 4usize, 5usize, 6usize);
        let mut items: Vec<u32> = (0..rows * cols).map(|_| rng.random_range(0..=n as u32)).collect();
        // Row 3 is padding only and row 4 repeats one item: neither has a pair.
        items[3 * cols..].fill(0);
        items[4 * cols..4 * cols + 2].fill(5);
        let repr: Vec<Vec<f32>> = (0..=n).map(|_| (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
        let pairs = BatchPairs::from_batch(&items, rows, cols, false);
        let index = PairIndex::new(&pairs, &dev).unwrap();
        let e_rows: Vec<f32> = pairs.items.iter().flat_map(|&i| repr[i as usize].clone()).collect();
        let e = Tensor::from_vec(e_rows, (pairs.items.len(), d), &dev).unwrap();
        for scoring in [Scoring::Cos, Scoring::Dot, Scoring::Euclidean, Scoring::Manhattan] {
            let teacher_repr =
                (0..=n).flat_map(|_| (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect::<Vec<_>>()).collect();
            let t = Teacher::new(teacher_repr, d, scoring, 1, Codebook { k: 2, dim: 1, centroids: vec![0.0, 1.0] });
            let targets = PairTargets::new(&pairs, &t, 1000, &mut ChaCha8Rng::seed_from_u64(0));
            let (params, head) = head(d, false);
            let get = |k: &str| params.vars().into_iter().find(|(name, _)| name == k).unwrap().1;
            let w = get("holistic_0.weight").as_tensor().to_vec2::<f32>().unwrap();
            let bias = get("holistic_0.bias").as_tensor().to_vec1::<f32>().unwrap();
            let cfg = StudentConfig::default();
            let got = head.holistic_loss(&e, &index, &targets, &t, &cfg, false).unwrap().0.to_scalar::<f32>().unwrap();
            let proj = |v: &[f32]| -> Vec<f32> {
                w.iter().zip(&bias).map(|(row, b)| row.iter().zip(v).map(|(x, y)| x * y).sum::<f32>() + b).collect()
            };
            let want = dense_reference(&items, rows, cols, &repr, proj, &t, cfg.tau as f32);
            assert!((got - want).abs() <= 1e-4 * want.abs().max(1.0), "{scoring:?}: {got} vs {want}");
        }
    }

    #[test]
    fn holistic_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let t = teacher(Scoring::Cos);
        let pairs = BatchPairs::from_batch(&[1, 2, 3, 0, 3, 1, 0, 0], 2, 4, false);
        let index = PairIndex::new(&pairs, &dev).unwrap();
        let targets = PairTargets::new(&pairs, &t, 100, &mut ChaCha8Rng::seed_from_u64(0));
        let (_params, head) = head(2, false);
        let cfg = StudentConfig::default();
        let init = [0.3f32, -0.2, 0.5, 0.9, -0.4, 0.7];
        let e = Var::from_tensor(&Tensor::from_slice(&init, (3, 2), &dev).unwrap()).unwrap();
        let loss = |x: &Tensor| head.holistic_loss(x, &index, &targets, &t, &cfg, false).unwrap().0;
        let g = loss(e.as_tensor()).backward().unwrap();
        let g = g.get(e.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let h = 1e-2f32;
        for k in 0..init.len() {
            let at = |delta: f32| {
                let mut v = init;
                v[k] += delta;
                f64::from(loss(&Tensor::from_slice(&v, (3, 2), &dev).unwrap()).to_scalar::<f32>().unwrap())
            };
            let fd = ((at(h) - at(-h)) / (2.0 * f64::from(h))) as f32;
            assert!(
                (g[k] - fd).abs() <= 2e-2 * fd.abs().max(0.05),
                "entry {k}: autograd {} vs finite difference {fd}",
                g[k]
            );
        }
    }

    #[test]
    fn dissected_gradients_reach_only_embeddings_and_its_head() {
        let t = teacher(Scoring::Dot);
        let pairs = BatchPairs::from_batch(&[1, 3], 1, 2, false);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let pt = PairTargets::new(&pairs, &t, 100, &mut rng);
        let dev = Device::Cpu;
        let params = ParamStore::new(1);
        let head = CdlHead::new(2, 2, false, params.var_builder(&dev)).unwrap();
        let e = Var::from_tensor(&Tensor::new(&[[0.3f32, 0.1], [0.5, 0.9]], &dev).unwrap()).unwrap();
        let loss = head.dissected_loss(e.as_tensor(), &pairs, &pt, false).unwrap().unwrap();
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

    #[test]
    fn dissected_first_layer_per_item_equals_per_pair() {
        let dev = Device::Cpu;
        let t = teacher(Scoring::Dot);
        let pairs = BatchPairs::from_batch(&[1, 2, 3, 0, 3, 1, 2, 0], 2, 4, false);
        let pt = PairTargets::new(&pairs, &t, 100, &mut ChaCha8Rng::seed_from_u64(0));
        let (_params, head) = head(4, false);
        let e = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
        let got = head.dissected_loss(&e, &pairs, &pt, false).unwrap().unwrap().to_scalar::<f32>().unwrap();
        let idx = |v: &[u32]| Tensor::new(v, &dev).unwrap();
        let diff = (e.index_select(&idx(&pairs.a), 0).unwrap() - e.index_select(&idx(&pairs.b), 0).unwrap()).unwrap();
        let logits = head.dis_2.forward(&head.dis_1.forward(&diff).unwrap().relu().unwrap()).unwrap();
        let want = crate::ops::cross_entropy(&logits, &pt.codes).unwrap().to_scalar::<f32>().unwrap();
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn dissected_pairs_are_subsampled_to_max_pairs() {
        let t = teacher(Scoring::Dot);
        let pairs = BatchPairs::from_batch(&[1, 2, 3], 1, 3, false);
        let pt = PairTargets::new(&pairs, &t, 4, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!((pt.holistic.len(), pt.dissected.len(), pt.codes.len()), (6, 4, 4));
        assert!(pt.dissected.windows(2).all(|w| w[0] < w[1]) && pt.dissected.iter().all(|&p| p < 6));
    }
}
