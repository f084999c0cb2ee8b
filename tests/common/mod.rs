//! Helpers shared by the integration tests: the real data directory and small slices of it.

#![allow(dead_code)]

use kdsr::data::{DataPaths, Dataset, DatasetId, DatasetRef};

pub fn paths() -> DataPaths {
    DataPaths::resolve(None, None)
}

/// The first `n` users of a named dataset from ../shared/data.
pub fn slice(id: DatasetId, n: usize) -> Dataset {
    Dataset::load(&DatasetRef::Named(id), &paths()).expect("shared data present").truncate_users(n)
}

pub fn kdsr_bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_kdsr"))
}
