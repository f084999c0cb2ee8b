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
//! No official code exists. Two variants on SASRec's layers (`model.variant`):
//! - `causal` (the default): next-item cross-entropy under a causal mask, one pass per
//!   sequence.
//! - `cloze`: the paper's BERT4Rec-style model. Attention is bidirectional over the window's
//!   real cells (padding keys masked); a learned mask embedding `m` takes the place of the
//!   item embedding at a masked cell, `R_0 = LN(m)` there, and the masked cell's side streams
//!   are zero (they are the target's). Training is masked-item training
//!   (`train.sample_mode = "cloze"`, [`crate::data::batch::cloze_batch`]: each user's last `L`
//!   training items, every cell a target with probability `train.mask_ratio`, the last always).
//!   To predict, the mask is appended after the history (at position `len`, so the position
//!   table has `max_len + 1` rows) and read, as BERT4Rec predicts.

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

/// How NOVA attends and trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Causal attention, next-item training.
    #[default]
    Causal,
    /// Bidirectional attention with a mask token, masked-item training (the paper's).
    Cloze,
}

impl Variant {
    fn is_causal(&self) -> bool {
        *self == Self::Causal
    }
}

transformer_config! {
    /// SASRec's RecBole settings (no authoritative NOVA defaults exist) and the gating fuser.
    NovaConfig {
        fuser: Fuser = Fuser::Gate,
        /// Left out of the run file when causal (run ids from before the switch stay).
        #[serde(skip_serializing_if = "Variant::is_causal")]
        variant: Variant = Variant::Causal,
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
    /// [1, D]: the cloze variant's mask embedding (`mask_embedding`).
    mask: Option<Tensor>,
    max_len: usize,
}

/// An additive attention bias that hides a key.
const MASKED: f32 = -1e9;

impl SeqModel for Nova {
    type Config = NovaConfig;

    fn traits(cfg: &NovaConfig) -> Traits {
        let cloze = cfg.variant == Variant::Cloze;
        Traits {
            causal: !cloze,
            inputs: Inputs::Streams,
            modality: ModalityUse::Required(ModalityMode::Tuned),
            attribute_labels: false,
            clusters: None,
            item_tower: false,
            cloze,
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
        let cloze = cfg.variant == Variant::Cloze;
        // The cloze variant appends the mask after a history of up to max_len items.
        let positions = Dims { max_len: dims.max_len + usize::from(cloze), ..dims.clone() };
        let (embeddings, layers) = transformer(cfg.shape(), cfg.n_layers, &positions, &vb)?;
        let (d, init) = (cfg.hidden, Init::Randn { mean: 0.0, stdev: cfg.init_std });
        let mask = cloze.then(|| vb.get_with_hints((1, d), "mask_embedding", init)).transpose()?;
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
        Ok(Self { embeddings, layers, fusers, mask, max_len: dims.max_len })
    }

    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        if let Some(mask) = &self.mask {
            return self.forward_cloze(mask, input, side, ctx);
        }
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

impl Nova {
    /// The cloze variant. A cloze batch ([`SeqBatch::masked`] set): each row's cells, the
    /// masked ones replaced by the mask, a state at every cell. Any other batch (prefix
    /// samples, evaluation windows): each row's cells, then the mask at column `len`, read there
    /// and placed at the row's last cell.
    fn forward_cloze(&self, mask: &Tensor, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, t) = input.items.dims2()?;
        let d = mask.dim(1)?;
        let dev = input.items.device();
        let items = input.items.flatten_all()?.to_vec1::<u32>()?;
        let lens: Vec<usize> =
            (0..b).map(|r| items[r * t..(r + 1) * t].iter().take_while(|&&v| v != 0).count()).collect();
        let cloze = !input.masked.is_empty();
        if cloze && input.masked.len() != b * t {
            candle_core::bail!("nova: {} mask flags for {} cells", input.masked.len(), b * t);
        }
        let tokens_of = |r: usize| lens[r] + usize::from(!cloze);
        // A cloze batch keeps its columns (a state per cell); a prefix batch gets one for the mask.
        let w = if cloze { t } else { (0..b).map(tokens_of).max().unwrap_or(0).max(1) };
        if let Some(len) = lens.iter().find(|&&len| len > self.max_len) {
            candle_core::bail!("nova: a window of {len} items beyond max_len {}", self.max_len);
        }
        // Gather sources: [every cell | mask | zero] for the items, [every cell | zero] for the
        // side streams (a masked cell's streams would be its target's).
        let (mask_row, zero_row) = ((b * t) as u32, (b * t + 1) as u32);
        let side_zero = (b * t) as u32;
        let mut pick = Vec::with_capacity(b * w);
        let (mut side_pick, mut pos, mut bias) = (pick.clone(), pick.clone(), Vec::with_capacity(b * w));
        let (mut cell_of, mut read) = (Vec::new(), Vec::new());
        for (r, &len) in lens.iter().enumerate() {
            let n = tokens_of(r);
            for col in 0..w {
                let cell = r * t + col;
                let masked = if cloze { col < len && input.masked[cell] } else { col == len };
                let real = col < len && !masked;
                pick.push(match (real, masked) {
                    (true, _) => cell as u32,
                    (false, true) => mask_row,
                    (false, false) => zero_row,
                });
                side_pick.push(if real { cell as u32 } else { side_zero });
                pos.push(if col < n { col as u32 } else { 0 });
                bias.push(if col < n { 0.0 } else { MASKED });
            }
            if !cloze {
                read.push((r * w + len) as u32);
                cell_of.push(len.checked_sub(1).map(|col| r * t + col));
            }
        }
        let pick = Tensor::from_vec(pick, b * w, dev)?;
        let side_pick = Tensor::from_vec(side_pick, b * w, dev)?;
        let zero = Tensor::zeros((1, d), mask.dtype(), dev)?;
        let ids = self.embeddings.items(&input.items)?.reshape((b * t, d))?;
        let x = Tensor::cat(&[&ids, mask, &zero], 0)?.index_select(&pick, 0)?.reshape((b, w, d))?;
        let streams = side
            .streams
            .iter()
            .map(|s| Tensor::cat(&[&s.reshape((b * t, d))?, &zero], 0)?.index_select(&side_pick, 0)?.reshape((b, w, d)))
            .collect::<Result<Vec<_>>>()?;
        let positions = self.embeddings.positions(&pos, (b, w), dev)?;
        let key_bias = Tensor::from_vec(bias, (b, 1, 1, w), dev)?;
        let mut r = self.embeddings.normalise(&x, ctx)?;
        for (layer, fuse) in self.layers.iter().zip(&self.fusers) {
            let mut features = vec![r.clone(), positions.clone()];
            features.extend(streams.iter().cloned());
            let fused = fuse.forward(&features)?;
            let (q, k) = (layer.heads(&layer.query, &fused)?, layer.heads(&layer.key, &fused)?);
            let scale = 1.0 / ((d / layer.n_heads) as f64).sqrt();
            let probs = crate::ops::biased_softmax(&q.matmul(&k.t()?)?, scale, &key_bias)?;
            r = layer.finish(&probs, &r, ctx)?;
        }
        if cloze {
            return Ok(r);
        }
        let out = r.reshape((b * w, d))?.index_select(&Tensor::from_vec(read, b, dev)?, 0)?;
        super::place_cells(&out, &cell_of, (b, t))
    }
}
