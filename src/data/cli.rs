//! `kdsr data`: dataset commands.

use crate::data::stats::{check_against_paper, render_markdown, PaperCheck, Stats};
use crate::data::{DataPaths, Dataset, DatasetId, DatasetRef};
use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum DataCommand {
    /// Print the paper's Table 1 statistics computed from the data.
    Stats {
        /// Datasets (default: the paper's five).
        #[arg(long, value_delimiter = ',')]
        dataset: Vec<DatasetRef>,
    },
}

/// Runs a `kdsr data` subcommand.
pub fn run(cmd: DataCommand, paths: &DataPaths) -> Result<()> {
    match cmd {
        DataCommand::Stats { dataset } => stats(dataset, paths),
    }
}

fn stats(datasets: Vec<DatasetRef>, paths: &DataPaths) -> Result<()> {
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
