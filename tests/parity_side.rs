//! Parity of the side-information backbones (DIF-SR with modality streams and with categorical
//! attributes, NOVA) with PyTorch transcriptions of
//! their reference forward passes: same weights, same items and side streams; hidden states,
//! loss (cross-entropy + DIF-SR's attribute loss) and every parameter's gradient.
//!
//! NOVA also in its cloze variant: at the mask appended after a history, and on a masked-item
//! batch.
//!
//! The fixture tests/fixtures/parity_side.json is written by `bench/parity_side.py` (torch
//! 2.15.0, float64); see that script for the weights' pattern and what is transcribed.

mod common;

use candle_core::{DType, Device, Tensor};
use common::{assert_close as close, floats};
use kdsr::model::difsr::{DifSrConfig, SideInfo};
use kdsr::model::nova::{NovaConfig, Variant};
use kdsr::model::params::ParamStore;
use kdsr::model::{Backbone, Ctx, Dims, ModelSpec, SeqBatch, Side};

const N_ITEMS: usize = 10;
const D: usize = 8;
const STREAMS: usize = 2;
const ATTRS: usize = 4;
const MAX_LEN: usize = 6;

/// Builds `spec` with the fixture's weights, runs the first `width` columns and checks
/// everything against `fx[key]`.
fn check(spec: ModelSpec, key: &str, width: usize) {
    let fx = common::fixture("parity_side.json");
    let dev = Device::Cpu;
    let labels = Tensor::from_vec(floats(&fx["labels"]), (N_ITEMS + 1, ATTRS), &dev).unwrap();
    let dims = Dims {
        n_items: N_ITEMS,
        max_len: MAX_LEN,
        streams: STREAMS,
        attribute_labels: Some(labels),
        clusters: Vec::new(),
    };
    let params = ParamStore::new(0);
    let model = Backbone::new(&spec, &dims, params.var_builder(&dev)).unwrap().unwrap();
    let want = &fx[key];
    let grads_want = want["grads"].as_object().unwrap();
    common::fill_pattern(&params, 0.5, &grads_want.keys().map(String::as_str).collect::<Vec<_>>());
    let vars = params.vars();

    let items: Vec<Vec<u32>> = fx["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().take(width).map(|x| x.as_u64().unwrap() as u32).collect())
        .collect();
    let b = items.len();
    let full = fx["items"][0].as_array().unwrap().len();
    let items_t = Tensor::new(items.clone(), &dev).unwrap();
    let streams = Tensor::from_vec(floats(&fx["streams"]), (STREAMS, b, full, D), &dev).unwrap();
    let side = Side {
        summed: None,
        streams: (0..STREAMS).map(|m| streams.get(m).unwrap().narrow(1, 0, width).unwrap()).collect(),
    };
    let h = model.forward(&SeqBatch::left_aligned(items_t).unwrap(), &side, &mut Ctx::eval()).unwrap(); // [B, W, D]

    let lens: Vec<usize> = items.iter().map(|r| r.iter().filter(|&&i| i != 0).count()).collect();
    // The reference's states at every real cell, row by row; a non-causal model (one prefix per
    // row) computes its top layer at each row's last cell only, so only those are compared.
    let every_cell = spec.traits().is_some_and(|t| t.causal);
    let hidden_want: Vec<Vec<f32>> = want["hidden"].as_array().unwrap().iter().map(floats).collect();
    let (mut got, mut expect) = (Vec::new(), Vec::new());
    let mut k = 0;
    for (r, &len) in lens.iter().enumerate() {
        for c in 0..len {
            if every_cell || c + 1 == len {
                got.extend(h.get(r).unwrap().get(c).unwrap().to_vec1::<f32>().unwrap());
                expect.extend(&hidden_want[k]);
            }
            k += 1;
        }
    }
    assert_eq!(k, hidden_want.len(), "one reference state per real cell");
    close(&got, &expect, &format!("{key} hidden"));

    let cells: Vec<u32> = lens.iter().enumerate().map(|(r, &len)| (r * width + len - 1) as u32).collect();
    let last = h.reshape((b * width, D)).unwrap().index_select(&Tensor::new(cells, &dev).unwrap(), 0).unwrap();
    let targets: Vec<u32> = fx["targets"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let zero_based: Vec<u32> = targets.iter().map(|t| t - 1).collect();
    let mut loss =
        kdsr::ops::catalogue_cross_entropy(&last, &model.candidates(&[], &mut Ctx::eval()).unwrap(), &zero_based)
            .unwrap();
    if let Some(aux) = model.aux_loss(&last, &Tensor::new(targets, &dev).unwrap()).unwrap() {
        loss = (loss + aux).unwrap();
    }
    let got = loss.to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap();
    close(&[got], &[want["loss"].as_f64().unwrap() as f32], &format!("{key} loss"));
    let grads = loss.backward().unwrap();
    for (name, var) in &vars {
        let g = grads.get(var.as_tensor()).map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let w = floats(&grads_want[name]);
        let g = g.unwrap_or_else(|| vec![0.0; w.len()]);
        close(&g, &w, &format!("{key} grad {name}"));
    }
}

#[test]
fn difsr_matches_reference_forward_loss_and_gradients() {
    let cfg = DifSrConfig { hidden: D, n_layers: 2, n_heads: 2, inner: 16, ..Default::default() };
    // Five columns: the model pads its rows to max_len (6) itself, as the gate needs.
    check(ModelSpec::Difsr(cfg), "difsr", 5);
}

/// The reference's side information: the items' attribute ids embedded and sum-pooled, the
/// table never trained (its gradient is zero on both sides); the run's modality streams unused.
#[test]
fn difsr_categorical_matches_reference_forward_loss_and_gradients() {
    let cfg = DifSrConfig {
        hidden: D,
        n_layers: 2,
        n_heads: 2,
        inner: 16,
        side: SideInfo::Categorical,
        ..Default::default()
    };
    check(ModelSpec::Difsr(cfg), "difsr_categorical", 5);
}

#[test]
fn nova_matches_reference_forward_loss_and_gradients() {
    let cfg = NovaConfig { hidden: D, n_layers: 2, n_heads: 2, inner: 16, ..Default::default() };
    check(ModelSpec::Nova(cfg), "nova", 6);
}

#[test]
fn nova_cloze_matches_reference_at_the_appended_mask() {
    let cfg =
        NovaConfig { hidden: D, n_layers: 2, n_heads: 2, inner: 16, variant: Variant::Cloze, ..Default::default() };
    check(ModelSpec::Nova(cfg), "nova_cloze", 6);
}

/// A masked-item batch: the mask embedding at masked cells (their side streams zeroed), a
/// random item where the draw replaced one, bidirectional attention; states at every real
/// cell, the mean cross-entropy over the target cells, every gradient.
#[test]
fn nova_cloze_matches_reference_on_a_masked_item_batch() {
    let fx = common::fixture("parity_side.json");
    let want = &fx["nova_cloze_masked"];
    let dev = Device::Cpu;
    let cfg =
        NovaConfig { hidden: D, n_layers: 2, n_heads: 2, inner: 16, variant: Variant::Cloze, ..Default::default() };
    let dims =
        Dims { n_items: N_ITEMS, max_len: MAX_LEN, streams: STREAMS, attribute_labels: None, clusters: Vec::new() };
    let params = ParamStore::new(0);
    let model = Backbone::new(&ModelSpec::Nova(cfg), &dims, params.var_builder(&dev)).unwrap().unwrap();
    let grads_want = want["grads"].as_object().unwrap();
    common::fill_pattern(&params, 0.5, &grads_want.keys().map(String::as_str).collect::<Vec<_>>());
    let rows = |key: &str| -> Vec<Vec<u32>> {
        want[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
            .collect()
    };
    let (items, masked, targets) = (rows("items"), rows("masked"), rows("targets"));
    let (b, t) = (items.len(), items[0].len());
    let mut batch = SeqBatch::left_aligned(Tensor::new(items.clone(), &dev).unwrap()).unwrap();
    batch.masked = masked.iter().flatten().map(|&m| m == 1).collect();
    let streams = Tensor::from_vec(floats(&fx["streams"]), (STREAMS, b, t, D), &dev).unwrap();
    let side = Side { summed: None, streams: (0..STREAMS).map(|m| streams.get(m).unwrap()).collect() };
    let h = model.forward(&batch, &side, &mut Ctx::eval()).unwrap(); // [B, T, D]

    let real: Vec<u32> = (0..b * t).filter(|&c| items[c / t][c % t] != 0).map(|c| c as u32).collect();
    let flat = h.reshape((b * t, D)).unwrap();
    let got = flat.index_select(&Tensor::new(real, &dev).unwrap(), 0).unwrap().flatten_all().unwrap();
    let hidden_want: Vec<f32> = want["hidden"].as_array().unwrap().iter().flat_map(floats).collect();
    close(&got.to_vec1::<f32>().unwrap(), &hidden_want, "nova_cloze_masked hidden");

    let cells: Vec<u32> = (0..b * t).filter(|&c| targets[c / t][c % t] != 0).map(|c| c as u32).collect();
    let zero_based: Vec<u32> = cells.iter().map(|&c| targets[c as usize / t][c as usize % t] - 1).collect();
    let states = flat.index_select(&Tensor::new(cells, &dev).unwrap(), 0).unwrap();
    let loss =
        kdsr::ops::catalogue_cross_entropy(&states, &model.candidates(&[], &mut Ctx::eval()).unwrap(), &zero_based)
            .unwrap();
    let got = loss.to_dtype(DType::F32).unwrap().to_scalar::<f32>().unwrap();
    close(&[got], &[want["loss"].as_f64().unwrap() as f32], "nova_cloze_masked loss");
    let grads = loss.backward().unwrap();
    for (name, var) in &params.vars() {
        let w = floats(&grads_want[name]);
        let g = grads.get(var.as_tensor()).map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        close(&g.unwrap_or_else(|| vec![0.0; w.len()]), &w, &format!("nova_cloze_masked grad {name}"));
    }
}
