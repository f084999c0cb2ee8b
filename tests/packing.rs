//! Packed batches (several sequences per row, block-diagonal causal attention, GRU state reset
//! at each sequence start) compute the same training step as padded batches (one window per
//! row) on the same samples: same loss and the same gradient for every parameter, to 1e-5 of
//! each gradient's scale. Checked in eval mode (dropout draws differ between layouts) on real
//! Beauty users, for SASRec, GRU4Rec, and SASRec with modality tables and both correlation
//! losses; and packing must actually remove padding. Evaluation's forward pass, which computes
//! the top layer at the read cells only, gives the states of the full forward pass there.

mod common;

use candle_core::{Device, Tensor};
use kdsr::config::RunConfig;
use kdsr::data::batch::{
    eval_batch, eval_windows, steps, train_batch, train_windows, BatchUnit, Layout, SampleMode, Window,
};
use kdsr::data::split::Split;
use kdsr::data::{Dataset, DatasetId, DatasetRef};
use kdsr::modality::Modality;
use kdsr::model::{Ctx, SeqBatch};
use kdsr::train::setup::{self, Setup};
use kdsr::train::step::{batch_loss, by_width, step_loss, whole_batch_loss};
use kdsr::train::RunOptions;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Loss and every parameter's gradient (by name) of one step on `windows` laid out as `layout`.
fn step(s: &mut Setup, ds: &Dataset, windows: &[Window], layout: Layout) -> (f32, Vec<(String, Vec<f32>)>, usize) {
    let batch = train_batch(&ds.sequences, windows, layout);
    let (mut loss, _) = batch_loss(&s.model, &batch, &mut Ctx::eval(), &Device::Cpu).unwrap();
    if let Some(cdl) = s.cdl.as_mut() {
        let tables: Vec<Tensor> = s.model.modality.as_ref().unwrap().tables.clone();
        let (l, parts) = cdl.loss(&batch, &tables).unwrap().expect("the batch has pairs");
        assert!(parts.holistic > 0.0 && parts.dissected > 0.0);
        loss = (loss + l).unwrap();
    }
    (loss.to_scalar::<f32>().unwrap(), gradients(s, &loss), batch.items.len())
}

/// Every parameter's gradient of `loss`, by name.
fn gradients(s: &Setup, loss: &Tensor) -> Vec<(String, Vec<f32>)> {
    let grads = loss.backward().unwrap();
    s.params
        .vars()
        .into_iter()
        .map(|(name, v)| {
            let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
            (name, g.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        })
        .collect()
}

/// `cfg` set up on `users` Beauty users, and the windows of a first training step of 256
/// targets, as training takes it (its last window may be split), after a seeded shuffle.
fn first_step(cfg: &RunConfig, users: usize) -> (Dataset, Setup, Vec<Window>) {
    let ds = common::slice(DatasetId::Beauty, users);
    let split = Split::new(&ds.sequences, cfg.protocol);
    let opts = RunOptions { device: Device::Cpu, progress: false, paths: common::paths(), stop_after: None };
    let s = setup::build(cfg, &ds, &split, &opts).unwrap();
    let mut windows = train_windows(&split, cfg.train.max_len, SampleMode::Sequence);
    windows.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(9));
    let first = steps(&windows, 256, BatchUnit::Targets).swap_remove(0);
    (ds, s, first)
}

fn check(cfg: RunConfig, users: usize) {
    let (ds, mut s, first) = first_step(&cfg, users);
    assert_eq!(first.iter().map(Window::targets).sum::<usize>(), 256);
    let (l_pad, g_pad, cells_pad) = step(&mut s, &ds, &first, Layout::Padded);
    let (l_pack, g_pack, cells_pack) = step(&mut s, &ds, &first, Layout::Packed);
    assert!(cells_pack * 3 < cells_pad, "packing should remove most padding: {cells_pack} vs {cells_pad} cells");
    assert!((l_pad - l_pack).abs() <= 1e-5 * l_pad.abs().max(1.0), "loss: padded {l_pad} vs packed {l_pack}");
    assert_eq!(g_pad.len(), g_pack.len());
    for ((name, a), (_, b)) in g_pad.iter().zip(&g_pack) {
        let scale = a.iter().map(|v| v.abs()).fold(0f32, f32::max);
        assert!(scale > 0.0, "{name}: zero gradient");
        let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff <= 1e-5 * scale.max(1e-3), "{name}: max |padded - packed| {diff} at scale {scale}");
    }
}

fn config(model: kdsr::model::ModelKind) -> RunConfig {
    RunConfig::new(DatasetRef::Named(DatasetId::Beauty), model, 2023)
}

#[test]
fn sasrec_packed_step_equals_padded_step() {
    check(config(kdsr::model::ModelKind::Sasrec), 400);
}

#[test]
fn gru4rec_packed_step_equals_padded_step() {
    check(config(kdsr::model::ModelKind::Gru4rec), 400);
}

/// `model` on `users` Beauty users with an attributes table and a cheap teacher (only the
/// equalities matter here).
fn with_attributes(model: kdsr::model::ModelKind, users: usize) -> RunConfig {
    let mut cfg = config(model);
    cfg.max_users = Some(users);
    let mut mc = cfg.modality.clone().unwrap_or_else(|| cfg.default_modality());
    mc.modalities = vec![Modality::Attributes];
    mc.autoencoder.max_epochs = 20;
    mc.drift.pairs = 0;
    cfg.modality = Some(mc);
    cfg
}

#[test]
fn sasrec_with_cdl_packed_step_equals_padded_step() {
    check(with_attributes(kdsr::model::ModelKind::Sasrec, 400), 400);
}

/// Loss and gradients (bits, by parameter name) of one training step as training takes it
/// ([`step_loss`]: the correlation losses read their rows in the input's table lookup) and
/// with the correlation losses gathering from the tables on their own: equal to the bit.
fn check_shared_lookup(cfg: RunConfig, users: usize) {
    let (ds, mut s, first) = first_step(&cfg, users);
    let batch = train_batch(&ds.sequences, &first, Layout::Packed);
    let bits = |s: &Setup, loss: &Tensor| -> Vec<(String, Vec<u32>)> {
        let mut out: Vec<(String, Vec<u32>)> =
            gradients(s, loss).into_iter().map(|(n, g)| (n, g.iter().map(|x| x.to_bits()).collect())).collect();
        out.push(("loss".into(), vec![loss.to_scalar::<f32>().unwrap().to_bits()]));
        out
    };
    let shared = step_loss(&s.model, s.cdl.as_mut(), &batch, &mut Ctx::eval(), &Device::Cpu).unwrap();
    assert!(shared.cdl.is_some_and(|p| p.holistic > 0.0 && p.dissected > 0.0));
    let a = bits(&s, &shared.total);
    let (ce, _) = batch_loss(&s.model, &batch, &mut Ctx::eval(), &Device::Cpu).unwrap();
    let tables: Vec<Tensor> = s.model.modality.as_ref().unwrap().tables.clone();
    let (l, _) = s.cdl.as_mut().unwrap().loss(&batch, &tables).unwrap().expect("the batch has pairs");
    let b = bits(&s, &(ce + l).unwrap());
    assert!(a.iter().any(|(n, _)| n.starts_with(kdsr::model::fusion::TABLE_PREFIX)), "no modality table");
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{name}: the shared lookup changed the value");
    }
}

#[test]
fn sasrec_cdl_step_with_shared_lookup_is_bit_identical() {
    check_shared_lookup(with_attributes(kdsr::model::ModelKind::Sasrec, 400), 400);
}

#[test]
fn nova_cdl_step_with_shared_lookup_is_bit_identical() {
    // NOVA takes each modality as its own stream rather than summed into the input.
    let mut cfg = with_attributes(kdsr::model::ModelKind::Nova, 400);
    cfg.modality.as_mut().unwrap().mode = kdsr::model::ModalityMode::Cdl;
    check_shared_lookup(cfg, 400);
}

/// The states at the cells evaluation reads (valid and test of every user, one packed pass),
/// from `forward_at` and from the full `forward`, agree to 1e-5 of their scale.
fn check_read_cells(cfg: RunConfig, users: usize) {
    let ds = common::slice(DatasetId::Beauty, users);
    let split = Split::new(&ds.sequences, cfg.protocol);
    let opts = RunOptions { device: Device::Cpu, progress: false, paths: common::paths(), stop_after: None };
    let s = setup::build(&cfg, &ds, &split, &opts).unwrap();
    let instances: Vec<_> = split.valid.iter().chain(&split.test).copied().collect();
    let windows = eval_windows(&instances, cfg.train.max_len, true);
    let (batch, reads) = eval_batch(&ds.sequences, &windows, Layout::Packed);
    let cells: Vec<u32> = reads.iter().map(|&(c, _)| c).collect();
    assert_eq!(cells.len(), instances.len());
    let input = SeqBatch::new(&batch, &Device::Cpu).unwrap();
    let at = s.model.forward_at(&input, &cells, &mut Ctx::eval()).unwrap();
    let full = s.model.forward(&input, &mut Ctx::eval()).unwrap();
    let d = full.dim(2).unwrap();
    let idx = Tensor::from_slice(&cells, cells.len(), &Device::Cpu).unwrap();
    let want = full.reshape((batch.rows * batch.width, d)).unwrap().index_select(&idx, 0).unwrap();
    let (a, b) = (at.to_vec2::<f32>().unwrap(), want.to_vec2::<f32>().unwrap());
    let scale = b.iter().flatten().map(|v| v.abs()).fold(0f32, f32::max);
    let diff = a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(scale > 0.1 && diff <= 1e-5 * scale, "max |forward_at - forward| {diff} at scale {scale}");
}

#[test]
fn sasrec_states_at_read_cells_equal_the_full_forward() {
    check_read_cells(config(kdsr::model::ModelKind::Sasrec), 300);
}

#[test]
fn sasrm_states_at_read_cells_equal_the_full_forward() {
    check_read_cells(with_attributes(kdsr::model::ModelKind::Sasrm, 300), 300);
}

/// A model that is not causal trains each step's prefix samples in groups of rows of similar
/// length (`batch_loss`): the same loss and gradients as the whole padded batch, for every
/// such model that does not group its rows itself, and the groups hold far fewer cells.
#[test]
fn non_causal_models_train_in_width_groups_with_the_same_step() {
    use kdsr::model::ModelKind;
    // SR-GNN groups its rows itself (`own_row_groups`; tests/parity_srgnn.rs holds its rows of
    // different lengths to RecBole's).
    for kind in [ModelKind::Difsr, ModelKind::Trans2d, ModelKind::Mmsr, ModelKind::KdsrRgat] {
        let cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), kind, 2023);
        assert_eq!(cfg.train.sample_mode, SampleMode::Prefix, "{kind:?} trains on prefix samples");
        let ds = common::slice(DatasetId::Beauty, 300);
        let split = Split::new(&ds.sequences, cfg.protocol);
        let opts = RunOptions { device: Device::Cpu, progress: false, paths: common::paths(), stop_after: None };
        let s = setup::build(&cfg, &ds, &split, &opts).unwrap();
        let mut windows = train_windows(&split, cfg.train.max_len, cfg.train.sample_mode);
        windows.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(9));
        let first = steps(&windows, 256, BatchUnit::Targets).swap_remove(0);
        let batch = train_batch(&ds.sequences, &first, Layout::Padded);
        let groups = by_width(&batch);
        let cells: usize = groups.iter().map(|g| g.items.len()).sum();
        assert!(groups.len() >= 2 && cells * 2 < batch.items.len(), "{kind:?}: {} groups, {cells} cells", groups.len());
        let run = |grouped: bool| {
            let f = if grouped { batch_loss } else { whole_batch_loss };
            let (loss, m) = f(&s.model, &batch, &mut Ctx::eval(), &Device::Cpu).unwrap();
            assert_eq!(m, 256);
            (loss.to_scalar::<f32>().unwrap(), gradients(&s, &loss))
        };
        let ((l_group, g_group), (l_whole, g_whole)) = (run(true), run(false));
        assert!((l_group - l_whole).abs() <= 1e-5 * l_whole.abs(), "{kind:?} loss: {l_group} vs {l_whole}");
        for ((name, a), (_, b)) in g_group.iter().zip(&g_whole) {
            let scale = b.iter().map(|v| v.abs()).fold(0f32, f32::max);
            let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(diff <= 1e-5 * scale.max(1e-3), "{kind:?} {name}: max |grouped - whole| {diff} at scale {scale}");
        }
    }
}
