//! DIF-SR (Xie et al., SIGIR 2022): SASRec with the side information moved out of the input
//! and into the attention scores, as in the reference `AIM-SE/DIF-SR` (`SASRecD`,
//! `DIFMultiHeadAttention`). The item input carries no position; per layer and head the
//! attention scores of each stream are computed separately,
//!
//! `S_item = Q_v K_vᵀ`, `S_pos = Q_p K_pᵀ` (from the position embeddings),
//! `S_m = Q_m K_mᵀ` for each modality stream `m` (`P_m E_m[i]`, see [`super::fusion`]),
//!
//! fused (`sum`: `S_item + S_pos + Σ_m S_m`; `concat`: a Linear over the concatenated score
//! rows; `gate` (default): `Σ_k softmax_k(w₂ᵀ relu(W₁ S_k + b₁) + b₂) S_k` over the streams),
//! scaled by `1/√d_h`, masked causally and applied to the item values only. Training adds the
//! attribute-prediction loss `λ · mean BCE(W_a h + b_a, y)`, `y` the multi-hot attributes of
//! the target item (reference: λ = 10 on Beauty).
//!
//! Side information (`model.side`):
//! - `categorical` (the reference's): one stream, each item's attribute ids (categories and
//!   brand, the attributes modality) embedded and sum-pooled, `s_i = Σ_{a ∈ A(i)} T[a]`
//!   (`pooling_mode: sum`). The reference's attribute table is not a registered module
//!   (RecBole's `ContextSeqEmbAbstractLayer` keeps it in a plain dict), so it keeps PyTorch's
//!   `nn.Embedding` init `N(0, 1)` and is never trained; so here (a parameter the optimiser
//!   never receives a gradient for). Its width is the hidden width (the reference's Beauty
//!   config: 64 at hidden 256; the same 64 at this harness's default hidden 64).
//! - `codes` (the default, the runs before 2026-12-07): the run's modality embeddings (text
//!   and attributes codes through projections to the hidden width) as the side streams.
//!
//! Adaptations, stated: every stream has the hidden width. The `concat` and `gate` fusions mix a
//! query's scores over all `max_len` key columns with a Linear before the mask (as the
//! reference does, padding columns included), so they see later positions: the model is not
//! causal with them and trains on prefix samples in rows padded to `max_len`; `sum` is causal.
//! With one prefix per row, read at its last cell, the top layer computes that cell's query
//! only (keys and values from every cell, so the output there is unchanged).

use super::fusion::ModalityMode;
use super::layers::{linear, AttentionLayer, Ctx, Linear, TokenEmbeddings};
use super::registry::{Dims, Inputs, ModalityUse, SeqModel, Side, Traits};
use super::sasrec::{check_heads, transformer_config};
use super::SeqBatch;
use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, Module, VarBuilder};
use serde::{Deserialize, Serialize};

/// How the per-stream attention scores are fused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScoreFusion {
    Sum,
    Concat,
    #[default]
    Gate,
}

/// What DIF-SR's side streams are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SideInfo {
    /// The run's modality embeddings, one stream per modality.
    #[default]
    Codes,
    /// The items' attribute ids, embedded and sum-pooled (the reference).
    Categorical,
}

impl SideInfo {
    fn is_codes(&self) -> bool {
        *self == Self::Codes
    }
}

transformer_config! {
    /// SASRec's RecBole settings (the paper trains every model at the same width and batch),
    /// the reference's gate fusion and λ = 10.
    DifSrConfig {
        fusion: ScoreFusion = ScoreFusion::Gate,
        /// Weight λ of the attribute-prediction loss (0: off). Needs the attributes modality.
        attribute_loss: f64 = 10.0,
        /// Left out of the run file when `codes` (run ids from before the switch stay).
        #[serde(skip_serializing_if = "SideInfo::is_codes")]
        side: SideInfo = SideInfo::Codes,
    }
}

#[derive(Debug, Clone)]
enum Fuse {
    Sum,
    /// Linear((2 + M)·L -> L)
    Concat(Linear),
    /// Linear(L -> L), ReLU, Linear(L -> 1)
    Gate(Linear, Linear),
}

/// One DIF-SR layer: a Transformer layer whose item queries and keys are joined by the
/// position and per-modality ones (`query_p`, `key_p`, `query_layers.<m>`, `key_layers.<m>`)
/// and a score fusion.
#[derive(Debug, Clone)]
struct Block {
    layer: AttentionLayer,
    query_p: Linear,
    key_p: Linear,
    query_m: Vec<Linear>,
    key_m: Vec<Linear>,
    fuse: Fuse,
}

impl Block {
    fn new(cfg: &DifSrConfig, streams: usize, max_len: usize, vb: VarBuilder) -> Result<Self> {
        let layer = AttentionLayer::new(cfg.shape(), &vb)?;
        let (d, init, zero) = (cfg.hidden, Init::Randn { mean: 0.0, stdev: cfg.init_std }, Some(Init::Const(0.0)));
        let att = vb.pp("multi_head_attention");
        let lin = |name: &str| linear(d, d, init, zero, att.pp(name));
        let per_stream = |name: &str| -> Result<Vec<Linear>> {
            (0..streams).map(|m| linear(d, d, init, zero, att.pp(name).pp(m))).collect()
        };
        let fl = att.pp("fusion_layer");
        let fuse = match cfg.fusion {
            ScoreFusion::Sum => Fuse::Sum,
            ScoreFusion::Concat => Fuse::Concat(linear(max_len * (2 + streams), max_len, init, zero, fl)?),
            ScoreFusion::Gate => Fuse::Gate(
                linear(max_len, max_len, init, zero, fl.pp("projection").pp(0))?,
                linear(max_len, 1, init, zero, fl.pp("projection").pp(2))?,
            ),
        };
        Ok(Self {
            layer,
            query_p: lin("query_p")?,
            key_p: lin("key_p")?,
            query_m: per_stream("query_layers")?,
            key_m: per_stream("key_layers")?,
            fuse,
        })
    }

    /// `x`, `pos`: [B, T, D], `streams`: M × [B, T, D], additive `mask` [B, 1, T, T] ->
    /// [B, Tq, D]: every cell (`last` None, Tq = T) or, for each row `r`, only the cell
    /// `last[r]` (flat indices into `B·T`, Tq = 1; keys and values still come from every cell).
    fn forward(
        &self,
        x: &Tensor,
        pos: &Tensor,
        streams: &[Tensor],
        mask: &Tensor,
        last: Option<&Tensor>,
        ctx: &mut Ctx,
    ) -> Result<Tensor> {
        let layer = &self.layer;
        let (b, t, d) = x.dims3()?;
        let dh = d / layer.n_heads;
        // The query cells of `input` [B, T, D]: [B, Tq, D].
        let rows = |input: &Tensor| -> Result<Tensor> {
            match last {
                Some(idx) => crate::ops::gather_rows(&input.reshape((b * t, d))?, idx)?.reshape((b, 1, d)),
                None => Ok(input.clone()),
            }
        };
        let scores = |q: &Linear, k: &Linear, input: &Tensor| -> Result<Tensor> {
            layer.heads(q, &rows(input)?)?.matmul(&layer.heads(k, input)?.transpose(2, 3)?)
            // [B, H, Tq, T]
        };
        // Stream order as the reference: modalities, item, position.
        let mut all = Vec::with_capacity(streams.len() + 2);
        for ((q, k), s) in self.query_m.iter().zip(&self.key_m).zip(streams) {
            all.push(scores(q, k, s)?);
        }
        all.push(scores(&layer.query, &layer.key, x)?);
        all.push(scores(&self.query_p, &self.key_p, pos)?);
        let fused = match &self.fuse {
            Fuse::Sum => {
                let mut acc = all[0].clone();
                for s in &all[1..] {
                    acc = (acc + s)?;
                }
                acc
            }
            Fuse::Concat(l) => l.forward(&Tensor::cat(&all, 3)?)?, // [B, H, Tq, (2+M)·T] -> [B, H, Tq, T]
            Fuse::Gate(l1, l2) => {
                let stack = Tensor::stack(&all, 3)?; // [B, H, Tq, K, T]
                let energy = l2.forward(&l1.forward(&stack)?.relu()?)?.squeeze(4)?; // [B, H, Tq, K]
                let w = candle_nn::ops::softmax(&energy, D::Minus1)?;
                stack.broadcast_mul(&w.unsqueeze(4)?)?.sum(3)? // [B, H, Tq, T]
            }
        };
        let mask = match last {
            Some(idx) => mask.reshape((b * t, t))?.index_select(idx, 0)?.reshape((b, 1, 1, t))?,
            None => mask.clone(),
        };
        let probs = crate::ops::biased_softmax(&fused, 1.0 / (dh as f64).sqrt(), &mask)?;
        layer.finish_rows(&probs, x, &rows(x)?, ctx)
    }
}

#[derive(Debug, Clone)]
pub struct DifSr {
    embeddings: TokenEmbeddings,
    blocks: Vec<Block>,
    /// Attribute predictor and the labels `[N + 1, A]`.
    attributes: Option<(Linear, Tensor, f64)>,
    /// Rows are padded to this width (`concat` and `gate` fusions).
    full_width: Option<usize>,
    /// `side = "categorical"`: the attribute table `T` [A, D] (never trained) and each item's
    /// attribute columns.
    categorical: Option<(Tensor, Vec<Vec<u32>>)>,
}

impl SeqModel for DifSr {
    type Config = DifSrConfig;

    fn traits(cfg: &DifSrConfig) -> Traits {
        Traits {
            causal: cfg.fusion == ScoreFusion::Sum,
            inputs: Inputs::Streams,
            modality: match cfg.side {
                SideInfo::Codes => ModalityUse::Required(ModalityMode::Tuned),
                SideInfo::Categorical => ModalityUse::Attributes,
            },
            attribute_labels: cfg.attribute_loss > 0.0 || cfg.side == SideInfo::Categorical,
            clusters: None,
            item_tower: false,
            cloze: false,
            own_row_groups: false,
        }
    }

    fn check(cfg: &DifSrConfig) -> std::result::Result<(), String> {
        if cfg.attribute_loss.is_nan() || cfg.attribute_loss < 0.0 {
            return Err(format!("model.attribute_loss must be >= 0, got {}", cfg.attribute_loss));
        }
        check_heads(cfg.hidden, cfg.n_heads)
    }

    fn width_mut(cfg: &mut DifSrConfig) -> &mut usize {
        &mut cfg.hidden
    }

    fn new(cfg: &DifSrConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        let init = Init::Randn { mean: 0.0, stdev: cfg.init_std };
        let d = cfg.hidden;
        let embeddings =
            TokenEmbeddings::new(dims.n_items, dims.max_len, d, cfg.layer_norm_eps, init, cfg.hidden_dropout, &vb)?;
        let categorical = match (cfg.side, &dims.attribute_labels) {
            (SideInfo::Codes, _) => None,
            (SideInfo::Categorical, None) => {
                candle_core::bail!("difsr: model.side = \"categorical\" needs the attributes modality")
            }
            (SideInfo::Categorical, Some(labels)) => {
                let a = labels.dim(1)?;
                let table = vb.pp("feature_embed_layer_list").pp(0).get_with_hints(
                    (a, d),
                    "token_seq_embedding",
                    Init::Randn { mean: 0.0, stdev: 1.0 },
                )?;
                let columns = labels
                    .to_vec2::<f32>()?
                    .iter()
                    .map(|row| row.iter().enumerate().filter(|(_, &y)| y != 0.0).map(|(c, _)| c as u32).collect())
                    .collect();
                Some((table, columns))
            }
        };
        let streams = if categorical.is_some() { 1 } else { dims.streams };
        let enc = vb.pp("trm_encoder").pp("layer");
        let blocks =
            (0..cfg.n_layers).map(|l| Block::new(cfg, streams, dims.max_len, enc.pp(l))).collect::<Result<_>>()?;
        let attributes = match (&dims.attribute_labels, cfg.attribute_loss > 0.0) {
            (Some(labels), true) => {
                let a = labels.dim(1)?;
                let ap = linear(d, a, init, Some(Init::Const(0.0)), vb.pp("ap").pp(0))?;
                Some((ap, labels.clone(), cfg.attribute_loss))
            }
            (None, true) => candle_core::bail!("difsr: model.attribute_loss > 0 needs the attributes modality"),
            _ => None,
        };
        let full_width = (cfg.fusion != ScoreFusion::Sum).then_some(dims.max_len);
        Ok(Self { embeddings, blocks, attributes, full_width, categorical })
    }

    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, t) = input.items.dims2()?;
        let width = self.full_width.unwrap_or(t).max(t);
        let dev = input.items.device();
        // Padding cells carry zero item and side vectors (the reference's padding_idx row and
        // its mean over no attributes) and, in unpacked rows, the column as position.
        let items = input.items.pad_with_zeros(1, 0, width - t)?; // [B, W]
        let mask = items.ne(0u32)?.to_dtype(DType::F32)?.unsqueeze(2)?; // [B, W, 1]
        let padded = |s: &Tensor| s.pad_with_zeros(1, 0, width - t)?.broadcast_mul(&mask);
        let x = padded(&self.embeddings.items(&input.items)?)?;
        let streams = match &self.categorical {
            Some((table, columns)) => vec![padded(&attribute_stream(table, columns, &input.items)?)?],
            None => side.streams.iter().map(padded).collect::<Result<Vec<_>>>()?,
        };
        let items_v = items.flatten_all()?.to_vec1::<u32>()?;
        // A real cell is at its own position; a padding cell at its column (arange positions).
        let pos: Vec<u32> = (0..b * width)
            .map(|k| {
                let (r, c) = (k / width, k % width);
                if c < t && items_v[k] != 0 {
                    input.pos[r * t + c]
                } else {
                    c as u32
                }
            })
            .collect();
        let mask = attention_mask(&items_v, &pos, width); // [B, 1, W, W]
        let mask = Tensor::from_vec(mask, (b, 1, width, width), dev)?;
        let pos_emb = self.embeddings.positions(&pos, (b, width), dev)?;
        let mut x = self.embeddings.normalise(&x, ctx)?;
        // Padded rows (gate, concat) hold one prefix each, read at its last cell only: the top
        // layer computes that cell's query alone.
        let lens: Vec<usize> =
            (0..b).map(|r| items_v[r * width..r * width + t].iter().filter(|&&i| i != 0).count()).collect();
        let last = match self.full_width {
            Some(_) => {
                let idx: Vec<u32> = lens.iter().enumerate().map(|(r, &n)| (r * width + n.max(1) - 1) as u32).collect();
                Some(Tensor::from_vec(idx, b, dev)?)
            }
            None => None,
        };
        let n = self.blocks.len();
        for (i, block) in self.blocks.iter().enumerate() {
            let top = if i + 1 == n { last.as_ref() } else { None };
            x = block.forward(&x, &pos_emb, &streams, &mask, top, ctx)?;
        }
        match last {
            Some(_) => {
                let cells: Vec<Option<usize>> = lens.iter().map(|&n| n.checked_sub(1)).collect();
                super::at_cells(&x.squeeze(1)?, &cells, t)
            }
            None => x.narrow(1, 0, t),
        }
    }

    fn item_table(&self) -> Option<&Tensor> {
        Some(self.embeddings.table())
    }

    /// `λ · mean_{m, a} BCE(W_a h_m + b_a, y[target_m, a])`
    fn aux_loss(&self, h: &Tensor, targets: &Tensor) -> Result<Option<Tensor>> {
        let Some((ap, labels, lambda)) = &self.attributes else { return Ok(None) };
        let logits = ap.forward(h)?; // [M, A]
        let y = labels.index_select(targets, 0)?; // [M, A]
                                                  // BCE with logits, stably: max(x, 0) - x y + log(1 + exp(-|x|)).
        let bce = ((logits.relu()? - (&logits * &y)?)? + logits.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
        Ok(Some(bce.mean_all()?.affine(*lambda, 0.0)?))
    }
}

/// The sum-pooled attribute embeddings of `items` [B, T]: `s = Σ_{a ∈ A(i)} T[a]` [B, T, D]
/// (zero for padding and for an item without attributes). `T` is a constant here: the
/// reference never trains it.
fn attribute_stream(table: &Tensor, columns: &[Vec<u32>], items: &Tensor) -> Result<Tensor> {
    let (b, t) = items.dims2()?;
    let d = table.dim(1)?;
    let rows = table.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let mut out = vec![0f32; b * t * d];
    for (cell, &item) in items.flatten_all()?.to_vec1::<u32>()?.iter().enumerate() {
        let Some(cols) = columns.get(item as usize) else {
            candle_core::bail!("difsr: item {item} beyond the attribute labels of {} items", columns.len())
        };
        let acc = &mut out[cell * d..(cell + 1) * d];
        for &c in cols {
            acc.iter_mut().zip(&rows[c as usize]).for_each(|(o, v)| *o += v);
        }
    }
    Tensor::from_vec(out, (b, t, d), items.device())?.to_dtype(table.dtype())
}

/// RecBole's additive attention mask, `[B, 1, W, W]` row-major: 0 where cell `i` may attend
/// to cell `j` (`j` a real item of `i`'s sequence at or before `i`), -10000 elsewhere.
/// `pos[c]` is cell `c`'s position within its sequence, so its sequence starts at column
/// `c - pos[c]`.
fn attention_mask(items: &[u32], pos: &[u32], width: usize) -> Vec<f32> {
    let rows = items.len() / width;
    let mut out = vec![-10000f32; rows * width * width];
    for r in 0..rows {
        for i in 0..width {
            let start = i - pos[r * width + i] as usize;
            for j in start..=i {
                if items[r * width + j] != 0 {
                    out[(r * width + i) * width + j] = 0.0;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_is_causal_per_sequence_and_hides_padding() {
        // One row: a sequence of 2, a sequence of 1, one padding cell (at its column).
        let m = attention_mask(&[5, 6, 7, 0], &[0, 1, 0, 3], 4);
        let open = |i: usize| -> Vec<usize> { (0..4).filter(|&j| m[i * 4 + j] == 0.0).collect() };
        assert_eq!(open(0), vec![0]);
        assert_eq!(open(1), vec![0, 1]);
        assert_eq!(open(2), vec![2]);
        assert_eq!(open(3), vec![0, 1, 2], "a padding cell sees the real cells before it");
    }
}
