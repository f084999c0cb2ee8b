//! Trans2D (Singer et al., WSDM 2022, "Sequential modeling with multiple attributes for
//! watchlist recommendation in e-commerce"), as the reference `urielsinger/Trans2D`
//! (`models/modeling_bert2D.py`, `models/SequenceModel.py`) computes it, over `C = 1 + M`
//! channels per cell: the item ID embedding and the `M` modality streams `P_m E_m[i]`.
//!
//! Input `X[l, c] = E_c[i_l] + p_l`, normalised by a LayerNorm over `[C, D]` jointly. A layer:
//! per-channel projections (`Linear2D`, weights `[C, out, in]`) give `Q`, `K`, `V`
//! `[H, L, C, d_h]`; the 2D attention scores of query cell `(l, c)` on key cell `(l', c')`
//!
//! `S = (α₀ Σ_d Q[l,c] K[l',c'] + α₁ Σ_{l'',d} Q[l'',c] K[l'',c'] + α₂ Σ_{c'',d} Q[l,c''] K[l',c'']) / √d_h`
//!
//! (full, feature and time attention, learned `α` starting at 1), one softmax over all
//! `(l', c')`, `Σ P V`; then BERT's post-LN output and GELU feed-forward sublayers, every
//! LayerNorm over `[C, D]` and every dense layer per channel. The next-item head is an
//! adaptation (the reference scores a watchlist item with BCE): the mean over channels at the
//! last cell, scored against the ID table with the cross-entropy.
//!
//! Computed with matmuls (`Q Kᵀ` over `L·C` cells, `[L, C·d]` and `[C, L·d]` views for the time
//! and feature terms), never the reference's 7-dimensional broadcast. The model is
//! bidirectional, so it trains on prefix samples; rows are bucketed by length and each bucket
//! runs at its own width, and the last layer computes queries and the sublayers above the
//! attention at the last cell only (the only state read).
//!
//! Deviations, stated: the reference never masks padding (its `mask` defaults to all ones);
//! here padding cells are masked as keys (additive −10000, BERT's) and left out of the feature
//! term's sum, so a window's output does not depend on how far its row is padded, which length
//! bucketing needs. BERT's token-type embedding (one constant row added to every cell) is left
//! out. Defaults are the reference's (4 full-width heads, i.e. `d_h = D`, inner 3072, one layer,
//! dropout 0.3, N(0, 0.02) weights); the width follows the preset.

use super::fusion::ModalityMode;
use super::layers::{Ctx, LayerNorm};
use super::registry::{Dims, ModalityUse, SeqModel, Side, Traits};
use super::SeqBatch;
use candle_core::{Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// The width of each attention head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadWidth {
    /// Every head is `D` wide (the reference: `attention_head_size = hidden_size`).
    #[default]
    Full,
    /// `D / H` per head, as a standard Transformer.
    Split,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Trans2dConfig {
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub head_width: HeadWidth,
    /// Feed-forward width (BERT's `intermediate_size`, which the reference inherits).
    pub inner: usize,
    /// Dropout of the embeddings, the attention probabilities and both sublayers.
    pub dropout: f64,
    pub layer_norm_eps: f64,
    pub init_std: f64,
}

impl Default for Trans2dConfig {
    fn default() -> Self {
        Self {
            hidden: 64,
            n_layers: 1,
            n_heads: 4,
            head_width: HeadWidth::Full,
            inner: 3072,
            dropout: 0.3,
            layer_norm_eps: 1e-12,
            init_std: 0.02,
        }
    }
}

impl Trans2dConfig {
    fn head_dim(&self) -> usize {
        match self.head_width {
            HeadWidth::Full => self.hidden,
            HeadWidth::Split => self.hidden / self.n_heads,
        }
    }
}

/// Rows per length bucket.
const BUCKET_ROWS: usize = 64;

/// Per-channel affine maps: `y[.., c, :] = W[c] x[.., c, :] + b[c]`, `W` [C, out, in],
/// `b` [C, out] (the reference's `Linear2D`).
#[derive(Debug, Clone)]
struct Linear2d {
    weight: Tensor,
    bias: Tensor,
}

impl Linear2d {
    fn new(c: usize, inp: usize, out: usize, init: Init, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            weight: vb.get_with_hints((c, out, inp), "weight", init)?,
            bias: vb.get_with_hints((c, out), "bias", Init::Const(0.0))?,
        })
    }

    /// [N, C, in] -> [N, C, out]
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let by_channel = x.transpose(0, 1)?.contiguous()?; // [C, N, in]
        let y = by_channel.matmul(&self.weight.transpose(1, 2)?)?; // [C, N, out]
        y.broadcast_add(&self.bias.unsqueeze(1)?)?.transpose(0, 1)?.contiguous()
    }
}

/// A LayerNorm over `[C, D]` jointly: x [N, C, D] -> [N, C, D].
fn norm_2d(ln: &LayerNorm, x: &Tensor) -> Result<Tensor> {
    let (n, c, d) = x.dims3()?;
    ln.forward(&x.reshape((n, c * d))?)?.reshape((n, c, d))
}

/// One Trans2D layer (parameter names as the reference's `BertLayer`, flattened).
#[derive(Debug, Clone)]
struct Layer {
    query: Linear2d,
    key: Linear2d,
    value: Linear2d,
    /// [3]: full, feature and time attention weights.
    alpha: Tensor,
    dense: Linear2d,
    ln_attention: LayerNorm,
    intermediate: Linear2d,
    output: Linear2d,
    ln_output: LayerNorm,
    heads: usize,
    head_dim: usize,
    dropout: f64,
}

/// The cells of a bucket: which keys are real.
struct Cells {
    /// [B, 1, L, 1, 1]: 1 at real cells, 0 at padding.
    real: Tensor,
    /// [B, 1, 1, L·C]: 0 at real keys, -10000 at padding (key cell `(l, c)` at `l·C + c`).
    key_bias: Tensor,
}

impl Layer {
    fn new(cfg: &Trans2dConfig, c: usize, vb: VarBuilder) -> Result<Self> {
        let (d, hd) = (cfg.hidden, cfg.n_heads * cfg.head_dim());
        let init = Init::Randn { mean: 0.0, stdev: cfg.init_std };
        let att = vb.pp("attention");
        Ok(Self {
            query: Linear2d::new(c, d, hd, init, att.pp("query"))?,
            key: Linear2d::new(c, d, hd, init, att.pp("key"))?,
            value: Linear2d::new(c, d, hd, init, att.pp("value"))?,
            alpha: att.get_with_hints(3, "alpha", Init::Const(1.0))?,
            dense: Linear2d::new(c, hd, d, init, att.pp("dense"))?,
            ln_attention: LayerNorm::new(c * d, cfg.layer_norm_eps, att.pp("LayerNorm"))?,
            intermediate: Linear2d::new(c, d, cfg.inner, init, vb.pp("intermediate"))?,
            output: Linear2d::new(c, cfg.inner, d, init, vb.pp("output"))?,
            ln_output: LayerNorm::new(c * d, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
            heads: cfg.n_heads,
            head_dim: cfg.head_dim(),
            dropout: cfg.dropout,
        })
    }

    /// `x` [B, L, C, D] -> [B, Lq, C, D]: every cell (`last` None, Lq = L) or, for each row
    /// `r`, only the cell `last[r]` (flat indices into `B·L`, Lq = 1).
    fn forward(&self, x: &Tensor, cells: &Cells, last: Option<&Tensor>, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, l, c, d) = x.dims4()?;
        let (h, dh) = (self.heads, self.head_dim);
        let flat = x.reshape((b * l, c, d))?;
        let q = self.query.forward(&flat)?; // [B·L, C, H·dh]
        let split = |t: &Tensor, rows: usize| -> Result<Tensor> {
            t.reshape((b, rows, c, h, dh))?.permute((0, 3, 1, 2, 4))?.contiguous()
            // [B, H, rows, C, dh]
        };
        let k = split(&self.key.forward(&flat)?, l)?;
        let v = split(&self.value.forward(&flat)?, l)?;
        let q_all = split(&q, l)?;

        // Feature term over the real cells: [B, H, C, L·dh] · [B, H, L·dh, C] -> [B, H, C, C].
        let by_channel = |t: &Tensor| -> Result<Tensor> {
            t.broadcast_mul(&cells.real)?.transpose(2, 3)?.contiguous()?.reshape((b, h, c, l * dh))
        };
        let feature = by_channel(&q_all)?.matmul(&by_channel(&k)?.t()?)?;

        let (q, lq, residual) = match last {
            Some(idx) => (split(&q.index_select(idx, 0)?, 1)?, 1, flat.index_select(idx, 0)?),
            None => (q_all, l, flat),
        };
        let keys = k.reshape((b, h, l * c, dh))?;
        let full = q.reshape((b, h, lq * c, dh))?.matmul(&keys.t()?)?.reshape((b, h, lq, c, l, c))?;
        let time = q.reshape((b, h, lq, c * dh))?.matmul(&k.reshape((b, h, l, c * dh))?.t()?)?;
        let alpha = |i: usize| self.alpha.narrow(0, i, 1);
        let scores = full
            .broadcast_mul(&alpha(0)?)?
            .broadcast_add(&feature.reshape((b, h, 1, c, 1, c))?.broadcast_mul(&alpha(1)?)?)?
            .broadcast_add(&time.reshape((b, h, lq, 1, l, 1))?.broadcast_mul(&alpha(2)?)?)?;
        let scores = scores.reshape((b, h, lq * c, l * c))?;
        let probs = crate::ops::biased_softmax(&scores, 1.0 / (dh as f64).sqrt(), &cells.key_bias)?;
        let probs = ctx.dropout(&probs, self.dropout)?;
        let context = probs.matmul(&v.reshape((b, h, l * c, dh))?)?; // [B, H, Lq·C, dh]
        let context = context.reshape((b, h, lq, c, dh))?.permute((0, 2, 3, 1, 4))?.reshape((b * lq, c, h * dh))?;

        let att = ctx.dropout(&self.dense.forward(&context)?, self.dropout)?;
        let y = norm_2d(&self.ln_attention, &(att + residual)?)?; // [B·Lq, C, D]
        let ff = self.output.forward(&crate::ops::gelu(&self.intermediate.forward(&y)?)?)?;
        let ff = ctx.dropout(&ff, self.dropout)?;
        norm_2d(&self.ln_output, &(ff + y)?)?.reshape((b, lq, c, d))
    }
}

#[derive(Debug, Clone)]
pub struct Trans2d {
    item_embedding: Tensor,
    /// [max_len, D]
    position_embedding: Tensor,
    ln: LayerNorm,
    layers: Vec<Layer>,
    channels: usize,
    dropout: f64,
}

impl SeqModel for Trans2d {
    type Config = Trans2dConfig;

    fn traits(_: &Trans2dConfig) -> Traits {
        Traits::bidirectional_streams(ModalityUse::Required(ModalityMode::Tuned))
    }

    fn check(cfg: &Trans2dConfig) -> std::result::Result<(), String> {
        if cfg.n_layers == 0 {
            return Err("model.n_layers must be at least 1".into());
        }
        if cfg.n_heads == 0 || (cfg.head_width == HeadWidth::Split && !cfg.hidden.is_multiple_of(cfg.n_heads)) {
            return Err(format!(
                "model.n_heads = {} must be positive and, with head_width = \"split\", divide model.hidden = {}",
                cfg.n_heads, cfg.hidden
            ));
        }
        if !(0.0..1.0).contains(&cfg.dropout) {
            return Err(format!("model.dropout must be in [0, 1), got {}", cfg.dropout));
        }
        Ok(())
    }

    fn width_mut(cfg: &mut Trans2dConfig) -> &mut usize {
        &mut cfg.hidden
    }

    fn new(cfg: &Trans2dConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        let (d, c) = (cfg.hidden, 1 + dims.streams);
        let init = Init::Randn { mean: 0.0, stdev: cfg.init_std };
        let layers = (0..cfg.n_layers).map(|i| Layer::new(cfg, c, vb.pp("layer").pp(i))).collect::<Result<_>>()?;
        Ok(Self {
            item_embedding: vb.pp("item_embedding").get_with_hints((dims.n_items + 1, d), "weight", init)?,
            position_embedding: vb.pp("position_embedding").get_with_hints((dims.max_len, d), "weight", init)?,
            ln: LayerNorm::new(c * d, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
            layers,
            channels: c,
            dropout: cfg.dropout,
        })
    }

    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, t) = input.items.dims2()?;
        let d = self.item_embedding.dim(1)?;
        let dev = input.items.device();
        if side.streams.len() + 1 != self.channels {
            candle_core::bail!("trans2d: {} modality streams, expected {}", side.streams.len(), self.channels - 1);
        }
        let max_pos = self.position_embedding.dim(0)?;
        if let Some(&p) = input.pos.iter().find(|&&p| p as usize >= max_pos) {
            candle_core::bail!("trans2d: position {p} beyond the {max_pos} position embeddings");
        }
        let items = input.items.flatten_all()?.to_vec1::<u32>()?;
        let lens: Vec<usize> =
            (0..b).map(|r| items[r * t..(r + 1) * t].iter().take_while(|&&v| v != 0).count()).collect();
        // Channels of every cell: [B·T, C, D], position added to each.
        let mut channels = vec![self.item_embedding.index_select(&input.items.flatten_all()?, 0)?];
        channels.extend(side.streams.iter().map(|s| s.reshape((b * t, d))).collect::<Result<Vec<_>>>()?);
        let pos = self.position_embedding.index_select(&Tensor::from_slice(&input.pos, b * t, dev)?, 0)?;
        let x = Tensor::stack(&channels, 1)?.broadcast_add(&pos.unsqueeze(1)?)?; // [B·T, C, D]

        let mut order: Vec<usize> = (0..b).collect();
        order.sort_by_key(|&r| lens[r]);
        let mut outs = Vec::with_capacity(b.div_ceil(BUCKET_ROWS));
        for rows in order.chunks(BUCKET_ROWS) {
            let w = rows.iter().map(|&r| lens[r]).max().unwrap_or(0).max(1);
            outs.push(self.bucket(&x, rows, &lens, (t, w), ctx)?);
        }
        super::sorted_at_last_cells(&Tensor::cat(&outs, 0)?, &order, &lens, t)
    }

    fn item_table(&self) -> Option<&Tensor> {
        Some(&self.item_embedding)
    }
}

impl Trans2d {
    /// The rows `rows` of the cell inputs `x` [B·T, C, D], cut to width `w` -> each row's
    /// output at its last cell, the mean over channels: [R, D].
    fn bucket(
        &self,
        x: &Tensor,
        rows: &[usize],
        lens: &[usize],
        (t, w): (usize, usize),
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let (r, c, d, dev) = (rows.len(), self.channels, x.dim(2)?, x.device());
        let pick: Vec<u32> = rows.iter().flat_map(|&row| (0..w).map(move |col| (row * t + col) as u32)).collect();
        let x = x.index_select(&Tensor::from_vec(pick, r * w, dev)?, 0)?; // [R·W, C, D]
        let mut h = ctx.dropout(&norm_2d(&self.ln, &x)?, self.dropout)?.reshape((r, w, c, d))?;
        let cells = cells(rows.iter().map(|&row| lens[row]), (w, c), dev)?;
        let last: Vec<u32> = rows.iter().enumerate().map(|(k, &row)| (k * w + lens[row].max(1) - 1) as u32).collect();
        let last = Tensor::from_vec(last, r, dev)?;
        let n = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h, &cells, (i + 1 == n).then_some(&last), ctx)?;
        }
        h.reshape((r, c, d))?.mean(1)
    }
}

/// The masks of rows with `lens` real cells each, padded to width `w`, with `c` channels.
fn cells(lens: impl Iterator<Item = usize>, (w, c): (usize, usize), dev: &Device) -> Result<Cells> {
    let real: Vec<f32> = lens.flat_map(|len| (0..w).map(move |col| if col < len { 1.0 } else { 0.0 })).collect();
    let r = real.len() / w;
    let key_bias: Vec<f32> = real.iter().flat_map(|&v| std::iter::repeat_n(10000.0 * v - 10000.0, c)).collect();
    let key_bias = Tensor::from_vec(key_bias, (r, 1, 1, w * c), dev)?;
    Ok(Cells { real: Tensor::from_vec(real, (r, 1, w, 1, 1), dev)?, key_bias })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::ParamStore;
    use candle_core::DType;

    fn model(streams: usize) -> (Trans2d, ParamStore) {
        let params = ParamStore::new(3);
        let cfg = Trans2dConfig { hidden: 8, n_heads: 2, inner: 16, ..Default::default() };
        let mut dims = Dims::ids(12, 6);
        dims.streams = streams;
        (Trans2d::new(&cfg, &dims, params.var_builder(&Device::Cpu)).unwrap(), params)
    }

    fn side(b: usize, t: usize, m: usize) -> Side {
        let s = |k: usize| {
            let v: Vec<f32> = (0..b * t * 8).map(|j| (0.1 * j as f32 + k as f32).cos()).collect();
            Tensor::from_vec(v, (b, t, 8), &Device::Cpu).unwrap()
        };
        Side { summed: None, streams: (0..m).map(s).collect() }
    }

    /// A window's output depends on its own cells only: not on how far its row is padded, nor
    /// on which other rows share its batch or bucket.
    #[test]
    fn output_is_independent_of_padding_and_batch() {
        let (m, _p) = model(2);
        let dev = Device::Cpu;
        let run = |rows: Vec<Vec<u32>>| -> Vec<Vec<f32>> {
            let input = SeqBatch::left_aligned(Tensor::new(rows, &dev).unwrap()).unwrap();
            // Streams: the same value for an item wherever it is (a function of the id).
            let ids = input.items.to_dtype(DType::F32).unwrap().unsqueeze(2).unwrap();
            let streams = (0..2)
                .map(|k| ids.broadcast_mul(&Tensor::new(&[0.1f32 * (k + 1) as f32; 8], &dev).unwrap()).unwrap().sin())
                .collect::<candle_core::Result<Vec<_>>>()
                .unwrap();
            let side = Side { summed: None, streams };
            let h = m.forward(&input, &side, &mut Ctx::eval()).unwrap(); // [B, T, D]
            h.sum(1).unwrap().to_vec2::<f32>().unwrap()
        };
        let a = run(vec![vec![3, 1, 4, 0, 0, 0], vec![5, 9, 2, 6, 5, 3]]);
        let b = run(vec![vec![3, 1, 4, 0], vec![7, 0, 0, 0], vec![2, 7, 1, 8]]);
        for (x, y) in a[0].iter().zip(&b[0]) {
            assert!((x - y).abs() < 1e-5, "{:?} vs {:?}", a[0], b[0]);
        }
        assert!(a[0].iter().any(|v| v.abs() > 1e-3), "non-trivial output");
    }

    #[test]
    fn only_the_last_cell_carries_the_output() {
        let (m, _p) = model(1);
        let input =
            SeqBatch::left_aligned(Tensor::new(&[[3u32, 1, 4, 0], [2, 0, 0, 0]], &Device::Cpu).unwrap()).unwrap();
        let h = m.forward(&input, &side(2, 4, 1), &mut Ctx::eval()).unwrap().to_vec3::<f32>().unwrap();
        let nonzero = |r: usize, c: usize| h[r][c].iter().any(|v| *v != 0.0);
        assert!(nonzero(0, 2) && nonzero(1, 0));
        assert!(!nonzero(0, 0) && !nonzero(0, 3) && !nonzero(1, 1));
    }

    #[test]
    fn stream_count_is_checked() {
        let (m, _p) = model(2);
        let input = SeqBatch::left_aligned(Tensor::new(&[[3u32, 1]], &Device::Cpu).unwrap()).unwrap();
        let err = m.forward(&input, &side(1, 2, 1), &mut Ctx::eval()).unwrap_err().to_string();
        assert!(err.contains("1 modality streams, expected 2"), "{err}");
    }
}
