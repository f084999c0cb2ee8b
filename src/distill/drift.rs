//! The Pearson-drift probe of the paper's Figure 1: on a fixed seeded sample of item pairs,
//! cosine similarities in (a) the current modality embeddings, (b) the original modality
//! features and (c) the ID embeddings of a pure-ID model trained on the same data;
//! `r(a, b)` and `r(a, c)` are recorded every epoch.

use super::Scoring;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Pearson correlation of two equally long samples (0 when either is constant).
pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len()) as f64;
    if n < 2.0 {
        return 0.0;
    }
    let ma = a.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mb = b.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        0.0
    } else {
        sab / (saa * sbb).sqrt()
    }
}

pub struct DriftProbe {
    pairs: Vec<(u32, u32)>,
    original: Vec<f32>,
    id_reference: Option<Vec<f32>>,
}

fn similarities(pairs: &[(u32, u32)], table: &[f32], dim: usize) -> Vec<f32> {
    let row = |i: u32| &table[i as usize * dim..(i as usize + 1) * dim];
    pairs.iter().map(|&(i, j)| Scoring::Cos.score(row(i), row(j))).collect()
}

impl DriftProbe {
    /// `n` distinct-item pairs among items `1..=n_items` that have original features.
    pub fn new(
        n: usize,
        n_items: usize,
        original: &[f32],
        dim: usize,
        id_reference: Option<(&[f32], usize)>,
        seed: u64,
    ) -> Self {
        let has = |i: usize| original[i * dim..(i + 1) * dim].iter().any(|&v| v != 0.0);
        let live: Vec<u32> = (1..=n_items).filter(|&i| has(i)).map(|i| i as u32).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pairs = Vec::with_capacity(n);
        while live.len() >= 2 && pairs.len() < n {
            let (a, b) = (live[rng.random_range(0..live.len())], live[rng.random_range(0..live.len())]);
            if a != b {
                pairs.push((a, b));
            }
        }
        let original = similarities(&pairs, original, dim);
        let id_reference = id_reference.map(|(t, d)| similarities(&pairs, t, d));
        Self { pairs, original, id_reference }
    }

    /// (r with the original features, r with the ID reference if any) for `table` [rows, dim].
    pub fn measure(&self, table: &[f32], dim: usize) -> (f64, Option<f64>) {
        let s = similarities(&self.pairs, table, dim);
        (pearson(&s, &self.original), self.id_reference.as_ref().map(|r| pearson(&s, r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_on_hand_samples() {
        assert!((pearson(&[1., 2., 3.], &[2., 4., 6.]) - 1.0).abs() < 1e-12);
        assert!((pearson(&[1., 2., 3.], &[3., 2., 1.]) + 1.0).abs() < 1e-12);
        assert_eq!(pearson(&[1., 1., 1.], &[1., 2., 3.]), 0.0);
        let r = pearson(&[1., 2., 3., 4.], &[1., 3., 2., 4.]);
        assert!((r - 0.8).abs() < 1e-12, "{r}");
    }

    #[test]
    fn probe_of_the_original_table_is_one() {
        let dim = 3;
        let table: Vec<f32> = (0..30).map(|i| if i < 3 { 0.0 } else { ((i * 7) % 5) as f32 - 1.0 }).collect();
        let p = DriftProbe::new(50, 9, &table, dim, Some((&table, dim)), 1);
        let (r0, r1) = p.measure(&table, dim);
        assert!((r0 - 1.0).abs() < 1e-9 && (r1.unwrap() - 1.0).abs() < 1e-9);
    }
}
