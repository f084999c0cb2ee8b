//! The resolved configuration of one run. It is written to `run.toml` with every result, and
//! its canonical TOML text hashes to the run id.

use crate::data::batch::{BatchUnit, SampleMode};
use crate::data::split::Protocol;
use crate::data::DatasetRef;
use crate::distill::config::ModalityConfig;
use crate::error::bad_input;
use crate::eval::Metric;
pub use crate::model::ModelSpec;
use crate::model::{ModalityUse, ModelKind};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Optimisation, early stopping and evaluation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Adam learning rate.
    pub lr: f64,
    /// L2 penalty added to the gradient (PyTorch `Adam(weight_decay=...)`).
    pub weight_decay: f64,
    /// Batch size per optimiser step, in `batch_unit`s.
    pub batch_size: usize,
    /// What `batch_size` counts: training targets (default, the paper's and RecBole's unit) or
    /// windows (`sequences`: whole sequences in `sequence` mode). A run TOML without the key
    /// means `sequences`, the only unit before the key existed, so older run files keep their
    /// meaning.
    #[serde(default = "BatchUnit::legacy")]
    pub batch_unit: BatchUnit,
    /// Pack several sequences into one row (block-diagonal causal attention, recurrence reset
    /// at each sequence start) instead of one padded window per row; same samples, no work on
    /// padding. Written to the run TOML only when off.
    #[serde(skip_serializing_if = "is_true")]
    pub pack: bool,
    pub eval_batch_size: usize,
    pub max_epochs: usize,
    /// Stop after this many epochs without a better validation `valid_metric` (default 6, the
    /// released code's patience).
    pub patience: usize,
    pub valid_metric: Metric,
    pub sample_mode: SampleMode,
    /// Cloze samples only: the probability that a cell other than the window's last becomes a
    /// masked-item target (the MMSRec reference's `ce_mask_ratio`). Written to the run TOML
    /// only when it differs from the default 0.2.
    #[serde(skip_serializing_if = "is_default_mask_ratio")]
    pub mask_ratio: f64,
    /// Longest history fed to the model.
    pub max_len: usize,
    /// Remove history items from the ranking (off in the paper).
    pub mask_history: bool,
    /// Evaluate the test set after every epoch (needed for the released code's per-metric
    /// best-test selection, recorded in metrics.json) instead of once, with the selected
    /// epoch's weights, after training. Reported metrics are the same either way. Written only
    /// when on.
    #[serde(skip_serializing_if = "is_false")]
    pub test_every_epoch: bool,
    /// Which epoch's test metrics the run reports (default: the best validation epoch). Left out
    /// of the run TOML at its default, so run ids from before the option existed still match.
    #[serde(skip_serializing_if = "Selection::is_best_valid")]
    pub selection: Selection,
}

/// Model selection: which trained epoch a run's reported metrics and checkpoint come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Selection {
    /// The epoch with the best validation `valid_metric` (the paper's protocol).
    #[default]
    BestValid,
    /// The last epoch trained, with no selection. Meant for fixed-length regression checks
    /// (the CI gate): on a small validation set, near-equal early epochs are picked by noise.
    Last,
}

fn is_true(v: &bool) -> bool {
    *v
}

fn is_false(v: &bool) -> bool {
    !*v
}

const DEFAULT_MASK_RATIO: f64 = 0.2;

fn is_default_mask_ratio(v: &f64) -> bool {
    *v == DEFAULT_MASK_RATIO
}

impl Selection {
    pub fn is_best_valid(&self) -> bool {
        *self == Self::BestValid
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            weight_decay: 0.0,
            batch_size: 256,
            batch_unit: BatchUnit::Targets,
            pack: true,
            test_every_epoch: false,
            eval_batch_size: 256,
            max_epochs: 200,
            patience: 6,
            valid_metric: "ndcg@20".parse().expect("valid metric name"),
            sample_mode: SampleMode::Sequence,
            mask_ratio: DEFAULT_MASK_RATIO,
            max_len: 50,
            mask_history: false,
            selection: Selection::BestValid,
        }
    }
}

/// A named set of defaults that a grid (`preset = "paper"`) or `kdsr train --preset` starts
/// from, before its own settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Preset {
    /// RecBole's defaults for each model (SASRec hidden 64, GRU4Rec embedding 64) and a batch
    /// of 256 training targets, as RecBole counts a batch of 256 prefixes.
    #[default]
    Recbole,
    /// The paper's settings for every model (§4.1): 128-d embeddings and a batch of 512 training
    /// targets (the paper does not state the unit; targets are RecBole's and the released
    /// code's unit, one prefix sample per target).
    Paper,
}

impl Preset {
    /// Applies the preset's settings to `cfg`.
    pub fn apply(self, cfg: &mut RunConfig) {
        if self == Self::Recbole {
            return;
        }
        cfg.train.batch_size = 512;
        // Cloze samples are counted in sequences (their targets are drawn per batch).
        if cfg.train.sample_mode != SampleMode::Cloze {
            cfg.train.batch_unit = BatchUnit::Targets;
        }
        cfg.model.set_width(128);
    }
}

/// Everything that determines a run's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub dataset: DatasetRef,
    /// Keep only the first N users (a slice for quick runs and tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_users: Option<usize>,
    #[serde(default)]
    pub protocol: Protocol,
    pub seed: u64,
    pub model: ModelSpec,
    #[serde(default)]
    pub train: TrainConfig,
    /// Modality embeddings and KDSR (absent: a pure ID model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modality: Option<ModalityConfig>,
}

impl RunConfig {
    /// A run of `model` at its defaults (see [`RunConfig::set_model`]).
    pub fn new(dataset: DatasetRef, model: ModelKind, seed: u64) -> Self {
        let mut cfg = Self {
            dataset,
            max_users: None,
            protocol: Protocol::default(),
            seed,
            model: ModelSpec::Pop,
            train: TrainConfig::default(),
            modality: None,
        };
        cfg.set_model(model);
        cfg
    }

    /// Switches to `model` at its default settings, with what the model needs: modality
    /// settings (the dataset's defaults, or the run's, in the model's mode) for a model that
    /// requires them, prefix samples in padded rows for a non-causal model, masked-item (cloze)
    /// samples counted in sequences for a model trained that way (MMSRec). Other settings are
    /// kept.
    pub fn set_model(&mut self, model: ModelKind) {
        self.model = ModelSpec::default_for(model);
        let Some(traits) = self.model.traits() else { return };
        if let Some(mode) = traits.modality.default_mode() {
            let mut mc = self.modality.clone().unwrap_or_else(|| self.default_modality());
            mc.mode = mode;
            self.modality = Some(mc);
        }
        if !traits.causal {
            self.train.sample_mode = SampleMode::Prefix;
            self.train.pack = false;
        }
        if traits.cloze {
            self.train.sample_mode = SampleMode::Cloze;
            self.train.batch_unit = BatchUnit::Sequences;
        }
    }

    /// After a model setting that changed the model's traits (`model.variant = "cloze"` for
    /// nova, `model.side = "categorical"` for difsr): the sample settings and modality mode
    /// [`RunConfig::set_model`] gives a model with the new traits, so one `--set` switches the
    /// variant. A modality mode the run chose itself (not the old default) stays.
    fn follow_traits(&mut self, before: Option<crate::model::Traits>) {
        let (Some(before), Some(after)) = (before, self.model.traits()) else { return };
        if let (Some(mc), Some(old), Some(new)) =
            (self.modality.as_mut(), before.modality.default_mode(), after.modality.default_mode())
        {
            if mc.mode == old {
                mc.mode = new;
            }
        }
        if (before.causal, before.cloze) == (after.causal, after.cloze) {
            return;
        }
        let d = TrainConfig::default();
        let t = &mut self.train;
        (t.sample_mode, t.batch_unit, t.pack) = if after.cloze {
            (SampleMode::Cloze, BatchUnit::Sequences, false)
        } else if !after.causal {
            (SampleMode::Prefix, d.batch_unit, false)
        } else {
            (d.sample_mode, d.batch_unit, d.pack)
        };
    }

    /// The modality settings the paper uses on this dataset: text and attributes, (α, β) =
    /// (1, 0.5) on Amazon and (0.5, 0.1) on ML-1M.
    pub fn default_modality(&self) -> ModalityConfig {
        let mut mc = ModalityConfig::default();
        if self.dataset == DatasetRef::Named(crate::data::DatasetId::Ml1m) {
            mc.student.alpha = 0.5;
            mc.student.beta = 0.1;
        }
        mc
    }

    /// A short name of the model variant: `sasrec`, `sasrec+frozen`, `sasrec+tuned`,
    /// `sasrec+cdl`.
    pub fn variant_name(&self) -> String {
        let base = self.model.variant();
        let implied = self.model.traits().and_then(|t| t.modality.default_mode());
        match &self.modality {
            None => base.to_string(),
            Some(m) if Some(m.mode) == implied => base.to_string(),
            Some(m) => format!(
                "{base}+{}",
                serde_json::to_value(m.mode).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
            ),
        }
    }

    /// Canonical TOML text (field order fixed by the struct definitions).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("run config serialises")
    }

    /// Stable id: the first 16 hex digits of BLAKE3 over the canonical TOML.
    pub fn run_id(&self) -> String {
        let hash = blake3::hash(self.to_toml().as_bytes()).to_hex();
        format!("{}-{}-{}", self.dataset_slug(), self.model.kind().name(), &hash[..16])
    }

    fn dataset_slug(&self) -> String {
        let s = self.dataset.to_string();
        let base = s.rsplit(['/', ':']).next().unwrap_or(&s);
        base.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).take(24).collect()
    }

    /// Reads a run TOML file; unknown keys and wrong types are errors naming the file and key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).map_err(|e| bad_input(format!("{}: cannot read: {e}", path.display())))?;
        let cfg: Self = toml::from_str(&text).map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
        cfg.validate().map_err(|e| bad_input(format!("{}: {e}", path.display())))?;
        Ok(cfg)
    }

    /// Checks values that types alone cannot.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let t = &self.train;
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(format!("train.lr must be a positive number, got {}", t.lr));
        }
        if t.weight_decay < 0.0 {
            return Err(format!("train.weight_decay must be >= 0, got {}", t.weight_decay));
        }
        for (k, v) in [
            ("batch_size", t.batch_size),
            ("eval_batch_size", t.eval_batch_size),
            ("max_len", t.max_len),
            ("max_epochs", t.max_epochs),
            ("patience", t.patience),
        ] {
            if v == 0 {
                return Err(format!("train.{k} must be at least 1"));
            }
        }
        if t.max_len < 2 {
            return Err("train.max_len must be at least 2".into());
        }
        self.model.check()?;
        let name = self.model.kind().name();
        if let Some(traits) = self.model.traits() {
            match (traits.modality, &self.modality) {
                (
                    ModalityUse::Required(_) | ModalityUse::Frozen | ModalityUse::Codes | ModalityUse::Attributes,
                    None,
                ) => {
                    return Err(format!(
                        "model {name} needs modality embeddings: add [modality] (e.g. modality.modalities = [\"text\", \"attributes\"])"
                    ));
                }
                (ModalityUse::Never, Some(_)) => {
                    return Err(format!("model {name} takes no modality embeddings: remove [modality]"));
                }
                (ModalityUse::Frozen, Some(mc)) if mc.mode != crate::model::ModalityMode::Frozen => {
                    return Err(format!(
                        "model {name} uses frozen modality features (modality.mode = \"frozen\"); for tuned tables or CDL use sasrec with modality.mode"
                    ));
                }
                (ModalityUse::Codes, Some(mc)) if mc.mode != crate::model::ModalityMode::Frozen => {
                    return Err(format!(
                        "model {name} (with these settings) reads only the autoencoder codes, not trainable modality tables: set modality.mode = \"frozen\"{}",
                        if name == "mmsr" { ", or model.modality_nodes = \"items\" for tuned tables or CDL (KDSR on MMSR)" } else { "" }
                    ));
                }
                (ModalityUse::Attributes, Some(mc)) if mc.mode != crate::model::ModalityMode::Frozen => {
                    return Err(format!(
                        "model {name} (with these settings) reads only the attribute ids, not trainable modality tables: set modality.mode = \"frozen\""
                    ));
                }
                (ModalityUse::Codes, Some(mc)) => {
                    let width = self.model.width().unwrap_or(0);
                    if traits.clusters.is_some() && mc.autoencoder.hidden != width {
                        return Err(format!(
                            "model {name} initialises nodes from the autoencoder codes: modality.autoencoder.hidden ({}) must equal the model width ({width})",
                            mc.autoencoder.hidden
                        ));
                    }
                }
                _ => {}
            }
            let has_attributes =
                self.modality.as_ref().is_some_and(|mc| mc.modalities.contains(&crate::modality::Modality::Attributes));
            if traits.attribute_labels && !has_attributes {
                return Err(format!(
                    "model {name} (with these settings) reads the item attributes (model.attribute_loss, or categorical side information): it needs the attributes modality in modality.modalities"
                ));
            }
            if t.sample_mode == SampleMode::Cloze {
                if !traits.cloze {
                    return Err(format!(
                        "model {name} (with these settings) has no mask token: train.sample_mode = \"cloze\" (masked-item training) is for mmsrec and for nova with model.variant = \"cloze\""
                    ));
                }
                if t.batch_unit != BatchUnit::Sequences || t.pack {
                    return Err(
                        "train.sample_mode = \"cloze\" draws its targets per batch: it needs train.batch_unit = \"sequences\" and train.pack = false".into()
                    );
                }
                if !(t.mask_ratio > 0.0 && t.mask_ratio <= 1.0) {
                    return Err(format!("train.mask_ratio must be in (0, 1], got {}", t.mask_ratio));
                }
            } else if !is_default_mask_ratio(&t.mask_ratio) {
                return Err(format!(
                    "train.mask_ratio ({}) only means something with train.sample_mode = \"cloze\" (masked-item training, mmsrec)",
                    t.mask_ratio
                ));
            } else if !traits.causal && (t.sample_mode != SampleMode::Prefix || t.pack) {
                let modes = if traits.cloze { "\"prefix\" or \"cloze\"" } else { "\"prefix\"" };
                return Err(format!(
                    "model {name} (with these settings) is not causal: it needs train.sample_mode = {modes} and train.pack = false"
                ));
            }
        }
        if let Some(mc) = &self.modality {
            if matches!(self.model, ModelSpec::Pop) {
                return Err("modality settings need a neural backbone, not pop".into());
            }
            if mc.modalities.is_empty() {
                return Err("modality.modalities is empty: list at least one of text, attributes, image".into());
            }
            if mc.teacher.subvectors == 0 || mc.autoencoder.hidden % mc.teacher.subvectors != 0 {
                return Err(format!(
                    "modality.autoencoder.hidden ({}) must be divisible by modality.teacher.subvectors ({})",
                    mc.autoencoder.hidden, mc.teacher.subvectors
                ));
            }
            if mc.teacher.codes < 2 {
                return Err("modality.teacher.codes must be at least 2".into());
            }
            if mc.student.tau.is_nan() || mc.student.tau <= 0.0 {
                return Err(format!("modality.student.tau must be positive, got {}", mc.student.tau));
            }
            if mc.at.gamma.is_nan() || mc.at.gamma < 1.0 {
                return Err(format!("modality.at.gamma must be >= 1, got {}", mc.at.gamma));
            }
            if mc.drift.id_reference == Some(crate::distill::config::IdReference::Twin) {
                let mut twin = self.clone();
                twin.modality = None;
                twin.validate().map_err(|e| {
                    format!(
                        "modality.drift.id_reference = \"twin\" trains this run without [modality] as the ID reference, which is not a valid run: {e}"
                    )
                })?;
            }
        }
        if self.max_users == Some(0) {
            return Err("max_users must be at least 1".into());
        }
        Ok(())
    }
}

/// Sets a dotted path, creating tables; false where a prefix is not a table.
pub fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) -> bool {
    let mut parts = key.split('.').peekable();
    let mut t = table;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            t.insert(part.to_string(), value);
            return true;
        }
        let next = t.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match next {
            toml::Value::Table(inner) => t = inner,
            _ => return false,
        }
    }
    false
}

/// The value at a dotted path, if any.
pub fn get_path<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    let (first, rest) = match key.split_once('.') {
        Some((f, r)) => (f, Some(r)),
        None => (key, None),
    };
    let v = table.get(first)?;
    match rest {
        None => Some(v),
        Some(r) => get_path(v.as_table()?, r),
    }
}

impl RunConfig {
    /// A copy with one setting changed by its dotted key, as a grid file writes it
    /// (`modality.student.holistic_form`); `value` is TOML (`3e-3`, `true`, `"norm"`) or else a
    /// bare string (`norm`). The message names the key when it is unknown or the value wrong.
    pub fn with_setting(&self, key: &str, value: &str) -> std::result::Result<Self, String> {
        let value = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        if self.modality.is_none() && !turns_modality_on(key) && key.starts_with("modality.") {
            return Err(format!(
                "{key}: this run has no modality embeddings (an ID-only run), so the setting means nothing; \
                 turn them on first (--cdl, --mode, or modality.mode) instead of letting it switch on CDL"
            ));
        }
        let mut table = toml::Table::try_from(self).map_err(|e| e.to_string())?;
        if !set_path(&mut table, key, value) {
            return Err(format!("{key}: not a setting (a part of the key is not a table)"));
        }
        let mut cfg: Self = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| format!("{key}: {}", e.message().trim_end()))?;
        if key.starts_with("model.") {
            cfg.follow_traits(self.model.traits());
        }
        cfg.validate().map_err(|e| format!("{key}: {e}"))?;
        Ok(cfg)
    }
}

impl RunConfig {
    /// Whether the setting `key` means something in this run: `train.mask_ratio` only with
    /// cloze samples, a `modality.*` setting only with modality embeddings; every other key
    /// that the config has, yes.
    pub fn applies(&self, key: &str) -> bool {
        match key {
            "train.mask_ratio" => self.train.sample_mode == SampleMode::Cloze,
            k if k.starts_with("modality.") => self.modality.is_some(),
            _ => true,
        }
    }
}

/// True for the settings that choose whether and how a run uses modality embeddings
/// (`modality.mode`, `modality.modalities`, or the whole `modality` table); other `modality.*`
/// settings only tune a run that already has them.
pub fn turns_modality_on(key: &str) -> bool {
    matches!(key, "modality" | "modality.mode" | "modality.modalities")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DatasetId;

    #[test]
    fn toml_round_trip_and_stable_id() {
        let cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 2023);
        let text = cfg.to_toml();
        let back: RunConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(back.run_id(), cfg.run_id());
        assert!(cfg.run_id().starts_with("beauty-sasrec-"));
        let mut other = cfg.clone();
        other.seed = 2024;
        assert_ne!(other.run_id(), cfg.run_id());
    }

    #[test]
    fn selection_is_left_out_at_its_default() {
        let cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 2023);
        assert!(!cfg.to_toml().contains("selection"), "{}", cfg.to_toml());
        let mut last = cfg.clone();
        last.train.selection = Selection::Last;
        assert!(last.to_toml().contains("selection = \"last\""), "{}", last.to_toml());
        assert_ne!(last.run_id(), cfg.run_id());
        let back: RunConfig = toml::from_str(&last.to_toml()).unwrap();
        assert_eq!(back.train.selection, Selection::Last);
    }

    #[test]
    fn settings_by_dotted_key() {
        let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 2023);
        cfg.modality = Some(cfg.default_modality());
        let c = cfg.with_setting("modality.student.holistic_form", "norm").unwrap();
        assert_eq!(c.modality.unwrap().student.holistic_form, crate::distill::student::HolisticForm::Norm);
        let c = cfg.with_setting("modality.student.weights.text.holistic", "4").unwrap();
        assert_eq!(c.modality.unwrap().student.weights_of("text"), (4.0, 0.5));
        assert_eq!(cfg.with_setting("train.lr", "3e-3").unwrap().train.lr, 3e-3);
        assert!(cfg.with_setting("train.lrr", "1").unwrap_err().contains("train.lrr"));
        assert!(cfg.with_setting("train.lr", "fast").unwrap_err().contains("train.lr"));
        assert!(cfg.with_setting("model.embedding", "8").unwrap_err().contains("unknown field"));
        assert!(cfg.with_setting("train.lr", "-1").unwrap_err().contains("positive"));
        let mut paper = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Gru4rec, 2023);
        Preset::Paper.apply(&mut paper);
        assert_eq!((paper.train.batch_size, paper.train.batch_unit), (512, BatchUnit::Targets));
        assert!(matches!(paper.model, ModelSpec::Gru4rec(ref c) if c.embedding == 128));
    }

    #[test]
    fn one_setting_switches_nova_to_cloze_training_and_back() {
        let causal = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Nova, 2023);
        assert!(!causal.to_toml().contains("variant"), "the default variant stays out of run files");
        let cloze = causal.with_setting("model.variant", "\"cloze\"").unwrap();
        let t = &cloze.train;
        assert_eq!((t.sample_mode, t.batch_unit, t.pack), (SampleMode::Cloze, BatchUnit::Sequences, false));
        assert!(cloze.to_toml().contains("variant = \"cloze\"") && cloze.run_id() != causal.run_id());
        assert_eq!(cloze.with_setting("model.variant", "\"causal\"").unwrap(), causal);
        // Prefix samples train the cloze variant too; sequence samples do not (not causal).
        assert!(cloze.with_setting("train.sample_mode", "\"prefix\"").is_ok());
        assert!(cloze.with_setting("train.sample_mode", "\"sequence\"").unwrap_err().contains("not causal"));
        assert!(causal.with_setting("train.sample_mode", "\"cloze\"").unwrap_err().contains("model.variant"));
    }

    #[test]
    fn one_setting_switches_difsr_to_categorical_attributes() {
        let codes = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Difsr, 2023);
        assert!(!codes.to_toml().contains("side"), "the default side information stays out of run files");
        let cat = codes.with_setting("model.side", "\"categorical\"").unwrap();
        assert_eq!(cat.modality.as_ref().unwrap().mode, crate::model::ModalityMode::Frozen);
        assert!(cat.to_toml().contains("side = \"categorical\"") && cat.run_id() != codes.run_id());
        assert_eq!(cat.with_setting("model.side", "\"codes\"").unwrap(), codes);
        assert!(cat.with_setting("modality.mode", "\"tuned\"").unwrap_err().contains("attribute ids"));
        let text_only = cat.with_setting("modality.modalities", "[\"text\"]").unwrap_err();
        assert!(text_only.contains("attributes modality"), "{text_only}");
    }

    #[test]
    fn mmsrec_trains_on_masked_items_counted_in_sequences() {
        let cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Mmsrec, 2023);
        let t = &cfg.train;
        assert_eq!(
            (t.sample_mode, t.batch_unit, t.pack, t.mask_ratio),
            (SampleMode::Cloze, BatchUnit::Sequences, false, 0.2)
        );
        assert_eq!(cfg.validate(), Ok(()));
        // The default ratio is left out of the run file (run ids of other models stay as they were).
        assert!(!cfg.to_toml().contains("mask_ratio") && cfg.to_toml().contains("sample_mode = \"cloze\""));
        let c = cfg.with_setting("train.mask_ratio", "0.3").unwrap();
        assert!(c.to_toml().contains("mask_ratio = 0.3") && c.run_id() != cfg.run_id());
        assert!(cfg.with_setting("train.mask_ratio", "0").unwrap_err().contains("train.mask_ratio"));
        assert!(cfg
            .with_setting("train.batch_unit", "targets")
            .unwrap_err()
            .contains("train.batch_unit = \"sequences\""));
        // Prefix samples remain available; sequence samples are not (not causal).
        assert_eq!(cfg.with_setting("train.sample_mode", "prefix").map(|_| ()), Ok(()));
        assert!(cfg.with_setting("train.sample_mode", "sequence").unwrap_err().contains("\"prefix\" or \"cloze\""));
        // The paper preset keeps the unit.
        let mut paper = cfg.clone();
        Preset::Paper.apply(&mut paper);
        assert_eq!((paper.train.batch_size, paper.train.batch_unit), (512, BatchUnit::Sequences));
        // Other backbones have no mask token.
        let sasrec = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 2023);
        let err = sasrec.with_setting("train.sample_mode", "cloze").unwrap_err();
        assert!(err.contains("train.sample_mode") && err.contains("no mask token"), "{err}");
    }

    #[test]
    fn older_run_files_keep_their_meaning() {
        use crate::distill::autoencoder::Activation;
        let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 2023);
        cfg.modality = Some(cfg.default_modality());
        // New runs: the linear autoencoder and target-counted batches, both written out.
        let text = cfg.to_toml();
        assert!(text.contains("activation = \"linear\"") && text.contains("batch_unit = \"targets\""), "{text}");
        // A run file from before the keys existed: the sigmoid encoder and windows per batch.
        let old = text.replace("activation = \"linear\"\n", "").replace("batch_unit = \"targets\"\n", "");
        let back: RunConfig = toml::from_str(&old).unwrap();
        assert_eq!(back.modality.unwrap().autoencoder.activation, Activation::Sigmoid);
        assert_eq!(back.train.batch_unit, BatchUnit::Sequences);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let text = "dataset = \"beauty\"\nseed = 1\n[model]\nkind = \"sasrec\"\nhiden = 3\n";
        let e = toml::from_str::<RunConfig>(text).unwrap_err().to_string();
        assert!(e.contains("hiden"), "{e}");
        let text = "dataset = \"beauty\"\nseed = 1\n[model]\nkind = \"sasrec\"\n[train]\nlr = \"fast\"\n";
        let e = toml::from_str::<RunConfig>(text).unwrap_err().to_string();
        assert!(e.contains("lr") || e.contains("line 6"), "{e}");
    }
}
