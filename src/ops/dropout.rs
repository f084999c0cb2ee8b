//! Inverted dropout with a given keep mask, fused.
//!
//! Forward `y = x ⊙ m / p_keep`, backward `dx = dy ⊙ m / p_keep`, `m ∈ {0, 1}` drawn by the
//! caller ([`crate::model::layers::Ctx::dropout`]). The mask is kept as bytes in the op, so no
//! f32 mask tensor and no separate multiply node are made.

use super::{f32_slice, with_f32, CHUNK_ELEMS as CHUNK};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

struct Dropout {
    keep: Arc<Vec<bool>>,
    scale: f32,
}

simd_kernel! {
    /// `y = x · scale` where kept, 0 elsewhere.
    fn scale_kept(x: &[f32], keep: &[bool], scale: f32, y: &mut [f32]) {
        for ((y, &x), &k) in y.iter_mut().zip(x).zip(keep) {
            *y = if k { x * scale } else { 0.0 };
        }
    }
}

impl Dropout {
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut y = vec![0f32; x.len()];
        let scale = self.scale;
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK).zip(self.keep.par_chunks(CHUNK)))
            .for_each(|(yc, (xc, kc))| scale_kept(xc, kc, scale, yc));
        y
    }
}

impl CustomOp1 for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        if x.len() != self.keep.len() {
            candle_core::bail!("dropout: {} elements with a mask of {}", x.len(), self.keep.len());
        }
        Ok((CpuStorage::F32(self.apply(x)), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_f32(dy, self.name(), |dy| self.apply(dy))?;
        Ok(Some(Tensor::from_vec(dx, dy.shape(), dy.device())?))
    }
}

/// `x ⊙ keep / p_keep` with `keep` one flag per element of `x` (row-major).
pub fn dropout(x: &Tensor, keep: Vec<bool>, p_keep: f64) -> Result<Tensor> {
    if keep.len() != x.elem_count() {
        candle_core::bail!("dropout: {} elements with a mask of {}", x.elem_count(), keep.len());
    }
    let scale = (1.0 / p_keep) as f32;
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
        return x.contiguous()?.apply_op1(Dropout { keep: Arc::new(keep), scale });
    }
    let m: Vec<f32> = keep.iter().map(|&k| if k { scale } else { 0.0 }).collect();
    x * Tensor::from_vec(m, x.shape(), x.device())?.to_dtype(x.dtype())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::rel_err;
    use candle_core::{Device, Var};

    #[test]
    fn matches_mask_multiply_forward_and_backward() {
        let dev = Device::Cpu;
        let n = CHUNK + 100;
        let x = Var::from_tensor(
            &Tensor::from_vec((0..n).map(|i| (i % 17) as f32 - 8.0).collect(), (n / 4, 4), &dev).unwrap(),
        )
        .unwrap();
        let keep: Vec<bool> = (0..n).map(|i| (i * 7) % 10 < 7).collect();
        let m = Tensor::from_vec(keep.iter().map(|&k| if k { 1.0 / 0.7f32 } else { 0.0 }).collect(), (n / 4, 4), &dev)
            .unwrap();
        let w = Tensor::from_vec((0..n).map(|i| (i % 5) as f32 - 2.0).collect(), (n / 4, 4), &dev).unwrap();
        let fused = dropout(x.as_tensor(), keep, 0.7).unwrap();
        let comp = (x.as_tensor() * &m).unwrap();
        assert_eq!(rel_err(&fused, &comp), 0.0);
        let g1 = (&fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&comp * &w).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(rel_err(g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap()), 0.0);
        assert!(dropout(x.as_tensor(), vec![true; 3], 0.7).unwrap_err().to_string().contains("mask of 3"));
    }
}
