//! Sweeps: run a grid's RunConfigs, resumably, with a worker budget, optionally one shard of
//! the grid per machine.
//!
//! - [`plan`]: the grid's runs after scaling ([`Scale`]) and sharding ([`Shard`]), and the
//!   table `kdsr sweep plan` prints.
//! - [`store`]: the records, `reports/<grid>/runs/<run_id>/`; a run is finished when its
//!   folder holds `metrics.json`. Runs are trained in a private work folder and moved into
//!   `runs/` whole, so `runs/` never holds a half-written record.
//! - [`cost`]: each run's core-hours, estimated from the committed records before it runs.
//! - [`scheduler`]: parallel runs in this process, each confined to its own rayon pool.
//! - [`slurm`]: an sbatch array script with one shard per array task.
//! - [`cli`]: the `kdsr sweep` subcommands.

pub mod cli;
pub mod cost;
pub mod plan;
pub mod scheduler;
pub mod slurm;
pub mod store;

use crate::config::RunConfig;
use crate::error::bad_input;
use crate::grid::trial::Trial;
use serde::Serialize;

/// Preset scales for a trial run of a grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Budget {
    /// The grid as written.
    #[default]
    Full,
    /// The grid's `[trial]` caps ([`Trial`]; without one: at most 3 epochs, the first seed,
    /// the first 1000 users, 100 on MovieLens).
    Quick,
}

/// Caps that scale a grid down for a trial run. They change the runs' RunConfigs (and so
/// their run ids), and a scaled sweep keeps its records apart from the full grid's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Scale {
    pub budget: Budget,
    /// Cap on `train.max_epochs`.
    pub max_epochs: Option<usize>,
    /// Cap on `max_users` (`None`: the quick budget's per-dataset cap, if any).
    pub max_users: Option<usize>,
    /// Keep the first N of the grid's seeds.
    pub seeds: Option<usize>,
    /// The grid's trial caps, which `quick` applies (not part of plan.json: the caps above
    /// and the runs' configs say what ran).
    #[serde(skip)]
    pub trial: Trial,
}

impl Scale {
    /// A preset (from the grid's `trial`) with explicit caps on top (explicit values win).
    pub fn new(
        budget: Budget,
        max_epochs: Option<usize>,
        max_users: Option<usize>,
        seeds: Option<usize>,
        trial: Trial,
    ) -> anyhow::Result<Self> {
        for (flag, v) in [("--epochs", max_epochs), ("--max-users", max_users), ("--seeds", seeds)] {
            if v == Some(0) {
                return Err(bad_input(format!("{flag} must be at least 1")));
            }
        }
        let preset = match budget {
            Budget::Full => (None, None),
            Budget::Quick => (Some(trial.epochs), Some(trial.seeds)),
        };
        Ok(Self { budget, max_epochs: max_epochs.or(preset.0), max_users, seeds: seeds.or(preset.1), trial })
    }

    /// True when nothing is scaled.
    pub fn is_full(&self) -> bool {
        self.budget == Budget::Full && self.max_epochs.is_none() && self.max_users.is_none() && self.seeds.is_none()
    }

    /// The users the budget keeps of `dataset` when `--max-users` does not say.
    fn budget_users(&self, dataset: &crate::data::DatasetRef) -> Option<usize> {
        match self.budget {
            Budget::Full => None,
            Budget::Quick => Some(self.trial.users_of(dataset)),
        }
    }

    /// Applies the caps to one run; `None` when its seed is dropped.
    pub fn apply(&self, seed_index: usize, cfg: &RunConfig) -> Option<RunConfig> {
        if self.seeds.is_some_and(|n| seed_index >= n) {
            return None;
        }
        let mut cfg = cfg.clone();
        if let Some(n) = self.max_epochs {
            cfg.train.max_epochs = cfg.train.max_epochs.min(n);
        }
        if let Some(n) = self.max_users.or_else(|| self.budget_users(&cfg.dataset)) {
            cfg.max_users = Some(cfg.max_users.map_or(n, |m| m.min(n)));
        }
        Some(cfg)
    }

    /// `at most 3 epochs, 1000 users, the first seed`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.max_epochs {
            parts.push(format!("at most {n} epochs"));
        }
        match (self.max_users, self.budget) {
            (Some(n), _) => parts.push(format!("at most {n} users")),
            (None, Budget::Quick) => {
                parts.push(format!("at most {} users ({} on MovieLens)", self.trial.users, self.trial.movielens_users))
            }
            (None, Budget::Full) => {}
        }
        match self.seeds {
            Some(1) => parts.push("the first seed".into()),
            Some(n) => parts.push(format!("the first {n} seeds")),
            None => {}
        }
        parts.join(", ")
    }

    /// The shortest command-line flags that reproduce this scale (caps equal to the budget's
    /// preset are left to the budget).
    pub fn to_flags(&self) -> Vec<String> {
        let mut out = Vec::new();
        let preset = Self::new(self.budget, None, None, None, self.trial).unwrap_or_default();
        if self.budget != Budget::Full {
            out.extend(["--budget".to_string(), "quick".to_string()]);
        }
        let caps = [
            ("--epochs", self.max_epochs, preset.max_epochs),
            ("--max-users", self.max_users, preset.max_users),
            ("--seeds", self.seeds, preset.seeds),
        ];
        for (flag, v, default) in caps {
            if let Some(v) = v.filter(|v| Some(*v) != default) {
                out.extend([flag.to_string(), v.to_string()]);
            }
        }
        out
    }
}

/// One of `count` disjoint parts of a grid: `index/count`, 0-based (Slurm's
/// `$SLURM_ARRAY_TASK_ID/N`). Runs are sorted by run id and dealt out in turn, so the parts
/// are stable for a given grid, partition it exactly and differ in size by at most one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("bad shard `{s}`: expected i/n with 0 <= i < n, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let index: usize = i.trim().parse().map_err(|_| err())?;
        let count: usize = n.trim().parse().map_err(|_| err())?;
        if count == 0 || index >= count {
            return Err(err());
        }
        Ok(Self { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Which of `run_ids` belong to this shard, as a mask in input order.
    pub fn mask(&self, run_ids: &[&str]) -> Vec<bool> {
        let mut order: Vec<usize> = (0..run_ids.len()).collect();
        order.sort_by(|&a, &b| run_ids[a].cmp(run_ids[b]));
        let mut mask = vec![false; run_ids.len()];
        for (pos, &i) in order.iter().enumerate() {
            mask[i] = pos % self.count == self.index;
        }
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_exactly() {
        let ids: Vec<String> = (0..23).map(|i| format!("d-m-{:016x}", (i as u64).wrapping_mul(0x9E37_79B9))).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        for n in 1..6 {
            let masks: Vec<Vec<bool>> = (0..n).map(|i| Shard { index: i, count: n }.mask(&refs)).collect();
            for r in 0..ids.len() {
                assert_eq!(masks.iter().filter(|m| m[r]).count(), 1);
            }
            let sizes: Vec<usize> = masks.iter().map(|m| m.iter().filter(|&&b| b).count()).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        }
        // Stable under reordering of the input.
        let mut rev = refs.clone();
        rev.reverse();
        let a = Shard { index: 1, count: 3 }.mask(&refs);
        let b = Shard { index: 1, count: 3 }.mask(&rev);
        let pick = |ids: &[&str], m: &[bool]| {
            let mut v: Vec<String> = ids.iter().zip(m).filter(|(_, &k)| k).map(|(i, _)| i.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(pick(&refs, &a), pick(&rev, &b));
    }

    #[test]
    fn shard_syntax() {
        assert_eq!("2/4".parse::<Shard>().unwrap(), Shard { index: 2, count: 4 });
        assert!("4/4".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    #[test]
    fn quick_budget_caps_and_keeps_first_seed() {
        use crate::data::{DatasetId, DatasetRef};
        let s = Scale::new(Budget::Quick, None, Some(300), None, Trial::default()).unwrap();
        let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), crate::model::ModelKind::Sasrec, 1);
        cfg.train.max_epochs = 2;
        let out = s.apply(0, &cfg).unwrap();
        assert_eq!((out.train.max_epochs, out.max_users), (2, Some(300)));
        assert!(s.apply(1, &cfg).is_none());
        assert_eq!(s.to_flags(), ["--budget", "quick", "--max-users", "300"]);
        assert_eq!(
            Scale::new(Budget::Full, Some(2), None, None, Trial::default()).unwrap().to_flags(),
            ["--epochs", "2"]
        );
        assert!(Scale::new(Budget::Full, None, None, None, Trial::default()).unwrap().is_full());
        // Without --max-users: about 10k training targets per dataset.
        let q = Scale::new(Budget::Quick, None, None, None, Trial::default()).unwrap();
        assert!(!q.is_full());
        assert_eq!(q.apply(0, &cfg).unwrap().max_users, Some(1000));
        let ml = RunConfig::new(DatasetRef::Named(DatasetId::Ml1m), crate::model::ModelKind::Sasrec, 1);
        assert_eq!(q.apply(0, &ml).unwrap().max_users, Some(100));
        assert_eq!(q.describe(), "at most 3 epochs, at most 1000 users (100 on MovieLens), the first seed");
        assert_eq!(q.to_flags(), ["--budget", "quick"]);
        // A grid's [trial] replaces the defaults, and the flags stay `--budget quick`.
        let t = Trial { epochs: 20, users: 2000, movielens_users: 50, seeds: 2 };
        let g = Scale::new(Budget::Quick, None, None, None, t).unwrap();
        assert_eq!(g.apply(0, &cfg).unwrap().max_users, Some(2000));
        assert_eq!(g.apply(0, &ml).unwrap().max_users, Some(50));
        assert!(g.apply(1, &cfg).is_some() && g.apply(2, &cfg).is_none());
        assert_eq!(g.describe(), "at most 20 epochs, at most 2000 users (50 on MovieLens), the first 2 seeds");
        assert_eq!(g.to_flags(), ["--budget", "quick"]);
        let g5 = Scale::new(Budget::Quick, Some(5), None, None, t).unwrap();
        assert_eq!(g5.to_flags(), ["--budget", "quick", "--epochs", "5"]);
    }
}
