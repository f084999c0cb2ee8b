//! Softmax cross-entropy over the item catalogue.
//!
//! `loss = (1/M) Σ_m [log Σ_n exp(z_mn) - z_{m,y_m}]`, and its gradient
//! `∂loss/∂z_mn = (softmax(z_m)_n - [n = y_m]) / M`. The forward pass computes both, row by row
//! while the row is in cache (one max pass, one exp pass, one scaling pass), and keeps the
//! gradient for the backward pass, which only scales it by the incoming gradient (1 when the
//! loss is differentiated directly). candle's composite `log_softmax` + gather makes several
//! full passes and broadcasts; recomputing the softmax in the backward pass costs two more.

use super::{f32_slice, fastmath, with_f32, CHUNK_ROWS};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

struct SoftmaxCrossEntropy {
    targets: Arc<Vec<u32>>,
    /// `(softmax(z) - onehot(y)) / M` [M * N], written by the forward pass.
    grad: Mutex<Option<Vec<f32>>>,
}

/// Writes `softmax(row) - onehot(y)` scaled by `scale` into `out`; returns the row's loss
/// `log Σ exp(row) - row[y]`.
fn row_loss_and_grad(row: &[f32], y: usize, scale: f32, out: &mut [f32]) -> f32 {
    let max = fastmath::max(row);
    let sum = fastmath::exp_into(row, max, out);
    let inv = scale / sum;
    out.iter_mut().for_each(|v| *v *= inv);
    out[y] -= scale;
    max + sum.ln() - row[y]
}

impl CustomOp1 for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        "softmax-cross-entropy"
    }

    /// [M, N] logits -> [] mean loss
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, n) = l.shape().dims2()?;
        let z = f32_slice(s, l, self.name())?;
        let scale = 1.0 / m.max(1) as f32;
        let mut grad = vec![0f32; m * n];
        let partial: Vec<f64> = grad
            .par_chunks_mut(n * CHUNK_ROWS)
            .zip(z.par_chunks(n * CHUNK_ROWS).zip(self.targets.par_chunks(CHUNK_ROWS)))
            .map(|(g, (rows, ys))| {
                g.chunks_mut(n)
                    .zip(rows.chunks(n))
                    .zip(ys)
                    .map(|((g, row), &y)| row_loss_and_grad(row, y as usize, scale, g) as f64)
                    .sum()
            })
            .collect();
        let loss = partial.iter().sum::<f64>() / m.max(1) as f64;
        *self.grad.lock().unwrap_or_else(|e| e.into_inner()) = Some(grad);
        Ok((CpuStorage::F32(vec![loss as f32]), Shape::from(())))
    }

    fn bwd(&self, z: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let stored = self.grad.lock().unwrap_or_else(|e| e.into_inner()).take();
        // A second backward pass over the same graph recomputes the gradient.
        let mut dz = match stored {
            Some(dz) => dz,
            None => {
                let (m, n) = z.dims2()?;
                with_f32(z, self.name(), |z| {
                    let mut dz = vec![0f32; m * n];
                    dz.par_chunks_mut(n).zip(z.par_chunks(n)).zip(self.targets.par_iter()).for_each(
                        |((d, row), &y)| {
                            row_loss_and_grad(row, y as usize, 1.0 / m.max(1) as f32, d);
                        },
                    );
                    dz
                })?
            }
        };
        if g != 1.0 {
            dz.par_iter_mut().for_each(|v| *v *= g);
        }
        Ok(Some(Tensor::from_vec(dz, z.shape(), z.device())?))
    }
}

/// Mean softmax cross-entropy of `logits` [M, N] against class indices `targets` (len M).
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (m, n) = logits.dims2()?;
    if targets.len() != m {
        candle_core::bail!("cross_entropy: {m} rows but {} targets", targets.len());
    }
    if let Some(&bad) = targets.iter().find(|&&t| t as usize >= n) {
        candle_core::bail!("cross_entropy: target {bad} out of range for {n} classes");
    }
    if logits.device().is_cpu() {
        logits
            .contiguous()?
            .apply_op1(SoftmaxCrossEntropy { targets: Arc::new(targets.to_vec()), grad: Mutex::new(None) })
    } else {
        let t = Tensor::from_slice(targets, m, logits.device())?;
        candle_nn::loss::cross_entropy(logits, &t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{finite_diff, rel_err};
    use candle_core::{Device, Var};

    #[test]
    fn matches_composite_and_finite_differences() {
        let dev = Device::Cpu;
        let (m, n) = (150, 37); // more rows than one chunk
        let vals: Vec<f32> = (0..m * n).map(|i| ((i * 7919) % 1000) as f32 / 97.0 - 5.0).collect();
        let z = Var::from_tensor(&Tensor::from_vec(vals, (m, n), &dev).unwrap()).unwrap();
        let targets: Vec<u32> = (0..m as u32).map(|i| (i * 13) % n as u32).collect();
        let fused = cross_entropy(z.as_tensor(), &targets).unwrap();
        let t = Tensor::new(targets.as_slice(), &dev).unwrap();
        let composite = candle_nn::loss::cross_entropy(z.as_tensor(), &t).unwrap();
        assert!(rel_err(&fused, &composite) < 1e-5);
        let g1 = fused.backward().unwrap().get(z.as_tensor()).unwrap().clone();
        let again = fused.backward().unwrap().get(z.as_tensor()).unwrap().clone();
        assert!(rel_err(&g1, &again) < 1e-7, "a second backward pass gives the same gradient");
        let g2 = composite.backward().unwrap().get(z.as_tensor()).unwrap().clone();
        assert!(rel_err(&g1, &g2) < 1e-4, "{}", rel_err(&g1, &g2));
        let f = || cross_entropy(z.as_tensor(), &targets).unwrap().to_scalar::<f32>().unwrap() as f64;
        let g = g1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for k in [0, 5, n + 3, 100 * n + 17] {
            let fd = finite_diff(&z, k, &f);
            assert!(
                (fd - g[k] as f64).abs() < 1e-3 * (g[k].abs() as f64).max(1e-3) + 2e-5,
                "k {k}: fd {fd} vs {}",
                g[k]
            );
        }
    }

    #[test]
    fn rejects_bad_targets() {
        let z = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(cross_entropy(&z, &[0, 3]).is_err());
        assert!(cross_entropy(&z, &[0]).is_err());
    }
}
