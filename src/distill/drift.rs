//! The Pearson-drift probe of the paper's Figure 1: on fixed seeded samples of item pairs,
//! the Pearson r between cosine similarities in the current modality embeddings and in a
//! reference space, recorded every epoch (and at epoch 0, before training).
//!
//! Embeddings: the raw table `e` and, for KDSR runs, its projection `W e` by the holistic
//! head (what the holistic loss constrains). References: the original features `x`, the
//! autoencoder codes `z` (the teacher's space and the tables' initial value) and, optionally,
//! the ID embeddings of a pure-ID model trained on the same data. Pairs: random pairs of items
//! with features (what the paper plots) and pairs that co-occur in a training sequence (what
//! the correlation losses supervise). Columns (suffixes of `drift_<modality>_`): `original`,
//! `ae`, `id` (raw `e`, random pairs); `seq_original`, `seq_ae` (raw `e`, in-sequence pairs);
//! `proj_original`, `proj_ae`, `proj_seq_original`, `proj_seq_ae` (`W e`).

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

/// Cosine similarities of one reference space on the random and the in-sequence pairs.
struct Reference {
    random: Vec<f32>,
    seq: Vec<f32>,
}

pub struct DriftProbe {
    random: Vec<(u32, u32)>,
    seq: Vec<(u32, u32)>,
    original: Reference,
    codes: Reference,
    id_reference: Option<Vec<f32>>,
}

fn similarities(pairs: &[(u32, u32)], table: &[f32], dim: usize) -> Vec<f32> {
    let row = |i: u32| &table[i as usize * dim..(i as usize + 1) * dim];
    pairs.iter().map(|&(i, j)| Scoring::Cos.score(row(i), row(j))).collect()
}

/// A table `[rows, dim]`, row-major.
pub type TableRef<'a> = (&'a [f32], usize);

impl DriftProbe {
    /// `n` random distinct-item pairs among items `1..=n_items` that have original features,
    /// and `n` pairs of distinct items co-occurring in `train_seqs` (both with features).
    pub fn new(
        n: usize,
        n_items: usize,
        original: TableRef,
        codes: TableRef,
        id_reference: Option<TableRef>,
        train_seqs: &[&[u32]],
        seed: u64,
    ) -> Self {
        let (x, dim) = original;
        let has = |i: usize| x[i * dim..(i + 1) * dim].iter().any(|&v| v != 0.0);
        let live: Vec<u32> = (1..=n_items).filter(|&i| has(i)).map(|i| i as u32).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut random = Vec::with_capacity(n);
        while live.len() >= 2 && random.len() < n {
            let (a, b) = (live[rng.random_range(0..live.len())], live[rng.random_range(0..live.len())]);
            if a != b {
                random.push((a, b));
            }
        }
        let mut seq = super::teacher::sample_pairs(train_seqs, n, seed.wrapping_add(1));
        seq.retain(|&(a, b)| has(a as usize) && has(b as usize));
        let reference =
            |(t, d): TableRef| Reference { random: similarities(&random, t, d), seq: similarities(&seq, t, d) };
        let (original, codes) = (reference(original), reference(codes));
        let id_reference = id_reference.map(|(t, d)| similarities(&random, t, d));
        Self { random, seq, original, codes, id_reference }
    }

    /// The drift columns (suffixes, see the module docs) for the raw table `e` and its
    /// projection `W e` if any.
    pub fn measure(&self, table: TableRef, projected: Option<TableRef>) -> Vec<(&'static str, f64)> {
        let raw_random = similarities(&self.random, table.0, table.1);
        let raw_seq = similarities(&self.seq, table.0, table.1);
        let mut out = vec![
            ("original", pearson(&raw_random, &self.original.random)),
            ("ae", pearson(&raw_random, &self.codes.random)),
            ("id", self.id_reference.as_ref().map_or(f64::NAN, |r| pearson(&raw_random, r))),
            ("seq_original", pearson(&raw_seq, &self.original.seq)),
            ("seq_ae", pearson(&raw_seq, &self.codes.seq)),
        ];
        let (proj_random, proj_seq) = match projected {
            Some((t, d)) => (similarities(&self.random, t, d), similarities(&self.seq, t, d)),
            None => (Vec::new(), Vec::new()),
        };
        let r = |s: &[f32], reference: &[f32]| if s.is_empty() { f64::NAN } else { pearson(s, reference) };
        out.extend([
            ("proj_original", r(&proj_random, &self.original.random)),
            ("proj_ae", r(&proj_random, &self.codes.random)),
            ("proj_seq_original", r(&proj_seq, &self.original.seq)),
            ("proj_seq_ae", r(&proj_seq, &self.codes.seq)),
        ]);
        out
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
    fn probe_of_the_reference_tables_is_one() {
        let dim = 3;
        let table: Vec<f32> = (0..30).map(|i| if i < 3 { 0.0 } else { ((i * 7) % 5) as f32 - 1.0 }).collect();
        let codes: Vec<f32> = table.iter().map(|v| v * 2.0 + 0.5).collect();
        let seqs: Vec<Vec<u32>> = vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8, 9]];
        let refs: Vec<&[u32]> = seqs.iter().map(|s| s.as_slice()).collect();
        let p = DriftProbe::new(50, 9, (&table, dim), (&codes, dim), Some((&table, dim)), &refs, 1);
        let got: std::collections::HashMap<_, _> = p.measure((&table, dim), Some((&codes, dim))).into_iter().collect();
        for k in ["original", "id", "seq_original", "proj_ae", "proj_seq_ae"] {
            assert!((got[k] - 1.0).abs() < 1e-9, "{k}: {}", got[k]);
        }
        assert!(got["ae"] < 1.0 - 1e-6, "x and 2x + 0.5 have different cosines: {}", got["ae"]);
        let without = p.measure((&table, dim), None);
        assert!(without.iter().filter(|(k, _)| k.starts_with("proj")).all(|(_, v)| v.is_nan()));
        // In-sequence pairs never cross sequences.
        assert!(p.seq.iter().all(|&(a, b)| (a <= 4) == (b <= 4)));
    }
}
