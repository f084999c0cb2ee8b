//! Dataset statistics in the layout of the paper's Table 1, and the training context each
//! sample mode gives the training targets.

use super::batch::{epoch_positions, train_windows, SampleMode};
use super::split::{Protocol, Split};
use super::{Dataset, DatasetId};

/// One column of Table 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    pub dataset: String,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// interactions / users
    pub avg_len: f64,
    /// 1 - interactions / (users * items), in percent
    pub sparsity_pct: f64,
}

impl Stats {
    pub fn of(ds: &Dataset) -> Self {
        let users = ds.sequences.len();
        let items = ds.n_items;
        let interactions = ds.n_interactions();
        Self {
            dataset: ds.name.clone(),
            users,
            items,
            interactions,
            avg_len: interactions as f64 / users.max(1) as f64,
            sparsity_pct: 100.0 * (1.0 - interactions as f64 / (users as f64 * items as f64).max(1.0)),
        }
    }
}

/// How much earlier history the training targets see under `train.sample_mode = "sequence"`,
/// against prefix augmentation (the released code's and RecBole's samples).
///
/// The target at sequence position `q` (1-based: `q` earlier items) sees `min(q, L)` items under
/// prefix augmentation. A sequence-mode window `[start, end)` gives it `q - start`: every target
/// of a user's first window sees its whole prefix; a later window (laid `L / 2` after the last)
/// gives its targets between `L - L/2 + 1` and `L` items, so a target is *shortened* when
/// `q - start < min(q, L)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub dataset: String,
    pub protocol: Protocol,
    pub max_len: usize,
    pub targets: usize,
    /// Targets with more than `max_len` earlier items (truncated in every mode).
    pub beyond_max_len: usize,
    /// Targets sequence mode shows fewer earlier items than prefix augmentation does.
    pub shortened: usize,
    /// The fewest earlier items a shortened target sees (0 when none is shortened).
    pub shortest: usize,
    /// Positions one epoch runs the network over (the sum of window lengths), in
    /// [`Context::MODES`] order: the per-epoch cost of each mode, up to attention's extra
    /// factor of the window length.
    pub positions: [usize; 3],
}

impl Context {
    /// The modes whose cost [`Context::positions`] counts.
    pub const MODES: [SampleMode; 3] = [SampleMode::Sequence, SampleMode::FullContext, SampleMode::Prefix];

    pub fn of(ds: &Dataset, protocol: Protocol, max_len: usize) -> Self {
        let split = Split::new(&ds.sequences, protocol);
        let mut c = Self {
            dataset: ds.name.clone(),
            protocol,
            max_len,
            targets: split.n_train_targets(),
            beyond_max_len: 0,
            shortened: 0,
            shortest: 0,
            positions: Self::MODES.map(|m| epoch_positions(&split, max_len, m)),
        };
        for w in train_windows(&split, max_len, SampleMode::Sequence) {
            for k in w.first as usize..w.len() {
                let q = w.start as usize + k + 1; // the target's earlier items
                let seen = k + 1;
                if seen < q.min(max_len) {
                    c.shortened += 1;
                    c.shortest = if c.shortest == 0 { seen } else { c.shortest.min(seen) };
                }
            }
        }
        c.beyond_max_len = split.train_end.iter().map(|&e| (e as usize).saturating_sub(max_len + 1)).sum();
        c
    }

    pub fn shortened_pct(&self) -> f64 {
        100.0 * self.shortened as f64 / self.targets.max(1) as f64
    }
}

/// Renders [`Context`] rows as a Markdown table.
pub fn render_context(rows: &[Context]) -> String {
    let mut out = String::from(
        "| Dataset | Protocol | Training targets | With > max_len earlier items | Shortened by sequence mode | Fewest items a shortened target sees | Positions per epoch: sequence | full-context | prefix |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for c in rows {
        let ratio = |n: usize| format!("{} ({:.1}x)", thousands(n), n as f64 / c.positions[0].max(1) as f64);
        out += &format!(
            "| {} | {} | {} | {} | {} ({:.1}%) | {} | {} | {} | {} |\n",
            c.dataset,
            c.protocol.name(),
            thousands(c.targets),
            thousands(c.beyond_max_len),
            thousands(c.shortened),
            c.shortened_pct(),
            if c.shortened == 0 { "-".to_string() } else { format!("{} of {}", c.shortest, c.max_len) },
            thousands(c.positions[0]),
            ratio(c.positions[1]),
            ratio(c.positions[2]),
        );
    }
    out
}

/// The paper's Table 1: (users, items, interactions, average length, sparsity %).
pub fn paper_table1(id: DatasetId) -> Option<(usize, usize, usize, f64, f64)> {
    match id {
        DatasetId::Beauty => Some((22_363, 12_101, 198_502, 8.88, 99.93)),
        DatasetId::Clothing => Some((39_387, 23_033, 278_677, 7.12, 99.97)),
        DatasetId::Sports => Some((35_598, 18_357, 296_337, 8.46, 99.95)),
        DatasetId::Toys => Some((19_412, 11_924, 167_597, 8.79, 99.93)),
        DatasetId::Ml1m => Some((6_040, 3_416, 999_611, 165.50, 95.16)),
        DatasetId::Ml100k => None,
    }
}

/// How a computed row compares with the paper's Table 1.
#[derive(Debug, Clone, PartialEq)]
pub enum PaperCheck {
    /// The dataset has no column in Table 1.
    NotInPaper,
    /// Users, items, interactions and sparsity (2 decimals) equal the paper's.
    Matches {
        /// The paper's average length when it differs from its own interactions / users
        /// (Clothing, Sports and Toys: the printed values are not interactions / users).
        paper_avg_len_differs: Option<f64>,
    },
    Differs(String),
}

impl PaperCheck {
    pub fn is_mismatch(&self) -> bool {
        matches!(self, Self::Differs(_))
    }
}

pub fn check_against_paper(id: DatasetId, s: &Stats) -> PaperCheck {
    let Some((u, i, n, avg, sp)) = paper_table1(id) else { return PaperCheck::NotInPaper };
    let round2 = |x: f64| (x * 100.0).round() / 100.0;
    if (s.users, s.items, s.interactions) != (u, i, n) {
        return PaperCheck::Differs(format!("paper has {u} / {i} / {n}"));
    }
    if round2(s.sparsity_pct) != sp {
        return PaperCheck::Differs(format!("paper sparsity {sp}%"));
    }
    PaperCheck::Matches { paper_avg_len_differs: (round2(s.avg_len) != avg).then_some(avg) }
}

/// Renders rows as a Markdown table with a comparison column against Table 1.
pub fn render_markdown(rows: &[(Stats, PaperCheck)]) -> String {
    let mut out = String::from(
        "| Dataset | Users | Items | Interactions | Avg. length | Sparsity | Paper Table 1 |\n|---|---:|---:|---:|---:|---:|---|\n",
    );
    for (s, m) in rows {
        let verdict = match m {
            PaperCheck::Matches { paper_avg_len_differs: None } => "matches".to_string(),
            PaperCheck::Matches { paper_avg_len_differs: Some(a) } => {
                format!("counts match; the paper prints avg. length {a:.2}, not interactions / users")
            }
            PaperCheck::Differs(why) => format!("DIFFERS: {why}"),
            PaperCheck::NotInPaper => "(not in the paper)".to_string(),
        };
        out += &format!(
            "| {} | {} | {} | {} | {:.2} | {:.2}% | {} |\n",
            s.dataset,
            thousands(s.users),
            thousands(s.items),
            thousands(s.interactions),
            s.avg_len,
            s.sparsity_pct,
            verdict
        );
    }
    out
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_small_dataset() {
        let ds = Dataset {
            name: "t".into(),
            n_items: 4,
            sequences: vec![vec![1, 2, 3], vec![4, 1]],
            item_tokens: vec!["a".into(); 4],
        };
        let s = Stats::of(&ds);
        assert_eq!((s.users, s.items, s.interactions), (2, 4, 5));
        assert!((s.avg_len - 2.5).abs() < 1e-12);
        assert!((s.sparsity_pct - 37.5).abs() < 1e-9);
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }

    #[test]
    fn sequence_mode_shortens_the_targets_of_later_windows() {
        // One user of 14 items, released protocol: a training part of 12 items, targets
        // q = 1..=11. L = 4, stride 2: window [0,4) holds q 1-4 (whole prefixes); [2,6) q 5, 6
        // (3 and 4 items); [4,8) q 7, 8; [6,10) q 9, 10; [7,11) q 11 (4). Shortened: q 5, 7, 9.
        let ds = Dataset { name: "t".into(), n_items: 14, sequences: vec![(1..=14).collect()], item_tokens: vec![] };
        let c = Context::of(&ds, Protocol::Released, 4);
        assert_eq!(c.targets, 11);
        assert_eq!(c.beyond_max_len, 7, "q = 5..=11");
        assert_eq!((c.shortened, c.shortest), (3, 3));
        // Positions: sequence 5 windows of 4; full-context [0,4) and a window of 4 for each of
        // q 5..=11; prefix min(q, 4) for each q: 1 + 2 + 3 + 4 + 7 * 4.
        assert_eq!(c.positions, [20, 4 + 7 * 4, 10 + 7 * 4]);
        let prefix_only = Context::of(&ds, Protocol::Released, 50);
        assert_eq!((prefix_only.shortened, prefix_only.beyond_max_len), (0, 0));
    }
}
