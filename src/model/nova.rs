//! NOVA (Liu et al., AAAI 2021, "Non-invasive self-attention for side information fusion in
//! sequential recommendation"): side information enters the queries and keys only; the values,
//! and so the item representation carried from layer to layer, come from the item IDs alone.
//! Each layer `l` re-fuses the same side information with its input `R_l`:
//!
//! `F_l = fuse(R_l, p, s_1, .., s_M)`, `Q = F_l W_Q`, `K = F_l W_K`, `V = R_l W_V`,
//! `R_{l+1} = FFN(LN(R_l + W_O softmax(Q Kᵀ / √d_h + mask) V))`,
//!
//! with `R_0 = LN(E_id[i])`, `p` the position embeddings and `s_m = P_m E_m[i]` the modality
//! streams. Fusers (the paper's three): `add` `Σ f`, `concat` `W [f_1; ..; f_k]`, `gate`
//! (default) `Σ_k σ(f_k · w) f_k` over the k = 2 + M features.
//!
//! No official code exists. The paper's model is BERT4Rec-style (bidirectional, cloze
//! training); this one is the causal variant on SASRec's layers (next-item cross-entropy, a
//! causal mask), which the KDSR paper's protocol needs: stated in Table 2's report.

use super::fusion::ModalityMode;
use super::layers::{linear, AttentionLayer, Ctx, Linear, TokenEmbeddings};
use super::registry::{Dims, Inputs, ModalityUse, SeqModel, Side, Traits};
use super::sasrec::{check_heads, transformer, transformer_config};
use super::SeqBatch;
use candle_core::{Result, Tensor};
use candle_nn::{Init, Module, VarBuilder};
use serde::{Deserialize, Serialize};

/// How a layer fuses its input with the side information.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fuser {
    Add,
    Concat,
    #[default]
    Gate,
}

transformer_config! {
    /// SASRec's RecBole settings (no authoritative NOVA defaults exist) and the gating fuser.
    NovaConfig {
        fuser: Fuser = Fuser::Gate,
    }
}

#[derive(Debug, Clone)]
enum Fuse {
    Add,
    /// Linear(k·D -> D)
    Concat(Linear),
    /// w: Linear(D -> 1), no bias
    Gate(Linear),
}

impl Fuse {
    /// `features`: k × [B, T, D] -> [B, T, D]
    fn forward(&self, features: &[Tensor]) -> Result<Tensor> {
        match self {
            Self::Add => {
                let mut acc = features[0].clone();
                for f in &features[1..] {
                    acc = (acc + f)?;
                }
                Ok(acc)
            }
            Self::Concat(l) => l.forward(&Tensor::cat(features, 2)?),
            Self::Gate(w) => {
                let stack = Tensor::stack(features, 2)?; // [B, T, k, D]
                let g = candle_nn::ops::sigmoid(&w.forward(&stack)?)?; // [B, T, k, 1]
                stack.broadcast_mul(&g)?.sum(2)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Nova {
    embeddings: TokenEmbeddings,
    layers: Vec<AttentionLayer>,
    /// Per layer (`trm_encoder.layer.<l>.fusion`).
    fusers: Vec<Fuse>,
}

impl SeqModel for Nova {
    type Config = NovaConfig;

    fn traits(_: &NovaConfig) -> Traits {
        Traits {
            causal: true,
            inputs: Inputs::Streams,
            modality: ModalityUse::Required(ModalityMode::Tuned),
            attribute_labels: false,
            clusters: None,
            item_tower: false,
            cloze: false,
            own_row_groups: false,
        }
    }

    fn check(cfg: &NovaConfig) -> std::result::Result<(), String> {
        check_heads(cfg.hidden, cfg.n_heads)
    }

    fn width_mut(cfg: &mut NovaConfig) -> &mut usize {
        &mut cfg.hidden
    }

    fn new(cfg: &NovaConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        let (embeddings, layers) = transformer(cfg.shape(), cfg.n_layers, dims, &vb)?;
        let (d, init) = (cfg.hidden, Init::Randn { mean: 0.0, stdev: cfg.init_std });
        let features = 2 + dims.streams;
        let enc = vb.pp("trm_encoder").pp("layer");
        let fusers = (0..cfg.n_layers)
            .map(|l| -> Result<Fuse> {
                let fv = enc.pp(l).pp("fusion");
                Ok(match cfg.fuser {
                    Fuser::Add => Fuse::Add,
                    Fuser::Concat => {
                        Fuse::Concat(linear(features * d, d, init, Some(Init::Const(0.0)), fv.pp("concat"))?)
                    }
                    Fuser::Gate => Fuse::Gate(linear(d, 1, init, None, fv.pp("gate"))?),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { embeddings, layers, fusers })
    }

    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        let dims = input.items.dims2()?;
        let positions = self.embeddings.positions(&input.pos, dims, input.items.device())?;
        let mut r = self.embeddings.normalise(&self.embeddings.items(&input.items)?, ctx)?;
        let starts = input.starts()?;
        for (layer, fuse) in self.layers.iter().zip(&self.fusers) {
            let mut features = vec![r.clone(), positions.clone()];
            features.extend(side.streams.iter().cloned());
            // Queries and keys from the fused features, values (and the residual) from r.
            r = layer.attend(&fuse.forward(&features)?, &r, &starts, ctx)?;
        }
        Ok(r)
    }

    fn item_table(&self) -> Option<&Tensor> {
        Some(self.embeddings.table())
    }
}
