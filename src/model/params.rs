//! Seeded parameter store: a candle `VarBuilder` backend whose initial values come from one
//! ChaCha RNG, so the seed alone fixes every initial weight (candle's own CPU RNG is not
//! seedable per run). Parameters are kept by name in sorted order for the optimizer and for
//! safetensors checkpoints.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Named trainable parameters, created on first request with a seeded initialiser.
#[derive(Clone)]
pub struct ParamStore {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    vars: BTreeMap<String, Var>,
    rng: ChaCha8Rng,
}

impl ParamStore {
    pub fn new(seed: u64) -> Self {
        Self { inner: Arc::new(Mutex::new(Inner { vars: BTreeMap::new(), rng: ChaCha8Rng::seed_from_u64(seed) })) }
    }

    /// A `VarBuilder` whose `get_with_hints` creates parameters in this store.
    pub fn var_builder(&self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, device.clone())
    }

    /// All parameters, sorted by name.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let g = self.inner.lock().expect("param store poisoned");
        g.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    pub fn n_params(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Current values as plain tensors, copied (a `Var` is updated in place, so a detached
    /// view would change with training).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.vars().into_iter().map(|(k, v)| (k, v.as_tensor().copy().expect("copy of a parameter"))).collect()
    }

    /// Sets one parameter's value.
    pub fn set(&self, name: &str, value: &Tensor) -> Result<()> {
        let g = self.inner.lock().expect("param store poisoned");
        let var = g.vars.get(name).ok_or_else(|| candle_core::Error::Msg(format!("no parameter `{name}`")))?;
        var.set(value)
    }

    /// Overwrites parameters from `values` (as [`Self::tensors`] returns them; every stored
    /// parameter must be present), each moved to its parameter's device: a state read from a
    /// file onto the CPU restores a CUDA run.
    pub fn load(&self, values: &BTreeMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.vars() {
            let t = values.get(&name).ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks `{name}`")))?;
            var.set(&t.to_device(var.device())?)?;
        }
        Ok(())
    }
}

fn sample(rng: &mut ChaCha8Rng, n: usize, init: Init, fan: (usize, usize)) -> Vec<f32> {
    match init {
        Init::Const(v) => vec![v as f32; n],
        Init::Randn { mean, stdev } => {
            let d = Normal::new(mean, stdev).expect("valid normal");
            (0..n).map(|_| d.sample(rng) as f32).collect()
        }
        Init::Uniform { lo, up } => (0..n).map(|_| rng.random_range(lo..up) as f32).collect(),
        Init::Kaiming { .. } => {
            // PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            let b = 1.0 / (fan.0.max(1) as f64).sqrt();
            (0..n).map(|_| rng.random_range(-b..b) as f32).collect()
        }
    }
}

impl SimpleBackend for ParamStore {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut g = self.inner.lock().expect("param store poisoned");
        if let Some(v) = g.vars.get(name) {
            if v.shape() != &s {
                candle_core::bail!("parameter `{name}` requested with shape {s:?} but has {:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let dims = s.dims();
        let fan = match dims {
            [out, inp, ..] => (*inp, *out),
            [n] => (*n, *n),
            _ => (1, 1),
        };
        let values = sample(&mut g.rng, s.elem_count(), h, fan);
        let var = Var::from_tensor(&Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?)?;
        let t = var.as_tensor().clone();
        g.vars.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        let g = self.inner.lock().expect("param store poisoned");
        g.vars
            .get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| candle_core::Error::Msg(format!("no parameter `{name}`")))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.inner.lock().expect("param store poisoned").vars.contains_key(name)
    }
}

/// Xavier/Glorot normal: N(0, 2 / (fan_in + fan_out)) for a `[fan_out, fan_in]` weight.
pub fn xavier_normal(fan_out: usize, fan_in: usize) -> Init {
    Init::Randn { mean: 0.0, stdev: (2.0 / (fan_in + fan_out) as f64).sqrt() }
}

/// Xavier/Glorot uniform: U(-b, b), b = sqrt(6 / (fan_in + fan_out)).
pub fn xavier_uniform(fan_out: usize, fan_in: usize) -> Init {
    let b = (6.0 / (fan_in + fan_out) as f64).sqrt();
    Init::Uniform { lo: -b, up: b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_weights() {
        let mk = |seed| {
            let p = ParamStore::new(seed);
            let vb = p.var_builder(&Device::Cpu);
            vb.get_with_hints((3, 4), "a", Init::Randn { mean: 0.0, stdev: 0.02 }).unwrap();
            vb.get_with_hints(5, "b", Init::Const(1.0)).unwrap();
            p.tensors()["a"].flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        assert_eq!(mk(1), mk(1));
        assert_ne!(mk(1), mk(2));
    }
}
