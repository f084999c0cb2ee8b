//! The correlation teacher: item representations `z_i` (autoencoder codes), a holistic score
//! `s_ij = φ(z_i, z_j)` and a dissected code `c_ij = Q(v_ij)`, where
//! `v_ij = [φ(z_i^1, z_j^1), ..., φ(z_i^m, z_j^m)]` scores the m equal sub-vectors of `z` pair
//! by pair (product-quantisation split) and `Q` is the nearest codeword of a codebook fitted to
//! the correlation vectors of item pairs that co-occur in training sequences.
//!
//! No N x N matrix is ever built: scores and codes are computed for a batch's in-sequence pairs
//! on the fly (Beauty's N² x m matrix would be 9 GB, Clothing's 34 GB).

use super::quantize::{self, Codebook, Quantizer};
use super::scoring::Scoring;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TeacherConfig {
    pub scoring: Scoring,
    pub quantizer: Quantizer,
    /// Number of sub-vectors m.
    pub subvectors: usize,
    /// Number of codes K.
    pub codes: usize,
    /// Item pairs sampled (seeded) from training sequences to fit the codebook.
    pub fit_pairs: usize,
    /// Subtract the mean code (over items with features) from every item's code before the
    /// teacher scores pairs and before the codes initialise the modality tables. Sigmoid codes
    /// share a positive mean, which puts every cosine near 1. Written only when on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub centre: bool,
}

impl Default for TeacherConfig {
    fn default() -> Self {
        Self {
            scoring: Scoring::Cos,
            quantizer: Quantizer::Vq,
            subvectors: 8,
            codes: 50,
            fit_pairs: 200_000,
            centre: false,
        }
    }
}

/// Subtracts the mean of the non-zero rows of `codes` ([rows, dim]) from those rows; zero rows
/// (padding, items without the modality) stay zero.
pub fn centre_codes(codes: &mut [f32], dim: usize) {
    let live: Vec<usize> =
        (0..codes.len() / dim).filter(|&r| codes[r * dim..(r + 1) * dim].iter().any(|&v| v != 0.0)).collect();
    if live.is_empty() {
        return;
    }
    let mut mean = vec![0f64; dim];
    for &r in &live {
        mean.iter_mut().zip(&codes[r * dim..(r + 1) * dim]).for_each(|(m, &v)| *m += v as f64);
    }
    mean.iter_mut().for_each(|m| *m /= live.len() as f64);
    for &r in &live {
        codes[r * dim..(r + 1) * dim].iter_mut().zip(&mean).for_each(|(v, &m)| *v -= m as f32);
    }
}

/// Fields that the scores depend on are private: the squared-norm cache must match them.
pub struct Teacher {
    /// [rows, dim] item representations (row = item id; row 0 padding).
    repr: Vec<f32>,
    dim: usize,
    scoring: Scoring,
    subvectors: usize,
    pub codebook: Codebook,
    /// Mean squared quantisation error on the fitting sample.
    pub fit_mse: f64,
    /// Per row, `|z|²` of the whole row and of each sub-vector (`1 + subvectors` values), for
    /// cos scoring; empty for the other scorings. See [`Teacher::index_norms`].
    sq_norms: Vec<f32>,
}

impl Teacher {
    /// Builds the teacher from representations `repr` ([rows, dim]) and fits its codebook on
    /// pairs of distinct items drawn from the training inputs `seqs`.
    pub fn fit(repr: Vec<f32>, dim: usize, cfg: &TeacherConfig, seqs: &[&[u32]], seed: u64) -> anyhow::Result<Self> {
        if cfg.subvectors == 0 || !dim.is_multiple_of(cfg.subvectors) {
            anyhow::bail!("teacher: dimension {dim} is not divisible into {} sub-vectors", cfg.subvectors);
        }
        let mut t = Self {
            repr,
            dim,
            scoring: cfg.scoring,
            subvectors: cfg.subvectors,
            codebook: Codebook { k: 0, dim: cfg.subvectors, centroids: Vec::new() },
            fit_mse: 0.0,
            sq_norms: Vec::new(),
        };
        t.index_norms();
        let pairs = sample_pairs(seqs, cfg.fit_pairs, seed);
        if pairs.is_empty() {
            anyhow::bail!("teacher: no co-occurring item pairs in the training sequences");
        }
        let mut data = vec![0f32; pairs.len() * cfg.subvectors];
        for (v, &(i, j)) in data.chunks_mut(cfg.subvectors).zip(&pairs) {
            t.corr_vector(i, j, v);
        }
        t.codebook = quantize::fit(cfg.quantizer, &data, cfg.subvectors, cfg.codes, seed);
        t.fit_mse = t.codebook.mse(&data);
        Ok(t)
    }

    /// Width of the item representations.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The score function `φ`.
    pub fn scoring(&self) -> Scoring {
        self.scoring
    }

    /// A teacher from its parts (the codebook already fitted).
    pub fn new(repr: Vec<f32>, dim: usize, scoring: Scoring, subvectors: usize, codebook: Codebook) -> Self {
        let mut t = Self { repr, dim, scoring, subvectors, codebook, fit_mse: 0.0, sq_norms: Vec::new() };
        t.index_norms();
        t
    }

    /// Fills the squared-norm cache for cos scoring: the training step scores every pair of a
    /// batch, and cos needs `|a|²` and `|b|²` besides `a · b`. The cached values are computed
    /// by the same function as [`Scoring::score`], so scores are bit-identical with or without it.
    fn index_norms(&mut self) {
        if self.scoring != Scoring::Cos || self.dim == 0 || self.subvectors == 0 {
            return;
        }
        let (sub, stride) = (self.dim / self.subvectors, 1 + self.subvectors);
        let rows = self.repr.len() / self.dim;
        let mut norms = vec![0f32; rows * stride];
        for (r, n) in norms.chunks_mut(stride).enumerate() {
            let z = &self.repr[r * self.dim..(r + 1) * self.dim];
            n[0] = super::scoring::dot(z, z);
            for k in 0..self.subvectors {
                let zk = &z[k * sub..(k + 1) * sub];
                n[1 + k] = super::scoring::dot(zk, zk);
            }
        }
        self.sq_norms = norms;
    }

    fn row(&self, i: u32) -> &[f32] {
        &self.repr[i as usize * self.dim..(i as usize + 1) * self.dim]
    }

    /// `φ(a, b)` for part `part` (0 = the whole row, 1 + k = sub-vector k) of rows `i` and `j`.
    fn score_part(&self, i: u32, j: u32, part: usize, a: &[f32], b: &[f32]) -> f32 {
        if self.sq_norms.is_empty() {
            return self.scoring.score(a, b);
        }
        let stride = 1 + self.subvectors;
        let (na, nb) = (self.sq_norms[i as usize * stride + part], self.sq_norms[j as usize * stride + part]);
        super::scoring::cos_from_parts(super::scoring::dot(a, b), na, nb)
    }

    /// Holistic score `φ(z_i, z_j)`.
    pub fn holistic(&self, i: u32, j: u32) -> f32 {
        self.score_part(i, j, 0, self.row(i), self.row(j))
    }

    /// Correlation vector `v_ij` (length m) into `out`.
    pub fn corr_vector(&self, i: u32, j: u32, out: &mut [f32]) {
        let sub = self.dim / self.subvectors;
        let (zi, zj) = (self.row(i), self.row(j));
        for (k, o) in out.iter_mut().enumerate() {
            *o = self.score_part(i, j, 1 + k, &zi[k * sub..(k + 1) * sub], &zj[k * sub..(k + 1) * sub]);
        }
    }

    /// Dissected correlation code `c_ij` in `0..K`.
    pub fn code(&self, i: u32, j: u32) -> u32 {
        const STACK: usize = 64;
        if self.subvectors <= STACK {
            let mut v = [0f32; STACK];
            self.corr_vector(i, j, &mut v[..self.subvectors]);
            return self.codebook.nearest(&v[..self.subvectors]).0;
        }
        let mut v = vec![0f32; self.subvectors];
        self.corr_vector(i, j, &mut v);
        self.codebook.nearest(&v).0
    }
}

/// Up to `n` ordered pairs `(i, j)`, `i != j`, of items at two positions of one sequence,
/// drawn uniformly over sequences with at least two distinct items (seeded).
pub fn sample_pairs(seqs: &[&[u32]], n: usize, seed: u64) -> Vec<(u32, u32)> {
    let usable: Vec<&[u32]> = seqs.iter().copied().filter(|s| s.iter().any(|&x| x != s[0])).collect();
    if usable.is_empty() {
        return Vec::new();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let s = usable[rng.random_range(0..usable.len())];
        let (a, b) = (s[rng.random_range(0..s.len())], s[rng.random_range(0..s.len())]);
        if a != b {
            out.push((a, b));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centring_removes_the_mean_of_live_rows_only() {
        let mut codes = vec![0.0, 0.0, 1.0, 3.0, 3.0, 5.0];
        centre_codes(&mut codes, 2);
        assert_eq!(codes, vec![0.0, 0.0, -1.0, -1.0, 1.0, 1.0]);
    }

    fn toy_teacher(q: Quantizer, seed: u64) -> Teacher {
        // 6 items (+ padding row) with 8-d codes; m = 2 sub-vectors.
        let dim = 8;
        let mut repr = vec![0f32; dim];
        for i in 1..=6 {
            repr.extend((0..dim).map(|j| ((i * 7 + j * 3) % 11) as f32 / 11.0));
        }
        let seqs: Vec<Vec<u32>> = vec![vec![1, 2, 3], vec![3, 4, 5, 6], vec![6, 1, 2]];
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let cfg = TeacherConfig { subvectors: 2, codes: 4, fit_pairs: 500, quantizer: q, ..Default::default() };
        Teacher::fit(repr, dim, &cfg, &refs, seed).unwrap()
    }

    #[test]
    fn codes_are_deterministic_per_seed_and_in_range() {
        for q in [Quantizer::Kmeans, Quantizer::Vq] {
            let (a, b) = (toy_teacher(q, 1), toy_teacher(q, 1));
            for i in 1..=6 {
                for j in 1..=6 {
                    assert_eq!(a.code(i, j), b.code(i, j));
                    assert!(a.code(i, j) < 4);
                }
            }
        }
    }

    #[test]
    fn corr_vector_scores_sub_vectors() {
        let t = toy_teacher(Quantizer::Kmeans, 1);
        let mut v = [0f32; 2];
        t.corr_vector(1, 2, &mut v);
        assert!((v[0] - Scoring::Cos.score(&t.row(1)[..4], &t.row(2)[..4])).abs() < 1e-6);
        assert!((v[1] - Scoring::Cos.score(&t.row(1)[4..], &t.row(2)[4..])).abs() < 1e-6);
        assert!((t.holistic(1, 2) - Scoring::Cos.score(t.row(1), t.row(2))).abs() < 1e-6);
    }

    #[test]
    fn cached_norms_give_the_same_scores_bit_for_bit() {
        let t = toy_teacher(Quantizer::Kmeans, 1);
        assert!(!t.sq_norms.is_empty());
        let mut plain = Teacher::new(t.repr.clone(), t.dim, t.scoring, t.subvectors, t.codebook.clone());
        plain.sq_norms.clear();
        for i in 0..=6 {
            for j in 0..=6 {
                assert_eq!(t.holistic(i, j).to_bits(), plain.holistic(i, j).to_bits(), "({i}, {j})");
                let (mut a, mut b) = ([0f32; 2], [0f32; 2]);
                t.corr_vector(i, j, &mut a);
                plain.corr_vector(i, j, &mut b);
                assert_eq!(a.map(f32::to_bits), b.map(f32::to_bits));
                assert_eq!(t.code(i, j), plain.code(i, j));
            }
        }
    }

    #[test]
    fn pairs_are_distinct_in_sequence_items() {
        let seqs: Vec<&[u32]> = vec![&[1, 2, 2], &[5, 5]];
        let p = sample_pairs(&seqs, 50, 0);
        assert_eq!(p.len(), 50);
        assert!(p.iter().all(|&(a, b)| a != b && a <= 2 && b <= 2));
    }
}
