//! SR-GNN (Wu et al., AAAI 2019) as configured in RecBole (`SRGNN`): each window is a session
//! graph over its unique items, with directed transitions `A[u][v] = 1` between consecutive
//! items, normalised by in-degree (`A_in`) and out-degree (`A_out`). `step` gated graph steps
//! update the node states `h` [n, D]:
//!
//! `a = [A_in (W_in h + b_in) + b_iah ; A_out (W_out h + b_out) + b_ioh]`,
//! `r = σ(W_ir a + b_ir + W_hr h + b_hr)`, `z = σ(W_iz a + b_iz + W_hz h + b_hz)`,
//! `n = tanh(W_in' a + b_in' + r ⊙ (W_hn h + b_hn))`, `h' = (1 - z) ⊙ h + z ⊙ n`.
//!
//! The readout at the window's last item `h_t`: `α_i = w₃ᵀ σ(W₁ h_t + b₁ + W₂ h_i + b₂)`,
//! `s = W_t [Σ_i α_i h_i ; h_t] + b_t`, scored against the item table.
//!
//! Not causal (the graph mixes the whole window): prefix samples, one evaluation window per
//! instance, and the output sits at each row's last real cell (other cells are zero). As in
//! RecBole, a padded row's padding item is a graph node (`np.unique` keeps the 0) with a zero
//! embedding and no edges, so it changes nothing. ID only: it takes no modality embeddings.

use super::layers::{embedding, linear, Ctx, Embedding, Linear};
use super::registry::{Dims, Inputs, ModalityUse, SeqModel, Side, Traits};
use super::SeqBatch;
use candle_core::{DType, Result, Tensor};
use candle_nn::{Init, Module, VarBuilder};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SrGnnConfig {
    pub embedding: usize,
    /// Gated graph steps.
    pub step: usize,
}

impl Default for SrGnnConfig {
    /// RecBole's defaults.
    fn default() -> Self {
        Self { embedding: 64, step: 1 }
    }
}

#[derive(Debug, Clone)]
pub struct SrGnn {
    item_embedding: Embedding,
    edge_in: Linear,
    edge_out: Linear,
    /// [3D, 2D], [3D, D], [3D], [3D], [D], [D]
    w_ih: Tensor,
    w_hh: Tensor,
    b_ih: Tensor,
    b_hh: Tensor,
    b_iah: Tensor,
    b_ioh: Tensor,
    linear_one: Linear,
    linear_two: Linear,
    linear_three: Linear,
    linear_transform: Linear,
    step: usize,
}

/// The session graphs of a batch's rows (one window per row, left-aligned).
struct Graphs {
    /// Node items [B, T] (sorted unique items of each row, 0-padded).
    nodes: Vec<u32>,
    /// In-degree- and out-degree-normalised adjacency [B, T, T].
    a_in: Vec<f32>,
    a_out: Vec<f32>,
    /// Per cell: the flat index `b * T + node` of its node.
    alias: Vec<u32>,
    /// Per row: the column of its last real item.
    last: Vec<usize>,
}

fn graphs(items: &[u32], b: usize, t: usize) -> Graphs {
    let mut g = Graphs {
        nodes: vec![0; b * t],
        a_in: vec![0.0; b * t * t],
        a_out: vec![0.0; b * t * t],
        alias: vec![0; b * t],
        last: vec![0; b],
    };
    for r in 0..b {
        let row = &items[r * t..(r + 1) * t];
        let mut node: Vec<u32> = row.to_vec();
        node.sort_unstable();
        node.dedup();
        let id = |v: u32| node.binary_search(&v).expect("a row item is a node");
        let mut adj = vec![0f32; t * t];
        for i in 0..t - 1 {
            if row[i + 1] == 0 {
                break;
            }
            adj[id(row[i]) * t + id(row[i + 1])] = 1.0;
        }
        let (mut indeg, mut outdeg) = (vec![0f32; t], vec![0f32; t]);
        for u in 0..t {
            for v in 0..t {
                indeg[v] += adj[u * t + v];
                outdeg[u] += adj[u * t + v];
            }
        }
        let base = r * t * t;
        for u in 0..t {
            for v in 0..t {
                let e = adj[u * t + v];
                if e > 0.0 {
                    // Node v aggregates its in-neighbours u; node u its out-neighbours v.
                    g.a_in[base + v * t + u] = e / indeg[v];
                    g.a_out[base + u * t + v] = e / outdeg[u];
                }
            }
        }
        g.nodes[r * t..r * t + node.len()].copy_from_slice(&node);
        for (c, &v) in row.iter().enumerate() {
            g.alias[r * t + c] = (r * t + id(v)) as u32;
        }
        g.last[r] = row.iter().rposition(|&v| v != 0).unwrap_or(0);
    }
    g
}

impl SrGnn {
    /// One gated graph step: `h` [B, T, D] -> [B, T, D].
    fn cell(&self, a_in: &Tensor, a_out: &Tensor, h: &Tensor) -> Result<Tensor> {
        let input_in = a_in.matmul(&self.edge_in.forward(h)?)?.broadcast_add(&self.b_iah)?;
        let input_out = a_out.matmul(&self.edge_out.forward(h)?)?.broadcast_add(&self.b_ioh)?;
        let inputs = Tensor::cat(&[input_in, input_out], 2)?; // [B, T, 2D]
        let gi = Linear::new(self.w_ih.clone(), Some(self.b_ih.clone())).forward(&inputs)?; // [B, T, 3D]
        let gh = Linear::new(self.w_hh.clone(), Some(self.b_hh.clone())).forward(h)?;
        let d = h.dim(2)?;
        let part = |x: &Tensor, k: usize| x.narrow(2, k * d, d);
        let r = candle_nn::ops::sigmoid(&(part(&gi, 0)? + part(&gh, 0)?)?)?;
        let z = candle_nn::ops::sigmoid(&(part(&gi, 1)? + part(&gh, 1)?)?)?;
        let n = (part(&gi, 2)? + (r * part(&gh, 2)?)?)?.tanh()?;
        // (1 - z) h + z n = h + z (n - h)
        h + (z * (n - h)?)?
    }
}

impl SeqModel for SrGnn {
    type Config = SrGnnConfig;

    fn traits(_: &SrGnnConfig) -> Traits {
        Traits {
            causal: false,
            inputs: Inputs::Summed,
            modality: ModalityUse::Never,
            attribute_labels: false,
            clusters: None,
            item_tower: false,
            cloze: false,
        }
    }

    fn check(cfg: &SrGnnConfig) -> std::result::Result<(), String> {
        if cfg.step == 0 {
            return Err("model.step must be at least 1".into());
        }
        Ok(())
    }

    fn width_mut(cfg: &mut SrGnnConfig) -> &mut usize {
        &mut cfg.embedding
    }

    /// Every parameter ~ U(-1/√D, 1/√D), as RecBole.
    fn new(cfg: &SrGnnConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        let d = cfg.embedding;
        let s = 1.0 / (d as f64).sqrt();
        let u = Init::Uniform { lo: -s, up: s };
        let gnn = vb.pp("gnn");
        Ok(Self {
            item_embedding: embedding(dims.n_items + 1, d, u, vb.pp("item_embedding"))?,
            edge_in: linear(d, d, u, Some(u), gnn.pp("linear_edge_in"))?,
            edge_out: linear(d, d, u, Some(u), gnn.pp("linear_edge_out"))?,
            w_ih: gnn.get_with_hints((3 * d, 2 * d), "w_ih", u)?,
            w_hh: gnn.get_with_hints((3 * d, d), "w_hh", u)?,
            b_ih: gnn.get_with_hints(3 * d, "b_ih", u)?,
            b_hh: gnn.get_with_hints(3 * d, "b_hh", u)?,
            b_iah: gnn.get_with_hints(d, "b_iah", u)?,
            b_ioh: gnn.get_with_hints(d, "b_ioh", u)?,
            linear_one: linear(d, d, u, Some(u), vb.pp("linear_one"))?,
            linear_two: linear(d, d, u, Some(u), vb.pp("linear_two"))?,
            linear_three: linear(d, 1, u, None, vb.pp("linear_three"))?,
            linear_transform: linear(2 * d, d, u, Some(u), vb.pp("linear_transform"))?,
            step: cfg.step,
        })
    }

    /// [B, T] (one window per row) -> [B, T, D], the session output at each row's last item.
    fn forward(&self, input: &SeqBatch, _side: &Side, _ctx: &mut Ctx) -> Result<Tensor> {
        let (b, t) = input.items.dims2()?;
        let dev = input.items.device();
        let items = input.items.flatten_all()?.to_vec1::<u32>()?;
        let g = graphs(&items, b, t);
        let nodes = Tensor::from_vec(g.nodes, (b, t), dev)?;
        // The padding node's embedding is zero (RecBole's padding_idx).
        let node_mask = nodes.ne(0u32)?.to_dtype(DType::F32)?.unsqueeze(2)?; // [B, T, 1]
        let mut h = self.item_embedding.forward(&nodes)?.broadcast_mul(&node_mask)?; // [B, T, D]
        let a_in = Tensor::from_vec(g.a_in, (b, t, t), dev)?;
        let a_out = Tensor::from_vec(g.a_out, (b, t, t), dev)?;
        for _ in 0..self.step {
            h = self.cell(&a_in, &a_out, &h)?;
        }
        let d = h.dim(2)?;
        let alias = Tensor::from_vec(g.alias, b * t, dev)?;
        let seq_hidden = crate::ops::gather_rows(&h.reshape((b * t, d))?, &alias)?.reshape((b, t, d))?;
        let last: Vec<u32> = g.last.iter().enumerate().map(|(r, &c)| (r * t + c) as u32).collect();
        let ht = super::select_cells(&seq_hidden, &last)?; // [B, D]
        let q1 = self.linear_one.forward(&ht)?.unsqueeze(1)?; // [B, 1, D]
        let q2 = self.linear_two.forward(&seq_hidden)?; // [B, T, D]
        let alpha = self.linear_three.forward(&candle_nn::ops::sigmoid(&q2.broadcast_add(&q1)?)?)?; // [B, T, 1]
        let cell_mask = input.items.ne(0u32)?.to_dtype(DType::F32)?.unsqueeze(2)?;
        let a = seq_hidden.broadcast_mul(&alpha)?.broadcast_mul(&cell_mask)?.sum(1)?; // [B, D]
        let out = self.linear_transform.forward(&Tensor::cat(&[a, ht], 1)?)?; // [B, D]
        let cells: Vec<Option<usize>> = g.last.iter().map(|&c| Some(c)).collect();
        super::at_cells(&out, &cells, t)
    }

    fn item_table(&self) -> Option<&Tensor> {
        Some(self.item_embedding.embeddings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_graph_as_recbole_builds_it() {
        // RecBole's docstring example: items 1, 2, 3, 2, 4 (then padding).
        let g = graphs(&[1, 2, 3, 2, 4, 0], 1, 6);
        assert_eq!(g.nodes, vec![0, 1, 2, 3, 4, 0], "the padding 0 is a node");
        let at = |m: &[f32], u: usize, v: usize| m[u * 6 + v];
        // Out-degree normalised: node 2 (item 2) goes to 3 and 4, 1/2 each.
        assert_eq!((at(&g.a_out, 2, 3), at(&g.a_out, 2, 4), at(&g.a_out, 1, 2)), (0.5, 0.5, 1.0));
        // In-degree normalised: node 2 comes from 1 and 3, 1/2 each.
        assert_eq!((at(&g.a_in, 2, 1), at(&g.a_in, 2, 3), at(&g.a_in, 4, 2)), (0.5, 0.5, 1.0));
        assert_eq!(g.alias, vec![1, 2, 3, 2, 4, 0]);
        assert_eq!(g.last, vec![4]);
    }
}
