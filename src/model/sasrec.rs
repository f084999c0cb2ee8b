//! SASRec (Kang & McAuley, ICDM 2018) as configured in RecBole: learned positions, a
//! post-LN Transformer encoder with a causal + key-padding mask (RecBole's additive -10000
//! mask, applied exactly by [`crate::ops::causal_softmax`]; block-diagonal when several
//! sequences share a row, each with its own positions), GELU feed-forward.
//! Parameter names follow RecBole's module names, so a RecBole state dict maps one to one.

use super::layers::{embedding, linear, split_heads, AttentionOutput, Ctx, FeedForward, LayerNorm, Linear};
use super::registry::{Dims, SeqModel, Side, Traits};
use super::SeqBatch;
use candle_core::{Result, Tensor};
use candle_nn::{Embedding, Init, Module, VarBuilder};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SasRecConfig {
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub inner: usize,
    pub hidden_dropout: f64,
    pub attn_dropout: f64,
    pub layer_norm_eps: f64,
    pub init_std: f64,
}

impl Default for SasRecConfig {
    /// RecBole's defaults.
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
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    query: Linear,
    key: Linear,
    value: Linear,
    output: AttentionOutput,
    feed_forward: FeedForward,
    n_heads: usize,
}

impl Block {
    fn new(cfg: &SasRecConfig, vb: VarBuilder) -> Result<Self> {
        let (d, init, zero) = (cfg.hidden, Init::Randn { mean: 0.0, stdev: cfg.init_std }, Some(Init::Const(0.0)));
        let att = vb.pp("multi_head_attention");
        let dropouts = (cfg.hidden_dropout, cfg.attn_dropout);
        Ok(Self {
            query: linear(d, d, init, zero, att.pp("query"))?,
            key: linear(d, d, init, zero, att.pp("key"))?,
            value: linear(d, d, init, zero, att.pp("value"))?,
            output: AttentionOutput::new(d, cfg.layer_norm_eps, init, dropouts, att)?,
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

    /// `x`: [B, T, D], `starts`: first visible column of every cell [B * T] -> [B, T, D]
    fn forward(&self, x: &Tensor, starts: &[u32], ctx: &mut Ctx) -> Result<Tensor> {
        let dh = x.dim(2)? / self.n_heads;
        let heads = |l: &Linear| split_heads(&l.forward(x)?, self.n_heads); // [B, H, T, dh]
        let (q, k, v) = (heads(&self.query)?, heads(&self.key)?, heads(&self.value)?);
        let scores = q.matmul(&k.transpose(2, 3)?)?; // [B, H, T, T]
        let probs = crate::ops::causal_softmax(&scores, starts, 1.0 / (dh as f64).sqrt())?;
        let x = self.output.forward(&probs, &v, x, ctx)?;
        self.feed_forward.forward(&x, ctx)
    }
}

#[derive(Debug, Clone)]
pub struct SasRec {
    item_embedding: Embedding,
    position_embedding: Tensor,
    ln: LayerNorm,
    blocks: Vec<Block>,
    hidden_dropout: f64,
}

impl SeqModel for SasRec {
    type Config = SasRecConfig;

    fn traits(_: &SasRecConfig) -> Traits {
        Traits::CAUSAL_ID
    }

    fn check(cfg: &SasRecConfig) -> std::result::Result<(), String> {
        check_heads(cfg.hidden, cfg.n_heads)
    }

    fn width(cfg: &SasRecConfig) -> usize {
        cfg.hidden
    }

    fn set_width(cfg: &mut SasRecConfig, d: usize) {
        cfg.hidden = d;
    }

    /// `dims.n_items` real items (ids 1..=n_items, 0 = padding), positions up to `max_len`.
    fn new(cfg: &SasRecConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        if cfg.hidden % cfg.n_heads != 0 {
            candle_core::bail!("sasrec: hidden {} is not a multiple of n_heads {}", cfg.hidden, cfg.n_heads);
        }
        let init = Init::Randn { mean: 0.0, stdev: cfg.init_std };
        let item_embedding = embedding(dims.n_items + 1, cfg.hidden, init, vb.pp("item_embedding"))?;
        let position_embedding =
            vb.pp("position_embedding").get_with_hints((dims.max_len, cfg.hidden), "weight", init)?;
        let ln = LayerNorm::new(cfg.hidden, cfg.layer_norm_eps, vb.pp("LayerNorm"))?;
        let enc = vb.pp("trm_encoder").pp("layer");
        let blocks = (0..cfg.n_layers).map(|l| Block::new(cfg, enc.pp(l))).collect::<Result<_>>()?;
        Ok(Self { item_embedding, position_embedding, ln, blocks, hidden_dropout: cfg.hidden_dropout })
    }

    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        self.encode(input, side.summed.as_ref(), ctx)
    }

    fn item_table(&self) -> &Tensor {
        self.item_embedding.embeddings()
    }
}

/// `hidden` must split into `n_heads` heads.
pub fn check_heads(hidden: usize, n_heads: usize) -> std::result::Result<(), String> {
    if n_heads == 0 || hidden % n_heads != 0 {
        return Err(format!("model.hidden ({hidden}) must be a multiple of model.n_heads ({n_heads})"));
    }
    Ok(())
}

impl SasRec {
    /// Hidden states [B, T, D] of `input` ([B, T] items, each cell at its own position); a cell
    /// sees the cells of its sequence up to itself only. `extra` [B, T, D] (fused modality
    /// embeddings) is added to the item embeddings.
    pub fn encode(&self, input: &SeqBatch, extra: Option<&Tensor>, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, t) = input.items.dims2()?;
        let d = self.position_embedding.dim(1)?;
        let mut x = self.item_embedding.forward(&input.items)?;
        if let Some(e) = extra {
            x = (x + e)?;
        }
        let x = if input.pos.iter().enumerate().all(|(c, &p)| p as usize == c % t) {
            // One left-aligned sequence per row without padding: positions 0..T in every row.
            crate::ops::add_bias(&x, &self.position_embedding.narrow(0, 0, t)?)?
        // [B, T, D] + [T, D]
        } else {
            let ids = Tensor::from_slice(&input.pos, b * t, x.device())?;
            (x + self.position_embedding.index_select(&ids, 0)?.reshape((b, t, d))?)?
        };
        let mut x = ctx.dropout(&self.ln.forward(&x)?, self.hidden_dropout)?;
        let starts = input.starts()?;
        for block in &self.blocks {
            x = block.forward(&x, &starts, ctx)?;
        }
        Ok(x)
    }
}
