//! Gathered row-pair ops of the correlation losses, with fused backward passes.
//!
//! For pairs `p = (a_p, b_p)` of rows of `x` [U, d]:
//! - `pair_dot(x, a, b)[p] = Σ_k x[a_p, k] x[b_p, k]` [P];
//!   backward `dx[a_p] += g_p x[b_p]`, `dx[b_p] += g_p x[a_p]`;
//! - `pair_diff_relu(h, c, a, b)[p] = max(h[a_p] - h[b_p] + c, 0)` [P, d] (the dissected head's
//!   first layer after its product with W_1 ran per item); backward with `m = dy ⊙ [y > 0]`:
//!   `dh[a_p] += m_p`, `dh[b_p] -= m_p`, `dc = Σ_p m_p`.
//!
//! The composite versions gather `x[a]` and `x[b]` as [P, d] tensors and scatter their
//! gradients back with two `index_add`s each, plus the passes of `relu`'s backward. Here the
//! forward runs over pair chunks in parallel, and the scatter runs in pair order on one thread
//! (P x d additions, deterministic for any thread count).

use super::{f32_slice, with_f32, CHUNK_ROWS};
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

/// The pair indices of an op, checked against the row count.
#[derive(Clone)]
struct Pairs {
    a: Arc<Vec<u32>>,
    b: Arc<Vec<u32>>,
}

impl Pairs {
    fn new(a: &Tensor, b: &Tensor, rows: usize, op: &str) -> Result<Self> {
        let (a, b) = (a.to_vec1::<u32>()?, b.to_vec1::<u32>()?);
        if a.len() != b.len() {
            candle_core::bail!("{op}: {} first and {} second indices", a.len(), b.len());
        }
        if let Some(&i) = a.iter().chain(&b).find(|&&i| i as usize >= rows) {
            candle_core::bail!("{op}: row index {i} out of range for {rows} rows");
        }
        Ok(Self { a: Arc::new(a), b: Arc::new(b) })
    }

    fn len(&self) -> usize {
        self.a.len()
    }

    /// `dx[a_p] += m_p` and `dx[b_p] -= m_p` for the rows `m_p` of `m` [P, d], in pair order.
    fn scatter_diff(&self, rows: usize, m: &[f32]) -> Vec<f32> {
        let d = m.len() / self.len().max(1);
        let mut dx = vec![0f32; rows * d];
        for ((&a, &b), mp) in self.a.iter().zip(self.b.iter()).zip(m.chunks(d)) {
            let (a, b) = (a as usize * d, b as usize * d);
            dx[a..a + d].iter_mut().zip(mp).for_each(|(o, &g)| *o += g);
            dx[b..b + d].iter_mut().zip(mp).for_each(|(o, &g)| *o -= g);
        }
        dx
    }
}

struct PairDot(Pairs);

impl CustomOp1 for PairDot {
    fn name(&self) -> &'static str {
        "pair-dot"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let d = l.dims()[1];
        let (a, b) = (&self.0.a, &self.0.b);
        let mut y = vec![0f32; self.0.len()];
        y.par_chunks_mut(CHUNK_ROWS * 16).enumerate().for_each(|(c, yc)| {
            for (k, o) in yc.iter_mut().enumerate() {
                let p = c * CHUNK_ROWS * 16 + k;
                let (ra, rb) = (a[p] as usize * d, b[p] as usize * d);
                *o = x[ra..ra + d].iter().zip(&x[rb..rb + d]).map(|(u, v)| u * v).sum();
            }
        });
        Ok((CpuStorage::F32(y), Shape::from(self.0.len())))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let (rows, d) = x.dims2()?;
        let dx = with_f32(x, self.name(), |x| {
            with_f32(dy, self.name(), |g| {
                let mut dx = vec![0f32; rows * d];
                for ((&a, &b), &gp) in self.0.a.iter().zip(self.0.b.iter()).zip(g) {
                    let (ra, rb) = (a as usize * d, b as usize * d);
                    for k in 0..d {
                        dx[ra + k] += gp * x[rb + k];
                        dx[rb + k] += gp * x[ra + k];
                    }
                }
                dx
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, (rows, d), x.device())?))
    }
}

struct PairDiffRelu(Pairs);

impl CustomOp2 for PairDiffRelu {
    fn name(&self) -> &'static str {
        "pair-diff-relu"
    }

    fn cpu_fwd(&self, sh: &CpuStorage, lh: &Layout, sc: &CpuStorage, lc: &Layout) -> Result<(CpuStorage, Shape)> {
        let (h, c) = (f32_slice(sh, lh, self.name())?, f32_slice(sc, lc, self.name())?);
        let d = c.len();
        let (a, b) = (&self.0.a, &self.0.b);
        let mut y = vec![0f32; self.0.len() * d];
        y.par_chunks_mut(d * CHUNK_ROWS).enumerate().for_each(|(chunk, yc)| {
            for (k, yr) in yc.chunks_mut(d).enumerate() {
                let p = chunk * CHUNK_ROWS + k;
                let (ra, rb) = (a[p] as usize * d, b[p] as usize * d);
                for (((o, &u), &v), &cv) in yr.iter_mut().zip(&h[ra..ra + d]).zip(&h[rb..rb + d]).zip(c) {
                    *o = (u - v + cv).max(0.0);
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((self.0.len(), d))))
    }

    fn bwd(&self, h: &Tensor, c: &Tensor, y: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (rows, d) = h.dims2()?;
        let (dh, dc) = with_f32(y, self.name(), |y| {
            with_f32(dy, self.name(), |g| {
                let masked: Vec<f32> = y.iter().zip(g).map(|(&yv, &gv)| if yv > 0.0 { gv } else { 0.0 }).collect();
                let dh = self.0.scatter_diff(rows, &masked);
                (dh, super::bias::column_sums(&masked, d))
            })
        })??;
        Ok((Some(Tensor::from_vec(dh, (rows, d), h.device())?), Some(Tensor::from_vec(dc, c.shape(), c.device())?)))
    }
}

fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}

/// `Σ_k x[a_p, k] x[b_p, k]` for every pair: `x` [U, d], `a`, `b` [P] (u32) -> [P].
pub fn pair_dot(x: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (rows, _) = x.dims2()?;
    if fused(x) {
        return x.contiguous()?.apply_op1(PairDot(Pairs::new(a, b, rows, "pair_dot")?));
    }
    (x.index_select(a, 0)? * x.index_select(b, 0)?)?.sum(1)
}

/// `max(h[a_p] - h[b_p] + c, 0)` for every pair: `h` [U, d], `c` [d], `a`, `b` [P] -> [P, d].
pub fn pair_diff_relu(h: &Tensor, c: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let (rows, d) = h.dims2()?;
    if c.dims() != [d] {
        candle_core::bail!("pair_diff_relu: bias {:?} for rows of {d}", c.dims());
    }
    if fused(h) && c.dtype() == h.dtype() {
        let op = PairDiffRelu(Pairs::new(a, b, rows, "pair_diff_relu")?);
        return h.contiguous()?.apply_op2(&c.contiguous()?, op);
    }
    (h.index_select(a, 0)? - h.index_select(b, 0)?)?.broadcast_add(c)?.relu()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::{finite_diff, rel_err};
    use candle_core::{Device, Var};

    fn setup() -> (Var, Var, Tensor, Tensor, Tensor) {
        let dev = Device::Cpu;
        let (u, d, p) = (7usize, 5usize, 300usize);
        let xv: Vec<f32> = (0..u * d).map(|i| ((i * 37) % 23) as f32 / 7.0 - 1.5).collect();
        let x = Var::from_tensor(&Tensor::from_vec(xv, (u, d), &dev).unwrap()).unwrap();
        // No zero bias: pairs with a = b would sit exactly at relu's kink, where candle's relu
        // passes the gradient (x >= 0) and ours, like PyTorch's, does not (y > 0).
        let c = Var::from_tensor(&Tensor::new(&[0.3f32, -0.2, 0.1, 0.5, -1.0], &dev).unwrap()).unwrap();
        let a: Vec<u32> = (0..p as u32).map(|i| (i * 3) % u as u32).collect();
        let b: Vec<u32> = (0..p as u32).map(|i| (i * 5 + 1) % u as u32).collect();
        let w = Tensor::from_vec((0..p * d).map(|i| ((i % 13) as f32 - 6.0) / 5.0).collect(), (p, d), &dev).unwrap();
        (x, c, Tensor::new(a, &dev).unwrap(), Tensor::new(b, &dev).unwrap(), w)
    }

    #[test]
    fn pair_dot_matches_composite_and_finite_differences() {
        let (x, _, a, b, w) = setup();
        let w = w.narrow(1, 0, 1).unwrap().squeeze(1).unwrap(); // [P]
        let fused = pair_dot(x.as_tensor(), &a, &b).unwrap();
        let comp = (x.index_select(&a, 0).unwrap() * x.index_select(&b, 0).unwrap()).unwrap().sum(1).unwrap();
        assert!(rel_err(&fused, &comp) < 1e-6);
        let loss = |t: &Tensor| (t * &w).unwrap().sum_all().unwrap();
        let g1 = loss(&fused).backward().unwrap();
        let g2 = loss(&comp).backward().unwrap();
        let (d1, d2) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert!(rel_err(d1, d2) < 1e-5, "{}", rel_err(d1, d2));
        let d1 = d1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        for k in [0, 7, 19, 34] {
            let fd = finite_diff(&x, k, &|| {
                loss(&pair_dot(x.as_tensor(), &a, &b).unwrap()).to_scalar::<f32>().unwrap() as f64
            });
            assert!((d1[k] as f64 - fd).abs() <= 1e-3 * fd.abs().max(1.0), "{k}: {} vs {fd}", d1[k]);
        }
    }

    #[test]
    fn pair_diff_relu_matches_composite() {
        let (x, c, a, b, w) = setup();
        let fused = pair_diff_relu(x.as_tensor(), c.as_tensor(), &a, &b).unwrap();
        let comp = (x.index_select(&a, 0).unwrap() - x.index_select(&b, 0).unwrap())
            .unwrap()
            .broadcast_add(c.as_tensor())
            .unwrap()
            .relu()
            .unwrap();
        assert_eq!(rel_err(&fused, &comp), 0.0);
        let g1 = (&fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&comp * &w).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &c] {
            let (d1, d2) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            assert!(rel_err(d1, d2) < 1e-5, "{}", rel_err(d1, d2));
        }
    }

    #[test]
    fn rejects_out_of_range_pairs() {
        let (x, c, a, _, _) = setup();
        let bad = Tensor::new(vec![99u32; a.dim(0).unwrap()], &Device::Cpu).unwrap();
        let e = pair_diff_relu(x.as_tensor(), c.as_tensor(), &a, &bad).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
    }
}
