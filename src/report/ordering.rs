//! The report's ordering section: on each line of the table (one dataset and metric), do the
//! models come in the paper's order? Kendall's τ-b between our means and the paper's values
//! over the columns that have both, and the two orders written out.

use super::table::Table;
use std::fmt::Write as _;

/// Kendall's τ-b of paired values: `(C - D) / √((n₀ - t_x)(n₀ - t_y))`, `C` / `D` the concordant
/// / discordant pairs, `n₀ = n(n-1)/2`, `t_x`, `t_y` the pairs tied in one variable. None when
/// fewer than 2 pairs or one variable is constant.
pub fn kendall_tau_b(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    let (mut c, mut d, mut tx, mut ty) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            use std::cmp::Ordering::Equal;
            // NaN compares as a tie: it never counts as concordant or discordant.
            let a = x[i].partial_cmp(&x[j]).unwrap_or(Equal);
            let b = y[i].partial_cmp(&y[j]).unwrap_or(Equal);
            match (a == Equal, b == Equal) {
                (true, true) => {
                    tx += 1;
                    ty += 1;
                }
                (true, false) => tx += 1,
                (false, true) => ty += 1,
                (false, false) if a == b => c += 1,
                (false, false) => d += 1,
            }
        }
    }
    let n0 = (n * n.saturating_sub(1) / 2) as i64;
    let denom = (((n0 - tx) * (n0 - ty)) as f64).sqrt();
    (n0 > 0 && denom > 0.0).then(|| (c - d) as f64 / denom)
}

/// The section (Markdown), or None when the table has no line with three or more columns that
/// carry both our mean and the paper's value and no column with three or more such rows of one
/// metric, or when its lines are not one metric each.
pub fn section(table: &Table) -> Option<String> {
    if !table.metric_in_rows {
        return None;
    }
    let parts: Vec<String> = [along_lines(table), across_rows(table)].into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// Both orders of `(name, ours, paper)` entries, best first, and τ-b between them.
fn orders(both: &[(String, f64, f64)]) -> (String, String, String) {
    let (ours, paper): (Vec<f64>, Vec<f64>) = both.iter().map(|(_, a, b)| (*a, *b)).unzip();
    let order = |v: &[f64]| -> String {
        let mut idx: Vec<usize> = (0..both.len()).collect();
        idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
        idx.iter().map(|&i| both[i].0.as_str()).collect::<Vec<_>>().join(" > ")
    };
    let tau = kendall_tau_b(&ours, &paper).map_or("-".into(), |t| format!("{t:+.2}"));
    (tau, order(&ours), order(&paper))
}

/// Per line (one dataset and metric), the columns' order. Lines whose paper values are all
/// equal (one published number beside every column, e.g. one model under several protocols)
/// have no paper order and are left out.
fn along_lines(table: &Table) -> Option<String> {
    let mut rows = String::new();
    for (r, key) in table.row_keys.iter().enumerate() {
        let both: Vec<(String, f64, f64)> = (0..table.col_keys.len())
            .filter_map(|c| {
                let cell = &table.cells[r][c];
                Some((table.col_keys[c].join(" "), cell.ours?.mean, cell.paper?))
            })
            .collect();
        if both.len() < 3 || both.iter().all(|(_, _, p)| *p == both[0].2) {
            continue;
        }
        let (tau, ours, paper) = orders(&both);
        let _ = writeln!(rows, "| {} | {} | {tau} | {ours} | {paper} |", key.join(" | "), both.len());
    }
    if rows.is_empty() {
        return None;
    }
    let head: Vec<String> = table.row_header.clone();
    Some(format!(
        "Per line of the table, the columns that have both our mean and the paper's value, best first, and \
         Kendall's τ-b between the two (+1: the paper's order, -1: reversed; a column with fewer seeds than \
         the others is ranked by what it has).\n\n| {} | columns | τ | ours | paper |\n|{}---:|---:|---|---|\n{rows}",
        head.join(" | "),
        "---|".repeat(head.len())
    ))
}

/// Per column, dataset and metric, the order of the rows (the models, where they are rows of
/// the table): for tables whose rows name more than the dataset and the metric.
fn across_rows(table: &Table) -> Option<String> {
    let fixed: Vec<usize> = table
        .row_header
        .iter()
        .enumerate()
        .filter(|(_, h)| *h == "dataset" || *h == "metric")
        .map(|(i, _)| i)
        .collect();
    if fixed.len() == table.row_header.len() {
        return None;
    }
    let item = |key: &[String]| -> String {
        key.iter()
            .enumerate()
            .filter(|(i, _)| !fixed.contains(i))
            .map(|(_, k)| k.as_str())
            .collect::<Vec<_>>()
            .join(" / ")
    };
    let group = |key: &[String]| -> Vec<String> { fixed.iter().map(|&i| key[i].clone()).collect() };
    let mut groups: Vec<Vec<String>> = Vec::new();
    for key in &table.row_keys {
        let g = group(key);
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let mut rows = String::new();
    for (c, col) in table.col_keys.iter().enumerate() {
        for g in &groups {
            let both: Vec<(String, f64, f64)> = (0..table.row_keys.len())
                .filter(|&r| group(&table.row_keys[r]) == *g)
                .filter_map(|r| {
                    let cell = &table.cells[r][c];
                    Some((item(&table.row_keys[r]), cell.ours?.mean, cell.paper?))
                })
                .collect();
            if both.len() < 3 {
                continue;
            }
            let (tau, ours, paper) = orders(&both);
            let _ =
                writeln!(rows, "| {} | {} | {} | {tau} | {ours} | {paper} |", col.join(" "), g.join(" | "), both.len());
        }
    }
    if rows.is_empty() {
        return None;
    }
    let head: Vec<&str> = fixed.iter().map(|&i| table.row_header[i].as_str()).collect();
    Some(format!(
        "Per column of the table, dataset and metric, the rows that have both our mean and the paper's value, \
         best first, and Kendall's τ-b between the two (+1: the paper's order, -1: reversed; a row with fewer \
         seeds than the others is ranked by what it has).\n\n| column | {} | rows | τ | ours | paper |\n|---|{}---:|---:|---|---|\n{rows}",
        head.join(" | "),
        "---|".repeat(head.len())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::aggregate::Stat;
    use crate::report::table::Cell;

    #[test]
    fn kendall_tau_b_known_values() {
        assert_eq!(kendall_tau_b(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(kendall_tau_b(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // One swap of four: C = 5, D = 1, no ties.
        let t = kendall_tau_b(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert!((t - 4.0 / 6.0).abs() < 1e-12, "{t}");
        // Ties (scipy.stats.kendalltau([1, 2, 2, 3], [1, 2, 3, 3]) = 0.8).
        let t = kendall_tau_b(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 3.0]).unwrap();
        assert!((t - 0.8).abs() < 1e-12, "{t}");
        assert_eq!(kendall_tau_b(&[1.0, 1.0], &[1.0, 2.0]), None);
        assert_eq!(kendall_tau_b(&[1.0], &[1.0]), None);
    }

    fn cell(ours: Option<f64>, paper: Option<f64>) -> Cell {
        let stat = ours.map(|mean| Stat { mean, std: 0.0, n: 1, ci95: 0.0, p: None });
        Cell { ours: stat, paper, rank: None }
    }

    /// Models as rows, two protocols as columns; the paper's values repeat across columns.
    fn models_by_protocol() -> Table {
        let key = |m: &str| vec!["Beauty".to_string(), m.to_string(), "H@20".to_string()];
        Table {
            row_header: vec!["dataset".into(), "variant".into(), "metric".into()],
            row_keys: vec![key("A"), key("B"), key("C"), key("D")],
            col_keys: vec![vec!["hold-out".into()], vec!["released".into()]],
            cells: vec![
                vec![cell(Some(3.0), Some(30.0)), cell(Some(1.0), Some(30.0))],
                vec![cell(Some(2.0), Some(20.0)), cell(Some(2.0), Some(20.0))],
                vec![cell(Some(1.0), Some(10.0)), cell(Some(3.0), Some(10.0))],
                vec![cell(None, Some(5.0)), cell(Some(0.0), None)],
            ],
            paper_cols: vec![true, true],
            reference: None,
            metric_in_rows: true,
        }
    }

    #[test]
    fn rows_are_ordered_per_column_and_constant_paper_lines_are_left_out() {
        let text = section(&models_by_protocol()).expect("a section");
        assert!(!text.contains("Per line of the table"), "each line's paper values are one number: {text}");
        assert!(text.contains("| hold-out | Beauty | H@20 | 3 | +1.00 | A > B > C | A > B > C |"), "{text}");
        assert!(text.contains("| released | Beauty | H@20 | 3 | -1.00 | C > B > A | A > B > C |"), "{text}");
    }
}
