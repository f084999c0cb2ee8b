//! Parity of SR-GNN with RecBole 1.2.1's own `SRGNN` class: same weights, same padded
//! windows (a repeated item, a self-loop, padding); the session output, the cross-entropy over
//! items 1..N and every parameter's gradient. The fixture tests/fixtures/parity_srgnn.json is
//! written by `bench/parity_srgnn.py` (torch 2.15.0, float32, as RecBole builds its graphs).

mod common;

use candle_core::{Device, Tensor};
use common::{assert_close, floats};
use kdsr::model::params::ParamStore;
use kdsr::model::srgnn::SrGnnConfig;
use kdsr::model::{Backbone, Ctx, Dims, ModelSpec, SeqBatch, Side};

#[test]
fn srgnn_matches_recbole_output_loss_and_gradients() {
    let fx = common::fixture("parity_srgnn.json");
    let dev = Device::Cpu;
    let params = ParamStore::new(0);
    let spec = ModelSpec::Srgnn(SrGnnConfig { embedding: 8, step: 1 });
    let model = Backbone::new(&spec, &Dims::ids(10, 6), params.var_builder(&dev)).unwrap().unwrap();
    let grads_want = fx["grads"].as_object().unwrap();
    common::fill_pattern(&params, 0.5, &grads_want.keys().map(String::as_str).collect::<Vec<_>>());

    let items: Vec<Vec<u32>> = fx["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect();
    let (b, t) = (items.len(), items[0].len());
    let lens: Vec<usize> = items.iter().map(|r| r.iter().filter(|&&i| i != 0).count()).collect();
    let h = model
        .forward(
            &SeqBatch::left_aligned(Tensor::new(items, &dev).unwrap()).unwrap(),
            &Side::default(),
            &mut Ctx::eval(),
        )
        .unwrap(); // [B, T, D]
    let cells: Vec<u32> = lens.iter().enumerate().map(|(r, &len)| (r * t + len - 1) as u32).collect();
    let out = h.reshape((b * t, 8)).unwrap().index_select(&Tensor::new(cells, &dev).unwrap(), 0).unwrap();
    let want: Vec<f32> = fx["output"].as_array().unwrap().iter().flat_map(floats).collect();
    assert_close(&out.flatten_all().unwrap().to_vec1::<f32>().unwrap(), &want, "session output");
    // Every other cell is zero: only the last cell of a window carries the output.
    let total = h.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    let at_last = out.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!((total - at_last).abs() < 1e-5 * total, "{total} vs {at_last}");

    let targets: Vec<u32> = fx["targets"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32 - 1).collect();
    let loss =
        kdsr::ops::catalogue_cross_entropy(&out, &model.candidates(&[], &mut Ctx::eval()).unwrap(), &targets).unwrap();
    assert_close(&[loss.to_scalar::<f32>().unwrap()], &[fx["loss"].as_f64().unwrap() as f32], "loss");
    let grads = loss.backward().unwrap();
    for (name, var) in params.vars() {
        let w = floats(&grads_want[&name]);
        let g = grads
            .get(var.as_tensor())
            .map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .unwrap_or_else(|| vec![0.0; w.len()]);
        assert_close(&g, &w, &format!("grad {name}"));
    }
}
