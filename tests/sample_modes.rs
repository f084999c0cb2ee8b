//! Whole-sequence training equals prefix augmentation where no truncation applies: for a
//! causal backbone, one forward pass over a user's training sequence yields every prefix's
//! prediction. Checked in eval mode (no dropout) on real Beauty users: same mean loss and the
//! same gradients, for SASRec and GRU4Rec.

mod common;

use candle_core::Device;
use kdsr::data::batch::{train_batch, train_windows, Layout, SampleMode};
use kdsr::data::split::{Protocol, Split};
use kdsr::data::DatasetId;
use kdsr::model::params::ParamStore;
use kdsr::model::{Backbone, Ctx, Dims, ModelKind, ModelSpec};
use kdsr::train::step::batch_loss;

fn check(kind: ModelKind) {
    let mut ds = common::slice(DatasetId::Beauty, 200);
    ds.sequences.retain(|s| s.len() <= 40); // no truncation at max_len 50
    let split = Split::new(&ds.sequences, Protocol::Paper);
    let params = ParamStore::new(7);
    let spec = ModelSpec::default_for(kind);
    let model = Backbone::new(&spec, &Dims::ids(ds.n_items, 50), params.var_builder(&Device::Cpu)).unwrap().unwrap();
    let model = kdsr::model::Recommender { backbone: model, modality: None };
    let mut results = Vec::new();
    for mode in [SampleMode::Prefix, SampleMode::Sequence] {
        let windows = train_windows(&split, 50, mode);
        let batch = train_batch(&ds.sequences, &windows, Layout::Padded);
        let (loss, m) = batch_loss(&model, &batch, &mut Ctx::eval(), &Device::Cpu).unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<Vec<f32>> = params
            .vars()
            .iter()
            .filter_map(|(_, v)| grads.get(v.as_tensor()))
            .map(|g| g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
            .collect();
        results.push((windows.len(), m, loss.to_scalar::<f32>().unwrap(), g));
    }
    let (p, s) = (&results[0], &results[1]);
    assert!(p.0 > s.0 * 2, "prefix mode should have many more windows ({} vs {})", p.0, s.0);
    assert_eq!(p.1, s.1, "same number of targets");
    assert!((p.2 - s.2).abs() < 1e-5, "loss: prefix {} vs sequence {}", p.2, s.2);
    assert_eq!(p.3.len(), s.3.len());
    for (gp, gs) in p.3.iter().zip(&s.3) {
        let scale = gp.iter().map(|v| v.abs()).fold(0f32, f32::max).max(1e-6);
        let diff = gp.iter().zip(gs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff / scale < 1e-3, "gradient differs: max |diff| {diff} at scale {scale}");
    }
}

#[test]
fn sasrec_sequence_mode_equals_prefix_mode() {
    check(ModelKind::Sasrec);
}

#[test]
fn gru4rec_sequence_mode_equals_prefix_mode() {
    check(ModelKind::Gru4rec);
}
