//! `train_run`: trains and evaluates one [`RunConfig`] and writes its records.
//!
//! Loss per step: `L = CE + L_CDL`, with `CE = -mean_m log softmax(h_m E^T)[y_m]` over every
//! target position `m` of the batch (`h_m` the backbone's hidden state, `E` the ID item table
//! without padding) and `L_CDL` the correlation losses when the run uses KDSR
//! ([`crate::distill::cdl`]). An epoch is a pass over the shuffled training windows in steps of
//! `train.batch_size` targets (or windows, [`crate::data::batch::BatchUnit`]), packed several sequences per row
//! unless `train.pack = false`. After each epoch the validation instances are ranked. The
//! selected epoch (the best validation epoch, or the last under `train.selection = "last"`;
//! early stopping follows validation either way) keeps a copy of the weights, and the test
//! instances are ranked once, with those weights, after training. With
//! `train.test_every_epoch` they are also ranked after every epoch, in the same pass as the
//! validation instances (one forward per user for causal backbones), which records the released
//! code's selection (the best test value of each metric over epochs) for comparison only.
//!
//! Under `protocol = "released"` there is no validation set: the test set is ranked after
//! every epoch, stopping follows the released code's rule ([`released_counter`]), every
//! learning rate is multiplied by [`RELEASED_LR_GAMMA`] after epoch [`RELEASED_LR_STEP`], and
//! the reported test value of each metric is its best over the epochs (test-selected).

use super::resume::{self, Snapshot, Streams};
use super::setup::{self, Setup};
use super::step::{step_loss, StepLoss};
use crate::config::{ModelSpec, RunConfig, Selection};
use crate::data::batch::{cloze_batch, steps, train_batch, train_windows, Cloze, Layout, SampleMode};
use crate::data::split::{Instance, Protocol, Split};
use crate::data::{DataPaths, Dataset};
use crate::distill::cdl::Cdl;
use crate::eval::{rank_instances, EvalOptions, Metric, Metrics, Scorer};
use crate::io::CodeVersion;
use crate::model::fusion::TABLE_PREFIX;
use crate::model::ModalityMode;
use crate::model::{Ctx, Popularity, Recommender};
use crate::optim::Adam;
use crate::results::record::{self, EpochValue, RecordStatus, RunRecord, Segment};
use crate::results::{EpochLog, RunDir};
use crate::train::diagnose::CdlProbe;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct RunOptions {
    pub device: Device,
    /// Show a progress bar per epoch and a log line per epoch on stderr.
    pub progress: bool,
    /// Where modality inputs and caches live.
    pub paths: DataPaths,
    /// Pause after this many epochs trained by this process, leaving the run resumable
    /// ([`super::resume`]); `None` trains to the end.
    pub stop_after: Option<usize>,
}

pub struct RunOutcome {
    pub run_id: String,
    pub dir: PathBuf,
    pub best_epoch: usize,
    pub valid: Metrics,
    pub test: Metrics,
    pub epochs: Vec<EpochLog>,
    pub seconds_per_epoch: f64,
    /// The last epoch trained when the run was paused (`RunOptions::stop_after`) before its
    /// end; such a run has no final record yet.
    pub paused: Option<usize>,
    /// Earlier processes of a resumed run, and their wall seconds.
    pub segments: Vec<Segment>,
    pub prior_seconds: f64,
}

/// The released code's StepLR: `lr_dc_step = 40` epochs ...
pub const RELEASED_LR_STEP: usize = 40;
/// ... and `lr_dc = 1e-4` (`running_records.log`, line 1; stepped after each epoch's training,
/// so epochs 41 on train at `lr * 1e-4`).
pub const RELEASED_LR_GAMMA: f64 = 1e-4;

/// The metrics the released code's stopping rule watches: HR, MRR and NDCG at 5 and 20.
fn released_watched() -> impl Iterator<Item = Metric> {
    [crate::eval::MetricKind::Hr, crate::eval::MetricKind::Mrr, crate::eval::MetricKind::Ndcg]
        .into_iter()
        .flat_map(|kind| [5, 20].map(|k| Metric { kind, k }))
}

/// The released code's early-stopping state after the epochs whose test metrics are `tests`
/// (in order): whether the last epoch improved the best value so far of any watched metric
/// (strictly, the bests starting at 0), and the patience counter, which rises after an epoch
/// that improved nothing when the epoch before it improved nothing either, and is 0 otherwise
/// (`main.py`: `bad_counter = bad_counter + 1 if (last_flag == 0 and current_flag == 0) else 0`).
pub fn released_counter<'a>(tests: impl IntoIterator<Item = &'a Metrics>) -> (bool, usize) {
    let mut best: BTreeMap<Metric, f64> = released_watched().map(|m| (m, 0.0)).collect();
    let (mut last, mut counter) = (false, 0);
    for t in tests {
        let mut improved = false;
        for (m, b) in best.iter_mut() {
            if t.get(*m) > *b {
                *b = t.get(*m);
                improved = true;
            }
        }
        counter = if !last && !improved { counter + 1 } else { 0 };
        last = improved;
    }
    (last, counter)
}

fn seed_for(seed: u64, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(stream)
}

/// Trains `cfg` on `ds` and writes `<root>/<run_id>/`; an unfinished run whose folder holds a
/// resume state ([`resume`]) continues after its last finished epoch.
pub fn train_run(cfg: &RunConfig, ds: &Dataset, root: &Path, opts: &RunOptions) -> Result<RunOutcome> {
    let run_id = cfg.run_id();
    let run_dir = root.join(&run_id);
    let resumed = if resume::exists(&run_dir) && !RunDir::metrics_path(root, &run_id).exists() {
        Some(Snapshot::read(&run_dir, &run_id).context("resuming the run (--force starts it over)")?)
    } else {
        resume::remove(&run_dir)?;
        None
    };
    let mut dir = match &resumed {
        Some(s) => RunDir::reopen(root, cfg, s.epoch)?,
        None => RunDir::create(root, cfg)?,
    };
    let started = Instant::now();
    match fit(cfg, ds, &mut dir, opts, resumed) {
        Ok((mut out, info, sizes)) => {
            out.run_id = run_id;
            if out.paused.is_some() {
                return Ok(out);
            }
            let record = final_record(cfg, ds, &out, info, sizes, out.prior_seconds + started.elapsed().as_secs_f64());
            record.write(&dir.dir)?;
            resume::remove(&dir.dir)?;
            Ok(out)
        }
        Err(e) => {
            let _ = record::write_failed(&dir.dir, &run_id, &format!("{e:#}"));
            Err(e)
        }
    }
}

/// Trains and evaluates; returns the outcome, what the setup built (modality info) and the
/// split's sizes, for the final record.
fn fit(
    cfg: &RunConfig,
    ds: &Dataset,
    dir: &mut RunDir,
    opts: &RunOptions,
    resumed: Option<Snapshot>,
) -> Result<(RunOutcome, serde_json::Value, SplitSizes)> {
    let started = Instant::now();
    let t = &cfg.train;
    let split = Split::new(&ds.sequences, cfg.protocol);
    let released = cfg.protocol == Protocol::Released;
    let sizes = SplitSizes { train_targets: split.n_train_targets(), valid: split.valid.len(), test: split.test.len() };
    let layout = if t.pack { Layout::Packed } else { Layout::Padded };
    let merge = cfg.model.traits().is_none_or(|tr| tr.causal);
    let eval_opts =
        EvalOptions { max_len: t.max_len, batch_size: t.eval_batch_size, mask_history: t.mask_history, layout, merge };
    let evaluate = |scorer: &Scorer, instances: &[Instance]| -> Result<Metrics> {
        let ranks = rank_instances(scorer, &ds.sequences, instances, &eval_opts, &opts.device)?;
        Ok(Metrics::from_ranks(ranks))
    };
    // Validation and test instances ranked in one pass (a user's validation instance is a
    // prefix of its test windows, so a causal backbone reads both from one forward pass).
    let both: Vec<Instance> = split.valid.iter().chain(&split.test).copied().collect();
    let evaluate_both = |scorer: &Scorer| -> Result<(Metrics, Metrics)> {
        let mut ranks = rank_instances(scorer, &ds.sequences, &both, &eval_opts, &opts.device)?;
        let test = ranks.split_off(split.valid.len());
        Ok((Metrics::from_ranks(ranks), Metrics::from_ranks(test)))
    };
    let mut out = RunOutcome {
        run_id: String::new(),
        dir: dir.dir.clone(),
        best_epoch: 0,
        valid: Metrics::default(),
        test: Metrics::default(),
        epochs: Vec::new(),
        seconds_per_epoch: 0.0,
        paused: None,
        segments: Vec::new(),
        prior_seconds: 0.0,
    };

    if let ModelSpec::Pop = cfg.model {
        let pop = Popularity::fit(&ds.sequences, &split.train_end, ds.n_items);
        let t0 = Instant::now();
        let (valid, test) = evaluate_both(&Scorer::Pop(&pop))?;
        let log = EpochLog {
            epoch: 0,
            loss: 0.0,
            steps: 0,
            train_seconds: 0.0,
            eval_seconds: t0.elapsed().as_secs_f64(),
            valid: valid.clone(),
            test: Some(test.clone()),
            extra: rss_column().into_iter().collect(),
        };
        dir.append_epoch(&log)?;
        out.valid = valid;
        out.test = test;
        out.epochs.push(log);
        return Ok((out, json!(null), sizes));
    }

    let Setup { params, model, mut cdl, probes, info } = setup::build(cfg, ds, &split, opts)?;
    let mut adam = Adam::new(params.vars(), t.lr, t.weight_decay)?;
    let mut windows = train_windows(&split, t.max_len, t.sample_mode);
    if windows.is_empty() {
        bail!(crate::error::bad_input(format!("dataset `{}` has no training targets", ds.name)));
    }
    let mut shuffle_rng = ChaCha8Rng::seed_from_u64(seed_for(cfg.seed, 1));
    let mut ctx = Ctx::train(seed_for(cfg.seed, 2));
    let metric: Metric = t.valid_metric;
    let mut best = f64::NEG_INFINITY;
    let mut bad_epochs = 0;
    // A copy of the selected epoch's weights (the test set is ranked with them after training).
    let mut selected_weights: Option<std::collections::BTreeMap<String, Tensor>> = None;
    let mut first_epoch = 1;
    if let Some(s) = resumed {
        params.load(&s.params).context("restoring the parameters")?;
        adam.restore(s.adam_step, &s.moments).context("restoring the optimiser state")?;
        // The window order is the shuffle stream replayed over the finished epochs.
        for _ in 0..s.epoch {
            windows.shuffle(&mut shuffle_rng);
        }
        if shuffle_rng.get_word_pos() != s.streams.shuffle()? {
            bail!("resume state: the shuffle stream does not replay (have the training windows changed?); --force starts over");
        }
        ctx.set_rng_position(s.streams.dropout()?);
        match (cdl.as_mut(), s.streams.cdl()?) {
            (Some(c), Some(p)) => c.set_rng_position(p),
            (None, None) => {}
            _ => bail!("resume state: the CDL sampling stream does not match the run"),
        }
        best = s.best;
        bad_epochs = s.bad_epochs;
        selected_weights = s.selected;
        out.best_epoch = s.best_epoch;
        out.valid = s.valid;
        out.epochs = s.epochs;
        out.segments = s.segments;
        out.prior_seconds = s.seconds;
        first_epoch = s.epoch + 1;
    }
    let tables: Vec<Tensor> = model.modality.as_ref().map(|m| m.tables.clone()).unwrap_or_default();
    let names: Vec<String> =
        cfg.modality.iter().flat_map(|m| m.modalities.iter().map(|x| x.name().to_string())).collect();
    let probe = match &cfg.modality {
        Some(mc) if mc.mode != ModalityMode::Frozen => {
            Some(CdlProbe::new(&ds.sequences, &split, t.max_len, seed_for(cfg.seed, 3)))
        }
        _ => None,
    };
    // The drift and diagnostic columns of epochs.csv, in a fixed order.
    let diagnostics = |model: &Recommender, cdl: Option<&mut Cdl>| -> Result<Vec<(String, f64)>> {
        let mut out = setup::drift_columns(&probes, model, cdl.as_deref())?;
        if let Some(p) = &probe {
            out.extend(p.measure(model, cdl, &tables, &names, &opts.device)?);
        }
        Ok(out)
    };
    if let (Some(mc), 1) = (&cfg.modality, first_epoch) {
        // Epoch 0: the untrained model, where the drift and diagnostic curves start.
        let mut extra = vec![("lr_modality".to_string(), mc.at.lr(t.lr, 1, mc.code_faithful))];
        if cdl.is_some() {
            extra.push(("cdl_holistic_loss".to_string(), f64::NAN));
            extra.push(("cdl_dissected_loss".to_string(), f64::NAN));
        }
        extra.extend(diagnostics(&model, cdl.as_mut())?);
        let t1 = Instant::now();
        let valid =
            if split.valid.is_empty() { Metrics::default() } else { evaluate(&Scorer::Model(&model), &split.valid)? };
        extra.extend(rss_column());
        let log = EpochLog {
            epoch: 0,
            loss: f64::NAN,
            steps: 0,
            train_seconds: 0.0,
            eval_seconds: t1.elapsed().as_secs_f64(),
            valid,
            test: None,
            extra,
        };
        dir.append_epoch(&log)?;
    }

    for epoch in first_epoch..=t.max_epochs {
        if bad_epochs >= t.patience {
            break;
        }
        let mut extra = Vec::new();
        // The released StepLR scales every group's learning rate after epoch 40.
        let lr_scale = if released && epoch > RELEASED_LR_STEP { RELEASED_LR_GAMMA } else { 1.0 };
        if released {
            adam.set_lr("", t.lr * lr_scale);
        }
        if let Some(mc) = &cfg.modality {
            let lr = mc.at.lr(t.lr, epoch, mc.code_faithful) * lr_scale;
            adam.set_lr(TABLE_PREFIX, lr);
            extra.push(("lr_modality".to_string(), lr));
        }
        windows.shuffle(&mut shuffle_rng);
        let epoch_steps = steps(&windows, t.batch_size, t.batch_unit);
        let n_batches = epoch_steps.len();
        let bar = progress_bar(opts.progress, n_batches as u64, epoch);
        let t0 = Instant::now();
        let (mut loss_sum, mut n_targets, mut hol, mut dis) = (0f64, 0usize, 0f64, 0f64);
        for (step, chunk) in epoch_steps.iter().enumerate() {
            let batch = match t.sample_mode {
                SampleMode::Cloze => {
                    // Drawn afresh from (seed, epoch, step), so a resumed run draws the same.
                    let mut rng =
                        ChaCha8Rng::seed_from_u64(seed_for(seed_for(cfg.seed, 3), (epoch << 32 | step) as u64));
                    cloze_batch(&ds.sequences, chunk, Cloze { ratio: t.mask_ratio, n_items: ds.n_items }, &mut rng)
                }
                _ => train_batch(&ds.sequences, chunk, layout),
            };
            let StepLoss { total: loss, ce, targets: m, cdl: parts } =
                step_loss(&model, cdl.as_mut(), &batch, &mut ctx, &opts.device)?;
            let value = ce.to_scalar::<f32>()? as f64;
            if let Some(parts) = parts {
                hol += parts.holistic;
                dis += parts.dissected;
            }
            let total = loss.to_scalar::<f32>()? as f64;
            if !total.is_finite() {
                bail!("training loss is {total} at epoch {epoch}, step {}", step + 1);
            }
            adam.step(&loss.backward()?)?;
            loss_sum += value * m as f64;
            n_targets += m;
            if let Some(b) = &bar {
                b.inc(1);
                b.set_message(format!(
                    "loss {:.4} | {:.0} samples/s",
                    loss_sum / n_targets as f64,
                    n_targets as f64 / t0.elapsed().as_secs_f64()
                ));
            }
        }
        let train_seconds = t0.elapsed().as_secs_f64();
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if cdl.is_some() {
            extra.push(("cdl_holistic_loss".to_string(), hol / n_batches as f64));
            extra.push(("cdl_dissected_loss".to_string(), dis / n_batches as f64));
        }
        extra.extend(diagnostics(&model, cdl.as_mut())?);
        let t1 = Instant::now();
        let (valid, test) = if released {
            (Metrics::default(), Some(evaluate(&Scorer::Model(&model), &split.test)?))
        } else if t.test_every_epoch {
            let (valid, test) = evaluate_both(&Scorer::Model(&model))?;
            (valid, Some(test))
        } else {
            (evaluate(&Scorer::Model(&model), &split.valid)?, None)
        };
        extra.extend(rss_column());
        let score = valid.get(metric);
        // Released: "improved" is any watched test metric's best so far, and the counter follows
        // the released rule; otherwise the validation metric improves or not.
        let (improved, released_bad) = match &test {
            Some(tm) if released => {
                let (improved, counter) =
                    released_counter(out.epochs.iter().filter_map(|e| e.test.as_ref()).chain([tm]));
                (improved, Some(counter))
            }
            _ => (score > best, None),
        };
        let selected = improved || t.selection == Selection::Last;
        let log = EpochLog {
            epoch,
            loss: loss_sum / n_targets as f64,
            steps: n_batches,
            train_seconds,
            eval_seconds: t1.elapsed().as_secs_f64(),
            valid,
            test,
            extra,
        };
        dir.append_epoch(&log)?;
        if opts.progress {
            let extras: String = log.extra.iter().map(|(k, v)| format!(" {k} {v:.4}")).collect();
            let test = match &log.test {
                Some(m) => {
                    format!(
                        "test hr@5 {:.4} mrr@5 {:.4} hr@20 {:.4} mrr@20 {:.4}",
                        m.hr[0], m.mrr[0], m.hr[2], m.mrr[2]
                    )
                }
                None => "test after training".into(),
            };
            let valid = if released {
                "no validation (test-selected)".to_string()
            } else {
                format!("valid {metric} {score:.4}")
            };
            eprintln!(
                "epoch {epoch:>3} loss {:.4} | {valid}{} | {test} | {n_batches} steps, {train_seconds:.1}s train, {:.1}s eval{}",
                log.loss,
                if improved { " *" } else { "" },
                log.eval_seconds,
                if extras.is_empty() { String::new() } else { format!(" |{extras}") }
            );
        }
        if let Some(counter) = released_bad {
            bad_epochs = counter;
        } else if improved {
            best = score;
            bad_epochs = 0;
        } else {
            bad_epochs += 1;
        }
        if selected {
            out.best_epoch = epoch;
            out.valid = log.valid.clone();
            selected_weights = Some(params.tensors());
        }
        out.epochs.push(log);
        let mut segments = out.segments.clone();
        segments.push(Segment {
            epochs: (first_epoch, epoch),
            code_version: crate::io::CodeVersion::current(),
            threads: rayon::current_num_threads(),
        });
        let snapshot = Snapshot {
            epoch,
            adam_step: adam.steps_taken(),
            best,
            bad_epochs,
            best_epoch: out.best_epoch,
            valid: out.valid.clone(),
            epochs: out.epochs.clone(),
            streams: Streams::new(
                shuffle_rng.get_word_pos(),
                ctx.rng_position(),
                cdl.as_ref().map(|c| c.rng_position()),
            ),
            seconds: out.prior_seconds + started.elapsed().as_secs_f64(),
            segments,
            params: params.tensors(),
            moments: adam.moments()?.into_iter().map(|(k, m, v)| (k, (m, v))).collect(),
            selected: selected_weights.clone(),
        };
        snapshot.write(&dir.dir, &cfg.run_id()).context("writing the resume state")?;
        if bad_epochs >= t.patience {
            break;
        }
        if epoch < t.max_epochs && opts.stop_after.is_some_and(|n| epoch + 1 - first_epoch >= n) {
            out.paused = Some(epoch);
            return Ok((out, info, sizes));
        }
    }
    let weights = selected_weights.context("no epoch was selected (is train.max_epochs 0?)")?;
    params.load(&weights).context("restoring the selected weights")?;
    dir.save_checkpoint(&weights).context("saving the selected checkpoint")?;
    let measured = match test_best_per_metric(&out.epochs) {
        // Released: each metric's best test value over the epochs (the released code's report).
        Some(best) if released && t.selection != Selection::Last => Some(metrics_of(&best, split.test.len())),
        _ => out.epochs.iter().find(|e| e.epoch == out.best_epoch).and_then(|e| e.test.clone()),
    };
    out.test = match measured {
        Some(test) => test,
        None => {
            let t1 = Instant::now();
            let test = evaluate(&Scorer::Model(&model), &split.test)?;
            if opts.progress {
                eprintln!(
                    "test at epoch {} (the selected weights): hr@5 {:.4} mrr@5 {:.4} hr@20 {:.4} mrr@20 {:.4} | {:.1}s eval",
                    out.best_epoch,
                    test.hr[0],
                    test.mrr[0],
                    test.hr[2],
                    test.mrr[2],
                    t1.elapsed().as_secs_f64()
                );
            }
            test
        }
    };
    out.seconds_per_epoch = out.epochs.iter().map(|e| e.train_seconds).sum::<f64>() / out.epochs.len() as f64;
    Ok((out, info, sizes))
}

/// The `rss_peak_mib` column of epochs.csv: this process's peak resident memory so far (a
/// sweep running several runs in one process shares it).
fn rss_column() -> Option<(String, f64)> {
    crate::io::peak_rss_mib().map(|m| ("rss_peak_mib".to_string(), m))
}

fn progress_bar(enabled: bool, len: u64, epoch: usize) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    let style =
        indicatif::ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg} ({elapsed}<{eta})")
            .expect("valid template")
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(epoch.to_string());
    Some(bar)
}

/// The size of each part of the split, for the record.
struct SplitSizes {
    train_targets: usize,
    valid: usize,
    test: usize,
}

/// The released code's model selection: the best test value of each metric over all epochs
/// (each metric may come from a different epoch). Recorded for comparison, never as our result;
/// None unless every epoch's test set was evaluated.
fn test_best_per_metric(epochs: &[EpochLog]) -> Option<BTreeMap<Metric, EpochValue>> {
    if epochs.iter().any(|e| e.test.is_none()) {
        return None;
    }
    let value = |e: &EpochLog, m: Metric| e.test.as_ref().map_or(f64::NEG_INFINITY, |t| t.get(m));
    Metrics::all()
        .into_iter()
        .map(|m| {
            let e = epochs.iter().max_by(|a, b| value(a, m).total_cmp(&value(b, m)))?;
            Some((m, EpochValue { value: value(e, m), epoch: e.epoch }))
        })
        .collect()
}

/// A [`Metrics`] whose every value is the given metric's entry of `best` (over `n` instances).
fn metrics_of(best: &BTreeMap<Metric, EpochValue>, n: usize) -> Metrics {
    let mut m = Metrics { n, ..Metrics::default() };
    for (metric, v) in best {
        m.set(*metric, v.value);
    }
    m
}

fn final_record(
    cfg: &RunConfig,
    ds: &Dataset,
    out: &RunOutcome,
    modality: serde_json::Value,
    sizes: SplitSizes,
    total_seconds: f64,
) -> RunRecord {
    let eval_seconds = out.epochs.iter().map(|e| e.eval_seconds).sum::<f64>() / out.epochs.len().max(1) as f64;
    RunRecord {
        run_id: out.run_id.clone(),
        status: RecordStatus::Finished,
        dataset: ds.name.clone(),
        model: cfg.model.kind().name().to_string(),
        variant: cfg.variant_name(),
        protocol: cfg.protocol.name().to_string(),
        selection: match cfg.train.selection {
            Selection::Last => "test metrics at the last epoch trained".to_string(),
            Selection::BestValid if cfg.protocol.test_selected() => {
                "test-selected: each metric's best test value over the epochs (the released code's selection)"
                    .to_string()
            }
            Selection::BestValid => format!("test metrics at the best validation {} epoch", cfg.train.valid_metric),
        },
        seed: cfg.seed,
        config: cfg.clone(),
        code_version: CodeVersion::current(),
        threads: rayon::current_num_threads(),
        finished_at_unix: record::unix_now(),
        n_users: ds.sequences.len(),
        n_items: ds.n_items,
        n_train_targets: sizes.train_targets,
        n_valid: sizes.valid,
        n_test: sizes.test,
        modality,
        epochs_run: out.epochs.len(),
        best_epoch: out.best_epoch,
        seconds_per_epoch: out.seconds_per_epoch,
        eval_seconds_per_epoch: eval_seconds,
        peak_rss_mib: out
            .epochs
            .iter()
            .filter_map(|e| e.extra.iter().find(|(n, _)| n == "rss_peak_mib").map(|(_, v)| *v))
            .filter(|v| v.is_finite())
            .reduce(f64::max),
        total_seconds,
        resumed_from: out.segments.clone(),
        seal: None,
        valid: out.valid.clone(),
        test: out.test.clone(),
        released_selection: test_best_per_metric(&out.epochs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hr5: f64, mrr20: f64) -> Metrics {
        let mut m = Metrics::default();
        m.set("hr@5".parse().unwrap(), hr5);
        m.set("mrr@20".parse().unwrap(), mrr20);
        m
    }

    #[test]
    fn released_counter_needs_two_flat_epochs_in_a_row() {
        // improved, improved, flat (last improved: 0), flat (1), better mrr@20 (0), flat (0), flat (1), flat (2)
        let tests = [
            at(1.0, 1.0),
            at(2.0, 1.0),
            at(1.5, 0.5),
            at(1.5, 0.5),
            at(1.0, 2.0),
            at(1.0, 1.0),
            at(1.0, 1.0),
            at(0.0, 0.0),
        ];
        let counters: Vec<(bool, usize)> = (1..=tests.len()).map(|n| released_counter(&tests[..n])).collect();
        assert_eq!(
            counters,
            vec![(true, 0), (true, 0), (false, 0), (false, 1), (true, 0), (false, 0), (false, 1), (false, 2)]
        );
        // A metric outside HR/MRR/NDCG@5/20 does not count as an improvement.
        let mut m = at(2.0, 2.0);
        m.set("hr@10".parse().unwrap(), 50.0);
        assert_eq!(released_counter([&at(2.0, 2.0), &m, &m]), (false, 1));
    }

    #[test]
    fn metrics_of_takes_each_metrics_own_best() {
        let epochs: Vec<EpochLog> = [at(1.0, 3.0), at(2.0, 1.0)]
            .into_iter()
            .enumerate()
            .map(|(i, t)| EpochLog {
                epoch: i + 1,
                loss: 0.0,
                steps: 0,
                train_seconds: 0.0,
                eval_seconds: 0.0,
                valid: Metrics::default(),
                test: Some(t),
                extra: vec![],
            })
            .collect();
        let best = test_best_per_metric(&epochs).unwrap();
        let m = metrics_of(&best, 7);
        assert_eq!((m.n, m.get("hr@5".parse().unwrap()), m.get("mrr@20".parse().unwrap())), (7, 2.0, 3.0));
        assert_eq!(
            (best[&"hr@5".parse::<Metric>().unwrap()].epoch, best[&"mrr@20".parse::<Metric>().unwrap()].epoch),
            (2, 1)
        );
    }
}
