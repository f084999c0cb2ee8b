//! Parity of the released KDSR network (`kdsr-rgat`) with a PyTorch transcription of the
//! reference forward (`model_corvector.VLGraph` without the correlation losses,
//! `aggregator.RGATLayer`, the `data_utils` graph, the `last_sum` readout): same weights, same
//! windows (repeated items, a repeated step, a window whose last two cells are one node, a
//! one-item window), two modality tables read unprojected; the readout, the cross-entropy over
//! items 1..N and every parameter's gradient, in eval mode. The fixture
//! tests/fixtures/parity_kdsr_rgat.json is written by `bench/parity_kdsr_rgat.py` (torch
//! 2.15.0, float32; the reference pads nodes to its data's longest window, kdsr to `max_len`).
//! Then the training-mode forward: deterministic per seed, and changed by the dropout order.

mod common;

use candle_core::{Device, IndexOp, Tensor};
use common::{assert_close, assert_grads, fill_pattern, floats};
use kdsr::model::kdsr_rgat::{AttentionDropout, KdsrRgatConfig};
use kdsr::model::params::ParamStore;
use kdsr::model::{Backbone, Ctx, Dims, Inputs, ModalityEmbeddings, ModalityMode, ModelSpec, Recommender, SeqBatch};

/// The network with two unprojected modality tables, its parameters in `params`.
fn build(cfg: KdsrRgatConfig, n_items: usize, t: usize, params: &ParamStore) -> Recommender {
    let (dev, d) = (Device::Cpu, cfg.embedding);
    let mut dims = Dims::ids(n_items, t);
    dims.streams = 2;
    let backbone = Backbone::new(&ModelSpec::KdsrRgat(cfg), &dims, params.var_builder(&dev)).unwrap().unwrap();
    let inits: Vec<(String, Vec<f32>, usize)> =
        ["image", "text"].iter().map(|m| (m.to_string(), vec![0.0; (n_items + 1) * d], d)).collect();
    let modality =
        ModalityEmbeddings::new(&inits, n_items + 1, d, ModalityMode::Tuned, Inputs::Tables, params, &dev).unwrap();
    Recommender { backbone, modality: Some(modality) }
}

/// The states at each row's last cell: [B, D].
fn at_last(h: &Tensor, items: &[Vec<u32>]) -> Tensor {
    let (b, t, d) = h.dims3().unwrap();
    let cells: Vec<u32> =
        items.iter().enumerate().map(|(r, row)| (r * t + row.iter().filter(|&&i| i != 0).count() - 1) as u32).collect();
    h.reshape((b * t, d)).unwrap().index_select(&Tensor::new(cells, &Device::Cpu).unwrap(), 0).unwrap()
}

fn max_abs_err(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn kdsr_rgat_matches_the_reference() {
    let fx = common::fixture("parity_kdsr_rgat.json");
    let want = &fx["code"];
    let dev = Device::Cpu;
    let (n_items, d) = (fx["n_items"].as_u64().unwrap() as usize, fx["dim"].as_u64().unwrap() as usize);
    let items: Vec<Vec<u32>> = serde_json::from_value(fx["items"].clone()).unwrap();
    let t = items[0].len();
    let params = ParamStore::new(0);
    let model = build(KdsrRgatConfig { embedding: d, ..Default::default() }, n_items, t, &params);
    let names: Vec<&str> = want["names"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    fill_pattern(&params, 1.0, &names);

    let input = SeqBatch::left_aligned(Tensor::new(items.clone(), &dev).unwrap()).unwrap();
    let h = model.forward(&input, &mut Ctx::eval()).unwrap();
    let out = at_last(&h, &items);
    let expect: Vec<f32> = want["output"].as_array().unwrap().iter().flat_map(floats).collect();
    let got = out.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_close(&got, &expect, "readout");
    eprintln!("readout: max abs error {:.2e}", max_abs_err(&got, &expect));
    let total = h.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    let at_cells = out.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!((total - at_cells).abs() < 1e-5 * total, "only the last cells carry the output");

    let targets: Vec<u32> = fx["targets"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32 - 1).collect();
    let candidates = model.backbone.item_table().unwrap().i(1..n_items + 1).unwrap();
    let loss = kdsr::ops::catalogue_cross_entropy(&out, &candidates, &targets).unwrap();
    let (got, expect) = (loss.to_scalar::<f32>().unwrap(), want["loss"].as_f64().unwrap() as f32);
    assert_close(&[got], &[expect], "loss");
    eprintln!("loss: {got} vs {expect}");
    let grads = loss.backward().unwrap();
    for (name, var) in params.vars() {
        let g = grads.get(var.as_tensor()).map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let w = floats(&want["grads"][&name]);
        let err = max_abs_err(&g.unwrap_or_else(|| vec![0.0; w.len()]), &w);
        eprintln!("grad {name}: max abs error {err:.2e} (max |grad| {:.2e})", max_abs_err(&w, &vec![0.0; w.len()]));
    }
    assert_grads(&params, &loss, &want["grads"], 250, "kdsr-rgat");
}

/// In training mode the forward is fixed by the dropout seed, and the released dropout order
/// (on the masked logits) and the usual one (on the weights) give different outputs; in eval
/// mode they agree.
#[test]
fn the_dropout_order_switch_changes_the_training_forward() {
    let dev = Device::Cpu;
    let items = vec![vec![3u32, 1, 4, 1, 5, 0], vec![2, 2, 7, 3, 2, 0], vec![8, 0, 0, 0, 0, 0]];
    let input = SeqBatch::left_aligned(Tensor::new(items.clone(), &dev).unwrap()).unwrap();
    let run = |on: AttentionDropout, ctx: &mut Ctx| -> Vec<f32> {
        let params = ParamStore::new(5);
        let cfg = KdsrRgatConfig { embedding: 8, attention_dropout_on: on, ..Default::default() };
        let model = build(cfg, 10, 6, &params);
        let names: Vec<String> = params.vars().into_iter().map(|(n, _)| n).collect();
        fill_pattern(&params, 1.0, &names.iter().map(String::as_str).collect::<Vec<_>>());
        let h = model.forward(&input, ctx).unwrap();
        at_last(&h, &items).flatten_all().unwrap().to_vec1::<f32>().unwrap()
    };
    let released = run(AttentionDropout::Logits, &mut Ctx::train(11));
    assert_eq!(released, run(AttentionDropout::Logits, &mut Ctx::train(11)), "same seed, same forward");
    assert_ne!(released, run(AttentionDropout::Logits, &mut Ctx::train(12)), "another seed, another mask");
    let corrected = run(AttentionDropout::Weights, &mut Ctx::train(11));
    assert!(released.iter().zip(&corrected).any(|(a, b)| (a - b).abs() > 1e-3), "the order changes the forward");
    assert_eq!(run(AttentionDropout::Logits, &mut Ctx::eval()), run(AttentionDropout::Weights, &mut Ctx::eval()));
}

/// Unprojected tables must be as wide as the model.
#[test]
fn raw_tables_must_match_the_width() {
    let params = ParamStore::new(0);
    let inits = vec![("text".to_string(), vec![0.0; 11 * 4], 4)];
    let err = ModalityEmbeddings::new(&inits, 11, 8, ModalityMode::Tuned, Inputs::Tables, &params, &Device::Cpu);
    assert!(err.is_err());
}
