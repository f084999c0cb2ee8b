//! Building blocks shared by the backbones: seeded dropout, a differentiable layer norm,
//! linear and embedding constructors with explicit initialisers.

use candle_core::{Result, Tensor};
use candle_nn::{Init, Module, VarBuilder};
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

    /// The dropout stream's word position (to resume a run exactly).
    pub fn rng_position(&self) -> u128 {
        self.rng.get_word_pos()
    }

    pub fn set_rng_position(&mut self, pos: u128) {
        self.rng.set_word_pos(pos);
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

/// An embedding table `[n, dim]`: ids of any shape `[..]` -> `[.., dim]`, looked up with
/// [`crate::ops::gather_rows`] (a fused backward).
#[derive(Debug, Clone)]
pub struct Embedding {
    table: Tensor,
}

impl Embedding {
    /// The table `[n, dim]`.
    pub fn embeddings(&self) -> &Tensor {
        &self.table
    }
}

impl Module for Embedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let mut dims = ids.dims().to_vec();
        dims.push(self.table.dim(1)?);
        crate::ops::gather_rows(&self.table, ids)?.reshape(dims)
    }
}

/// Embedding table `[n, dim]` drawn from `init`.
pub fn embedding(n: usize, dim: usize, init: Init, vb: VarBuilder) -> Result<Embedding> {
    Ok(Embedding { table: vb.get_with_hints((n, dim), "weight", init)? })
}

/// `[B, T, H·dh] -> [B, H, T, dh]` (contiguous).
pub fn split_heads(x: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    x.reshape((b, t, n_heads, d / n_heads))?.transpose(1, 2)?.contiguous()
}

/// The point-wise feed-forward sublayer of a post-LN Transformer layer (RecBole's
/// `FeedForward`): `LN(x + dropout(W_2 gelu(W_1 x + b_1) + b_2))`.
#[derive(Debug, Clone)]
pub struct FeedForward {
    dense_1: Linear,
    dense_2: Linear,
    ln: LayerNorm,
    dropout: f64,
}

impl FeedForward {
    /// Weights from `init`, biases zero; parameters `dense_1`, `dense_2`, `LayerNorm` of `vb`.
    pub fn new(d: usize, inner: usize, eps: f64, init: Init, dropout: f64, vb: VarBuilder) -> Result<Self> {
        let zero = Some(Init::Const(0.0));
        Ok(Self {
            dense_1: linear(d, inner, init, zero, vb.pp("dense_1"))?,
            dense_2: linear(inner, d, init, zero, vb.pp("dense_2"))?,
            ln: LayerNorm::new(d, eps, vb.pp("LayerNorm"))?,
            dropout,
        })
    }

    /// [.., D] -> [.., D]
    pub fn forward(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let ff = self.dense_2.forward(&crate::ops::gelu(&self.dense_1.forward(x)?)?)?;
        let ff = ctx.dropout(&ff, self.dropout)?;
        self.ln.forward(&(ff + x)?)
    }
}

/// The output of a post-LN attention sublayer: `LN(x + dropout(W_o merge(P V) + b_o))`, where
/// `P` [B, H, T, T] are attention probabilities (dropped out with `attn_dropout`) and `V`
/// [B, H, T, dh] the values. Parameters `dense` and `LayerNorm` of `vb`.
#[derive(Debug, Clone)]
pub struct AttentionOutput {
    dense: Linear,
    ln: LayerNorm,
    hidden_dropout: f64,
    attn_dropout: f64,
}

impl AttentionOutput {
    pub fn new(d: usize, eps: f64, init: Init, dropouts: (f64, f64), vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            dense: linear(d, d, init, Some(Init::Const(0.0)), vb.pp("dense"))?,
            ln: LayerNorm::new(d, eps, vb.pp("LayerNorm"))?,
            hidden_dropout: dropouts.0,
            attn_dropout: dropouts.1,
        })
    }

    /// `probs` [B, H, T, T], `v` [B, H, T, dh], residual `x` [B, T, D] -> [B, T, D]
    pub fn forward(&self, probs: &Tensor, v: &Tensor, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        self.forward_with(probs, v, x, ctx, Product::Matmul)
    }

    /// As [`AttentionOutput::forward`], with `P V` computed by `product`.
    pub fn forward_with(
        &self,
        probs: &Tensor,
        v: &Tensor,
        x: &Tensor,
        ctx: &mut Ctx,
        product: Product,
    ) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let probs = ctx.dropout(probs, self.attn_dropout)?;
        let att = product.apply(&probs, v)?.transpose(1, 2)?.reshape((b, t, d))?; // [B, T, D]
        let att = ctx.dropout(&self.dense.forward(&att)?, self.hidden_dropout)?;
        self.ln.forward(&(att + x)?)
    }
}

/// How a batch of small matrix products `[.., T, K] · [.., K, N]` is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    Matmul,
    /// Broadcast multiply and sum: cheaper than a batched matmul when `T`, `K`, `N` are a few
    /// (e.g. attention within one item's modality tokens, over millions of batch entries).
    Elementwise,
}

impl Product {
    /// `a` [.., T, K], `b` [.., K, N] -> [.., T, N]
    pub fn apply(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        match self {
            Self::Matmul => a.matmul(b),
            Self::Elementwise => {
                let r = a.rank();
                a.unsqueeze(r)?.broadcast_mul(&b.unsqueeze(r - 2)?)?.sum(r - 1)
            }
        }
    }
}

/// The input side of RecBole's Transformer recommenders: the item table (`item_embedding`),
/// learned positions (`position_embedding`, [max_len, D]) and the input `LayerNorm` + dropout.
#[derive(Debug, Clone)]
pub struct TokenEmbeddings {
    items: Embedding,
    positions: Tensor,
    ln: LayerNorm,
    dropout: f64,
}

impl TokenEmbeddings {
    /// `n_items` real items (ids 1..=n_items, 0 = padding), positions up to `max_len`.
    pub fn new(
        n_items: usize,
        max_len: usize,
        d: usize,
        eps: f64,
        init: Init,
        dropout: f64,
        vb: &VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            items: embedding(n_items + 1, d, init, vb.pp("item_embedding"))?,
            positions: vb.pp("position_embedding").get_with_hints((max_len, d), "weight", init)?,
            ln: LayerNorm::new(d, eps, vb.pp("LayerNorm"))?,
            dropout,
        })
    }

    /// [B, T] -> [B, T, D]
    pub fn items(&self, items: &Tensor) -> Result<Tensor> {
        self.items.forward(items)
    }

    /// Position embeddings of cells at positions `pos` [B * T] -> [B, T, D]
    pub fn positions(&self, pos: &[u32], (b, t): (usize, usize), device: &candle_core::Device) -> Result<Tensor> {
        let d = self.positions.dim(1)?;
        let ids = Tensor::from_slice(pos, b * t, device)?;
        crate::ops::gather_rows(&self.positions, &ids)?.reshape((b, t, d))
    }

    /// The position table `[max_len, D]`.
    pub fn position_table(&self) -> &Tensor {
        &self.positions
    }

    /// `dropout(LN(x))`
    pub fn normalise(&self, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        ctx.dropout(&self.ln.forward(x)?, self.dropout)
    }

    /// Item table `[n_items + 1, D]`.
    pub fn table(&self) -> &Tensor {
        self.items.embeddings()
    }
}

/// One post-LN Transformer layer with RecBole's parameter names: `multi_head_attention.{query,
/// key, value}` projections, the attention output ([`AttentionOutput`]) and `feed_forward`.
/// Backbones choose what the queries, keys and values are computed from, and the mask.
#[derive(Debug, Clone)]
pub struct AttentionLayer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    output: AttentionOutput,
    feed_forward: FeedForward,
    pub n_heads: usize,
}

/// Sizes and regularisation of a Transformer layer.
#[derive(Debug, Clone, Copy)]
pub struct LayerShape {
    pub hidden: usize,
    pub inner: usize,
    pub n_heads: usize,
    pub layer_norm_eps: f64,
    pub init_std: f64,
    pub hidden_dropout: f64,
    pub attn_dropout: f64,
}

impl AttentionLayer {
    /// Weights ~ N(0, init_std), biases zero.
    pub fn new(s: LayerShape, vb: &VarBuilder) -> Result<Self> {
        let (d, init, zero) = (s.hidden, Init::Randn { mean: 0.0, stdev: s.init_std }, Some(Init::Const(0.0)));
        let att = vb.pp("multi_head_attention");
        Ok(Self {
            query: linear(d, d, init, zero, att.pp("query"))?,
            key: linear(d, d, init, zero, att.pp("key"))?,
            value: linear(d, d, init, zero, att.pp("value"))?,
            output: AttentionOutput::new(d, s.layer_norm_eps, init, (s.hidden_dropout, s.attn_dropout), att)?,
            feed_forward: FeedForward::new(
                d,
                s.inner,
                s.layer_norm_eps,
                init,
                s.hidden_dropout,
                vb.pp("feed_forward"),
            )?,
            n_heads: s.n_heads,
        })
    }

    /// `[B, T, D] -> [B, H, T, dh]` through `l`.
    pub fn heads(&self, l: &Linear, x: &Tensor) -> Result<Tensor> {
        split_heads(&l.forward(x)?, self.n_heads)
    }

    /// Queries and keys from `qk` [B, T, D], values from `v` [B, T, D], block-causal softmax
    /// (each cell sees `starts[c] ..= c`), output and feed-forward sublayers with residual `v`.
    pub fn attend(&self, qk: &Tensor, v: &Tensor, starts: &[u32], ctx: &mut Ctx) -> Result<Tensor> {
        let dh = v.dim(2)? / self.n_heads;
        let (q, k) = (self.heads(&self.query, qk)?, self.heads(&self.key, qk)?);
        let scores = q.matmul(&k.transpose(2, 3)?)?; // [B, H, T, T]
        let probs = crate::ops::causal_softmax(&scores, starts, 1.0 / (dh as f64).sqrt())?;
        self.finish(&probs, v, ctx)
    }

    /// [`AttentionLayer::attend`] with queries, keys and values all from `x` [B, T, D], computed
    /// for the flat cells `cells` (`row * T + column`) only: `[M, D]`, one state per cell in
    /// the order given. Keys and values still come from every cell; the queries, the output
    /// and the feed-forward sublayers run on `Q` cells per row (the most any row has, short
    /// rows padded with their column 0), not `T`.
    pub fn attend_at(&self, x: &Tensor, starts: &[u32], cells: &[u32], ctx: &mut Ctx) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let mut per_row = vec![Vec::new(); b];
        for (k, &c) in cells.iter().enumerate() {
            let row = per_row.get_mut(c as usize / t).ok_or_else(|| {
                candle_core::Error::Msg(format!("attend_at: cell {c} outside the batch of {b} x {t}"))
            })?;
            row.push(k);
        }
        let q = per_row.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let (mut flat, mut q_starts, mut cols) = (vec![0u32; b * q], vec![0u32; b * q], vec![0u32; b * q]);
        let mut pick = vec![0u32; cells.len()];
        for (r, ks) in per_row.iter().enumerate() {
            for i in 0..q {
                let c = ks.get(i).map_or(r * t, |&k| cells[k] as usize);
                (flat[r * q + i], q_starts[r * q + i], cols[r * q + i]) = (c as u32, starts[c], (c % t) as u32);
            }
            for (i, &k) in ks.iter().enumerate() {
                pick[k] = (r * q + i) as u32;
            }
        }
        let dev = x.device();
        let xq = x.reshape((b * t, d))?.index_select(&Tensor::from_vec(flat, b * q, dev)?, 0)?.reshape((b, q, d))?;
        let dh = d / self.n_heads;
        let scores = self.heads(&self.query, &xq)?.matmul(&self.heads(&self.key, x)?.transpose(2, 3)?)?; // [B, H, Q, T]
        let probs = crate::ops::softmax::causal_softmax_at(&scores, &q_starts, &cols, 1.0 / (dh as f64).sqrt())?;
        let out = self.finish_rows(&probs, x, &xq, ctx)?; // [B, Q, D]
        out.reshape((b * q, d))?.index_select(&Tensor::from_vec(pick, cells.len(), dev)?, 0)
    }

    /// The output and feed-forward sublayers for attention probabilities `probs` [B, H, T, T]
    /// over the values of `x` [B, T, D] (also the residual).
    pub fn finish(&self, probs: &Tensor, x: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        self.finish_with(probs, x, ctx, Product::Matmul)
    }

    /// As [`AttentionLayer::finish`] for some query cells only: `probs` [B, H, Tq, T] over the
    /// values of `x` [B, T, D], residual `queries` [B, Tq, D] (those cells of `x`).
    pub fn finish_rows(&self, probs: &Tensor, x: &Tensor, queries: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let v = self.heads(&self.value, x)?;
        let out = self.output.forward(probs, &v, queries, ctx)?;
        self.feed_forward.forward(&out, ctx)
    }

    /// As [`AttentionLayer::finish`], with `P V` computed by `product`.
    pub fn finish_with(&self, probs: &Tensor, x: &Tensor, ctx: &mut Ctx, product: Product) -> Result<Tensor> {
        let v = self.heads(&self.value, x)?;
        let x = self.output.forward_with(probs, &v, x, ctx, product)?;
        self.feed_forward.forward(&x, ctx)
    }
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
