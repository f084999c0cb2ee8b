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
use spec::{Claim, ClaimsFile};
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
                let k = records::side(c, c.control.get_ref(), &mut grids, &index, out, &err)?;
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
    let verdict = stats::verdict(&tests, comparisons.len(), claim.direction, alpha);
    let sig: Vec<&Tested> = tests.iter().filter(|t| t.p_holm < alpha && t.diff != 0.0).collect();
    let for_claim = sig.iter().filter(|t| claim.direction.agrees(t.diff)).count();
    Judged { against: sig.len() - for_claim, for_claim, tests: tests.len(), verdict, comparisons, claim }
}

/// What `kdsr report claims` wrote or found stale.
#[derive(Debug)]
pub struct Outcome {
    pub files: Vec<std::path::PathBuf>,
    /// Files (and README blocks) that differ from what the records give.
    pub stale: Vec<String>,
}
