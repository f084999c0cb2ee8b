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
//!
//! [[claim]]                             # a reproduction: the cells reach the paper's numbers
//! id = "table2-sasrec-beauty"
//! claim = "SASRec reaches Table 2's numbers on Beauty"
//! reproduces = "table2"                 # instead of `direction`: the paper's table
//! measures = ["hr@5", "mrr@5", "hr@20", "mrr@20"]   # the table's metrics
//! [[claim.compare]]
//! name = "released (test-selected)"
//! grid = "protocols"
//! treatment = { protocol = "released", model = "sasrec", modality = "-" }
//! paper = ["Beauty", "SASRec"]          # instead of `control`: the table's cell (its tags)
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
use crate::report::spec::PaperTable;

/// What a claim asserts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The treatment above (`Greater`) or below (`Less`) the control.
    Compare(Direction),
    /// Each treatment at the paper's value of its cell in this table: per seed, the treatment's
    /// difference from the published number (a two-sided one-sample t-test against it).
    Reproduce(PaperTable),
}

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
    /// The other side: a cell of the same grid (a `direction` claim).
    #[serde(default)]
    pub control: Option<Spanned<Selector>>,
    /// The other side: the tags of the paper's cell (a `reproduces` claim).
    #[serde(default)]
    pub paper: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaim {
    id: Spanned<String>,
    claim: String,
    #[serde(default)]
    paper: Option<String>,
    #[serde(default)]
    direction: Option<Direction>,
    #[serde(default)]
    reproduces: Option<PaperTable>,
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
    pub kind: Kind,
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
            let kind = match (c.direction, c.reproduces) {
                (Some(d), None) => Kind::Compare(d),
                (None, Some(t)) => Kind::Reproduce(t),
                _ => {
                    return Err(source.error(
                        &c.id.span(),
                        format!("{key}: give either `direction` (treatment against control) or `reproduces` (against the paper's table)"),
                    ))
                }
            };
            if matches!(kind, Kind::Reproduce(_)) && measures.iter().any(|m| !matches!(m, Measure::Test(_))) {
                return Err(source.error(&c.id.span(), format!("{key}.measures: a reproduction compares test metrics")));
            }
            for (j, cmp) in c.compare.iter().enumerate() {
                let cmp_ref = cmp.get_ref();
                let here = format!("{key}.compare[{j}]");
                match (kind, &cmp_ref.control, &cmp_ref.paper) {
                    (Kind::Compare(_), Some(_), None) | (Kind::Reproduce(_), None, Some(_)) => {}
                    (Kind::Compare(_), _, _) => {
                        return Err(source.error(
                            &cmp.span(),
                            format!("{here}: a `direction` claim compares with a `control` (no `paper`)"),
                        ))
                    }
                    (Kind::Reproduce(_), _, _) => {
                        return Err(source.error(
                            &cmp.span(),
                            format!("{here}: a `reproduces` claim compares with a `paper` cell (no `control`)"),
                        ))
                    }
                }
                if let Some(tags) = &cmp_ref.paper {
                    if tags.get_ref().is_empty() {
                        return Err(source.error(&tags.span(), format!("{here}.paper: no tags")));
                    }
                }
                for (side, sel) in [("treatment", Some(&cmp_ref.treatment)), ("control", cmp_ref.control.as_ref())] {
                    if let Some(sel) = sel.filter(|s| s.get_ref().is_empty()) {
                        return Err(source.error(&sel.span(), format!("{here}.{side}: no labels")));
                    }
                }
            }
            claims.push(Claim { id, claim: c.claim, paper: c.paper, kind, measures, compare: c.compare });
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

    #[test]
    fn a_reproduction_names_the_table_and_each_cell() {
        let reproduce = ONE
            .replace("direction = \"greater\"", "reproduces = \"table2\"\nmeasures = [\"hr@20\"]")
            .replace("control = { model = \"y\" }", "paper = [\"Beauty\", \"SASRec\"]");
        let f = parse(&reproduce).unwrap();
        assert_eq!(f.claims[0].kind, Kind::Reproduce(PaperTable::Table2));
        assert_eq!(f.claims[0].compare[0].get_ref().paper.as_ref().unwrap().get_ref().len(), 2);
        // Both or neither of direction / reproduces; the side that fits the kind.
        let both = reproduce.replace("reproduces", "direction = \"greater\"\nreproduces");
        assert!(parse(&both).unwrap_err().to_string().contains("either `direction`"));
        let e = parse(&ONE.replace("control = { model = \"y\" }", "paper = [\"Beauty\"]")).unwrap_err();
        assert!(e.to_string().contains("compare[0]: a `direction` claim compares with a `control`"), "{e}");
        let e =
            parse(&reproduce.replace("paper = [\"Beauty\", \"SASRec\"]", "control = { model = \"y\" }")).unwrap_err();
        assert!(e.to_string().contains("compares with a `paper` cell"), "{e}");
        let e = parse(&reproduce.replace("[\"hr@20\"]", "[\"epochs:drift@1\"]")).unwrap_err();
        assert!(e.to_string().contains("compares test metrics"), "{e}");
    }
}
