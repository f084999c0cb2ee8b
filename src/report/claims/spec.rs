//! The claims file (`experiments/claims.toml`): each claim of the paper that the records test,
//! declared once. Errors name the file, the line and the key, and are bad input (exit code 2).
//!
//! ```toml
//! alpha = 0.05                          # significance level after correction (default 0.05)
//!
//! [[claim]]
//! id = "cdl-sasrec"                     # unique; README blocks name it (`claim:cdl-sasrec`)
//! claim = "CDL beats tuned modality tables alone (SASRec)"
//! paper = "§4.1, Figure 3"              # where the paper says so
//! direction = "greater"                 # greater: treatment above control; less: below
//! measures = ["hr@20", "epochs:drift_text_original@10"]  # default: the nine test metrics
//!
//! [[claim.compare]]                     # one or more; each is tested on every measure
//! name = "SASRec, Beauty"
//! grid = "fig3_beauty"                  # experiments/<grid>.toml, records in reports/<grid>/runs
//! treatment = { model = "sasrec", modality = "tuned + CDL" }   # labels of the grid's plan
//! control = { model = "sasrec", modality = "tuned" }           # columns ("-": unset)
//! ```
//!
//! A measure is a test metric (`hr@5` ... `ndcg@20`, at the selected epoch) or a column of the
//! runs' `epochs.csv` at one epoch (`epochs:<column>@<epoch>`, e.g. the drift probe's Pearson r).

use crate::eval::{Metric, Metrics};
use crate::grid::file::Source;
use anyhow::Result;
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

use super::stats::Direction;

/// What a claim compares on.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    Test(Metric),
    /// `epochs.csv` column at epoch `epoch`.
    Epoch {
        column: String,
        epoch: usize,
    },
}

impl Measure {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("epochs:") {
            let (column, epoch) =
                rest.rsplit_once('@').ok_or_else(|| format!("`{s}`: expected epochs:<column>@<epoch>"))?;
            let epoch = epoch.parse().map_err(|_| format!("`{s}`: `{epoch}` is not an epoch number"))?;
            if column.is_empty() {
                return Err(format!("`{s}`: empty column name"));
            }
            return Ok(Self::Epoch { column: column.to_string(), epoch });
        }
        s.parse().map(Self::Test)
    }

    /// `H@20`, `r text@10`-style short name for tables.
    pub fn name(&self) -> String {
        match self {
            Measure::Test(m) => crate::report::ReportSpec::default().name(&m.to_string()),
            Measure::Epoch { column, epoch } => format!("{column}@{epoch}"),
        }
    }

    /// Decimals to print: metrics in percent 2, `epochs.csv` quantities (correlations) 3.
    pub fn decimals(&self) -> usize {
        match self {
            Measure::Test(_) => 2,
            Measure::Epoch { .. } => 3,
        }
    }
}

impl std::fmt::Display for Measure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Measure::Test(m) => write!(f, "{m}"),
            Measure::Epoch { column, epoch } => write!(f, "epochs:{column}@{epoch}"),
        }
    }
}

/// One side of a comparison: `column = "label"` pairs of the grid's plan.
pub type Selector = toml::Table;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    pub name: String,
    pub grid: String,
    pub treatment: Spanned<Selector>,
    pub control: Spanned<Selector>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaim {
    id: Spanned<String>,
    claim: String,
    #[serde(default)]
    paper: Option<String>,
    direction: Direction,
    #[serde(default)]
    measures: Option<Spanned<Vec<String>>>,
    compare: Vec<Spanned<Compare>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default = "default_alpha")]
    alpha: Spanned<f64>,
    claim: Vec<RawClaim>,
}

fn default_alpha() -> Spanned<f64> {
    Spanned::new(0..0, 0.05)
}

/// A checked claim.
#[derive(Debug, Clone)]
pub struct Claim {
    pub id: String,
    pub claim: String,
    pub paper: Option<String>,
    pub direction: Direction,
    pub measures: Vec<Measure>,
    pub compare: Vec<Spanned<Compare>>,
}

/// The checked claims file.
#[derive(Debug, Clone)]
pub struct ClaimsFile {
    pub source: Source,
    pub alpha: f64,
    pub claims: Vec<Claim>,
}

impl ClaimsFile {
    /// Reads and checks `path` (grids and labels are checked against the plans later, in
    /// [`super::records`]).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| crate::error::bad_input(format!("{}: cannot read the claims file: {e}", path.display())))?;
        Self::parse(Source { path: path.to_path_buf(), text })
    }

    pub fn parse(source: Source) -> Result<Self> {
        let raw: RawFile = source.parse_as()?;
        let alpha = *raw.alpha.get_ref();
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(source.error(&raw.alpha.span(), format!("alpha = {alpha}: expected 0 < alpha < 1")));
        }
        let mut claims: Vec<Claim> = Vec::new();
        for (i, c) in raw.claim.into_iter().enumerate() {
            let id = c.id.get_ref().clone();
            let key = format!("claim[{i}] (`{id}`)");
            if id.is_empty() || !id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_') {
                return Err(source.error(&c.id.span(), format!("{key}.id: use letters, digits, `-` and `_`")));
            }
            if claims.iter().any(|o| o.id == id) {
                return Err(source.error(&c.id.span(), format!("{key}.id: `{id}` is declared twice")));
            }
            let measures = match &c.measures {
                None => Metrics::all().into_iter().map(Measure::Test).collect(),
                Some(m) => {
                    let parsed: Result<Vec<Measure>, String> = m.get_ref().iter().map(|s| Measure::parse(s)).collect();
                    let parsed = parsed.map_err(|e| source.error(&m.span(), format!("{key}.measures: {e}")))?;
                    if parsed.is_empty() {
                        return Err(source.error(&m.span(), format!("{key}.measures: empty")));
                    }
                    parsed
                }
            };
            if c.compare.is_empty() {
                return Err(source.error(&c.id.span(), format!("{key}.compare: at least one comparison")));
            }
            for (j, cmp) in c.compare.iter().enumerate() {
                for (side, sel) in [("treatment", &cmp.get_ref().treatment), ("control", &cmp.get_ref().control)] {
                    if sel.get_ref().is_empty() {
                        return Err(source.error(&sel.span(), format!("{key}.compare[{j}].{side}: no labels")));
                    }
                }
            }
            claims.push(Claim {
                id,
                claim: c.claim,
                paper: c.paper,
                direction: c.direction,
                measures,
                compare: c.compare,
            });
        }
        Ok(Self { source, alpha, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClaimsFile> {
        ClaimsFile::parse(Source { path: "c.toml".into(), text: text.into() })
    }

    const ONE: &str = r#"
[[claim]]
id = "a"
claim = "x beats y"
direction = "greater"
[[claim.compare]]
name = "n"
grid = "g"
treatment = { model = "x" }
control = { model = "y" }
"#;

    #[test]
    fn defaults_and_measures() {
        let f = parse(ONE).unwrap();
        assert_eq!(f.alpha, 0.05);
        assert_eq!(f.claims[0].measures.len(), 9, "the nine test metrics by default");
        assert_eq!(
            Measure::parse("epochs:drift_text_original@10").unwrap(),
            Measure::Epoch { column: "drift_text_original".into(), epoch: 10 }
        );
        assert_eq!(Measure::parse("hr@20").unwrap().name(), "H@20");
        assert!(Measure::parse("epochs:x").is_err() && Measure::parse("hr@7").is_err());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse(&ONE.replace("direction = \"greater\"", "direction = \"up\"")).unwrap_err();
        assert!(crate::error::is_bad_input(&e));
        assert!(e.to_string().starts_with("c.toml:5:"), "{e}");
        let second = ONE
            .replace("id = \"a\"", "id = \"b\"")
            .replace("[[claim.compare]]", "measures = [\"hr@3\"]\n[[claim.compare]]");
        let e = parse(&format!("{ONE}{second}")).unwrap_err();
        assert!(e.to_string().starts_with("c.toml:16:") && e.to_string().contains("claim[1] (`b`).measures"), "{e}");
        let twice = format!("{ONE}{ONE}");
        let e = parse(&twice).unwrap_err();
        assert!(e.to_string().contains("declared twice"), "{e}");
        let e = parse(&ONE.replace("name = \"n\"", "nam = \"n\"")).unwrap_err();
        assert!(e.to_string().contains("c.toml:") && e.to_string().contains("nam"), "{e}");
        let e = parse(&format!("alpha = 2.0\n{ONE}")).unwrap_err();
        assert!(e.to_string().starts_with("c.toml:1: alpha"), "{e}");
    }
}
