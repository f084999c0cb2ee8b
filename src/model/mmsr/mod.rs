//! MMSR (Hu et al., CIKM 2023; reference `HoldenHu/MMSR`, model `VLGraph` with
//! `HeteAttenLayer`, fusion `asy_mask`): a heterogeneous graph per window ([`graph`]) over the
//! window's items and its modality nodes, one typed attention layer, readout at the last item,
//! scores against the item embeddings.
//!
//! Node input: `h⁰_v = [e_v ; t_{type(v)} ; mean_{p ∈ pos(v)} P_p] W_in` (`W_in` [3D, D]), where
//! `e_v` is the item's ID embedding, a cluster row (initialised from the k-means centroid,
//! min-max scaled into `±1/√D`) or, with per-item modality nodes, the item's modality
//! embedding `P_m E_m[i]`. A layer, with typed `Q = h W_Q[type]` (and `K`, `V` alike):
//! - heterogeneous weights `A = softmax_{v: SELF|CROSS}(LeakyReLU(Q_u K_vᵀ))`, `X = A V`;
//! - homogeneous weights on `X`: `B = softmax_{v: r ∈ SELF|OUT|IN|BI}(LeakyReLU(a_rᵀ(X_u ⊙ X_v)))`;
//! - both applied to `V` ("non-invasive") and mixed by a gate:
//!   `g = σ(s(A V) - s(B V))`, `s(x) = w₂ᵀ relu(W₁ x + b₁) + b₂`, `h' = g A V + (1 - g) B V`;
//! - then dropout and padding nodes set to zero.
//!
//! Paper first, the reference's quirk behind a switch: the reference sets `K = V = Q` (its
//! `W_K` and `W_V` are never used); `kv_equal_q = true` reproduces that. Windows are bucketed by
//! node count (32 rows per bucket, each padded to its own largest graph) and the per-relation
//! logits are matmuls, `(X ⊙ a_r) Xᵀ`; no `[B, N, N, D]` tensor exists.
//!
//! Not causal: prefix samples and one evaluation window per instance; the output sits at each
//! row's last item cell (other cells are zero), as SR-GNN's. Only that node is read, so the top
//! layer's homogeneous step, gate and output are computed for it alone (the heterogeneous step,
//! whose outputs are the homogeneous step's keys, still for every node).

pub mod graph;

use self::graph::{Bundles, Graph, BI, CROSS, SELF};
use super::layers::{linear, Ctx, Linear};
use super::registry::{Clustering, Dims, Inputs, ModalityUse, SeqModel, Side, Traits};
use super::{ModalityMode, SeqBatch};
use crate::ops::gather_rows;
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Init, Module, VarBuilder};
use serde::{Deserialize, Serialize};

/// What a modality node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ModalityNodes {
    /// MMSR: k-means clusters of the items' autoencoder codes, each item linked to its
    /// `link_k` nearest; cluster rows are their own trainable embeddings.
    #[default]
    Clusters,
    /// One node per item and modality whose input is the run's modality embedding of the item
    /// (tuned tables; with CDL, KDSR on MMSR as the KDSR paper's Figure 2 describes it).
    Items,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MmsrConfig {
    pub embedding: usize,
    /// Attention layers.
    pub layers: usize,
    pub modality_nodes: ModalityNodes,
    /// Clusters per modality (`modality_nodes = "clusters"`).
    pub clusters: usize,
    /// Clusters each item links to.
    pub link_k: usize,
    /// Seed of the k-means fit.
    pub cluster_seed: u64,
    /// The reference code's `K = V = Q` (its `W_K`, `W_V` unused).
    pub kv_equal_q: bool,
    /// Dropout on the layer output (`dropout_local`).
    pub dropout: f64,
    /// Dropout on the attention weights (`dropout_atten`).
    pub attention_dropout: f64,
    /// Negative slope of the LeakyReLU on the logits.
    pub leaky_slope: f64,
}

impl Default for MmsrConfig {
    /// `config/VLGraph::4::beauty.yaml`, with the cluster settings of the logged Beauty run
    /// (30 clusters, k = 3; the config file says 20 and 1).
    fn default() -> Self {
        Self {
            embedding: 128,
            layers: 1,
            modality_nodes: ModalityNodes::Clusters,
            clusters: 30,
            link_k: 3,
            cluster_seed: 2023,
            kv_equal_q: false,
            dropout: 0.4,
            attention_dropout: 0.2,
            leaky_slope: 0.1,
        }
    }
}

/// Rows per node-count bucket (on Beauty, a batch's 256 prefixes have 34 nodes on average and
/// up to ~100: smaller buckets pad less, larger ones run fewer ops).
const BUCKET_ROWS: usize = 32;
/// The reference's masked logits: `-9e15`, and `LeakyReLU(-9e15)` for the heterogeneous ones.
pub(crate) const HOMO_MASKED: f32 = -9e15;

#[derive(Debug, Clone)]
struct HeteLayer {
    /// [M + 1, D, D] per node type (item, then each modality).
    w_q: Tensor,
    w_kv: Option<(Tensor, Tensor)>,
    /// [4, D]: SELF, OUT, IN, BI.
    a: Tensor,
    gate_hidden: Linear,
    gate_out: Linear,
    dropout: f64,
    slope: f64,
}

/// Per bucket: the graphs' masks as tensors.
struct BucketMasks {
    /// Per node type: the flat indices (into R * N) of its nodes.
    by_type: Vec<Tensor>,
    /// [R * N]: each flat node's row in the typed projections stacked by type (then a zero
    /// row for padding nodes).
    gather: Tensor,
    /// [R, N, N]: 1 on SELF | CROSS, and the additive mask [R, 1, N, N] elsewhere.
    hete: Tensor,
    hete_bias: Tensor,
    /// [R, 4, N, N] one-hot homogeneous relation, and the additive mask [R, 1, N, N] of
    /// non-homogeneous pairs.
    homo: Tensor,
    homo_bias: Tensor,
    /// [R, N, 1]
    nodes: Tensor,
}

/// `softmax(logits + bias)` over the last axis: `logits` [R, N, N], `bias` [R, 1, N, N].
fn biased(logits: &Tensor, bias: &Tensor) -> Result<Tensor> {
    crate::ops::biased_softmax(&logits.unsqueeze(1)?, 1.0, bias)?.squeeze(1)
}

/// `LeakyReLU(x) = (1 + s)/2 x + (1 - s)/2 |x|`
pub(crate) fn leaky(x: &Tensor, slope: f64) -> Result<Tensor> {
    x.affine((1.0 + slope) / 2.0, 0.0)? + x.abs()?.affine((1.0 - slope) / 2.0, 0.0)?
}

impl HeteLayer {
    fn new(d: usize, types: usize, kv: bool, cfg: &MmsrConfig, u: Init, vb: VarBuilder) -> Result<Self> {
        let w_kv = if kv {
            Some((vb.get_with_hints((types, d, d), "w_k", u)?, vb.get_with_hints((types, d, d), "w_v", u)?))
        } else {
            None
        };
        Ok(Self {
            w_q: vb.get_with_hints((types, d, d), "w_q", u)?,
            w_kv,
            a: vb.get_with_hints((4, d), "a", u)?,
            gate_hidden: linear(d, d, u, Some(u), vb.pp("gate_hidden"))?,
            gate_out: linear(d, 1, u, Some(u), vb.pp("gate_out"))?,
            dropout: cfg.attention_dropout,
            slope: cfg.leaky_slope,
        })
    }

    /// `h [W_Q | W_K | W_V][type(v)]` for every node, each type's nodes through their own
    /// weights only: [R, N, D] -> [R * N, kD] (k = 1 with `K = V = Q`, else 3).
    fn typed(&self, h: &Tensor, m: &BucketMasks) -> Result<Tensor> {
        let (r, n, d) = h.dims3()?;
        let flat = h.reshape((r * n, d))?;
        let width = if self.w_kv.is_some() { 3 * d } else { d };
        let mut parts = Vec::with_capacity(m.by_type.len() + 1);
        for (t, idx) in m.by_type.iter().enumerate() {
            if idx.dim(0)? == 0 {
                continue;
            }
            let w = match &self.w_kv {
                Some((wk, wv)) => Tensor::cat(&[self.w_q.get(t)?, wk.get(t)?, wv.get(t)?], 1)?, // [D, 3D]
                None => self.w_q.get(t)?,
            };
            parts.push(gather_rows(&flat, idx)?.matmul(&w)?);
        }
        parts.push(Tensor::zeros((1, width), h.dtype(), h.device())?);
        gather_rows(&Tensor::cat(&parts, 0)?, &m.gather)
    }

    fn gate_score(&self, x: &Tensor) -> Result<Tensor> {
        self.gate_out.forward(&self.gate_hidden.forward(x)?.relu()?)
    }

    /// [R, N, D] -> [R, Nq, D]: every node (`read` None, Nq = N) or, per row `i`, only the
    /// node `read[i]` (Nq = 1; the heterogeneous step still covers every node, whose outputs
    /// are the homogeneous step's keys).
    fn forward(&self, h: &Tensor, m: &BucketMasks, read: Option<&[usize]>, ctx: &mut Ctx) -> Result<Tensor> {
        let (r, n, d) = h.dims3()?;
        let dev = h.device();
        let qkv = self.typed(h, m)?; // [R * N, kD]
        let part = |k: usize| qkv.narrow(1, k * d, d)?.contiguous()?.reshape((r, n, d));
        let q = part(0)?;
        let (k, v) = if self.w_kv.is_some() { (part(1)?, part(2)?) } else { (q.clone(), q.clone()) };
        let s = q.matmul(&k.transpose(1, 2)?.contiguous()?)?; // [R, N, N]
        let w_h = biased(&(leaky(&s, self.slope)? * &m.hete)?, &m.hete_bias)?;
        let hete = ctx.dropout(&w_h, self.dropout)?.matmul(&v)?; // [R, N, D]

        // The query rows of a per-node tensor `t` [R, N, C] (with `read`: [R, 1, C]), and of
        // the masks.
        let pick = |t: &Tensor, idx: &[u32]| -> Result<Tensor> {
            let (rows, c) = (idx.len(), t.dim(t.rank() - 1)?);
            let flat = t.reshape((t.elem_count() / c, c))?;
            gather_rows(&flat, &Tensor::from_slice(idx, rows, dev)?)
        };
        let (nq, query, homo, homo_bias) = match read {
            None => (n, None, m.homo.clone(), m.homo_bias.clone()),
            Some(nodes) => {
                let rows: Vec<u32> = nodes.iter().enumerate().map(|(i, &u)| (i * n + u) as u32).collect();
                let rel: Vec<u32> = nodes
                    .iter()
                    .enumerate()
                    .flat_map(|(i, &u)| (0..4).map(move |k| ((i * 4 + k) * n + u) as u32))
                    .collect();
                let homo = pick(&m.homo, &rel)?.reshape((r, 4, 1, n))?;
                let homo_bias = pick(&m.homo_bias, &rows)?.reshape((r, 1, 1, n))?;
                (1, Some(rows), homo, homo_bias)
            }
        };
        let rows_of = |t: &Tensor| -> Result<Tensor> {
            match &query {
                Some(rows) => pick(t, rows)?.reshape((r, 1, t.dim(2)?)),
                None => Ok(t.clone()),
            }
        };
        // The reference recomputes these weights with a fresh dropout mask for the gate's input.
        let ab = ctx.dropout(&rows_of(&w_h)?, self.dropout)?.matmul(&v)?; // [R, Nq, D]
        let hq = rows_of(&hete)?;
        let ha = hq.unsqueeze(1)?.broadcast_mul(&self.a.reshape((1, 4, 1, d))?)?.reshape((r, 4 * nq, d))?;
        let e = ha.matmul(&hete.transpose(1, 2)?.contiguous()?)?.reshape((r, 4, nq, n))?;
        // One relation per pair, and LeakyReLU(0) = 0: select the pair's relation, then LeakyReLU.
        let w_o = biased(&leaky(&(e * &homo)?.sum(1)?, self.slope)?, &homo_bias)?;
        let ba = ctx.dropout(&w_o, self.dropout)?.matmul(&v)?;
        let g = candle_nn::ops::sigmoid(&(self.gate_score(&ab)? - self.gate_score(&ba)?)?)?; // [R, Nq, 1]
        &ba + g.broadcast_mul(&(&ab - &ba)?)?
    }
}

#[derive(Debug, Clone)]
pub struct Mmsr {
    /// [N + 1, D]
    item_embedding: Tensor,
    /// Per modality [K, D] (cluster nodes).
    clusters: Vec<Tensor>,
    /// Per modality `[(N + 1) * link_k]` cluster ids.
    links: Vec<Vec<u32>>,
    link_k: usize,
    modalities: usize,
    nodes: ModalityNodes,
    /// [M + 2, D]: padding, item, each modality.
    type_embedding: Tensor,
    /// [max_len, D]
    pos_embedding: Tensor,
    /// [3D, D]
    w_input: Tensor,
    layers: Vec<HeteLayer>,
    dropout: f64,
    /// Data-derived initial values of parameters (the scaled centroids).
    data_init: Vec<(String, Tensor)>,
}

/// The reference's `normalize_array`: min-max scaled into `[-s, s]` over the whole matrix.
fn scale_into(values: &[f32], s: f32) -> Vec<f32> {
    let (lo, hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let span = hi - lo;
    values.iter().map(|&v| if span > 0.0 { (v - lo) * (2.0 * s) / span - s } else { 0.0 }).collect()
}

impl Mmsr {
    /// The graphs' masks for rows `rows` (indices into `graphs`), padded to `n` nodes.
    fn masks(&self, graphs: &[Graph], rows: &[usize], n: usize, dev: &Device) -> Result<BucketMasks> {
        let (r, t) = (rows.len(), self.modalities + 1);
        let mut by_type = vec![Vec::new(); t];
        let mut hete = vec![0f32; r * n * n];
        let mut hete_bias = vec![HOMO_MASKED * 0.1; r * n * n];
        let mut homo = vec![0f32; r * 4 * n * n];
        let mut homo_bias = vec![HOMO_MASKED; r * n * n];
        let mut nodes = vec![0f32; r * n];
        for (i, &row) in rows.iter().enumerate() {
            let g = &graphs[row];
            let gn = g.n();
            for u in 0..gn {
                by_type[g.types[u] as usize - 1].push((i * n + u) as u32);
                nodes[i * n + u] = 1.0;
                for v in 0..gn {
                    let rel = g.adj[u * gn + v];
                    let cell = (i * n + u) * n + v;
                    if rel == SELF || rel == CROSS {
                        hete[cell] = 1.0;
                        hete_bias[cell] = 0.0;
                    }
                    if (SELF..=BI).contains(&rel) {
                        homo[((i * 4 + rel as usize - 1) * n + u) * n + v] = 1.0;
                        homo_bias[cell] = 0.0;
                    }
                }
            }
        }
        let mut gather = vec![by_type.iter().map(Vec::len).sum::<usize>() as u32; r * n];
        for (k, &node) in by_type.iter().flatten().enumerate() {
            gather[node as usize] = k as u32;
        }
        Ok(BucketMasks {
            by_type: by_type
                .into_iter()
                .map(|v| {
                    let len = v.len();
                    Tensor::from_vec(v, len, dev)
                })
                .collect::<Result<_>>()?,
            gather: Tensor::from_vec(gather, r * n, dev)?,
            hete: Tensor::from_vec(hete, (r, n, n), dev)?,
            hete_bias: Tensor::from_vec(hete_bias, (r, 1, n, n), dev)?,
            homo: Tensor::from_vec(homo, (r, 4, n, n), dev)?,
            homo_bias: Tensor::from_vec(homo_bias, (r, 1, n, n), dev)?,
            nodes: Tensor::from_vec(nodes, (r, n, 1), dev)?,
        })
    }
}

impl SeqModel for Mmsr {
    type Config = MmsrConfig;

    fn traits(cfg: &MmsrConfig) -> Traits {
        let (modality, clusters) = match cfg.modality_nodes {
            ModalityNodes::Clusters => (
                ModalityUse::Codes,
                Some(Clustering { clusters: cfg.clusters, link_k: cfg.link_k, seed: cfg.cluster_seed }),
            ),
            ModalityNodes::Items => (ModalityUse::Required(ModalityMode::Tuned), None),
        };
        Traits {
            causal: false,
            inputs: Inputs::Streams,
            modality,
            attribute_labels: false,
            clusters,
            item_tower: false,
            cloze: false,
            own_row_groups: false,
        }
    }

    fn check(cfg: &MmsrConfig) -> std::result::Result<(), String> {
        if cfg.layers == 0 {
            return Err("model.layers must be at least 1".into());
        }
        if cfg.modality_nodes == ModalityNodes::Clusters && (cfg.clusters == 0 || cfg.link_k == 0) {
            return Err("model.clusters and model.link_k must be at least 1".into());
        }
        if cfg.link_k > cfg.clusters {
            return Err(format!("model.link_k ({}) exceeds model.clusters ({})", cfg.link_k, cfg.clusters));
        }
        for (key, p) in [("dropout", cfg.dropout), ("attention_dropout", cfg.attention_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("model.{key} must be in [0, 1), got {p}"));
            }
        }
        Ok(())
    }

    /// With per-item modality nodes MMSR is its own model in tables (KDSR's backbone).
    fn variant(cfg: &MmsrConfig) -> Option<&'static str> {
        (cfg.modality_nodes == ModalityNodes::Items).then_some("mmsr-items")
    }

    fn width_mut(cfg: &mut MmsrConfig) -> &mut usize {
        &mut cfg.embedding
    }

    /// Every parameter ~ U(-1/√D, 1/√D) (the reference's `reset_parameters`); cluster rows are
    /// then the k-means centroids of each modality's codes ([`Dims::clusters`]), min-max scaled
    /// into that range ([`SeqModel::data_init`]).
    fn new(cfg: &MmsrConfig, dims: &Dims, vb: VarBuilder) -> Result<Self> {
        let d = cfg.embedding;
        let s = 1.0 / (d as f64).sqrt();
        let u = Init::Uniform { lo: -s, up: s };
        let (mut clusters, mut links, mut data_init) = (Vec::new(), Vec::new(), Vec::new());
        if cfg.modality_nodes == ModalityNodes::Clusters {
            if dims.clusters.is_empty() {
                candle_core::bail!("mmsr: no modality clusters (the run needs [modality])");
            }
            for c in &dims.clusters {
                if c.dim != d
                    || c.centroids.len() != cfg.clusters * d
                    || c.links.len() != (dims.n_items + 1) * cfg.link_k
                {
                    candle_core::bail!(
                        "mmsr: the {} clusters have {} dimensions, {} centroids and {} links; expected {d}, {} and {} (model.embedding, model.clusters, model.link_k)",
                        c.name,
                        c.dim,
                        c.centroids.len() / c.dim.max(1),
                        c.links.len(),
                        cfg.clusters,
                        (dims.n_items + 1) * cfg.link_k
                    );
                }
                let key = format!("cluster_embedding.{}", c.name);
                clusters.push(vb.get_with_hints((cfg.clusters, d), &key, u)?);
                let scaled = scale_into(&c.centroids, s as f32);
                data_init.push((key, Tensor::from_vec(scaled, (cfg.clusters, d), vb.device())?));
                links.push(c.links.clone());
            }
        }
        let modalities = match cfg.modality_nodes {
            ModalityNodes::Clusters => links.len(),
            ModalityNodes::Items => dims.streams,
        };
        let layers = (0..cfg.layers)
            .map(|l| HeteLayer::new(d, modalities + 1, !cfg.kv_equal_q, cfg, u, vb.pp(format!("layers.{l}"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            item_embedding: vb.get_with_hints((dims.n_items + 1, d), "item_embedding.weight", u)?,
            clusters,
            links,
            link_k: cfg.link_k,
            modalities,
            nodes: cfg.modality_nodes,
            type_embedding: vb.get_with_hints((modalities + 2, d), "type_embedding.weight", u)?,
            pos_embedding: vb.get_with_hints((dims.max_len, d), "pos_embedding.weight", u)?,
            w_input: vb.get_with_hints((3 * d, d), "w_input", u)?,
            layers,
            dropout: cfg.dropout,
            data_init,
        })
    }

    /// [B, T] (one left-aligned window per row) -> [B, T, D], the output at each row's last item.
    fn forward(&self, input: &SeqBatch, side: &Side, ctx: &mut Ctx) -> Result<Tensor> {
        use rayon::prelude::*;
        let (b, t) = input.items.dims2()?;
        let dev = input.items.device();
        let d = self.w_input.dim(1)?;
        let max_pos = self.pos_embedding.dim(0)?;
        let items = input.items.flatten_all()?.to_vec1::<u32>()?;
        let bundles = match self.nodes {
            ModalityNodes::Clusters => Bundles::Clusters { links: &self.links, k: self.link_k },
            ModalityNodes::Items => {
                if side.streams.len() != self.modalities {
                    candle_core::bail!("mmsr: {} modality streams, expected {}", side.streams.len(), self.modalities);
                }
                Bundles::Items { modalities: self.modalities }
            }
        };
        let lens: Vec<usize> =
            (0..b).map(|r| items[r * t..(r + 1) * t].iter().take_while(|&&v| v != 0).count()).collect();
        if let Some(&p) = input.pos.iter().find(|&&p| p as usize >= max_pos) {
            candle_core::bail!("mmsr: position {p} beyond the {max_pos} position embeddings");
        }
        let graphs: Vec<Graph> = (0..b)
            .into_par_iter()
            .map(|r| graph::build(&items[r * t..r * t + lens[r]], &input.pos[r * t..r * t + lens[r]], bundles))
            .collect();

        // Buckets: rows by node count, BUCKET_ROWS at a time, each padded to its largest graph.
        let mut order: Vec<usize> = (0..b).collect();
        order.sort_by_key(|&r| graphs[r].n());
        let buckets: Vec<(&[usize], usize)> = order
            .chunks(BUCKET_ROWS)
            .map(|c| (c, c.iter().map(|&r| graphs[r].n()).max().unwrap_or(0).max(1)))
            .collect();

        // Node inputs of every bucket, gathered at once from [items | modality rows | zero].
        let n_items = self.item_embedding.dim(0)?;
        let mut sources = vec![self.item_embedding.clone()];
        match self.nodes {
            ModalityNodes::Clusters => sources.extend(self.clusters.iter().cloned()),
            ModalityNodes::Items => {
                for s in &side.streams {
                    sources.push(s.reshape((b * t, d))?);
                }
            }
        }
        let mut offsets = vec![n_items];
        for s in &sources[1..] {
            offsets.push(offsets.last().copied().unwrap_or(0) + s.dim(0)?);
        }
        let zero_row = *offsets.last().unwrap_or(&n_items) as u32;
        sources.push(Tensor::zeros((1, d), DType::F32, dev)?);
        let source = Tensor::cat(&sources, 0)?;
        let total: usize = buckets.iter().map(|(rows, n)| rows.len() * n).sum();
        let mut src = vec![zero_row; total];
        let mut type_ids = vec![0u32; total];
        let mut pos_w = vec![0f32; total * max_pos];
        let mut at = 0;
        for (rows, n) in &buckets {
            for &r in rows.iter() {
                let g = &graphs[r];
                for v in 0..g.n() {
                    let node = at + v;
                    let ty = g.types[v] as usize;
                    src[node] = match (ty, self.nodes) {
                        (1, _) => g.keys[v],
                        (_, ModalityNodes::Clusters) => (offsets[ty - 2] + g.keys[v] as usize) as u32,
                        (_, ModalityNodes::Items) => (offsets[ty - 2] + r * t + g.first_cell[v] as usize) as u32,
                    };
                    type_ids[node] = ty as u32;
                    let w = 1.0 / (g.positions[v].len() as f32 + 1e-9);
                    for &p in &g.positions[v] {
                        pos_w[node * max_pos + p as usize] = w;
                    }
                }
                at += n;
            }
        }
        // `[x ; t ; p] W_in = x W₁ + (T W₂)[type] + pos_w (P W₃)` for `W_in = [W₁; W₂; W₃]`:
        // the type and position tables are projected once, not once per node.
        let w_in = |k: usize| self.w_input.narrow(0, k * d, d);
        let x = gather_rows(&source, &Tensor::from_vec(src, total, dev)?)?.matmul(&w_in(0)?)?; // [total, D]
        let ty = gather_rows(&self.type_embedding.matmul(&w_in(1)?)?, &Tensor::from_vec(type_ids, total, dev)?)?;
        let pos = Tensor::from_vec(pos_w, (total, max_pos), dev)?.matmul(&self.pos_embedding.matmul(&w_in(2)?)?)?;
        let h0 = ((x + ty)? + pos)?; // [total, D]

        // Only each row's last item node is read: the top layer computes that node alone.
        let mut outs = Vec::with_capacity(buckets.len());
        let mut at = 0;
        for (rows, n) in &buckets {
            let (r, n) = (rows.len(), *n);
            let masks = self.masks(&graphs, rows, n, dev)?;
            // Each row's last item node within its graph (node 0 for a row without items).
            let read: Vec<usize> = rows
                .iter()
                .map(|&row| lens[row].checked_sub(1).map_or(0, |c| graphs[row].cell_node[c] as usize))
                .collect();
            let mut h = h0.narrow(0, at, r * n)?.reshape((r, n, d))?;
            let top = self.layers.len() - 1;
            for (l, layer) in self.layers.iter().enumerate() {
                if l == top {
                    // [R, 1, D]: the read nodes are real nodes (or rows without items, unread).
                    let y = layer.forward(&h, &masks, Some(&read), ctx)?;
                    h = ctx.dropout(&y, self.dropout)?;
                } else {
                    h = layer.forward(&h, &masks, None, ctx)?;
                    h = ctx.dropout(&h, self.dropout)?.broadcast_mul(&masks.nodes)?;
                }
            }
            outs.push(h.reshape((r, d))?);
            at += r * n;
        }
        super::sorted_at_last_cells(&Tensor::cat(&outs, 0)?, &order, &lens, t)
    }

    fn item_table(&self) -> Option<&Tensor> {
        Some(&self.item_embedding)
    }

    fn data_init(&self) -> Vec<(String, Tensor)> {
        self.data_init.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaky_relu_and_scaling() {
        let x = Tensor::new(&[-2f32, 0.0, 3.0], &Device::Cpu).unwrap();
        let y = leaky(&x, 0.1).unwrap().to_vec1::<f32>().unwrap();
        assert!(y.iter().zip([-0.2f32, 0.0, 3.0]).all(|(a, b)| (a - b).abs() < 1e-6), "{y:?}");
        assert_eq!(scale_into(&[1.0, 3.0, 2.0], 0.5), vec![-0.5, 0.5, 0.0]);
    }
}
