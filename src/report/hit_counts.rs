//! Are the paper's HR values single runs? A run's HR@K over `n` test instances is
//! `100 h / n` for a whole number of hits `h`; a mean over five runs is `100 h / (5 n)`, a
//! multiple of `100 / n` only when the five hit counts sum to a multiple of 5. A printed value
//! `v` with 4 decimals is consistent with a whole count when `|v n / 100 - round(v n / 100)|`
//! is at most the rounding of its last digit, `0.00005 n / 100` hits.

use super::paper::values;
use super::spec::PaperTable;
use std::fmt::Write;

/// One of the paper's HR values tested against `n` test instances.
#[derive(Debug, Clone, PartialEq)]
pub struct HitCount {
    pub model: &'static str,
    pub metric: &'static str,
    pub value: f64,
    /// `value * n / 100`: the hit count the value implies.
    pub hits: f64,
    /// Whether `hits` is a whole number to the value's printed precision.
    pub whole: bool,
}

/// The half-width, in hits, of a 4-decimal percentage's rounding over `n` instances.
pub fn tolerance(n: usize) -> f64 {
    0.5e-4 * n as f64 / 100.0
}

/// Table 2's HR values on `dataset` (the paper's tag, e.g. `Beauty`), each tested against `n`.
pub fn hit_counts(dataset: &str, n: usize) -> Vec<HitCount> {
    let tol = tolerance(n);
    values(PaperTable::Table2)
        .iter()
        .filter(|v| v.tags[0] == dataset && v.tags[2].starts_with("hr@"))
        .map(|v| {
            let hits = v.value * n as f64 / 100.0;
            HitCount {
                model: v.tags[1],
                metric: v.tags[2],
                value: v.value,
                hits,
                whole: (hits - hits.round()).abs() <= tol,
            }
        })
        .collect()
}

/// `P(X >= k)` for `X ~ Binomial(trials, p)`.
fn binomial_tail(k: usize, trials: usize, p: f64) -> f64 {
    (k..=trials)
        .map(|i| {
            let choose: f64 = (0..i).map(|j| (trials - j) as f64 / (j + 1) as f64).product();
            choose * p.powi(i as i32) * (1.0 - p).powi((trials - i) as i32)
        })
        .sum()
}

/// The report section: per HR metric, which values are whole hit counts over `n`, and how
/// likely that many would be if each value were a mean over five runs (a multiple of
/// `100 / n` with probability about 1/5, plus the tolerance's chance) or an arbitrary number
/// (the tolerance's chance, `2 tol`).
pub fn markdown(dataset: &str, n: usize) -> Option<String> {
    let counts = hit_counts(dataset, n);
    if counts.is_empty() {
        return None;
    }
    let tol = tolerance(n);
    let p_mean5 = 0.2 + 0.8 * (2.0 * tol).min(1.0);
    let mut out = format!(
        "The paper's {dataset} HR values as hit counts over the {n} test instances of the paper's split \
         (a single run's HR@K is 100 h / {n}; a value counts as whole when it is within {tol:.4} hits, its \
         last printed digit's rounding, of a whole number):\n\n| model | metric | paper | hits | whole |\n|---|---|---:|---:|---|\n"
    );
    for c in &counts {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.3} | {} |",
            c.model,
            c.metric,
            c.value,
            c.hits,
            if c.whole { "yes" } else { "no" }
        );
    }
    let metrics: std::collections::BTreeSet<&str> = counts.iter().map(|c| c.metric).collect();
    out.push('\n');
    for m in metrics {
        let of: Vec<&HitCount> = counts.iter().filter(|c| c.metric == m).collect();
        let k = of.iter().filter(|c| c.whole).count();
        let _ = writeln!(
            out,
            "- {m}: {k} of {} values are whole counts; P(>= {k} of {}) is {:.2e} if each were a mean over five runs \
             (p = {p_mean5:.3} each) and {:.2e} for arbitrary values (p = {:.3} each).",
            of.len(),
            of.len(),
            binomial_tail(k, of.len(), p_mean5),
            binomial_tail(k, of.len(), 2.0 * tol),
            2.0 * tol
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beauty_hr_values_are_counts_over_the_test_instances() {
        let c = hit_counts("Beauty", 33_942);
        assert_eq!(c.len(), 20);
        // KDSR's H@5 7.4156 is 2517.0 hits of 33,942 (2517 / 33942 = 7.41559...).
        let kdsr = c.iter().find(|c| c.model == "KDSR" && c.metric == "hr@5").unwrap();
        assert!(kdsr.whole && (kdsr.hits - 2517.0).abs() < 0.02, "{kdsr:?}");
        let whole = |m: &str| c.iter().filter(|c| c.metric == m && c.whole).count();
        assert_eq!((whole("hr@5"), whole("hr@20")), (9, 6));
        // Against another instance count the pattern disappears.
        let other = hit_counts("Beauty", 33_941);
        assert!(other.iter().filter(|c| c.whole).count() <= 3);
    }

    #[test]
    fn binomial_tail_sums_to_one_and_matches_a_hand_value() {
        assert!((binomial_tail(0, 10, 0.3) - 1.0).abs() < 1e-12);
        // P(X >= 9), X ~ B(10, 0.2) = 10 * 0.2^9 * 0.8 + 0.2^10.
        let want = 10.0 * 0.2f64.powi(9) * 0.8 + 0.2f64.powi(10);
        assert!((binomial_tail(9, 10, 0.2) - want).abs() < 1e-15);
    }
}
