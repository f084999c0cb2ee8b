//! Dataset statistics in the layout of the paper's Table 1.

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
}
