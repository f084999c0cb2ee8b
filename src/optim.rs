//! Adam (Kingma & Ba, 2015) with PyTorch's coupled L2 weight decay:
//! `g <- g + wd * p`, `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
//! `p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
//! Parameters without a gradient in a step are left untouched (as PyTorch skips `grad=None`).
//! Each parameter has its own learning rate, so groups (e.g. the modality tables under
//! asynchronous training) can follow their own schedule.
//!
//! On CPU (f32) each parameter is updated in place by one fused pass over (p, g, m, v)
//! ([`AdamKernel`]); elsewhere by composite candle ops with the same formula.

use crate::ops::CHUNK_ELEMS as CHUNK;
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp2, Layout, Result, Tensor, Var};
use rayon::prelude::*;
use std::sync::Mutex;

/// First and second moment estimates of one parameter.
enum Moments {
    /// CPU f32 parameters: plain buffers updated by [`AdamKernel`].
    Cpu { m: Vec<f32>, v: Vec<f32> },
    /// Other devices and dtypes: tensors updated by composite ops.
    Tensor { m: Tensor, v: Tensor },
}

pub struct Adam {
    params: Vec<(Var, Moments)>,
    names: Vec<String>,
    lrs: Vec<f64>,
    step: i32,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// The scalars of one fused update.
#[derive(Clone, Copy)]
struct Scalars {
    lr: f32,
    beta1: f32,
    beta2: f32,
    /// `1 - beta1` and `1 - beta2`, computed in f64 (in f32, `1 - 0.999` loses four digits).
    one_minus_b1: f32,
    one_minus_b2: f32,
    eps: f32,
    weight_decay: f32,
    bc1: f32,
    bc2: f32,
}

/// The fused update of one parameter (in place) from its gradient; see the module formula.
struct AdamKernel<'a> {
    m: Mutex<&'a mut [f32]>,
    v: Mutex<&'a mut [f32]>,
    k: Scalars,
}

crate::ops::simd_kernel! {
    /// One Adam update of parameters `p` with gradients `g` and moments `m`, `v`.
    fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: Scalars) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = if k.weight_decay > 0.0 { g + k.weight_decay * *p } else { g };
            *m = k.beta1 * *m + k.one_minus_b1 * g;
            *v = k.beta2 * *v + k.one_minus_b2 * g * g;
            *p -= k.lr * ((*m / k.bc1) / ((*v / k.bc2).sqrt() + k.eps));
        }
    }
}

impl InplaceOp2 for AdamKernel<'_> {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn cpu_fwd(&self, sp: &mut CpuStorage, lp: &Layout, sg: &CpuStorage, lg: &Layout) -> Result<()> {
        let g = crate::ops::f32_slice(sg, lg, self.name())?;
        let CpuStorage::F32(p) = sp else { candle_core::bail!("adam: only f32 parameters are fused") };
        let Some((a, b)) = lp.contiguous_offsets() else { candle_core::bail!("adam: parameter must be contiguous") };
        let p = &mut p[a..b];
        let (mut m, mut v) = (self.m.lock().expect("adam moments"), self.v.lock().expect("adam moments"));
        if p.len() != g.len() || m.len() != g.len() || v.len() != g.len() {
            candle_core::bail!("adam: parameter, gradient and moments differ in size");
        }
        let k = self.k;
        let moments = m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK));
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(moments)
            .for_each(|((pc, gc), (mc, vc))| adam_update(pc, gc, mc, vc, k));
        Ok(())
    }
}

impl Adam {
    /// Adam over named parameters, all at learning rate `lr`.
    pub fn new(vars: Vec<(String, Var)>, lr: f64, weight_decay: f64) -> Result<Self> {
        let mut params = Vec::with_capacity(vars.len());
        let mut names = Vec::with_capacity(vars.len());
        for (name, var) in vars {
            let moments = if var.device().is_cpu() && var.dtype() == DType::F32 && var.is_contiguous() {
                let n = var.elem_count();
                Moments::Cpu { m: vec![0.0; n], v: vec![0.0; n] }
            } else {
                let z = var.zeros_like()?;
                Moments::Tensor { m: z.clone(), v: z }
            };
            params.push((var, moments));
            names.push(name);
        }
        let lrs = vec![lr; names.len()];
        Ok(Self { params, names, lrs, step: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay })
    }
    /// Adam that updates every parameter with composite candle ops, also on CPU: the reference
    /// the fused kernel is tested and benchmarked against.
    pub fn new_composite(vars: Vec<(String, Var)>, lr: f64, weight_decay: f64) -> Result<Self> {
        let mut adam = Self::new(vars, lr, weight_decay)?;
        for (var, moments) in &mut adam.params {
            let z = var.zeros_like()?;
            *moments = Moments::Tensor { m: z.clone(), v: z };
        }
        Ok(adam)
    }

    /// Sets the learning rate of every parameter whose name starts with `prefix`; returns how
    /// many matched.
    pub fn set_lr(&mut self, prefix: &str, lr: f64) -> usize {
        let mut n = 0;
        for (name, l) in self.names.iter().zip(self.lrs.iter_mut()) {
            if name.starts_with(prefix) {
                *l = lr;
                n += 1;
            }
        }
        n
    }

    /// Steps taken so far (the bias corrections' exponent).
    pub fn steps_taken(&self) -> i32 {
        self.step
    }

    /// Each parameter's first and second moments, copied, by name.
    pub fn moments(&self) -> Result<Vec<(String, Tensor, Tensor)>> {
        self.names
            .iter()
            .zip(&self.params)
            .map(|(name, (var, moments))| {
                let (m, v) = match moments {
                    Moments::Cpu { m, v } => (
                        Tensor::from_slice(m, var.shape(), var.device())?,
                        Tensor::from_slice(v, var.shape(), var.device())?,
                    ),
                    Moments::Tensor { m, v } => (m.copy()?, v.copy()?),
                };
                Ok((name.clone(), m, v))
            })
            .collect()
    }

    /// Continues from a saved state: the step count and every parameter's moments (by name;
    /// all must be present with their parameter's shape).
    pub fn restore(&mut self, step: i32, moments: &std::collections::BTreeMap<String, (Tensor, Tensor)>) -> Result<()> {
        for (name, (var, slot)) in self.names.iter().zip(self.params.iter_mut()) {
            let Some((m, v)) = moments.get(name) else { candle_core::bail!("adam: saved state lacks `{name}`") };
            if m.shape() != var.shape() || v.shape() != var.shape() {
                candle_core::bail!(
                    "adam: saved moments of `{name}` are {:?}, the parameter {:?}",
                    m.shape(),
                    var.shape()
                );
            }
            match slot {
                Moments::Cpu { m: mc, v: vc } => {
                    *mc = m.flatten_all()?.to_vec1::<f32>()?;
                    *vc = v.flatten_all()?.to_vec1::<f32>()?;
                }
                Moments::Tensor { m: mt, v: vt } => {
                    *mt = m.to_device(var.device())?.to_dtype(var.dtype())?;
                    *vt = v.to_device(var.device())?.to_dtype(var.dtype())?;
                }
            }
        }
        self.step = step;
        Ok(())
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step);
        let bc2 = 1.0 - self.beta2.powi(self.step);
        let base = Scalars {
            lr: 0.0,
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            one_minus_b1: (1.0 - self.beta1) as f32,
            one_minus_b2: (1.0 - self.beta2) as f32,
            eps: self.eps as f32,
            weight_decay: self.weight_decay as f32,
            bc1: bc1 as f32,
            bc2: bc2 as f32,
        };
        for ((var, moments), &lr) in self.params.iter_mut().zip(&self.lrs) {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            match moments {
                Moments::Cpu { m, v } => {
                    let k = Scalars { lr: lr as f32, ..base };
                    let kernel = AdamKernel { m: Mutex::new(m.as_mut_slice()), v: Mutex::new(v.as_mut_slice()), k };
                    var.as_tensor().inplace_op2(&g.contiguous()?, &kernel)?;
                }
                Moments::Tensor { m, v } => {
                    let g =
                        if self.weight_decay > 0.0 { (g + (var.as_tensor() * self.weight_decay)?)? } else { g.clone() };
                    *m = ((&*m * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
                    *v = ((&*v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
                    let denom = ((&*v / bc2)?.sqrt()? + self.eps)?;
                    let update = ((&*m / bc1)? / denom)?;
                    var.set(&(var.as_tensor() - (update * lr)?)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adam_matches_hand_computed_first_steps() {
        // p = 1, loss = p^2 -> g = 2p. Step 1: m = 0.2, v = 0.004 (times 1-b), mhat = 2, vhat = 4,
        // update = lr * 2 / (2 + eps) = lr.
        let p = Var::new(&[1f32], &Device::Cpu).unwrap();
        let mut opt = Adam::new(vec![("p".into(), p.clone())], 0.1, 0.0).unwrap();
        let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let v = p.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((v - 0.9).abs() < 1e-6, "{v}");
        // Weight decay adds wd * p to the gradient: g = 2*0.9 + 1*0.9 = 2.7.
        let mut opt = Adam::new(vec![("p".into(), p.clone())], 0.1, 1.0).unwrap();
        let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let v2 = p.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((v2 - 0.8).abs() < 1e-6, "{v2}");
        // A per-group learning rate: lr 0 freezes the matching parameters.
        let mut opt = Adam::new(vec![("group.p".into(), p.clone())], 0.1, 0.0).unwrap();
        assert_eq!(opt.set_lr("group.", 0.0), 1);
        let loss = p.as_tensor().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        assert_eq!(p.as_tensor().to_vec1::<f32>().unwrap()[0], v2);
    }

    #[test]
    fn fused_update_matches_composite_ops() {
        let dev = Device::Cpu;
        let init: Vec<f32> = (0..40_000).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let (pa, pb) = (Var::new(init.as_slice(), &dev).unwrap(), Var::new(init.as_slice(), &dev).unwrap());
        let mut fused = Adam::new(vec![("p".into(), pa.clone())], 0.01, 0.1).unwrap();
        let mut comp = Adam::new_composite(vec![("p".into(), pb.clone())], 0.01, 0.1).unwrap();
        assert!(matches!(fused.params[0].1, Moments::Cpu { .. }));
        assert!(matches!(comp.params[0].1, Moments::Tensor { .. }));
        for _ in 0..5 {
            for (opt, p) in [(&mut fused, &pa), (&mut comp, &pb)] {
                let loss = (p.as_tensor().sqr().unwrap() * p.as_tensor().sin().unwrap()).unwrap().sum_all().unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
            }
        }
        let (a, b) = (pa.as_tensor().to_vec1::<f32>().unwrap(), pb.as_tensor().to_vec1::<f32>().unwrap());
        assert!(a.iter().zip(&init).any(|(x, y)| (x - y).abs() > 1e-3), "parameters moved");
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst < 1e-6, "fused vs composite: {worst}");
    }

    #[test]
    fn restored_state_continues_exactly() {
        let dev = Device::Cpu;
        let init: Vec<f32> = (0..300).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |p: &Var, opt: &mut Adam, steps: usize| {
            for _ in 0..steps {
                let loss = (p.as_tensor().sqr().unwrap() * p.as_tensor().cos().unwrap()).unwrap().sum_all().unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
            }
        };
        for composite in [false, true] {
            let make = |p: &Var| {
                let vars = vec![("p".to_string(), p.clone())];
                if composite { Adam::new_composite(vars, 0.05, 0.01) } else { Adam::new(vars, 0.05, 0.01) }.unwrap()
            };
            let (a, b) = (Var::new(init.as_slice(), &dev).unwrap(), Var::new(init.as_slice(), &dev).unwrap());
            let mut straight = make(&a);
            run(&a, &mut straight, 6);
            let mut first = make(&b);
            run(&b, &mut first, 3);
            let saved: std::collections::BTreeMap<_, _> =
                first.moments().unwrap().into_iter().map(|(k, m, v)| (k, (m, v))).collect();
            let mut second = make(&b);
            second.restore(first.steps_taken(), &saved).unwrap();
            run(&b, &mut second, 3);
            let (x, y) = (a.as_tensor().to_vec1::<f32>().unwrap(), b.as_tensor().to_vec1::<f32>().unwrap());
            assert_eq!(x, y, "composite = {composite}");
        }
        let p = Var::new(&[1f32, 2.0], &dev).unwrap();
        let mut opt = Adam::new(vec![("p".into(), p)], 0.1, 0.0).unwrap();
        let wrong = std::collections::BTreeMap::from([(
            "p".to_string(),
            (Tensor::zeros(3, DType::F32, &dev).unwrap(), Tensor::zeros(3, DType::F32, &dev).unwrap()),
        )]);
        assert!(opt.restore(1, &wrong).is_err());
        assert!(opt.restore(1, &Default::default()).is_err());
    }
}
