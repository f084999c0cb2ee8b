//! `kdsr report claims`: every claim of the paper that the project tests, declared once in
//! `experiments/claims.toml` ([`spec`]), judged from the committed records ([`records`]) on
//! every measure with paired tests and a Holm-Bonferroni correction ([`stats`]), written to
//! `reports/claims/claims.md` and `claims.csv` ([`render`]) and into the README's generated
//! blocks ([`crate::report::readme`]).
//!
//! The correction's family is one claim: all its comparisons times all its measures (nine test
//! metrics by default), so a claim's verdict holds its family-wise error rate at `alpha`
//! whatever other claims the file declares, and adding a claim changes no other verdict.

pub mod records;
pub mod render;
pub mod spec;
pub mod stats;

use anyhow::Result;
use records::{Grids, Index, Side};
use spec::{Claim, ClaimsFile, Kind};
use stats::{Effect, Tested, Verdict};
use std::collections::BTreeSet;
use std::path::Path;

/// The comparison of one side with another, in the records of one or more grids.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub name: String,
    pub grid: String,
    pub treatment: Side,
    pub control: Side,
    /// Per measure (the claim's order): the effect over the seeds both sides have, each seed's
    /// value the mean over its replicates; None: no shared seed.
    pub effects: Vec<Option<Effect>>,
    /// Per measure: the Holm-corrected p within the claim.
    pub p_holm: Vec<Option<f64>>,
    /// Seeds with both sides on the first measure that has any.
    pub seeds: Vec<u64>,
    /// Where more than one grid holds both sides with different runs: each such grid's own
    /// effect per measure (grids holding the same runs are one source).
    pub sources: Vec<Source>,
}

/// One grid's (or several grids' identical) records of a comparison.
#[derive(Debug, Clone)]
pub struct Source {
    pub grids: Vec<String>,
    pub codes: BTreeSet<String>,
    pub effects: Vec<Option<Effect>>,
}

/// A claim judged.
#[derive(Debug, Clone)]
pub struct Judged {
    pub claim: Claim,
    pub comparisons: Vec<Comparison>,
    pub verdict: Verdict,
    /// Tests with a p-value, and those significant (corrected) for and against the claim.
    pub tests: usize,
    pub for_claim: usize,
    pub against: usize,
}

/// Every claim of the file, judged.
#[derive(Debug)]
pub struct Claims {
    pub file: ClaimsFile,
    pub judged: Vec<Judged>,
}

impl Claims {
    /// Judges every claim of `file` on the records under `out` (`reports`).
    pub fn compute(file: ClaimsFile, out: &Path) -> Result<Self> {
        let index = Index::load(out)?;
        let mut grids = Grids::default();
        let mut judged = Vec::new();
        for (i, claim) in file.claims.iter().enumerate() {
            let mut comparisons = Vec::new();
            for (j, cmp) in claim.compare.iter().enumerate() {
                let err = |msg: String| {
                    file.source.error(&cmp.span(), format!("claim[{i}] (`{}`).compare[{j}]: {msg}", claim.id))
                };
                let c = cmp.get_ref();
                let t = records::side(c, c.treatment.get_ref(), &mut grids, &index, out, &err)?;
                let k = match (claim.kind, &c.control, &c.paper) {
                    (_, Some(control), _) => records::side(c, control.get_ref(), &mut grids, &index, out, &err)?,
                    (Kind::Reproduce(table), None, Some(tags)) => {
                        records::paper_side(table, tags.get_ref(), &claim.measures, &t).map_err(err)?
                    }
                    _ => return Err(err("no control and no paper cell".into())),
                };
                comparisons.push(compare(c.name.clone(), c.grid.clone(), t, k, claim)?);
            }
            judged.push(judge(claim.clone(), comparisons, file.alpha));
        }
        Ok(Self { file, judged })
    }
}

/// The pooled and per-grid effects of one comparison.
fn compare(name: String, grid: String, treatment: Side, control: Side, claim: &Claim) -> Result<Comparison> {
    let effect = |g: Option<&str>| -> Result<(Vec<Option<Effect>>, Vec<u64>)> {
        let mut effects = Vec::new();
        let mut seeds = Vec::new();
        for m in &claim.measures {
            let (t, c) = (treatment.per_seed(m, g)?, control.per_seed(m, g)?);
            let shared: Vec<u64> = t.keys().filter(|s| c.contains_key(s)).copied().collect();
            if seeds.is_empty() {
                seeds.clone_from(&shared);
            }
            effects.push(Effect::of(&shared.iter().map(|s| (t[s], c[s])).collect::<Vec<_>>()));
        }
        Ok((effects, seeds))
    };
    let (effects, seeds) = effect(None)?;
    let mut sources: Vec<Source> = Vec::new();
    let mut seen: Vec<(BTreeSet<String>, usize)> = Vec::new();
    for g in treatment.grids().intersection(&control.grids()) {
        let ids: BTreeSet<String> = [&treatment, &control]
            .iter()
            .flat_map(|s| s.runs.iter().filter(move |r| s.grids_of[&r.run_id].contains(g)))
            .map(|r| r.run_id.clone())
            .collect();
        if let Some((_, at)) = seen.iter().find(|(s, _)| *s == ids) {
            sources[*at].grids.push(g.clone());
            continue;
        }
        let codes = [&treatment, &control]
            .iter()
            .flat_map(|s| s.runs.iter().filter(|r| ids.contains(&r.run_id)))
            .map(|r| r.code.clone())
            .collect();
        seen.push((ids, sources.len()));
        sources.push(Source { grids: vec![g.clone()], codes, effects: effect(Some(g))?.0 });
    }
    if sources.len() < 2 {
        sources.clear();
    }
    let p_holm = vec![None; effects.len()];
    Ok(Comparison { name, grid, treatment, control, effects, p_holm, seeds, sources })
}

/// Holm over the claim's tests, then the verdict ([`stats::verdict`]).
fn judge(claim: Claim, mut comparisons: Vec<Comparison>, alpha: f64) -> Judged {
    let p: Vec<Option<f64>> = comparisons.iter().flat_map(|c| c.effects.iter().map(|e| e.and_then(|e| e.p))).collect();
    let adjusted = stats::holm(&p);
    let mut it = adjusted.into_iter();
    let mut tests = Vec::new();
    for (ci, c) in comparisons.iter_mut().enumerate() {
        for (mi, e) in c.effects.iter().enumerate() {
            let adj = it.next().flatten();
            c.p_holm[mi] = adj;
            if let (Some(e), Some(p_holm)) = (e, adj) {
                tests.push(Tested { comparison: ci, diff: e.diff, p_holm });
            }
        }
    }
    let sig: Vec<&Tested> = tests.iter().filter(|t| t.p_holm < alpha && t.diff != 0.0).collect();
    let (verdict, for_claim) = match claim.kind {
        Kind::Compare(d) => {
            (stats::verdict(&tests, comparisons.len(), d, alpha), sig.iter().filter(|t| d.agrees(t.diff)).count())
        }
        // A reproduction's tests count for it where they find no difference.
        Kind::Reproduce(_) => (stats::reproduction(&tests, comparisons.len(), alpha), tests.len() - sig.len()),
    };
    let against = match claim.kind {
        Kind::Compare(_) => sig.len() - for_claim,
        Kind::Reproduce(_) => sig.len(),
    };
    Judged { against, for_claim, tests: tests.len(), verdict, comparisons, claim }
}

/// What `kdsr report claims` wrote or found stale.
#[derive(Debug)]
pub struct Outcome {
    pub files: Vec<std::path::PathBuf>,
    /// Files (and README blocks) that differ from what the records give.
    pub stale: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::records::Rec;
    use super::*;
    use std::collections::BTreeMap;

    fn rec(grid: &str, id: &str, seed: u64, hr20: f64) -> Rec {
        let mut test = crate::eval::Metrics::default();
        test.hr[2] = hr20;
        Rec { grid: grid.into(), run_id: id.into(), seed, code: "c".into(), key: "k".into(), dir: ".".into(), test }
    }

    /// Runs by (grid, run id, seed, hr@20); a run id in several grids is one run.
    fn side(runs: &[(&str, &str, u64, f64)]) -> Side {
        let mut grids_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut out: Vec<Rec> = Vec::new();
        for &(g, id, seed, x) in runs {
            grids_of.entry(id.into()).or_default().insert(g.into());
            if !out.iter().any(|r| r.run_id == id) {
                out.push(rec(g, id, seed, x));
            }
        }
        Side { describe: "x".into(), runs: out, grids_of }
    }

    fn claim() -> Claim {
        Claim {
            id: "c".into(),
            claim: "t beats c".into(),
            paper: None,
            kind: Kind::Compare(stats::Direction::Greater),
            measures: vec![spec::Measure::Test("hr@20".parse().unwrap())],
            compare: Vec::new(),
        }
    }

    /// Two grids trained the treatment and the control again (other run ids): each seed's value
    /// is the mean over both grids' runs, and each grid's own effect is kept; a third grid
    /// holding the first grid's very runs is the same source, not a replicate.
    #[test]
    fn replicates_are_averaged_per_seed_and_reported_per_grid() {
        let t = side(&[
            ("a", "t1", 1, 10.0),
            ("a", "t2", 2, 11.0),
            ("a", "t3", 3, 12.0),
            ("b", "u1", 1, 12.0),
            ("b", "u2", 2, 13.0),
            ("b", "u3", 3, 13.0),
            ("copy", "t1", 1, 10.0),
            ("copy", "t2", 2, 11.0),
            ("copy", "t3", 3, 12.0),
        ]);
        let c = side(&[
            ("a", "c1", 1, 9.0),
            ("a", "c2", 2, 10.0),
            ("a", "c3", 3, 10.0),
            ("b", "d1", 1, 13.0),
            ("b", "d2", 2, 13.0),
            ("b", "d3", 3, 14.0),
            ("copy", "c1", 1, 9.0),
            ("copy", "c2", 2, 10.0),
            ("copy", "c3", 3, 10.0),
        ]);
        let cmp = compare("n".into(), "a".into(), t, c, &claim()).unwrap();
        // pooled: t = 11, 12, 12.5; c = 11, 11.5, 12 -> d = 0, 0.5, 0.5
        let e = cmp.effects[0].unwrap();
        assert_eq!((e.n, cmp.seeds.clone()), (3, vec![1, 2, 3]));
        assert!((e.diff - 1.0 / 3.0).abs() < 1e-12, "{e:?}");
        let grids: Vec<Vec<String>> = cmp.sources.iter().map(|s| s.grids.clone()).collect();
        assert_eq!(grids, [vec!["a".to_string(), "copy".into()], vec!["b".into()]]);
        let own: Vec<f64> = cmp.sources.iter().map(|s| s.effects[0].unwrap().diff).collect();
        assert!((own[0] - 4.0 / 3.0).abs() < 1e-12 && (own[1] + 2.0 / 3.0).abs() < 1e-12, "{own:?}");
        let judged = judge(claim(), vec![cmp], 0.05);
        assert_eq!(judged.verdict, Verdict::NotSupported);
        assert_eq!(judged.tests, 1);
    }

    /// Against the paper's number, the paired test is a one-sample test: seeds at 14.0, 14.2 and
    /// 14.1 against 14.0681 differ by 0.0319 on average, not significantly: reproduced.
    #[test]
    fn a_reproduction_tests_the_seeds_against_the_papers_number() {
        let t = side(&[("a", "t1", 1, 14.0), ("a", "t2", 2, 14.2), ("a", "t3", 3, 14.1)]);
        let tags = vec!["Beauty".to_string(), "SASRec".into()];
        let mut c = claim();
        c.kind = Kind::Reproduce(crate::report::spec::PaperTable::Table2);
        let paper = records::paper_side(crate::report::spec::PaperTable::Table2, &tags, &c.measures, &t).unwrap();
        assert_eq!(paper.per_seed(&c.measures[0], None).unwrap().values().copied().collect::<Vec<_>>(), [14.0681; 3]);
        let cmp = compare("n".into(), "a".into(), t, paper, &c).unwrap();
        let e = cmp.effects[0].unwrap();
        assert!((e.diff - 0.0319).abs() < 1e-9 && e.p.unwrap() > 0.5, "{e:?}");
        let j = judge(c.clone(), vec![cmp], 0.05);
        assert_eq!((j.verdict, j.for_claim, j.against), (Verdict::Reproduced, 1, 0));
        // Seeds well above it: above the paper.
        let high = side(&[("a", "t1", 1, 15.3), ("a", "t2", 2, 15.5), ("a", "t3", 3, 15.6)]);
        let paper = records::paper_side(crate::report::spec::PaperTable::Table2, &tags, &c.measures, &high).unwrap();
        let j = judge(c.clone(), vec![compare("n".into(), "a".into(), high, paper, &c).unwrap()], 0.05);
        assert_eq!((j.verdict, j.against), (Verdict::AbovePaper, 1));
        // A cell the paper does not have is an error naming it.
        let e = records::paper_side(
            crate::report::spec::PaperTable::Table2,
            &["Beauty".into(), "Pop".into()],
            &c.measures,
            &side(&[]),
        );
        assert!(e.unwrap_err().contains("Beauty, Pop"));
    }

    /// A comparison whose cells have no records yet is not tested.
    #[test]
    fn no_records_is_not_tested() {
        let cmp = compare("n".into(), "a".into(), side(&[]), side(&[]), &claim()).unwrap();
        assert!(cmp.effects[0].is_none() && cmp.sources.is_empty());
        assert_eq!(judge(claim(), vec![cmp], 0.05).verdict, Verdict::NotTested);
    }
}
