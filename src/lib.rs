//! kdsr: an experiment harness reproducing "Lightweight Modality Adaptation to Sequential
//! Recommendation via Correlation Supervision" (KDSR, ECIR 2024).
//!
//! Pipeline stages, one module each: [`data`] (sources, k-core, splits, batches) ->
//! [`modality`] (item feature matrices: text encoder, attributes, files) -> [`distill`]
//! (teacher, student losses) -> [`model`] (backbones, modality fusion) -> [`train`] (loss,
//! early stopping) -> [`eval`] (full ranking, metrics) -> [`results`] (a run's record files).
//! [`config`] holds a run's resolved settings; [`ops`] holds fused CPU kernels with their own
//! backward passes, [`optim`] the optimiser, [`io`] atomic writes and code versions. Above a
//! single run: [`grid`] expands declarative experiment grids into RunConfigs; [`sweep`] runs
//! them (resumable, parallel, sharded); [`analysis`] collects and aggregates their records;
//! [`report`] renders them and [`gate`] judges them. A stage imports only stages before it
//! (tests/architecture.rs checks that the module graph has no cycle).

pub mod analysis;
pub mod bench;
pub mod config;
pub mod data;
pub mod device;
pub mod distill;
pub mod error;
pub mod eval;
pub mod gate;
pub mod grid;
pub mod io;
pub mod modality;
pub mod model;
pub mod ops;
pub mod optim;
pub mod report;
pub mod results;
pub mod sweep;
pub mod train;
