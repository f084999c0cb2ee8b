//! Softmax over the last axis of scaled attention scores plus a constant additive bias (a
//! padding or structure mask), fused: `y = softmax(c x + β)` row by row, one pass for the
//! forward and one for the backward `dx = c y ⊙ (dy - Σ_j dy_j y_j)`, where candle's composite
//! (`affine`, `broadcast_add`, then max, subtract, exp, sum and divide, each differentiated)
//! allocates and sweeps the `[B, H, Q, K]` scores about ten times.
//!
//! `x` is `[B, H, Q, K]` and `β` is `[B, 1, Q, K]` or `[B, 1, 1, K]` (per query or per key);
//! β is a constant (no gradient flows to it). Entries more than 80 below their row's maximum
//! are exactly 0: their weight `e^-80 ≈ 2e-35` vanishes against the row's sum (≥ 1) in f32, and
//! `exp` near f32's underflow makes subnormal intermediates that cost a hundred cycles each (half
//! of a padded row's keys). A mask of -10000 thus gives the zeros of candle's softmax; a row whose
//! entries are all masked is a softmax over `c x`, as in the composite.

use super::{f32_slice, fastmath, with_f32, CHUNK_ROWS};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;
use std::sync::Arc;

/// Logit gaps below this give weight 0 (see the module docs).
const UNDERFLOW: f32 = -80.0;

struct BiasedSoftmax {
    /// `β` flattened, `[B, Qb, K]`.
    bias: Arc<Vec<f32>>,
    /// `Q` when β is per query, 1 when per key.
    bias_rows: usize,
    scale: f32,
}

impl BiasedSoftmax {
    /// `softmax(c x + β)` of the scores `x` [B, H, Q, K], row by row in chunks.
    fn probabilities(&self, x: &[f32], (_, h, q, k): (usize, usize, usize, usize)) -> Vec<f32> {
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK_ROWS * k).zip(x.par_chunks(CHUNK_ROWS * k)).enumerate().for_each(|(c, (yc, xc))| {
            for (i, (yr, xr)) in yc.chunks_mut(k).zip(xc.chunks(k)).enumerate() {
                forward_row(xr, self.bias_row(c * CHUNK_ROWS + i, (h, q, k)), self.scale, yr);
            }
        });
        y
    }

    /// The bias row of score row `row` of `[B, H, Q, K]`, whose shape is `(h, q, k)` below.
    fn bias_row(&self, row: usize, (h, q, k): (usize, usize, usize)) -> &[f32] {
        let b = row / (h * q);
        let qb = if self.bias_rows == 1 { 0 } else { row % q };
        &self.bias[(b * self.bias_rows + qb) * k..][..k]
    }
}

simd_kernel! {
    /// `y = softmax(scale x + β)` for one row.
    fn forward_row(x: &[f32], bias: &[f32], scale: f32, y: &mut [f32]) {
        for ((yv, &xv), &bv) in y.iter_mut().zip(x).zip(bias) {
            *yv = scale * xv + bv;
        }
        let max = fastmath::max(y);
        let weight = |v: f32| {
            let gap = v - max;
            let e = fastmath::exp(gap.max(UNDERFLOW));
            if gap < UNDERFLOW {
                0.0
            } else {
                e
            }
        };
        let sum = fastmath::map_sum_in_place(y, weight);
        let inv = 1.0 / sum;
        y.iter_mut().for_each(|v| *v *= inv);
}
}

impl CustomOp1 for BiasedSoftmax {
    fn name(&self) -> &'static str {
        "biased-softmax"
    }

    /// [B, H, Q, K] scores -> probabilities
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let y = self.probabilities(f32_slice(s, l, self.name())?, l.shape().dims4()?);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let k = y.dim(D::Minus1)?;
        let dx = with_f32(y, self.name(), |y| {
            with_f32(dy, self.name(), |dy| {
                let mut dx = vec![0f32; y.len()];
                dx.par_chunks_mut(CHUNK_ROWS * k)
                    .zip(y.par_chunks(CHUNK_ROWS * k).zip(dy.par_chunks(CHUNK_ROWS * k)))
                    .for_each(|(dxc, (yc, dyc))| {
                        for ((dxr, yr), dyr) in dxc.chunks_mut(k).zip(yc.chunks(k)).zip(dyc.chunks(k)) {
                            super::softmax::backward_row(yr, dyr, self.scale, dxr);
                        }
                    });
                dx
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, y.shape(), y.device())?))
    }
}

/// `softmax(scale · scores + bias)` over the last axis: `scores` [B, H, Q, K], constant `bias`
/// [B, 1, Q, K] or [B, 1, 1, K] (see the module docs).
pub fn biased_softmax(scores: &Tensor, scale: f64, bias: &Tensor) -> Result<Tensor> {
    let (b, _, q, k) = scores.dims4()?;
    let (bb, one, qb, kb) = bias.dims4()?;
    if bb != b || one != 1 || (qb != q && qb != 1) || kb != k {
        candle_core::bail!("biased_softmax: scores {:?} with bias {:?}", scores.dims(), bias.dims());
    }
    if !scale.is_finite() || scale <= 0.0 {
        candle_core::bail!("biased_softmax: scale must be positive, got {scale}");
    }
    if scores.device().is_cpu() && scores.dtype() == candle_core::DType::F32 {
        let op =
            BiasedSoftmax { bias: Arc::new(bias.flatten_all()?.to_vec1::<f32>()?), bias_rows: qb, scale: scale as f32 };
        return scores.contiguous()?.apply_op1(op);
    }
    candle_nn::ops::softmax(&scores.affine(scale, 0.0)?.broadcast_add(bias)?, D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_grads_match, rel_err};
    use candle_core::{Device, Var};

    fn composite(x: &Tensor, scale: f64, bias: &Tensor) -> Tensor {
        candle_nn::ops::softmax(&x.affine(scale, 0.0).unwrap().broadcast_add(bias).unwrap(), D::Minus1).unwrap()
    }

    /// A -10000 mask with one fully masked row, per key and per query.
    fn biases(b: usize, q: usize, k: usize) -> [Tensor; 2] {
        let per_key: Vec<f32> = (0..b * k).map(|i| if (i * 7) % 5 == 0 { -10000.0 } else { 0.0 }).collect();
        let mut per_query: Vec<f32> =
            (0..b * q * k).map(|i| if (i * 11) % 4 == 0 { -10000.0 } else { (i % 3) as f32 * 0.1 }).collect();
        per_query[k..2 * k].fill(-10000.0);
        [
            Tensor::from_vec(per_key, (b, 1, 1, k), &Device::Cpu).unwrap(),
            Tensor::from_vec(per_query, (b, 1, q, k), &Device::Cpu).unwrap(),
        ]
    }

    #[test]
    fn matches_composite_and_finite_differences() {
        let dev = Device::Cpu;
        // More rows than one chunk, so chunk boundaries are crossed.
        let (b, h, q, k) = (3, 2, 13, 9);
        let n = b * h * q * k;
        let xv: Vec<f32> = (0..n).map(|i| ((i * 31) % 17) as f32 / 5.0 - 1.5).collect();
        let x = Var::from_tensor(&Tensor::from_vec(xv, (b, h, q, k), &dev).unwrap()).unwrap();
        let wts = Tensor::from_vec((0..n).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect(), (b, h, q, k), &dev).unwrap();
        for bias in biases(b, q, k) {
            let fused = biased_softmax(x.as_tensor(), 0.7, &bias).unwrap();
            let comp = composite(x.as_tensor(), 0.7, &bias);
            assert!(rel_err(&fused, &comp) < 1e-6, "{}", rel_err(&fused, &comp));
            // Masked entries are exactly zero, as in the composite.
            let (f, c) = (fused.flatten_all().unwrap().to_vec1::<f32>().unwrap(), comp.flatten_all().unwrap());
            let c = c.to_vec1::<f32>().unwrap();
            assert_eq!(
                f.iter().map(|v| *v == 0.0).collect::<Vec<_>>(),
                c.iter().map(|v| *v == 0.0).collect::<Vec<_>>()
            );
            assert!(c.contains(&0.0));
            let fused = || biased_softmax(x.as_tensor(), 0.7, &bias).unwrap();
            assert_grads_match(&x, &wts, &fused, &comp, &[3, 40, 100, 200, 500]);
        }
    }

    #[test]
    fn rejects_mismatched_bias() {
        let x = Tensor::zeros((2, 1, 3, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let bias = Tensor::zeros((2, 1, 2, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(biased_softmax(&x, 1.0, &bias).is_err());
        assert!(biased_softmax(&x, 0.0, &bias.narrow(2, 0, 1).unwrap()).is_err());
    }
}
