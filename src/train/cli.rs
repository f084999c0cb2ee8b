//! `kdsr train`: one run from flags or a run TOML, to early stopping; writes
//! `reports/runs/<run_id>/`.

use crate::config::RunConfig;
use crate::data::batch::SampleMode;
use crate::data::split::Protocol;
use crate::data::{DataPaths, Dataset, DatasetRef};
use crate::error::bad_input;
use crate::model::ModelKind;
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct TrainArgs {
    /// A run TOML (as written to run.toml); flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// beauty, sports, toys, clothing, ml-1m, ml-100k, seq:PATH or csv:PATH.
    #[arg(long)]
    pub dataset: Option<DatasetRef>,
    #[arg(long, value_enum)]
    pub model: Option<ModelKind>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Maximum number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Keep only the first N users.
    #[arg(long)]
    pub max_users: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub weight_decay: Option<f64>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Set any run setting by its dotted key, as in a grid file (repeatable), e.g.
    /// `--set modality.student.holistic_form=norm --set modality.teacher.centre=true`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Start from a preset's defaults (recbole, the default, or paper: 128-d, batch 512 targets).
    #[arg(long, value_enum)]
    pub preset: Option<crate::config::Preset>,
    /// What --batch-size counts: targets (default) or sequences (windows).
    #[arg(long, value_enum)]
    pub batch_unit: Option<crate::data::batch::BatchUnit>,
    /// One padded window per row instead of packing several sequences into a row.
    #[arg(long)]
    pub no_pack: bool,
    /// Evaluate the test set after every epoch (for the released code's per-metric selection).
    #[arg(long)]
    pub test_every_epoch: bool,
    #[arg(long)]
    pub patience: Option<usize>,
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    #[arg(long, value_enum)]
    pub sample_mode: Option<SampleMode>,
    /// Validation metric for early stopping, e.g. ndcg@20.
    #[arg(long)]
    pub valid_metric: Option<crate::eval::Metric>,
    /// Which epoch the reported metrics come from: best-valid (default, the paper's) or last.
    #[arg(long, value_enum)]
    pub selection: Option<crate::config::Selection>,
    /// Remove history items from the ranking.
    #[arg(long)]
    pub mask_history: bool,
    #[command(flatten)]
    pub kdsr: KdsrArgs,
    /// Where run folders go.
    #[arg(long, default_value = "reports/runs")]
    pub out: PathBuf,
    /// Retrain from scratch even if the run already finished (or has a resume state).
    #[arg(long)]
    pub force: bool,
    /// Pause after this many epochs, leaving the run resumable: the same command continues it
    /// (an unfinished run always resumes after its last finished epoch, also after a kill).
    #[arg(long, value_name = "EPOCHS", value_parser = clap::value_parser!(u64).range(1..))]
    pub stop_after: Option<u64>,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    pub quiet: bool,
}

/// Modality embeddings and KDSR (correlation distillation) options.
#[derive(Args)]
pub struct KdsrArgs {
    /// KDSR: modality embeddings trained with correlation distillation (text + attributes
    /// unless --modality says otherwise).
    #[arg(long)]
    pub cdl: bool,
    /// Modalities to fuse, e.g. text,attributes.
    #[arg(long, value_delimiter = ',')]
    pub modality: Vec<crate::modality::Modality>,
    /// How modality embeddings are used: frozen, tuned, or cdl (KDSR).
    #[arg(long, value_enum)]
    pub mode: Option<crate::model::ModalityMode>,
    #[arg(long, value_enum)]
    pub scoring: Option<crate::distill::Scoring>,
    #[arg(long, value_enum)]
    pub quantizer: Option<crate::distill::Quantizer>,
    /// Holistic loss weight α.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Dissected loss weight β.
    #[arg(long)]
    pub beta: Option<f64>,
    /// Soft-match temperature τ.
    #[arg(long)]
    pub tau: Option<f64>,
    /// Ablation "w/o τ": hard match of holistic scores.
    #[arg(long)]
    pub no_tau: bool,
    /// Ablation "w/o holistic".
    #[arg(long)]
    pub no_holistic: bool,
    /// Ablation "w/o dissected".
    #[arg(long)]
    pub no_dissected: bool,
    /// Ablation "w/o AT": no asynchronous learning rate for the modality tables.
    #[arg(long)]
    pub no_at: bool,
    /// Reproduce the released code's deviations from the paper (see README).
    #[arg(long)]
    pub code_faithful: bool,
    /// A BERT-family encoder folder for text features (default all-MiniLM-L6-v2).
    #[arg(long)]
    pub text_encoder: Option<PathBuf>,
    /// The drift probe's pure-ID reference for r(modality, ID): `twin` (this run without
    /// modality tables, trained first and cached) or a pure-ID model's best.safetensors.
    #[arg(long)]
    pub drift_reference: Option<PathBuf>,
}

impl KdsrArgs {
    fn any(&self) -> bool {
        self.cdl
            || !self.modality.is_empty()
            || self.mode.is_some()
            || self.scoring.is_some()
            || self.quantizer.is_some()
            || self.alpha.is_some()
            || self.beta.is_some()
            || self.tau.is_some()
            || self.no_tau
            || self.no_holistic
            || self.no_dissected
            || self.no_at
            || self.code_faithful
            || self.text_encoder.is_some()
            || self.drift_reference.is_some()
    }

    fn apply(&self, cfg: &mut RunConfig) {
        if !self.any() {
            return;
        }
        let mut mc = cfg.modality.clone().unwrap_or_else(|| cfg.default_modality());
        if !self.modality.is_empty() {
            mc.modalities = self.modality.clone();
        }
        if let Some(m) = self.mode {
            mc.mode = m;
        } else if self.cdl {
            mc.mode = crate::model::ModalityMode::Cdl;
        }
        let (t, s) = (&mut mc.teacher, &mut mc.student);
        if let Some(v) = self.scoring {
            t.scoring = v;
        }
        if let Some(v) = self.quantizer {
            t.quantizer = v;
        }
        if let Some(v) = self.alpha {
            s.alpha = v;
        }
        if let Some(v) = self.beta {
            s.beta = v;
        }
        if let Some(v) = self.tau {
            s.tau = v;
        }
        s.soft_match &= !self.no_tau;
        s.holistic &= !self.no_holistic;
        s.dissected &= !self.no_dissected;
        mc.at.enabled &= !self.no_at;
        mc.code_faithful |= self.code_faithful;
        if self.code_faithful {
            // The released code's autoencoder has a sigmoid encoder.
            mc.autoencoder.activation = crate::distill::autoencoder::Activation::Sigmoid;
        }
        if self.text_encoder.is_some() {
            mc.features.text_encoder = self.text_encoder.clone();
        }
        if self.drift_reference.is_some() {
            mc.drift.id_reference = self.drift_reference.clone().map(Into::into);
        }
        cfg.modality = Some(mc);
    }
}

pub fn resolve_config(a: &TrainArgs) -> Result<RunConfig> {
    let mut cfg = match &a.config {
        Some(path) => RunConfig::from_file(path)?,
        None => {
            let dataset = a.dataset.clone().ok_or_else(|| bad_input("--dataset is required (or --config FILE)"))?;
            let model = a.model.ok_or_else(|| bad_input("--model is required (or --config FILE)"))?;
            RunConfig::new(dataset, model, a.seed.unwrap_or(2023))
        }
    };
    if let Some(d) = &a.dataset {
        cfg.dataset = d.clone();
    }
    if let Some(m) = a.model {
        if m != cfg.model.kind() {
            cfg.set_model(m);
        }
    }
    if let Some(p) = a.preset {
        p.apply(&mut cfg);
    }
    let t = &mut cfg.train;
    macro_rules! set {
        ($($field:ident => $target:expr),*) => { $(if let Some(v) = a.$field { $target = v; })* };
    }
    set!(seed => cfg.seed, epochs => t.max_epochs, lr => t.lr, weight_decay => t.weight_decay,
         batch_size => t.batch_size, patience => t.patience, protocol => cfg.protocol,
         sample_mode => t.sample_mode, valid_metric => t.valid_metric, selection => t.selection,
         batch_unit => t.batch_unit);
    if a.mask_history {
        t.mask_history = true;
    }
    if a.no_pack {
        t.pack = false;
    }
    if a.test_every_epoch {
        t.test_every_epoch = true;
    }
    if a.max_users.is_some() {
        cfg.max_users = a.max_users;
    }
    a.kdsr.apply(&mut cfg);
    for kv in &a.set {
        let (k, v) = kv.split_once('=').ok_or_else(|| bad_input(format!("--set {kv}: expected KEY=VALUE")))?;
        cfg = cfg.with_setting(k.trim(), v.trim()).map_err(|e| bad_input(format!("--set {e}")))?;
    }
    cfg.validate().map_err(bad_input)?;
    Ok(cfg)
}

/// Runs `kdsr train`.
pub fn run(a: TrainArgs, paths: &DataPaths, device: crate::device::DeviceSpec) -> Result<()> {
    let cfg = resolve_config(&a)?;
    let run_id = cfg.run_id();
    let metrics = crate::results::RunDir::metrics_path(&a.out, &run_id);
    if metrics.exists() && !a.force {
        println!("run {run_id} already finished: {} (use --force to retrain)", metrics.display());
        return Ok(());
    }
    // Into a grid's records (`--out reports/<grid>/runs`): hold the run's lock, as a sweep does,
    // so that a sweep of the grid leaves the run to this process (and the reverse).
    let _lock = match crate::results::grid_of_runs(&a.out) {
        Some(grid) => Some(crate::results::lock_run(grid, &run_id)?.ok_or_else(|| {
            bad_input(format!(
                "run {run_id} is in training in another process (its lock in {} is held)",
                a.out.display()
            ))
        })?),
        None => None,
    };
    if metrics.exists() && !a.force {
        println!("run {run_id} finished in another process meanwhile: {}", metrics.display());
        return Ok(());
    }
    let run_dir = a.out.join(&run_id);
    if a.force {
        crate::train::resume::remove(&run_dir)?;
    } else if crate::train::resume::exists(&run_dir) && !metrics.exists() {
        eprintln!("run {run_id}: resuming from {}", crate::train::resume::dir(&run_dir).display());
    }
    let mut ds = Dataset::load(&cfg.dataset, paths)?;
    if let Some(n) = cfg.max_users {
        ds = ds.truncate_users(n);
    }
    eprintln!(
        "run {run_id}: {} on {} ({} users, {} items), protocol {}, seed {}",
        cfg.variant_name(),
        ds.name,
        ds.sequences.len(),
        ds.n_items,
        cfg.protocol.name(),
        cfg.seed
    );
    let opts = crate::train::RunOptions {
        device: device.open()?,
        progress: !a.quiet,
        paths: paths.clone(),
        stop_after: a.stop_after.map(|n| n as usize),
    };
    let out = crate::train::train_run(&cfg, &ds, &a.out, &opts).with_context(|| format!("run {run_id}"))?;
    if let Some(epoch) = out.paused {
        println!("{run_id}: paused after epoch {epoch}; the same command continues it | {}", out.dir.display());
        return Ok(());
    }
    let t = &out.test;
    println!(
        "{run_id}: best epoch {} of {} | test H@5 {:.4} M@5 {:.4} H@20 {:.4} M@20 {:.4} N@20 {:.4} | {:.1} s/epoch | {}",
        out.best_epoch,
        out.epochs.len(),
        t.hr[0],
        t.mrr[0],
        t.hr[2],
        t.mrr[2],
        t.ndcg[2],
        out.seconds_per_epoch,
        out.dir.display()
    );
    Ok(())
}
