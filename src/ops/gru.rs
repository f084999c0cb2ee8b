//! A GRU layer's recurrence over whole sequences, with backpropagation through time, fused.
//!
//! Inputs: `gi` [T, B, 3H] (the input projections `x_t W_ihᵀ`, gate order r, z, n, as
//! PyTorch), `w_hh` [3H, H] and `resets` [T, B]; no biases; `h_0 = 0`, and the state of row `b`
//! restarts from 0 at every step where `resets[t, b]` is set (a new sequence starts there when
//! several share a row). Per step, with `gh = h W_hhᵀ` (`h` zeroed where reset):
//! `r = σ(gi_r + gh_r)`, `z = σ(gi_z + gh_z)`, `n = tanh(gi_n + r ⊙ gh_n)`,
//! `h' = (1 - z) ⊙ n + z ⊙ h`. Output: every `h_t`, [T, B, H].
//!
//! Backward, from `t = T - 1` down to 0 with `dh = dh_carry + dhs_t`:
//! `dn = dh (1 - z)`, `dz = dh (h - n)`, `da_n = dn (1 - n²)`, `dgh_n = da_n r`,
//! `dr = da_n gh_n`, `da_z = dz z (1 - z)`, `da_r = dr r (1 - r)`;
//! `dgi_t = [da_r, da_z, da_n]`, `dgh_t = [da_r, da_z, dgh_n]`,
//! `dh_carry = dh z + dgh_t W_hh` (0 where step `t` resets: `h_{t-1}` was not used);
//! finally `dW_hh = Σ_t dgh_tᵀ h_{t-1}` as one matmul.
//! The gates are recomputed from the saved outputs (`h_{t-1}` is output `t - 1`), with one
//! matmul for all `gh`. candle's composite version makes ~15 graph nodes per step, and the
//! backward of each step's slice of `gi` is a full-size zero-padded tensor.

use super::fastmath::{sigmoid, tanh};
use super::{f32_slice, with_f32};
use candle_core::{CpuStorage, CustomOp2, Device, Layout, Result, Shape, Tensor};
use std::sync::Arc;

struct GruSequence {
    /// [T * B], step-major.
    resets: Arc<Vec<bool>>,
}

/// `a` [m, k] (row-major slice) times `b` [k, n] -> [m, n], through candle's gemm.
fn matmul(a: &[f32], m: usize, k: usize, b: &Tensor) -> Result<Vec<f32>> {
    Tensor::from_slice(a, (m, k), &Device::Cpu)?.matmul(b)?.flatten_all()?.to_vec1()
}

/// Gates of one (batch row, unit): `(r, z, n)` from the input and hidden projections.
#[inline(always)]
fn gates(gi: &[f32], gh: &[f32], hs: usize, j: usize) -> (f32, f32, f32) {
    let r = sigmoid(gi[j] + gh[j]);
    let z = sigmoid(gi[hs + j] + gh[hs + j]);
    let n = tanh(gi[2 * hs + j] + r * gh[2 * hs + j]);
    (r, z, n)
}

impl CustomOp2 for GruSequence {
    fn name(&self) -> &'static str {
        "gru-sequence"
    }

    fn cpu_fwd(&self, sgi: &CpuStorage, lgi: &Layout, sw: &CpuStorage, lw: &Layout) -> Result<(CpuStorage, Shape)> {
        let (t, b, h3) = lgi.shape().dims3()?;
        let hs = h3 / 3;
        let gi = f32_slice(sgi, lgi, self.name())?;
        let w_t = Tensor::from_slice(f32_slice(sw, lw, self.name())?, (h3, hs), &Device::Cpu)?.t()?.contiguous()?;
        let mut out = vec![0f32; t * b * hs];
        let mut h = vec![0f32; b * hs];
        for step in 0..t {
            for row in 0..b {
                if self.resets[step * b + row] {
                    h[row * hs..(row + 1) * hs].fill(0.0);
                }
            }
            let gh = matmul(&h, b, hs, &w_t)?; // [B, 3H]
            let gi_t = &gi[step * b * h3..(step + 1) * b * h3];
            let out_t = &mut out[step * b * hs..(step + 1) * b * hs];
            for row in 0..b {
                let (gi_r, gh_r) = (&gi_t[row * h3..(row + 1) * h3], &gh[row * h3..(row + 1) * h3]);
                for j in 0..hs {
                    let (_, z, n) = gates(gi_r, gh_r, hs, j);
                    out_t[row * hs + j] = (1.0 - z) * n + z * h[row * hs + j];
                }
            }
            h.copy_from_slice(out_t);
        }
        Ok((CpuStorage::F32(out), Shape::from((t, b, hs))))
    }

    fn bwd(&self, gi: &Tensor, w: &Tensor, hs_out: &Tensor, dhs: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (t, b, h3) = gi.dims3()?;
        let hs = h3 / 3;
        let w = w.contiguous()?; // [3H, H]
                                 // h_{t-1} for every step: zeros, then the outputs of steps 0..T-1, zeroed where reset.
        let zeros = Tensor::zeros((1, b, hs), gi.dtype(), gi.device())?;
        let h_prev = if t > 1 { Tensor::cat(&[&zeros, &hs_out.narrow(0, 0, t - 1)?], 0)? } else { zeros };
        let keep: Vec<f32> = self.resets.iter().map(|&r| if r { 0.0 } else { 1.0 }).collect();
        let keep = Tensor::from_vec(keep, (t * b, 1), gi.device())?;
        let h_prev = h_prev.reshape((t * b, hs))?.broadcast_mul(&keep)?;
        let gh_all = h_prev.matmul(&w.t()?)?; // [T·B, 3H]
        let (dgi, dgh) = with_f32(gi, self.name(), |gi| {
            with_f32(&gh_all, self.name(), |gh_all| {
                with_f32(&h_prev, self.name(), |h_prev| {
                    with_f32(dhs, self.name(), |dhs| -> Result<(Vec<f32>, Vec<f32>)> {
                        let mut dgi = vec![0f32; t * b * h3];
                        let mut dgh = vec![0f32; t * b * h3];
                        let mut carry = vec![0f32; b * hs];
                        for step in (0..t).rev() {
                            let at = |width: usize| (step * b * width, (step + 1) * b * width);
                            let (g0, g1) = at(h3);
                            let (h0, h1) = at(hs);
                            let (gi_t, gh_t, hp_t, dh_t) =
                                (&gi[g0..g1], &gh_all[g0..g1], &h_prev[h0..h1], &dhs[h0..h1]);
                            let (dgi_t, dgh_t) = (&mut dgi[g0..g1], &mut dgh[g0..g1]);
                            for row in 0..b {
                                let o = row * h3;
                                let (gi_r, gh_r) = (&gi_t[o..o + h3], &gh_t[o..o + h3]);
                                for j in 0..hs {
                                    let (r, z, n) = gates(gi_r, gh_r, hs, j);
                                    let k = row * hs + j;
                                    let dh = carry[k] + dh_t[k];
                                    let dn = dh * (1.0 - z);
                                    let dz = dh * (hp_t[k] - n);
                                    let da_n = dn * (1.0 - n * n);
                                    let da_z = dz * z * (1.0 - z);
                                    let da_r = da_n * gh_r[2 * hs + j] * r * (1.0 - r);
                                    dgi_t[o + j] = da_r;
                                    dgi_t[o + hs + j] = da_z;
                                    dgi_t[o + 2 * hs + j] = da_n;
                                    dgh_t[o + j] = da_r;
                                    dgh_t[o + hs + j] = da_z;
                                    dgh_t[o + 2 * hs + j] = da_n * r;
                                    carry[k] = dh * z;
                                }
                            }
                            if step > 0 {
                                let back = matmul(dgh_t, b, h3, &w)?; // [B, H]
                                carry.iter_mut().zip(&back).for_each(|(c, v)| *c += v);
                                for row in 0..b {
                                    if self.resets[step * b + row] {
                                        carry[row * hs..(row + 1) * hs].fill(0.0);
                                    }
                                }
                            }
                        }
                        Ok((dgi, dgh))
                    })
                })
            })
        })?????;
        let dev = gi.device();
        let dgh = Tensor::from_vec(dgh, (t * b, h3), dev)?;
        let dw = dgh.t()?.matmul(&h_prev)?; // [3H, H]
        Ok((Some(Tensor::from_vec(dgi, (t, b, h3), dev)?), Some(dw)))
    }
}

/// Hidden states [T, B, H] of a bias-free GRU from input projections `gi` [T, B, 3H], the
/// recurrent weight `w_hh` [3H, H] and the state resets `resets` [T * B] (step-major),
/// starting from zeros (CPU f32; see [`crate::model`]'s GRU4Rec for the composite version used
/// elsewhere).
pub fn gru_sequence(gi: &Tensor, w_hh: &Tensor, resets: &[bool]) -> Result<Tensor> {
    let (t, b, h3) = gi.dims3()?;
    let (w3, hs) = w_hh.dims2()?;
    if h3 != w3 || h3 != 3 * hs || resets.len() != t * b {
        candle_core::bail!(
            "gru_sequence: gi {:?}, w_hh {:?} and {} resets do not match",
            gi.dims(),
            w_hh.dims(),
            resets.len()
        );
    }
    gi.contiguous()?.apply_op2(&w_hh.contiguous()?, GruSequence { resets: Arc::new(resets.to_vec()) })
}
