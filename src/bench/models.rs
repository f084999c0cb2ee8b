//! The per-model table of `kdsr bench --models`: every listed model trained as a run would train
//! it on full Beauty (its default settings, sample mode, batch unit and modality tables; the
//! default protocol), one epoch's first steps timed one after another, so that a slow model
//! shows up beside SASRec in the same process, on the same machine load.
//!
//! `epoch_s = mean(step) * steps per epoch`, with `step = forward + backward + Adam` (the
//! forward includes the loss, and CDL's correlation losses where the run has them); the ratio
//! is to SASRec's `epoch_s` of the same call. The epoch's ranking of validation users is not
//! included. With `--python`, SR-GNN's row gets a peer in the same call: RecBole 1.2.1's own
//! `SRGNN` trained on the same steps, as RecBole's loader pads them
//! (`bench/recbole_srgnn_bench.py`, [`srgnn_recbole_steps`]).

use crate::config::RunConfig;
use crate::data::batch::{cloze_batch, steps, train_batch, train_windows, Cloze, Layout, SampleMode, Window};
use crate::data::split::Split;
use crate::data::{DataPaths, Dataset, DatasetId, DatasetRef};
use crate::model::{Ctx, ModalityMode, ModelKind};
use crate::optim::Adam;
use crate::train::step::{step_loss, StepLoss};
use anyhow::{Context, Result};
use candle_core::Device;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::time::Instant;

/// One model's row.
#[derive(Debug, Clone)]
pub struct ModelTiming {
    pub name: String,
    pub steps_per_epoch: usize,
    pub timed_steps: usize,
    /// Mean milliseconds per step: forward (with the loss), backward, Adam.
    pub forward_ms: f64,
    pub backward_ms: f64,
    pub adam_ms: f64,
}

impl ModelTiming {
    pub fn step_ms(&self) -> f64 {
        self.forward_ms + self.backward_ms + self.adam_ms
    }

    pub fn epoch_s(&self) -> f64 {
        self.step_ms() * self.steps_per_epoch as f64 / 1e3
    }
}

/// Times the first `n_steps` training steps of an epoch of `kind` (after one untimed step), in
/// modality mode `mode` where given (its default otherwise).
pub fn time_model(
    kind: ModelKind,
    mode: Option<ModalityMode>,
    ds: &Dataset,
    paths: &DataPaths,
    n_steps: usize,
) -> Result<ModelTiming> {
    let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), kind, 2023);
    if let Some(mode) = mode {
        let mut mc = cfg.modality.clone().unwrap_or_else(|| cfg.default_modality());
        mc.mode = mode;
        cfg.modality = Some(mc);
    }
    let t = &cfg.train;
    let (split, epoch_steps) = epoch_steps(&cfg, ds);
    let opts =
        crate::train::RunOptions { device: Device::Cpu, progress: false, paths: paths.clone(), stop_after: None };
    let setup =
        crate::train::setup::build(&cfg, ds, &split, &opts).with_context(|| format!("building {}", kind.name()))?;
    let mut cdl = setup.cdl;
    let mut adam = Adam::new(setup.params.vars(), t.lr, t.weight_decay)?;
    let layout = if t.pack { Layout::Packed } else { Layout::Padded };
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut ctx = Ctx::train(2025);
    let mut sums = [0.0f64; 3];
    let timed = n_steps.min(epoch_steps.len().saturating_sub(1));
    for (k, chunk) in epoch_steps.iter().take(timed + 1).enumerate() {
        let batch = match t.sample_mode {
            SampleMode::Cloze => {
                cloze_batch(&ds.sequences, chunk, Cloze { ratio: t.mask_ratio, n_items: ds.n_items }, &mut rng)
            }
            _ => train_batch(&ds.sequences, chunk, layout),
        };
        let t0 = Instant::now();
        let StepLoss { total, .. } = step_loss(&setup.model, cdl.as_mut(), &batch, &mut ctx, &Device::Cpu)?;
        let _ = total.to_scalar::<f32>()?;
        let t1 = Instant::now();
        let grads = total.backward()?;
        let t2 = Instant::now();
        adam.step(&grads)?;
        let t3 = Instant::now();
        if k > 0 {
            for (s, d) in sums.iter_mut().zip([t1 - t0, t2 - t1, t3 - t2]) {
                *s += d.as_secs_f64() * 1e3;
            }
        }
    }
    let n = timed.max(1) as f64;
    Ok(ModelTiming {
        name: cfg.variant_name(),
        steps_per_epoch: epoch_steps.len(),
        timed_steps: timed,
        forward_ms: sums[0] / n,
        backward_ms: sums[1] / n,
        adam_ms: sums[2] / n,
    })
}

/// The split of `cfg`'s run and the steps of its first epoch (windows shuffled with a fixed
/// seed), as [`time_model`] times them.
fn epoch_steps(cfg: &RunConfig, ds: &Dataset) -> (Split, Vec<Vec<Window>>) {
    let t = &cfg.train;
    let split = Split::new(&ds.sequences, cfg.protocol);
    let mut windows = train_windows(&split, t.max_len, t.sample_mode);
    windows.shuffle(&mut ChaCha8Rng::seed_from_u64(2023));
    let epoch_steps = steps(&windows, t.batch_size, t.batch_unit);
    (split, epoch_steps)
}

/// SR-GNN's steps of [`time_model`] as RecBole feeds its `SRGNN`: per step `item_seq` [B, L]
/// (each prefix left-aligned, zero-padded to `max_len`, as RecBole's data loader pads every
/// batch), `item_length` [B] and the target `item_id` [B] (ids as kdsr's: 1-based, 0 pads),
/// for the peer row of the per-model table (`bench/recbole_srgnn_bench.py`).
/// With them, `config` (JSON bytes): the catalogue, the run's SR-GNN settings and learning rate.
pub fn srgnn_recbole_steps(ds: &Dataset, n_steps: usize, threads: usize) -> Result<Vec<(String, candle_core::Tensor)>> {
    let cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Srgnn, 2023);
    let crate::model::ModelSpec::Srgnn(m) = &cfg.model else {
        anyhow::bail!("SR-GNN's run config has no SR-GNN settings")
    };
    let l = cfg.train.max_len;
    let settings = serde_json::json!({"n_items": ds.n_items, "max_len": l, "embedding": m.embedding, "step": m.step,
                                      "lr": cfg.train.lr, "weight_decay": cfg.train.weight_decay, "threads": threads});
    let (_, epoch_steps) = epoch_steps(&cfg, ds);
    let mut out = Vec::new();
    let timed = n_steps.min(epoch_steps.len().saturating_sub(1));
    for (k, chunk) in epoch_steps.iter().take(timed + 1).enumerate() {
        let (mut seq, mut len, mut target) = (vec![0i64; chunk.len() * l], Vec::new(), Vec::new());
        for (r, w) in chunk.iter().enumerate() {
            let s = &ds.sequences[w.user as usize];
            let items = &s[w.start as usize..w.end as usize];
            anyhow::ensure!(items.len() <= l && w.first as usize + 1 == items.len(), "SR-GNN windows are prefixes");
            for (c, &item) in items.iter().enumerate() {
                seq[r * l + c] = i64::from(item);
            }
            len.push(items.len() as i64);
            target.push(i64::from(s[w.end as usize]));
        }
        let dev = Device::Cpu;
        let b = chunk.len();
        out.push((format!("seq_{k}"), candle_core::Tensor::from_vec(seq, (b, l), &dev)?));
        out.push((format!("len_{k}"), candle_core::Tensor::from_vec(len, b, &dev)?));
        out.push((format!("target_{k}"), candle_core::Tensor::from_vec(target, b, &dev)?));
    }
    out.push(("config".into(), candle_core::Tensor::new(settings.to_string().into_bytes(), &Device::Cpu)?));
    Ok(out)
}

/// The Markdown table, ratios to the `sasrec` row where there is one.
pub fn render(rows: &[ModelTiming], threads: usize, command: &str) -> String {
    let sasrec = rows.iter().find(|r| r.name == "sasrec").map(ModelTiming::epoch_s);
    let v = crate::io::CodeVersion::current();
    let mut out = format!(
        "Generated by `{command}` ({threads} thread(s); code {}{}); do not edit. Each model as a run trains it on full \
         Beauty (default settings and protocol); the mean of an epoch's first steps, after one untimed step; \
         epoch = mean step x steps per epoch, without the epoch's validation ranking.\n\n\
         | Model | Steps per epoch | Timed steps | Forward ms | Backward ms | Adam ms | Step ms | Epoch s | x SASRec |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        &v.commit[..v.commit.len().min(12)],
        if v.dirty { ", dirty" } else { "" }
    );
    for r in rows {
        let ratio = sasrec.map_or("-".to_string(), |s| format!("{:.2}", r.epoch_s() / s));
        out += &format!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {ratio} |\n",
            r.name,
            r.steps_per_epoch,
            r.timed_steps,
            r.forward_ms,
            r.backward_ms,
            r.adam_ms,
            r.step_ms(),
            r.epoch_s()
        );
    }
    out
}

/// The table's rows as JSON (for the bench report).
pub fn to_json(rows: &[ModelTiming]) -> Value {
    Value::Object(
        rows.iter()
            .map(|r| {
                (
                    r.name.clone(),
                    json!({"steps_per_epoch": r.steps_per_epoch, "timed_steps": r.timed_steps,
                           "forward_ms": r.forward_ms, "backward_ms": r.backward_ms, "adam_ms": r.adam_ms,
                           "epoch_s": r.epoch_s()}),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_epoch_seconds_and_ratios_to_sasrec() {
        let row = |name: &str, ms: f64| ModelTiming {
            name: name.into(),
            steps_per_epoch: 500,
            timed_steps: 10,
            forward_ms: ms / 2.0,
            backward_ms: ms / 4.0,
            adam_ms: ms / 4.0,
        };
        let rows = [row("sasrec", 40.0), row("srgnn", 100.0)];
        assert!((rows[1].epoch_s() - 50.0).abs() < 1e-9);
        let md = render(&rows, 1, "kdsr bench --models sasrec,srgnn");
        assert!(md.contains("| sasrec | 500 | 10 | 20.0 | 10.0 | 10.0 | 40.0 | 20.0 | 1.00 |"), "{md}");
        assert!(md.contains("| srgnn | 500 | 10 | 50.0 | 25.0 | 25.0 | 100.0 | 50.0 | 2.50 |"), "{md}");
    }
}
