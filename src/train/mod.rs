//! The "train" stage: one loop for every backbone (full-softmax cross-entropy, Adam, early
//! stopping on a validation metric, per-epoch evaluation and records).

pub mod cli;
pub mod diagnose;
pub mod fit;
pub mod reference;
pub mod resume;
pub mod setup;
pub mod step;

pub use fit::{train_run, RunOptions, RunOutcome};
