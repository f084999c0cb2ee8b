//! The dissected head's pair classifier fused with its cross-entropy.
//!
//! For pairs `p = (a_p, b_p)` of rows of `h` [U, d] (the items' first-layer products `W_1 e`),
//! the bias `c` [d] of that layer, the second layer `w` [K, d + 1] (`W_2` with its bias `b_2`
//! as the last column) and a code `y_p` per pair:
//!
//! `r_p = max(h[a_p] - h[b_p] + c, 0)`, `z_p = W_2 r_p + b_2`,
//! `loss = (1/P) Σ_p [log Σ_k exp(z_pk) - z_{p,y_p}]`.
//!
//! Pairs are taken in blocks of [`BLOCK`]: the block's `r` and `z` live in reused buffers, `z`
//! becomes `g = (softmax(z) - onehot(y)) / P` in place, then `dW_2 += gᵀ r`, `db_2 += Σ g`,
//! `m = (g W_2) ⊙ [r > 0]`, `dh[a_p] += m_p`, `dh[b_p] -= m_p`, `dc += Σ m`. The composite
//! version materialises `r`, `z` and their gradients as [P, d] and [P, K] tensors (16 MB each
//! for a prefix batch of the released network, ~31,600 pairs at d = 128), which costs more in
//! memory traffic and fresh pages than the three products do. As in [`super::catalogue`], the
//! gradients are computed in the forward pass and the backward pass only scales them.
//!
//! Blocks are grouped in fixed groups of [`GROUP`] pairs, run in parallel, each with its own
//! partial gradients, which are summed in group order: results do not depend on the number of
//! threads.

use super::catalogue::{product_into, softmax_grad_in_place};
use super::{f32_slice, with_f32};
use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use gemm::Parallelism;
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// Pairs per block: `r` [256, 128] is 128 KB.
const BLOCK: usize = 1024;
/// Pairs per parallel group (a multiple of [`BLOCK`]).
const GROUP: usize = 8 * BLOCK;

/// Gradients for an incoming gradient of 1: `dh` [U * d], `dc` [d], `dw` [K * (d + 1)].
type Grads = (Vec<f32>, Vec<f32>, Vec<f32>);

struct PairCodeCrossEntropy {
    a: Arc<Vec<u32>>,
    b: Arc<Vec<u32>>,
    codes: Arc<Vec<u32>>,
    grads: Mutex<Option<Grads>>,
}

/// One group's loss sum and partial gradients.
struct Partial {
    loss: f64,
    dh: Vec<f32>,
    dc: Vec<f32>,
    dw: Vec<f32>,
}

impl PairCodeCrossEntropy {
    /// Loss and gradients of the pairs `range`, scaled by `1/total` (the mean's divisor).
    fn group(&self, h: &[f32], c: &[f32], w: &[f32], range: std::ops::Range<usize>, total: usize) -> Partial {
        let d = c.len();
        let k = w.len() / (d + 1);
        let u = h.len() / d;
        let scale = 1.0 / total as f32;
        let mut out = Partial { loss: 0.0, dh: vec![0f32; u * d], dc: vec![0f32; d], dw: vec![0f32; k * (d + 1)] };
        let mut r = vec![0f32; BLOCK * d];
        let mut z = vec![0f32; BLOCK * k];
        let mut m = vec![0f32; BLOCK * d];
        let row_stride = (d + 1) as isize;
        for start in range.clone().step_by(BLOCK) {
            let n = BLOCK.min(range.end - start);
            let (r, z, m) = (&mut r[..n * d], &mut z[..n * k], &mut m[..n * d]);
            for (q, rq) in r.chunks_mut(d).enumerate() {
                let (ra, rb) = (self.a[start + q] as usize * d, self.b[start + q] as usize * d);
                for (((o, &x), &y), &cv) in rq.iter_mut().zip(&h[ra..ra + d]).zip(&h[rb..rb + d]).zip(c) {
                    *o = (x - y + cv).max(0.0);
                }
            }
            // z = b_2 + r W_2ᵀ: [n, d] x [d, K] (W_2ᵀ is w read column-major, bias column skipped).
            for zq in z.chunks_mut(k) {
                for (kk, o) in zq.iter_mut().enumerate() {
                    *o = w[kk * (d + 1) + d];
                }
            }
            product_into(
                (n, k, d),
                (z, 1, k as isize),
                (r, 1, d as isize),
                (w, row_stride, 1),
                true,
                Parallelism::None,
            );
            for (q, zq) in z.chunks_mut(k).enumerate() {
                out.loss += f64::from(softmax_grad_in_place(zq, self.codes[start + q] as usize, scale));
            }
            // dW_2 += gᵀ r, computed as its transpose dW_2ᵀ += rᵀ g: [d, n] x [n, K] into the first
            // d columns of dw read column-major (gemm's kernels run this orientation faster,
            // as in the catalogue's dE); db_2 += Σ g.
            product_into(
                (d, k, n),
                (&mut out.dw, row_stride, 1),
                (r, d as isize, 1),
                (z, 1, k as isize),
                true,
                Parallelism::None,
            );
            for zq in z.chunks(k) {
                for (kk, &g) in zq.iter().enumerate() {
                    out.dw[kk * (d + 1) + d] += g;
                }
            }
            // m = (g W_2) ⊙ [r > 0]: [n, K] x [K, d].
            product_into(
                (n, d, k),
                (m, 1, d as isize),
                (z, 1, k as isize),
                (w, 1, row_stride),
                false,
                Parallelism::None,
            );
            for (q, (mq, rq)) in m.chunks_mut(d).zip(r.chunks(d)).enumerate() {
                mq.iter_mut().zip(rq).for_each(|(g, &x)| *g = if x > 0.0 { *g } else { 0.0 });
                let (ra, rb) = (self.a[start + q] as usize * d, self.b[start + q] as usize * d);
                out.dh[ra..ra + d].iter_mut().zip(&*mq).for_each(|(o, &g)| *o += g);
                out.dh[rb..rb + d].iter_mut().zip(&*mq).for_each(|(o, &g)| *o -= g);
                out.dc.iter_mut().zip(&*mq).for_each(|(o, &g)| *o += g);
            }
        }
        out
    }

    /// Mean loss and gradients over every pair: groups in parallel, summed in group order.
    fn loss_and_grads(&self, h: &[f32], c: &[f32], w: &[f32]) -> (f64, Grads) {
        let p = self.a.len();
        let starts: Vec<usize> = (0..p).step_by(GROUP).collect();
        let parts: Vec<Partial> = starts.par_iter().map(|&s| self.group(h, c, w, s..(s + GROUP).min(p), p)).collect();
        let mut parts = parts.into_iter();
        let Some(mut acc) = parts.next() else {
            return (0.0, (vec![0f32; h.len()], vec![0f32; c.len()], vec![0f32; w.len()]));
        };
        for part in parts {
            acc.loss += part.loss;
            for (x, y) in [(&mut acc.dh, &part.dh), (&mut acc.dc, &part.dc), (&mut acc.dw, &part.dw)] {
                x.iter_mut().zip(y).for_each(|(o, &v)| *o += v);
            }
        }
        (acc.loss / p as f64, (acc.dh, acc.dc, acc.dw))
    }
}

impl CustomOp3 for PairCodeCrossEntropy {
    fn name(&self) -> &'static str {
        "pair-code-cross-entropy"
    }

    /// h [U, d], c [d], w [K, d + 1] -> [] mean loss
    fn cpu_fwd(
        &self,
        sh: &CpuStorage,
        lh: &Layout,
        sc: &CpuStorage,
        lc: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (h, c, w) =
            (f32_slice(sh, lh, self.name())?, f32_slice(sc, lc, self.name())?, f32_slice(sw, lw, self.name())?);
        let (loss, grads) = self.loss_and_grads(h, c, w);
        *self.grads.lock().unwrap_or_else(|p| p.into_inner()) = Some(grads);
        Ok((CpuStorage::F32(vec![loss as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        h: &Tensor,
        c: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let stored = self.grads.lock().unwrap_or_else(|p| p.into_inner()).take();
        // A second backward pass over the same graph recomputes the gradients.
        let (mut dh, mut dc, mut dw) = match stored {
            Some(v) => v,
            None => with_f32(h, self.name(), |h| {
                with_f32(c, self.name(), |c| with_f32(w, self.name(), |w| self.loss_and_grads(h, c, w).1))
            })???,
        };
        if g != 1.0 {
            dh.iter_mut().chain(dc.iter_mut()).chain(dw.iter_mut()).for_each(|v| *v *= g);
        }
        Ok((
            Some(Tensor::from_vec(dh, h.shape(), h.device())?),
            Some(Tensor::from_vec(dc, c.shape(), c.device())?),
            Some(Tensor::from_vec(dw, w.shape(), w.device())?),
        ))
    }
}

/// `max(h[a_p] - h[b_p] + c, 0)` for every pair [P, d]: the composite first layer.
fn hidden(h: &Tensor, c: &Tensor, a: &[u32], b: &[u32]) -> Result<Tensor> {
    let dev = h.device();
    let (a, b) = (Tensor::from_slice(a, a.len(), dev)?, Tensor::from_slice(b, b.len(), dev)?);
    super::pair_diff_relu(h, c, &a, &b)
}

/// The dissected head's logits `W_2 max(h[a_p] - h[b_p] + c, 0) + b_2` [P, K], for `h` [U, d],
/// `c` [d] and `w` [K, d + 1] (`b_2` its last column).
pub fn pair_code_logits(h: &Tensor, c: &Tensor, w: &Tensor, a: &[u32], b: &[u32]) -> Result<Tensor> {
    let d = c.dim(0)?;
    let r = hidden(h, c, a, b)?;
    r.matmul(&w.narrow(1, 0, d)?.t()?)?.broadcast_add(&w.narrow(1, d, 1)?.squeeze(1)?)
}

/// Mean cross-entropy of [`pair_code_logits`] against `codes` (one per pair); fused on CPU.
pub fn pair_code_cross_entropy(
    h: &Tensor,
    c: &Tensor,
    w: &Tensor,
    a: &[u32],
    b: &[u32],
    codes: &[u32],
) -> Result<Tensor> {
    let (u, d) = h.dims2()?;
    let (k, d1) = w.dims2()?;
    if c.dims() != [d] || d1 != d + 1 || a.len() != b.len() || a.len() != codes.len() || a.is_empty() {
        candle_core::bail!(
            "pair_code_cross_entropy: h {:?}, c {:?}, w {:?}, {} / {} pairs, {} codes",
            h.dims(),
            c.dims(),
            w.dims(),
            a.len(),
            b.len(),
            codes.len()
        );
    }
    if let Some(&i) = a.iter().chain(b).find(|&&i| i as usize >= u) {
        candle_core::bail!("pair_code_cross_entropy: row index {i} out of range for {u} rows");
    }
    if let Some(&y) = codes.iter().find(|&&y| y as usize >= k) {
        candle_core::bail!("pair_code_cross_entropy: code {y} out of range for {k} codes");
    }
    let fused = h.device().is_cpu() && [h, c, w].iter().all(|t| t.dtype() == candle_core::DType::F32);
    if fused {
        let op = PairCodeCrossEntropy {
            a: Arc::new(a.to_vec()),
            b: Arc::new(b.to_vec()),
            codes: Arc::new(codes.to_vec()),
            grads: Mutex::new(None),
        };
        return h.contiguous()?.apply_op3(&c.contiguous()?, &w.contiguous()?, op);
    }
    super::cross_entropy(&pair_code_logits(h, c, w, a, b)?, codes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{finite_diff, rel_err};
    use candle_core::{Device, Var};

    /// `U` items, `d` dims, `K` codes, `P` pairs (more than one group, a partial last block).
    fn setup(p: usize) -> (Var, Var, Var, Vec<u32>, Vec<u32>, Vec<u32>) {
        let dev = Device::Cpu;
        let (u, d, k) = (11usize, 6usize, 5usize);
        let val = |i: usize, m: usize, s: f32| ((i * m) % 29) as f32 / 9.0 - s;
        let h = Tensor::from_vec((0..u * d).map(|i| val(i, 37, 1.5)).collect(), (u, d), &dev).unwrap();
        let c = Tensor::from_vec((0..d).map(|i| val(i, 11, 1.0) * 0.5).collect(), d, &dev).unwrap();
        let w = Tensor::from_vec((0..k * (d + 1)).map(|i| val(i, 13, 1.4) * 0.7).collect(), (k, d + 1), &dev).unwrap();
        let a: Vec<u32> = (0..p as u32).map(|i| (i * 3) % u as u32).collect();
        let b: Vec<u32> = (0..p as u32).map(|i| (i * 7 + 2) % u as u32).collect();
        let codes: Vec<u32> = (0..p as u32).map(|i| (i * i + 1) % k as u32).collect();
        let var = |t: Tensor| Var::from_tensor(&t).unwrap();
        (var(h), var(c), var(w), a, b, codes)
    }

    #[test]
    fn loss_and_every_gradient_match_the_composite_head() {
        for p in [1, 300, GROUP + BLOCK + 13] {
            let (h, c, w, a, b, codes) = setup(p);
            let fused = pair_code_cross_entropy(h.as_tensor(), c.as_tensor(), w.as_tensor(), &a, &b, &codes).unwrap();
            let logits = pair_code_logits(h.as_tensor(), c.as_tensor(), w.as_tensor(), &a, &b).unwrap();
            let comp = crate::ops::cross_entropy(&logits, &codes).unwrap();
            let (lf, lc) = (fused.to_scalar::<f32>().unwrap(), comp.to_scalar::<f32>().unwrap());
            assert!((lf - lc).abs() <= 1e-5 * lc.abs().max(1.0), "{p} pairs: {lf} vs {lc}");
            let (gf, gc) = ((fused * 3.0).unwrap().backward().unwrap(), (comp * 3.0).unwrap().backward().unwrap());
            for v in [&h, &c, &w] {
                let (x, y) = (gf.get(v.as_tensor()).unwrap(), gc.get(v.as_tensor()).unwrap());
                assert!(rel_err(x, y) < 1e-4, "{p} pairs: {}", rel_err(x, y));
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let (h, c, w, a, b, codes) = setup(40);
        let loss = || pair_code_cross_entropy(h.as_tensor(), c.as_tensor(), w.as_tensor(), &a, &b, &codes).unwrap();
        let g = loss().backward().unwrap();
        let f = || loss().to_scalar::<f32>().unwrap() as f64;
        for (v, coords) in [(&h, [0usize, 9, 40]), (&c, [0, 3, 5]), (&w, [1, 6, 20])] {
            let gv = g.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for k in coords {
                let fd = finite_diff(v, k, &f);
                assert!((fd - gv[k] as f64).abs() < 2e-2 * (gv[k].abs() as f64).max(0.05), "{k}: {fd} vs {}", gv[k]);
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (h, c, w, a, b, codes) = setup(3 * GROUP + 77);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let l = pair_code_cross_entropy(h.as_tensor(), c.as_tensor(), w.as_tensor(), &a, &b, &codes).unwrap();
                let g = l.backward().unwrap();
                let mut out = vec![l.to_scalar::<f32>().unwrap()];
                for v in [&h, &c, &w] {
                    out.extend(g.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap());
                }
                out
            })
        };
        let one = run(1);
        assert!(run(3).iter().zip(&one).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    fn bad_shapes_indices_and_codes_are_errors() {
        let (h, c, w, a, b, codes) = setup(10);
        let e = |a: &[u32], codes: &[u32]| {
            pair_code_cross_entropy(h.as_tensor(), c.as_tensor(), w.as_tensor(), a, &b, codes).unwrap_err().to_string()
        };
        let mut bad = a.clone();
        bad[3] = 11;
        assert!(e(&bad, &codes).contains("row index 11"));
        let mut bad = codes.clone();
        bad[0] = 5;
        assert!(e(&a, &bad).contains("code 5"));
        assert!(e(&a[..9], &codes).contains("9 / 10 pairs"));
    }
}
