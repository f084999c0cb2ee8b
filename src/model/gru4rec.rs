//! GRU4Rec (Hidasi et al., ICLR 2016) as configured in RecBole: embedding dropout, a GRU
//! without biases, and a dense layer back to the embedding size.
//!
//! GRU cell (PyTorch's gate order r, z, n; no biases):
//! `r = σ(W_ir x + W_hr h)`, `z = σ(W_iz x + W_hz h)`, `n = tanh(W_in x + r ⊙ (W_hn h))`,
//! `h' = (1 - z) ⊙ n + z ⊙ h`.

use super::layers::{embedding, linear, Ctx, Embedding, Linear};
use super::params::{xavier_normal, xavier_uniform};
use super::registry::{Dims, SeqModel, Side, Traits};
use super::SeqBatch;
use candle_core::{Result, Tensor, D};
use candle_nn::{Init, Module, VarBuilder};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gru4RecConfig {
    pub embedding: usize,
    pub hidden: usize,
    pub n_layers: usize,
    pub dropout: f64,
}

impl Default for Gru4RecConfig {
    /// RecBole's defaults.
    fn default() -> Self {
        Self { embedding: 64, hidden: 128, n_layers: 1, dropout: 0.3 }
    }
}

#[derive(Debug, Clone)]
struct GruLayer {
    w_ih: Tensor, // [3H, in]
    w_hh: Tensor, // [3H, H]
    hidden: usize,
}

impl GruLayer {
    fn new(inp: usize, hidden: usize, layer: usize, vb: &VarBuilder) -> Result<Self> {
        Ok(Self {
            w_ih: vb.get_with_hints(
                (3 * hidden, inp),
                &format!("weight_ih_l{layer}"),
                xavier_uniform(3 * hidden, inp),
            )?,
            w_hh: vb.get_with_hints(
                (3 * hidden, hidden),
                &format!("weight_hh_l{layer}"),
                xavier_uniform(3 * hidden, hidden),
            )?,
            hidden,
        })
    }

    /// [B, T, in] -> [B, T, H], starting from h = 0 and restarting from 0 wherever
    /// `resets` [T * B] (step-major) says a sequence starts; the fused recurrence
    /// ([`crate::ops::gru_sequence`]) on CPU, composite ops elsewhere.
    fn forward(&self, x: &Tensor, resets: &[bool]) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            let (b, t, inp) = x.dims3()?;
            let xt = x.transpose(0, 1)?.contiguous()?.reshape((t * b, inp))?; // [T·B, in]
            let gi = xt.matmul(&self.w_ih.t()?)?.reshape((t, b, 3 * self.hidden))?; // [T, B, 3H]
            return crate::ops::gru_sequence(&gi, &self.w_hh, resets)?.transpose(0, 1);
            // [B, T, H]
        }
        self.forward_composite(x, resets)
    }

    /// The same recurrence with composite candle ops, one step at a time.
    fn forward_composite(&self, x: &Tensor, resets: &[bool]) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let hs = self.hidden;
        let xi = x.broadcast_matmul(&self.w_ih.t()?)?; // [B, T, 3H]
        let w_hh_t = self.w_hh.t()?; // [H, 3H]
        let mut h = Tensor::zeros((b, hs), x.dtype(), x.device())?;
        let mut outs = Vec::with_capacity(t);
        for step in 0..t {
            let flags = &resets[step * b..(step + 1) * b];
            if step > 0 && flags.iter().any(|&r| r) {
                let keep: Vec<f32> = flags.iter().map(|&r| if r { 0.0 } else { 1.0 }).collect();
                h = h.broadcast_mul(&Tensor::from_vec(keep, (b, 1), x.device())?)?;
            }
            let xs = xi.narrow(1, step, 1)?.squeeze(1)?; // [B, 3H]
            let gh = h.matmul(&w_hh_t)?; // [B, 3H]
            let r = candle_nn::ops::sigmoid(&(xs.narrow(D::Minus1, 0, hs)? + gh.narrow(D::Minus1, 0, hs)?)?)?;
            let z = candle_nn::ops::sigmoid(&(xs.narrow(D::Minus1, hs, hs)? + gh.narrow(D::Minus1, hs, hs)?)?)?;
            let n = (xs.narrow(D::Minus1, 2 * hs, hs)? + (r * gh.narrow(D::Minus1, 2 * hs, hs)?)?)?.tanh()?;
            // h' = n + z * (h - n)
            h = (&n + (z * (&h - &n)?)?)?;
            outs.push(h.clone());
        }
        Tensor::stack(&outs, 1)
    }
}

#[derive(Debug, Clone)]
pub struct Gru4Rec {
    item_embedding: Embedding,
    layers: Vec<GruLayer>,
    dense: Linear,
    dropout: f64,
}

impl SeqModel for Gru4Rec {
    type Config = Gru4RecConfig;

    fn traits(_: &Gru4RecConfig) -> Traits {
        Traits::CAUSAL_ID
    }

    fn width_mut(cfg: &mut Gru4RecConfig) -> &mut usize {
        &mut cfg.embedding
    }

    fn new(cfg: &Gru4RecConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        let n_items = dims.n_items;
        let item_embedding =
            embedding(n_items + 1, cfg.embedding, xavier_normal(n_items + 1, cfg.embedding), vb.pp("item_embedding"))?;
        let gru = vb.pp("gru_layers");
        let layers = (0..cfg.n_layers)
            .map(|l| GruLayer::new(if l == 0 { cfg.embedding } else { cfg.hidden }, cfg.hidden, l, &gru))
            .collect::<Result<_>>()?;
        let kaiming = Init::Kaiming {
            dist: candle_nn::init::NormalOrUniform::Uniform,
            fan: candle_nn::init::FanInOut::FanIn,
            non_linearity: candle_nn::init::NonLinearity::Linear,
        };
        // PyTorch's Linear default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        let b = 1.0 / (cfg.hidden as f64).sqrt();
        let dense = linear(cfg.hidden, cfg.embedding, kaiming, Some(Init::Uniform { lo: -b, up: b }), vb.pp("dense"))?;
        Ok(Self { item_embedding, layers, dense, dropout: cfg.dropout })
    }

    /// [B, T] items -> [B, T, E]; the state restarts at every sequence start of `input`, so a
    /// cell sees its own sequence up to itself. Summed modality embeddings [B, T, E] are added
    /// to the item embeddings.
    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        let mut x = self.item_embedding.forward(&input.items)?;
        if let Some(e) = &side.summed {
            x = (x + e)?;
        }
        let mut x = ctx.dropout(&x, self.dropout)?;
        let resets = input.resets_step_major()?;
        for layer in &self.layers {
            x = layer.forward(&x, &resets)?;
        }
        self.dense.forward(&x)
    }

    fn item_table(&self) -> Option<&Tensor> {
        Some(self.item_embedding.embeddings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::ParamStore;
    use crate::ops::testing::rel_err;
    use candle_core::{Device, Var};

    #[test]
    fn fused_recurrence_matches_composite_forward_and_backward() {
        let dev = Device::Cpu;
        let params = ParamStore::new(3);
        let layer = GruLayer::new(6, 5, 0, &params.var_builder(&dev).pp("gru")).unwrap();
        let (b, t) = (4, 7);
        let xv: Vec<f32> = (0..b * t * 6).map(|i| ((i * 37) % 19) as f32 / 6.0 - 1.5).collect();
        let x = Var::from_tensor(&Tensor::from_vec(xv, (b, t, 6), &dev).unwrap()).unwrap();
        let w =
            Tensor::from_vec((0..b * t * 5).map(|i| ((i % 9) as f32 - 4.0) / 3.0).collect(), (b, t, 5), &dev).unwrap();
        // Row 1 starts a second sequence at step 3, row 3 at steps 2 and 5.
        let mut resets = vec![false; t * b];
        for (step, row) in [(0, 0), (0, 1), (0, 2), (0, 3), (3, 1), (2, 3), (5, 3)] {
            resets[step * b + row] = true;
        }
        let fused = layer.forward(x.as_tensor(), &resets).unwrap();
        let comp = layer.forward_composite(x.as_tensor(), &resets).unwrap();
        assert_eq!(fused.dims(), &[b, t, 5]);
        assert!(rel_err(&fused, &comp) < 1e-5, "forward {}", rel_err(&fused, &comp));
        let g1 = (&fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&comp * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let mut checked = 0;
        for (name, var) in params.vars() {
            let (a, c) = (g1.get(var.as_tensor()).unwrap(), g2.get(var.as_tensor()).unwrap());
            assert!(rel_err(a, c) < 1e-4, "{name}: {}", rel_err(a, c));
            checked += 1;
        }
        assert_eq!(checked, 2, "w_ih and w_hh");
        let (a, c) = (g1.get(x.as_tensor()).unwrap(), g2.get(x.as_tensor()).unwrap());
        assert!(rel_err(a, c) < 1e-4, "input: {}", rel_err(a, c));
    }
}
