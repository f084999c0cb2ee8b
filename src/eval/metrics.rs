//! Top-K metrics from ranks (1 = best), reported as percentages:
//! `HR@K = 100 * mean[rank <= K]`, `MRR@K = 100 * mean[rank <= K] / rank`,
//! `NDCG@K = 100 * mean[rank <= K] / log2(rank + 1)` (one relevant item, so IDCG = 1).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The cut-offs every evaluation reports.
pub const KS: [usize; 3] = [5, 10, 20];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MetricKind {
    Hr,
    Mrr,
    Ndcg,
}

/// A metric name such as `ndcg@20`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Metric {
    pub kind: MetricKind,
    pub k: usize,
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            MetricKind::Hr => "hr",
            MetricKind::Mrr => "mrr",
            MetricKind::Ndcg => "ndcg",
        };
        write!(f, "{kind}@{}", self.k)
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let err = || format!("unknown metric `{s}`: expected hr@K, mrr@K or ndcg@K with K in 5, 10, 20");
        let (kind, k) = s.split_once('@').ok_or_else(err)?;
        let kind = match kind.to_ascii_lowercase().as_str() {
            "hr" | "hit" => MetricKind::Hr,
            "mrr" => MetricKind::Mrr,
            "ndcg" => MetricKind::Ndcg,
            _ => return Err(err()),
        };
        let k: usize = k.parse().map_err(|_| err())?;
        if !KS.contains(&k) {
            return Err(err());
        }
        Ok(Self { kind, k })
    }
}

impl TryFrom<String> for Metric {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Metric> for String {
    fn from(m: Metric) -> String {
        m.to_string()
    }
}

/// HR, MRR and NDCG at each K of [`KS`], in percent, over `n` instances.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub n: usize,
    pub hr: [f64; 3],
    pub mrr: [f64; 3],
    pub ndcg: [f64; 3],
}

impl Metrics {
    pub fn from_ranks(ranks: impl IntoIterator<Item = u32>) -> Self {
        let mut m = Metrics::default();
        for rank in ranks {
            m.n += 1;
            let r = rank as f64;
            for (j, &k) in KS.iter().enumerate() {
                if rank as usize <= k {
                    m.hr[j] += 1.0;
                    m.mrr[j] += 1.0 / r;
                    m.ndcg[j] += 1.0 / (r + 1.0).log2();
                }
            }
        }
        let scale = 100.0 / m.n.max(1) as f64;
        for v in m.hr.iter_mut().chain(m.mrr.iter_mut()).chain(m.ndcg.iter_mut()) {
            *v *= scale;
        }
        m
    }

    pub fn get(&self, metric: Metric) -> f64 {
        let (kind, j) = Self::slot(metric);
        [&self.hr, &self.mrr, &self.ndcg][kind][j]
    }

    pub fn set(&mut self, metric: Metric, value: f64) {
        *self.get_mut(metric) = value;
    }

    fn get_mut(&mut self, metric: Metric) -> &mut f64 {
        let (kind, j) = Self::slot(metric);
        &mut [&mut self.hr, &mut self.mrr, &mut self.ndcg][kind][j]
    }

    /// (array index: hr 0, mrr 1, ndcg 2; position of K in [`KS`]).
    fn slot(metric: Metric) -> (usize, usize) {
        let j = KS.iter().position(|&k| k == metric.k).expect("K validated on parse");
        let kind = match metric.kind {
            MetricKind::Hr => 0,
            MetricKind::Mrr => 1,
            MetricKind::Ndcg => 2,
        };
        (kind, j)
    }

    /// All metrics in a fixed order: hr@5, hr@10, hr@20, mrr@5, ..., ndcg@20.
    pub fn all() -> Vec<Metric> {
        [MetricKind::Hr, MetricKind::Mrr, MetricKind::Ndcg]
            .iter()
            .flat_map(|&kind| KS.iter().map(move |&k| Metric { kind, k }))
            .collect()
    }
}

/// As a JSON object: `{"n": 4, "hr@5": ..., ..., "ndcg@20": ...}`.
impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1 + 3 * KS.len()))?;
        map.serialize_entry("n", &self.n)?;
        for m in Self::all() {
            map.serialize_entry(&m.to_string(), &self.get(m))?;
        }
        map.end()
    }
}

/// From the object [`Metrics`] serialises to; every metric must be present.
impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            n: usize,
            #[serde(flatten)]
            values: std::collections::BTreeMap<String, f64>,
        }
        let raw = Raw::deserialize(d)?;
        let mut out = Metrics { n: raw.n, ..Metrics::default() };
        for m in Self::all() {
            let v =
                raw.values.get(&m.to_string()).ok_or_else(|| serde::de::Error::custom(format!("no `{m}` value")))?;
            *out.get_mut(m) = *v;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_on_hand_built_ranks() {
        // ranks 1, 3, 7, 30
        let m = Metrics::from_ranks([1, 3, 7, 30]);
        assert_eq!(m.n, 4);
        assert!((m.hr[0] - 50.0).abs() < 1e-9); // hr@5: ranks 1 and 3
        assert!((m.hr[1] - 75.0).abs() < 1e-9); // hr@10: + rank 7
        assert!((m.hr[2] - 75.0).abs() < 1e-9);
        assert!((m.mrr[0] - 100.0 * (1.0 + 1.0 / 3.0) / 4.0).abs() < 1e-9);
        assert!((m.mrr[2] - 100.0 * (1.0 + 1.0 / 3.0 + 1.0 / 7.0) / 4.0).abs() < 1e-9);
        let ndcg20 = 100.0 * (1.0 + 1.0 / 4f64.log2() + 1.0 / 8f64.log2()) / 4.0;
        assert!((m.ndcg[2] - ndcg20).abs() < 1e-9);
        let p: Metric = "ndcg@20".parse().unwrap();
        assert_eq!(m.get(p), m.ndcg[2]);
        assert!("ndcg@15".parse::<Metric>().is_err());
        assert_eq!(Metrics::all().len(), 9);
    }
}
