//! The small files of a run's record, each one type that the writer (training, sweep) and the
//! readers (collect, report, gate) share:
//! - `run.toml`: the resolved [`RunConfig`] ([`write_run_toml`]),
//! - `metrics.json`: [`RunRecord`], written last; its presence marks a finished run; sealed
//!   with checksums of itself and of the files above ([`super::seal`]),
//! - `failed.json`: [`FailedRecord`], for a run that failed (the next sweep retries it).

use super::seal::{self, Seal, Sealed};
use crate::config::RunConfig;
use crate::eval::{Metric, Metrics};
use crate::io::{write_atomic, CodeVersion};
use anyhow::Result;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What a record says of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    Finished,
    Failed,
}

/// `metrics.json`: the final record of a finished run. Test metrics are those of the selected
/// epoch ([`RunRecord::selection`] says which); percentages throughout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub status: RecordStatus,
    pub dataset: String,
    pub model: String,
    /// `sasrec`, `sasrec+tuned`, `sasrec+cdl`, ...
    pub variant: String,
    /// The evaluation protocol's name (also in `config.protocol`).
    pub protocol: String,
    /// How the reported epoch was chosen, in words.
    pub selection: String,
    pub seed: u64,
    pub config: RunConfig,
    pub code_version: CodeVersion,
    pub threads: usize,
    pub finished_at_unix: u64,
    pub n_users: usize,
    pub n_items: usize,
    pub n_train_targets: usize,
    pub n_valid: usize,
    pub n_test: usize,
    /// What the setup built for each modality (feature source and cache, autoencoder and
    /// codebook fit); free-form, for provenance only; null for a run without modality tables.
    pub modality: serde_json::Value,
    pub epochs_run: usize,
    pub best_epoch: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub seconds_per_epoch: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub eval_seconds_per_epoch: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub total_seconds: f64,
    /// Peak resident memory of the process that trained the run, in MiB (the largest
    /// `rss_peak_mib` of epochs.csv; a sweep of several parallel runs shares one process).
    /// Absent in older records and where the kernel does not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
    pub valid: Metrics,
    pub test: Metrics,
    /// The released code's model selection, recorded for the protocol-bias comparison and never
    /// reported as our result: each metric's best test value over all epochs (each from its own
    /// epoch). Absent unless the test set was evaluated after every epoch.
    #[serde(rename = "test_best_per_metric_released_code_selection")]
    pub released_selection: Option<BTreeMap<Metric, EpochValue>>,
    /// The earlier processes of a run resumed after a kill or a pause, oldest first (the last
    /// process is `code_version`, `threads`); absent for a run trained in one go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed_from: Vec<Segment>,
    /// Checksums of this record and of `run.toml` and `epochs.csv`, set when it is written;
    /// absent in records written before 2026-12-07 (`kdsr sweep seal` adds it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<Seal>,
}

/// One process's share of a resumed run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The first and last epoch it trained.
    pub epochs: (usize, usize),
    pub code_version: CodeVersion,
    pub threads: usize,
}

/// One metric's value at one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochValue {
    pub value: f64,
    pub epoch: usize,
}

impl RunRecord {
    /// Reads `<dir>/metrics.json`; errors name the file and the field.
    ///
    /// The record must be what its folder says it is ([`RunRecord::verify`]): a record copied
    /// from another run or edited is bad input naming the file, never a finished run.
    /// A sealed record must also match its checksums ([`seal::check`]).
    pub fn read(dir: &Path) -> Result<Self> {
        Ok(Self::read_checked(dir)?.0)
    }

    /// [`RunRecord::read`], with the record's JSON as read and what its seal check found.
    fn read_checked(dir: &Path) -> Result<(Self, serde_json::Value, Sealed)> {
        let path = dir.join("metrics.json");
        let value: serde_json::Value = read_json(&path, "a run record")?;
        let rec: Self = serde_json::from_value(value.clone())
            .map_err(|e| crate::error::bad_input(format!("{}: not a run record: {e}", path.display())))?;
        rec.verify(dir)?;
        let sealed = seal::check(&value, dir)?;
        Ok((rec, value, sealed))
    }

    /// Seals a record written before records carried checksums (`kdsr sweep seal`): the record
    /// must verify against its folder; its JSON is kept as it is (fields this code does not
    /// know included) and gains `seal`. Returns false for a record already sealed.
    pub fn seal_legacy(dir: &Path) -> Result<bool> {
        let (rec, mut value, sealed) = Self::read_checked(dir)?;
        if sealed == Sealed::Verified {
            return Ok(false);
        }
        seal::seal(&mut value, dir)?;
        write_atomic(&dir.join("metrics.json"), serde_json::to_string_pretty(&value)?.as_bytes())?;
        let back = Self::read(dir)?;
        anyhow::ensure!(
            back.test == rec.test && back.valid == rec.valid && back.released_selection == rec.released_selection,
            "{}: sealing changed the record's metrics",
            dir.display()
        );
        Ok(true)
    }

    /// Checks the record against its folder: the folder is named by the record's run id (when
    /// it is a run folder, `<dataset>-<model>-<hash>`), the record's seed is its config's, and
    /// `run.toml`, where present, hashes to the run id and holds the record's config.
    pub fn verify(&self, dir: &Path) -> Result<()> {
        let path = dir.join("metrics.json");
        let bad = |msg: String| Err(crate::error::bad_input(format!("{}: {msg}", path.display())));
        let folder = dir.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
        let looks_like_run =
            folder.rsplit_once('-').is_some_and(|(_, h)| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if looks_like_run && folder != self.run_id {
            return bad(format!("the record of run {}, not of its folder's run {folder}", self.run_id));
        }
        if self.seed != self.config.seed {
            return bad(format!("seed {} but its config's seed is {}", self.seed, self.config.seed));
        }
        let toml_path = dir.join("run.toml");
        if let Ok(text) = std::fs::read_to_string(&toml_path) {
            let hash = blake3::hash(text.as_bytes()).to_hex();
            if !self.run_id.ends_with(&format!("-{}", &hash[..16])) {
                return Err(crate::error::bad_input(format!(
                    "{}: does not hash to run id {} (edited after the run?)",
                    toml_path.display(),
                    self.run_id
                )));
            }
            match toml::from_str::<RunConfig>(&text) {
                Ok(cfg) if cfg == self.config => {}
                Ok(_) => return bad(format!("its config is not the one in {}", toml_path.display())),
                Err(e) => return Err(crate::error::bad_input(format!("{}: {e}", toml_path.display()))),
            }
        }
        Ok(())
    }

    /// Writes `<dir>/metrics.json` (atomically: after this the run counts as finished), sealed
    /// with the `run.toml` and `epochs.csv` that `dir` holds now.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut value = serde_json::to_value(Self { seal: None, ..self.clone() })?;
        let rec = Self { seal: Some(seal::seal(&mut value, dir)?), ..self.clone() };
        write_atomic(&dir.join("metrics.json"), serde_json::to_string_pretty(&rec)?.as_bytes())
    }
}

/// `failed.json`: why a run failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRecord {
    pub run_id: String,
    pub status: RecordStatus,
    pub reason: String,
    #[serde(default)]
    pub failed_at_unix: u64,
}

impl FailedRecord {
    pub fn read(dir: &Path) -> Result<Self> {
        read_json(&dir.join("failed.json"), "a failure record")
    }
}

/// Writes `<dir>/failed.json` for `run_id`.
pub fn write_failed(dir: &Path, run_id: &str, reason: &str) -> Result<()> {
    let rec = FailedRecord {
        run_id: run_id.to_string(),
        status: RecordStatus::Failed,
        reason: reason.to_string(),
        failed_at_unix: unix_now(),
    };
    write_atomic(&dir.join("failed.json"), serde_json::to_string_pretty(&rec)?.as_bytes())
}

/// Writes `<dir>/run.toml`.
pub fn write_run_toml(dir: &Path, cfg: &RunConfig) -> Result<()> {
    write_atomic(&dir.join("run.toml"), cfg.to_toml().as_bytes())
}

/// Reads a JSON record; errors name the file and what it should have been.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::error::bad_input(format!("{}: cannot read {what}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| crate::error::bad_input(format!("{}: not {what}: {e}", path.display())))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// JSON has no NaN (serde_json writes it as null): read null back as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DatasetRef;
    use crate::model::ModelKind;

    fn example() -> RunRecord {
        let cfg = RunConfig::new(DatasetRef::Named(crate::data::DatasetId::Beauty), ModelKind::Sasrec, 7);
        let test = Metrics::from_ranks([1, 4, 9, 30]);
        RunRecord {
            run_id: cfg.run_id(),
            status: RecordStatus::Finished,
            dataset: "beauty".into(),
            model: "sasrec".into(),
            variant: cfg.variant_name(),
            protocol: "paper".into(),
            selection: "test metrics at the best validation ndcg@20 epoch".into(),
            seed: 7,
            config: cfg,
            code_version: CodeVersion::current(),
            threads: 2,
            finished_at_unix: 1,
            n_users: 10,
            n_items: 20,
            n_train_targets: 30,
            n_valid: 10,
            n_test: 4,
            modality: serde_json::Value::Null,
            epochs_run: 3,
            best_epoch: 2,
            seconds_per_epoch: f64::NAN,
            eval_seconds_per_epoch: 0.5,
            peak_rss_mib: Some(812.5),
            total_seconds: 4.0,
            valid: Metrics::from_ranks([2, 3]),
            released_selection: Some(
                Metrics::all().into_iter().map(|m| (m, EpochValue { value: test.get(m) + 1.0, epoch: 3 })).collect(),
            ),
            test,
            resumed_from: vec![Segment {
                epochs: (1, 2),
                code_version: CodeVersion { commit: "abc".into(), dirty: false, crate_version: "0.1.0".into() },
                threads: 2,
            }],
            seal: None,
        }
    }

    #[test]
    fn record_round_trips_through_its_file() {
        let d = tempfile::tempdir().unwrap();
        let rec = example();
        rec.write(d.path()).unwrap();
        let back = RunRecord::read(d.path()).unwrap();
        assert!(back.seconds_per_epoch.is_nan());
        assert!(back.seal.is_some(), "written sealed");
        let same = |r: &RunRecord| RunRecord { seconds_per_epoch: 0.0, seal: None, ..r.clone() };
        assert_eq!(same(&back), same(&rec));
    }

    #[test]
    fn a_record_missing_a_metric_is_refused_naming_it() {
        let d = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(example()).unwrap();
        v["test"].as_object_mut().unwrap().remove("mrr@10");
        std::fs::write(d.path().join("metrics.json"), v.to_string()).unwrap();
        let err = format!("{:#}", RunRecord::read(d.path()).unwrap_err());
        assert!(err.contains("metrics.json") && err.contains("mrr@10"), "{err}");
        assert!(crate::error::is_bad_input(&RunRecord::read(d.path()).unwrap_err()));
    }

    #[test]
    fn a_record_verifies_against_its_folder() {
        let root = tempfile::tempdir().unwrap();
        let rec = example();
        let dir = root.path().join(&rec.run_id);
        std::fs::create_dir(&dir).unwrap();
        rec.write(&dir).unwrap();
        write_run_toml(&dir, &rec.config).unwrap();
        RunRecord::read(&dir).unwrap();
        // Another seed's record in this folder: swapped.
        let mut other = example();
        other.config.seed = 8;
        other.seed = 8;
        other.run_id = other.config.run_id();
        other.write(&dir).unwrap();
        let err = RunRecord::read(&dir).unwrap_err();
        assert!(crate::error::is_bad_input(&err) && err.to_string().contains("metrics.json"), "{err:#}");
        assert!(err.to_string().contains(&other.run_id), "{err:#}");
        // A seed edited in place.
        let mut edited = rec.clone();
        edited.seed = 9;
        edited.write(&dir).unwrap();
        assert!(RunRecord::read(&dir).unwrap_err().to_string().contains("seed 9"));
        // A run.toml edited after the run.
        rec.write(&dir).unwrap();
        let text = rec.config.to_toml().replace("seed = 7", "seed = 70");
        std::fs::write(dir.join("run.toml"), text).unwrap();
        let err = RunRecord::read(&dir).unwrap_err();
        assert!(err.to_string().contains("run.toml") && err.to_string().contains("does not hash"), "{err:#}");
    }

    #[test]
    fn a_legacy_record_is_sealed_once_without_changing_a_metric() {
        let root = tempfile::tempdir().unwrap();
        let rec = example();
        let dir = root.path().join(&rec.run_id);
        std::fs::create_dir(&dir).unwrap();
        write_run_toml(&dir, &rec.config).unwrap();
        std::fs::write(dir.join("epochs.csv"), "epoch,loss\n1,6.5\n").unwrap();
        // As records were written before 2026-12-07: no seal, and a field this code ignores.
        let mut legacy = serde_json::to_value(&rec).unwrap();
        legacy["retired_field"] = serde_json::json!(1);
        std::fs::write(dir.join("metrics.json"), serde_json::to_string_pretty(&legacy).unwrap()).unwrap();
        let before = RunRecord::read(&dir).unwrap();
        assert!(before.seal.is_none());
        assert!(RunRecord::seal_legacy(&dir).unwrap());
        assert!(!RunRecord::seal_legacy(&dir).unwrap(), "sealed once");
        let after = RunRecord::read(&dir).unwrap();
        assert_eq!(after.seal.as_ref().unwrap().files.len(), 2);
        let plain = |r: &RunRecord| RunRecord { seal: None, seconds_per_epoch: 0.0, ..r.clone() };
        assert_eq!(plain(&after), plain(&before));
        let text = std::fs::read_to_string(dir.join("metrics.json")).unwrap();
        assert!(text.contains("retired_field"), "fields it does not know are kept");
        // Sealed: the edits a folder check cannot see are refused.
        std::fs::write(dir.join("metrics.json"), text.replace("\"best_epoch\": 2", "\"best_epoch\": 3")).unwrap();
        let err = RunRecord::read(&dir).unwrap_err();
        assert!(crate::error::is_bad_input(&err) && err.to_string().contains("own checksum"), "{err:#}");
        std::fs::write(dir.join("metrics.json"), &text).unwrap();
        std::fs::write(dir.join("epochs.csv"), "epoch,loss\n1,6.4\n").unwrap();
        assert!(RunRecord::read(&dir).unwrap_err().to_string().contains("epochs.csv"));
    }

    #[test]
    fn a_truncated_record_is_bad_input_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        example().write(d.path()).unwrap();
        let path = d.path().join("metrics.json");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let err = RunRecord::read(d.path()).unwrap_err();
        assert!(crate::error::is_bad_input(&err) && err.to_string().contains("metrics.json"), "{err:#}");
        std::fs::write(d.path().join("failed.json"), "{").unwrap();
        let err = FailedRecord::read(d.path()).unwrap_err();
        assert!(crate::error::is_bad_input(&err) && err.to_string().contains("failed.json"), "{err:#}");
    }

    #[test]
    fn failure_record_round_trips() {
        let d = tempfile::tempdir().unwrap();
        write_failed(d.path(), "r1", "out of memory").unwrap();
        let f = FailedRecord::read(d.path()).unwrap();
        assert_eq!((f.run_id.as_str(), f.status, f.reason.as_str()), ("r1", RecordStatus::Failed, "out of memory"));
    }
}
