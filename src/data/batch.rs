//! Windows over user sequences and padded batches.
//!
//! A [`Window`] is a contiguous slice `s[start..end]` of one user's sequence fed to the model
//! left-aligned (position ids `0..end-start`, padding after). Window position `i` predicts
//! `s[start + i + 1]`; only positions `i >= first` carry a training target.
//!
//! Two ways to produce the training targets (the set of targets is the same):
//! - [`SampleMode::Prefix`]: one window per target position `p`, `s[max(0, p-L)..p]`, target at
//!   its last position (prefix augmentation, as the paper and RecBole do).
//! - [`SampleMode::Sequence`]: one window per user covering all of its targets at once. For a
//!   causal backbone with left-aligned positions, the hidden state at window position `i` only
//!   sees `s[start..=start+i]`, so it equals the prefix-mode output for every target whose
//!   prefix fits in `L` items (tested in `tests/sample_modes.rs`). Users with more than `L`
//!   training inputs get further windows of `L` items advancing by `L/2`; each target is still
//!   trained exactly once per epoch, with a context of at least `L/2` items (prefix mode gives
//!   it `L`).

use serde::{Deserialize, Serialize};

use super::split::{Instance, Split};

/// How training samples are laid out; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum SampleMode {
    Prefix,
    #[default]
    Sequence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub user: u32,
    pub start: u32,
    pub end: u32,
    /// First window position that carries a target.
    pub first: u32,
}

impl Window {
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Training windows for every user's training targets (positions `1..train_end`).
pub fn train_windows(split: &Split, max_len: usize, mode: SampleMode) -> Vec<Window> {
    let l = max_len as u32;
    let mut out = Vec::new();
    for (u, &train_end) in split.train_end.iter().enumerate() {
        let user = u as u32;
        if train_end < 2 {
            continue;
        }
        let last_target = train_end - 1; // targets are positions 1..=last_target
        match mode {
            SampleMode::Prefix => {
                for p in 1..=last_target {
                    let start = p.saturating_sub(l);
                    out.push(Window { user, start, end: p, first: p - start - 1 });
                }
            }
            SampleMode::Sequence => {
                let mut end = last_target.min(l);
                out.push(Window { user, start: 0, end, first: 0 });
                let stride = (l / 2).max(1);
                while end < last_target {
                    let next = (end + stride).min(last_target);
                    let start = next - l;
                    // Targets end+1 ..= next sit at window positions end-start ..
                    out.push(Window { user, start, end: next, first: end - start });
                    end = next;
                }
            }
        }
    }
    out
}

/// A window read at several positions for evaluation: `reads[k] = (window position, index
/// into the instance list)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalWindow {
    pub user: u32,
    pub start: u32,
    pub end: u32,
    pub reads: Vec<(u32, u32)>,
}

/// Groups evaluation instances so that one forward pass serves all instances of a user whose
/// history fits in `max_len` items (exact for causal backbones; see the module docs); longer
/// histories get a window of their own, truncated to the last `max_len` items.
pub fn eval_windows(instances: &[Instance], max_len: usize) -> Vec<EvalWindow> {
    let l = max_len as u32;
    let mut out: Vec<EvalWindow> = Vec::new();
    let mut head_of_user: std::collections::HashMap<u32, usize> = Default::default();
    for (k, inst) in instances.iter().enumerate() {
        let k = k as u32;
        if inst.pos <= l {
            let w = *head_of_user.entry(inst.user).or_insert_with(|| {
                out.push(EvalWindow { user: inst.user, start: 0, end: 0, reads: Vec::new() });
                out.len() - 1
            });
            out[w].end = out[w].end.max(inst.pos);
            out[w].reads.push((inst.pos - 1, k));
        } else {
            out.push(EvalWindow { user: inst.user, start: inst.pos - l, end: inst.pos, reads: vec![(l - 1, k)] });
        }
    }
    out
}

/// A padded batch, row-major `[rows, width]`; item 0 and target 0 mean "none".
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub width: usize,
    pub items: Vec<u32>,
    pub targets: Vec<u32>,
}

/// Builds a training batch from windows, padded to the longest window.
pub fn train_batch(seqs: &[Vec<u32>], windows: &[Window]) -> Batch {
    let width = windows.iter().map(Window::len).max().unwrap_or(1).max(1);
    let mut items = vec![0u32; windows.len() * width];
    let mut targets = vec![0u32; windows.len() * width];
    for (r, w) in windows.iter().enumerate() {
        let s = &seqs[w.user as usize];
        let (a, b) = (w.start as usize, w.end as usize);
        items[r * width..r * width + (b - a)].copy_from_slice(&s[a..b]);
        for i in w.first as usize..(b - a) {
            targets[r * width + i] = s[a + i + 1];
        }
    }
    Batch { rows: windows.len(), width, items, targets }
}

/// Builds an evaluation batch (items only) from evaluation windows.
pub fn eval_batch(seqs: &[Vec<u32>], windows: &[EvalWindow]) -> Batch {
    let width = windows.iter().map(|w| (w.end - w.start) as usize).max().unwrap_or(1).max(1);
    let mut items = vec![0u32; windows.len() * width];
    for (r, w) in windows.iter().enumerate() {
        let (a, b) = (w.start as usize, w.end as usize);
        items[r * width..r * width + (b - a)].copy_from_slice(&seqs[w.user as usize][a..b]);
    }
    Batch { rows: windows.len(), width, items, targets: Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::split::Protocol;

    fn targets_of(seqs: &[Vec<u32>], ws: &[Window]) -> Vec<(u32, u32, u32)> {
        // (user, target position, context length)
        let mut out = Vec::new();
        for w in ws {
            for i in w.first..(w.end - w.start) {
                out.push((w.user, w.start + i + 1, i + 1));
            }
            assert!(w.end as usize <= seqs[w.user as usize].len());
        }
        out.sort();
        out
    }

    #[test]
    fn both_modes_cover_each_target_once() {
        let seqs: Vec<Vec<u32>> = vec![(1..=9).collect(), (1..=30).collect()];
        let split = Split::new(&seqs, Protocol::Paper); // train_end 7 and 23
        let max_len = 8;
        let prefix = targets_of(&seqs, &train_windows(&split, max_len, SampleMode::Prefix));
        let seq = targets_of(&seqs, &train_windows(&split, max_len, SampleMode::Sequence));
        let key = |v: &[(u32, u32, u32)]| v.iter().map(|t| (t.0, t.1)).collect::<Vec<_>>();
        assert_eq!(key(&prefix), key(&seq));
        assert_eq!(prefix.len(), 6 + 22);
        // Prefix mode: context min(p, L). Sequence mode: same up to L, then at least L/2.
        for (&(u, p, c1), &(_, _, c2)) in prefix.iter().zip(&seq) {
            assert_eq!(c1, p.min(8), "user {u} pos {p}");
            if p <= 8 {
                assert_eq!(c2, c1);
            } else {
                assert!((4..=8).contains(&c2), "context {c2} at {p}");
            }
        }
    }

    #[test]
    fn eval_windows_share_one_pass_when_history_fits() {
        let inst = vec![Instance { user: 0, pos: 3 }, Instance { user: 0, pos: 4 }, Instance { user: 1, pos: 12 }];
        let w = eval_windows(&inst, 10);
        assert_eq!(w[0], EvalWindow { user: 0, start: 0, end: 4, reads: vec![(2, 0), (3, 1)] });
        assert_eq!(w[1], EvalWindow { user: 1, start: 2, end: 12, reads: vec![(9, 2)] });
    }

    #[test]
    fn train_batch_pads_and_places_targets() {
        let seqs = vec![vec![5, 6, 7, 8]];
        let ws = [Window { user: 0, start: 0, end: 3, first: 0 }, Window { user: 0, start: 1, end: 2, first: 0 }];
        let b = train_batch(&seqs, &ws);
        assert_eq!((b.rows, b.width), (2, 3));
        assert_eq!(b.items, vec![5, 6, 7, 6, 0, 0]);
        assert_eq!(b.targets, vec![6, 7, 8, 7, 0, 0]);
    }
}
