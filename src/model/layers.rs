//! Building blocks shared by the backbones: seeded dropout, a differentiable layer norm,
//! linear and embedding constructors with explicit initialisers.

use candle_core::{Result, Tensor};
use candle_nn::{Embedding, Init, Module, VarBuilder};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Per-forward state: training flag and the RNG that draws dropout masks.
pub struct Ctx {
    pub train: bool,
    rng: ChaCha8Rng,
}

impl Ctx {
    /// Training context whose dropout masks are fixed by `seed`.
    pub fn train(seed: u64) -> Self {
        Self { train: true, rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// Inference context: dropout is the identity.
    pub fn eval() -> Self {
        Self { train: false, rng: ChaCha8Rng::seed_from_u64(0) }
    }

    /// Inverted dropout: `x * m / (1 - p)`, `m ~ Bernoulli(1 - p)`; identity in eval mode.
    pub fn dropout(&mut self, x: &Tensor, p: f64) -> Result<Tensor> {
        if !self.train || p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - p;
        // Keep an element when a uniform 32-bit draw falls below keep * 2^32.
        let threshold = (keep * 4_294_967_296.0) as u64;
        let mask: Vec<bool> = (0..x.elem_count()).map(|_| u64::from(self.rng.next_u32()) < threshold).collect();
        crate::ops::dropout(x, mask, keep)
    }
}

/// Layer normalisation over the last dimension:
/// `y = (x - mean) / sqrt(var + eps) * weight + bias` (biased variance, as PyTorch); fused
/// kernel in [`crate::ops::layer_norm`].
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints(dim, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(dim, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        crate::ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Affine map `y = x Wᵀ + b` over the last dimension, `W` [out, in] (PyTorch's layout).
/// As candle-nn's `Linear`, but the bias goes through [`crate::ops::add_bias`], whose
/// backward sums the bias gradient in one pass.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for Linear {
    /// `x` [.., in] -> [.., out]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims();
        let (inp, lead) = (dims[dims.len() - 1], &dims[..dims.len() - 1]);
        let rows: usize = lead.iter().product();
        let y = x.contiguous()?.reshape((rows, inp))?.matmul(&self.weight.t()?)?; // [N, out]
        let y = match &self.bias {
            Some(b) => crate::ops::add_bias(&y, b)?,
            None => y,
        };
        let mut shape = lead.to_vec();
        shape.push(self.weight.dim(0)?);
        y.reshape(shape)
    }
}

/// `Linear(in -> out)` with weight `[out, in]` drawn from `w_init` and the bias from `b_init`.
pub fn linear(inp: usize, out: usize, w_init: Init, b_init: Option<Init>, vb: VarBuilder) -> Result<Linear> {
    let w = vb.get_with_hints((out, inp), "weight", w_init)?;
    let b = b_init.map(|i| vb.get_with_hints(out, "bias", i)).transpose()?;
    Ok(Linear::new(w, b))
}

/// Embedding table `[n, dim]` drawn from `init`.
pub fn embedding(n: usize, dim: usize, init: Init, vb: VarBuilder) -> Result<Embedding> {
    Ok(Embedding::new(vb.get_with_hints((n, dim), "weight", init)?, dim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn layer_norm_normalises() {
        let vb = crate::model::params::ParamStore::new(0);
        let ln = LayerNorm::new(4, 1e-12, vb.var_builder(&Device::Cpu)).unwrap();
        let x = Tensor::new(&[[1f32, 2., 3., 4.]], &Device::Cpu).unwrap();
        let y = ln.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        let want = [-1.3416408f32, -0.4472136, 0.4472136, 1.3416408];
        for (a, b) in y[0].iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn dropout_is_seeded_and_scaled() {
        let x = Tensor::ones(1000, candle_core::DType::F32, &Device::Cpu).unwrap();
        let a = Ctx::train(7).dropout(&x, 0.5).unwrap().to_vec1::<f32>().unwrap();
        let b = Ctx::train(7).dropout(&x, 0.5).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
        assert!(a.iter().all(|&v| v == 0.0 || v == 2.0));
        let kept = a.iter().filter(|&&v| v > 0.0).count();
        assert!((400..600).contains(&kept), "{kept}");
        assert_eq!(Ctx::eval().dropout(&x, 0.5).unwrap().to_vec1::<f32>().unwrap(), vec![1.0; 1000]);
    }
}
