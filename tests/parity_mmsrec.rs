//! Parity of MMSRec with a PyTorch transcription of the reference forward
//! (kz-song/MMSRec: `FusionEncoderForMaskedLM.prediction` and `modality_embedding_hidden` on
//! PyTorch's own `nn.TransformerEncoder`): same weights, same windows (a full row, padding, a
//! one-item window, right-aligned with the mask last in the reference, left-aligned here), two
//! modality streams; the user states at the mask (`/ τ`), the item tower, the cross-entropy
//! over the cosines and every parameter's gradient; and the masked-item training step
//! (`FusionEncoderForMaskedLM.mlm`) with its draws fixed: states at the target cells, loss and
//! gradients. The fixture
//! tests/fixtures/parity_mmsrec.json is written by `bench/parity_mmsrec.py` (torch 2.15.0,
//! float32).

mod common;

use candle_core::{Device, Tensor};
use common::{assert_close, floats};
use kdsr::model::mmsrec::{Mmsrec, MmsrecConfig};
use kdsr::model::params::ParamStore;
use kdsr::model::{Ctx, Dims, SeqBatch, SeqModel, Side};

/// The script's `pattern`: parameter `name`, the p-th in sorted order, element j.
fn pattern(name: &str, p: usize, n: usize) -> Vec<f32> {
    let norm = name.contains("LayerNorm") || name.starts_with("input_norm") || name.starts_with("final_norm");
    let (base, amp) = match () {
        _ if norm && name.ends_with("weight") => (1.0, 0.2),
        _ if name.ends_with("bias") => (0.0, 0.1),
        _ => (0.0, 0.5),
    };
    (0..n).map(|j| (base + amp * (0.37 * (j as f64 + 1.0) + 1.3 * p as f64).sin()) as f32).collect()
}

/// The fixture's model: MMSRec with the script's weights, its parameters, and the two streams'
/// tables S_m [N + 1, D].
fn reference_model(fx: &serde_json::Value, t: usize) -> (Mmsrec, ParamStore, Vec<Tensor>) {
    let dev = Device::Cpu;
    let get = |k: &str| fx[k].as_u64().unwrap() as usize;
    let (n_items, d) = (get("n_items"), get("dim"));
    let cfg = MmsrecConfig {
        hidden: d,
        n_layers: get("layers"),
        n_heads: get("heads"),
        inner: get("inner"),
        temperature: fx["temperature"].as_f64().unwrap(),
        ..Default::default()
    };
    let params = ParamStore::new(0);
    let mut dims = Dims::ids(n_items, t);
    dims.streams = 2;
    let model = Mmsrec::new(&cfg, &dims, params.var_builder(&dev)).unwrap();
    let names: Vec<&str> = fx["reference"]["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    let vars = params.vars();
    assert_eq!(vars.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), names, "parameter names (sorted)");
    for (p, (name, var)) in vars.iter().enumerate() {
        var.set(&Tensor::from_vec(pattern(name, p, var.elem_count()), var.shape(), &dev).unwrap()).unwrap();
    }
    let tables = fx["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Tensor::from_vec(floats(s), (n_items + 1, d), &dev).unwrap())
        .collect();
    (model, params, tables)
}

/// Each table's rows for the ids `[B, T]`: the streams of a batch.
fn side_of(tables: &[Tensor], ids: &Tensor) -> Side {
    let (b, t) = ids.dims2().unwrap();
    let d = tables[0].dim(1).unwrap();
    let streams = tables
        .iter()
        .map(|s| s.index_select(&ids.flatten_all().unwrap(), 0).unwrap().reshape((b, t, d)).unwrap())
        .collect();
    Side { summed: None, streams }
}

#[test]
fn mmsrec_matches_the_reference() {
    let fx = common::fixture("parity_mmsrec.json");
    let want = &fx["reference"];
    let dev = Device::Cpu;
    let items: Vec<Vec<u32>> = serde_json::from_value(fx["items"].clone()).unwrap();
    let (b, t) = (items.len(), items[0].len());
    let (model, params, tables) = reference_model(&fx, t);
    let (n_items, d) = (tables[0].dim(0).unwrap() - 1, tables[0].dim(1).unwrap());
    let ids = Tensor::new(items.clone(), &dev).unwrap();
    let side = side_of(&tables, &ids);
    let lens: Vec<usize> = items.iter().map(|r| r.iter().filter(|&&i| i != 0).count()).collect();
    let h = model.forward(&SeqBatch::left_aligned(ids).unwrap(), &side, &mut Ctx::eval()).unwrap(); // [B, T, D]
    let cells: Vec<u32> = lens.iter().enumerate().map(|(r, &len)| (r * t + len - 1) as u32).collect();
    let out = h.reshape((b * t, d)).unwrap().index_select(&Tensor::new(cells, &dev).unwrap(), 0).unwrap();
    let expect: Vec<f32> = want["output"].as_array().unwrap().iter().flat_map(floats).collect();
    assert_close(&out.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &expect, "user states / τ");

    let all: Vec<Tensor> = tables.iter().map(|s| s.narrow(0, 1, n_items).unwrap()).collect();
    let tower = model.candidates(&all, &mut Ctx::eval()).unwrap();
    let expect: Vec<f32> = want["tower"].as_array().unwrap().iter().flat_map(floats).collect();
    assert_close(&tower.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &expect, "item tower");

    let targets: Vec<u32> = fx["targets"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32 - 1).collect();
    let loss = kdsr::ops::catalogue_cross_entropy(&out, &tower, &targets).unwrap();
    assert_close(&[loss.to_scalar::<f32>().unwrap()], &[want["loss"].as_f64().unwrap() as f32], "loss");
    common::assert_grads(&params, &loss, &want["grads"], 1000, "mmsrec");
}

#[test]
fn mmsrec_masked_item_training_matches_the_reference() {
    let fx = common::fixture("parity_mmsrec.json");
    let want = &fx["reference"]["cloze"];
    let dev = Device::Cpu;
    let t = fx["items"][0].as_array().unwrap().len();
    let (model, params, tables) = reference_model(&fx, t);
    let (n_items, d) = (tables[0].dim(0).unwrap() - 1, tables[0].dim(1).unwrap());
    // Rows of (input item, masked, target), left-aligned in width t.
    let rows: Vec<Vec<(u32, u32, u32)>> = serde_json::from_value(fx["cloze"].clone()).unwrap();
    let b = rows.len();
    let (mut items, mut masked, mut targets) = (vec![0u32; b * t], vec![false; b * t], vec![0u32; b * t]);
    for (r, row) in rows.iter().enumerate() {
        for (col, &(item, m, target)) in row.iter().enumerate() {
            (items[r * t + col], masked[r * t + col], targets[r * t + col]) = (item, m == 1, target);
        }
    }
    let ids = Tensor::from_vec(items, (b, t), &dev).unwrap();
    let side = side_of(&tables, &ids);
    let mut input = SeqBatch::left_aligned(ids).unwrap();
    input.masked = masked;
    let h = model.forward(&input, &side, &mut Ctx::eval()).unwrap(); // [B, T, D]
    let cells: Vec<u32> = (0..b * t).filter(|&c| targets[c] > 0).map(|c| c as u32).collect();
    let out = h.reshape((b * t, d)).unwrap().index_select(&Tensor::new(cells, &dev).unwrap(), 0).unwrap();
    let expect: Vec<f32> = want["output"].as_array().unwrap().iter().flat_map(floats).collect();
    assert_close(&out.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &expect, "states at the targets / τ");

    let all: Vec<Tensor> = tables.iter().map(|s| s.narrow(0, 1, n_items).unwrap()).collect();
    let tower = model.candidates(&all, &mut Ctx::eval()).unwrap();
    let targets: Vec<u32> = targets.iter().filter(|&&x| x > 0).map(|&x| x - 1).collect();
    let loss = kdsr::ops::catalogue_cross_entropy(&out, &tower, &targets).unwrap();
    assert_close(&[loss.to_scalar::<f32>().unwrap()], &[want["loss"].as_f64().unwrap() as f32], "loss");
    common::assert_grads(&params, &loss, &want["grads"], 1000, "mmsrec cloze");
}
