//! The drift probe's pure-ID reference (Figure 1's dashed curves): a checkpoint named by path,
//! or the run's pure-ID twin, which a grid therefore never has to train, locate and paste in
//! by hand. The twin is trained once, like the teacher codes, under `<cache>/id-reference/`
//! (its own run folder there, resumable) and reused by every run with the same twin: in a
//! drift grid, the tuned and the CDL runs of one seed share it.

use super::fit::{train_run, RunOptions};
use crate::config::RunConfig;
use crate::data::Dataset;
use crate::distill::config::IdReference;
use crate::io::FileLock;
use crate::results::RunDir;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// `cfg` without modality tables: the same backbone, training settings, data and seed
/// ([`RunConfig::validate`] has checked that it is a valid run).
pub fn twin_config(cfg: &RunConfig) -> RunConfig {
    RunConfig { modality: None, ..cfg.clone() }
}

/// The checkpoint whose `item_embedding.weight` is the reference, and the twin's run id when
/// it is the twin (trained first if no finished twin is cached).
pub fn checkpoint(
    reference: &IdReference,
    cfg: &RunConfig,
    ds: &Dataset,
    opts: &RunOptions,
) -> Result<(PathBuf, Option<String>)> {
    let twin = match reference {
        IdReference::Checkpoint(p) => return Ok((p.clone(), None)),
        IdReference::Twin => twin_config(cfg),
    };
    let root = opts.paths.cache_dir.join("id-reference");
    let id = twin.run_id();
    let best = root.join(&id).join("best.safetensors");
    // Runs that share the twin (the tuned and CDL runs of a drift grid, in one sweep process
    // or several) take turns: the first trains it, the others find it finished.
    let _lock = FileLock::exclusive(&opts.paths.cache_dir.join("locks").join(format!("id-reference-{id}.lock")))?;
    if !(RunDir::metrics_path(&root, &id).exists() && best.exists()) {
        if opts.progress {
            eprintln!("drift reference: training the pure-ID twin {id} under {}", root.display());
        }
        let twin_opts = RunOptions {
            device: opts.device.clone(),
            progress: opts.progress,
            paths: opts.paths.clone(),
            stop_after: None,
        };
        train_run(&twin, ds, &root, &twin_opts).with_context(|| format!("training the pure-ID twin {id}"))?;
    }
    Ok((best, Some(id)))
}
