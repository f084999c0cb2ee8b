//! The modality and KDSR settings of a run (`[modality]` in run.toml).

use super::autoencoder::AutoencoderConfig;
use super::student::StudentConfig;
use super::teacher::TeacherConfig;
use crate::modality::{FeatureOptions, Modality};
use crate::model::ModalityMode;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Asynchronous training of the modality tables: their learning rate starts at `lr / gamma`
/// and rises linearly to `lr` over the first `epochs` epochs (paper, §3.3):
/// `lr_e = lr/γ + (lr - lr/γ) · min(e - 1, E) / E` for epoch `e = 1, 2, ...`.
/// The released code instead keeps `lr / 4` throughout (`code_faithful`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AtConfig {
    pub enabled: bool,
    pub gamma: f64,
    pub epochs: usize,
}

impl Default for AtConfig {
    /// Start at lr/4, reach lr after 10 epochs (the released config's γ = 2 applied at
    /// epochs 5 and 10; the paper's values were lost in extraction).
    fn default() -> Self {
        Self { enabled: true, gamma: 4.0, epochs: 10 }
    }
}

impl AtConfig {
    /// Learning rate of the modality tables in epoch `epoch` (1-based).
    pub fn lr(&self, base: f64, epoch: usize, code_faithful: bool) -> f64 {
        if !self.enabled {
            return base;
        }
        let start = base / self.gamma;
        if code_faithful || self.epochs == 0 {
            return if code_faithful { start } else { base };
        }
        let frac = (epoch.saturating_sub(1)).min(self.epochs) as f64 / self.epochs as f64;
        start + (base - start) * frac
    }
}

/// The Pearson-drift probe (Figure 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Item pairs in the probe sample (0 disables the probe).
    pub pairs: usize,
    /// The pure-ID model for r(modality, ID) (Figure 1's dashed curves); without it only
    /// r(modality, original) and r(modality, AE codes) are recorded.
    pub id_reference: Option<IdReference>,
}

/// Where the drift probe's pure-ID item embeddings come from. In TOML and on the command
/// line: `"twin"`, or the path of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PathBuf", into = "PathBuf")]
pub enum IdReference {
    /// The run's pure-ID twin: the same configuration and seed without modality tables,
    /// trained once before the run (and then reused) under `<cache>/id-reference/`.
    Twin,
    /// A pure-ID model's `best.safetensors` (with `item_embedding.weight`).
    Checkpoint(PathBuf),
}

impl IdReference {
    /// The keyword that selects [`IdReference::Twin`].
    pub const TWIN: &'static str = "twin";
}

impl From<PathBuf> for IdReference {
    fn from(p: PathBuf) -> Self {
        if p.as_os_str() == Self::TWIN {
            Self::Twin
        } else {
            Self::Checkpoint(p)
        }
    }
}

impl From<IdReference> for PathBuf {
    fn from(r: IdReference) -> Self {
        match r {
            IdReference::Twin => PathBuf::from(IdReference::TWIN),
            IdReference::Checkpoint(p) => p,
        }
    }
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self { pairs: 20_000, id_reference: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModalityConfig {
    pub modalities: Vec<Modality>,
    pub mode: ModalityMode,
    pub features: FeatureOptions,
    pub autoencoder: AutoencoderConfig,
    pub teacher: TeacherConfig,
    pub student: StudentConfig,
    pub at: AtConfig,
    /// Reproduce the released code's deviations (see `docs`/README): norm-of-difference
    /// holistic loss with two projection layers, |e_i - e_j|, self pairs, crossed loss
    /// weights, constant lr/4 for the modality tables.
    pub code_faithful: bool,
    /// Seed of the teacher (autoencoder and codebook), fixed across runs: the teacher is
    /// trained once per dataset and modality, like the paper's offline preprocessing.
    pub teacher_seed: u64,
    pub drift: DriftConfig,
}

impl Default for ModalityConfig {
    fn default() -> Self {
        Self {
            modalities: vec![Modality::Text, Modality::Attributes],
            mode: ModalityMode::Cdl,
            features: FeatureOptions::default(),
            autoencoder: AutoencoderConfig::default(),
            teacher: TeacherConfig::default(),
            student: StudentConfig::default(),
            at: AtConfig::default(),
            code_faithful: false,
            teacher_seed: 2023,
            drift: DriftConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_schedule_values_per_epoch() {
        let at = AtConfig { enabled: true, gamma: 4.0, epochs: 10 };
        let lr = 1e-3;
        assert!((at.lr(lr, 1, false) - 2.5e-4).abs() < 1e-12);
        assert!((at.lr(lr, 6, false) - (2.5e-4 + 7.5e-4 * 0.5)).abs() < 1e-12);
        assert!((at.lr(lr, 11, false) - 1e-3).abs() < 1e-12);
        assert!((at.lr(lr, 40, false) - 1e-3).abs() < 1e-12);
        assert!((at.lr(lr, 30, true) - 2.5e-4).abs() < 1e-12); // released code: constant lr/4
        let off = AtConfig { enabled: false, ..at };
        assert_eq!(off.lr(lr, 1, false), lr);
    }
}
