//! Layer normalisation over the last dimension with a fused backward.
//!
//! Forward: `x̂ = (x - μ) / sqrt(σ² + ε)`, `y = x̂ ⊙ w + b` (biased variance, as PyTorch).
//! Backward, per row with `g = dy ⊙ w`:
//! `dx = (g - mean(g) - x̂ ⊙ mean(g ⊙ x̂)) / sqrt(σ² + ε)`, `dw = Σ_rows dy ⊙ x̂`, `db = Σ_rows dy`.

use super::{f32_slice, with_f32, CHUNK_ROWS};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

struct LayerNormOp {
    eps: f32,
}

/// (mean, 1 / sqrt(var + eps)) of a row.
#[inline(always)]
fn moments(row: &[f32], eps: f32) -> (f32, f32) {
    let d = row.len() as f32;
    let mean = row.iter().sum::<f32>() / d;
    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d;
    (mean, 1.0 / (var + eps).sqrt())
}

simd_kernel! {
    /// `y = x̂ ⊙ w + b` for the rows of `x` (each `w.len()` long).
    fn forward(x: &[f32], w: &[f32], b: &[f32], eps: f32, y: &mut [f32]) {
        let d = w.len();
        for (yr, xr) in y.chunks_mut(d).zip(x.chunks(d)) {
            let (mean, rstd) = moments(xr, eps);
            for j in 0..d {
                yr[j] = (xr[j] - mean) * rstd * w[j] + b[j];
            }
        }
    }
}

simd_kernel! {
    /// `dx` of the rows of `x` (see the module docs); adds their `dy ⊙ x̂` to `dw` and `dy` to
    /// `db`, in row order.
    fn backward(x: &[f32], dy: &[f32], w: &[f32], eps: f32, dx: &mut [f32], dw: &mut [f32], db: &mut [f32]) {
        let d = w.len();
        let mut g = vec![0f32; d];
        for ((dxr, xr), dyr) in dx.chunks_mut(d).zip(x.chunks(d)).zip(dy.chunks(d)) {
            let (mean, rstd) = moments(xr, eps);
            let (mut mg, mut mgx) = (0f32, 0f32);
            for j in 0..d {
                let xh = (xr[j] - mean) * rstd;
                g[j] = dyr[j] * w[j];
                mg += g[j];
                mgx += g[j] * xh;
                dw[j] += dyr[j] * xh;
                db[j] += dyr[j];
            }
            let (mg, mgx) = (mg / d as f32, mgx / d as f32);
            for j in 0..d {
                let xh = (xr[j] - mean) * rstd;
                dxr[j] = (g[j] - mg - xh * mgx) * rstd;
            }
        }
    }
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) =
            (f32_slice(sx, lx, self.name())?, f32_slice(sw, lw, self.name())?, f32_slice(sb, lb, self.name())?);
        let d = w.len();
        let mut y = vec![0f32; x.len()];
        let eps = self.eps;
        y.par_chunks_mut(d * CHUNK_ROWS)
            .zip(x.par_chunks(d * CHUNK_ROWS))
            .for_each(|(yc, xc)| forward(xc, w, b, eps, yc));
        Ok((CpuStorage::F32(y), lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = w.dim(0)?;
        let wv = w.to_vec1::<f32>()?;
        let (dx, dw, db) = with_f32(x, self.name(), |x| {
            with_f32(dy, self.name(), |dy| {
                let mut dx = vec![0f32; x.len()];
                let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
                    .par_chunks_mut(d * CHUNK_ROWS)
                    .zip(x.par_chunks(d * CHUNK_ROWS))
                    .zip(dy.par_chunks(d * CHUNK_ROWS))
                    .map(|((dxc, xc), dyc)| {
                        let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
                        backward(xc, dyc, &wv, self.eps, dxc, &mut dw, &mut db);
                        (dw, db)
                    })
                    .collect();
                let (mut dw, mut db) = (vec![0f32; d], vec![0f32; d]);
                for (pw, pb) in &partial {
                    for j in 0..d {
                        dw[j] += pw[j];
                        db[j] += pb[j];
                    }
                }
                (dx, dw, db)
            })
        })??;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, d, dev)?),
            Some(Tensor::from_vec(db, d, dev)?),
        ))
    }
}

/// Layer norm of `x` [.., D] with weight and bias [D].
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        let x = x.contiguous()?;
        return x.apply_op3(&w.contiguous()?, &b.contiguous()?, LayerNormOp { eps: eps as f32 });
    }
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let xn = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    xn.broadcast_mul(w)?.broadcast_add(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{finite_diff, rel_err};
    use candle_core::{Device, Var};

    fn composite(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
        let mean = x.mean_keepdim(D::Minus1).unwrap();
        let xc = x.broadcast_sub(&mean).unwrap();
        let var = xc.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
        let xn = xc.broadcast_div(&(var + eps).unwrap().sqrt().unwrap()).unwrap();
        xn.broadcast_mul(w).unwrap().broadcast_add(b).unwrap()
    }

    #[test]
    fn matches_composite_and_finite_differences() {
        let dev = Device::Cpu;
        let (r, d) = (3 * 70, 16);
        let xv: Vec<f32> = (0..r * d).map(|i| ((i * 37) % 101) as f32 / 13.0 - 3.0).collect();
        let x = Var::from_tensor(&Tensor::from_vec(xv, (3, 70, d), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::from_vec((0..d).map(|j| 0.5 + j as f32 / 10.0).collect(), d, &dev).unwrap())
            .unwrap();
        let b =
            Var::from_tensor(&Tensor::from_vec((0..d).map(|j| j as f32 / 7.0).collect(), d, &dev).unwrap()).unwrap();
        // A loss that weights outputs unevenly, so every gradient term matters.
        let wts =
            Tensor::from_vec((0..r * d).map(|i| ((i % 11) as f32 - 5.0) / 5.0).collect(), (3, 70, d), &dev).unwrap();
        let loss_of = |y: &Tensor| (y * &wts).unwrap().sum_all().unwrap();
        let fused = layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap();
        let comp = composite(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5);
        assert!(rel_err(&fused, &comp) < 1e-5);
        let g1 = loss_of(&fused).backward().unwrap();
        let g2 = loss_of(&comp).backward().unwrap();
        for v in [&x, &w, &b] {
            let e = rel_err(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            assert!(e < 1e-4, "relative error {e}");
        }
        let f = || {
            loss_of(&layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap()).to_scalar::<f32>().unwrap()
                as f64
        };
        let gx = g1.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for k in [0, 17, 1000] {
            let fd = finite_diff(&x, k, &f);
            assert!((fd - gx[k] as f64).abs() < 2e-2 * (gx[k].abs() as f64).max(0.1), "k {k}: fd {fd} vs {}", gx[k]);
        }
    }
}
