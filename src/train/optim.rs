//! Adam (Kingma & Ba, 2015) with PyTorch's coupled L2 weight decay:
//! `g <- g + wd * p`, `m <- b1 m + (1 - b1) g`, `v <- b2 v + (1 - b2) g^2`,
//! `p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.
//! Parameters without a gradient in a step are left untouched (as PyTorch skips `grad=None`).
//! Each parameter has its own learning rate, so groups (e.g. the modality tables under
//! asynchronous training) can follow their own schedule.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

pub struct Adam {
    params: Vec<(Var, Tensor, Tensor)>, // (param, m, v)
    names: Vec<String>,
    lrs: Vec<f64>,
    step: i32,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Adam {
    /// Adam over named parameters, all at learning rate `lr`.
    pub fn new(vars: Vec<(String, Var)>, lr: f64, weight_decay: f64) -> Result<Self> {
        let mut params = Vec::with_capacity(vars.len());
        let mut names = Vec::with_capacity(vars.len());
        for (name, v) in vars {
            let z = v.zeros_like()?;
            params.push((v, z.clone(), z));
            names.push(name);
        }
        let lrs = vec![lr; names.len()];
        Ok(Self { params, names, lrs, step: 0, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay })
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

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step);
        let bc2 = 1.0 - self.beta2.powi(self.step);
        for ((var, m, v), &lr) in self.params.iter_mut().zip(&self.lrs) {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let g = if self.weight_decay > 0.0 { (g + (var.as_tensor() * self.weight_decay)?)? } else { g.clone() };
            *m = ((&*m * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
            *v = ((&*v * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((&*v / bc2)?.sqrt()? + self.eps)?;
            let update = ((&*m / bc1)? / denom)?;
            var.set(&(var.as_tensor() - (update * lr)?)?)?;
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
}
