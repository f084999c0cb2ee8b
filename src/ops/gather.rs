//! Row gather (an embedding lookup) with a fused backward.
//!
//! `gather_rows(x, ids)[r] = x[ids_r]` for `x` [N, d] and `ids` [R] -> [R, d]; backward
//! `dx[ids_r] += dy_r` in `r` order into one zeroed [N, d] buffer.
//!
//! [`gather_rows_pair`] serves two lookups of one table in a step (a model's input and the
//! correlation losses' items) with one gradient buffer: `dx = Σ_a + Σ_b`, each sum in its own
//! id order, the `b` sums kept per touched row. Two separate lookups give the same bits (each
//! fills its own zeroed [N, d] buffer and candle adds the two, and float addition is
//! commutative) at the cost of a second zero fill and a full-table addition per step.
//!
//! candle's `index_select` backward is an `index_add` into `zeros_like(x)`, and its CPU
//! `index_add` first copies that zero tensor into a new buffer: a zero fill and a full copy of
//! the table per lookup and step (on Sports' 18,357-item tables, 9% of a SASRec + CDL step
//! was that copy). The additions here run in the same order as candle's, so the gradient has
//! the same bits. Other devices and dtypes use `index_select`.

use super::{f32_slice, with_f32};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use std::collections::HashMap;

struct GatherRows {
    ids: Vec<u32>,
    /// `ids[..split]` accumulate straight into the gradient; `ids[split..]` into per-row sums
    /// that are added to it afterwards ([`gather_rows_pair`]).
    split: usize,
}

impl CustomOp1 for GatherRows {
    fn name(&self) -> &'static str {
        "gather-rows"
    }

    /// x [N, d] -> [R, d]
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let d = l.dims()[1];
        let mut y = Vec::with_capacity(self.ids.len() * d);
        for &i in self.ids.iter() {
            let r = i as usize * d;
            y.extend_from_slice(&x[r..r + d]);
        }
        Ok((CpuStorage::F32(y), Shape::from((self.ids.len(), d))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let (n, d) = x.dims2()?;
        let dx = with_f32(dy, self.name(), |g| {
            let mut dx = vec![0f32; n * d];
            let (rows_a, rows_b) = g.split_at(self.split * d);
            for (&i, gr) in self.ids[..self.split].iter().zip(rows_a.chunks_exact(d.max(1))) {
                let r = i as usize * d;
                dx[r..r + d].iter_mut().zip(gr).for_each(|(o, &v)| *o += v);
            }
            // Σ_b per distinct row (first-occurrence slots), then added to Σ_a.
            let mut slot: HashMap<u32, usize> = HashMap::new();
            let mut sums: Vec<f32> = Vec::new();
            let mut order: Vec<u32> = Vec::new();
            for (&i, gr) in self.ids[self.split..].iter().zip(rows_b.chunks_exact(d.max(1))) {
                let s = *slot.entry(i).or_insert_with(|| {
                    order.push(i);
                    sums.resize(sums.len() + d, 0.0);
                    order.len() - 1
                });
                sums[s * d..(s + 1) * d].iter_mut().zip(gr).for_each(|(o, &v)| *o += v);
            }
            for (&i, sb) in order.iter().zip(sums.chunks_exact(d.max(1))) {
                let r = i as usize * d;
                dx[r..r + d].iter_mut().zip(sb).for_each(|(o, &v)| *o += v);
            }
            dx
        })?;
        Ok(Some(Tensor::from_vec(dx, (n, d), x.device())?))
    }
}

/// `x[ids]`: `x` [N, d], `ids` (u32 or i64, any shape) -> [ids.elem_count(), d]. An id out of
/// range is an error.
pub fn gather_rows(x: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let flat = ids.flatten_all()?;
    if !fused(x) {
        return x.index_select(&flat, 0);
    }
    let ids = checked_ids(x, &flat)?;
    let split = ids.len();
    x.contiguous()?.apply_op1(GatherRows { ids, split })
}

/// `(x[a], x[b])` as one lookup: `x` [N, d], `a` and `b` (u32 or i64, any shape) ->
/// ([a.elem_count(), d], [b.elem_count(), d]); values and gradient equal to two
/// [`gather_rows`] calls to the bit, with one [N, d] gradient buffer (see the module docs).
pub fn gather_rows_pair(x: &Tensor, a: &Tensor, b: &Tensor) -> Result<(Tensor, Tensor)> {
    let (a, b) = (a.flatten_all()?, b.flatten_all()?);
    if !fused(x) {
        return Ok((x.index_select(&a, 0)?, x.index_select(&b, 0)?));
    }
    let mut ids = checked_ids(x, &a)?;
    let split = ids.len();
    ids.extend(checked_ids(x, &b)?);
    let rb = ids.len() - split;
    let both = x.contiguous()?.apply_op1(GatherRows { ids, split })?; // [Ra + Rb, d]
    Ok((both.narrow(0, 0, split)?, both.narrow(0, split, rb)?))
}

fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// The ids of `flat` as u32, each checked against `x`'s row count.
fn checked_ids(x: &Tensor, flat: &Tensor) -> Result<Vec<u32>> {
    let (n, _) = x.dims2()?;
    let ids: Vec<u32> = match flat.dtype() {
        DType::U32 => flat.to_vec1::<u32>()?,
        DType::I64 => flat.to_vec1::<i64>()?.into_iter().map(|i| u32::try_from(i).unwrap_or(u32::MAX)).collect(),
        dt => candle_core::bail!("gather_rows: ids must be u32 or i64, not {dt:?}"),
    };
    if let Some(&i) = ids.iter().find(|&&i| i as usize >= n) {
        candle_core::bail!("gather_rows: row index {i} out of range for {n} rows");
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// A [rows, d] tensor of scattered values (`k` picks the pattern).
    fn values(rows: usize, d: usize, k: usize) -> Tensor {
        let v: Vec<f32> = (0..rows * d).map(|i| ((i * k) % 997) as f32 / 211.0 - 2.3).collect();
        Tensor::from_vec(v, (rows, d), &Device::Cpu).unwrap()
    }

    #[test]
    fn matches_index_select_and_its_gradient_to_the_bit() {
        let dev = Device::Cpu;
        let (n, d) = (7, 5);
        let x = Var::from_tensor(&values(n, d, 7919)).unwrap();
        // repeated ids: their gradients add up in order
        let ids = Tensor::new(&[3u32, 0, 3, 6, 3, 1], &dev).unwrap();
        let w = values(6, d, 104_729);
        let fused = gather_rows(x.as_tensor(), &ids).unwrap();
        let comp = x.as_tensor().index_select(&ids, 0).unwrap();
        assert_eq!(fused.to_vec2::<f32>().unwrap(), comp.to_vec2::<f32>().unwrap());
        let g1 = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (comp * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert_eq!(a.to_vec2::<f32>().unwrap(), b.to_vec2::<f32>().unwrap());
        // rows never gathered get a zero gradient
        assert_eq!(a.get(2).unwrap().to_vec1::<f32>().unwrap(), vec![0.0; d]);
    }

    #[test]
    fn a_paired_lookup_matches_two_lookups_to_the_bit() {
        let dev = Device::Cpu;
        let (n, d) = (9, 4);
        let x = Var::from_tensor(&values(n, d, 7919)).unwrap();
        // rows in both, in a only (5, 7), in b only (2, 8), repeated in each
        let a = Tensor::new(&[[3u32, 0, 3], [5, 7, 0]], &dev).unwrap();
        let b = Tensor::new(&[0u32, 2, 3, 8, 2, 0, 3], &dev).unwrap();
        let (wa, wb) = (values(6, d, 104_729), values(7, d, 15_485_863));
        let loss = |ga: Tensor, gb: Tensor| {
            ((ga * &wa).unwrap().sum_all().unwrap() + (gb * &wb).unwrap().sum_all().unwrap()).unwrap()
        };
        let (pa, pb) = gather_rows_pair(x.as_tensor(), &a, &b).unwrap();
        let (sa, sb) = (gather_rows(x.as_tensor(), &a).unwrap(), gather_rows(x.as_tensor(), &b).unwrap());
        assert_eq!(pa.to_vec2::<f32>().unwrap(), sa.to_vec2::<f32>().unwrap());
        assert_eq!(pb.to_vec2::<f32>().unwrap(), sb.to_vec2::<f32>().unwrap());
        let g1 = loss(pa, pb).backward().unwrap();
        let g2 = loss(sa, sb).backward().unwrap();
        let bits = |g: &candle_core::backprop::GradStore| -> Vec<u32> {
            g.get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(&g1), bits(&g2));
        // a row in neither lookup gets a zero gradient; one in b only gets b's sum
        let g = g1.get(x.as_tensor()).unwrap();
        assert_eq!(g.get(1).unwrap().to_vec1::<f32>().unwrap(), vec![0.0; d]);
        assert_ne!(g.get(8).unwrap().to_vec1::<f32>().unwrap(), vec![0.0; d]);
    }

    #[test]
    fn takes_any_id_shape_and_rejects_bad_ids() {
        let dev = Device::Cpu;
        let x = Tensor::arange(0f32, 12.0, &dev).unwrap().reshape((4, 3)).unwrap();
        let ids = Tensor::new(&[[1i64, 3], [0, 0]], &dev).unwrap();
        let y = gather_rows(&x, &ids).unwrap();
        assert_eq!(y.dims(), &[4, 3]);
        assert_eq!(y.get(1).unwrap().to_vec1::<f32>().unwrap(), vec![9.0, 10.0, 11.0]);
        let e = gather_rows(&x, &Tensor::new(&[4u32], &dev).unwrap()).unwrap_err().to_string();
        assert!(e.contains("row index 4 out of range for 4 rows"), "{e}");
        assert!(gather_rows(&x, &Tensor::new(&[-1i64], &dev).unwrap()).is_err());
        assert!(gather_rows(&x, &Tensor::new(&[1f32], &dev).unwrap()).is_err());
    }
}
