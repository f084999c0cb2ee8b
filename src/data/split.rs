//! Train / validation / test protocols.
//!
//! Positions index a user's full sequence `s`. A *target position* `p` means: predict `s[p]`
//! from the history `s[..p]` (truncated to the last `max_len` items by the batcher).

use serde::{Deserialize, Serialize};

/// How each user's sequence is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum Protocol {
    /// The paper's split: the first `n - floor(0.2 n)` items are train, the rest test (one
    /// instance per test item). The last train item is held out as the validation target, so
    /// training targets are positions `1 .. n_train - 1`.
    #[default]
    Paper,
    /// RecBole's leave-one-out: the last item is test, the one before it validation, every
    /// earlier position a training target.
    LeaveOneOut,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::Paper => "paper",
            Self::LeaveOneOut => "leave-one-out",
        }
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
        for (u, s) in sequences.iter().enumerate() {
            let n = s.len();
            let user = u as u32;
            let (n_train, test_from) = match protocol {
                Protocol::Paper => {
                    let n_test = n / 5; // floor(0.2 n)
                    (n - n_test, n - n_test)
                }
                Protocol::LeaveOneOut => (n.saturating_sub(1), n.saturating_sub(1)),
            };
            // Validation target: the last train item, when it has a history.
            if n_train >= 2 {
                valid.push(Instance { user, pos: (n_train - 1) as u32 });
                train_end.push((n_train - 1) as u32);
            } else {
                train_end.push(n_train as u32);
            }
            for pos in test_from.max(1)..n {
                test.push(Instance { user, pos: pos as u32 });
            }
        }
        Self { protocol, train_end, valid, test }
    }

    /// Number of training targets (= prefix-augmented training samples).
    pub fn n_train_targets(&self) -> usize {
        self.train_end.iter().map(|&e| e.saturating_sub(1) as usize).sum()
    }
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
    fn leave_one_out_counts() {
        let s = Split::new(&[vec![1, 2, 3, 4, 5]], Protocol::LeaveOneOut);
        assert_eq!(s.train_end, vec![3]);
        assert_eq!(s.valid, vec![Instance { user: 0, pos: 3 }]);
        assert_eq!(s.test, vec![Instance { user: 0, pos: 4 }]);
    }
}
