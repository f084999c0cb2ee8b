//! The released KDSR network (`model_corvector.py` of `AnonymousPubCode/ECIR24-KDSR` @ ae4981c,
//! with `aggregator.RGATLayer` of `HoldenHu/KDSR` @ 86dfb1f): the model of the logged
//! Beauty run whose best results are Table 2's KDSR row (../shared/paper/official-code-notes.md
//! §4.1 and §7). It is not MMSR.
//!
//! Per window, a graph over its unique items (sorted) with MMSR's item relations
//! ([`super::mmsr::graph`]: SELF, OUT, IN, BI, as the reference's `data_utils` builds them).
//! With `x_v` the ID embedding of node `v`:
//! - **RGAT** (one layer): `z = x W` (`W` [D, D]); for a pair `(u, v)` with relation `r`,
//!   `e_uv = κ_r · LeakyReLU_{0.1}(a_rᵀ (z_u ⊙ z_v))` (`κ_r` a learnable scalar per relation,
//!   the reference's "amplifier"), and `-9e15` for a pair without an edge;
//!   `g_u = softmax_v(drop(e_u)) z`. The released order drops the masked logits before the
//!   softmax, so in training a dropped `-9e15` becomes 0 and a non-neighbour or padding node
//!   gets weight; `attention_dropout_on = "weights"` is the usual order,
//!   `g_u = drop(softmax_v(e_u)) z`.
//! - **Gate** per node over the candidates `c = [x_u, g_u, E_1[u], …, E_M[u]]` (`E_m` the
//!   modality tables themselves, [`Inputs::Tables`]): `s_k = w₂ᵀ ReLU(W₁ c_k + b₁) + b₂`,
//!   `h_u = drop(Σ_k softmax_k(s) c_k)`.
//! - **Readout** `last_sum`: `o = Σ_{k < n} h_{node(max(len - 1 - k, 0))}` (`n = last_n` = 2:
//!   the last two cells' nodes; a one-item window adds its node twice), placed at the row's
//!   last cell; items are scored by dot products with the ID table.
//!
//! Init as the reference: the ID table `N(0, 0.02)` (row 0 too, never trained: the reference's
//! `padding_idx`), the gate's layers `N(0, 0.02)` with zero biases, the RGAT parameters
//! `U(±1/√D)`; the modality tables start at the autoencoder codes. The reference's unused
//! RGAT `bias` and `feed_forward_layer` are left out.
//!
//! The reference pads every graph to its data's longest window (50 on Beauty); here the node
//! axis is padded to `max_len`, padding nodes reading ID row 0. They get weight only through
//! the released dropout order. Only the read nodes' attention rows, gate and output are
//! computed (no other node is read); a node read twice gets one dropout mask and counts twice,
//! as in the reference. Not causal: prefix samples and one evaluation window per instance.

use super::layers::{linear, Ctx, Linear};
use super::mmsr::graph::{self, Bundles, BI, SELF};
use super::mmsr::{leaky, HOMO_MASKED};
use super::registry::{Dims, Inputs, ModalityUse, SeqModel, Side, Traits};
use super::{ModalityMode, SeqBatch};
use crate::ops::{biased_softmax, gather_rows};
use candle_core::{DType, Result, Tensor, D};
use candle_nn::{Init, Module, VarBuilder};
use serde::{Deserialize, Serialize};

/// Where the RGAT layer's attention dropout acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionDropout {
    /// On the masked logits, before the softmax (the released code).
    #[default]
    Logits,
    /// On the attention weights, after the masked softmax.
    Weights,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KdsrRgatConfig {
    pub embedding: usize,
    /// Dropout on the gate's output (`dropout_output`).
    pub dropout: f64,
    /// Dropout in the RGAT layer (`dropout_atten`).
    pub attention_dropout: f64,
    pub attention_dropout_on: AttentionDropout,
    /// Negative slope of the LeakyReLU on the logits (`alpha`).
    pub leaky_slope: f64,
    /// Cells summed by the `last_sum` readout (`last_n`).
    pub last_n: usize,
}

impl Default for KdsrRgatConfig {
    /// `config/KDSR--4--beauty.yaml` and the logged Beauty run.
    fn default() -> Self {
        Self {
            embedding: 128,
            dropout: 0.4,
            attention_dropout: 0.2,
            attention_dropout_on: AttentionDropout::Logits,
            leaky_slope: 0.1,
            last_n: 2,
        }
    }
}

#[derive(Debug, Clone)]
pub struct KdsrRgat {
    /// [N + 1, D]
    item_embedding: Tensor,
    /// [D, D], [4, D] (SELF, OUT, IN, BI), [4]
    w: Tensor,
    a: Tensor,
    amplifier: Tensor,
    gate_hidden: Linear,
    gate_out: Linear,
    modalities: usize,
    max_len: usize,
    cfg: KdsrRgatConfig,
}

/// What a batch of windows reads: its graphs padded to `n` nodes, and per row `q` read slots
/// (the last `q` cells, clamped at the first).
#[derive(Debug, Clone, PartialEq)]
struct Reads {
    n: usize,
    /// [B * n] node items (0 = padding node).
    nodes: Vec<u32>,
    /// [B * n] 1 for a real node.
    real: Vec<f32>,
    /// [B * q]: the slot's node `row * n + u`.
    slot_node: Vec<u32>,
    /// [B * q]: the slot's cell `row * T + c`.
    slot_cell: Vec<u32>,
    /// [B * q]: how often the readout counts the slot (a node read twice: 2 on its first slot).
    count: Vec<f32>,
    /// [B, 4, q, n]: the relation of (slot node, v), one-hot.
    rel: Vec<f32>,
    /// [B, q, n]: 0 on an edge, -9e15 elsewhere.
    bias: Vec<f32>,
    /// Per row: its last cell (None for an empty row).
    last: Vec<Option<usize>>,
}

/// The graphs and read slots of `items` [B, T] (one left-aligned window per row) at positions
/// `pos`, nodes padded to at least `min_n`.
fn reads(items: &[u32], pos: &[u32], (b, t): (usize, usize), q: usize, min_n: usize) -> Reads {
    use rayon::prelude::*;
    let lens: Vec<usize> = (0..b).map(|r| items[r * t..(r + 1) * t].iter().take_while(|&&v| v != 0).count()).collect();
    let graphs: Vec<graph::Graph> = (0..b)
        .into_par_iter()
        .map(|r| {
            let cells = r * t..r * t + lens[r];
            graph::build(&items[cells.clone()], &pos[cells], Bundles::Items { modalities: 0 })
        })
        .collect();
    let n = graphs.iter().map(graph::Graph::n).max().unwrap_or(0).max(min_n).max(1);
    let mut p = Reads {
        n,
        nodes: vec![0; b * n],
        real: vec![0.0; b * n],
        slot_node: vec![0; b * q],
        slot_cell: vec![0; b * q],
        count: vec![0.0; b * q],
        rel: vec![0.0; b * 4 * q * n],
        bias: vec![HOMO_MASKED; b * q * n],
        last: lens.iter().map(|&l| l.checked_sub(1)).collect(),
    };
    for (r, g) in graphs.iter().enumerate() {
        let gn = g.n();
        p.nodes[r * n..r * n + gn].copy_from_slice(&g.keys);
        p.real[r * n..r * n + gn].fill(1.0);
        let Some(last) = p.last[r] else {
            p.slot_node[r * q..(r + 1) * q].fill((r * n) as u32);
            p.slot_cell[r * q..(r + 1) * q].fill((r * t) as u32);
            continue;
        };
        for k in 0..q {
            let c = last.saturating_sub(k);
            let u = g.cell_node[c] as usize;
            let s = r * q + k;
            p.slot_node[s] = (r * n + u) as u32;
            p.slot_cell[s] = (r * t + c) as u32;
            match (0..k).find(|&j| p.slot_node[r * q + j] == p.slot_node[s]) {
                Some(j) => p.count[r * q + j] += 1.0,
                None => p.count[s] = 1.0,
            }
            for v in 0..gn {
                let code = g.adj[u * gn + v];
                if (SELF..=BI).contains(&code) {
                    p.rel[((r * 4 + code as usize - 1) * q + k) * n + v] = 1.0;
                    p.bias[s * n + v] = 0.0;
                }
            }
        }
    }
    p
}

impl KdsrRgat {
    /// `z` [B, n, D] and the read nodes' `zq` [B, q, D] -> the RGAT weights [B, q, n].
    fn attention(&self, z: &Tensor, zq: &Tensor, p: &Reads, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, q, d) = zq.dims3()?;
        let (n, dev) = (p.n, z.device());
        // a_rᵀ (z_u ⊙ z_v) = (z_u ⊙ a_r) z_vᵀ: [B, 4, q, n]
        let za = zq.unsqueeze(1)?.broadcast_mul(&self.a.reshape((1, 4, 1, d))?)?.reshape((b, 4 * q, d))?;
        let e = za.matmul(&z.t()?.contiguous()?)?.reshape((b, 4, q, n))?;
        let rel = Tensor::from_slice(&p.rel, (b, 4, q, n), dev)?;
        // One relation per pair, and LeakyReLU(0) = 0: select the pair's relation, then LeakyReLU.
        let kappa = rel.broadcast_mul(&self.amplifier.reshape((1, 4, 1, 1))?)?.sum(1)?; // [B, q, n]
        let logits = (leaky(&(e * &rel)?.sum(1)?, self.cfg.leaky_slope)? * kappa)?.unsqueeze(1)?; // [B, 1, q, n]
        let bias = Tensor::from_slice(&p.bias, (b, 1, q, n), dev)?;
        let drop = self.cfg.attention_dropout;
        let w = match self.cfg.attention_dropout_on {
            AttentionDropout::Logits => {
                let masked = ctx.dropout(&logits.broadcast_add(&bias)?, drop)?;
                biased_softmax(&masked, 1.0, &Tensor::zeros((b, 1, 1, n), DType::F32, dev)?)?
            }
            AttentionDropout::Weights => ctx.dropout(&biased_softmax(&logits, 1.0, &bias)?, drop)?,
        };
        w.squeeze(1)
    }
}

impl SeqModel for KdsrRgat {
    type Config = KdsrRgatConfig;

    fn traits(_: &KdsrRgatConfig) -> Traits {
        Traits {
            causal: false,
            inputs: Inputs::Tables,
            modality: ModalityUse::Required(ModalityMode::Tuned),
            attribute_labels: false,
            clusters: None,
            item_tower: false,
            cloze: false,
            own_row_groups: false,
        }
    }

    fn check(cfg: &KdsrRgatConfig) -> std::result::Result<(), String> {
        if cfg.embedding == 0 {
            return Err("model.embedding must be at least 1".into());
        }
        if cfg.last_n == 0 {
            return Err("model.last_n must be at least 1".into());
        }
        for (key, p) in [("dropout", cfg.dropout), ("attention_dropout", cfg.attention_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("model.{key} must be in [0, 1), got {p}"));
            }
        }
        if !cfg.leaky_slope.is_finite() {
            return Err(format!("model.leaky_slope must be finite, got {}", cfg.leaky_slope));
        }
        Ok(())
    }

    fn width_mut(cfg: &mut KdsrRgatConfig) -> &mut usize {
        &mut cfg.embedding
    }

    fn new(cfg: &KdsrRgatConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        let d = cfg.embedding;
        let s = 1.0 / (d as f64).sqrt();
        let u = Init::Uniform { lo: -s, up: s };
        let normal = Init::Randn { mean: 0.0, stdev: 0.02 };
        let zero = Some(Init::Const(0.0));
        let rgat = vb.pp("rgat");
        Ok(Self {
            item_embedding: vb.get_with_hints((dims.n_items + 1, d), "item_embedding.weight", normal)?,
            w: rgat.get_with_hints((d, d), "w", u)?,
            a: rgat.get_with_hints((4, d), "a", u)?,
            amplifier: rgat.get_with_hints(4, "amplifier", u)?,
            gate_hidden: linear(d, d, normal, zero, vb.pp("gate_hidden"))?,
            gate_out: linear(d, 1, normal, zero, vb.pp("gate_out"))?,
            modalities: dims.streams,
            max_len: dims.max_len,
            cfg: cfg.clone(),
        })
    }

    /// [B, T] (one left-aligned window per row) -> [B, T, D], the readout at each row's last
    /// cell (zero elsewhere).
    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        let (b, t) = input.items.dims2()?;
        let (d, q, dev) = (self.w.dim(0)?, self.cfg.last_n, input.items.device());
        if side.streams.len() != self.modalities {
            candle_core::bail!("kdsr-rgat: {} modality streams, expected {}", side.streams.len(), self.modalities);
        }
        let items = input.items.flatten_all()?.to_vec1::<u32>()?;
        let p = reads(&items, &input.pos, (b, t), q, self.max_len);
        let n = p.n;

        // Node inputs; padding nodes read ID row 0 without training it.
        let x = gather_rows(&self.item_embedding, &Tensor::from_slice(&p.nodes, b * n, dev)?)?; // [B n, D]
        let real = Tensor::from_slice(&p.real, (b * n, 1), dev)?;
        let pad = self.item_embedding.narrow(0, 0, 1)?.detach();
        let x = (x.broadcast_mul(&real)? + pad.broadcast_mul(&real.affine(-1.0, 1.0)?)?)?;
        let z = x.matmul(&self.w)?; // [B n, D]
        let slots = Tensor::from_slice(&p.slot_node, b * q, dev)?;
        let zq = gather_rows(&z, &slots)?.reshape((b, q, d))?;
        let z = z.reshape((b, n, d))?;
        let g = self.attention(&z, &zq, &p, ctx)?.matmul(&z)?; // [B, q, D]

        // The gate over [ID, RGAT, each modality table] at the read nodes.
        let cells = Tensor::from_slice(&p.slot_cell, b * q, dev)?;
        let mut cands = vec![gather_rows(&x, &slots)?.reshape((b, q, d))?, g];
        for s in &side.streams {
            cands.push(gather_rows(&s.reshape((b * t, d))?, &cells)?.reshape((b, q, d))?);
        }
        let c = Tensor::stack(&cands, 2)?; // [B, q, K, D]
        let s = self.gate_out.forward(&self.gate_hidden.forward(&c)?.relu()?)?.squeeze(3)?; // [B, q, K]
        let weights = candle_nn::ops::softmax(&s, D::Minus1)?;
        let h = ctx.dropout(&c.broadcast_mul(&weights.unsqueeze(3)?)?.sum(2)?, self.cfg.dropout)?; // [B, q, D]
        let count = Tensor::from_slice(&p.count, (b, q, 1), dev)?;
        let out = h.broadcast_mul(&count)?.sum(1)?; // [B, D]
        super::at_cells(&out, &p.last, t)
    }

    fn item_table(&self) -> Option<&Tensor> {
        Some(&self.item_embedding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::ParamStore;
    use candle_core::Device;

    #[test]
    fn read_slots_and_relations() {
        // Rows: 3 -> 1 -> 3 -> 2; 4 -> 6 -> 6 (the last two cells one node); 8 alone; empty.
        let items = [3, 1, 3, 2, 4, 6, 6, 0, 8, 0, 0, 0, 0, 0, 0, 0];
        let pos = [0, 1, 2, 3, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let p = reads(&items, &pos, (4, 4), 2, 5);
        assert_eq!(p.n, 5);
        assert_eq!(&p.nodes[..10], &[1, 2, 3, 0, 0, 4, 6, 0, 0, 0]);
        assert_eq!(p.real[..6], [1.0, 1.0, 1.0, 0.0, 0.0, 1.0]);
        // Row 0 reads node 1 (item 2, cell 3) and node 2 (item 3, cell 2).
        assert_eq!(p.slot_node, vec![1, 2, 6, 6, 10, 10, 15, 15]);
        assert_eq!(p.slot_cell, vec![3, 2, 6, 5, 8, 8, 12, 12]);
        assert_eq!(p.count, vec![1.0, 1.0, 2.0, 0.0, 2.0, 0.0, 0.0, 0.0]);
        assert_eq!(p.last, vec![Some(3), Some(2), Some(0), None]);
        // Item 2's node: SELF on itself, IN from item 3 (3 -> 2); item 1 is not a neighbour.
        let rel = |s: usize, r: usize, v: usize| p.rel[((s / 2 * 4 + r) * 2 + s % 2) * 5 + v];
        assert_eq!((rel(0, 0, 1), rel(0, 2, 2), rel(0, 0, 0), p.bias[0]), (1.0, 1.0, 0.0, HOMO_MASKED));
        // Item 3's node: BI with item 1 (3 -> 1 -> 3), OUT to item 2.
        assert_eq!((rel(1, 3, 0), rel(1, 1, 1), rel(1, 0, 2)), (1.0, 1.0, 1.0));
        assert!(p.bias[5..8].iter().all(|&v| v == 0.0) && p.bias[8] == HOMO_MASKED);
    }

    /// A one-item window padded to 6 nodes: dropout on the weights keeps all weight on the
    /// item (0 or 1/0.8); the released order lets dropped padding logits take weight.
    #[test]
    fn the_released_dropout_order_weights_padding_nodes() {
        let dev = Device::Cpu;
        let weights = |on: AttentionDropout, seed: u64| -> Vec<f32> {
            let cfg = KdsrRgatConfig { embedding: 8, attention_dropout_on: on, ..Default::default() };
            let params = ParamStore::new(3);
            let m = KdsrRgat::new(&cfg, &Dims::ids(9, 6), params.var_builder(&dev)).unwrap();
            let p = reads(&[5, 0, 0, 0, 0, 0], &[0; 6], (1, 6), 1, 6);
            let x = m.item_embedding.index_select(&Tensor::new(&p.nodes[..], &dev).unwrap(), 0).unwrap();
            let z = x.matmul(&m.w).unwrap().unsqueeze(0).unwrap();
            let zq = z.narrow(1, 0, 1).unwrap();
            let mut ctx = if seed == 0 { Ctx::eval() } else { Ctx::train(seed) };
            m.attention(&z, &zq, &p, &mut ctx).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        assert_eq!(weights(AttentionDropout::Logits, 0), vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(weights(AttentionDropout::Weights, 0), vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        let mut padded = 0;
        for seed in 1..40 {
            let w = weights(AttentionDropout::Weights, seed);
            assert!(w[0] == 0.0 || (w[0] - 1.25).abs() < 1e-6, "{w:?}");
            assert!(w[1..].iter().all(|&v| v == 0.0));
            let w = weights(AttentionDropout::Logits, seed);
            assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-5 && w[0] > 0.0, "{w:?}");
            padded += usize::from(w[1..].iter().any(|&v| v > 0.0));
        }
        assert!(padded > 10, "dropped padding logits take weight in {padded} of 39 draws");
    }
}
