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
//!   it `L`): an approximation wherever a user has more than `L` training inputs (`kdsr data
//!   stats` counts those targets per dataset: about 1% on the Amazon datasets, most of ML-1M's).
//! - [`SampleMode::FullContext`]: prefix augmentation's samples exactly, at sequence mode's cost
//!   where sequences are short: one window per user over its first `L` targets (each sees its
//!   whole prefix), then one window `s[p-L..p]` per later target `p`, as prefix mode lays it.
//!
//! Masked-item training ([`SampleMode::Cloze`], for bidirectional backbones with a mask token)
//! draws its targets at batch time instead: one window per user over its last `L` training
//! items (the last one included), and [`cloze_batch`] picks the cells to predict.

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
    /// Sequence mode for each user's first `L` targets, prefix windows for the later ones.
    FullContext,
    /// Masked-item (cloze) training: each user's last `L` training items, in which
    /// [`cloze_batch`] masks cells whose own items become the targets.
    Cloze,
}

/// The width a row of `len` real cells (left-aligned) is computed at: the next of 1, 2, 3, 4,
/// 6, 8, 12, 16, ... (powers of two and their 1.5x: at most a third of a group is padding), at
/// most the batch's width `t`.
pub fn row_width(len: usize, t: usize) -> usize {
    let p = len.max(1).next_power_of_two();
    let w = if p >= 4 && len <= p / 4 * 3 { p / 4 * 3 } else { p };
    w.min(t)
}

/// The width a training step runs a prefix row of `len` real cells at, grouping rows of similar
/// length (`train::step::by_width`): 8, 16 or the batch's width `t`. Coarser than
/// [`row_width`]: every group is a separate forward pass, whose lookups each add a whole
/// table's gradient.
pub fn group_width(len: usize, t: usize) -> usize {
    let w = match len {
        0..=8 => 8,
        9..=16 => 16,
        _ => t,
    };
    w.min(t)
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

/// Positions one epoch runs the network over in `mode`: the sum of [`train_windows`]' lengths.
pub fn epoch_positions(split: &Split, max_len: usize, mode: SampleMode) -> usize {
    train_windows(split, max_len, mode).iter().map(Window::len).sum()
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
            SampleMode::FullContext => {
                let end = last_target.min(l);
                out.push(Window { user, start: 0, end, first: 0 });
                for p in end + 1..=last_target {
                    out.push(Window { user, start: p - l, end: p, first: l - 1 });
                }
            }
            SampleMode::Cloze => {
                out.push(Window { user, start: train_end.saturating_sub(l), end: train_end, first: 0 });
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
/// history fits in `max_len` items (with `merge`: exact for causal backbones only; see the
/// module docs); longer histories, and every instance without `merge`, get a window of their
/// own, truncated to the last `max_len` items.
pub fn eval_windows(instances: &[Instance], max_len: usize, merge: bool) -> Vec<EvalWindow> {
    let l = max_len as u32;
    let mut out: Vec<EvalWindow> = Vec::new();
    let mut head_of_user: std::collections::HashMap<u32, usize> = Default::default();
    for (k, inst) in instances.iter().enumerate() {
        let k = k as u32;
        if !merge {
            let start = inst.pos.saturating_sub(l);
            out.push(EvalWindow { user: inst.user, start, end: inst.pos, reads: vec![(inst.pos - start - 1, k)] });
        } else if inst.pos <= l {
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

/// How a training step's batch size is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum BatchUnit {
    /// Training targets per step (the paper's and RecBole's unit: a batch of 256 prefixes is
    /// 256 targets). A window whose targets overflow a step is split: its first targets finish
    /// the step, and the rest start the next one with the same context.
    #[default]
    Targets,
    /// Windows per step (whole sequences in `sequence` mode), whatever their target count.
    Sequences,
}

impl BatchUnit {
    /// The unit of run files written before the unit was configurable.
    pub fn legacy() -> Self {
        Self::Sequences
    }
}

impl Window {
    /// Number of training targets in the window.
    pub fn targets(&self) -> usize {
        self.len() - self.first as usize
    }
}

/// Splits `windows` (in their order) into the steps of an epoch, `size` units each (the last
/// step may be smaller).
pub fn steps(windows: &[Window], size: usize, unit: BatchUnit) -> Vec<Vec<Window>> {
    let size = size.max(1);
    if unit == BatchUnit::Sequences {
        return windows.chunks(size).map(<[Window]>::to_vec).collect();
    }
    let (mut out, mut cur, mut n) = (Vec::new(), Vec::new(), 0usize);
    for &w in windows {
        let mut w = w;
        loop {
            let t = w.targets();
            if n + t < size {
                cur.push(w);
                n += t;
                break;
            }
            let k = size - n; // 1 ..= t targets close this step
            cur.push(Window { end: w.start + w.first + k as u32, ..w });
            out.push(std::mem::take(&mut cur));
            n = 0;
            if k == t {
                break;
            }
            w.first += k as u32;
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// How windows are laid out in a batch's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One window per row, left-aligned, padded to the longest window.
    Padded,
    /// Several windows per row (first-fit decreasing into rows as wide as the longest window),
    /// each at its own positions `0..len`. Only valid for backbones that keep sequences apart
    /// (a block-diagonal causal mask, a recurrence reset at each sequence start).
    Packed,
}

/// A batch of rows of `width` cells, row-major `[rows, width]`; item 0 and target 0 mean
/// "none". `pos[c]` is cell `c`'s position within its own sequence: a sequence starts at each
/// cell with position 0 and continues while positions count up, so cell `c` may see the cells
/// `c - pos[c] ..= c` of its row. Padding cells hold item 0 at position 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub rows: usize,
    pub width: usize,
    pub items: Vec<u32>,
    pub targets: Vec<u32>,
    pub pos: Vec<u32>,
    /// Cloze batches only (else empty): per cell, whether its input is the mask token (its
    /// item, kept in `items`, is hidden from the model).
    pub masked: Vec<bool>,
}

impl Batch {
    /// The item slices of the batch's sequences, padding excluded, in cell order.
    pub fn sequences(&self) -> impl Iterator<Item = &[u32]> + '_ {
        let starts: Vec<usize> = (0..self.items.len()).filter(|&c| self.pos[c] == 0).collect();
        let ends: Vec<usize> = starts.iter().skip(1).copied().chain(std::iter::once(self.items.len())).collect();
        starts.into_iter().zip(ends).map(|(a, b)| &self.items[a..b]).filter(|s| s[0] != 0)
    }

    /// Per cell: the column of its row where its sequence starts.
    pub fn seq_starts(&self) -> Vec<u32> {
        (0..self.items.len()).map(|c| (c % self.width) as u32 - self.pos[c]).collect()
    }

    /// Real (non-padding) cells.
    pub fn real_cells(&self) -> usize {
        self.items.iter().filter(|&&i| i != 0).count()
    }
}

/// Places segments of lengths `lens` into rows: `(row, column offset)` per segment, the row
/// count and the width. Padded: one per row. Packed: first-fit decreasing into rows as wide as
/// the longest segment (ties keep their order, so the layout is deterministic).
fn place(lens: &[usize], layout: Layout) -> (Vec<(usize, usize)>, usize, usize) {
    let width = lens.iter().copied().max().unwrap_or(1).max(1);
    if layout == Layout::Padded {
        return ((0..lens.len()).map(|r| (r, 0)).collect(), lens.len(), width);
    }
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(lens[k]));
    let mut fill: Vec<usize> = Vec::new();
    let mut at = vec![(0, 0); lens.len()];
    for k in order {
        let row = match fill.iter().position(|&f| f + lens[k] <= width) {
            Some(r) => r,
            None => {
                fill.push(0);
                fill.len() - 1
            }
        };
        at[k] = (row, fill[row]);
        fill[row] += lens[k];
    }
    (at, fill.len(), width)
}

/// Lays out segments `(user, start, end)` of `seqs`; returns the batch (targets empty) and the
/// first cell of each segment.
fn lay_out(seqs: &[Vec<u32>], segs: &[(u32, u32, u32)], layout: Layout) -> (Batch, Vec<usize>) {
    let lens: Vec<usize> = segs.iter().map(|&(_, a, b)| (b - a) as usize).collect();
    let (at, rows, width) = place(&lens, layout);
    let mut items = vec![0u32; rows * width];
    let mut pos = vec![0u32; rows * width];
    let mut first = Vec::with_capacity(segs.len());
    for (&(u, a, b), &(r, o)) in segs.iter().zip(&at) {
        let c = r * width + o;
        items[c..c + (b - a) as usize].copy_from_slice(&seqs[u as usize][a as usize..b as usize]);
        pos[c..c + (b - a) as usize].iter_mut().enumerate().for_each(|(i, p)| *p = i as u32);
        first.push(c);
    }
    (Batch { rows, width, items, targets: vec![0; rows * width], pos, masked: Vec::new() }, first)
}

/// Builds a training batch from windows.
pub fn train_batch(seqs: &[Vec<u32>], windows: &[Window], layout: Layout) -> Batch {
    let segs: Vec<(u32, u32, u32)> = windows.iter().map(|w| (w.user, w.start, w.end)).collect();
    let (mut batch, first) = lay_out(seqs, &segs, layout);
    for (w, c) in windows.iter().zip(first) {
        let s = &seqs[w.user as usize];
        for i in w.first as usize..w.len() {
            batch.targets[c + i] = s[w.start as usize + i + 1];
        }
    }
    batch
}

/// The masking of a cloze batch, as the MMSRec reference draws it (`ce_mask_ratio`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cloze {
    /// Probability that a cell other than the last becomes a target; the last always does.
    pub ratio: f64,
    /// Items to draw random replacements from: `1..=n_items`.
    pub n_items: usize,
}

/// Builds a masked-item (cloze) batch from [`SampleMode::Cloze`] windows (one per row,
/// left-aligned). Every real cell becomes a target with probability `ratio`, the window's
/// last cell always. A target cell's input is then, in two independent draws of
/// probability 0.1 each as in the reference (`FusionEncoderForMaskedLM.mlm`): kept when the
/// second succeeds, else a uniformly drawn item when the first does, else the mask (81% of
/// targets); the last cell is always the mask. Targets are the cells' own items.
pub fn cloze_batch(seqs: &[Vec<u32>], windows: &[Window], cloze: Cloze, rng: &mut impl rand::Rng) -> Batch {
    let segs: Vec<(u32, u32, u32)> = windows.iter().map(|w| (w.user, w.start, w.end)).collect();
    let (mut batch, first) = lay_out(seqs, &segs, Layout::Padded);
    batch.masked = vec![false; batch.items.len()];
    for (w, c) in windows.iter().zip(first) {
        let n = w.len();
        for i in 0..n {
            let cell = c + i;
            let last = i + 1 == n;
            if !(last || rng.random_bool(cloze.ratio)) {
                continue;
            }
            let original = batch.items[cell];
            batch.targets[cell] = original;
            let replace = rng.random_bool(0.1);
            let keep = rng.random_bool(0.1);
            if last || !(keep || replace) {
                batch.masked[cell] = true;
            } else if !keep {
                batch.items[cell] = rng.random_range(1..=cloze.n_items as u32);
            }
        }
    }
    batch
}

/// Builds an evaluation batch (targets empty) from evaluation windows; also returns
/// `(cell, instance)` for every read.
pub fn eval_batch(seqs: &[Vec<u32>], windows: &[EvalWindow], layout: Layout) -> (Batch, Vec<(u32, u32)>) {
    let segs: Vec<(u32, u32, u32)> = windows.iter().map(|w| (w.user, w.start, w.end)).collect();
    let (batch, first) = lay_out(seqs, &segs, layout);
    let reads =
        windows.iter().zip(first).flat_map(|(w, c)| w.reads.iter().map(move |&(p, k)| (c as u32 + p, k))).collect();
    (batch, reads)
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
    fn full_context_windows_are_prefix_windows_beyond_max_len() {
        // One user of 14 items, released protocol: targets at positions 1..=11; L = 4.
        let split = Split::new(&[(1..=14).collect()], Protocol::Released);
        let reads = |mode| -> Vec<(u32, u32)> {
            let mut r: Vec<(u32, u32)> = train_windows(&split, 4, mode)
                .iter()
                .flat_map(|w| (w.first..w.end - w.start).map(move |k| (w.start + k + 1, w.start)))
                .collect();
            r.sort();
            r
        };
        let full = train_windows(&split, 4, SampleMode::FullContext);
        assert_eq!(full.len(), 1 + 7, "one window for targets 1-4, one per target 5-11");
        // Each target once, with prefix mode's window start.
        assert_eq!(reads(SampleMode::FullContext), reads(SampleMode::Prefix));
        assert_ne!(reads(SampleMode::Sequence), reads(SampleMode::Prefix));
    }

    #[test]
    fn cloze_windows_end_at_the_last_training_item() {
        let seqs: Vec<Vec<u32>> = vec![(1..=9).collect(), (1..=30).collect(), vec![1, 2, 3], vec![1, 2]];
        let split = Split::new(&seqs, Protocol::Paper);
        assert_eq!(split.train_end, vec![7, 23, 2, 1]);
        let ws = train_windows(&split, 8, SampleMode::Cloze);
        // The last L = 8 training items (positions ..train_end), none for a single training item.
        assert_eq!(
            ws,
            vec![
                Window { user: 0, start: 0, end: 7, first: 0 },
                Window { user: 1, start: 15, end: 23, first: 0 },
                Window { user: 2, start: 0, end: 2, first: 0 }
            ]
        );
    }

    #[test]
    fn cloze_batch_masks_as_the_reference_draws() {
        use rand::SeedableRng;
        let n_items = 1000u32;
        let seqs: Vec<Vec<u32>> =
            (0..2000).map(|u| (0..20).map(|i| 1 + (u * 7 + i * 13) % n_items).collect()).collect();
        let ws: Vec<Window> = (0..2000).map(|u| Window { user: u, start: 2, end: 20, first: 0 }).collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let b = cloze_batch(&seqs, &ws, Cloze { ratio: 0.2, n_items: n_items as usize }, &mut rng);
        assert_eq!((b.rows, b.width, b.masked.len()), (2000, 18, 2000 * 18));
        let (mut targets, mut masked, mut replaced, mut kept) = (0, 0, 0, 0);
        for (r, w) in ws.iter().enumerate() {
            let original = &seqs[w.user as usize][2..20];
            for (i, &o) in original.iter().enumerate() {
                let c = r * 18 + i;
                if i == 17 {
                    // The last cell: always a target, always the mask.
                    assert!(b.masked[c] && b.targets[c] == o && b.items[c] == o);
                    continue;
                }
                if b.targets[c] == 0 {
                    assert!(!b.masked[c] && b.items[c] == o, "a cell that is no target keeps its input");
                    continue;
                }
                assert_eq!(b.targets[c], o, "a target is the cell's own item");
                targets += 1;
                match (b.masked[c], b.items[c] == o) {
                    (true, true) => masked += 1,
                    (false, false) => replaced += 1,
                    (false, true) => kept += 1,
                    (true, false) => panic!("a masked cell keeps its item in `items`"),
                }
            }
        }
        let cells = 2000.0 * 17.0;
        let share = |k: i32| k as f64 / targets as f64;
        assert!((targets as f64 / cells - 0.2).abs() < 0.01, "target share {}", targets as f64 / cells);
        assert!((share(masked) - 0.81).abs() < 0.02, "masked {}", share(masked));
        // Random draws may hit the original item (1 in 1000): counted as kept.
        assert!((share(replaced) - 0.09).abs() < 0.015, "replaced {}", share(replaced));
        assert!((share(kept) - 0.10).abs() < 0.015, "kept {}", share(kept));
        assert!(b.items.iter().all(|&i| (1..=n_items).contains(&i)));
        // The same generator state draws the same batch.
        let mut again = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        assert_eq!(cloze_batch(&seqs, &ws, Cloze { ratio: 0.2, n_items: n_items as usize }, &mut again), b);
    }

    #[test]
    fn eval_windows_share_one_pass_when_history_fits() {
        let inst = vec![Instance { user: 0, pos: 3 }, Instance { user: 0, pos: 4 }, Instance { user: 1, pos: 12 }];
        let w = eval_windows(&inst, 10, true);
        assert_eq!(w[0], EvalWindow { user: 0, start: 0, end: 4, reads: vec![(2, 0), (3, 1)] });
        assert_eq!(w[1], EvalWindow { user: 1, start: 2, end: 12, reads: vec![(9, 2)] });
    }

    #[test]
    fn train_batch_pads_and_places_targets() {
        let seqs = vec![vec![5, 6, 7, 8]];
        let ws = [Window { user: 0, start: 0, end: 3, first: 0 }, Window { user: 0, start: 1, end: 2, first: 0 }];
        let b = train_batch(&seqs, &ws, Layout::Padded);
        assert_eq!((b.rows, b.width), (2, 3));
        assert_eq!(b.items, vec![5, 6, 7, 6, 0, 0]);
        assert_eq!(b.targets, vec![6, 7, 8, 7, 0, 0]);
        assert_eq!(b.pos, vec![0, 1, 2, 0, 0, 0]);
        assert_eq!(b.sequences().collect::<Vec<_>>(), vec![&[5, 6, 7][..], &[6][..]]);
    }

    #[test]
    fn packed_batch_shares_rows_and_keeps_sequences_apart() {
        let seqs = vec![vec![1, 2, 3, 4, 5], vec![6, 7, 8], vec![9, 10]];
        let ws = [
            Window { user: 0, start: 0, end: 4, first: 0 },
            Window { user: 1, start: 0, end: 2, first: 1 },
            Window { user: 2, start: 0, end: 1, first: 0 },
            Window { user: 1, start: 0, end: 1, first: 0 },
        ];
        let b = train_batch(&seqs, &ws, Layout::Packed);
        // Width 4 (the longest window); first-fit decreasing: [0] alone, then [1]+[2]+[3].
        assert_eq!((b.rows, b.width), (2, 4));
        assert_eq!(b.items, vec![1, 2, 3, 4, 6, 7, 9, 6]);
        assert_eq!(b.pos, vec![0, 1, 2, 3, 0, 1, 0, 0]);
        assert_eq!(b.targets, vec![2, 3, 4, 5, 0, 8, 10, 7]);
        assert_eq!(b.seq_starts(), vec![0, 0, 0, 0, 0, 0, 2, 3]);
        let seqs_of: Vec<&[u32]> = b.sequences().collect();
        assert_eq!(seqs_of, vec![&[1, 2, 3, 4][..], &[6, 7][..], &[9][..], &[6][..]]);
        // Same targets as the padded layout.
        let p = train_batch(&seqs, &ws, Layout::Padded);
        let mut t1: Vec<u32> = b.targets.iter().copied().filter(|&t| t > 0).collect();
        let mut t2: Vec<u32> = p.targets.iter().copied().filter(|&t| t > 0).collect();
        t1.sort();
        t2.sort();
        assert_eq!(t1, t2);
        assert!(b.items.len() < p.items.len());
    }

    #[test]
    fn target_steps_split_windows_at_the_step_size() {
        let ws = [
            Window { user: 0, start: 0, end: 5, first: 0 },  // 5 targets
            Window { user: 1, start: 0, end: 3, first: 1 },  // 2 targets
            Window { user: 2, start: 2, end: 10, first: 4 }, // 4 targets
        ];
        let s = steps(&ws, 3, BatchUnit::Targets);
        let count = |v: &[Window]| v.iter().map(Window::targets).sum::<usize>();
        assert_eq!(s.iter().map(|v| count(v)).collect::<Vec<_>>(), vec![3, 3, 3, 2]);
        assert_eq!(s[0], vec![Window { user: 0, start: 0, end: 3, first: 0 }]);
        assert_eq!(
            s[1],
            vec![Window { user: 0, start: 0, end: 5, first: 3 }, Window { user: 1, start: 0, end: 2, first: 1 }]
        );
        assert_eq!(
            s[2],
            vec![Window { user: 1, start: 0, end: 3, first: 2 }, Window { user: 2, start: 2, end: 8, first: 4 }]
        );
        assert_eq!(s[3], vec![Window { user: 2, start: 2, end: 10, first: 6 }]);
        let by_seq = steps(&ws, 2, BatchUnit::Sequences);
        assert_eq!(by_seq.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 1]);
    }

    #[test]
    fn eval_reads_point_at_their_cells_in_both_layouts() {
        let seqs = vec![vec![1, 2, 3, 4], vec![5, 6, 7]];
        let inst = vec![Instance { user: 0, pos: 2 }, Instance { user: 0, pos: 3 }, Instance { user: 1, pos: 2 }];
        let w = eval_windows(&inst, 10, true);
        for layout in [Layout::Padded, Layout::Packed] {
            let (b, reads) = eval_batch(&seqs, &w, layout);
            for (c, k) in reads {
                let i = &inst[k as usize];
                // The read cell holds the item just before the target.
                assert_eq!(b.items[c as usize], seqs[i.user as usize][i.pos as usize - 1]);
                assert_eq!(b.pos[c as usize], i.pos - 1);
            }
        }
    }

    #[test]
    fn rows_are_computed_at_the_width_their_length_needs() {
        assert_eq!(
            [1, 2, 3, 4, 5, 6, 7, 9, 12, 13, 25, 33, 50].map(|l| row_width(l, 50)),
            [1, 2, 3, 4, 6, 6, 8, 12, 12, 16, 32, 48, 50]
        );
        assert_eq!(row_width(0, 50), 1, "an empty row is one padding cell");
        assert_eq!(row_width(7, 6), 6, "never wider than the batch");
        assert_eq!([1, 8, 9, 16, 17, 50].map(|l| group_width(l, 50)), [8, 8, 16, 16, 50, 50]);
        assert_eq!(group_width(3, 5), 5);
    }
}
