//! MMSRec (Song et al., 2023, "Self-supervised multi-modal sequential recommendation"), as the
//! reference `kz-song/MMSRec` (`model/fusion.py`, `model/fusion_module.py`,
//! `model/transformer.py`) fine-tunes it: an ID-free two-tower model over frozen modality
//! features. Each item of a window gives `M` tokens, one per modality,
//!
//! `x[l, m] = LN(LN_m(P_m f_m(i_l)) + p_l + t_m)`,
//!
//! (`P_m f_m` is the run's frozen modality stream, the reference's input Linear; `p` positions,
//! `t` modality types), the window is followed by a `[MASK]` item whose `M` tokens are a
//! learned mask embedding, and a bidirectional post-LN Transformer (PyTorch's
//! `TransformerEncoderLayer`, GELU, then a final LayerNorm) runs over all `(L + 1)·M` tokens.
//! The user state is read at the mask: per modality `LN'_m(W_m h_m + b_m)`, the max over
//! modalities. The item tower runs the same encoder on every item as a one-item window (its `M`
//! tokens at position 0) and reads that item. Scores are cosines divided by a temperature τ
//! (the user state is normalised and divided by τ here, the candidates normalised), trained
//! with the cross-entropy over all items; every training step runs the item tower on all N
//! items, as the reference does.
//!
//! Training is the reference's masked-item training (`FusionEncoderForMaskedLM.mlm`,
//! `train.sample_mode = "cloze"`, the default for this model): each user's last `L` training
//! items form one window in which every item is a target with probability 0.2 (`train.mask_ratio`)
//! and the last always; a target's input is the mask token (81%), a random item (9%) or itself
//! (10%), drawn by [`crate::data::batch::cloze_batch`]; the model reads every cell and the
//! cross-entropy covers the targets. Evaluation, like the reference's `prediction`, appends the
//! mask to the history and reads it; prefix samples (`train.sample_mode = "prefix"`) train that
//! way too, one target per window.
//!
//! Positions count back from the last token, always at the last position (the reference
//! right-aligns windows in fixed-width rows). Adaptations, stated: no pretraining (no WebVid
//! corpus here; the model trains from scratch); the modalities are the run's (text and
//! attribute autoencoder codes, not CLIP features), every item has all of them; a batch is 256
//! sequences (512 under the paper preset; the reference: 1024), random replacements are drawn
//! from every item (the reference's draw leaves out the last id); dropout is not applied inside
//! the feed-forward sublayer (PyTorch drops the GELU output too).

use super::layers::{linear, AttentionLayer, Ctx, LayerNorm, LayerShape, Linear, Product};
use super::registry::{Dims, ModalityUse, SeqModel, Side, Traits};
use super::SeqBatch;
use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, Module, VarBuilder};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MmsrecConfig {
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub inner: usize,
    /// Dropout in the Transformer layers (attention probabilities and both sublayers).
    pub dropout: f64,
    /// Dropout of the token embeddings.
    pub embedding_dropout: f64,
    /// τ in `cos / τ`.
    pub temperature: f64,
    pub layer_norm_eps: f64,
    pub init_std: f64,
}

impl Default for MmsrecConfig {
    /// The reference's fine-tuning settings (`finetune_amazon.yaml`) but the width, which the
    /// preset sets (the reference's 512 is CLIP's), and the feed-forward width, kept at the
    /// reference's ratio of twice the width at the paper's 128 (the reference: 1024 at 512).
    fn default() -> Self {
        Self {
            hidden: 64,
            n_layers: 2,
            n_heads: 8,
            inner: 256,
            dropout: 0.5,
            embedding_dropout: 0.2,
            temperature: 0.05,
            layer_norm_eps: 1e-5,
            init_std: 0.02,
        }
    }
}

/// Rows per length bucket.
const BUCKET_ROWS: usize = 64;

/// Windows of at most this many tokens use element-wise attention products.
const SMALL_WINDOW: usize = 4;

/// Additive bias of a padding key.
const MASKED: f32 = -1e9;

#[derive(Debug, Clone)]
pub struct Mmsrec {
    /// Per modality: `input_norm.<m>`.
    input_norms: Vec<LayerNorm>,
    /// [max_len + 1, D]: position `P - 1` is the mask's.
    position: Tensor,
    /// [M, D]
    modality_type: Tensor,
    /// [1, D]
    mask_token: Tensor,
    ln: LayerNorm,
    layers: Vec<AttentionLayer>,
    final_norm: LayerNorm,
    /// Per modality: `output.<m>.dense`, `output.<m>.LayerNorm`.
    outputs: Vec<(Linear, LayerNorm)>,
    n_heads: usize,
    embedding_dropout: f64,
    temperature: f64,
}

impl SeqModel for Mmsrec {
    type Config = MmsrecConfig;

    fn traits(_: &MmsrecConfig) -> Traits {
        Traits { item_tower: true, cloze: true, ..Traits::bidirectional_streams(ModalityUse::Frozen) }
    }

    fn check(cfg: &MmsrecConfig) -> std::result::Result<(), String> {
        if cfg.n_heads == 0 || !cfg.hidden.is_multiple_of(cfg.n_heads) {
            return Err(format!("model.n_heads = {} must divide model.hidden = {}", cfg.n_heads, cfg.hidden));
        }
        if !(cfg.temperature > 0.0 && cfg.temperature.is_finite()) {
            return Err(format!("model.temperature must be a positive number, got {}", cfg.temperature));
        }
        for (key, p) in [("dropout", cfg.dropout), ("embedding_dropout", cfg.embedding_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("model.{key} must be in [0, 1), got {p}"));
            }
        }
        Ok(())
    }

    fn width_mut(cfg: &mut MmsrecConfig) -> &mut usize {
        &mut cfg.hidden
    }

    fn new(cfg: &MmsrecConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        let (d, m, eps) = (cfg.hidden, dims.streams, cfg.layer_norm_eps);
        let init = Init::Randn { mean: 0.0, stdev: cfg.init_std };
        let shape = LayerShape {
            hidden: d,
            inner: cfg.inner,
            n_heads: cfg.n_heads,
            layer_norm_eps: eps,
            init_std: cfg.init_std,
            hidden_dropout: cfg.dropout,
            attn_dropout: cfg.dropout,
        };
        let outputs = (0..m)
            .map(|k| -> Result<_> {
                let o = vb.pp("output").pp(k);
                Ok((
                    linear(d, d, init, Some(Init::Const(0.0)), o.pp("dense"))?,
                    LayerNorm::new(d, eps, o.pp("LayerNorm"))?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            input_norms: (0..m).map(|k| LayerNorm::new(d, eps, vb.pp("input_norm").pp(k))).collect::<Result<_>>()?,
            position: vb.pp("position_embedding").get_with_hints((dims.max_len + 1, d), "weight", init)?,
            modality_type: vb.pp("type_embedding").get_with_hints((m, d), "weight", init)?,
            mask_token: vb.get_with_hints((1, d), "mask_embedding", init)?,
            ln: LayerNorm::new(d, eps, vb.pp("LayerNorm"))?,
            layers: (0..cfg.n_layers)
                .map(|l| AttentionLayer::new(shape, &vb.pp("layer").pp(l)))
                .collect::<Result<_>>()?,
            final_norm: LayerNorm::new(d, eps, vb.pp("final_norm"))?,
            outputs,
            n_heads: cfg.n_heads,
            embedding_dropout: cfg.embedding_dropout,
            temperature: cfg.temperature,
        })
    }

    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, t) = input.items.dims2()?;
        let m = self.input_norms.len();
        if side.streams.len() != m || m == 0 {
            candle_core::bail!("mmsrec: {} modality streams, expected {m}", side.streams.len());
        }
        let d = self.mask_token.dim(1)?;
        let n_pos = self.position.dim(0)?;
        let dev = input.items.device();
        let items = input.items.flatten_all()?.to_vec1::<u32>()?;
        let lens: Vec<usize> =
            (0..b).map(|r| items[r * t..(r + 1) * t].iter().take_while(|&&v| v != 0).count()).collect();
        if let Some(&len) = lens.iter().find(|&&len| len + 1 > n_pos) {
            candle_core::bail!("mmsrec: a window of {len} items beyond the {} position embeddings", n_pos);
        }
        // Per modality: [LN_m(stream) of every cell | mask | zero] as a gather source.
        if !input.masked.is_empty() && input.masked.len() != b * t {
            candle_core::bail!("mmsrec: {} mask flags for {} cells", input.masked.len(), b * t);
        }
        let zero = Tensor::zeros((1, d), DType::F32, dev)?;
        let sources = side
            .streams
            .iter()
            .zip(&self.input_norms)
            .map(|(s, ln)| {
                Tensor::cat(&[ln.forward(&s.reshape((b * t, d))?)?, self.mask_token.clone(), zero.clone()], 0)
            })
            .collect::<Result<Vec<_>>>()?;
        let (mask_row, zero_row) = ((b * t) as u32, (b * t + 1) as u32);

        // Prefix batches: each row's cells, then the mask, read at the mask. Cloze batches
        // (masked-item training): each row's cells, the masked ones replaced by the mask token,
        // read at every cell.
        let cloze = !input.masked.is_empty();
        let tokens_of = |r: usize| lens[r] + usize::from(!cloze);
        let mut order: Vec<usize> = (0..b).collect();
        order.sort_by_key(|&r| lens[r]);
        let mut outs = Vec::with_capacity(b.div_ceil(BUCKET_ROWS));
        // Per output row: the batch cell it belongs to (none for an empty prefix row).
        let mut cell_of: Vec<Option<usize>> = Vec::with_capacity(b);
        for rows in order.chunks(BUCKET_ROWS) {
            // Row k: its tokens from column 0, padding after; positions count back from the last
            // token at P - 1.
            let w = rows.iter().map(|&r| tokens_of(r)).max().unwrap_or(1);
            let (mut pick, mut pos, mut valid, mut read) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (i, &r) in rows.iter().enumerate() {
                let n = tokens_of(r);
                for col in 0..w {
                    let cell = r * t + col;
                    pick.push(if col >= n {
                        zero_row
                    } else if col == lens[r] || (cloze && input.masked[cell]) {
                        mask_row
                    } else {
                        cell as u32
                    });
                    pos.push(if col < n { (n_pos - n + col) as u32 } else { 0 });
                    valid.push(col < n);
                }
                if cloze {
                    read.extend((0..lens[r]).map(|col| (i * w + col) as u32));
                    cell_of.extend((0..lens[r]).map(|col| Some(r * t + col)));
                } else {
                    read.push((i * w + lens[r]) as u32);
                    cell_of.push(lens[r].checked_sub(1).map(|col| r * t + col));
                }
            }
            let k = rows.len();
            let pick = Tensor::from_vec(pick, k * w, dev)?;
            let tokens = sources.iter().map(|s| s.index_select(&pick, 0)).collect::<Result<Vec<_>>>()?;
            let tokens = Tensor::stack(&tokens, 1)?.reshape((k, w, m, d))?;
            let key_bias: Vec<f32> =
                valid.iter().flat_map(|&v| std::iter::repeat_n(if v { 0.0 } else { MASKED }, m)).collect();
            let key_bias = Tensor::from_vec(key_bias, (k, 1, 1, w * m), dev)?;
            let n_read = read.len();
            outs.push(self.encode(&tokens, &pos, &key_bias, &Tensor::from_vec(read, n_read, dev)?, ctx)?);
        }
        let out = Tensor::cat(&outs, 0)?; // [R, D]
        let out = normalise(&out)?.affine(1.0 / self.temperature, 0.0)?;
        super::place_cells(&out, &cell_of, (b, t))
    }

    fn item_table(&self) -> Option<&Tensor> {
        None
    }

    /// The item tower: every item as a one-item window, normalised.
    fn candidates(&self, all: &[Tensor], ctx: &mut Ctx) -> Result<Tensor> {
        if all.len() != self.input_norms.len() {
            candle_core::bail!(
                "mmsrec: {} modality tables for the item tower, expected {}",
                all.len(),
                self.input_norms.len()
            );
        }
        let (n, d) = all[0].dims2()?;
        let tokens = all.iter().zip(&self.input_norms).map(|(s, ln)| ln.forward(s)).collect::<Result<Vec<_>>>()?;
        let tokens = Tensor::stack(&tokens, 1)?.reshape((n, 1, all.len(), d))?;
        let read = Tensor::arange(0u32, n as u32, tokens.device())?;
        let no_bias = Tensor::zeros((n, 1, 1, all.len()), DType::F32, tokens.device())?;
        normalise(&self.encode(&tokens, &vec![0; n], &no_bias, &read, ctx)?)
    }
}

impl Mmsrec {
    /// `tokens` [K, W, M, D] at positions `pos` [K·W] (padding keys masked by the additive
    /// `key_bias` [K, 1, 1, W·M]) -> the fused output at the cells `read` [R] (flat indices into
    /// K·W): [R, D].
    fn encode(&self, tokens: &Tensor, pos: &[u32], key_bias: &Tensor, read: &Tensor, ctx: &mut Ctx) -> Result<Tensor> {
        let (k, w, m, d) = tokens.dims4()?;
        let dev = tokens.device();
        let pos = self.position.index_select(&Tensor::from_slice(pos, k * w, dev)?, 0)?.reshape((k, w, 1, d))?;
        let x = tokens.broadcast_add(&pos)?.broadcast_add(&self.modality_type.reshape((1, 1, m, d))?)?;
        let mut x = ctx.dropout(&self.ln.forward(&x)?, self.embedding_dropout)?.reshape((k, w * m, d))?;
        let scale = 1.0 / ((d / self.n_heads) as f64).sqrt();
        // The item tower's windows are one item's M tokens: millions of tiny products.
        let product = if w * m <= SMALL_WINDOW { Product::Elementwise } else { Product::Matmul };
        for layer in &self.layers {
            let (q, key) = (layer.heads(&layer.query, &x)?, layer.heads(&layer.key, &x)?);
            let scores = product.apply(&q, &key.t()?)?; // [K, H, W·M, W·M]
            let probs = crate::ops::biased_softmax(&scores, scale, key_bias)?;
            x = layer.finish_with(&probs, &x, ctx, product)?;
        }
        let at = self.final_norm.forward(&x.reshape((k * w, m, d))?.index_select(read, 0)?)?; // [R, M, D]
        let fused = self
            .outputs
            .iter()
            .enumerate()
            .map(|(j, (dense, ln))| ln.forward(&dense.forward(&at.narrow(1, j, 1)?.squeeze(1)?)?))
            .collect::<Result<Vec<_>>>()?;
        Tensor::stack(&fused, 1)?.max(1) // [R, D]
    }
}

/// `x / max(‖x‖, 1e-12)` over the last dimension (PyTorch's `F.normalize`).
fn normalise(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.maximum(1e-12)?;
    x.broadcast_div(&norm)
}
