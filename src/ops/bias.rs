//! Bias addition broadcast over the leading dimensions, with a fused backward.
//!
//! Forward: `y[n, :] = x[n, :] + b` for every row `n` of `x` viewed as [N, M], where `b` has
//! `M` elements (a linear layer's bias [M], or a position table [T, D] added to [B, T, D]).
//! Backward: `dx = dy`, `db = Σ_n dy[n, :]`, summed over fixed chunks of rows in chunk order
//! (deterministic for any thread count). candle's `broadcast_add` reduces the bias gradient
//! with a strided sum over each broadcast dimension in turn, which is slow on CPU.

use super::{f32_slice, with_f32, CHUNK_ROWS};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

struct AddBias;

simd_kernel! {
    /// `y[n, :] = x[n, :] + b` for the rows of `x` (each `b.len()` long).
    fn add_to_rows(x: &[f32], b: &[f32], y: &mut [f32]) {
        for (yr, xr) in y.chunks_mut(b.len()).zip(x.chunks(b.len())) {
            for ((yv, &xv), &bv) in yr.iter_mut().zip(xr).zip(b) {
                *yv = xv + bv;
            }
        }
    }
}

simd_kernel! {
    /// `s += Σ_n v[n, :]` over the rows of `v` (each `s.len()` long), in row order.
    fn add_rows(v: &[f32], s: &mut [f32]) {
        for row in v.chunks(s.len()) {
            s.iter_mut().zip(row).for_each(|(a, &r)| *a += r);
        }
    }
}

/// Column sums of `v` viewed as rows of `m`: `Σ_n v[n, :]`, chunked in fixed row order.
pub(crate) fn column_sums(v: &[f32], m: usize) -> Vec<f32> {
    let partial: Vec<Vec<f32>> = v
        .par_chunks(m * CHUNK_ROWS)
        .map(|c| {
            let mut s = vec![0f32; m];
            add_rows(c, &mut s);
            s
        })
        .collect();
    let mut out = vec![0f32; m];
    for p in &partial {
        out.iter_mut().zip(p).for_each(|(a, &r)| *a += r);
    }
    out
}

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "add-bias"
    }

    fn cpu_fwd(&self, sx: &CpuStorage, lx: &Layout, sb: &CpuStorage, lb: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, b) = (f32_slice(sx, lx, self.name())?, f32_slice(sb, lb, self.name())?);
        let m = b.len();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(m * CHUNK_ROWS).zip(x.par_chunks(m * CHUNK_ROWS)).for_each(|(yc, xc)| add_to_rows(xc, b, yc));
        Ok((CpuStorage::F32(y), lx.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, b: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let db = with_f32(dy, self.name(), |dy| column_sums(dy, b.elem_count()))?;
        Ok((Some(dy.clone()), Some(Tensor::from_vec(db, b.shape(), b.device())?)))
    }
}

/// `x + b` with `b`'s dimensions equal to the trailing dimensions of `x`.
pub fn add_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (xd, bd) = (x.dims(), b.dims());
    if bd.len() > xd.len() || xd[xd.len() - bd.len()..] != *bd {
        candle_core::bail!("add_bias: bias {bd:?} does not match the trailing dimensions of {xd:?}");
    }
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && b.dtype() == x.dtype() {
        return x.contiguous()?.apply_op2(&b.contiguous()?, AddBias);
    }
    x.broadcast_add(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::rel_err;
    use candle_core::{Device, Var};

    #[test]
    fn matches_broadcast_add_forward_and_backward() {
        let dev = Device::Cpu;
        let xv: Vec<f32> = (0..3 * 70 * 5).map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5).collect();
        let x = Var::from_tensor(&Tensor::from_vec(xv, (3, 70, 5), &dev).unwrap()).unwrap();
        for bshape in [vec![5], vec![70, 5]] {
            let n: usize = bshape.iter().product();
            let b = Var::from_tensor(
                &Tensor::from_vec((0..n).map(|i| i as f32 * 0.1 - 0.3).collect(), bshape.as_slice(), &dev).unwrap(),
            )
            .unwrap();
            let w =
                Tensor::from_vec((0..3 * 70 * 5).map(|i| ((i % 11) as f32 - 5.0) / 4.0).collect(), (3, 70, 5), &dev)
                    .unwrap();
            let fused = add_bias(x.as_tensor(), b.as_tensor()).unwrap();
            let comp = x.as_tensor().broadcast_add(b.as_tensor()).unwrap();
            assert_eq!(rel_err(&fused, &comp), 0.0);
            let g1 = (&fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&comp * &w).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &b] {
                let (a, c) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
                assert_eq!(a.dims(), c.dims());
                assert!(rel_err(a, c) < 1e-5, "{}", rel_err(a, c));
            }
        }
    }

    #[test]
    fn rejects_mismatched_bias() {
        let x = Tensor::zeros((2, 3, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(add_bias(&x, &b).unwrap_err().to_string().contains("trailing"));
    }
}
