//! `[trial]`: what `--budget quick` runs of a grid. A trial shows that a grid runs end to end
//! and whether its rows move apart at all; it is sized per grid, because a size at which one
//! grid's rows differ leaves another's identical (the ablation's rows need many more epochs
//! than three before their modality tables change the ranking).
//!
//! ```toml
//! [trial]
//! epochs = 20            # cap on train.max_epochs (default 3)
//! users = 2000           # the first N users of an Amazon dataset or a file (default 1000)
//! movielens_users = 100  # the first N users of ML-1M / ML-100K (default 100)
//! seeds = 1              # the grid's first N seeds (default 1)
//! ```

use serde::{Deserialize, Serialize};

/// A grid's trial caps; [`Trial::default`] where the grid has no `[trial]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Trial {
    /// Cap on every run's `train.max_epochs`.
    pub epochs: usize,
    /// Users kept of an Amazon dataset or a file (the first N).
    pub users: usize,
    /// Users kept of MovieLens, whose users rate ~165 movies each (100 ML-1M users: 10,217
    /// training targets, about what 1000 Beauty users give).
    pub movielens_users: usize,
    /// The grid's first N seeds.
    pub seeds: usize,
}

impl Default for Trial {
    /// At most 3 epochs, 1000 users (100 on MovieLens: about 10k training targets either
    /// way), the first seed.
    fn default() -> Self {
        Self { epochs: 3, users: 1000, movielens_users: 100, seeds: 1 }
    }
}

impl Trial {
    /// The first cap that is zero, by its key.
    pub fn zero_cap(&self) -> Option<&'static str> {
        [
            ("epochs", self.epochs),
            ("users", self.users),
            ("movielens_users", self.movielens_users),
            ("seeds", self.seeds),
        ]
        .into_iter()
        .find(|(_, v)| *v == 0)
        .map(|(k, _)| k)
    }

    /// The users a trial keeps of `dataset`.
    pub fn users_of(&self, dataset: &crate::data::DatasetRef) -> usize {
        use crate::data::{DatasetId, DatasetRef};
        match dataset {
            DatasetRef::Named(DatasetId::Ml1m | DatasetId::Ml100k) => self.movielens_users,
            _ => self.users,
        }
    }
}
