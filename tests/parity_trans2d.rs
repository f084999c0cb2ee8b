//! Parity of Trans2D with a PyTorch transcription of the reference forward
//! (urielsinger/Trans2D: `BertModel2D`, `Linear2D`, the 2D attention with its 7-dimensional
//! broadcasts) plus kdsr's next-item head: same weights, same windows (a full row, padding, a
//! one-item window) with the ID channel and two modality streams; the readout at the last cells,
//! the cross-entropy over items 1..N and every parameter's gradient, for the reference's
//! full-width heads with one layer and for split heads with two layers (the last-cell shortcut
//! of the top layer and the all-cell path below it). The fixture
//! tests/fixtures/parity_trans2d.json is written by `bench/parity_trans2d.py` (torch 2.15.0,
//! float32).

mod common;

use candle_core::{Device, IndexOp, Tensor};
use common::{assert_close, fill_pattern, floats};
use kdsr::model::params::ParamStore;
use kdsr::model::trans2d::{HeadWidth, Trans2d, Trans2dConfig};
use kdsr::model::{Ctx, Dims, SeqBatch, SeqModel, Side};

fn check(variant: &str, head_width: HeadWidth) {
    let fx = common::fixture("parity_trans2d.json");
    let want = &fx[variant];
    let dev = Device::Cpu;
    let n_items = fx["n_items"].as_u64().unwrap() as usize;
    let (d, inner) = (fx["dim"].as_u64().unwrap() as usize, fx["inner"].as_u64().unwrap() as usize);
    let items: Vec<Vec<u32>> = serde_json::from_value(fx["items"].clone()).unwrap();
    let (b, t) = (items.len(), items[0].len());
    let cfg = Trans2dConfig {
        hidden: d,
        n_layers: want["layers"].as_u64().unwrap() as usize,
        n_heads: want["heads"].as_u64().unwrap() as usize,
        head_width,
        inner,
        ..Default::default()
    };
    let params = ParamStore::new(0);
    let mut dims = Dims::ids(n_items, t);
    dims.streams = 2;
    let model = Trans2d::new(&cfg, &dims, params.var_builder(&dev)).unwrap();
    let names: Vec<&str> = want["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    fill_pattern(&params, 0.5, &names);

    let streams = fx["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Tensor::from_vec(floats(s), (b, t, d), &dev).unwrap())
        .collect();
    let side = Side { summed: None, streams };
    let lens: Vec<usize> = items.iter().map(|r| r.iter().filter(|&&i| i != 0).count()).collect();
    let input = SeqBatch::left_aligned(Tensor::new(items, &dev).unwrap()).unwrap();
    let h = model.forward(&input, &side, &mut Ctx::eval()).unwrap(); // [B, T, D]
    let cells: Vec<u32> = lens.iter().enumerate().map(|(r, &len)| (r * t + len - 1) as u32).collect();
    let out = h.reshape((b * t, d)).unwrap().index_select(&Tensor::new(cells, &dev).unwrap(), 0).unwrap();
    let got = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let expect: Vec<f32> = want["output"].as_array().unwrap().iter().flat_map(floats).collect();
    assert_close(&got, &expect, &format!("{variant}: readout"));

    let targets: Vec<u32> = fx["targets"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32 - 1).collect();
    let candidates = model.item_table().unwrap().i(1..n_items + 1).unwrap();
    let loss = kdsr::ops::catalogue_cross_entropy(&out, &candidates, &targets).unwrap();
    assert_close(&[loss.to_scalar::<f32>().unwrap()], &[want["loss"].as_f64().unwrap() as f32], "loss");
    common::assert_grads(&params, &loss, &want["grads"], 1000, variant);
}

#[test]
fn trans2d_matches_the_reference_with_full_width_heads() {
    check("full", HeadWidth::Full);
}

#[test]
fn trans2d_matches_with_split_heads_and_two_layers() {
    check("split", HeadWidth::Split);
}
