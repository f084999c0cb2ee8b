//! What a grid costs before it runs: each run's core-hours, estimated from the committed
//! records of every grid under the reports folder.
//!
//! A run's cost is `e · c`, its epochs times its core-seconds per epoch, each taken from the
//! closest records that have it ([`Basis`], best first):
//!
//! - `c` = median over the matching records of `total_seconds · threads / epochs_run`, scaled
//!   by `work(run) / work(record)` when the record is of another configuration, where an
//!   epoch's work is [`Work::units`] = positions + training targets (the network runs over
//!   every position of the epoch's windows, the catalogue cross-entropy over every target), so
//!   a run in another sample mode, at another `max_len` or on another dataset scales by what
//!   it trains on (by training targets alone where a record's data does not load here);
//! - `e` = `max_epochs` for a run that trains a fixed number of epochs (selection `last`, or
//!   patience >= max_epochs), else the median `epochs_run` of the matching early-stopped
//!   records, capped at `max_epochs`; records under another protocol (whose stopping rule
//!   differs: the released one stops later) are scaled by the median ratio of epochs between
//!   the two protocols over the models that have records under both.
//!
//! A finished run costs what its record says. Records of runs on another machine, at another
//! machine load or of another code version count as they are: the estimate is as good as the
//! records behind it, and says which they are.

use crate::config::{RunConfig, Selection};
use crate::data::batch::epoch_positions;
use crate::data::split::Split;
use crate::data::{DataPaths, Dataset, DatasetRef};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

/// What an estimate rests on, from the closest records to the farthest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Basis {
    /// The run's own record (finished).
    Record,
    /// Records of the same configuration (other seeds).
    SameConfig,
    /// The same model variant on the same dataset and protocol.
    SameModel,
    /// The same model variant on the same dataset under another protocol or slice.
    OtherProtocol,
    /// The same model variant on another dataset, scaled by training targets.
    OtherDataset,
    /// No record of the model variant.
    Unknown,
}

impl Basis {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Record => "its record",
            Self::SameConfig => "same configuration",
            Self::SameModel => "same model, dataset and protocol",
            Self::OtherProtocol => "same model and dataset, other protocol or users",
            Self::OtherDataset => "same model, other dataset (scaled)",
            Self::Unknown => "no record of the model",
        }
    }
}

/// The fields of a committed `metrics.json` an estimate needs.
#[derive(Debug, Clone, Deserialize)]
struct RecordCost {
    config: RunConfig,
    epochs_run: usize,
    total_seconds: f64,
    threads: usize,
    n_train_targets: usize,
}

/// One finished run of the history.
#[derive(Debug, Clone)]
struct PastRun {
    config: RunConfig,
    /// The run id of its configuration with the seed zeroed.
    key: String,
    core_seconds_per_epoch: f64,
    epochs: usize,
    targets: usize,
}

/// Every finished record under a reports folder (`<out>/*/runs/*/metrics.json`).
#[derive(Debug, Default)]
pub struct History {
    runs: Vec<PastRun>,
    by_id: HashMap<String, usize>,
}

/// A run's estimated cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Core-seconds (training and evaluation, all threads); `None` when unknown.
    pub core_seconds: Option<f64>,
    /// The farther of the bases of its two factors.
    pub basis: Basis,
}

fn seedless_key(cfg: &RunConfig) -> String {
    let mut c = cfg.clone();
    c.seed = 0;
    c.run_id()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

impl History {
    /// Reads every `metrics.json` under `<out>/*/runs/`; records it cannot read (an older
    /// format, a damaged file: the reports say so) are left out of the estimate.
    pub fn load(out: &Path) -> Self {
        let mut h = Self::default();
        let Ok(grids) = std::fs::read_dir(out) else { return h };
        let mut files: Vec<_> = grids
            .flatten()
            .filter_map(|g| std::fs::read_dir(g.path().join("runs")).ok())
            .flat_map(|runs| runs.flatten().map(|r| r.path().join("metrics.json")))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for path in files {
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let Ok(r) = serde_json::from_str::<RecordCost>(&text) else { continue };
            h.push(r);
        }
        h
    }

    fn push(&mut self, r: RecordCost) {
        if r.epochs_run == 0 || !r.total_seconds.is_finite() {
            return;
        }
        let id = r.config.run_id();
        if self.by_id.contains_key(&id) {
            return; // the same run copied into another grid's records
        }
        self.by_id.insert(id, self.runs.len());
        self.runs.push(PastRun {
            key: seedless_key(&r.config),
            core_seconds_per_epoch: r.total_seconds * r.threads.max(1) as f64 / r.epochs_run as f64,
            epochs: r.epochs_run,
            targets: r.n_train_targets,
            config: r.config,
        });
    }

    /// The cost of `cfg`; `work` gives a configuration's epoch [`Work`] (`None`: not known,
    /// e.g. its dataset is not on this machine; per-epoch costs are then not scaled, or by
    /// training targets where only the record's work is unknown).
    pub fn estimate(&self, cfg: &RunConfig, work: &dyn Fn(&RunConfig) -> Option<Work>) -> Estimate {
        if let Some(&i) = self.by_id.get(&cfg.run_id()) {
            let r = &self.runs[i];
            return Estimate { core_seconds: Some(r.core_seconds_per_epoch * r.epochs as f64), basis: Basis::Record };
        }
        let key = seedless_key(cfg);
        let variant = cfg.variant_name();
        let level = |r: &PastRun| -> Basis {
            let c = &r.config;
            if r.key == key {
                Basis::SameConfig
            } else if c.variant_name() != variant {
                Basis::Unknown
            } else if c.dataset != cfg.dataset {
                Basis::OtherDataset
            } else if c.protocol != cfg.protocol || c.max_users != cfg.max_users {
                Basis::OtherProtocol
            } else {
                Basis::SameModel
            }
        };
        let levels: Vec<Basis> = self.runs.iter().map(level).collect();
        let closest = |ok: &dyn Fn(&PastRun) -> bool| -> Option<(Basis, Vec<&PastRun>)> {
            let best =
                self.runs.iter().zip(&levels).filter(|(r, l)| **l != Basis::Unknown && ok(r)).map(|(_, l)| *l).min()?;
            Some((best, self.runs.iter().zip(&levels).filter(|(r, l)| **l == best && ok(r)).map(|(r, _)| r).collect()))
        };
        let own = work(cfg);
        let scale = |r: &PastRun| match (own, work(&r.config)) {
            (None, _) => 1.0,
            (Some(w), Some(rw)) => w.units() / rw.units().max(1.0),
            (Some(w), None) => w.targets as f64 / r.targets.max(1) as f64,
        };
        let per_epoch = closest(&|_| true).and_then(|(basis, rs)| {
            let scaled = rs.iter().map(|r| match basis {
                Basis::SameConfig => r.core_seconds_per_epoch,
                _ => r.core_seconds_per_epoch * scale(r),
            });
            Some((basis, median(scaled.collect())?))
        });
        let t = &cfg.train;
        let epochs = if fixed_length(cfg) {
            Some((Basis::SameConfig, t.max_epochs as f64))
        } else {
            // Epochs depend on the protocol's stopping rule: prefer records under the same one,
            // else scale the others' by what the protocol changes for other models.
            let stopped = |r: &PastRun| !fixed_length(&r.config);
            let same_protocol = |r: &PastRun| stopped(r) && r.config.protocol == cfg.protocol;
            closest(&same_protocol).or_else(|| closest(&stopped)).and_then(|(basis, rs)| {
                let scaled = rs.iter().map(|r| r.epochs as f64 * self.epoch_factor(r, cfg));
                Some((basis, median(scaled.collect())?.min(t.max_epochs as f64)))
            })
        };
        match (per_epoch, epochs) {
            (Some((b1, c)), Some((b2, e))) => Estimate { core_seconds: Some(c * e), basis: b1.max(b2) },
            _ => Estimate { core_seconds: None, basis: Basis::Unknown },
        }
    }
}

/// Whether a run trains a fixed number of epochs (no early stopping can end it sooner).
fn fixed_length(cfg: &RunConfig) -> bool {
    cfg.train.selection == Selection::Last || cfg.train.patience >= cfg.train.max_epochs
}

impl History {
    /// How many times as many epochs runs stop after under `cfg`'s protocol as under `r`'s:
    /// the median, over the model variants with early-stopped records on `cfg`'s dataset
    /// under both, of the ratio of their median epochs (1 when no variant has both).
    fn epoch_factor(&self, r: &PastRun, cfg: &RunConfig) -> f64 {
        let (from, to) = (r.config.protocol, cfg.protocol);
        if from == to {
            return 1.0;
        }
        let mut epochs: HashMap<(String, bool), Vec<f64>> = HashMap::new();
        for p in &self.runs {
            let c = &p.config;
            if c.dataset == cfg.dataset && !fixed_length(c) && (c.protocol == from || c.protocol == to) {
                epochs.entry((c.variant_name(), c.protocol == to)).or_default().push(p.epochs as f64);
            }
        }
        let ratios: Vec<f64> = epochs
            .iter()
            .filter(|((_, is_to), _)| *is_to)
            .filter_map(|((v, _), e_to)| {
                Some(median(e_to.clone())? / median(epochs.get(&(v.clone(), false))?.clone())?)
            })
            .collect();
        median(ratios).unwrap_or(1.0)
    }
}

/// What one epoch of a configuration trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Work {
    /// Training targets: one catalogue cross-entropy each.
    pub targets: usize,
    /// Positions the network runs over: the sum of the epoch's window lengths
    /// ([`epoch_positions`] in the run's sample mode at its `max_len`).
    pub positions: usize,
}

impl Work {
    /// `positions + targets`, a position's pass and a target's cross-entropy weighted alike.
    /// A proxy: the two costs differ by model and catalogue, and attention adds a factor of
    /// the window length; the bench notes give its error against the runs.
    pub fn units(self) -> f64 {
        (self.positions + self.targets) as f64
    }
}

/// Each configuration's epoch [`Work`], computed from its data on first use and kept; datasets
/// load once. `None` where the data does not load on this machine.
pub struct WorkTable<'a> {
    paths: &'a DataPaths,
    datasets: RefCell<HashMap<DatasetRef, Option<Dataset>>>,
    work: RefCell<HashMap<String, Option<Work>>>,
}

impl<'a> WorkTable<'a> {
    pub fn new(paths: &'a DataPaths) -> Self {
        Self { paths, datasets: Default::default(), work: Default::default() }
    }

    pub fn get(&self, cfg: &RunConfig) -> Option<Work> {
        let t = &cfg.train;
        let key =
            format!("{}|{:?}|{}|{}|{:?}", cfg.dataset, cfg.max_users, cfg.protocol.name(), t.max_len, t.sample_mode);
        if let Some(w) = self.work.borrow().get(&key) {
            return *w;
        }
        let mut datasets = self.datasets.borrow_mut();
        let ds = datasets.entry(cfg.dataset.clone()).or_insert_with(|| Dataset::load(&cfg.dataset, self.paths).ok());
        let w = ds.as_ref().map(|ds| {
            let truncated;
            let sequences = match cfg.max_users {
                Some(n) => {
                    truncated = ds.clone().truncate_users(n);
                    &truncated.sequences
                }
                None => &ds.sequences,
            };
            let split = Split::new(sequences, cfg.protocol);
            let positions = epoch_positions(&split, t.max_len, t.sample_mode);
            Work { targets: split.n_train_targets(), positions }
        });
        self.work.borrow_mut().insert(key, w);
        w
    }
}

/// Core-seconds as hours for a table: `0.42`, `12.3`.
pub fn hours(core_seconds: f64) -> String {
    let h = core_seconds / 3600.0;
    if h < 10.0 {
        format!("{h:.2}")
    } else {
        format!("{h:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::batch::SampleMode;
    use crate::data::split::Protocol;
    use crate::data::DatasetId;
    use crate::model::ModelKind;

    fn record(
        model: ModelKind,
        seed: u64,
        protocol: Protocol,
        seconds: f64,
        epochs: usize,
        targets: usize,
    ) -> RecordCost {
        let mut config = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), model, seed);
        config.protocol = protocol;
        RecordCost { config, epochs_run: epochs, total_seconds: seconds, threads: 1, n_train_targets: targets }
    }

    /// Work of `n` targets over `n` positions (one window per target of length 1).
    fn flat(n: usize) -> Option<Work> {
        Some(Work { targets: n, positions: n })
    }

    /// Paper-protocol configurations train on 1000 targets, released ones on 1200.
    fn by_protocol(cfg: &RunConfig) -> Option<Work> {
        flat(if cfg.protocol == Protocol::Released { 1200 } else { 1000 })
    }

    fn history(records: Vec<RecordCost>) -> History {
        let mut h = History::default();
        records.into_iter().for_each(|r| h.push(r));
        h
    }

    #[test]
    fn own_record_then_other_seeds_then_scaled_by_targets() {
        let h = history(vec![
            record(ModelKind::Sasrec, 1, Protocol::Paper, 100.0, 10, 1000),
            record(ModelKind::Sasrec, 2, Protocol::Paper, 300.0, 20, 1000),
            record(ModelKind::Sasrec, 3, Protocol::Paper, 200.0, 10, 1000),
        ]);
        let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 1);
        cfg.protocol = Protocol::Paper;
        assert_eq!(h.estimate(&cfg, &by_protocol), Estimate { core_seconds: Some(100.0), basis: Basis::Record });
        cfg.seed = 9;
        // Median per-epoch cost 15 s (10, 15, 20), median epochs 10.
        assert_eq!(h.estimate(&cfg, &by_protocol), Estimate { core_seconds: Some(150.0), basis: Basis::SameConfig });
        cfg.protocol = Protocol::Released;
        let e = h.estimate(&cfg, &by_protocol);
        assert_eq!(e.basis, Basis::OtherProtocol);
        assert!((e.core_seconds.unwrap() - 15.0 * 1.2 * 10.0).abs() < 1e-9, "{e:?}");
        cfg.model = crate::model::ModelSpec::default_for(ModelKind::Gru4rec);
        assert_eq!(h.estimate(&cfg, &by_protocol), Estimate { core_seconds: None, basis: Basis::Unknown });
    }

    #[test]
    fn a_fixed_length_run_costs_its_max_epochs() {
        let h = history(vec![record(ModelKind::Sasrec, 1, Protocol::Paper, 100.0, 10, 1000)]);
        let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 2);
        cfg.protocol = Protocol::Paper;
        cfg.train.selection = Selection::Last;
        cfg.train.max_epochs = 27;
        let e = h.estimate(&cfg, &by_protocol);
        assert_eq!(e.core_seconds, Some(270.0));
        assert_eq!(e.basis, Basis::SameModel, "the configuration differs in its selection");
    }

    #[test]
    fn epochs_under_another_protocol_scale_by_what_it_changes_for_other_models() {
        let h = history(vec![
            record(ModelKind::Sasrec, 1, Protocol::Paper, 100.0, 10, 1000),
            record(ModelKind::Sasrec, 1, Protocol::Released, 240.0, 20, 1200),
            record(ModelKind::Gru4rec, 1, Protocol::Paper, 80.0, 8, 1000),
        ]);
        let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Gru4rec, 1);
        cfg.protocol = Protocol::Released;
        // 10 s per epoch x 1.2 (targets), 8 epochs x 2 (SASRec's released / paper epochs).
        let e = h.estimate(&cfg, &by_protocol);
        assert_eq!(e.basis, Basis::OtherProtocol);
        assert!((e.core_seconds.unwrap() - 12.0 * 16.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn another_sample_mode_scales_by_positions_and_targets() {
        let h = history(vec![record(ModelKind::Sasrec, 1, Protocol::Paper, 100.0, 10, 1000)]);
        let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), ModelKind::Sasrec, 2);
        cfg.protocol = Protocol::Paper;
        cfg.train.sample_mode = SampleMode::FullContext;
        // The record's epoch: 1000 targets over 1000 positions; the run's: the same targets
        // over 9000 positions, 5x the work.
        let work = |c: &RunConfig| match c.train.sample_mode {
            SampleMode::FullContext => Some(Work { targets: 1000, positions: 9000 }),
            _ => flat(1000),
        };
        let e = h.estimate(&cfg, &work);
        assert_eq!(e.basis, Basis::SameModel);
        assert!((e.core_seconds.unwrap() - 10.0 * 5.0 * 10.0).abs() < 1e-9, "{e:?}");
        // Where the record's data does not load, training targets scale it (here: not at all).
        let unknown_record = |c: &RunConfig| if c.seed == 2 { work(c) } else { None };
        assert_eq!(h.estimate(&cfg, &unknown_record).core_seconds, Some(100.0));
        // Where the run's own data does not load, nothing scales.
        assert_eq!(h.estimate(&cfg, &|_| None).core_seconds, Some(100.0));
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }
}
