//! Softmax cross-entropy over the item catalogue.
//!
//! `loss = (1/M) Σ_m [log Σ_n exp(z_mn) - z_{m,y_m}]`, and its gradient
//! `∂loss/∂z_mn = (softmax(z_m)_n - [n = y_m]) / M`, computed row by row in one pass each way
//! (candle's composite `log_softmax` + gather makes several full passes and broadcasts).

use super::{f32_slice, fastmath, with_f32, CHUNK_ROWS};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

struct SoftmaxCrossEntropy {
    targets: Arc<Vec<u32>>,
}

/// `log Σ exp(row)` with the max subtracted for stability.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = fastmath::max(row);
    max + fastmath::sum_exp(row, max).ln()
}

impl CustomOp1 for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        "softmax-cross-entropy"
    }

    /// [M, N] logits -> [] mean loss
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, n) = l.shape().dims2()?;
        let z = f32_slice(s, l, self.name())?;
        let partial: Vec<f64> = z
            .par_chunks(n * CHUNK_ROWS)
            .zip(self.targets.par_chunks(CHUNK_ROWS))
            .map(|(rows, ys)| rows.chunks(n).zip(ys).map(|(row, &y)| (log_sum_exp(row) - row[y as usize]) as f64).sum())
            .collect();
        let loss = partial.iter().sum::<f64>() / m.max(1) as f64;
        Ok((CpuStorage::F32(vec![loss as f32]), Shape::from(())))
    }

    fn bwd(&self, z: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (m, n) = z.dims2()?;
        let g = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()? / m.max(1) as f32;
        let dz = with_f32(z, self.name(), |z| {
            let mut dz = vec![0f32; m * n];
            dz.par_chunks_mut(n).zip(z.par_chunks(n)).zip(self.targets.par_iter()).for_each(|((d, row), &y)| {
                let lse = log_sum_exp(row);
                for (dv, &v) in d.iter_mut().zip(row) {
                    *dv = fastmath::exp(v - lse) * g;
                }
                d[y as usize] -= g;
            });
            dz
        })?;
        Ok(Some(Tensor::from_vec(dz, (m, n), z.device())?))
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
        logits.contiguous()?.apply_op1(SoftmaxCrossEntropy { targets: Arc::new(targets.to_vec()) })
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
