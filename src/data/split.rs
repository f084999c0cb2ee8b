//! Train / validation / test protocols.
//!
//! Positions index a user's full sequence `s`. A *target position* `p` means: predict `s[p]`
//! from the history `s[..p]` (truncated to the last `max_len` items by the batcher).

use serde::{Deserialize, Serialize};

/// How each user's sequence is split, and what selects the reported epoch.
///
/// Every protocol but `leave-one-out` uses the paper's split of a user's `n` items: the first
/// `n_train = n - floor(0.2 n)` are train, the rest test, one test instance per test item (its
/// input everything before it, truncated to `max_len`). They differ in which training targets
/// train and what the validation instances are:
///
/// | protocol | training targets (positions) | validation | reported |
/// |---|---|---|---|
/// | `paper` (hold-out) | `1 .. n_train - 2` | position `n_train - 1` of every user | test at the best validation epoch |
/// | `released` | `1 .. n_train - 1` | none: the test set itself | each metric's best test epoch (test-selected) |
/// | `valid-users` | `1 .. n_train - 1` | the test items of a fixed 10% of users | test (other 90% of users) at the best validation epoch |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Protocol {
    /// The paper's split with a hold-out: the last train item of every user is the validation
    /// target and never trains, so training targets are positions `1 .. n_train - 2` (each
    /// user's most recent training transition is left out). The protocol of every run before
    /// 2026-12-07; its name stays `paper` because run ids hash it (`holdout` is accepted too).
    #[value(alias = "holdout")]
    Paper,
    /// The released code's protocol, exactly: every training position `1 .. n_train - 1`
    /// trains, there is no validation set, the test set is ranked after every epoch, training
    /// stops when the patience counter reaches `train.patience` (the counter rises only after
    /// two epochs in a row that improve none of HR/MRR/NDCG@5/20 on the test set, and resets
    /// otherwise), every learning rate is multiplied by 1e-4 after epoch 40 (StepLR), and the
    /// reported value of each metric is its best test value over the epochs. Test-selected: for
    /// comparison with the paper's numbers, never an estimate of performance.
    Released,
    /// The released code's training targets with an honest selection: every user's training
    /// part trains (positions `1 .. n_train - 1`, as `released`); the test instances of a fixed
    /// seeded 10% of the users ([`VALID_USERS_FRACTION`], [`VALID_USERS_SEED`]) are the
    /// validation set, and the test metrics average over the other users' test instances. The
    /// default since 2026-12-07 (README, "Protocols: what the hold-out costs").
    #[default]
    ValidUsers,
    /// RecBole's leave-one-out: the last item is test, the one before it validation, every
    /// earlier position a training target.
    LeaveOneOut,
}

/// The share of users whose test items validate under [`Protocol::ValidUsers`].
pub const VALID_USERS_FRACTION: f64 = 0.1;
/// The seed of the validation users' draw: fixed, so every run (and every seed) of a dataset
/// validates on the same users and is tested on the same instances.
pub const VALID_USERS_SEED: u64 = 0x7661_6c69_6420_7573;

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Paper => "paper",
            Self::Released => "released",
            Self::ValidUsers => "valid-users",
            Self::LeaveOneOut => "leave-one-out",
        }
    }

    /// Whether the reported test metrics are selected on the test set itself.
    pub fn test_selected(self) -> bool {
        self == Self::Released
    }

    /// Whether a user's last training item is a training target (or held out to validate).
    fn trains_last_train_item(self) -> bool {
        matches!(self, Self::Released | Self::ValidUsers)
    }
}

/// An evaluation instance: predict `sequences[user][pos]` from `sequences[user][..pos]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instance {
    pub user: u32,
    pub pos: u32,
}

/// A split of a dataset's sequences.
#[derive(Debug, Clone)]
pub struct Split {
    pub protocol: Protocol,
    /// Training targets of user `u` are positions `1 .. train_end[u]` (exclusive).
    pub train_end: Vec<u32>,
    pub valid: Vec<Instance>,
    pub test: Vec<Instance>,
}

impl Split {
    pub fn new(sequences: &[Vec<u32>], protocol: Protocol) -> Self {
        let mut train_end = Vec::with_capacity(sequences.len());
        let mut valid = Vec::new();
        let mut test = Vec::new();
        let validating = match protocol {
            Protocol::ValidUsers => valid_users(sequences.len()),
            _ => Vec::new(),
        };
        for (u, s) in sequences.iter().enumerate() {
            let n = s.len();
            let user = u as u32;
            let n_train = match protocol {
                Protocol::LeaveOneOut => n.saturating_sub(1),
                _ => n - n / 5, // n - floor(0.2 n)
            };
            if protocol.trains_last_train_item() {
                train_end.push(n_train as u32);
            } else if n_train >= 2 {
                // Validation target: the last train item, when it has a history.
                valid.push(Instance { user, pos: (n_train - 1) as u32 });
                train_end.push((n_train - 1) as u32);
            } else {
                train_end.push(n_train as u32);
            }
            let to = if validating.get(u).copied().unwrap_or(false) { &mut valid } else { &mut test };
            for pos in n_train.max(1)..n {
                to.push(Instance { user, pos: pos as u32 });
            }
        }
        Self { protocol, train_end, valid, test }
    }

    /// Number of training targets (= prefix-augmented training samples).
    pub fn n_train_targets(&self) -> usize {
        self.train_end.iter().map(|&e| e.saturating_sub(1) as usize).sum()
    }
}

/// Which of `n_users` users validate under [`Protocol::ValidUsers`]: a seeded draw of
/// `round(VALID_USERS_FRACTION * n_users)` users (at least one when there are two or more
/// users, so that some users remain for the test).
pub fn valid_users(n_users: usize) -> Vec<bool> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let k =
        if n_users < 2 { 0 } else { ((VALID_USERS_FRACTION * n_users as f64).round() as usize).clamp(1, n_users - 1) };
    let mut order: Vec<usize> = (0..n_users).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(VALID_USERS_SEED));
    let mut chosen = vec![false; n_users];
    for &u in &order[..k] {
        chosen[u] = true;
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_split_counts() {
        // n = 5 -> 1 test item (pos 4), train 0..4, validation pos 3, train targets 1..3.
        // n = 12 -> floor(2.4) = 2 test items (10, 11), validation 9, train targets 1..9.
        let seqs = vec![vec![1; 5], vec![2; 12], vec![3; 4]];
        let s = Split::new(&seqs, Protocol::Paper);
        assert_eq!(s.train_end, vec![3, 9, 3]);
        assert_eq!(
            s.valid,
            vec![Instance { user: 0, pos: 3 }, Instance { user: 1, pos: 9 }, Instance { user: 2, pos: 3 }]
        );
        assert_eq!(
            s.test,
            vec![Instance { user: 0, pos: 4 }, Instance { user: 1, pos: 10 }, Instance { user: 1, pos: 11 }]
        );
        assert_eq!(s.n_train_targets(), 2 + 8 + 2);
    }

    #[test]
    fn released_trains_on_every_training_position() {
        // n = 5 -> train 0..4, targets 1..3 (3 of them), test pos 4, no validation.
        let seqs = vec![vec![1; 5], vec![2; 12], vec![3; 4]];
        let s = Split::new(&seqs, Protocol::Released);
        assert_eq!(s.train_end, vec![4, 10, 4]);
        assert!(s.valid.is_empty());
        assert_eq!(s.test.len(), 3); // 1 + 2 + 0
        assert_eq!(s.n_train_targets(), 3 + 9 + 3);
        // One more target per user than the hold-out protocol (each user with n_train >= 2).
        assert_eq!(s.n_train_targets(), Split::new(&seqs, Protocol::Paper).n_train_targets() + 3);
    }

    #[test]
    fn valid_users_split_the_test_instances_by_user() {
        let seqs: Vec<Vec<u32>> = (0..50).map(|u| vec![u as u32 + 1; 5 + u % 7]).collect();
        let s = Split::new(&seqs, Protocol::ValidUsers);
        let released = Split::new(&seqs, Protocol::Released);
        // Same training targets as the released protocol; every test instance lands in exactly
        // one of validation and test, whole users at a time.
        assert_eq!(s.train_end, released.train_end);
        assert_eq!(s.valid.len() + s.test.len(), released.test.len());
        let vu: std::collections::BTreeSet<u32> = s.valid.iter().map(|i| i.user).collect();
        let tu: std::collections::BTreeSet<u32> = s.test.iter().map(|i| i.user).collect();
        assert!(vu.is_disjoint(&tu));
        assert_eq!(vu.len(), 5); // 10% of 50
                                 // Fixed: the same users on every call.
        assert_eq!(valid_users(50), valid_users(50));
        assert_eq!(valid_users(1), vec![false]);
        assert_eq!(valid_users(2).iter().filter(|&&v| v).count(), 1);
    }

    #[test]
    fn leave_one_out_counts() {
        let s = Split::new(&[vec![1, 2, 3, 4, 5]], Protocol::LeaveOneOut);
        assert_eq!(s.train_end, vec![3]);
        assert_eq!(s.valid, vec![Instance { user: 0, pos: 3 }]);
        assert_eq!(s.test, vec![Instance { user: 0, pos: 4 }]);
    }
}
