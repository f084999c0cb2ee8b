//! Softmax cross-entropy over the whole item catalogue, fused with its logits product.
//!
//! `loss = (1/M) Σ_m [log Σ_n exp(z_mn) - z_{m,y_m}]` with `z = H Eᵀ`, from the hidden states
//! `H` [M, D] and the candidate item embeddings `E` [N, D]. Rows are taken in blocks of `B`:
//! `Z_b = H_b Eᵀ` goes into one reused `[B, N]` buffer, which becomes
//! `P_b = (softmax(Z_b) - onehot(y_b)) / M` in place, then `dH_b = P_b E` and `dE += P_bᵀ H_b`
//! (three `gemm` calls per block). The `[M, N]` logits and their gradient never exist whole,
//! and each block is passed over while it is in cache. The gradients are computed in the
//! forward pass, since a training step always differentiates the loss, and the backward pass
//! only scales them by the incoming gradient. Other devices use `H Eᵀ` and the composite
//! cross-entropy.

use super::{f32_slice, fastmath, with_f32};
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Rows per block: a [64, 12101] block of f32 is 3 MB.
const BLOCK_ROWS: usize = 64;

struct CatalogueCrossEntropy {
    targets: Arc<Vec<u32>>,
    /// (dH [M * D], dE [N * D]) for an incoming gradient of 1, written by the forward pass.
    grads: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

fn parallelism() -> Parallelism {
    match rayon::current_num_threads() {
        0 | 1 => Parallelism::None,
        n => Parallelism::Rayon(n),
    }
}

simd_kernel! {
    /// Turns a row of logits into `(softmax(row) - onehot(y)) · scale` in place; returns the
    /// row's loss `log Σ exp(row) - row[y]`.
    pub(super) fn softmax_grad_in_place(row: &mut [f32], y: usize, scale: f32) -> f32 {
        let max = fastmath::max(row);
        let zy = row[y];
        let sum = fastmath::exp_in_place(row, max);
        let inv = scale / sum;
        row.iter_mut().for_each(|v| *v *= inv);
        row[y] -= scale;
        max + sum.ln() - zy
    }
}

/// A matrix operand: its data, column stride and row stride.
pub(super) type Operand<'a> = (&'a [f32], isize, isize);

/// `dst = lhs · rhs` for `lhs` [m, k] and `rhs` [k, n] into the row-major `dst` [m, n], or
/// `dst += lhs · rhs` when `accumulate`, with `gemm` (threads as rayon's pool).
fn product(m: usize, n: usize, k: usize, dst: &mut [f32], lhs: Operand, rhs: Operand, accumulate: bool) {
    product_into((m, n, k), (dst, 1, n as isize), lhs, rhs, accumulate, parallelism());
}

/// [`product`] into a `dst` [m, n] with any column and row strides, on the given threads.
pub(super) fn product_into(
    (m, n, k): (usize, usize, usize),
    dst: (&mut [f32], isize, isize),
    lhs: Operand,
    rhs: Operand,
    accumulate: bool,
    par: Parallelism,
) {
    let (dst, dst_cs, dst_rs) = dst;
    let last = |(v, cs, rs): Operand, rows: usize, cols: usize| {
        let end = (rows - 1) * (rs as usize) + (cols - 1) * (cs as usize);
        assert!(end < v.len(), "operand out of bounds");
    };
    assert!(m > 0 && n > 0 && k > 0, "product: bad shapes");
    last((&*dst, dst_cs, dst_rs), m, n);
    last(lhs, m, k);
    last(rhs, k, n);
    // SAFETY: the asserts above keep every element gemm reads or writes inside its slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            dst_cs,
            dst_rs,
            accumulate,
            lhs.0.as_ptr(),
            lhs.1,
            lhs.2,
            rhs.0.as_ptr(),
            rhs.1,
            rhs.2,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// Loss and gradients (for an incoming gradient of 1) of `h` [m, d] against `e` [n, d].
fn loss_and_grads(h: &[f32], e: &[f32], targets: &[u32], m: usize, n: usize, d: usize) -> (f64, Vec<f32>, Vec<f32>) {
    let scale = 1.0 / m.max(1) as f32;
    let mut dh = vec![0f32; m * d];
    let mut de = vec![0f32; n * d];
    let mut z = vec![0f32; BLOCK_ROWS.min(m) * n];
    let mut loss = 0f64;
    for (block, start) in (0..m).step_by(BLOCK_ROWS).enumerate() {
        let rows = BLOCK_ROWS.min(m - start);
        let hb = &h[start * d..(start + rows) * d];
        let zb = &mut z[..rows * n];
        // Z_b = H_b Eᵀ: [rows, d] x [d, n] (Eᵀ is E read column-major).
        product(rows, n, d, zb, (hb, 1, d as isize), (e, d as isize, 1), false);
        let ys = &targets[start..start + rows];
        let partial: Vec<f64> = zb
            .par_chunks_mut(n)
            .zip(ys.par_iter())
            .map(|(row, &y)| softmax_grad_in_place(row, y as usize, scale) as f64)
            .collect();
        loss += partial.iter().sum::<f64>();
        // dH_b = P_b E: [rows, n] x [n, d]
        product(rows, d, n, &mut dh[start * d..(start + rows) * d], (zb, 1, n as isize), (e, 1, d as isize), false);
        // dE += P_bᵀ H_b, computed as its transpose dEᵀ += H_bᵀ P_b: [d, rows] x [rows, n] into
        // dE read column-major. The same product, but gemm's kernels run it 1.5-2x faster in
        // this orientation (measured at rows = 64: 2.4 -> 1.6 ms).
        product_into(
            (d, n, rows),
            (&mut de, d as isize, 1),
            (hb, d as isize, 1),
            (zb, 1, n as isize),
            block > 0,
            parallelism(),
        );
    }
    (loss / m.max(1) as f64, dh, de)
}

/// The item catalogue `E` [n, d] laid out for scoring: stored transposed, `Eᵀ` [d, n]
/// row-major, so that `gemm` reads it without packing a copy of it for every block of rows
/// (with `E` row-major it repacked the whole catalogue, 3 MB on Beauty, per block).
pub struct ScoreCatalogue {
    et: Vec<f32>,
    n: usize,
    d: usize,
}

impl ScoreCatalogue {
    /// From the row-major `e` [n, d].
    pub fn new(e: &[f32], (n, d): (usize, usize)) -> Self {
        assert_eq!(e.len(), n * d, "ScoreCatalogue: bad shape");
        let mut et = vec![0f32; n * d];
        for (j, row) in e.chunks_exact(d.max(1)).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                et[c * n + j] = v;
            }
        }
        Self { et, n, d }
    }

    /// `f(i, z_i)` for every row `z_i = h_i Eᵀ` [n] of the scores of `h` [m, d], in row order.
    /// Blocks of `BLOCK_ROWS` rows are spread over the rayon threads; each thread computes its
    /// block's scores into its own reused buffer (one `gemm` call, single-threaded) and hands
    /// the rows to `f` while they are in cache: the `[m, n]` score matrix never exists. Every
    /// score is the same `k`-ordered sum whatever the blocking and thread count.
    pub fn for_each_score_row<R: Send>(&self, h: &[f32], m: usize, f: impl Fn(usize, &[f32]) -> R + Sync) -> Vec<R> {
        let (n, d) = (self.n, self.d);
        assert!(h.len() == m * d, "for_each_score_row: bad shapes");
        if m == 0 || n == 0 || d == 0 {
            return Vec::new();
        }
        let blocks: Vec<Vec<R>> = (0..m)
            .into_par_iter()
            .step_by(BLOCK_ROWS)
            .map_init(
                || vec![0f32; BLOCK_ROWS.min(m) * n],
                |z, start| {
                    let rows = BLOCK_ROWS.min(m - start);
                    let zb = &mut z[..rows * n];
                    let hb = (&h[start * d..(start + rows) * d], 1, d as isize);
                    product_into(
                        (rows, n, d),
                        (zb, 1, n as isize),
                        hb,
                        (&self.et, 1, n as isize),
                        false,
                        Parallelism::None,
                    );
                    zb.chunks(n).enumerate().map(|(i, row)| f(start + i, row)).collect()
                },
            )
            .collect();
        blocks.into_iter().flatten().collect()
    }
}

impl CustomOp2 for CatalogueCrossEntropy {
    fn name(&self) -> &'static str {
        "catalogue-cross-entropy"
    }

    /// H [M, D], E [N, D] -> [] mean loss
    fn cpu_fwd(&self, sh: &CpuStorage, lh: &Layout, se: &CpuStorage, le: &Layout) -> Result<(CpuStorage, Shape)> {
        let (m, d) = lh.shape().dims2()?;
        let (n, _) = le.shape().dims2()?;
        let (h, e) = (f32_slice(sh, lh, self.name())?, f32_slice(se, le, self.name())?);
        let (loss, dh, de) = loss_and_grads(h, e, &self.targets, m, n, d);
        *self.grads.lock().unwrap_or_else(|p| p.into_inner()) = Some((dh, de));
        Ok((CpuStorage::F32(vec![loss as f32]), Shape::from(())))
    }

    fn bwd(&self, h: &Tensor, e: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let stored = self.grads.lock().unwrap_or_else(|p| p.into_inner()).take();
        // A second backward pass over the same graph recomputes the gradients.
        let (mut dh, mut de) = match stored {
            Some(v) => v,
            None => {
                let (m, d) = h.dims2()?;
                let n = e.dim(0)?;
                let (_, dh, de) = with_f32(h, self.name(), |h| {
                    with_f32(e, self.name(), |e| loss_and_grads(h, e, &self.targets, m, n, d))
                })??;
                (dh, de)
            }
        };
        if g != 1.0 {
            dh.par_iter_mut().chain(de.par_iter_mut()).for_each(|v| *v *= g);
        }
        Ok((Some(Tensor::from_vec(dh, h.shape(), h.device())?), Some(Tensor::from_vec(de, e.shape(), e.device())?)))
    }
}

/// Mean softmax cross-entropy of the scores `h eᵀ` against class indices `targets` (len M),
/// for `h` [M, D] and `e` [N, D].
pub fn catalogue_cross_entropy(h: &Tensor, e: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (m, d) = h.dims2()?;
    let (n, d2) = e.dims2()?;
    if d != d2 || targets.len() != m {
        candle_core::bail!("catalogue_cross_entropy: h {:?}, e {:?} and {} targets", h.dims(), e.dims(), targets.len());
    }
    if let Some(&bad) = targets.iter().find(|&&t| t as usize >= n) {
        candle_core::bail!("catalogue_cross_entropy: target {bad} out of range for {n} items");
    }
    if h.device().is_cpu() && h.dtype() == candle_core::DType::F32 && m > 0 {
        let op = CatalogueCrossEntropy { targets: Arc::new(targets.to_vec()), grads: Mutex::new(None) };
        return h.contiguous()?.apply_op2(&e.contiguous()?, op);
    }
    super::cross_entropy(&h.matmul(&e.t()?)?, targets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::rel_err;
    use candle_core::{Device, Var};

    #[test]
    fn matches_the_unfused_product_and_cross_entropy() {
        let dev = Device::Cpu;
        // More rows than one block, and a last block of 13 rows.
        let (m, n, d) = (BLOCK_ROWS * 2 + 13, 97, 12);
        let hv: Vec<f32> = (0..m * d).map(|i| ((i * 7919) % 1000) as f32 / 400.0 - 1.2).collect();
        let ev: Vec<f32> = (0..n * d).map(|i| ((i * 104_729) % 997) as f32 / 350.0 - 1.4).collect();
        let h = Var::from_tensor(&Tensor::from_vec(hv, (m, d), &dev).unwrap()).unwrap();
        let e = Var::from_tensor(&Tensor::from_vec(ev, (n, d), &dev).unwrap()).unwrap();
        let targets: Vec<u32> = (0..m as u32).map(|i| (i * 31) % n as u32).collect();
        let fused = catalogue_cross_entropy(h.as_tensor(), e.as_tensor(), &targets).unwrap();
        let t = Tensor::new(targets.as_slice(), &dev).unwrap();
        let logits = h.as_tensor().matmul(&e.as_tensor().t().unwrap()).unwrap();
        let composite = candle_nn::loss::cross_entropy(&logits, &t).unwrap();
        assert!(rel_err(&fused, &composite) < 1e-5, "{} vs {}", fused, composite);
        let (g1, g2) = (fused.backward().unwrap(), composite.backward().unwrap());
        for v in [&h, &e] {
            let (a, b) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            assert!(rel_err(a, b) < 1e-4, "gradient: {}", rel_err(a, b));
        }
        // A scaled loss scales both gradients; a second backward pass recomputes them.
        let g3 = (fused * 3.0).unwrap().backward().unwrap();
        let (a, b) = (g3.get(h.as_tensor()).unwrap(), (g1.get(h.as_tensor()).unwrap() * 3.0).unwrap());
        assert!(rel_err(a, &b) < 1e-6);
    }

    #[test]
    fn score_rows_match_the_product() {
        let (m, n, d) = (3 * BLOCK_ROWS + 5, 31, 7);
        let h: Vec<f32> = (0..m * d).map(|i| ((i * 7919) % 1000) as f32 / 400.0 - 1.2).collect();
        let e: Vec<f32> = (0..n * d).map(|i| ((i * 104_729) % 997) as f32 / 350.0 - 1.4).collect();
        let rows = ScoreCatalogue::new(&e, (n, d)).for_each_score_row(&h, m, |i, row| (i, row.to_vec()));
        assert_eq!(rows.len(), m);
        for (k, (i, row)) in rows.into_iter().enumerate() {
            assert_eq!(i, k);
            for (j, &z) in row.iter().enumerate() {
                let want: f32 = (0..d).map(|c| h[i * d + c] * e[j * d + c]).sum();
                assert!((z - want).abs() < 1e-4, "row {i} item {j}: {z} vs {want}");
            }
        }
    }

    #[test]
    fn rejects_bad_targets() {
        let z = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(catalogue_cross_entropy(&z, &z, &[0, 2]).is_err());
        assert!(catalogue_cross_entropy(&z, &z, &[0]).is_err());
    }
}
