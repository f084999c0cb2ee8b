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
    /// The session embeddings [n, D] of `n` rows of `items` [n, w] (left-aligned windows), whose
    /// graphs are `g` and whose node embeddings are `h` [n, w, D].
    fn sessions(&self, items: &[u32], g: Graphs, mut h: Tensor) -> Result<Tensor> {
        let (n, w, _) = h.dims3()?;
        let dev = h.device().clone();
        let dev = &dev;
        let a_in = Tensor::from_vec(g.a_in, (n, w, w), dev)?;
        let a_out = Tensor::from_vec(g.a_out, (n, w, w), dev)?;
        for _ in 0..self.step {
            h = self.cell(&a_in, &a_out, &h)?;
        }
        let d = h.dim(2)?;
        let alias = Tensor::from_vec(g.alias, n * w, dev)?;
        let seq_hidden = crate::ops::gather_rows(&h.reshape((n * w, d))?, &alias)?.reshape((n, w, d))?;
        let last: Vec<u32> = g.last.iter().enumerate().map(|(r, &c)| (r * w + c) as u32).collect();
        let ht = super::select_cells(&seq_hidden, &last)?; // [n, D]
        let q1 = self.linear_one.forward(&ht)?.unsqueeze(1)?; // [n, 1, D]
        let q2 = self.linear_two.forward(&seq_hidden)?; // [n, w, D]
        let alpha = self.linear_three.forward(&candle_nn::ops::sigmoid(&q2.broadcast_add(&q1)?)?)?; // [n, w, 1]
        let cell_mask = Tensor::from_vec(items.to_vec(), (n, w), dev)?.ne(0u32)?.to_dtype(DType::F32)?.unsqueeze(2)?;
        let a = seq_hidden.broadcast_mul(&alpha)?.broadcast_mul(&cell_mask)?.sum(1)?; // [n, D]
        self.linear_transform.forward(&Tensor::cat(&[a, ht], 1)?) // [n, D]
    }

    /// One gated graph step: `h` [B, T, D] -> [B, T, D].
    fn cell(&self, a_in: &Tensor, a_out: &Tensor, h: &Tensor) -> Result<Tensor> {
        let input_in = a_in.matmul(&self.edge_in.forward(h)?)?.broadcast_add(&self.b_iah)?;
        let input_out = a_out.matmul(&self.edge_out.forward(h)?)?.broadcast_add(&self.b_ioh)?;
        let inputs = Tensor::cat(&[input_in, input_out], 2)?; // [B, T, 2D]
        let d = h.dim(2)?;
        // The gates' three blocks of W_ih and W_hh (rows k D..(k + 1) D) applied one at a time:
        // the same products as one [3D]-wide layer, without slicing (and, backward, zero-filling)
        // activations three times their width.
        let gate = |w: &Tensor, b: &Tensor, k: usize, x: &Tensor| {
            Linear::new(w.narrow(0, k * d, d)?, Some(b.narrow(0, k * d, d)?)).forward(x)
        };
        let gi = |k| gate(&self.w_ih, &self.b_ih, k, &inputs);
        let gh = |k| gate(&self.w_hh, &self.b_hh, k, h);
        let r = candle_nn::ops::sigmoid(&(gi(0)? + gh(0)?)?)?;
        let z = candle_nn::ops::sigmoid(&(gi(1)? + gh(1)?)?)?;
        let n = (gi(2)? + (r * gh(2)?)?)?.tanh()?;
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
            own_row_groups: true,
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
    ///
    /// Rows are independent graphs, so each is computed at the width its own length needs: the
    /// rows are grouped by [`crate::data::batch::row_width`] and every group runs as one [n, w] batch (a prefix
    /// batch of Beauty holds ~6 real cells per row in 50 columns). Within a row this is the
    /// same graph and the same arithmetic as at width T: cells past its end are padding, whose
    /// node has a zero embedding and no edges, and never read.
    fn forward(&self, input: &SeqBatch, _side: &Side, _ctx: &mut Ctx) -> Result<Tensor> {
        let (b, t) = input.items.dims2()?;
        let dev = input.items.device();
        let items = input.items.flatten_all()?.to_vec1::<u32>()?;
        let lens: Vec<usize> =
            (0..b).map(|r| items[r * t..(r + 1) * t].iter().rposition(|&v| v != 0).map_or(1, |c| c + 1)).collect();
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (r, &len) in lens.iter().enumerate() {
            groups.entry(crate::data::batch::row_width(len, t)).or_default().push(r);
        }
        let mut position = vec![0u32; b];
        let mut next = 0;
        let mut parts = Vec::with_capacity(groups.len());
        for (&w, rows) in &groups {
            let sub: Vec<u32> = rows.iter().flat_map(|&r| items[r * t..r * t + w].iter().copied()).collect();
            let g = graphs(&sub, rows.len(), w);
            parts.push((sub, g, rows.len(), w));
            for &r in rows {
                position[r] = next;
                next += 1;
            }
        }
        // Every group's node embeddings in one lookup (one scatter into the table's gradient).
        let all_nodes: Vec<u32> = parts.iter().flat_map(|(_, g, _, _)| g.nodes.iter().copied()).collect();
        let all_nodes = Tensor::from_vec(all_nodes, parts.iter().map(|p| p.2 * p.3).sum::<usize>(), dev)?;
        // The padding node's embedding is zero (RecBole's padding_idx).
        let node_mask = all_nodes.ne(0u32)?.to_dtype(DType::F32)?.unsqueeze(1)?;
        let h0 = self.item_embedding.forward(&all_nodes)?.broadcast_mul(&node_mask)?; // [Σ n w, D]
        let d = h0.dim(1)?;
        let mut outs = Vec::with_capacity(parts.len());
        let mut offset = 0;
        for (sub, g, n, w) in parts {
            let h = h0.narrow(0, offset, n * w)?.reshape((n, w, d))?;
            offset += n * w;
            outs.push(self.sessions(&sub, g, h)?);
        }
        let out = if outs.len() == 1 { outs.remove(0) } else { Tensor::cat(&outs, 0)? };
        let out = crate::ops::gather_rows(&out, &Tensor::from_vec(position, b, dev)?)?; // [B, D]
        let cells: Vec<Option<usize>> = lens.iter().map(|&len| Some(len - 1)).collect();
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
