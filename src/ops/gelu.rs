//! GELU (exact, erf form) with a fused backward.
//!
//! Forward: `y = x Φ(x)`, `Φ(x) = (1 + erf(x / √2)) / 2`.
//! Backward: `dx = dy (Φ(x) + x φ(x))`, `φ(x) = exp(-x² / 2) / √(2π)`, one pass, where
//! candle's composite backward makes eight full-size temporaries. `Φ` and `exp(-x²/2)` come
//! from [`super::fastmath::normal_cdf`] (vectorised, |error| < 3e-7; candle's `gelu_erf` calls
//! the scalar `libm::erff`).

use super::{f32_slice, fastmath, with_f32, CHUNK_ELEMS as CHUNK};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// 1 / √(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

struct Gelu;

simd_kernel! {
    /// `y = x Φ(x)` elementwise.
    fn forward(x: &[f32], y: &mut [f32]) {
        for (yv, &xv) in y.iter_mut().zip(x) {
            *yv = fastmath::normal_cdf(xv).0 * xv;
        }
    }
}

simd_kernel! {
    /// `dx = dy (Φ(x) + x φ(x))` elementwise.
    fn backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
        for ((d, &xv), &g) in dx.iter_mut().zip(x).zip(dy) {
            let (cdf, e) = fastmath::normal_cdf(xv);
            *d = g * (cdf + xv * INV_SQRT_2PI * e);
        }
    }
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| forward(xc, yc));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_f32(x, self.name(), |x| {
            with_f32(dy, self.name(), |dy| {
                let mut dx = vec![0f32; x.len()];
                dx.par_chunks_mut(CHUNK)
                    .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
                    .for_each(|(dxc, (xc, dyc))| backward(xc, dyc, dxc));
                dx
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// Exact GELU of `x`, elementwise.
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        return x.contiguous()?.apply_op1(Gelu);
    }
    x.gelu_erf()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{finite_diff, rel_err};
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_and_finite_differences() {
        let dev = Device::Cpu;
        let n = 3 * CHUNK / 2;
        let xv: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0).collect();
        let x = Var::from_tensor(&Tensor::from_vec(xv, n, &dev).unwrap()).unwrap();
        let w = Tensor::from_vec((0..n).map(|i| ((i % 13) as f32 - 6.0) / 3.0).collect(), n, &dev).unwrap();
        let fused = gelu(x.as_tensor()).unwrap();
        let comp = x.as_tensor().gelu_erf().unwrap();
        assert!(rel_err(&fused, &comp) < 1e-6, "{}", rel_err(&fused, &comp));
        let g1 = (&fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&comp * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let (g1, g2) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert!(rel_err(g1, g2) < 1e-5, "{}", rel_err(g1, g2));
        // Finite differences on a small input (a long f32 sum would drown the difference).
        let xs = Var::from_tensor(&x.as_tensor().narrow(0, 0, 64).unwrap()).unwrap();
        let ws = w.narrow(0, 0, 64).unwrap();
        let f = || (gelu(xs.as_tensor()).unwrap() * &ws).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        let g = g1.to_vec1::<f32>().unwrap();
        for k in [0, 3, 17, 40, 63] {
            let fd = finite_diff(&xs, k, &f);
            assert!((fd - g[k] as f64).abs() < 2e-2 * (g[k].abs() as f64).max(0.1), "k {k}: fd {fd} vs {}", g[k]);
        }
    }
}
