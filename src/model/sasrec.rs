//! SASRec (Kang & McAuley, ICDM 2018) as configured in RecBole: learned positions, a
//! post-LN Transformer encoder with a causal + key-padding mask (RecBole's additive -10000
//! mask, applied exactly by [`crate::ops::causal_softmax`]; block-diagonal when several
//! sequences share a row, each with its own positions), GELU feed-forward.
//! Parameter names follow RecBole's module names, so a RecBole state dict maps one to one.

use super::layers::{AttentionLayer, Ctx, LayerShape, TokenEmbeddings};
use super::registry::{Dims, SeqModel, Side, Traits};
use super::SeqBatch;
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

/// Defines the settings of a RecBole-style Transformer backbone: SASRec's fields with RecBole's
/// defaults (hidden 64, 2 layers, 2 heads, inner 256, dropout 0.5 / 0.5, LayerNorm eps 1e-12,
/// N(0, 0.02) init), in this order (run ids hash the serialised order), then the backbone's
/// own fields; and `shape()`, the [`LayerShape`] of its layers.
macro_rules! transformer_config {
    ($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident: $ty:ty = $default:expr,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            pub hidden: usize,
            pub n_layers: usize,
            pub n_heads: usize,
            pub inner: usize,
            pub hidden_dropout: f64,
            pub attn_dropout: f64,
            pub layer_norm_eps: f64,
            pub init_std: f64,
            $($(#[$fm])* pub $field: $ty,)*
        }

        impl Default for $name {
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
                    $($field: $default,)*
                }
            }
        }

        impl $name {
            pub fn shape(&self) -> $crate::model::layers::LayerShape {
                $crate::model::layers::LayerShape {
                    hidden: self.hidden,
                    inner: self.inner,
                    n_heads: self.n_heads,
                    layer_norm_eps: self.layer_norm_eps,
                    init_std: self.init_std,
                    hidden_dropout: self.hidden_dropout,
                    attn_dropout: self.attn_dropout,
                }
            }
        }
    };
}
pub(crate) use transformer_config;

transformer_config! {
    /// SASRec's settings (RecBole's defaults).
    SasRecConfig {}
}

#[derive(Debug, Clone)]
pub struct SasRec {
    embeddings: TokenEmbeddings,
    layers: Vec<AttentionLayer>,
}

impl SeqModel for SasRec {
    type Config = SasRecConfig;

    fn traits(_: &SasRecConfig) -> Traits {
        Traits::CAUSAL_ID
    }

    fn check(cfg: &SasRecConfig) -> std::result::Result<(), String> {
        check_heads(cfg.hidden, cfg.n_heads)
    }

    fn width_mut(cfg: &mut SasRecConfig) -> &mut usize {
        &mut cfg.hidden
    }

    /// `dims.n_items` real items (ids 1..=n_items, 0 = padding), positions up to `max_len`.
    fn new(cfg: &SasRecConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        let (embeddings, layers) = transformer(cfg.shape(), cfg.n_layers, dims, &vb)?;
        Ok(Self { embeddings, layers })
    }

    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        self.encode(input, side.summed.as_ref(), ctx)
    }

    fn forward_at(&self, input: &SeqBatch, side: &Side, cells: &[u32], ctx: &mut Ctx) -> Result<Tensor> {
        self.encode_at(input, side.summed.as_ref(), cells, ctx)
    }

    fn item_table(&self) -> Option<&Tensor> {
        Some(self.embeddings.table())
    }
}

/// The input embeddings and `n_layers` layers (`trm_encoder.layer.<l>`) of a RecBole
/// Transformer recommender.
pub fn transformer(
    shape: LayerShape,
    n_layers: usize,
    dims: &Dims,
    vb: &VarBuilder,
) -> Result<(TokenEmbeddings, Vec<AttentionLayer>)> {
    check_heads(shape.hidden, shape.n_heads).map_err(candle_core::Error::Msg)?;
    let init = Init::Randn { mean: 0.0, stdev: shape.init_std };
    let embeddings = TokenEmbeddings::new(
        dims.n_items,
        dims.max_len,
        shape.hidden,
        shape.layer_norm_eps,
        init,
        shape.hidden_dropout,
        vb,
    )?;
    let enc = vb.pp("trm_encoder").pp("layer");
    let layers = (0..n_layers).map(|l| AttentionLayer::new(shape, &enc.pp(l))).collect::<Result<_>>()?;
    Ok((embeddings, layers))
}

/// `hidden` must split into `n_heads` heads.
pub fn check_heads(hidden: usize, n_heads: usize) -> std::result::Result<(), String> {
    if n_heads == 0 || !hidden.is_multiple_of(n_heads) {
        return Err(format!("model.hidden ({hidden}) must be a multiple of model.n_heads ({n_heads})"));
    }
    Ok(())
}

impl SasRec {
    /// Hidden states [B, T, D] of `input` ([B, T] items, each cell at its own position); a cell
    /// sees the cells of its sequence up to itself only. `extra` [B, T, D] (fused modality
    /// embeddings) is added to the item embeddings.
    pub fn encode(&self, input: &SeqBatch, extra: Option<&Tensor>, ctx: &mut Ctx) -> Result<Tensor> {
        let (x, starts) = self.below_top(input, extra, ctx)?;
        match self.layers.last() {
            Some(top) => top.attend(&x, &x, &starts, ctx),
            None => Ok(x),
        }
    }

    /// [`SasRec::encode`]'s states at the flat cells `cells` only: `[M, D]`, the top layer
    /// computed for those cells ([`AttentionLayer::attend_at`]).
    pub fn encode_at(&self, input: &SeqBatch, extra: Option<&Tensor>, cells: &[u32], ctx: &mut Ctx) -> Result<Tensor> {
        let (x, starts) = self.below_top(input, extra, ctx)?;
        match self.layers.last() {
            Some(top) => top.attend_at(&x, &starts, cells, ctx),
            None => super::select_cells(&x, cells),
        }
    }

    /// The input of the top layer `[B, T, D]` and each cell's sequence start.
    fn below_top(&self, input: &SeqBatch, extra: Option<&Tensor>, ctx: &mut Ctx) -> Result<(Tensor, Vec<u32>)> {
        let (b, t) = input.items.dims2()?;
        let mut x = self.embeddings.items(&input.items)?;
        if let Some(e) = extra {
            x = (x + e)?;
        }
        let x = if input.pos.iter().enumerate().all(|(c, &p)| p as usize == c % t) {
            // One left-aligned sequence per row without padding: positions 0..T in every row.
            crate::ops::add_bias(&x, &self.embeddings.position_table().narrow(0, 0, t)?)?
        // [B, T, D] + [T, D]
        } else {
            (x + self.embeddings.positions(&input.pos, (b, t), input.items.device())?)?
        };
        let mut x = self.embeddings.normalise(&x, ctx)?;
        let starts = input.starts()?;
        for layer in &self.layers[..self.layers.len().saturating_sub(1)] {
            x = layer.attend(&x, &x, &starts, ctx)?;
        }
        Ok((x, starts))
    }
}
