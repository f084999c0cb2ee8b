//! `kdsr features`: build (or load from the cache) a modality's item features.

use crate::data::{DataPaths, Dataset, DatasetRef};
use crate::error::bad_input;
use crate::modality::{load_features, FeatureOptions, Modality};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum FeaturesCommand {
    /// Build (or load from the cache) one modality's features and print their shape.
    Build(FeaturesArgs),
}

#[derive(Args)]
pub struct FeaturesArgs {
    /// beauty, sports, toys, ml-1m, ml-100k (text, attributes); any dataset with --file.
    #[arg(long)]
    pub dataset: DatasetRef,
    #[arg(long, value_enum)]
    pub modality: Modality,
    /// Text encoder folder (BERT-family: model.safetensors, tokenizer.json, config.json);
    /// default: all-MiniLM-L6-v2 fetched by `just data`.
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    /// Precomputed [N, d] features (.npy or .safetensors) for --modality image.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Texts per encoder forward pass.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Rebuild even if the cache is valid.
    #[arg(long)]
    pub force: bool,
}

/// Runs a `kdsr features` subcommand.
pub fn run(cmd: FeaturesCommand, paths: &DataPaths) -> Result<()> {
    match cmd {
        FeaturesCommand::Build(a) => build(a, paths),
    }
}

fn build(a: FeaturesArgs, paths: &DataPaths) -> Result<()> {
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
