//! kdsr: an experiment harness reproducing "Lightweight Modality Adaptation to Sequential
//! Recommendation via Correlation Supervision" (KDSR, ECIR 2024).
//!
//! Pipeline stages, one module each: [`data`] (sources, k-core, splits, batches) ->
//! [`modality`] (item feature matrices: text encoder, attributes, files) -> [`model`]
//! (backbones) -> [`train`] (loss, optimiser, early stopping) -> [`eval`] (full ranking,
//! metrics) -> [`results`] (run records). [`config`] holds a run's resolved settings;
//! [`ops`] holds fused CPU kernels with their own backward passes.

pub mod bench;
pub mod config;
pub mod data;
pub mod distill;
pub mod error;
pub mod eval;
pub mod modality;
pub mod model;
pub mod ops;
pub mod results;
pub mod train;
