//! The `[report]` section of a grid file: how `kdsr report` lays out the grid's tables and
//! which figures it draws.
//!
//! ```toml
//! [report]
//! rows = ["dataset", "metric"]          # plan columns, `metric`, or `variant`
//! columns = ["variant"]                 # `variant`: every plan column not placed elsewhere
//! metrics = ["hr@5", "mrr@5", "hr@20", "mrr@20"]
//! reference = { model = "sasrec" }      # paired t-tests of every cell against it; several
//!                                       # columns pick one group, "-": the column unset
//! paper = "table2"                      # the paper's numbers beside ours: table2 | ablation | quantizer
//! figures = ["drift", "compat"]         # drift (Figure 1) | compat (Figure 3) | encoders (Figure 4)
//! names = { sasrec = "SASRec" }         # display names of labels (defaults cover the built-ins)
//!                                       # and of whole variants: { "mmsr / cdl / items" = "KDSR" }
//! figure_metric = "hr@20"
//! x = "model"                           # Figure 3 / 4 x axis
//! ```

use crate::eval::Metric;
use crate::grid::file::Source;
use anyhow::Result;
use serde::Deserialize;
use toml::Spanned;

/// A grid file's `[report]` section with its span (None: the file has none). Errors name the
/// file and line.
pub fn parse(source: &Source) -> Result<Option<Spanned<ReportSpec>>> {
    #[derive(Deserialize)]
    struct View {
        #[serde(default)]
        report: Option<Spanned<ReportSpec>>,
    }
    Ok(source.parse_as::<View>()?.report)
}

/// The paper's tables whose numbers a report can show beside ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PaperTable {
    /// Table 2: overall comparison (5 datasets x H@5, M@5, H@20, M@20 x 10 models).
    Table2,
    /// The ablation table (Beauty, Clothing, Sport x H@5, H@20).
    Ablation,
    /// VQ vs k-means x scoring function (H@5, H@20).
    Quantizer,
}

/// The paper's figures a report can draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FigureKind {
    /// Figure 1: Pearson drift of the modality embeddings per epoch.
    Drift,
    /// Figure 3: backbones x (frozen / tuned / tuned + CDL), bars with std.
    Compat,
    /// Figure 4: a metric against the modality embedding size, one line per encoder.
    Encoders,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSpec {
    #[serde(default = "default_rows")]
    pub rows: Vec<String>,
    #[serde(default = "default_columns")]
    pub columns: Vec<String>,
    #[serde(default = "default_metrics")]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub reference: Option<toml::Table>,
    #[serde(default)]
    pub paper: Option<PaperTable>,
    #[serde(default)]
    pub figures: Vec<FigureKind>,
    /// The metric of the figures (default: hr@20).
    #[serde(default = "default_figure_metric")]
    pub figure_metric: Metric,
    /// The x axis of Figure 3 (groups of bars; default `model`) and Figure 4 (numeric labels,
    /// e.g. `modality.autoencoder.hidden`): a plan column. Every other plan column but
    /// `dataset` makes the series.
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub names: toml::Table,
}

impl Default for ReportSpec {
    fn default() -> Self {
        Self {
            rows: default_rows(),
            columns: default_columns(),
            metrics: default_metrics(),
            reference: None,
            paper: None,
            figures: Vec::new(),
            figure_metric: default_figure_metric(),
            x: None,
            names: toml::Table::new(),
        }
    }
}

fn default_rows() -> Vec<String> {
    vec!["dataset".into(), "metric".into()]
}

fn default_columns() -> Vec<String> {
    vec!["variant".into()]
}

fn default_metrics() -> Vec<Metric> {
    ["hr@5", "mrr@5", "hr@20", "mrr@20"].iter().map(|m| m.parse().expect("known metric")).collect()
}

fn default_figure_metric() -> Metric {
    "hr@20".parse().expect("known metric")
}

/// Display names of built-in labels (the paper's spelling).
const NAMES: [(&str, &str); 26] = [
    ("beauty", "Beauty"),
    ("clothing", "Cloth."),
    ("sports", "Sport"),
    ("toys", "Toys"),
    ("ml-1m", "ML-1M"),
    ("ml-100k", "ML-100K"),
    ("pop", "Pop"),
    ("sasrec", "SASRec"),
    ("gru4rec", "GRU4Rec"),
    ("sasrm", "SASRM"),
    ("nova", "NOVA"),
    ("difsr", "DIF-SR"),
    ("srgnn", "SR-GNN"),
    ("mmsr", "MMSR"),
    ("trans2d", "Trans2D"),
    ("mmsrec", "MMSRec"),
    ("kdsr-rgat", "KDSR network"),
    ("frozen", "frozen"),
    ("tuned", "tuned"),
    ("cdl", "tuned + CDL"),
    ("vq", "VQ"),
    ("kmeans", "k-Means"),
    ("cos", "Cos"),
    ("dot", "Dot"),
    ("euclidean", "Euc"),
    ("manhattan", "Man"),
];

/// Display names of whole variants, by their set of labels (order-free): KDSR as the paper's
/// Table 2 number was produced (the released network, `kdsr-rgat`, with CDL: the logged run,
/// official-code-notes §7) and that network without CDL, its control; KDSR as the paper's text
/// describes it, CDL on an MMSR backbone whose modality nodes are the items' modality
/// embeddings (the tables CDL supervises), and that backbone without CDL.
const VARIANTS: [(&[&str], &str); 4] = [
    (&["kdsr-rgat", "cdl"], "KDSR"),
    (&["kdsr-rgat", "tuned"], "KDSR network, no CDL"),
    (&["mmsr", "cdl", "items"], "KDSR on MMSR"),
    (&["mmsr", "tuned", "items"], "MMSR (item nodes)"),
];

impl ReportSpec {
    /// The display name of a whole variant (its labels other than `-`, in plan-column order):
    /// the grid's `names` under the labels joined by " / ", then the built-ins. None: the
    /// variant is shown as its labels' names.
    pub fn variant_name(&self, labels: &[&str]) -> Option<String> {
        if let Some(toml::Value::String(s)) = self.names.get(&labels.join(" / ")) {
            return Some(s.clone());
        }
        VARIANTS
            .iter()
            .find(|(set, _)| set.len() == labels.len() && set.iter().all(|l| labels.contains(l)))
            .map(|(_, name)| name.to_string())
    }

    /// The display name of a label or metric: the grid's `names`, then the built-ins.
    pub fn name(&self, label: &str) -> String {
        if let Some(toml::Value::String(s)) = self.names.get(label) {
            return s.clone();
        }
        if let Some((_, v)) = NAMES.iter().find(|(k, _)| *k == label) {
            return v.to_string();
        }
        match label.parse::<Metric>() {
            Ok(m) => {
                let kind = match m.kind {
                    crate::eval::metrics::MetricKind::Hr => "H",
                    crate::eval::metrics::MetricKind::Mrr => "M",
                    crate::eval::metrics::MetricKind::Ndcg => "N",
                };
                format!("{kind}@{}", m.k)
            }
            Err(_) => label.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_are_order_free_and_the_grid_s_come_first() {
        let mut spec = ReportSpec::default();
        assert_eq!(spec.variant_name(&["mmsr", "cdl", "items"]).as_deref(), Some("KDSR on MMSR"));
        assert_eq!(spec.variant_name(&["items", "mmsr", "cdl"]).as_deref(), Some("KDSR on MMSR"));
        assert_eq!(spec.variant_name(&["cdl", "kdsr-rgat"]).as_deref(), Some("KDSR"));
        assert_eq!(spec.variant_name(&["mmsr", "tuned", "items"]).as_deref(), Some("MMSR (item nodes)"));
        assert_eq!(spec.variant_name(&["mmsr", "cdl"]), None, "a subset is not the variant");
        assert_eq!(spec.variant_name(&["sasrec", "cdl"]), None);
        spec.names.insert("mmsr / cdl / items".into(), "KDSR (MMSR)".into());
        assert_eq!(spec.variant_name(&["mmsr", "cdl", "items"]).as_deref(), Some("KDSR (MMSR)"));
    }
}
