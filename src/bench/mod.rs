//! `kdsr bench`: times one training step (forward, cross-entropy over all items, backward,
//! Adam) of SASRec and GRU4Rec on a real Beauty batch, and one full evaluation, then runs the
//! PyTorch reference (`bench/torch_ref.py`) on the same batch with the same initial weights
//! and writes both to a JSON report. `--models` adds the per-model table ([`models`]).

mod models;

use crate::config::TrainConfig;
use crate::data::batch::{steps, train_batch, train_windows, Batch, BatchUnit, Layout, SampleMode};
use crate::data::split::{Instance, Split};
use crate::data::{DataPaths, Dataset, DatasetId, DatasetRef};
use crate::eval::{rank_instances, EvalOptions, Scorer};
use crate::model::params::ParamStore;
use crate::model::{Backbone, Ctx, Dims, ModalityMode, ModelKind, ModelSpec};
use crate::optim::Adam;
use crate::train::step::{batch_loss, batch_loss_sharing};
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Python with torch and numpy for the reference (skipped when absent).
    #[arg(long)]
    python: Option<PathBuf>,
    /// Where to write the JSON report.
    #[arg(long, default_value = "reports/bench/latest.json")]
    out: PathBuf,
    /// Timed repetitions (the median is reported; one warm-up step is not timed).
    #[arg(long, default_value_t = 5, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    reps: usize,
    /// Training windows per batch.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Also time a SASRec + CDL step (text + attributes, cos, VQ; needs the Beauty features,
    /// built into the cache on first use) against the same model without the CDL losses.
    #[arg(long)]
    cdl: bool,
    /// Also train one full-Beauty epoch (and rank the validation instances, as every epoch
    /// does) of SASRec, GRU4Rec and SASRec + CDL at 64-d and 128-d, with the default training
    /// settings (batch of 256 targets, packed).
    #[arg(long)]
    epochs: bool,
    /// Also train SASRec on full Beauty to early stopping (paper protocol) and report the
    /// time and the test metrics.
    #[arg(long)]
    converge: bool,
    /// Also time these models' training steps as a run trains them on full Beauty (comma
    /// separated; `sasrec` first makes it the ratios' reference), and write the table to
    /// --models-out.
    #[arg(long, value_enum, value_delimiter = ',')]
    models: Vec<ModelKind>,
    /// Also time these models with correlation distillation (`modality.mode = "cdl"`), each
    /// row beside the same model's default row when --models lists it.
    #[arg(long, value_enum, value_delimiter = ',')]
    cdl_models: Vec<ModelKind>,
    /// Steps timed per model with --models (an epoch's first steps, after one untimed step).
    #[arg(long, default_value_t = 24, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    model_steps: usize,
    /// Where --models writes its Markdown table.
    #[arg(long, default_value = "reports/bench/models.md")]
    models_out: PathBuf,
}

/// The batches the step benchmarks time: the reference's padded batch, the first training step
/// of an epoch, and the first [`EPOCH_SAMPLE`] steps.
struct BenchBatches {
    padded: Batch,
    step256: Batch,
    sample: Vec<Batch>,
}

/// Training steps of an epoch's start timed one after another (`*_epoch_sample_*` entries).
const EPOCH_SAMPLE: usize = 48;

/// One training configuration of the epoch benchmark.
fn epoch_config(kind: ModelKind, dim: usize, cdl: bool) -> crate::config::RunConfig {
    let mut cfg = crate::config::RunConfig::new(DatasetRef::Named(DatasetId::Beauty), kind, 2023);
    // The hold-out protocol of every earlier benchmark, so that epoch times stay comparable.
    cfg.protocol = crate::data::split::Protocol::Paper;
    cfg.model.set_width(dim);
    if cdl {
        cfg.modality = Some(cfg.default_modality());
    }
    cfg
}

/// Seconds per full-Beauty epoch (training, steps, and the epoch's ranking of the validation
/// instances) for each model at 64-d and 128-d; and, with `converge`, a SASRec run to early
/// stopping (the test set ranked once at the end).
fn bench_epochs(ds: &Dataset, paths: &DataPaths, epochs: bool, converge: bool) -> Result<Value> {
    let dir = std::env::temp_dir().join(format!("kdsr-bench-epochs-{}", std::process::id()));
    let opts =
        crate::train::RunOptions { device: Device::Cpu, progress: false, paths: paths.clone(), stop_after: None };
    let mut out = serde_json::Map::new();
    let variants = [
        (ModelKind::Sasrec, false, "sasrec"),
        (ModelKind::Gru4rec, false, "gru4rec"),
        (ModelKind::Sasrec, true, "sasrec_cdl"),
    ];
    for (kind, cdl, name) in variants.into_iter().filter(|_| epochs) {
        for dim in [64, 128] {
            let mut cfg = epoch_config(kind, dim, cdl);
            cfg.train.max_epochs = 1;
            let r = crate::train::train_run(&cfg, ds, &dir, &opts)?;
            let e = r.epochs.last().context("one epoch")?;
            eprintln!(
                "{name} {dim}-d: {:.1} s per epoch ({} steps), evaluation {:.1} s",
                e.train_seconds, e.steps, e.eval_seconds
            );
            out.insert(
                format!("{name}_{dim}d"),
                json!({"train_seconds": e.train_seconds, "steps": e.steps, "eval_seconds": e.eval_seconds}),
            );
        }
    }
    if converge {
        let cfg = epoch_config(ModelKind::Sasrec, 64, false);
        let t0 = Instant::now();
        let r = crate::train::train_run(&cfg, ds, &dir, &opts)?;
        let secs = t0.elapsed().as_secs_f64();
        eprintln!(
            "sasrec to early stopping: {secs:.0} s, {} epochs (best {}), test H@20 {:.2} N@20 {:.2}",
            r.epochs.len(),
            r.best_epoch,
            r.test.hr[2],
            r.test.ndcg[2]
        );
        out.insert(
            "sasrec_converge".into(),
            json!({"seconds": secs, "epochs": r.epochs.len(), "best_epoch": r.best_epoch, "test": r.test}),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Value::Object(out))
}

/// SASRec with modality tables, one step without and with the correlation losses (same batch,
/// same weights): CDL's extra time per training step.
fn bench_cdl(
    reps: usize,
    ds: &Dataset,
    split: &Split,
    batches: &BenchBatches,
    paths: &DataPaths,
    python: Option<&PathBuf>,
) -> Result<Value> {
    let BenchBatches { padded: batch, step256, sample } = batches;
    let mut cfg = crate::config::RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 2023);
    cfg.modality = Some(cfg.default_modality());
    let opts =
        crate::train::fit::RunOptions { device: Device::Cpu, progress: false, paths: paths.clone(), stop_after: None };
    let mut setup = crate::train::setup::build(&cfg, ds, split, &opts)?;
    let tables: Vec<Tensor> = setup.model.modality.as_ref().map(|m| m.tables.clone()).unwrap_or_default();
    // The reference's inputs: initial weights, the batch's pairs and teacher targets, and the
    // eval-mode loss (cross-entropy + weighted correlation losses) on them.
    let reference = match python {
        Some(_) => Some(cdl_reference_inputs(&cfg, &mut setup, batch, &tables, ds.n_items)?),
        None => None,
    };
    let mut adam = Adam::new(setup.params.vars(), cfg.train.lr, 0.0)?;
    let mut ctx = Ctx::train(1);
    // Whole step and its parts: backbone forward + cross-entropy, correlation losses (pair
    // targets on the CPU and the student heads), backward, Adam.
    let mut one = |batch: &Batch, with_cdl: bool| -> Result<[f64; 5]> {
        let t0 = Instant::now();
        // As training takes the step: the pair items' rows come from the input's lookup.
        let (loss, t1) = if with_cdl {
            let cdl = setup.cdl.as_mut().context("CDL configured")?;
            let pairs = cdl.pairs(batch);
            let (ce, _, rows) = batch_loss_sharing(&setup.model, batch, &pairs.items, &mut ctx, &Device::Cpu)?;
            let t1 = Instant::now();
            match cdl.loss_on(&pairs, &rows)? {
                Some((l, _)) => ((ce + l)?, t1),
                None => (ce, t1),
            }
        } else {
            let (ce, _) = batch_loss(&setup.model, batch, &mut ctx, &Device::Cpu)?;
            (ce, Instant::now())
        };
        let t2 = Instant::now();
        let grads = loss.backward()?;
        let t3 = Instant::now();
        adam.step(&grads)?;
        let t4 = Instant::now();
        Ok([t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3].map(|d| d.as_secs_f64() * 1e3))
    };
    // Median over `reps` steps on one batch after a warm-up.
    let mut step = |batch: &Batch, with_cdl: bool| -> Result<[f64; 5]> {
        one(batch, with_cdl)?;
        let mut times: [Vec<f64>; 5] = Default::default();
        for _ in 0..reps {
            for (v, t) in times.iter_mut().zip(one(batch, with_cdl)?) {
                v.push(t);
            }
        }
        Ok(times.map(median))
    };
    let parts = |t: [f64; 5]| json!({"forward": t[1], "cdl_losses": t[2], "backward": t[3], "adam": t[4]});
    // The training step of an epoch (256 targets, packed): what the epoch ratio is made of.
    let without256 = step(step256, false)?;
    let with256 = step(step256, true)?;
    eprintln!(
        "candle sasrec + modality tables, 256 targets: {:.1} ms; with the CDL losses {:.1} ms (forward {:.1}, \
         losses {:.1}, backward {:.1}, Adam {:.1})",
        without256[0], with256[0], with256[1], with256[2], with256[3], with256[4]
    );
    let without = step(batch, false)?;
    let with = step(batch, true)?;
    // The first steps of an epoch, each batch once as an epoch takes them (after one warm-up
    // step): their batches differ in items and pairs, which one repeated batch does not show.
    let mut sample_mean = |with_cdl: bool| -> Result<[f64; 5]> {
        one(sample.first().context("no training step to time")?, with_cdl)?;
        let mut sum = [0f64; 5];
        for b in sample {
            for (s, t) in sum.iter_mut().zip(one(b, with_cdl)?) {
                *s += t;
            }
        }
        Ok(sum.map(|s| s / sample.len() as f64))
    };
    let without_sample = sample_mean(false)?;
    let with_sample = sample_mean(true)?;
    eprintln!(
        "candle sasrec + modality tables, mean of the first {} steps of an epoch: {:.1} ms; with the CDL losses \
         {:.1} ms (forward {:.1}, losses {:.1}, backward {:.1}, Adam {:.1})",
        sample.len(),
        without_sample[0],
        with_sample[0],
        with_sample[1],
        with_sample[2],
        with_sample[3],
        with_sample[4]
    );
    let extra = with[0] - without[0];
    eprintln!(
        "candle sasrec + modality tables step: {:.1} ms; with the CDL losses: {:.1} ms (+{extra:.1} ms, +{:.0}%; \
         losses {:.1} ms, backward {:.1} -> {:.1} ms)",
        without[0],
        with[0],
        100.0 * extra / without[0],
        with[2],
        without[3],
        with[3]
    );
    let mut out = json!({"modality_step_ms": without[0], "cdl_step_ms": with[0], "cdl_extra_ms": extra,
              "cdl_extra_fraction": extra / without[0],
              "modality_step_parts_ms": parts(without), "cdl_step_parts_ms": parts(with),
              "modality_256_targets_step_ms": without256[0], "cdl_256_targets_step_ms": with256[0],
              "modality_256_targets_step_parts_ms": parts(without256), "cdl_256_targets_step_parts_ms": parts(with256),
              "epoch_sample_steps": sample.len(),
              "modality_epoch_sample_step_parts_ms": parts(without_sample), "modality_epoch_sample_step_ms": without_sample[0],
              "cdl_epoch_sample_step_parts_ms": parts(with_sample), "cdl_epoch_sample_step_ms": with_sample[0]});
    if let (Some(python), Some((npz, loss))) = (python, reference) {
        let torch = run_torch_script(python, "bench-cdl", npz, reps)?;
        let torch_loss = torch["torch_cdl_loss_eval"].as_f64().context("torch reference: no torch_cdl_loss_eval")?;
        let torch_ms = torch["torch_cdl_step_ms"].as_f64().context("torch reference: no torch_cdl_step_ms")?;
        eprintln!(
            "torch sasrec + CDL step: {torch_ms:.1} ms -> candle/torch ratio {:.2}; loss on the same batch and \
             weights: candle {loss:.6}, torch {torch_loss:.6}",
            with[0] / torch_ms
        );
        if (loss - torch_loss).abs() > 1e-3 * torch_loss.abs().max(1.0) {
            bail!("sasrec + CDL: candle and torch losses differ ({loss} vs {torch_loss}): the models are not the same");
        }
        out["cdl_loss_eval"] = json!(loss);
        out["torch_cdl_loss_eval"] = json!(torch_loss);
        out["torch_cdl_step_ms"] = json!(torch_ms);
        out["cdl_ratio"] = json!(with[0] / torch_ms);
    }
    Ok(out)
}

/// What `bench/torch_ref.py bench-cdl` needs to run the same SASRec + CDL step: the initial
/// parameters (`p.<name>`), the batch, its pairs with each modality's teacher targets
/// (`m<k>.*`), and the settings; returns them with candle's eval-mode loss on that input.
fn cdl_reference_inputs(
    cfg: &crate::config::RunConfig,
    setup: &mut crate::train::setup::Setup,
    batch: &crate::data::batch::Batch,
    tables: &[Tensor],
    n_items: usize,
) -> Result<(Vec<(String, Tensor)>, f64)> {
    use crate::distill::student::{BatchPairs, PairTargets};
    let dev = Device::Cpu;
    let mc = cfg.modality.as_ref().context("modality configured")?;
    let cdl = setup.cdl.as_mut().context("CDL configured")?;
    let (ce, _) = batch_loss(&setup.model, batch, &mut Ctx::eval(), &dev)?;
    // The rng only subsamples beyond max_pairs (not reached on this batch): a fresh one.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let pairs = BatchPairs::from_batch(&batch.items, batch.rows, batch.width, cdl.code_faithful);
    let mut npz: Vec<(String, Tensor)> =
        setup.params.tensors().into_iter().map(|(k, t)| (format!("p.{k}"), t)).collect();
    let u32s = |v: &[u32]| Tensor::new(v, &dev)?.to_dtype(candle_core::DType::I64);
    npz.push(("pairs.items".into(), u32s(&pairs.items)?));
    npz.push(("pairs.a".into(), u32s(&pairs.a)?));
    npz.push(("pairs.b".into(), u32s(&pairs.b)?));
    for (m, teacher) in cdl.teachers.iter().enumerate() {
        let t = PairTargets::new(&pairs, teacher, cdl.cfg.max_pairs, &mut rng);
        if t.dissected.len() != pairs.len() {
            bail!("bench batch has more than max_pairs pairs: the reference assumes no subsampling");
        }
        npz.push((format!("m{m}.holistic"), Tensor::new(t.holistic.as_slice(), &dev)?));
        npz.push((format!("m{m}.codes"), u32s(&t.codes)?));
    }
    let loss = match cdl.loss(batch, tables)? {
        Some((l, _)) => (ce + l)?.to_scalar::<f32>()? as f64,
        None => bail!("bench batch has no CDL pairs"),
    };
    let names: Vec<String> = mc.modalities.iter().map(|m| m.name().to_string()).collect();
    let settings = json!({
        "n_items": n_items, "max_len": cfg.train.max_len, "threads": rayon::current_num_threads(),
        "modalities": names, "scoring": cdl.teachers[0].scoring().name(), "alpha": cdl.cfg.alpha,
        "beta": cdl.cfg.beta, "tau": if cdl.cfg.soft_match { cdl.cfg.tau } else { 1.0 },
        "rows_with_pairs": pairs.rows_with_pairs, "lr": cfg.train.lr,
    });
    npz.extend(batch_arrays(batch, &settings)?);
    Ok((npz, loss))
}

/// Median milliseconds of `reps` runs of `f` after one warm-up.
fn time_ms(reps: usize, mut f: impl FnMut() -> candle_core::Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(median(times))
}

/// Forward + backward of each fused kernel against candle's composite ops, on the shapes of a
/// SASRec step on Beauty.
fn bench_ops(reps: usize, n_items: usize, n_targets: usize) -> Result<Value> {
    use candle_core::{Var, D};
    let dev = Device::Cpu;
    let randn = |shape: &[usize], std: f32| -> candle_core::Result<Var> {
        Var::from_tensor(&Tensor::randn(0f32, std, shape, &dev)?)
    };
    let mut out = serde_json::Map::new();
    // Cross-entropy over the catalogue, including the logits matmul.
    let (h, e) = (randn(&[n_targets, 64], 1.0)?, randn(&[n_items, 64], 0.02)?);
    let targets: Vec<u32> = (0..n_targets as u32).map(|i| (i * 7919) % n_items as u32).collect();
    let tt = Tensor::new(targets.as_slice(), &dev)?;
    let logits = || h.as_tensor().matmul(&e.as_tensor().t()?);
    let composite = time_ms(reps, || candle_nn::loss::cross_entropy(&logits()?, &tt)?.backward().map(|_| ()))?;
    let fused = time_ms(reps, || crate::ops::cross_entropy(&logits()?, &targets)?.backward().map(|_| ()))?;
    out.insert(
        "cross_entropy".into(),
        json!({"shape": [n_targets, n_items], "composite_ms": composite, "fused_ms": fused}),
    );
    // Layer norm over [256, 50, 64].
    let x = randn(&[256, 50, 64], 1.0)?;
    let (w, b) = (randn(&[64], 1.0)?, randn(&[64], 1.0)?);
    let composite = time_ms(reps, || {
        let mean = x.as_tensor().mean_keepdim(D::Minus1)?;
        let xc = x.as_tensor().broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let y =
            xc.broadcast_div(&(var + 1e-12)?.sqrt()?)?.broadcast_mul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
        y.sum_all()?.backward().map(|_| ())
    })?;
    let fused = time_ms(reps, || {
        crate::ops::layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-12)?.sum_all()?.backward().map(|_| ())
    })?;
    out.insert("layer_norm".into(), json!({"shape": [256, 50, 64], "composite_ms": composite, "fused_ms": fused}));
    // Causal softmax over [256, 2, 50, 50] with the additive mask.
    let s = randn(&[256, 2, 50, 50], 1.0)?;
    // Rows of one left-aligned sequence of 1 + r % 50 items, padding after it.
    let starts: Vec<u32> = (0..256 * 50u32).map(|c| if c % 50 < 1 + (c / 50) % 50 { 0 } else { c % 50 }).collect();
    let mask = crate::ops::softmax::causal_mask(&starts, 256, 50, &dev)?;
    let composite = time_ms(reps, || {
        candle_nn::ops::softmax(&s.as_tensor().broadcast_add(&mask)?, D::Minus1)?.sum_all()?.backward().map(|_| ())
    })?;
    let fused =
        time_ms(reps, || crate::ops::causal_softmax(s.as_tensor(), &starts, 1.0)?.sum_all()?.backward().map(|_| ()))?;
    out.insert(
        "causal_softmax".into(),
        json!({"shape": [256, 2, 50, 50], "composite_ms": composite, "fused_ms": fused}),
    );
    // Softmax under a key-padding bias over [128, 4, 100, 100] (Trans2D's 50 positions × 2
    // channels, MMSRec's windows): row r has 1 + r % 100 real keys.
    let s = randn(&[128, 4, 100, 100], 1.0)?;
    let bias: Vec<f32> = (0..128 * 100).map(|i| if i % 100 <= (i / 100) % 100 { 0.0 } else { -10000.0 }).collect();
    let bias = Tensor::from_vec(bias, (128, 1, 1, 100), &dev)?;
    let composite = time_ms(reps, || {
        let logits = s.as_tensor().affine(0.125, 0.0)?.broadcast_add(&bias)?;
        candle_nn::ops::softmax(&logits, D::Minus1)?.sum_all()?.backward().map(|_| ())
    })?;
    let fused =
        time_ms(reps, || crate::ops::biased_softmax(s.as_tensor(), 0.125, &bias)?.sum_all()?.backward().map(|_| ()))?;
    out.insert(
        "biased_softmax".into(),
        json!({"shape": [128, 4, 100, 100], "composite_ms": composite, "fused_ms": fused}),
    );
    // GELU over the feed-forward activations [256, 50, 256].
    let x = randn(&[256, 50, 256], 1.0)?;
    let composite = time_ms(reps, || x.as_tensor().gelu_erf()?.sum_all()?.backward().map(|_| ()))?;
    let fused = time_ms(reps, || crate::ops::gelu(x.as_tensor())?.sum_all()?.backward().map(|_| ()))?;
    out.insert("gelu".into(), json!({"shape": [256, 50, 256], "composite_ms": composite, "fused_ms": fused}));
    // A linear layer's bias over [12800, 256].
    let (x, b) = (randn(&[12800, 256], 1.0)?, randn(&[256], 1.0)?);
    let composite = time_ms(reps, || x.as_tensor().broadcast_add(b.as_tensor())?.sum_all()?.backward().map(|_| ()))?;
    let fused =
        time_ms(reps, || crate::ops::add_bias(x.as_tensor(), b.as_tensor())?.sum_all()?.backward().map(|_| ()))?;
    out.insert("add_bias".into(), json!({"shape": [12800, 256], "composite_ms": composite, "fused_ms": fused}));
    // Dropout (p = 0.5) of the attention probabilities [256, 2, 50, 50], from the same mask.
    let keep: Vec<bool> = (0..s.elem_count()).map(|i| (i * 7919) % 2 == 0).collect();
    let composite = time_ms(reps, || {
        let m: Vec<f32> = keep.iter().map(|&k| if k { 2.0 } else { 0.0 }).collect();
        (s.as_tensor() * Tensor::from_vec(m, s.shape(), &dev)?)?.sum_all()?.backward().map(|_| ())
    })?;
    let fused =
        time_ms(reps, || crate::ops::dropout(s.as_tensor(), keep.clone(), 0.5)?.sum_all()?.backward().map(|_| ()))?;
    out.insert("dropout".into(), json!({"shape": [256, 2, 50, 50], "composite_ms": composite, "fused_ms": fused}));
    // The correlation losses' row-pair gathers on the bench batch's shapes: 1,115 distinct
    // items, 16,210 in-sequence pairs, a 128-d modality table.
    let (u, p, d) = (1115usize, 16210usize, 128usize);
    let (x, c) = (randn(&[u, d], 1.0)?, randn(&[d], 1.0)?);
    let a = Tensor::from_vec((0..p as u32).map(|i| (i * 7919) % u as u32).collect::<Vec<_>>(), p, &dev)?;
    let b = Tensor::from_vec((0..p as u32).map(|i| (i * 104_729 + 13) % u as u32).collect::<Vec<_>>(), p, &dev)?;
    let gather = || -> candle_core::Result<(Tensor, Tensor)> {
        Ok((x.as_tensor().index_select(&a, 0)?, x.as_tensor().index_select(&b, 0)?))
    };
    let composite = time_ms(reps, || {
        let (xa, xb) = gather()?;
        (xa * xb)?.sum(1)?.sum_all()?.backward().map(|_| ())
    })?;
    let fused = time_ms(reps, || crate::ops::pair_dot(x.as_tensor(), &a, &b)?.sum_all()?.backward().map(|_| ()))?;
    out.insert("pair_dot".into(), json!({"shape": [p, d], "composite_ms": composite, "fused_ms": fused}));
    let composite = time_ms(reps, || {
        let (xa, xb) = gather()?;
        (xa - xb)?.broadcast_add(c.as_tensor())?.relu()?.sum_all()?.backward().map(|_| ())
    })?;
    let fused = time_ms(reps, || {
        crate::ops::pair_diff_relu(x.as_tensor(), c.as_tensor(), &a, &b)?.sum_all()?.backward().map(|_| ())
    })?;
    out.insert("pair_diff_relu".into(), json!({"shape": [p, d], "composite_ms": composite, "fused_ms": fused}));
    // The dissected head (second layer and cross-entropy over K = 50 codes) on the pairs of a
    // prefix batch of the released network: ~31,600 pairs over ~1,500 distinct items, 128-d.
    let (u, p, k) = (1500usize, 31_600usize, 50usize);
    let (h, w) = (randn(&[u, d], 1.0)?, randn(&[k, d + 1], 0.1)?);
    let pa: Vec<u32> = (0..p as u32).map(|i| (i * 7919) % u as u32).collect();
    let pb: Vec<u32> = (0..p as u32).map(|i| (i * 104_729 + 13) % u as u32).collect();
    let codes: Vec<u32> = (0..p as u32).map(|i| (i * 31) % k as u32).collect();
    let (h, c, w) = (h.as_tensor(), c.as_tensor(), w.as_tensor());
    let composite = time_ms(reps, || {
        crate::ops::cross_entropy(&crate::ops::pair_code_logits(h, c, w, &pa, &pb)?, &codes)?.backward().map(|_| ())
    })?;
    let fused =
        time_ms(reps, || crate::ops::pair_code_cross_entropy(h, c, w, &pa, &pb, &codes)?.backward().map(|_| ()))?;
    out.insert(
        "pair_code_cross_entropy".into(),
        json!({"shape": [p, d, k], "composite_ms": composite, "fused_ms": fused}),
    );
    // One Adam update of an item table [n_items + 1, 64] (no backward: the update itself).
    let table = randn(&[n_items + 1, 64], 0.02)?;
    let grads = table.as_tensor().sqr()?.sum_all()?.backward()?;
    let mut adam = crate::optim::Adam::new(vec![("t".into(), table.clone())], 1e-3, 0.0)?;
    let fused = time_ms(reps, || adam.step(&grads))?;
    let mut adam = crate::optim::Adam::new_composite(vec![("t".into(), table.clone())], 1e-3, 0.0)?;
    let composite = time_ms(reps, || adam.step(&grads))?;
    out.insert("adam".into(), json!({"shape": [n_items + 1, 64], "composite_ms": composite, "fused_ms": fused}));
    for (k, v) in &out {
        eprintln!(
            "op {k}: composite {:.1} ms, fused {:.1} ms (forward + backward)",
            v["composite_ms"].as_f64().unwrap_or(0.0),
            v["fused_ms"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(Value::Object(out))
}

/// Median times (ms) of a whole training step on `batch` and of its forward (loss), backward
/// and optimiser parts, over `reps` steps after one warm-up.
fn time_step(model: &crate::model::Recommender, batch: &Batch, adam: &mut Adam, reps: usize) -> Result<[f64; 4]> {
    let mut ctx = Ctx::train(1);
    let mut times: [Vec<f64>; 4] = Default::default();
    for r in 0..=reps {
        let t0 = Instant::now();
        let (loss, _) = batch_loss(model, batch, &mut ctx, &Device::Cpu)?;
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        adam.step(&grads)?;
        let t3 = Instant::now();
        if r > 0 {
            for (v, d) in times.iter_mut().zip([t3 - t0, t1 - t0, t2 - t1, t3 - t2]) {
                v.push(d.as_secs_f64() * 1e3);
            }
        }
    }
    Ok(times.map(median))
}

/// Mean time (ms) of a whole training step over `batches`, each taken once (as an epoch takes
/// them) after one warm-up step on the first.
fn time_sample(model: &crate::model::Recommender, batches: &[Batch], adam: &mut Adam) -> Result<f64> {
    let mut ctx = Ctx::train(1);
    let first = batches.first().context("no training step to time")?;
    let mut total = 0.0;
    for (k, b) in std::iter::once(first).chain(batches).enumerate() {
        let t0 = Instant::now();
        let (loss, _) = batch_loss(model, b, &mut ctx, &Device::Cpu)?;
        adam.step(&loss.backward()?)?;
        if k > 0 {
            total += t0.elapsed().as_secs_f64() * 1e3;
        }
    }
    Ok(total / batches.len() as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn run(args: &BenchArgs, paths: &DataPaths) -> Result<()> {
    let ds = Dataset::load(&DatasetRef::Named(DatasetId::Beauty), paths)?;
    if args.models.contains(&ModelKind::Pop) || args.cdl_models.contains(&ModelKind::Pop) {
        bail!(crate::error::bad_input("--models: pop has no training step to time"));
    }
    let split = Split::new(&ds.sequences, crate::data::split::Protocol::Paper);
    let train = TrainConfig::default();
    let mut windows = train_windows(&split, train.max_len, SampleMode::Sequence);
    windows.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(2023));
    let bench_windows = &windows[..args.batch_size.min(windows.len())];
    let padded = train_batch(&ds.sequences, bench_windows, Layout::Padded);
    let packed = train_batch(&ds.sequences, bench_windows, Layout::Packed);
    let epoch_steps = steps(&windows, 256, BatchUnit::Targets);
    let step256 = train_batch(&ds.sequences, epoch_steps.first().context("no training step")?, Layout::Packed);
    let sample: Vec<Batch> =
        epoch_steps.iter().take(EPOCH_SAMPLE).map(|w| train_batch(&ds.sequences, w, Layout::Packed)).collect();
    let batches = BenchBatches { padded, step256, sample };
    let (batch, step256, sample) = (&batches.padded, &batches.step256, &batches.sample);
    let device = Device::Cpu;
    let threads = rayon::current_num_threads();
    let mut report = serde_json::Map::new();
    let mut npz: Vec<(String, Tensor)> = Vec::new();

    for kind in [ModelKind::Sasrec, ModelKind::Gru4rec] {
        let name = kind.name();
        let params = ParamStore::new(2023);
        let spec = ModelSpec::default_for(kind);
        let model =
            Backbone::new(&spec, &Dims::ids(ds.n_items, train.max_len), params.var_builder(&device))?.expect("neural");
        let model = crate::model::Recommender { backbone: model, modality: None };
        for (k, t) in params.tensors() {
            npz.push((format!("{name}.{k}"), t));
        }
        let (loss, _) = batch_loss(&model, batch, &mut Ctx::eval(), &device)?;
        report.insert(format!("{name}_loss_eval"), json!(loss.to_scalar::<f32>()?));
        let mut adam = Adam::new(params.vars(), train.lr, 0.0)?;
        // The padded batch (what the reference runs), the same windows packed several to a row
        // (same targets: the per-target comparison), and a default training step of 256 targets.
        for (label, b) in [("", batch), ("_packed", &packed), ("_256_targets", step256)] {
            let [step, fwd, bwd, opt] = time_step(&model, b, &mut adam, args.reps)?;
            let targets = b.targets.iter().filter(|&&t| t > 0).count();
            eprintln!(
                "candle {name}{label} step: {step:.1} ms (forward {fwd:.1}, backward {bwd:.1}, Adam {opt:.1}; {} rows, width {}, {} cells, {targets} targets)",
                b.rows,
                b.width,
                b.real_cells()
            );
            report.insert(format!("{name}{label}_step_ms"), json!(step));
            report
                .insert(format!("{name}{label}_step_parts_ms"), json!({"forward": fwd, "backward": bwd, "adam": opt}));
            report.insert(
                format!("{name}{label}_batch"),
                json!({"rows": b.rows, "width": b.width, "real_cells": b.real_cells(), "targets": targets}),
            );
        }

        if kind == ModelKind::Sasrec {
            let ms = time_sample(&model, sample, &mut adam)?;
            eprintln!("candle sasrec, mean of the first {} steps of an epoch: {ms:.1} ms", sample.len());
            report.insert("sasrec_epoch_sample_step_ms".into(), json!(ms));
            let instances: Vec<Instance> = split.valid.iter().chain(&split.test).copied().collect();
            let opts = EvalOptions {
                max_len: train.max_len,
                batch_size: train.eval_batch_size,
                mask_history: false,
                layout: Layout::Packed,
                merge: true,
            };
            // The first pass also pays for first touches of fresh memory, which a training run
            // pays once, not every epoch: reported apart, and the median of the warm passes as
            // `eval_ms`, as for the steps.
            let rank = || rank_instances(&Scorer::Model(&model), &ds.sequences, &instances, &opts, &device).map(|_| ());
            let t0 = Instant::now();
            rank()?;
            let first = t0.elapsed().as_secs_f64() * 1e3;
            let mut warm = Vec::with_capacity(args.reps);
            for _ in 0..args.reps {
                let t0 = Instant::now();
                rank()?;
                warm.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            let ms = median(warm);
            eprintln!(
                "candle sasrec full evaluation: {ms:.0} ms (first pass {first:.0} ms; {} instances x {} items)",
                instances.len(),
                ds.n_items
            );
            report.insert("eval_ms".into(), json!(ms));
            report.insert("eval_first_ms".into(), json!(first));
            report.insert("eval_instances".into(), json!(instances.len()));
        }
    }
    let n_targets = batch.targets.iter().filter(|&&t| t > 0).count();
    if args.cdl {
        report.insert("cdl".into(), bench_cdl(args.reps, &ds, &split, &batches, paths, args.python.as_ref())?);
    }
    if args.epochs || args.converge {
        report.insert("epochs".into(), bench_epochs(&ds, paths, args.epochs, args.converge)?);
    }
    if !args.models.is_empty() || !args.cdl_models.is_empty() {
        let mut rows = Vec::new();
        let plain = args.models.iter().map(|&k| (k, None));
        let with_cdl = args.cdl_models.iter().map(|&k| (k, Some(ModalityMode::Cdl)));
        for (kind, mode) in plain.chain(with_cdl) {
            let r = models::time_model(kind, mode, &ds, paths, args.model_steps)?;
            eprintln!(
                "{}: {:.1} ms per step, {:.1} s per epoch ({} steps)",
                r.name,
                r.step_ms(),
                r.epoch_s(),
                r.steps_per_epoch
            );
            rows.push(r);
        }
        if let (Some(python), Some(ours)) = (&args.python, rows.iter().find(|r| r.name == "srgnn")) {
            let npz = models::srgnn_recbole_steps(&ds, args.model_steps, threads)?;
            let peer = run_bench_script(python, "recbole_srgnn_bench.py", "bench", npz, args.model_steps)?;
            let ms = |k: &str| peer[k].as_f64().with_context(|| format!("the RecBole peer printed no `{k}`"));
            let row = models::ModelTiming {
                name: format!(
                    "srgnn, RecBole {} (torch {})",
                    peer["recbole"].as_str().unwrap_or("?"),
                    peer["torch"].as_str().unwrap_or("?")
                ),
                steps_per_epoch: ours.steps_per_epoch,
                timed_steps: peer["timed_steps"].as_u64().context("the RecBole peer printed no `timed_steps`")?
                    as usize,
                forward_ms: ms("forward_ms")?,
                backward_ms: ms("backward_ms")?,
                adam_ms: ms("adam_ms")?,
            };
            eprintln!("{}: {:.1} ms per step, {:.1} s per epoch", row.name, row.step_ms(), row.epoch_s());
            rows.push(row);
        }
        let list = |kinds: &[ModelKind]| kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",");
        let mut command = format!("kdsr --threads {threads} bench");
        if !args.models.is_empty() {
            command += &format!(" --models {}", list(&args.models));
        }
        if !args.cdl_models.is_empty() {
            command += &format!(" --cdl-models {}", list(&args.cdl_models));
        }
        command += &format!(" --model-steps {}", args.model_steps);
        if let Some(dir) = args.models_out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        crate::io::write_atomic(&args.models_out, models::render(&rows, threads, &command).as_bytes())?;
        report.insert("models".into(), models::to_json(&rows));
    }
    report.insert("ops".into(), bench_ops(args.reps, ds.n_items, n_targets)?);
    report.insert(
        "batch".into(),
        json!({"dataset": "beauty", "windows": batch.rows, "width": batch.width, "targets": n_targets, "n_items": ds.n_items}),
    );
    report.insert("threads".into(), json!(threads));
    report.insert("code_version".into(), serde_json::to_value(crate::io::CodeVersion::current())?);

    if let Some(python) = &args.python {
        let torch = run_torch(python, batch, npz, ds.n_items, train.max_len, threads, args.reps)?;
        for (k, v) in torch.as_object().context("torch reference printed a non-object")? {
            report.insert(k.clone(), v.clone());
        }
        let ratio =
            report["sasrec_step_ms"].as_f64().unwrap_or(0.0) / report["torch_sasrec_step_ms"].as_f64().unwrap_or(1.0);
        report.insert("ratio".into(), json!(ratio));
        let gratio =
            report["gru4rec_step_ms"].as_f64().unwrap_or(0.0) / report["torch_gru4rec_step_ms"].as_f64().unwrap_or(1.0);
        report.insert("gru4rec_ratio".into(), json!(gratio));
        // Per training target: the packed step over the same windows (same targets) against the
        // reference's padded step.
        for name in ["sasrec", "gru4rec"] {
            let packed = report[&format!("{name}_packed_step_ms")].as_f64().unwrap_or(0.0);
            let torch = report[&format!("torch_{name}_step_ms")].as_f64().unwrap_or(1.0);
            eprintln!(
                "{name} per target: packed {packed:.1} ms vs torch padded {torch:.1} ms -> {:.2}",
                packed / torch
            );
            report.insert(format!("{name}_per_target_ratio"), json!(packed / torch));
        }
        eprintln!(
            "torch sasrec step: {:.1} ms -> candle/torch ratio {ratio:.2}; gru4rec {:.1} ms -> ratio {gratio:.2}",
            report["torch_sasrec_step_ms"].as_f64().unwrap_or(0.0),
            report["torch_gru4rec_step_ms"].as_f64().unwrap_or(0.0)
        );
        for name in ["sasrec", "gru4rec"] {
            let (a, b) =
                (report[&format!("{name}_loss_eval")].as_f64(), report[&format!("torch_{name}_loss_eval")].as_f64());
            if let (Some(a), Some(b)) = (a, b) {
                eprintln!("{name} loss on the same batch and weights: candle {a:.6}, torch {b:.6}");
                if (a - b).abs() > 1e-3 * b.abs().max(1.0) {
                    bail!("{name}: candle and torch losses differ ({a} vs {b}): the models are not the same");
                }
            }
        }
    } else {
        eprintln!("no --python given: PyTorch reference skipped");
    }
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(&Value::Object(report))?;
    crate::io::write_atomic(&args.out, text.as_bytes())?;
    println!("{text}");
    Ok(())
}

fn run_torch(
    python: &PathBuf,
    batch: &crate::data::batch::Batch,
    mut npz: Vec<(String, Tensor)>,
    n_items: usize,
    max_len: usize,
    threads: usize,
    reps: usize,
) -> Result<Value> {
    let cfg = json!({"n_items": n_items, "max_len": max_len, "threads": threads, "models": ["sasrec", "gru4rec"]});
    npz.extend(batch_arrays(batch, &cfg)?);
    run_torch_script(python, "bench", npz, reps)
}

/// The batch as the reference reads it: `items` [B, T], the flat target positions `rows` and
/// their `targets` (0-based item ids), and `config` (JSON bytes).
fn batch_arrays(batch: &crate::data::batch::Batch, cfg: &Value) -> Result<Vec<(String, Tensor)>> {
    let dev = Device::Cpu;
    let (rows, targets): (Vec<u32>, Vec<u32>) =
        batch.targets.iter().enumerate().filter(|(_, &t)| t > 0).map(|(i, &t)| (i as u32, t - 1)).unzip();
    let i64s = |t: Tensor| t.to_dtype(candle_core::DType::I64);
    Ok(vec![
        ("items".into(), i64s(Tensor::from_vec(batch.items.clone(), (batch.rows, batch.width), &dev)?)?),
        ("rows".into(), i64s(Tensor::new(rows, &dev)?)?),
        ("targets".into(), i64s(Tensor::new(targets, &dev)?)?),
        ("config".into(), Tensor::new(cfg.to_string().into_bytes(), &dev)?),
    ])
}

/// Writes `npz` (plus the batch and settings the caller put in it) to a temporary file and
/// runs `bench/torch_ref.py <mode> FILE REPS`; returns the JSON object it prints last.
fn run_torch_script(python: &PathBuf, mode: &str, npz: Vec<(String, Tensor)>, reps: usize) -> Result<Value> {
    run_bench_script(python, "torch_ref.py", mode, npz, reps)
}

/// Writes `npz` to a temporary file and runs `bench/<script> <mode> FILE REPS`; returns the
/// JSON object it prints last.
fn run_bench_script(
    python: &PathBuf,
    script: &str,
    mode: &str,
    npz: Vec<(String, Tensor)>,
    reps: usize,
) -> Result<Value> {
    let dir = std::env::temp_dir().join(format!("kdsr-bench-{}-{mode}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("batch.npz");
    let refs: Vec<(&str, &Tensor)> = npz.iter().map(|(k, t)| (k.as_str(), t)).collect();
    Tensor::write_npz(&refs, &path)?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench").join(script);
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(mode)
        .arg(&path)
        .arg(reps.to_string())
        .output()
        .with_context(|| format!("running {} {}", python.display(), script.display()))?;
    if std::env::var_os("KDSR_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if !out.status.success() {
        bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .with_context(|| format!("parsing the JSON of {}", script.display()))
}
