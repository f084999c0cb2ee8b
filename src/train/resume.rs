//! Epoch-level resume: a run killed (or paused with `kdsr train --stop-after`) between epochs
//! continues where it stopped and writes the same records as an uninterrupted run.
//!
//! After every finished epoch, [`super::fit`] writes `<run>/resume/`:
//! - `epoch-<e>.safetensors`: the live parameters (`param.<name>`), Adam's moments
//!   (`adam_m.<name>`, `adam_v.<name>`) and the selected epoch's weights (`selected.<name>`);
//! - then `state.json`: the epoch counter, Adam's step, the early-stopping state, the word
//!   positions of every random stream (batch shuffle, dropout, CDL pair sampling), the epoch logs,
//!   and which tensor file belongs to it.
//!
//! Both writes are atomic and `state.json` names its tensor file, so a kill between them leaves
//! the previous epoch's pair intact. `state.json` carries BLAKE3 checksums of its tensor file
//! and of itself (its canonical JSON with the checksum left out): a state damaged or edited
//! after it was written is bad input naming the file, never a silent resume (states written
//! before the checksums existed are read without them). The window order is not stored: it is the training windows
//! shuffled once per finished epoch by the seeded shuffle stream, replayed on resume (and checked
//! against the stored word position). Floats travel as their bit patterns, so nothing is rounded.
//! `resume/` is removed once the run's final record is written.

use crate::error::bad_input;
use crate::eval::Metrics;
use crate::input_bail;
use crate::io::{save_tensors_atomic, write_atomic};
use crate::results::record::Segment;
use crate::results::EpochLog;
use anyhow::{Context, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const DIR: &str = "resume";
const STATE: &str = "state.json";

/// Word positions (ChaCha8) of the run's random streams after the saved epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Streams {
    /// As decimal strings (the positions are 68-bit).
    pub shuffle: String,
    pub dropout: String,
    pub cdl: Option<String>,
}

impl Streams {
    pub fn new(shuffle: u128, dropout: u128, cdl: Option<u128>) -> Self {
        Self { shuffle: shuffle.to_string(), dropout: dropout.to_string(), cdl: cdl.map(|c| c.to_string()) }
    }

    fn parse(s: &str, what: &str) -> Result<u128> {
        s.parse().map_err(|e| bad_input(format!("resume state: bad {what} stream position `{s}`: {e}")))
    }

    pub fn shuffle(&self) -> Result<u128> {
        Self::parse(&self.shuffle, "shuffle")
    }

    pub fn dropout(&self) -> Result<u128> {
        Self::parse(&self.dropout, "dropout")
    }

    pub fn cdl(&self) -> Result<Option<u128>> {
        self.cdl.as_deref().map(|c| Self::parse(c, "cdl")).transpose()
    }
}

/// An [`EpochLog`] with its floats as bit patterns (NaN cells survive, nothing is rounded).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedEpoch {
    epoch: usize,
    loss: u64,
    steps: usize,
    train_seconds: u64,
    eval_seconds: u64,
    valid: Metrics,
    test: Option<Metrics>,
    extra: Vec<(String, u64)>,
}

impl From<&EpochLog> for SavedEpoch {
    fn from(e: &EpochLog) -> Self {
        Self {
            epoch: e.epoch,
            loss: e.loss.to_bits(),
            steps: e.steps,
            train_seconds: e.train_seconds.to_bits(),
            eval_seconds: e.eval_seconds.to_bits(),
            valid: e.valid.clone(),
            test: e.test.clone(),
            extra: e.extra.iter().map(|(k, v)| (k.clone(), v.to_bits())).collect(),
        }
    }
}

impl From<SavedEpoch> for EpochLog {
    fn from(e: SavedEpoch) -> Self {
        Self {
            epoch: e.epoch,
            loss: f64::from_bits(e.loss),
            steps: e.steps,
            train_seconds: f64::from_bits(e.train_seconds),
            eval_seconds: f64::from_bits(e.eval_seconds),
            valid: e.valid,
            test: e.test,
            extra: e.extra.into_iter().map(|(k, v)| (k, f64::from_bits(v))).collect(),
        }
    }
}

/// Everything but the tensors, as `state.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateFile {
    run_id: String,
    /// The last finished epoch.
    epoch: usize,
    tensors: String,
    adam_step: i32,
    /// Best validation score so far (bits; -inf before the first epoch).
    best: u64,
    bad_epochs: usize,
    best_epoch: usize,
    /// Validation metrics of the selected epoch.
    valid: Metrics,
    epochs: Vec<SavedEpoch>,
    streams: Streams,
    /// Wall seconds of every earlier process.
    seconds: u64,
    segments: Vec<Segment>,
    /// BLAKE3 of the tensor file's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tensors_blake3: Option<String>,
    /// BLAKE3 of this state's pretty JSON with `checksum` absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checksum: Option<String>,
}

impl StateFile {
    fn digest(&self) -> Result<String> {
        let bare = Self { checksum: None, ..self.clone() };
        Ok(blake3::hash(serde_json::to_string_pretty(&bare)?.as_bytes()).to_hex().to_string())
    }
}

fn file_digest(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| bad_input(format!("{}: cannot read: {e}", path.display())))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// The training loop's state after a finished epoch.
pub struct Snapshot {
    pub epoch: usize,
    pub adam_step: i32,
    pub best: f64,
    pub bad_epochs: usize,
    pub best_epoch: usize,
    pub valid: Metrics,
    pub epochs: Vec<EpochLog>,
    pub streams: Streams,
    /// Wall seconds of the earlier processes.
    pub seconds: f64,
    /// The earlier processes (the one saving included when written).
    pub segments: Vec<Segment>,
    pub params: BTreeMap<String, Tensor>,
    /// Adam's (m, v) per parameter.
    pub moments: BTreeMap<String, (Tensor, Tensor)>,
    pub selected: Option<BTreeMap<String, Tensor>>,
}

pub fn dir(run_dir: &Path) -> PathBuf {
    run_dir.join(DIR)
}

/// Whether `run_dir` holds a resumable state.
pub fn exists(run_dir: &Path) -> bool {
    dir(run_dir).join(STATE).is_file()
}

/// The last finished epoch saved in `run_dir`, if it holds a readable state.
pub fn saved_epoch(run_dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir(run_dir).join(STATE)).ok()?;
    serde_json::from_str::<StateFile>(&text).ok().map(|s| s.epoch)
}

/// Drops the resume state (after the final record, or to start over).
pub fn remove(run_dir: &Path) -> Result<()> {
    let d = dir(run_dir);
    if d.exists() {
        std::fs::remove_dir_all(&d).with_context(|| format!("removing {}", d.display()))?;
    }
    Ok(())
}

impl Snapshot {
    /// Writes the tensors, then `state.json`, then removes older tensor files.
    pub fn write(&self, run_dir: &Path, run_id: &str) -> Result<()> {
        let d = dir(run_dir);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        let name = format!("epoch-{}.safetensors", self.epoch);
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (k, v) in &self.params {
            tensors.push((format!("param.{k}"), v.clone()));
        }
        for (k, (m, v)) in &self.moments {
            tensors.push((format!("adam_m.{k}"), m.clone()));
            tensors.push((format!("adam_v.{k}"), v.clone()));
        }
        for (k, v) in self.selected.iter().flatten() {
            tensors.push((format!("selected.{k}"), v.clone()));
        }
        save_tensors_atomic(&d.join(&name), tensors)?;
        let mut state = StateFile {
            run_id: run_id.to_string(),
            epoch: self.epoch,
            tensors: name.clone(),
            adam_step: self.adam_step,
            best: self.best.to_bits(),
            bad_epochs: self.bad_epochs,
            best_epoch: self.best_epoch,
            valid: self.valid.clone(),
            epochs: self.epochs.iter().map(SavedEpoch::from).collect(),
            streams: self.streams.clone(),
            seconds: self.seconds.to_bits(),
            segments: self.segments.clone(),
            tensors_blake3: Some(file_digest(&d.join(&name))?),
            checksum: None,
        };
        state.checksum = Some(state.digest()?);
        write_atomic(&d.join(STATE), serde_json::to_string_pretty(&state)?.as_bytes())?;
        for e in std::fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))?.flatten() {
            let f = e.file_name().to_string_lossy().to_string();
            if f.starts_with("epoch-") && f.ends_with(".safetensors") && f != name {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// Reads the state of `run_id` from `run_dir`.
    pub fn read(run_dir: &Path, run_id: &str) -> Result<Self> {
        let d = dir(run_dir);
        let path = d.join(STATE);
        // A state that cannot be read or does not fit is the user's to remove (or to start over
        // with --force): bad input, naming the file.
        let text = std::fs::read_to_string(&path)
            .map_err(|e| bad_input(format!("{}: cannot read the resume state: {e}", path.display())))?;
        let s: StateFile = serde_json::from_str(&text)
            .map_err(|e| bad_input(format!("{}: not a resume state: {e}", path.display())))?;
        let start_over = format!("remove {} (or train with --force) to start the run over", d.display());
        if s.checksum.as_ref().is_some_and(|c| s.digest().ok().as_ref() != Some(c)) {
            input_bail!("{}: does not match its checksum: edited or damaged; {start_over}", path.display());
        }
        if s.run_id != run_id {
            input_bail!("{}: the state of run {}, not {run_id}", path.display(), s.run_id);
        }
        let tpath = d.join(&s.tensors);
        if let Some(want) = &s.tensors_blake3 {
            if &file_digest(&tpath)? != want {
                input_bail!(
                    "{}: does not match the checksum in {STATE}: damaged or replaced; {start_over}",
                    tpath.display()
                );
            }
        }
        let mut all = candle_core::safetensors::load(&tpath, &candle_core::Device::Cpu)
            .map_err(|e| bad_input(format!("{}: not a resume state's tensors: {e}", tpath.display())))?;
        let mut take = |prefix: &str| -> BTreeMap<String, Tensor> {
            let keys: Vec<String> = all.keys().filter(|k| k.starts_with(prefix)).cloned().collect();
            keys.into_iter().filter_map(|k| all.remove(&k).map(|v| (k[prefix.len()..].to_string(), v))).collect()
        };
        let params = take("param.");
        let m = take("adam_m.");
        let mut v = take("adam_v.");
        let selected = take("selected.");
        let incomplete = |k: &str| bad_input(format!("{}: Adam moments of `{k}` incomplete", tpath.display()));
        let moments = m
            .into_iter()
            .map(|(k, a)| match v.remove(&k) {
                Some(b) => Ok((k, (a, b))),
                None => Err(incomplete(&k)),
            })
            .collect::<Result<BTreeMap<_, _>>>()?;
        if let Some(k) = v.keys().next() {
            return Err(incomplete(k));
        }
        Ok(Self {
            epoch: s.epoch,
            adam_step: s.adam_step,
            best: f64::from_bits(s.best),
            bad_epochs: s.bad_epochs,
            best_epoch: s.best_epoch,
            valid: s.valid,
            epochs: s.epochs.into_iter().map(EpochLog::from).collect(),
            streams: s.streams,
            seconds: f64::from_bits(s.seconds),
            segments: s.segments,
            params,
            moments,
            selected: (!selected.is_empty()).then_some(selected),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn log(epoch: usize) -> EpochLog {
        EpochLog {
            epoch,
            loss: 1.0 / 3.0,
            steps: 7,
            train_seconds: 0.1,
            eval_seconds: f64::NAN,
            valid: Metrics::from_ranks([1, 4, 30]),
            test: None,
            extra: vec![("cdl_holistic_loss".into(), f64::NAN), ("drift".into(), 0.123_456_789_012_345)],
        }
    }

    #[test]
    fn state_round_trips_bit_for_bit_and_keeps_one_tensor_file() {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let t = |x: f32| Tensor::new(&[x, x / 7.0], &dev).unwrap();
        let mut snap = Snapshot {
            epoch: 1,
            adam_step: 12,
            best: f64::NEG_INFINITY,
            bad_epochs: 0,
            best_epoch: 0,
            valid: Metrics::default(),
            epochs: vec![log(1)],
            streams: Streams::new(u128::from(u64::MAX) * 3, 5, Some(9)),
            seconds: 1.5,
            segments: Vec::new(),
            params: BTreeMap::from([("a.weight".to_string(), t(1.0))]),
            moments: BTreeMap::from([("a.weight".to_string(), (t(2.0), t(3.0)))]),
            selected: None,
        };
        snap.write(dir.path(), "run-x").unwrap();
        snap.epoch = 2;
        snap.best = 0.25;
        snap.selected = Some(BTreeMap::from([("a.weight".to_string(), t(4.0))]));
        snap.epochs.push(log(2));
        snap.write(dir.path(), "run-x").unwrap();
        let files: Vec<String> = std::fs::read_dir(super::dir(dir.path()))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files.iter().filter(|f| f.ends_with(".safetensors")).count(), 1, "{files:?}");
        let back = Snapshot::read(dir.path(), "run-x").unwrap();
        assert_eq!(back.epoch, 2);
        assert_eq!(back.best, 0.25);
        assert_eq!(back.adam_step, 12);
        assert_eq!(back.streams.shuffle().unwrap(), u128::from(u64::MAX) * 3);
        assert_eq!(back.streams.cdl().unwrap(), Some(9));
        assert_eq!(back.epochs.len(), 2);
        assert_eq!(back.epochs[1].loss.to_bits(), (1.0f64 / 3.0).to_bits());
        assert!(back.epochs[1].eval_seconds.is_nan() && back.epochs[1].extra[0].1.is_nan());
        assert_eq!(back.epochs[1].extra[1].1, 0.123_456_789_012_345);
        assert_eq!(back.epochs[1].valid, log(2).valid);
        let v = |t: &Tensor| t.to_vec1::<f32>().unwrap();
        assert_eq!(v(&back.params["a.weight"]), v(&t(1.0)));
        assert_eq!(v(&back.moments["a.weight"].1), v(&t(3.0)));
        assert_eq!(v(&back.selected.unwrap()["a.weight"]), v(&t(4.0)));
        let other = Snapshot::read(dir.path(), "run-y").err().expect("another run's state is refused");
        assert!(crate::error::is_bad_input(&other), "another run's state is refused as bad input: {other:#}");
        // Damaged state files are bad input naming the file (exit 2), never a silent resume.
        let state = super::dir(dir.path()).join(STATE);
        let text = std::fs::read_to_string(&state).unwrap();
        std::fs::write(&state, &text[..text.len() / 2]).unwrap();
        let err = Snapshot::read(dir.path(), "run-x").err().expect("a damaged state is refused");
        assert!(crate::error::is_bad_input(&err) && err.to_string().contains(STATE), "{err:#}");
        std::fs::write(&state, &text).unwrap();
        let tensors = std::fs::read_dir(super::dir(dir.path()))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .unwrap();
        let good = std::fs::read(&tensors).unwrap();
        std::fs::write(&tensors, vec![0u8; 4096]).unwrap();
        let err = Snapshot::read(dir.path(), "run-x").err().expect("a damaged state is refused");
        assert!(crate::error::is_bad_input(&err) && err.to_string().contains(".safetensors"), "{err:#}");
        // One flipped byte in a tensor (a file that still parses) is caught by the checksum.
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        std::fs::write(&tensors, &flipped).unwrap();
        let err = Snapshot::read(dir.path(), "run-x").err().expect("a changed tensor is refused");
        assert!(err.to_string().contains("checksum") && err.to_string().contains("--force"), "{err:#}");
        std::fs::write(&tensors, &good).unwrap();
        // An edited field (Adam's step) is caught by the state's own checksum.
        std::fs::write(&state, text.replace("\"adam_step\": 12", "\"adam_step\": 13")).unwrap();
        let err = Snapshot::read(dir.path(), "run-x").err().expect("an edited state is refused");
        assert!(crate::error::is_bad_input(&err) && err.to_string().contains("checksum"), "{err:#}");
        // A state from before the checksums resumes.
        let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
        let obj = old.as_object_mut().unwrap();
        assert!(obj.remove("checksum").is_some() && obj.remove("tensors_blake3").is_some());
        std::fs::write(&state, serde_json::to_string_pretty(&old).unwrap()).unwrap();
        assert_eq!(Snapshot::read(dir.path(), "run-x").unwrap().adam_step, 12);
        remove(dir.path()).unwrap();
        assert!(!exists(dir.path()));
    }
}
