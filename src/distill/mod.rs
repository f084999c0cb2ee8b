//! The "distill" stage: the correlation teacher (autoencoder, holistic scores, dissected codes)
//! and the student's correlation losses, plus the Pearson-drift probe.

pub mod autoencoder;
pub mod cdl;
pub mod config;
pub mod drift;
pub mod quantize;
pub mod scoring;
pub mod student;
pub mod teacher;

pub use quantize::Quantizer;
pub use scoring::Scoring;
pub use student::StudentConfig;
pub use teacher::{Teacher, TeacherConfig};
