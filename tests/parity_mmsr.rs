//! Parity of MMSR with a PyTorch transcription of the reference forward (HoldenHu/MMSR: its
//! graph construction, `VLGraph` and `HeteAttenLayer` with `asy_mask` fusion): same weights,
//! same windows (repeated items, a repeated step, padding, a one-item window), two modalities
//! with two cluster links per item; the readout, the cross-entropy over items 1..N and every
//! parameter's gradient, for the reference's `K = V = Q` and for separate `W_K`, `W_V`. The
//! fixture tests/fixtures/parity_mmsr.json is written by `bench/parity_mmsr.py` (torch
//! 2.15.0, float32; the reference pads nodes to a dataset-wide count, kdsr per bucket).

mod common;

use candle_core::{Device, IndexOp, Tensor};
use common::{assert_close, floats};
use kdsr::model::mmsr::{Mmsr, MmsrConfig};
use kdsr::model::params::ParamStore;
use kdsr::model::{Ctx, Dims, ModalityClusters, SeqBatch, SeqModel, Side};
use serde_json::Value;

fn tensor(v: &Value, shape: &[usize]) -> Tensor {
    Tensor::from_vec(floats(v), shape, &Device::Cpu).unwrap()
}

/// kdsr's parameter name -> its value in the reference's layout (and back, for gradients).
struct Layout {
    n_items: usize,
    k: usize,
    d: usize,
    max_len: usize,
}

impl Layout {
    /// The kdsr parameter's slice of a reference tensor `r` (by reference name) `[rows, ...]`.
    fn pick(&self, name: &str, refs: &serde_json::Map<String, Value>) -> Tensor {
        let (n, k, d) = (self.n_items + 1, self.k, self.d);
        let get = |key: &str, shape: &[usize]| tensor(&refs[key], shape);
        let table = || get("embedding.weight", &[n + 2 * k, d]);
        let typed = |key: &str| get(key, &[4, d, d]).i(1..4).unwrap();
        match name {
            "item_embedding.weight" => table().i(0..n).unwrap(),
            "cluster_embedding.image" => table().i(n..n + k).unwrap(),
            "cluster_embedding.text" => table().i(n + k..n + 2 * k).unwrap(),
            "type_embedding.weight" => get("node_type_embedding.weight", &[4, d]),
            "pos_embedding.weight" => get("pos_embedding.weight", &[150, d]).i(0..self.max_len).unwrap(),
            "w_input" => get("w_pos_type", &[3 * d, d]),
            "layers.0.w_q" => typed("local_agg.W_Q"),
            "layers.0.w_k" => typed("local_agg.W_K"),
            "layers.0.w_v" => typed("local_agg.W_V"),
            "layers.0.a" => {
                Tensor::cat(&(0..4).map(|r| get(&format!("local_agg.a_params.{r}"), &[1, d])).collect::<Vec<_>>(), 0)
                    .unwrap()
            }
            "layers.0.gate_hidden.weight" => get("local_agg.projection.0.weight", &[d, d]),
            "layers.0.gate_hidden.bias" => get("local_agg.projection.0.bias", &[d]),
            "layers.0.gate_out.weight" => get("local_agg.projection.2.weight", &[1, d]),
            "layers.0.gate_out.bias" => get("local_agg.projection.2.bias", &[1]),
            other => panic!("no reference for {other}"),
        }
    }
}

/// One modality's clusters with the given links (the centroids are overwritten by the test).
fn clusters(name: &str, d: usize, k: usize, links: Vec<u32>) -> ModalityClusters {
    ModalityClusters { name: name.to_string(), dim: d, centroids: vec![0.0; k * d], links }
}

fn check(variant: &str, kv_equal_q: bool) {
    let fx = common::fixture("parity_mmsr.json");
    let want = &fx[variant];
    let dev = Device::Cpu;
    let (n_items, k, d) = (fx["n_items"].as_u64().unwrap() as usize, fx["clusters"].as_u64().unwrap() as usize, 8);
    let items: Vec<Vec<u32>> = serde_json::from_value(fx["items"].clone()).unwrap();
    let (b, t) = (items.len(), items[0].len());
    let layout = Layout { n_items, k, d, max_len: t };
    let links: Vec<Vec<u32>> = ["image_links", "text_links"]
        .iter()
        .map(|key| serde_json::from_value::<Vec<Vec<u32>>>(fx[*key].clone()).unwrap().concat())
        .collect();
    let cfg = MmsrConfig { embedding: d, clusters: k, link_k: 2, kv_equal_q, ..Default::default() };
    let params = ParamStore::new(0);
    let mut dims = Dims::ids(n_items, t);
    dims.clusters = ["image", "text"].iter().zip(links).map(|(name, links)| clusters(name, d, k, links)).collect();
    let model = Mmsr::new(&cfg, &dims, params.var_builder(&dev)).unwrap();
    let refs = want["weights"].as_object().unwrap();
    for (name, var) in params.vars() {
        var.set(&layout.pick(&name, refs)).unwrap();
    }

    let lens: Vec<usize> = items.iter().map(|r| r.iter().filter(|&&i| i != 0).count()).collect();
    let input = SeqBatch::left_aligned(Tensor::new(items, &dev).unwrap()).unwrap();
    let h = model.forward(&input, &Side::default(), &mut Ctx::eval()).unwrap(); // [B, T, D]
    let cells: Vec<u32> = lens.iter().enumerate().map(|(r, &len)| (r * t + len - 1) as u32).collect();
    let out = h.reshape((b * t, d)).unwrap().index_select(&Tensor::new(cells, &dev).unwrap(), 0).unwrap();
    let got = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let expect: Vec<f32> = want["output"].as_array().unwrap().iter().flat_map(floats).collect();
    assert_close(&got, &expect, &format!("{variant}: readout"));
    let total = h.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    let at_last = out.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!((total - at_last).abs() < 1e-5 * total, "only the last cells carry the output");

    let targets: Vec<u32> = fx["targets"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32 - 1).collect();
    let candidates = model.item_table().unwrap().i(1..n_items + 1).unwrap();
    let loss = kdsr::ops::catalogue_cross_entropy(&out, &candidates, &targets).unwrap();
    assert_close(&[loss.to_scalar::<f32>().unwrap()], &[want["loss"].as_f64().unwrap() as f32], "loss");
    let grads = loss.backward().unwrap();
    let ref_grads = want["grads"].as_object().unwrap();
    let mut checked = 0;
    for (name, var) in params.vars() {
        let w = layout.pick(&name, ref_grads).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let g = grads
            .get(var.as_tensor())
            .map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .unwrap_or_else(|| vec![0.0; w.len()]);
        assert_close(&g, &w, &format!("{variant}: grad {name}"));
        checked += w.iter().filter(|v| **v != 0.0).count();
    }
    assert!(checked > 500, "{variant}: the gradients are mostly non-zero ({checked})");
}

#[test]
fn mmsr_matches_the_reference_with_k_and_v_equal_to_q() {
    check("code", true);
}

#[test]
fn mmsr_matches_the_paper_variant_with_separate_k_and_v() {
    check("paper", false);
}

/// Per-item modality nodes are the cluster graph with one cluster per item whose row is the
/// item's modality embedding: the two modes give the same output.
#[test]
fn per_item_modality_nodes_equal_one_cluster_per_item() {
    let dev = Device::Cpu;
    let (n_items, d, t) = (10, 8, 6);
    let items = vec![vec![3u32, 1, 4, 1, 5, 0], vec![2, 2, 7, 3, 2, 0], vec![8, 0, 0, 0, 0, 0]];
    let table =
        |m: usize| -> Vec<f32> { (0..(n_items + 1) * d).map(|j| (0.3 * j as f32 + m as f32).sin() * 0.4).collect() };
    let base = MmsrConfig { embedding: d, clusters: n_items + 1, link_k: 1, ..Default::default() };

    let per_item = ParamStore::new(1);
    let mut dims = Dims::ids(n_items, t);
    dims.streams = 2;
    let cfg = MmsrConfig { modality_nodes: kdsr::model::mmsr::ModalityNodes::Items, ..base.clone() };
    let a = Mmsr::new(&cfg, &dims, per_item.var_builder(&dev)).unwrap();

    let clustered = ParamStore::new(2);
    let identity: Vec<u32> = (0..=n_items as u32).collect();
    let mut dims = Dims::ids(n_items, t);
    dims.clusters = vec![clusters("a", d, n_items + 1, identity.clone()), clusters("b", d, n_items + 1, identity)];
    let b = Mmsr::new(&base, &dims, clustered.var_builder(&dev)).unwrap();
    for (m, name) in ["a", "b"].iter().enumerate() {
        let rows = Tensor::from_vec(table(m), (n_items + 1, d), &dev).unwrap();
        clustered.set(&format!("cluster_embedding.{name}"), &rows).unwrap();
    }
    let shared = per_item.tensors();
    for (name, var) in clustered.vars() {
        if let Some(v) = shared.get(&name) {
            var.set(v).unwrap();
        }
    }

    let input = SeqBatch::left_aligned(Tensor::new(items.clone(), &dev).unwrap()).unwrap();
    let flat = Tensor::new(items, &dev).unwrap().flatten_all().unwrap();
    let streams: Vec<Tensor> = (0..2)
        .map(|m| {
            let tab = Tensor::from_vec(table(m), (n_items + 1, d), &dev).unwrap();
            tab.index_select(&flat, 0).unwrap().reshape((3, t, d)).unwrap()
        })
        .collect();
    let ha = a.forward(&input, &Side { summed: None, streams }, &mut Ctx::eval()).unwrap();
    let hb = b.forward(&input, &Side::default(), &mut Ctx::eval()).unwrap();
    let (ha, hb) =
        (ha.flatten_all().unwrap().to_vec1::<f32>().unwrap(), hb.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    assert!(ha.iter().any(|v| v.abs() > 1e-3));
    assert_close(&ha, &hb, "per-item nodes vs one cluster per item");
}
