//! `kdsr data`: dataset commands.

use crate::data::split::Protocol;
use crate::data::stats::{check_against_paper, render_context, render_markdown, Context, PaperCheck, Stats};
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
        /// The protocol whose training targets the context table counts.
        #[arg(long, value_enum, default_value_t = Protocol::default())]
        protocol: Protocol,
        /// `train.max_len` for the context table.
        #[arg(long, default_value_t = 50)]
        max_len: usize,
    },
}

/// Runs a `kdsr data` subcommand.
pub fn run(cmd: DataCommand, paths: &DataPaths) -> Result<()> {
    match cmd {
        DataCommand::Stats { dataset, protocol, max_len } => stats(dataset, protocol, max_len, paths),
    }
}

fn stats(datasets: Vec<DatasetRef>, protocol: Protocol, max_len: usize, paths: &DataPaths) -> Result<()> {
    if max_len < 2 {
        return Err(crate::error::bad_input("--max-len: must be at least 2"));
    }
    let datasets = if datasets.is_empty() {
        [DatasetId::Beauty, DatasetId::Clothing, DatasetId::Sports, DatasetId::Toys, DatasetId::Ml1m]
            .map(DatasetRef::Named)
            .to_vec()
    } else {
        datasets
    };
    let mut rows = Vec::new();
    let mut context = Vec::new();
    for d in &datasets {
        let ds = Dataset::load(d, paths)?;
        context.push(Context::of(&ds, protocol, max_len));
        let s = Stats::of(&ds);
        let m = match d {
            DatasetRef::Named(id) => check_against_paper(*id, &s),
            _ => PaperCheck::NotInPaper,
        };
        rows.push((s, m));
    }
    print!("{}", render_markdown(&rows));
    println!(
        "\nTraining context under train.sample_mode = \"sequence\" (the default) at max_len {max_len}: \
         targets that see fewer earlier items than prefix augmentation gives them (min(q, max_len) for \
         the target after q items).\n"
    );
    print!("{}", render_context(&context));
    if rows.iter().any(|(_, m)| m.is_mismatch()) {
        anyhow::bail!("statistics differ from the paper's Table 1");
    }
    Ok(())
}
