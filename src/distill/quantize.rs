//! Quantisers that turn m-dimensional correlation vectors into one of K codes.
//!
//! - [`Quantizer::Kmeans`]: k-means++ initialisation (seeded) then Lloyd iterations until the
//!   assignments stop changing. This is what the released code runs for both of its options.
//! - [`Quantizer::Vq`]: a learned vector quantiser (van den Oord et al. 2017, EMA variant): the
//!   codebook starts random (Gaussian with the data's per-dimension mean and spread, as the
//!   paper describes: "initialized randomly, then optimized with training data"), then for
//!   each minibatch every vector is assigned to its nearest codeword and the codewords follow an
//!   exponential moving average of their assigned vectors:
//!   `N_k <- γ N_k + (1-γ) n_k`, `M_k <- γ M_k + (1-γ) Σ_{x->k} x`, `e_k = M_k / N_k`
//!   (Laplace-smoothed counts). Codewords whose usage `N_k` falls below a threshold are dead and
//!   restart at a random vector of the current batch. Unlike k-means it learns online from
//!   random codewords, never sees all data at once, and keeps every code in use.
//!
//! In both, a vector's code is its nearest codeword by Euclidean distance.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Quantizer {
    #[default]
    Vq,
    Kmeans,
}

/// K codewords of dimension `dim`, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Codebook {
    pub k: usize,
    pub dim: usize,
    pub centroids: Vec<f32>,
}

fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

impl Codebook {
    /// Nearest codeword (ties to the lower index) and its squared distance.
    pub fn nearest(&self, v: &[f32]) -> (u32, f32) {
        let mut best = (0u32, f32::INFINITY);
        for (c, cw) in self.centroids.chunks(self.dim).enumerate() {
            let d = sq_dist(v, cw);
            if d < best.1 {
                best = (c as u32, d);
            }
        }
        best
    }

    /// The `k` nearest codewords of `v`, nearest first (ties to the lower index).
    pub fn nearest_k(&self, v: &[f32], k: usize) -> Vec<u32> {
        let mut d: Vec<(f32, u32)> =
            self.centroids.chunks(self.dim).enumerate().map(|(c, w)| (sq_dist(v, w), c as u32)).collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d.into_iter().take(k).map(|(_, c)| c).collect()
    }

    /// Codes of all vectors in `data` (row-major, `dim` columns).
    pub fn assign(&self, data: &[f32]) -> Vec<u32> {
        data.par_chunks(self.dim).map(|v| self.nearest(v).0).collect()
    }

    /// Mean squared quantisation error over `data`.
    pub fn mse(&self, data: &[f32]) -> f64 {
        let n = data.len() / self.dim;
        data.par_chunks(self.dim).map(|v| self.nearest(v).1 as f64).sum::<f64>() / n.max(1) as f64
    }
}

/// Fits a codebook of `k` codes to `data` (row-major, `dim` columns).
pub fn fit(q: Quantizer, data: &[f32], dim: usize, k: usize, seed: u64) -> Codebook {
    match q {
        Quantizer::Kmeans => kmeans(data, dim, k, 100, seed),
        Quantizer::Vq => vq_ema(data, dim, k, &VqConfig::default(), seed),
    }
}

/// k-means++ initialisation, then Lloyd iterations (at most `max_iter`).
pub fn kmeans(data: &[f32], dim: usize, k: usize, max_iter: usize, seed: u64) -> Codebook {
    let n = data.len() / dim;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    let mut centroids = row(rng.random_range(0..n)).to_vec();
    let mut d2: Vec<f32> = (0..n).into_par_iter().map(|i| sq_dist(row(i), &centroids[..dim])).collect();
    while centroids.len() < k * dim {
        let total: f64 = d2.iter().map(|&v| v as f64).sum();
        let pick = if total > 0.0 {
            let mut r = rng.random::<f64>() * total;
            d2.iter()
                .position(|&v| {
                    r -= v as f64;
                    r <= 0.0
                })
                .unwrap_or(n - 1)
        } else {
            rng.random_range(0..n)
        };
        let c = row(pick).to_vec();
        d2.par_iter_mut().enumerate().for_each(|(i, v)| *v = v.min(sq_dist(row(i), &c)));
        centroids.extend(c);
    }
    let mut book = Codebook { k, dim, centroids };
    let mut codes = vec![u32::MAX; n];
    for _ in 0..max_iter {
        let new = book.assign(data);
        if new == codes {
            break;
        }
        codes = new;
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &c) in codes.iter().enumerate() {
            counts[c as usize] += 1;
            for (s, &v) in sums[c as usize * dim..(c as usize + 1) * dim].iter_mut().zip(row(i)) {
                *s += v as f64;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..dim {
                    book.centroids[c * dim + j] = (sums[c * dim + j] / counts[c] as f64) as f32;
                }
            }
        }
    }
    book
}

#[derive(Debug, Clone)]
pub struct VqConfig {
    pub epochs: usize,
    pub batch: usize,
    /// EMA decay γ.
    pub decay: f32,
    /// A code whose EMA count falls below this fraction of the uniform share is restarted.
    pub dead_fraction: f32,
}

impl Default for VqConfig {
    fn default() -> Self {
        Self { epochs: 20, batch: 1024, decay: 0.99, dead_fraction: 0.03 }
    }
}

/// Learned VQ codebook with EMA updates and dead-code restarts (see the module docs).
pub fn vq_ema(data: &[f32], dim: usize, k: usize, cfg: &VqConfig, seed: u64) -> Codebook {
    let n = data.len() / dim;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    // Random init around the data: per-dimension mean and standard deviation.
    let mut mean = vec![0f64; dim];
    let mut var = vec![0f64; dim];
    for v in data.chunks(dim) {
        for j in 0..dim {
            mean[j] += v[j] as f64 / n as f64;
        }
    }
    for v in data.chunks(dim) {
        for j in 0..dim {
            var[j] += (v[j] as f64 - mean[j]).powi(2) / n as f64;
        }
    }
    let mut centroids = Vec::with_capacity(k * dim);
    for _ in 0..k {
        for j in 0..dim {
            let d = Normal::new(mean[j], var[j].sqrt().max(1e-6)).expect("valid normal");
            centroids.push(d.sample(&mut rng) as f32);
        }
    }
    let mut book = Codebook { k, dim, centroids };
    let mut ema_n = vec![1f32; k];
    let mut ema_m: Vec<f32> = book.centroids.clone();
    let mut order: Vec<usize> = (0..n).collect();
    let batch = cfg.batch.min(n).max(1);
    let eps = 1e-5f32;
    for _ in 0..cfg.epochs {
        order.shuffle(&mut rng);
        for idx in order.chunks(batch) {
            let xs: Vec<f32> = idx.iter().flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied()).collect();
            let codes = book.assign(&xs);
            let mut cnt = vec![0f32; k];
            let mut sum = vec![0f32; k * dim];
            for (v, &c) in xs.chunks(dim).zip(&codes) {
                cnt[c as usize] += 1.0;
                for (s, &x) in sum[c as usize * dim..(c as usize + 1) * dim].iter_mut().zip(v) {
                    *s += x;
                }
            }
            let g = cfg.decay;
            for c in 0..k {
                ema_n[c] = g * ema_n[c] + (1.0 - g) * cnt[c];
                for j in 0..dim {
                    ema_m[c * dim + j] = g * ema_m[c * dim + j] + (1.0 - g) * sum[c * dim + j];
                }
            }
            let total: f32 = ema_n.iter().sum();
            let b = idx.len() as f32;
            for c in 0..k {
                let smoothed = (ema_n[c] + eps) / (total + k as f32 * eps) * total;
                if ema_n[c] < cfg.dead_fraction * b / k as f32 {
                    // Dead code: restart at a random vector of this batch.
                    let r = rng.random_range(0..idx.len());
                    book.centroids[c * dim..(c + 1) * dim].copy_from_slice(&xs[r * dim..(r + 1) * dim]);
                    ema_m[c * dim..(c + 1) * dim].copy_from_slice(&xs[r * dim..(r + 1) * dim]);
                    ema_n[c] = 1.0;
                } else {
                    for j in 0..dim {
                        book.centroids[c * dim + j] = ema_m[c * dim + j] / smoothed;
                    }
                }
            }
        }
    }
    book
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_k_in_order() {
        let book = Codebook { k: 3, dim: 1, centroids: vec![0.0, 10.0, 4.0] };
        assert_eq!(book.nearest_k(&[9.0], 2), vec![1, 2]);
        assert_eq!(book.nearest_k(&[2.0], 3), vec![0, 2, 1], "a tie goes to the lower index");
    }

    /// Four well-separated 2-d clusters.
    fn clusters(n_per: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let centers = [(0.0, 0.0), (5.0, 0.0), (0.0, 5.0), (5.0, 5.0)];
        let mut out = Vec::new();
        for &(cx, cy) in &centers {
            for _ in 0..n_per {
                out.push(cx + rng.random_range(-0.5..0.5f32));
                out.push(cy + rng.random_range(-0.5..0.5f32));
            }
        }
        out
    }

    #[test]
    fn kmeans_finds_separated_clusters_and_is_seeded() {
        let data = clusters(200, 1);
        let book = kmeans(&data, 2, 4, 100, 7);
        assert!(book.mse(&data) < 0.2, "mse {}", book.mse(&data));
        assert_eq!(book, kmeans(&data, 2, 4, 100, 7));
        let codes = book.assign(&data);
        for c in 0..4 {
            let block = &codes[c * 200..(c + 1) * 200];
            assert!(block.iter().all(|&x| x == block[0]), "cluster {c} split");
        }
    }

    #[test]
    fn vq_learns_below_random_codebook_and_is_seeded() {
        let data = clusters(500, 2);
        let cfg = VqConfig { epochs: 10, batch: 128, ..Default::default() };
        let book = vq_ema(&data, 2, 8, &cfg, 3);
        let random = vq_ema(&data, 2, 8, &VqConfig { epochs: 0, ..cfg.clone() }, 3);
        assert!(book.mse(&data) < 0.5 * random.mse(&data), "{} vs {}", book.mse(&data), random.mse(&data));
        assert!(book.mse(&data) < 0.3, "{}", book.mse(&data));
        assert_eq!(book, vq_ema(&data, 2, 8, &cfg, 3));
        assert_ne!(book, vq_ema(&data, 2, 8, &cfg, 4));
        // Every code is in use (dead codes restart).
        let codes = book.assign(&data);
        let used: std::collections::HashSet<_> = codes.iter().collect();
        assert!(used.len() >= 6, "only {} codes used", used.len());
    }
}
