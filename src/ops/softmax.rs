//! Causal masked softmax for self-attention over sequences laid out in rows, several sequences
//! per row allowed (packing).
//!
//! Query `i` of batch row `b` attends to the keys `start_(b,i) <= j <= i`, where `start_(b,i)`
//! is the column at which its sequence starts (0 for one left-aligned sequence per row; a
//! block-diagonal causal mask for packed rows). For left-aligned rows this is RecBole's causal +
//! key-padding mask on every real query (its additive -10000 mask gives the same probabilities
//! in f32); padding queries start sequences of their own and see themselves only. Forward
//! `y = softmax(c x)` over the allowed keys, 0 elsewhere, with the attention scale `c`
//! (1 / √d_head) folded in; backward `dx = c y ⊙ (dy - Σ_j dy_j y_j)`.
//!
//! [`causal_softmax_at`] is the same for queries at some cells only (scores `[B, H, Q, T]`,
//! query `q` of row `b` at column `col_(b,q)`, seeing `start_(b,q) <= j <= col_(b,q)`): a
//! layer whose output is read at a few cells computes only their rows.

use super::{f32_slice, fastmath, with_f32};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;
use std::sync::Arc;

struct CausalSoftmax {
    /// [B * Q]: first allowed key of each query.
    starts: Arc<Vec<u32>>,
    /// [B * Q]: the column of each query (its last allowed key); None: query `i` is at column
    /// `i` (Q = T).
    cols: Option<Arc<Vec<u32>>>,
    scale: f32,
}

impl CausalSoftmax {
    /// Allowed keys `lo..=col` of query `i` in attention matrix `matrix` (= b * heads + head)
    /// of `q` queries.
    fn allowed(&self, matrix: usize, heads: usize, q: usize, i: usize) -> std::ops::Range<usize> {
        let at = (matrix / heads) * q + i;
        let col = self.cols.as_ref().map_or(i, |c| c[at] as usize);
        let lo = (self.starts[at] as usize).min(col);
        lo..col + 1
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    /// [B, H, Q, T] scores -> probabilities
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (_, h, q, t) = l.shape().dims4()?;
        let x = f32_slice(s, l, self.name())?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(q * t).zip(x.par_chunks(q * t)).enumerate().for_each(|(mat, (ym, xm))| {
            for i in 0..q {
                let r = self.allowed(mat, h, q, i);
                forward_row(&xm[i * t + r.start..i * t + r.end], self.scale, &mut ym[i * t + r.start..i * t + r.end]);
            }
        });
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let (_, h, q, t) = y.dims4()?;
        let dx = with_f32(y, self.name(), |y| {
            with_f32(dy, self.name(), |dy| {
                let mut dx = vec![0f32; y.len()];
                dx.par_chunks_mut(q * t).zip(y.par_chunks(q * t).zip(dy.par_chunks(q * t))).enumerate().for_each(
                    |(mat, (dxm, (ym, dym)))| {
                        for i in 0..q {
                            let k = self.allowed(mat, h, q, i);
                            let r = i * t + k.start..i * t + k.end;
                            backward_row(&ym[r.clone()], &dym[r.clone()], self.scale, &mut dxm[r]);
                        }
                    },
                );
                dx
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, y.shape(), y.device())?))
    }
}

simd_kernel! {
    /// `y = softmax(c x)` for one row.
    fn forward_row(x: &[f32], c: f32, y: &mut [f32]) {
        let max = fastmath::max(x);
        for (yv, &xv) in y.iter_mut().zip(x) {
            *yv = fastmath::exp(c * (xv - max));
        }
        let inv = 1.0 / y.iter().sum::<f32>();
        y.iter_mut().for_each(|v| *v *= inv);
    }
}

simd_kernel! {
    /// `dx = c y ⊙ (dy - Σ_j dy_j y_j)` for one row of a softmax `y = softmax(c x)`.
    pub(crate) fn backward_row(y: &[f32], dy: &[f32], c: f32, dx: &mut [f32]) {
        let dot = fastmath::dot(y, dy);
        for ((d, &yv), &g) in dx.iter_mut().zip(y).zip(dy) {
            *d = c * yv * (g - dot);
        }
    }
}

/// The additive mask [B, 1, T, T] of the same pattern: 0 where allowed, -10000 elsewhere.
pub fn causal_mask(starts: &[u32], b: usize, t: usize, device: &candle_core::Device) -> Result<Tensor> {
    let cols: Vec<u32> = (0..starts.len()).map(|q| (q % t) as u32).collect();
    mask_at(starts, &cols, (b, t, t), device)
}

/// The additive mask [B, 1, Q, T] of queries at columns `cols` [B * Q] seeing `starts..=cols`.
fn mask_at(
    starts: &[u32],
    cols: &[u32],
    (b, q, t): (usize, usize, usize),
    device: &candle_core::Device,
) -> Result<Tensor> {
    let mut m = vec![-10000f32; b * q * t];
    for (k, (&lo, &col)) in starts.iter().zip(cols).enumerate() {
        m[k * t + lo.min(col) as usize..=k * t + col as usize].fill(0.0);
    }
    Tensor::from_vec(m, (b, 1, q, t), device)
}

/// Causal softmax of `scale` times the attention scores [B, H, T, T], given the first allowed
/// key `starts` [B * T] of every query (see the module docs).
pub fn causal_softmax(scores: &Tensor, starts: &[u32], scale: f64) -> Result<Tensor> {
    let (b, _, t, t2) = scores.dims4()?;
    if scale.is_nan() || scale <= 0.0 {
        candle_core::bail!("causal_softmax: scale must be positive, got {scale}");
    }
    if t != t2 || starts.len() != b * t {
        candle_core::bail!("causal_softmax: scores {:?} with {} query starts", scores.dims(), starts.len());
    }
    if scores.device().is_cpu() && scores.dtype() == candle_core::DType::F32 {
        return scores.contiguous()?.apply_op1(CausalSoftmax {
            starts: Arc::new(starts.to_vec()),
            cols: None,
            scale: scale as f32,
        });
    }
    let mask = causal_mask(starts, b, t, scores.device())?;
    candle_nn::ops::softmax(&(scores * scale)?.broadcast_add(&mask)?, D::Minus1)
}

/// [`causal_softmax`] of scores [B, H, Q, T] for `Q` queries per row at columns `cols` [B * Q],
/// each seeing the keys `starts[k] ..= cols[k]` (see the module docs).
pub fn causal_softmax_at(scores: &Tensor, starts: &[u32], cols: &[u32], scale: f64) -> Result<Tensor> {
    let (b, _, q, t) = scores.dims4()?;
    if scale.is_nan() || scale <= 0.0 {
        candle_core::bail!("causal_softmax_at: scale must be positive, got {scale}");
    }
    if starts.len() != b * q || cols.len() != b * q || cols.iter().any(|&c| c as usize >= t) {
        candle_core::bail!(
            "causal_softmax_at: scores {:?} with {} query starts and {} columns (each < {t})",
            scores.dims(),
            starts.len(),
            cols.len()
        );
    }
    if scores.device().is_cpu() && scores.dtype() == candle_core::DType::F32 {
        let op = CausalSoftmax {
            starts: Arc::new(starts.to_vec()),
            cols: Some(Arc::new(cols.to_vec())),
            scale: scale as f32,
        };
        return scores.contiguous()?.apply_op1(op);
    }
    let mask = mask_at(starts, cols, (b, q, t), scores.device())?;
    candle_nn::ops::softmax(&(scores * scale)?.broadcast_add(&mask)?, D::Minus1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{assert_grads_match, rel_err};
    use candle_core::{Device, Var};

    /// The mask written out from its definition, then candle's softmax.
    fn composite(x: &Tensor, starts: &[u32], scale: f64) -> Tensor {
        let (b, _, t, _) = x.dims4().unwrap();
        let mut m = vec![-10000f32; b * t * t];
        for r in 0..b {
            for i in 0..t {
                for j in 0..t {
                    if j <= i && j as u32 >= starts[r * t + i] {
                        m[(r * t + i) * t + j] = 0.0;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(m, (b, 1, t, t), &Device::Cpu).unwrap();
        assert_eq!(mask.flatten_all().unwrap().to_vec1::<f32>().unwrap(), {
            causal_mask(starts, b, t, &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        });
        candle_nn::ops::softmax(&(x * scale).unwrap().broadcast_add(&mask).unwrap(), D::Minus1).unwrap()
    }

    #[test]
    fn matches_composite_and_finite_differences() {
        let dev = Device::Cpu;
        let (b, h, t) = (3, 2, 6);
        // Row 0: one sequence of 6; row 1: sequences of 2, 3 and 1; row 2: one item, padding.
        let starts = [0u32, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 5, 0, 1, 2, 3, 4, 5];
        let xv: Vec<f32> = (0..b * h * t * t).map(|i| ((i * 31) % 17) as f32 / 5.0 - 1.5).collect();
        let x = Var::from_tensor(&Tensor::from_vec(xv, (b, h, t, t), &dev).unwrap()).unwrap();
        let wts =
            Tensor::from_vec((0..b * h * t * t).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect(), (b, h, t, t), &dev)
                .unwrap();
        let fused = causal_softmax(x.as_tensor(), &starts, 0.7).unwrap();
        let comp = composite(x.as_tensor(), &starts, 0.7);
        assert!(rel_err(&fused, &comp) < 1e-6);
        let fused = || causal_softmax(x.as_tensor(), &starts, 0.7).unwrap();
        assert_grads_match(&x, &wts, &fused, &comp, &[7, 40, 100, 200]);
    }

    #[test]
    fn queries_at_some_cells_match_those_rows_of_the_full_softmax() {
        let dev = Device::Cpu;
        let (b, h, t, q) = (3, 2, 6, 2);
        let starts = [0u32, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 5, 0, 1, 2, 3, 4, 5];
        // Row 0 reads columns 5 and 2, row 1 column 4 (and a padding query at 0), row 2 column 0.
        let cols = [5u32, 2, 4, 0, 0, 0];
        let q_starts: Vec<u32> = cols.iter().enumerate().map(|(k, &c)| starts[(k / q) * t + c as usize]).collect();
        let xv: Vec<f32> = (0..b * h * t * t).map(|i| ((i * 31) % 17) as f32 / 5.0 - 1.5).collect();
        let full = Tensor::from_vec(xv.clone(), (b, h, t, t), &dev).unwrap();
        let rows: Vec<f32> = (0..b * h * q)
            .flat_map(|k| {
                let (r, hh, i) = (k / (h * q), (k / q) % h, k % q);
                let c = cols[r * q + i] as usize;
                xv[((r * h + hh) * t + c) * t..][..t].to_vec()
            })
            .collect();
        let x = Var::from_tensor(&Tensor::from_vec(rows.clone(), (b, h, q, t), &dev).unwrap()).unwrap();
        let at = causal_softmax_at(x.as_tensor(), &q_starts, &cols, 0.7).unwrap();
        let want = causal_softmax(&full, &starts, 0.7).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let got = at.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for k in 0..b * h * q {
            let (r, hh, i) = (k / (h * q), (k / q) % h, k % q);
            let c = cols[r * q + i] as usize;
            assert_eq!(got[k * t..][..t], want[((r * h + hh) * t + c) * t..][..t], "query {k}");
        }
        let mask = mask_at(&q_starts, &cols, (b, q, t), &dev).unwrap();
        let comp =
            candle_nn::ops::softmax(&(x.as_tensor() * 0.7).unwrap().broadcast_add(&mask).unwrap(), D::Minus1).unwrap();
        let wts =
            Tensor::from_vec((0..b * h * q * t).map(|i| ((i % 7) as f32 - 3.0) / 3.0).collect(), (b, h, q, t), &dev)
                .unwrap();
        let fused = || causal_softmax_at(x.as_tensor(), &q_starts, &cols, 0.7).unwrap();
        assert_grads_match(&x, &wts, &fused, &comp, &[5, 17, 40, 70]);
        assert!(causal_softmax_at(x.as_tensor(), &q_starts, &[6, 2, 4, 0, 0, 0], 0.7).is_err());
    }
}
