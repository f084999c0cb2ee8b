//! The `kdsr` command line.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use kdsr::config::RunConfig;
use kdsr::data::batch::SampleMode;
use kdsr::data::split::Protocol;
use kdsr::data::stats::{check_against_paper, render_markdown, PaperCheck, Stats};
use kdsr::data::{DataPaths, Dataset, DatasetId, DatasetRef};
use kdsr::error::{bad_input, is_bad_input};
use kdsr::modality::{load_features, FeatureOptions, Modality};
use kdsr::model::ModelKind;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc malloc: a training step allocates and frees hundreds of
/// megabyte-sized tensors, which glibc serves with fresh `mmap`s (a page fault per 4 KiB on
/// every touch) under a threshold that moves with the allocation history; measured in
/// reports/bench/README.md (GRU4Rec's step 1.5 s -> 0.5 s, and it no longer varies between
/// builds).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (position 15 of `mi_option_e` in mimalloc.h, v3), whose
/// documented default in that version is 1000 ms.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed memory mapped instead of returning it to the OS after a delay: every step
/// frees and reallocates the same tensor sizes, and re-faulting purged (huge) pages cost
/// ~5% of a training epoch (page faults per 1-epoch run: ~50,000 -> ~1,200). Left alone if
/// the option at that position does not hold its documented default (another mimalloc).
fn keep_freed_memory() {
    // SAFETY: plain option getters/setters of the linked mimalloc; no memory is touched.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == 1000 {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1);
        }
    }
}

#[derive(Parser)]
#[command(
    name = "kdsr",
    version,
    about = "Reproduce and extend KDSR (ECIR 2024): sequential recommendation with correlation supervision"
)]
struct Cli {
    /// Directory with the shared datasets (default: $KDSR_DATA_DIR, else ../shared/data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Directory with data fetched by `just data` (default: $KDSR_CACHE_DIR, else .cache).
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Worker threads (default: all cores, or $RAYON_NUM_THREADS); for `sweep run`, the total
    /// budget split between parallel runs.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Where to train: cpu (default), cuda or cuda:N (a CUDA build); a sweep on a GPU runs one
    /// run at a time.
    #[arg(long, global = true, default_value = "cpu")]
    device: kdsr::device::DeviceSpec,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dataset commands.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Item feature matrices (text, attributes, image) for the modality tables.
    Features {
        #[command(subcommand)]
        command: FeaturesCommand,
    },
    /// Train and evaluate one model; writes reports/runs/<run_id>/.
    Train(Box<TrainArgs>),
    /// Time a SASRec training step and a full evaluation on Beauty's shapes, optionally
    /// against the PyTorch reference.
    Bench(kdsr::bench::BenchArgs),
    /// Experiment grids (experiments/<name>.toml): plan, run (resumable), Slurm script.
    Sweep {
        #[command(subcommand)]
        command: kdsr::sweep::cli::SweepCommand,
    },
    /// Aggregate a grid's records into reports/<grid>/: summary (CSV, Parquet), the table in
    /// the paper's layout (Markdown, LaTeX, CSV), figures (PNG, SVG) and report.md.
    Report(kdsr::sweep::cli::PlanArgs),
    /// The CI metric gate: a grid's summary against a committed baseline; exit 1 on a regression.
    Gate(GateArgs),
}

#[derive(Args)]
struct GateArgs {
    #[command(flatten)]
    grid: kdsr::sweep::cli::GridArgs,
    /// The baseline file.
    #[arg(long, default_value = "reports/baseline.toml")]
    baseline: PathBuf,
    /// Write the baseline from the current records instead of checking them.
    #[arg(long)]
    write_baseline: bool,
    /// Metrics the baseline covers (with --write-baseline).
    #[arg(long, value_delimiter = ',', default_value = "hr@20,ndcg@20")]
    metrics: Vec<kdsr::eval::Metric>,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Print the paper's Table 1 statistics computed from the data.
    Stats {
        /// Datasets (default: the paper's five).
        #[arg(long, value_delimiter = ',')]
        dataset: Vec<DatasetRef>,
    },
}

#[derive(Subcommand)]
enum FeaturesCommand {
    /// Build (or load from the cache) one modality's features and print their shape.
    Build(FeaturesArgs),
}

#[derive(Args)]
struct FeaturesArgs {
    /// beauty, sports, toys, ml-1m, ml-100k (text, attributes); any dataset with --file.
    #[arg(long)]
    dataset: DatasetRef,
    #[arg(long, value_enum)]
    modality: Modality,
    /// Text encoder folder (BERT-family: model.safetensors, tokenizer.json, config.json);
    /// default: all-MiniLM-L6-v2 fetched by `just data`.
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Precomputed [N, d] features (.npy or .safetensors) for --modality image.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Texts per encoder forward pass.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Rebuild even if the cache is valid.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// A run TOML (as written to run.toml); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// beauty, sports, toys, clothing, ml-1m, ml-100k, seq:PATH or csv:PATH.
    #[arg(long)]
    dataset: Option<DatasetRef>,
    #[arg(long, value_enum)]
    model: Option<ModelKind>,
    #[arg(long)]
    seed: Option<u64>,
    /// Maximum number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Keep only the first N users.
    #[arg(long)]
    max_users: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    weight_decay: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Set any run setting by its dotted key, as in a grid file (repeatable), e.g.
    /// `--set modality.student.holistic_form=norm --set modality.teacher.centre=true`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Start from a preset's defaults (recbole, the default, or paper: 128-d, batch 512 targets).
    #[arg(long, value_enum)]
    preset: Option<kdsr::config::Preset>,
    /// What --batch-size counts: targets (default) or sequences (windows).
    #[arg(long, value_enum)]
    batch_unit: Option<kdsr::data::batch::BatchUnit>,
    /// One padded window per row instead of packing several sequences into a row.
    #[arg(long)]
    no_pack: bool,
    /// Evaluate the test set after every epoch (for the released code's per-metric selection).
    #[arg(long)]
    test_every_epoch: bool,
    #[arg(long)]
    patience: Option<usize>,
    #[arg(long, value_enum)]
    protocol: Option<Protocol>,
    #[arg(long, value_enum)]
    sample_mode: Option<SampleMode>,
    /// Validation metric for early stopping, e.g. ndcg@20.
    #[arg(long)]
    valid_metric: Option<kdsr::eval::Metric>,
    /// Which epoch the reported metrics come from: best-valid (default, the paper's) or last.
    #[arg(long, value_enum)]
    selection: Option<kdsr::config::Selection>,
    /// Remove history items from the ranking.
    #[arg(long)]
    mask_history: bool,
    #[command(flatten)]
    kdsr: KdsrArgs,
    /// Where run folders go.
    #[arg(long, default_value = "reports/runs")]
    out: PathBuf,
    /// Retrain even if the run already finished.
    #[arg(long)]
    force: bool,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    quiet: bool,
}

/// Modality embeddings and KDSR (correlation distillation) options.
#[derive(Args)]
struct KdsrArgs {
    /// KDSR: modality embeddings trained with correlation distillation (text + attributes
    /// unless --modality says otherwise).
    #[arg(long)]
    cdl: bool,
    /// Modalities to fuse, e.g. text,attributes.
    #[arg(long, value_delimiter = ',')]
    modality: Vec<kdsr::modality::Modality>,
    /// How modality embeddings are used: frozen, tuned, or cdl (KDSR).
    #[arg(long, value_enum)]
    mode: Option<kdsr::model::ModalityMode>,
    #[arg(long, value_enum)]
    scoring: Option<kdsr::distill::Scoring>,
    #[arg(long, value_enum)]
    quantizer: Option<kdsr::distill::Quantizer>,
    /// Holistic loss weight α.
    #[arg(long)]
    alpha: Option<f64>,
    /// Dissected loss weight β.
    #[arg(long)]
    beta: Option<f64>,
    /// Soft-match temperature τ.
    #[arg(long)]
    tau: Option<f64>,
    /// Ablation "w/o τ": hard match of holistic scores.
    #[arg(long)]
    no_tau: bool,
    /// Ablation "w/o holistic".
    #[arg(long)]
    no_holistic: bool,
    /// Ablation "w/o dissected".
    #[arg(long)]
    no_dissected: bool,
    /// Ablation "w/o AT": no asynchronous learning rate for the modality tables.
    #[arg(long)]
    no_at: bool,
    /// Reproduce the released code's deviations from the paper (see README).
    #[arg(long)]
    code_faithful: bool,
    /// A BERT-family encoder folder for text features (default all-MiniLM-L6-v2).
    #[arg(long)]
    text_encoder: Option<PathBuf>,
    /// A pure-ID model's best.safetensors for the drift probe's r(modality, ID).
    #[arg(long)]
    drift_reference: Option<PathBuf>,
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
            mc.mode = kdsr::model::ModalityMode::Cdl;
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
            mc.autoencoder.activation = kdsr::distill::autoencoder::Activation::Sigmoid;
        }
        if self.text_encoder.is_some() {
            mc.features.text_encoder = self.text_encoder.clone();
        }
        if self.drift_reference.is_some() {
            mc.drift.id_reference = self.drift_reference.clone();
        }
        cfg.modality = Some(mc);
    }
}

fn resolve_config(a: &TrainArgs) -> Result<RunConfig> {
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

fn train(a: TrainArgs, paths: &DataPaths, device: kdsr::device::DeviceSpec) -> Result<()> {
    let cfg = resolve_config(&a)?;
    let run_id = cfg.run_id();
    let metrics = kdsr::results::RunDir::metrics_path(&a.out, &run_id);
    if metrics.exists() && !a.force {
        println!("run {run_id} already finished: {} (use --force to retrain)", metrics.display());
        return Ok(());
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
    let opts = kdsr::train::RunOptions { device: device.open()?, progress: !a.quiet, paths: paths.clone() };
    let out = kdsr::train::train_run(&cfg, &ds, &a.out, &opts).with_context(|| format!("run {run_id}"))?;
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

fn data_stats(datasets: Vec<DatasetRef>, paths: &DataPaths) -> Result<()> {
    let datasets = if datasets.is_empty() {
        [DatasetId::Beauty, DatasetId::Clothing, DatasetId::Sports, DatasetId::Toys, DatasetId::Ml1m]
            .map(DatasetRef::Named)
            .to_vec()
    } else {
        datasets
    };
    let mut rows = Vec::new();
    for d in &datasets {
        let ds = Dataset::load(d, paths)?;
        let s = Stats::of(&ds);
        let m = match d {
            DatasetRef::Named(id) => check_against_paper(*id, &s),
            _ => PaperCheck::NotInPaper,
        };
        rows.push((s, m));
    }
    print!("{}", render_markdown(&rows));
    if rows.iter().any(|(_, m)| m.is_mismatch()) {
        anyhow::bail!("statistics differ from the paper's Table 1");
    }
    Ok(())
}

fn features_build(a: FeaturesArgs, paths: &DataPaths) -> Result<()> {
    if a.batch_size == 0 {
        return Err(bad_input("--batch-size must be at least 1"));
    }
    if a.encoder.is_some() && a.modality != Modality::Text {
        return Err(bad_input("--encoder applies to --modality text only"));
    }
    if a.file.is_some() && a.modality != Modality::Image {
        return Err(bad_input("--file applies to --modality image only"));
    }
    let ds = Dataset::load(&a.dataset, paths)?;
    let opts = FeatureOptions { text_encoder: a.encoder, image_file: a.file, batch_size: a.batch_size, force: a.force };
    let f = load_features(&ds, a.modality, paths, &opts)?;
    let m = &f.matrix;
    println!("dataset    {} ({} items)", ds.name, m.n_items);
    println!("modality   {}: {}", a.modality.name(), f.source);
    println!("shape      [{}, {}] (row 0 = padding, row i = item id i)", m.n_items + 1, m.dim);
    let shown: Vec<String> = m.missing.iter().take(10).map(u32::to_string).collect();
    let more = if m.missing.len() > 10 { ", ..." } else { "" };
    let ids = if m.missing.is_empty() { String::new() } else { format!(": item ids {}{more}", shown.join(", ")) };
    println!("zero rows  {} of {} items have no {} (zero vector){ids}", m.missing.len(), m.n_items, a.modality.name());
    match (&f.cache_path, f.from_cache, &f.rebuild_reason) {
        (Some(p), true, _) => println!("cache      {} (valid, loaded)", p.display()),
        (Some(p), false, Some(why)) => println!("cache      {} (built: {why})", p.display()),
        (Some(p), false, None) => println!("cache      {} (built)", p.display()),
        (None, ..) => println!("cache      none (built from the input files every time)"),
    }
    println!("seconds    {:.2}", f.seconds);
    Ok(())
}

/// `just sweep <grid> <flags>`: the command that (re)produces a grid's records.
fn sweep_command(a: &kdsr::sweep::cli::GridArgs, plan: &kdsr::sweep::plan::Plan) -> String {
    let mut parts = vec!["just sweep".to_string(), a.grid.clone()];
    parts.extend(plan.scale.to_flags());
    parts.join(" ")
}

fn report(a: &kdsr::sweep::cli::GridArgs) -> Result<()> {
    let (plan, store) = a.plan()?;
    let w = kdsr::report::write(&plan, &store, &sweep_command(a, &plan))?;
    println!(
        "report {}: {} finished runs, {} missing; wrote {} files, see {}",
        plan.grid.name,
        w.finished,
        w.missing,
        w.files.len(),
        w.dir.join("report.md").display()
    );
    Ok(())
}

fn gate(a: &GateArgs) -> Result<ExitCode> {
    use kdsr::gate::{Baseline, TolerancePolicy};
    let (plan, store) = a.grid.plan()?;
    let collected = kdsr::results::collect::Collected::from_store(&plan, &store)?;
    let spec = kdsr::report::spec_of(&plan);
    let reference = kdsr::report::reference_of(&plan, &spec, &collected)?;
    let summary = kdsr::results::aggregate::Summary::compute(&collected, reference)?;
    if a.write_baseline {
        if !collected.missing.is_empty() {
            return Err(bad_input(format!(
                "{} of the grid's runs have no record: run `{}` first",
                collected.missing.len(),
                sweep_command(&a.grid, &plan)
            )));
        }
        let command = format!("{}; kdsr gate {} --write-baseline", sweep_command(&a.grid, &plan), a.grid.grid);
        let base = Baseline::from_summary(&summary, &a.metrics, TolerancePolicy::default(), &plan.grid.name, &command);
        kdsr::io::write_atomic(&a.baseline, base.to_toml()?.as_bytes())?;
        println!("wrote {} ({} cells, {} beat rules)", a.baseline.display(), base.cell.len(), base.beat.len());
        return Ok(ExitCode::SUCCESS);
    }
    let base = Baseline::read(&a.baseline)?;
    if base.grid != plan.grid.name {
        return Err(bad_input(format!(
            "{}: the baseline is for grid `{}`, not `{}`",
            a.baseline.display(),
            base.grid,
            plan.grid.name
        )));
    }
    let checks = base.check(&summary);
    print!("{}", kdsr::gate::render(&checks));
    let failed = checks.iter().filter(|c| !c.ok).count();
    if failed > 0 {
        eprintln!(
            "gate: {failed} of {} checks failed against {} ({})",
            checks.len(),
            a.baseline.display(),
            base.command
        );
        return Ok(ExitCode::from(1));
    }
    println!("gate: all {} checks passed against {}", checks.len(), a.baseline.display());
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(n) = cli.threads {
        if n == 0 {
            return Err(bad_input("--threads must be at least 1"));
        }
        // A sweep splits the budget itself (threads per run).
        if !matches!(cli.command, Command::Sweep { .. }) {
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
    }
    let paths = DataPaths::resolve(cli.data_dir, cli.cache_dir);
    match cli.command {
        Command::Data { command: DataCommand::Stats { dataset } } => data_stats(dataset, &paths),
        Command::Features { command: FeaturesCommand::Build(a) } => features_build(a, &paths),
        Command::Train(a) => train(*a, &paths, cli.device),
        Command::Bench(a) => kdsr::bench::run(&a, &paths),
        Command::Report(a) => report(&a.grid),
        Command::Gate(a) => return gate(&a),
        Command::Sweep { command } => {
            return Ok(match kdsr::sweep::cli::run(command, &paths, cli.threads, cli.device)? {
                kdsr::sweep::cli::Outcome::Done => ExitCode::SUCCESS,
                kdsr::sweep::cli::Outcome::Interrupted => ExitCode::from(130),
            })
        }
    }
    .map(|()| ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    keep_freed_memory();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(if is_bad_input(&err) { 2 } else { 1 })
        }
    }
}
