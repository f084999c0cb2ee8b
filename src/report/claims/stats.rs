//! The statistics of a claim: the paired effect of one comparison on one measure, the
//! Holm-Bonferroni correction over a claim's tests, and the verdict rule.
//!
//! - Effect over the `n` seeds both sides have, `d_s = t_s - c_s`: `diff = mean(d)`,
//!   `rel = 100 * diff / mean(c)` (percent of the control's mean), the 95% confidence interval
//!   `diff ± t_{0.975, n-1} * sd(d) / sqrt(n)` ([`aggregate::ci95`] of `sd(d)`), and the
//!   two-sided paired t-test p ([`aggregate::paired_t_test`]).
//! - Holm-Bonferroni over `m` p-values sorted ascending `p_(1) <= ... <= p_(m)`:
//!   `p̃_(i) = min(1, max_{j <= i} (m - j + 1) p_(j))`; it controls the family-wise error rate
//!   at `alpha` when a test counts as significant where `p̃ < alpha`.
//! - Verdict of a claim ([`verdict`]), `alpha` = the claims file's (0.05 by default):
//!   *contradicted* when some test is significant (corrected) against the claimed direction;
//!   else *supported* when every comparison of the claim has at least one measure significant
//!   (corrected) in the claimed direction; else *not supported*. A claim without a single
//!   test (no records, or fewer than two seeds on every comparison) is *not tested*.
//! - Verdict of a reproduction ([`reproduction`]; the control is the paper's number, so the
//!   paired test is a one-sample t-test of the seeds against it): *reproduced* when every
//!   comparison is tested and no test is significant (corrected); else *above the paper*,
//!   *below the paper*, or *above and below the paper* by the signs of the significant tests.
//!   Reproduced means within seed noise of the published number, at the seeds run.

use crate::analysis::aggregate::{ci95, paired_t_test};

/// The direction a claim asserts: the treatment above (`Greater`) or below (`Less`) the control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Greater,
    Less,
}

impl Direction {
    /// Whether a difference `diff = treatment - control` points the claimed way.
    pub fn agrees(self, diff: f64) -> bool {
        match self {
            Direction::Greater => diff > 0.0,
            Direction::Less => diff < 0.0,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Direction::Greater => ">",
            Direction::Less => "<",
        }
    }
}

/// The paired effect of a treatment over a control on one measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effect {
    pub n: usize,
    pub treatment: f64,
    pub control: f64,
    pub diff: f64,
    /// `100 * diff / control` (NaN when the control's mean is 0).
    pub rel: f64,
    /// Half-width of the 95% CI of `diff` (NaN when n < 2).
    pub ci95: f64,
    /// Two-sided paired t-test (None when n < 2).
    pub p: Option<f64>,
}

impl Effect {
    /// The effect over `(treatment, control)` pairs, one per seed; None without pairs.
    pub fn of(pairs: &[(f64, f64)]) -> Option<Self> {
        let n = pairs.len();
        if n == 0 {
            return None;
        }
        let mean = |f: &dyn Fn(&(f64, f64)) -> f64| pairs.iter().map(f).sum::<f64>() / n as f64;
        let (treatment, control) = (mean(&|p| p.0), mean(&|p| p.1));
        let diff = mean(&|p| p.0 - p.1);
        let sd = if n < 2 {
            f64::NAN
        } else {
            (pairs.iter().map(|(t, c)| (t - c - diff).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        };
        let rel = if control == 0.0 { f64::NAN } else { 100.0 * diff / control };
        Some(Self { n, treatment, control, diff, rel, ci95: ci95(sd, n), p: paired_t_test(pairs) })
    }
}

/// Holm-Bonferroni adjusted p-values, in the input order (None stays None and does not count
/// towards `m`).
pub fn holm(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let mut idx: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_some()).collect();
    idx.sort_by(|&a, &b| p[a].unwrap_or(1.0).total_cmp(&p[b].unwrap_or(1.0)));
    let m = idx.len();
    let mut out = vec![None; p.len()];
    let mut running: f64 = 0.0;
    for (rank, &i) in idx.iter().enumerate() {
        let scaled = ((m - rank) as f64 * p[i].unwrap_or(1.0)).min(1.0);
        running = running.max(scaled);
        out[i] = Some(running);
    }
    out
}

/// A claim's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Supported,
    Contradicted,
    NotSupported,
    NotTested,
    Reproduced,
    AbovePaper,
    BelowPaper,
    AboveAndBelowPaper,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::Contradicted => "contradicted",
            Verdict::NotSupported => "not supported",
            Verdict::NotTested => "not tested",
            Verdict::Reproduced => "reproduced",
            Verdict::AbovePaper => "above the paper",
            Verdict::BelowPaper => "below the paper",
            Verdict::AboveAndBelowPaper => "above and below the paper",
        }
    }
}

/// One corrected test of a claim: which comparison, its difference and corrected p.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tested {
    pub comparison: usize,
    pub diff: f64,
    pub p_holm: f64,
}

/// The verdict rule of the module doc over a claim's tests (`comparisons`: how many
/// comparisons the claim makes, tested or not).
pub fn verdict(tests: &[Tested], comparisons: usize, direction: Direction, alpha: f64) -> Verdict {
    if tests.is_empty() {
        return Verdict::NotTested;
    }
    let significant = |t: &&Tested| t.p_holm < alpha && t.diff != 0.0;
    if tests.iter().filter(significant).any(|t| !direction.agrees(t.diff)) {
        return Verdict::Contradicted;
    }
    let each = (0..comparisons)
        .all(|c| tests.iter().filter(significant).any(|t| t.comparison == c && direction.agrees(t.diff)));
    if each {
        Verdict::Supported
    } else {
        Verdict::NotSupported
    }
}

/// The reproduction rule of the module doc.
pub fn reproduction(tests: &[Tested], comparisons: usize, alpha: f64) -> Verdict {
    let significant: Vec<&Tested> = tests.iter().filter(|t| t.p_holm < alpha && t.diff != 0.0).collect();
    let above = significant.iter().any(|t| t.diff > 0.0);
    let below = significant.iter().any(|t| t.diff < 0.0);
    match (above, below) {
        (true, true) => Verdict::AboveAndBelowPaper,
        (true, false) => Verdict::AbovePaper,
        (false, true) => Verdict::BelowPaper,
        (false, false) if (0..comparisons).all(|c| tests.iter().any(|t| t.comparison == c)) => Verdict::Reproduced,
        (false, false) => Verdict::NotTested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holm_matches_a_hand_computation() {
        // sorted 0.01, 0.02, 0.04 with m = 3 -> 0.03, 0.04, 0.04 (monotone), the None skipped
        let p = [Some(0.04), None, Some(0.01), Some(0.02)];
        let h = holm(&p);
        assert_eq!(h[1], None);
        let close = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-12;
        assert!(close(h[2], 0.03) && close(h[3], 0.04) && close(h[0], 0.04), "{h:?}");
        // sorted 0.001, 0.03, 0.04: 0.001 * 3 = 0.003, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 raised to
        // 0.06 (the adjusted values never decrease along the sorted order)
        let h = holm(&[Some(0.001), Some(0.04), Some(0.03)]);
        assert!(close(h[0], 0.003) && close(h[1], 0.06) && close(h[2], 0.06), "{h:?}");
        assert!(close(holm(&[Some(0.6), Some(0.7)])[0], 1.0), "capped at 1");
    }

    #[test]
    fn effect_of_known_pairs() {
        // d = 6, 7, 7: mean 6.667, sd 0.5774, t = 20, p = 0.00249 (as the aggregate test)
        let e = Effect::of(&[(10.0, 4.0), (12.0, 5.0), (14.0, 7.0)]).unwrap();
        assert_eq!(e.n, 3);
        assert!((e.diff - 20.0 / 3.0).abs() < 1e-12);
        assert!((e.rel - 100.0 * (20.0 / 3.0) / (16.0 / 3.0)).abs() < 1e-9);
        assert!((e.ci95 - 4.302653 * (1.0f64 / 3.0).sqrt() / 3f64.sqrt()).abs() < 1e-5, "{}", e.ci95);
        assert!((e.p.unwrap() - 0.002490).abs() < 1e-5);
        let one = Effect::of(&[(2.0, 1.0)]).unwrap();
        assert!(one.p.is_none() && one.ci95.is_nan());
        assert!(Effect::of(&[]).is_none());
    }

    #[test]
    fn verdict_rule() {
        let t = |comparison, diff, p_holm| Tested { comparison, diff, p_holm };
        let g = Direction::Greater;
        assert_eq!(verdict(&[], 1, g, 0.05), Verdict::NotTested);
        assert_eq!(verdict(&[t(0, 1.0, 0.01), t(0, 0.5, 0.3)], 1, g, 0.05), Verdict::Supported);
        // one comparison of two without a significant measure
        assert_eq!(verdict(&[t(0, 1.0, 0.01), t(1, 1.0, 0.2)], 2, g, 0.05), Verdict::NotSupported);
        // a significant measure against the claim wins over one for it
        assert_eq!(verdict(&[t(0, 1.0, 0.01), t(0, -1.0, 0.04)], 1, g, 0.05), Verdict::Contradicted);
        assert_eq!(verdict(&[t(0, -1.0, 0.01)], 1, Direction::Less, 0.05), Verdict::Supported);
        assert_eq!(verdict(&[t(0, 1.0, 0.06)], 1, g, 0.05), Verdict::NotSupported);
        assert_eq!(verdict(&[t(0, 1.0, 0.01)], 2, g, 0.05), Verdict::NotSupported, "an untested comparison");
    }

    #[test]
    fn reproduction_rule() {
        let t = |comparison, diff, p_holm| Tested { comparison, diff, p_holm };
        assert_eq!(reproduction(&[], 1, 0.05), Verdict::NotTested);
        assert_eq!(reproduction(&[t(0, 1.0, 0.2), t(0, -0.5, 0.6)], 1, 0.05), Verdict::Reproduced);
        assert_eq!(reproduction(&[t(0, 1.0, 0.2)], 2, 0.05), Verdict::NotTested, "an untested comparison");
        assert_eq!(reproduction(&[t(0, 1.0, 0.01), t(0, -0.5, 0.6)], 1, 0.05), Verdict::AbovePaper);
        assert_eq!(reproduction(&[t(0, -1.0, 0.01)], 2, 0.05), Verdict::BelowPaper);
        assert_eq!(reproduction(&[t(0, 1.0, 0.01), t(1, -1.0, 0.02)], 2, 0.05), Verdict::AboveAndBelowPaper);
    }
}
