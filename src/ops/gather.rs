//! Row gather (an embedding lookup) with a fused backward.
//!
//! `gather_rows(x, ids)[r] = x[ids_r]` for `x` [N, d] and `ids` [R] -> [R, d]; backward
//! `dx[ids_r] += dy_r` in `r` order into one zeroed [N, d] buffer.
//!
//! candle's `index_select` backward is an `index_add` into `zeros_like(x)`, and its CPU
//! `index_add` first copies that zero tensor into a new buffer: a zero fill and a full copy of
//! the table per lookup and step (on Sports' 18,357-item tables, 9% of a SASRec + CDL step
//! was that copy). The additions here run in the same order as candle's, so the gradient has
//! the same bits. Other devices and dtypes use `index_select`.

use super::{f32_slice, with_f32};
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};

struct GatherRows {
    ids: Vec<u32>,
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
            for (&i, gr) in self.ids.iter().zip(g.chunks_exact(d.max(1))) {
                let r = i as usize * d;
                dx[r..r + d].iter_mut().zip(gr).for_each(|(o, &v)| *o += v);
            }
            dx
        })?;
        Ok(Some(Tensor::from_vec(dx, (n, d), x.device())?))
    }
}

/// `x[ids]`: `x` [N, d], `ids` (u32 or i64, any shape) -> [ids.elem_count(), d]. An id out of
/// range is an error.
pub fn gather_rows(x: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (n, _) = x.dims2()?;
    let flat = ids.flatten_all()?;
    if !(x.device().is_cpu() && x.dtype() == DType::F32) {
        return x.index_select(&flat, 0);
    }
    let ids: Vec<u32> = match flat.dtype() {
        DType::U32 => flat.to_vec1::<u32>()?,
        DType::I64 => flat.to_vec1::<i64>()?.into_iter().map(|i| u32::try_from(i).unwrap_or(u32::MAX)).collect(),
        dt => candle_core::bail!("gather_rows: ids must be u32 or i64, not {dt:?}"),
    };
    if let Some(&i) = ids.iter().find(|&&i| i as usize >= n) {
        candle_core::bail!("gather_rows: row index {i} out of range for {n} rows");
    }
    x.contiguous()?.apply_op1(GatherRows { ids })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_index_select_and_its_gradient_to_the_bit() {
        let dev = Device::Cpu;
        let (n, d) = (7, 5);
        let vals: Vec<f32> = (0..n * d).map(|i| ((i * 7919) % 1000) as f32 / 300.0 - 1.6).collect();
        let x = Var::from_vec(vals, (n, d), &dev).unwrap();
        // repeated ids: their gradients add up in order
        let ids = Tensor::new(&[3u32, 0, 3, 6, 3, 1], &dev).unwrap();
        let w: Vec<f32> = (0..6 * d).map(|i| ((i * 104_729) % 997) as f32 / 211.0 - 2.3).collect();
        let w = Tensor::from_vec(w, (6, d), &dev).unwrap();
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
