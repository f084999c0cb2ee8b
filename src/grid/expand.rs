//! Pure expansion of a checked [`Grid`] into grid points: the cartesian product of the axes
//! (first axis outermost), minus the excluded points, plus the included ones, each with every
//! seed (seeds innermost). Nothing here knows RunConfig; see [`super::spec`].

use super::{Assign, Grid};
use anyhow::Result;
use std::ops::Range;

/// More points than this is almost certainly a mistake in the grid file.
pub const MAX_POINTS: usize = 100_000;

/// One run before it is checked against RunConfig.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Settings in order of precedence: `fixed` first, then the point's own (later wins).
    pub assigns: Vec<Assign>,
    /// Per plan column ([`Grid::columns`]), the value's label; `None` where the point sets
    /// nothing for that column.
    pub labels: Vec<Option<String>>,
    pub seed: u64,
    /// Position of `seed` in the grid's seed list (budgets keep the first few).
    pub seed_index: usize,
    /// Where the point comes from in the file (its first axis value, or its include entry).
    pub span: Range<usize>,
}

/// The grid points of `grid`, in a stable order.
pub fn expand(grid: &Grid) -> Result<Vec<Point>> {
    let n_product: usize =
        grid.axes.iter().map(|a| a.values.len()).try_fold(1usize, |acc, n| acc.checked_mul(n)).unwrap_or(usize::MAX);
    if n_product.saturating_mul(grid.seeds.len()) > MAX_POINTS {
        return Err(grid.source.file_error(format!(
            "the grid has {n_product} axis combinations x {} seeds, more than {MAX_POINTS} runs",
            grid.seeds.len()
        )));
    }
    // The points before seeds (seed fields filled in below).
    let mut bases: Vec<Point> = Vec::new();
    if !grid.axes.is_empty() || grid.include.is_empty() {
        let mut combo = vec![0usize; grid.axes.len()];
        loop {
            let excluded = grid.exclude.iter().any(|r| r.conds.iter().all(|(ai, vis)| vis.contains(&combo[*ai])));
            if !excluded {
                let mut assigns = grid.fixed.clone();
                let mut labels = vec![None; grid.columns.len()];
                for (ai, &vi) in combo.iter().enumerate() {
                    let v = &grid.axes[ai].values[vi];
                    assigns.extend(v.assigns.iter().cloned());
                    labels[ai] = Some(v.label.clone());
                }
                let span = grid.axes.first().map(|a| a.values[combo[0]].span.clone()).unwrap_or(0..0);
                bases.push(Point { assigns, labels, seed: 0, seed_index: 0, span });
            }
            if !advance(&mut combo, grid) {
                break;
            }
        }
    }
    for inc in &grid.include {
        let mut assigns = grid.fixed.clone();
        let mut labels = vec![None; grid.columns.len()];
        for a in &inc.assigns {
            assigns.push(a.clone());
            if let Some(c) = a.column {
                // A table value sets several keys of one column: show them together.
                let text = match &labels[c] {
                    None => super::label(&a.value),
                    Some(l) => format!("{l},{}", super::label(&a.value)),
                };
                labels[c] = Some(text);
            }
        }
        bases.push(Point { assigns, labels, seed: 0, seed_index: 0, span: inc.span.clone() });
    }
    if bases.is_empty() {
        return Err(grid.source.file_error("the exclude rules remove every grid point"));
    }
    let mut points = Vec::with_capacity(bases.len() * grid.seeds.len());
    for base in bases {
        for (seed_index, &seed) in grid.seeds.iter().enumerate() {
            points.push(Point { seed, seed_index, ..base.clone() });
        }
    }
    Ok(points)
}

/// Steps the odometer (last axis fastest); false after the last combination.
fn advance(combo: &mut [usize], grid: &Grid) -> bool {
    for ai in (0..combo.len()).rev() {
        combo[ai] += 1;
        if combo[ai] < grid.axes[ai].values.len() {
            return true;
        }
        combo[ai] = 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::file::Source;

    fn grid(text: &str) -> Grid {
        Grid::from_source(Source { path: "g.toml".into(), text: text.into() }).unwrap()
    }

    fn labels(points: &[Point]) -> Vec<String> {
        points
            .iter()
            .map(|p| {
                let l: Vec<String> = p.labels.iter().map(|l| l.clone().unwrap_or("-".into())).collect();
                format!("{} {}", l.join(" "), p.seed)
            })
            .collect()
    }

    #[test]
    fn product_order_exclude_include_seeds() {
        let g = grid(
            "seeds = [1, 2]\n[fixed]\ndataset = \"beauty\"\n[axes]\nmodel = [\"pop\", \"sasrec\"]\n\
             train.lr = [0.1, 0.2]\n[[exclude]]\nmodel = \"pop\"\ntrain.lr = 0.2\n\
             [[include]]\nmodel.kind = \"gru4rec\"\ntrain.batch_size = 64\n",
        );
        let p = expand(&g).unwrap();
        assert_eq!(
            labels(&p),
            [
                "pop 0.1 - 1",
                "pop 0.1 - 2",
                "sasrec 0.1 - 1",
                "sasrec 0.1 - 2",
                "sasrec 0.2 - 1",
                "sasrec 0.2 - 2",
                "gru4rec - 64 1",
                "gru4rec - 64 2"
            ]
        );
        let keys: Vec<&str> = p[4].assigns.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["dataset", "model.kind", "train.lr"]);
        assert_eq!(p[7].seed_index, 1);
    }

    #[test]
    fn table_axis_values_exclude_and_include() {
        let g = grid(
            "seeds = [1]\n[[axes.model]]\nkind = \"sasrec\"\nhidden = 32\n[[axes.model]]\nkind = \"gru4rec\"\n\
             [axes.train]\nlr = [1e-3, 3e-3]\n[[exclude]]\nmodel.kind = \"gru4rec\"\ntrain.lr = 3e-3\n\
             [[include]]\nmodel.kind = \"sasrec\"\nmodel.n_layers = 4\n",
        );
        assert_eq!(g.columns, ["model", "train.lr", "model.n_layers"]);
        let p = expand(&g).unwrap();
        assert_eq!(
            labels(&p),
            [
                "hidden=32,kind=sasrec 0.001 - 1",
                "hidden=32,kind=sasrec 0.003 - 1",
                "kind=gru4rec 0.001 - 1",
                "sasrec - 4 1"
            ]
        );
    }

    #[test]
    fn excluding_everything_is_an_error() {
        let g = grid("[axes]\nmodel = [\"pop\"]\n[[exclude]]\nmodel = [\"pop\"]\n");
        assert!(expand(&g).unwrap_err().to_string().contains("remove every grid point"));
    }

    #[test]
    fn no_axes_is_one_point_per_seed() {
        let g = grid("[fixed]\ndataset = \"beauty\"\nmodel = \"pop\"\n");
        assert_eq!(expand(&g).unwrap().len(), 5);
    }
}
