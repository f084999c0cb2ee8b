//! Table 2's baselines beyond SASRec and GRU4Rec (SR-GNN; SASRM, NOVA, DIF-SR, MMSR and Trans2D
//! with text and attribute embeddings, and MMSRec, ID-free from scratch) train end to end on a
//! real slice of Beauty and beat popularity.

mod common;

use candle_core::Device;
use kdsr::config::{RunConfig, Selection};
use kdsr::data::batch::{BatchUnit, SampleMode};
use kdsr::data::split::Protocol;
use kdsr::data::{DatasetId, DatasetRef};
use kdsr::model::difsr::{DifSrConfig, ScoreFusion};
use kdsr::model::{ModalityMode, ModelKind, ModelSpec};
use kdsr::train::{train_run, RunOptions};

const USERS: usize = 4000;

fn opts() -> RunOptions {
    RunOptions { device: Device::Cpu, progress: false, paths: common::paths(), stop_after: None }
}

fn config(model: ModelKind, epochs: usize) -> RunConfig {
    let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), model, 2023);
    // The hold-out protocol these thresholds were set under: on a slice of a few thousand users
    // the default's validation set (the test items of 10% of them) is too small to select on.
    cfg.protocol = Protocol::Paper;
    cfg.max_users = Some(USERS);
    cfg.train.max_epochs = epochs;
    cfg.train.patience = epochs;
    cfg.train.lr = 3e-3;
    cfg.train.selection = Selection::Last;
    cfg
}

/// Trains `cfg` and popularity on the slice and compares their test metrics: HR@20 above
/// popularity's, NDCG@20 above `margin` times popularity's.
fn beats_popularity(cfg: &RunConfig, margin: f64) {
    beats_popularity_on(cfg, USERS, margin)
}

/// [`beats_popularity`] on the first `users` users.
fn beats_popularity_on(cfg: &RunConfig, users: usize, margin: f64) {
    let ds = common::slice(DatasetId::Beauty, users);
    let dir = tempfile::tempdir().unwrap();
    let mut pop = config(ModelKind::Pop, 1);
    pop.max_users = Some(users);
    let pop = train_run(&pop, &ds, dir.path(), &opts()).unwrap();
    let run = train_run(cfg, &ds, dir.path(), &opts()).unwrap();
    let name = cfg.model.kind().name();
    eprintln!(
        "{name}: test hr@20 {:.3} ndcg@20 {:.3}; pop {:.3} {:.3}",
        run.test.hr[2], run.test.ndcg[2], pop.test.hr[2], pop.test.ndcg[2]
    );
    // 4,000 test instances: HR@20 of ~3-4% is ~150 hits, so the margins are modest.
    assert!(run.test.hr[2] > pop.test.hr[2], "{name} hr@20 {} vs pop {}", run.test.hr[2], pop.test.hr[2]);
    assert!(
        run.test.ndcg[2] > pop.test.ndcg[2] * margin,
        "{name} ndcg@20 {} vs pop {}",
        run.test.ndcg[2],
        pop.test.ndcg[2]
    );
    let toml = std::fs::read_to_string(run.dir.join("run.toml")).unwrap();
    assert!(toml.contains(&format!("kind = \"{name}\"")), "{toml}");
}

/// A non-causal modality model's defaults: prefix samples in unpacked rows, `[modality]` in
/// `mode`.
fn assert_prefix_defaults(cfg: &RunConfig, mode: ModalityMode) {
    assert_eq!((cfg.train.sample_mode, cfg.train.pack), (SampleMode::Prefix, false));
    assert_eq!(cfg.modality.as_ref().map(|m| m.mode), Some(mode));
}

#[test]
fn sasrm_trains_on_frozen_features_and_beats_popularity() {
    let cfg = config(ModelKind::Sasrm, 12);
    assert_eq!(cfg.modality.as_ref().map(|m| m.mode), Some(ModalityMode::Frozen));
    assert_eq!(cfg.variant_name(), "sasrm");
    beats_popularity(&cfg, 1.15);
}

#[test]
fn nova_beats_popularity() {
    let cfg = config(ModelKind::Nova, 12);
    assert_eq!(cfg.modality.as_ref().map(|m| m.mode), Some(ModalityMode::Tuned));
    beats_popularity(&cfg, 1.15);
}

#[test]
fn difsr_beats_popularity() {
    let gate = config(ModelKind::Difsr, 12);
    // The default gate fusion is not causal: prefix samples in unpacked rows, and a run file
    // that asks for sequence samples is refused.
    assert_eq!((gate.train.sample_mode, gate.train.pack), (SampleMode::Prefix, false));
    let mut bad = gate.clone();
    bad.train.sample_mode = SampleMode::Sequence;
    let err = bad.validate().unwrap_err();
    assert!(err.contains("not causal") && err.contains("train.sample_mode"), "{err}");
    // The attribute loss needs the attributes modality.
    let mut text_only = gate.clone();
    text_only.modality.as_mut().unwrap().modalities = vec![kdsr::modality::Modality::Text];
    let err = text_only.validate().unwrap_err();
    assert!(err.contains("model.attribute_loss"), "{err}");
    // Trained here with the causal sum fusion on packed sequences (about 7x cheaper than the
    // gate's full-width prefix rows); the gate's forward and gradients are checked against
    // the reference in tests/parity_side.rs.
    let mut cfg = gate;
    cfg.model = ModelSpec::Difsr(DifSrConfig { fusion: ScoreFusion::Sum, ..Default::default() });
    cfg.train.sample_mode = SampleMode::Sequence;
    cfg.train.pack = true;
    cfg.validate().unwrap();
    beats_popularity(&cfg, 1.15);
}

#[test]
fn srgnn_trains_on_prefixes_and_beats_popularity() {
    let mut cfg = config(ModelKind::Srgnn, 6);
    // SR-GNN has no dropout and overfits this slice within a few epochs (at lr 3e-3, test
    // HR@20 1.81 against popularity's 1.97 at epoch 6; at 1e-3, NDCG@20 0.91 at epoch 4 and
    // 0.82 at epoch 8, popularity 0.82): the default lr and the paper's selection (best
    // validation epoch), and a smaller NDCG margin than the attention models'.
    cfg.train.lr = 1e-3;
    cfg.train.selection = kdsr::config::Selection::BestValid;
    assert_eq!((cfg.train.sample_mode, cfg.train.pack), (SampleMode::Prefix, false));
    assert!(cfg.modality.is_none());
    let mut bad = cfg.clone();
    bad.modality = Some(bad.default_modality());
    let err = bad.validate().unwrap_err();
    assert!(err.contains("takes no modality"), "{err}");
    beats_popularity(&cfg, 1.05);
}

#[test]
fn mmsr_trains_on_cluster_graphs_and_beats_popularity() {
    let cfg = config(ModelKind::Mmsr, 3);
    // Not causal, and it reads only the autoencoder codes: prefix samples and frozen modality
    // settings by default; tuned tables need per-item modality nodes.
    assert_prefix_defaults(&cfg, ModalityMode::Frozen);
    let mut bad = cfg.clone();
    bad.modality.as_mut().unwrap().mode = ModalityMode::Cdl;
    let err = bad.validate().unwrap_err();
    assert!(err.contains("modality.mode") && err.contains("modality_nodes"), "{err}");
    if let ModelSpec::Mmsr(m) = &mut bad.model {
        m.modality_nodes = kdsr::model::mmsr::ModalityNodes::Items;
    }
    bad.validate().unwrap();
    assert_eq!(bad.variant_name(), "mmsr-items+cdl");
    beats_popularity(&cfg, 1.15);
}

#[test]
fn trans2d_trains_on_prefixes_and_beats_popularity() {
    let cfg = config(ModelKind::Trans2d, 3);
    // Bidirectional over (position, channel) cells: prefix samples, tuned modality tables
    // as its channels.
    assert_prefix_defaults(&cfg, ModalityMode::Tuned);
    let mut sequences = cfg.clone();
    sequences.train.sample_mode = SampleMode::Sequence;
    let err = sequences.validate().unwrap_err();
    assert!(err.contains("not causal") && err.contains("train.sample_mode"), "{err}");
    // After 3 epochs: test HR@20 2.43, NDCG@20 0.938 at commit b426a4d; 2.39, 0.898 at ae7eebf
    // with gemm's AVX-512 kernels on an AVX-512 processor (other rounding in its products);
    // popularity 1.97, 0.823.
    beats_popularity(&cfg, 1.05);
}

/// MMSRec trains from scratch here (no pretraining corpus) by masked-item training and learns
/// slowly: on 2,000 users at lr 3e-3 with dropout 0.1 (8 steps of 256 sequences per epoch,
/// ~8 s), test HR@20 / NDCG@20 after epochs 6, 12, 16 and 18 were 1.18 / 0.42, 1.96 / 0.79,
/// 2.41 / 1.09 and 2.67 / 1.09, popularity's 2.22 / 0.97 (`kdsr train --dataset beauty --model
/// mmsrec --max-users 2000 --lr 3e-3 --set model.dropout=0.1 --set model.embedding_dropout=0.1
/// --test-every-epoch`). With prefix samples (one masked last item each; commit f012771) it
/// passed popularity after six epochs of 63 steps (~65 s each).
#[test]
fn mmsrec_learns_from_masked_items_and_beats_popularity() {
    const SLICE: usize = 2000;
    let mut cfg = config(ModelKind::Mmsrec, 18);
    cfg.max_users = Some(SLICE);
    // ID-free over frozen features; masked-item training counted in sequences; candidates from
    // the item tower.
    assert_eq!(
        (cfg.train.sample_mode, cfg.train.batch_unit, cfg.train.pack),
        (SampleMode::Cloze, BatchUnit::Sequences, false)
    );
    assert_eq!(cfg.modality.as_ref().map(|m| m.mode), Some(ModalityMode::Frozen));
    assert!(cfg.model.traits().is_some_and(|t| t.item_tower && t.cloze));
    if let ModelSpec::Mmsrec(m) = &mut cfg.model {
        m.dropout = 0.1;
        m.embedding_dropout = 0.1;
    }
    // From scratch on 2,000 users its test metrics swing by ~20% between epochs: on an AMD EPYC
    // host (AVX2, no AVX-512) epoch 18 had test NDCG@20 0.93 against popularity's 0.97, epochs
    // 16-17 1.10 and 1.09. The epoch with the best validation NDCG@20 (the paper's selection)
    // is the stable thing to test.
    cfg.train.selection = Selection::BestValid;
    beats_popularity_on(&cfg, SLICE, 1.05);
}

/// Masked-item draws come from (seed, epoch, step): a run paused after epoch 1 and resumed
/// draws the same targets as one trained in one go, and ends with the same weights' metrics.
#[test]
fn mmsrec_masked_item_run_resumes_to_the_same_result() {
    const SLICE: usize = 300;
    let mut cfg = config(ModelKind::Mmsrec, 2);
    cfg.max_users = Some(SLICE);
    cfg.train.batch_size = 64;
    let ds = common::slice(DatasetId::Beauty, SLICE);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let whole = train_run(&cfg, &ds, a.path(), &opts()).unwrap();
    let paused = train_run(&cfg, &ds, b.path(), &RunOptions { stop_after: Some(1), ..opts() }).unwrap();
    assert_eq!(paused.paused, Some(1));
    let resumed = train_run(&cfg, &ds, b.path(), &opts()).unwrap();
    assert_eq!(resumed.paused, None);
    let run = |d: &tempfile::TempDir| d.path().join(cfg.run_id());
    assert_eq!(common::epochs_without_timings(&run(&b)), common::epochs_without_timings(&run(&a)));
    assert_eq!((resumed.test, resumed.best_epoch), (whole.test, whole.best_epoch));
}
