//! Correlation scoring functions φ between two item representations.
//!
//! - `cos(a, b) = a·b / (|a| |b|)` (0 when either vector is zero),
//! - `dot(a, b) = a·b`,
//! - `euc(a, b) = |a - b|_2`, `man(a, b) = |a - b|_1`.
//!
//! As in the released code, distances are used as they are (not turned into similarities):
//! teacher and student are compared on the same scale.

use candle_core::{Result, Tensor, D};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Scoring {
    #[default]
    Cos,
    Dot,
    #[serde(alias = "euc")]
    #[value(alias = "euc")]
    Euclidean,
    #[serde(alias = "man")]
    #[value(alias = "man")]
    Manhattan,
}

impl Scoring {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cos => "cos",
            Self::Dot => "dot",
            Self::Euclidean => "euc",
            Self::Manhattan => "man",
        }
    }

    /// φ(a, b) on slices.
    pub fn score(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Self::Dot => dot(a, b),
            Self::Cos => cos_from_parts(dot(a, b), dot(a, a), dot(b, b)),
            Self::Euclidean => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt(),
            Self::Manhattan => a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum(),
        }
    }

    /// Differentiable scores of gathered pairs: `x` [U, d] representations, `a`, `b` [P] row
    /// indices into `x`; returns `φ(x_a[p], x_b[p])` for every pair: [P].
    /// Cos normalises the U rows once, `x / sqrt(|x|² + 1e-12)`; euclidean is
    /// `sqrt(|x_a - x_b|² + 1e-8)` and manhattan `Σ sqrt((x_a - x_b)² + 1e-8)` (the epsilons keep
    /// the gradient finite at `x_a = x_b`).
    pub fn paired(self, x: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let x = match self {
            Self::Cos => x.broadcast_div(&(x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?)?, // [U, d]
            _ => x.clone(),
        };
        let diff = || x.index_select(a, 0)? - x.index_select(b, 0)?; // [P, d]
        match self {
            Self::Dot | Self::Cos => crate::ops::pair_dot(&x, a, b),
            Self::Euclidean => (diff()?.sqr()?.sum(D::Minus1)? + 1e-8)?.sqrt(),
            Self::Manhattan => (diff()?.sqr()? + 1e-8)?.sqrt()?.sum(D::Minus1),
        }
    }
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `cos(a, b)` from `a · b`, `|a|²` and `|b|²`; 0 when either vector is zero.
pub(crate) fn cos_from_parts(ab: f32, aa: f32, bb: f32) -> f32 {
    let n = (aa * bb).sqrt();
    if n > 0.0 {
        ab / n
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn scores_on_hand_vectors() {
        let (a, b) = ([1.0f32, 2.0, 2.0], [2.0f32, 0.0, 1.0]);
        assert_eq!(Scoring::Dot.score(&a, &b), 4.0);
        assert!((Scoring::Cos.score(&a, &b) - 4.0 / (3.0 * 5f32.sqrt())).abs() < 1e-6);
        assert!((Scoring::Euclidean.score(&a, &b) - 6f32.sqrt()).abs() < 1e-6);
        assert_eq!(Scoring::Manhattan.score(&a, &b), 4.0);
        assert_eq!(Scoring::Cos.score(&a, &[0.0; 3]), 0.0);
    }

    #[test]
    fn paired_matches_slice_scores() {
        let v = [[1.0f32, 2.0, 2.0], [2.0, 0.0, 1.0], [-1.0, 0.5, 3.0]];
        let dev = Device::Cpu;
        let x = Tensor::new(&v, &dev).unwrap(); // [3, 3]
        let (a, b): (Vec<u32>, Vec<u32>) = (0..9u32).map(|k| (k / 3, k % 3)).unzip();
        let (at, bt) = (Tensor::new(a.as_slice(), &dev).unwrap(), Tensor::new(b.as_slice(), &dev).unwrap());
        for s in [Scoring::Cos, Scoring::Dot, Scoring::Euclidean, Scoring::Manhattan] {
            let p = s.paired(&x, &at, &bt).unwrap().to_vec1::<f32>().unwrap();
            for (k, (&i, &j)) in a.iter().zip(&b).enumerate() {
                let want = s.score(&v[i as usize], &v[j as usize]);
                assert!((p[k] - want).abs() < 1e-3, "{s:?} ({i},{j}): {} vs {want}", p[k]);
            }
        }
    }
}
