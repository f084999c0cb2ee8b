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
            Self::Cos => {
                let n = (dot(a, a) * dot(b, b)).sqrt();
                if n > 0.0 {
                    dot(a, b) / n
                } else {
                    0.0
                }
            }
            Self::Euclidean => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt(),
            Self::Manhattan => a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum(),
        }
    }

    /// Differentiable pairwise scores within each sequence: [B, L, d] -> [B, L, L].
    pub fn pairwise(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Dot => x.matmul(&x.transpose(1, 2)?),
            Self::Cos => {
                let norm = (x.sqr()?.sum_keepdim(D::Minus1)? + 1e-12)?.sqrt()?; // [B, L, 1]
                let xn = x.broadcast_div(&norm)?;
                xn.matmul(&xn.transpose(1, 2)?)
            }
            Self::Euclidean => {
                // sqrt(|a|^2 + |b|^2 - 2 a·b + eps), eps keeps the gradient finite at a = b.
                let sq = x.sqr()?.sum_keepdim(D::Minus1)?; // [B, L, 1]
                let g = x.matmul(&x.transpose(1, 2)?)?;
                let d2 = (sq.broadcast_add(&sq.transpose(1, 2)?)? - (g * 2.0)?)?.relu()?;
                (d2 + 1e-8)?.sqrt()
            }
            Self::Manhattan => {
                let (b, l, d) = x.dims3()?;
                let a = x.unsqueeze(2)?.broadcast_as((b, l, l, d))?;
                let c = x.unsqueeze(1)?.broadcast_as((b, l, l, d))?;
                // smooth |.|: sqrt(v^2 + 1e-8)
                ((a - c)?.sqr()? + 1e-8)?.sqrt()?.sum(D::Minus1)
            }
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
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
    fn pairwise_matches_slice_scores() {
        let v = [[1.0f32, 2.0, 2.0], [2.0, 0.0, 1.0], [-1.0, 0.5, 3.0]];
        let x = Tensor::new(&[v], &Device::Cpu).unwrap(); // [1, 3, 3]
        for s in [Scoring::Cos, Scoring::Dot, Scoring::Euclidean, Scoring::Manhattan] {
            let p = s.pairwise(&x).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap();
            for i in 0..3 {
                for j in 0..3 {
                    let want = s.score(&v[i], &v[j]);
                    assert!((p[i][j] - want).abs() < 1e-3, "{s:?} ({i},{j}): {} vs {want}", p[i][j]);
                }
            }
        }
    }
}
