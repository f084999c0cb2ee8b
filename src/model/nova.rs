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
use super::layers::{embedding, linear, split_heads, AttentionOutput, Ctx, FeedForward, LayerNorm, Linear};
use super::registry::{Dims, Inputs, ModalityUse, SeqModel, Side, Traits};
use super::sasrec::check_heads;
use super::SeqBatch;
use candle_core::{Result, Tensor};
use candle_nn::{Embedding, Init, Module, VarBuilder};
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NovaConfig {
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub inner: usize,
    pub hidden_dropout: f64,
    pub attn_dropout: f64,
    pub layer_norm_eps: f64,
    pub init_std: f64,
    pub fuser: Fuser,
}

impl Default for NovaConfig {
    /// SASRec's RecBole settings (no authoritative NOVA defaults exist) and the gating fuser.
    fn default() -> Self {
        Self {
            hidden: 64,
            n_layers: 2,
            n_heads: 2,
            inner: 256,
            hidden_dropout: 0.5,
            attn_dropout: 0.5,
            layer_norm_eps: 1e-12,
            init_std: 0.02,
            fuser: Fuser::Gate,
        }
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
struct Block {
    fuse: Fuse,
    query: Linear,
    key: Linear,
    value: Linear,
    output: AttentionOutput,
    feed_forward: FeedForward,
    n_heads: usize,
}

impl Block {
    fn new(cfg: &NovaConfig, features: usize, vb: VarBuilder) -> Result<Self> {
        let (d, init, zero) = (cfg.hidden, Init::Randn { mean: 0.0, stdev: cfg.init_std }, Some(Init::Const(0.0)));
        let att = vb.pp("multi_head_attention");
        let fuse = match cfg.fuser {
            Fuser::Add => Fuse::Add,
            Fuser::Concat => Fuse::Concat(linear(features * d, d, init, zero, vb.pp("fusion").pp("concat"))?),
            Fuser::Gate => Fuse::Gate(linear(d, 1, init, None, vb.pp("fusion").pp("gate"))?),
        };
        Ok(Self {
            fuse,
            query: linear(d, d, init, zero, att.pp("query"))?,
            key: linear(d, d, init, zero, att.pp("key"))?,
            value: linear(d, d, init, zero, att.pp("value"))?,
            output: AttentionOutput::new(d, cfg.layer_norm_eps, init, (cfg.hidden_dropout, cfg.attn_dropout), att)?,
            feed_forward: FeedForward::new(
                d,
                cfg.inner,
                cfg.layer_norm_eps,
                init,
                cfg.hidden_dropout,
                vb.pp("feed_forward"),
            )?,
            n_heads: cfg.n_heads,
        })
    }

    /// `r`: [B, T, D], `side`: position and modality features, each [B, T, D] -> [B, T, D]
    fn forward(&self, r: &Tensor, side: &[Tensor], starts: &[u32], ctx: &mut Ctx) -> Result<Tensor> {
        let h = self.n_heads;
        let dh = r.dim(2)? / h;
        let mut features = vec![r.clone()];
        features.extend(side.iter().cloned());
        let fused = self.fuse.forward(&features)?;
        let q = split_heads(&self.query.forward(&fused)?, h)?;
        let k = split_heads(&self.key.forward(&fused)?, h)?;
        let v = split_heads(&self.value.forward(r)?, h)?; // [B, H, T, dh]
        let scores = q.matmul(&k.transpose(2, 3)?)?; // [B, H, T, T]
        let probs = crate::ops::causal_softmax(&scores, starts, 1.0 / (dh as f64).sqrt())?;
        let x = self.output.forward(&probs, &v, r, ctx)?;
        self.feed_forward.forward(&x, ctx)
    }
}

#[derive(Debug, Clone)]
pub struct Nova {
    item_embedding: Embedding,
    position_embedding: Tensor,
    ln: LayerNorm,
    blocks: Vec<Block>,
    hidden_dropout: f64,
}

impl SeqModel for Nova {
    type Config = NovaConfig;

    fn traits(_: &NovaConfig) -> Traits {
        Traits { causal: true, inputs: Inputs::Streams, modality: ModalityUse::Required(ModalityMode::Tuned) }
    }

    fn check(cfg: &NovaConfig) -> std::result::Result<(), String> {
        check_heads(cfg.hidden, cfg.n_heads)
    }

    fn width(cfg: &NovaConfig) -> usize {
        cfg.hidden
    }

    fn set_width(cfg: &mut NovaConfig, d: usize) {
        cfg.hidden = d;
    }

    fn new(cfg: &NovaConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        let init = Init::Randn { mean: 0.0, stdev: cfg.init_std };
        let item_embedding = embedding(dims.n_items + 1, cfg.hidden, init, vb.pp("item_embedding"))?;
        let position_embedding =
            vb.pp("position_embedding").get_with_hints((dims.max_len, cfg.hidden), "weight", init)?;
        let ln = LayerNorm::new(cfg.hidden, cfg.layer_norm_eps, vb.pp("LayerNorm"))?;
        let enc = vb.pp("trm_encoder").pp("layer");
        let features = 2 + dims.streams;
        let blocks = (0..cfg.n_layers).map(|l| Block::new(cfg, features, enc.pp(l))).collect::<Result<_>>()?;
        Ok(Self { item_embedding, position_embedding, ln, blocks, hidden_dropout: cfg.hidden_dropout })
    }

    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, t) = input.items.dims2()?;
        let d = self.position_embedding.dim(1)?;
        let ids = Tensor::from_slice(&input.pos, b * t, input.items.device())?;
        let mut features = vec![self.position_embedding.index_select(&ids, 0)?.reshape((b, t, d))?];
        features.extend(side.streams.iter().cloned());
        let mut r = ctx.dropout(&self.ln.forward(&self.item_embedding.forward(&input.items)?)?, self.hidden_dropout)?;
        let starts = input.starts()?;
        for block in &self.blocks {
            r = block.forward(&r, &features, &starts, ctx)?;
        }
        Ok(r)
    }

    fn item_table(&self) -> &Tensor {
        self.item_embedding.embeddings()
    }
}
