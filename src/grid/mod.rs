//! Declarative experiment grids: `experiments/<name>.toml` -> a list of [`RunConfig`]s.
//!
//! ```toml
//! description = "pop, SASRec and GRU4Rec on a Beauty slice"
//! seeds = [2023, 2024]                # default: 2023..=2027
//!
//! [fixed]                             # RunConfig fields shared by every run
//! dataset = "beauty"
//! max_users = 2000
//! train.max_epochs = 10
//!
//! [axes]                              # RunConfig fields with a list of values each
//! model = ["pop", "sasrec", "gru4rec"]   # shorthand for model.kind
//! train.lr = [1e-3, 3e-3]
//!
//! [[exclude]]                         # drop grid points matching every key given
//! model = "pop"
//! train.lr = 3e-3
//!
//! [[include]]                         # extra points, on top of [fixed]
//! model.kind = "sasrec"
//! model.hidden = 128
//!
//! [trial]                             # what `--budget quick` runs ([`trial::Trial`])
//! epochs = 20
//! users = 2000
//! ```
//!
//! Every key below `fixed`, `axes`, `exclude` and `include` is a dotted path into
//! [`RunConfig`]'s TOML form (as written to `run.toml`), so a new RunConfig field is a new
//! axis without any code here. An axis value may also be a table, which sets several fields
//! at once (`[[axes.model]]` with `kind = "sasrec"`, `hidden = 32`). A setting that a run's
//! model does not have (`model.n_heads` for GRU4Rec) does not apply to that run (its plan
//! cell shows `-`), but a setting that applies to no run at all is an error.
//!
//! Stages: [`file`] parses the file keeping spans, [`Grid::from_source`] flattens and
//! checks it, [`expand`] builds the grid points (pure), [`spec`] turns points into
//! RunConfigs and run ids.
//!
//! [`RunConfig`]: crate::config::RunConfig

pub mod expand;
pub mod file;
pub mod spec;
pub mod trial;

use crate::error::bad_input;
use anyhow::Result;
use file::{Node, Source};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

pub use expand::{expand, Point};
pub use spec::{resolve, ResolvedRun};

/// The seeds used when a grid names none.
pub const DEFAULT_SEEDS: [u64; 5] = [2023, 2024, 2025, 2026, 2027];

/// One setting: a dotted RunConfig path and its value, with the value's span in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Assign {
    pub key: String,
    pub value: toml::Value,
    pub span: Range<usize>,
    /// The plan column this setting belongs to (axes and include keys), if any.
    pub column: Option<usize>,
}

/// One value of an axis and the settings it makes.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisValue {
    pub label: String,
    pub value: toml::Value,
    pub span: Range<usize>,
    pub assigns: Vec<Assign>,
}

/// An axis: a key as written and its values, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub key: String,
    pub span: Range<usize>,
    pub values: Vec<AxisValue>,
}

/// An exclude rule: a grid point is dropped when, for every (axis, allowed values) pair, the
/// point's value of that axis is one of the allowed ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Exclude {
    pub span: Range<usize>,
    pub conds: Vec<(usize, Vec<usize>)>,
}

/// An extra grid point.
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub span: Range<usize>,
    pub assigns: Vec<Assign>,
}

/// A checked grid file.
#[derive(Debug, Clone)]
pub struct Grid {
    /// The file stem: `experiments/quick.toml` -> `quick`.
    pub name: String,
    pub source: Source,
    pub description: Option<String>,
    /// The defaults every run starts from.
    pub preset: crate::config::Preset,
    pub seeds: Vec<u64>,
    pub fixed: Vec<Assign>,
    pub axes: Vec<Axis>,
    pub exclude: Vec<Exclude>,
    pub include: Vec<Include>,
    /// Plan table columns: the axes, then keys that only includes set.
    pub columns: Vec<String>,
    /// What `--budget quick` runs (`[trial]`, else the defaults).
    pub trial: trial::Trial,
}

/// `quick` -> `experiments/quick.toml` (relative to the working directory, else the crate);
/// an existing path is taken as is.
pub fn resolve_path(name: &str) -> Result<PathBuf> {
    let as_path = Path::new(name);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    let file = format!("{name}.toml");
    let candidates =
        [Path::new("experiments").join(&file), Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments").join(&file)];
    if let Some(p) = candidates.iter().find(|p| p.is_file()) {
        return Ok(p.clone());
    }
    let known: Vec<String> = std::fs::read_dir("experiments")
        .or_else(|_| std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments")))
        .map(|rd| {
            let mut v: Vec<String> = rd
                .filter_map(|e| e.ok())
                .filter_map(|e| e.path().file_name()?.to_str()?.strip_suffix(".toml").map(String::from))
                .collect();
            v.sort();
            v
        })
        .unwrap_or_default();
    Err(bad_input(format!(
        "no grid `{name}`: neither a file nor experiments/{file} (grids: {})",
        if known.is_empty() { "none".into() } else { known.join(", ") }
    )))
}

impl Grid {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_source(Source::read(path)?)
    }

    /// Checks a grid file's structure. Settings are checked against RunConfig by [`resolve`].
    pub fn from_source(source: Source) -> Result<Self> {
        let file = source.parse()?;
        let name = source.path.file_stem().and_then(|s| s.to_str()).unwrap_or("grid").to_string();
        let seeds = match &file.seeds {
            None => DEFAULT_SEEDS.to_vec(),
            Some(s) => {
                if s.get_ref().is_empty() {
                    return Err(source.error(&s.span(), "seeds: the list is empty"));
                }
                let mut seen = Vec::new();
                for seed in s.get_ref() {
                    if seen.contains(seed.get_ref()) {
                        return Err(source.error(&seed.span(), format!("seeds: {} is listed twice", seed.get_ref())));
                    }
                    seen.push(*seed.get_ref());
                }
                seen
            }
        };
        let b = Builder { source: &source };
        let fixed = match &file.fixed {
            None => Vec::new(),
            Some(node) => {
                let mut out = Vec::new();
                for leaf in b.table_leaves("fixed", node)? {
                    out.extend(b.assigns(&leaf.key, &leaf.node, None)?);
                }
                out
            }
        };
        let mut axes = Vec::new();
        if let Some(node) = &file.axes {
            for leaf in b.table_leaves("axes", node)? {
                axes.push(b.axis(leaf, axes.len())?);
            }
        }
        b.check_overlaps(&fixed, &axes)?;
        let mut columns: Vec<String> = axes.iter().map(|a| a.key.clone()).collect();
        let mut exclude = Vec::new();
        for node in &file.exclude {
            exclude.push(b.exclude(node, &axes)?);
        }
        let mut include = Vec::new();
        for node in &file.include {
            let mut assigns = Vec::new();
            for leaf in b.table_leaves("include", node)? {
                let col = axes
                    .iter()
                    .position(|a| a.key == leaf.key || spec::normalize_key(&a.key, true) == leaf.key)
                    .or_else(|| columns.iter().position(|c| *c == leaf.key))
                    .unwrap_or_else(|| {
                        columns.push(leaf.key.clone());
                        columns.len() - 1
                    });
                assigns.extend(b.assigns(&leaf.key, &leaf.node, Some(col))?);
            }
            include.push(Include { span: node.span(), assigns });
        }
        let preset = file.preset.unwrap_or_default();
        let trial = match &file.trial {
            None => trial::Trial::default(),
            Some(t) => {
                if let Some(key) = t.get_ref().zero_cap() {
                    return Err(source.error(&t.span(), format!("trial: `{key}` must be at least 1")));
                }
                *t.get_ref()
            }
        };
        Ok(Self {
            name,
            description: file.description,
            preset,
            seeds,
            fixed,
            axes,
            exclude,
            include,
            columns,
            trial,
            source,
        })
    }
}

/// A leaf of a flattened table: the dotted key and its (non-table) value.
struct Leaf {
    key: String,
    key_span: Range<usize>,
    node: Spanned<Node>,
}

struct Builder<'a> {
    source: &'a Source,
}

impl Builder<'_> {
    /// The leaves of `node` (which must be a table), with dotted keys.
    fn table_leaves(&self, section: &str, node: &Spanned<Node>) -> Result<Vec<Leaf>> {
        let Node::Table(_) = node.get_ref() else {
            return Err(self.source.error(
                &node.span(),
                format!("`{section}` must be a table of settings, found {}", node.get_ref().type_name()),
            ));
        };
        let mut out = Vec::new();
        flatten("", node.span(), node, &mut out);
        for leaf in &out {
            if leaf.key == "seed" {
                return Err(self.source.error(
                    &leaf.key_span,
                    format!("{section}: `seed` is set by the top-level `seeds` list, e.g. seeds = [2023, 2024]"),
                ));
            }
        }
        Ok(out)
    }

    /// The settings a value makes: a table sets each of its leaves under `key`; a plain
    /// string at a tagged table (`model = "sasrec"`) sets its kind.
    fn assigns(&self, key: &str, node: &Spanned<Node>, column: Option<usize>) -> Result<Vec<Assign>> {
        Ok(match node.get_ref() {
            Node::Table(_) => {
                let mut leaves = Vec::new();
                flatten(key, node.span(), node, &mut leaves);
                leaves
                    .into_iter()
                    .map(|l| Assign { key: l.key, value: l.node.get_ref().to_value(), span: l.node.span(), column })
                    .collect()
            }
            n => {
                let is_str = matches!(n, Node::Scalar(toml::Value::String(_)));
                vec![Assign { key: spec::normalize_key(key, is_str), value: n.to_value(), span: node.span(), column }]
            }
        })
    }

    fn axis(&self, leaf: Leaf, column: usize) -> Result<Axis> {
        let Node::Array(items) = leaf.node.get_ref() else {
            return Err(self.source.error(
                &leaf.node.span(),
                format!(
                    "axes: `{}` must be a list of values, e.g. {} = [{}], found {}",
                    leaf.key,
                    leaf.key,
                    leaf.node.get_ref().to_value(),
                    leaf.node.get_ref().type_name()
                ),
            ));
        };
        if items.is_empty() {
            return Err(self.source.error(&leaf.node.span(), format!("axes: `{}` has no values", leaf.key)));
        }
        let mut values: Vec<AxisValue> = Vec::new();
        for item in items {
            if let Node::Array(_) = item.get_ref() {
                return Err(self.source.error(
                    &item.span(),
                    format!("axes: `{}`: a value must be a single value or a table, not a list", leaf.key),
                ));
            }
            let (item, display) = split_label(self.source, item)?;
            let item = &item;
            let value = item.get_ref().to_value();
            if values.iter().any(|v| same_value(&v.value, &value)) {
                return Err(self.source.error(&item.span(), format!("axes: `{}`: {value} is listed twice", leaf.key)));
            }
            values.push(AxisValue {
                label: display.unwrap_or_else(|| label(&value)),
                assigns: self.assigns(&leaf.key, item, Some(column))?,
                span: item.span(),
                value,
            });
        }
        Ok(Axis { key: leaf.key, span: leaf.key_span, values })
    }

    /// A setting may come from one place only: `fixed` or one axis.
    fn check_overlaps(&self, fixed: &[Assign], axes: &[Axis]) -> Result<()> {
        let mut owner: Vec<(&str, &Range<usize>, String)> =
            fixed.iter().map(|a| (a.key.as_str(), &a.span, "[fixed]".to_string())).collect();
        for axis in axes {
            let keys: Vec<(&str, &Range<usize>)> =
                axis.values.iter().flat_map(|v| v.assigns.iter().map(|a| (a.key.as_str(), &a.span))).collect();
            let here = format!("axis `{}`", axis.key);
            for (key, span) in keys {
                if let Some((_, other, place)) = owner.iter().find(|(k, _, p)| *k == key && *p != here) {
                    return Err(self.source.error(
                        span,
                        format!(
                            "`{key}` is set both by axis `{}` and by {place} (line {})",
                            axis.key,
                            self.source.line(other.start)
                        ),
                    ));
                }
                owner.push((key, span, here.clone()));
            }
        }
        Ok(())
    }

    fn exclude(&self, node: &Spanned<Node>, axes: &[Axis]) -> Result<Exclude> {
        let mut conds = Vec::new();
        for leaf in self.table_leaves("exclude", node)? {
            // An axis value matches `key = v` when it is `v` itself (key = the axis) or when it
            // sets `key` to `v` (`model.kind = "pop"` for `model = ["pop"]`, or a key of a
            // table value such as `[[axes.model]]`).
            let sets = |v: &AxisValue| v.assigns.iter().any(|a| a.key == leaf.key);
            let Some(ai) = axes.iter().position(|a| a.key == leaf.key || a.values.iter().any(sets)) else {
                let names: Vec<&str> = axes.iter().map(|a| a.key.as_str()).collect();
                return Err(self.source.error(
                    &leaf.key_span,
                    format!("exclude: `{}` is not an axis or a key set by one (axes: {})", leaf.key, names.join(", ")),
                ));
            };
            let axis = &axes[ai];
            let wanted: Vec<&Spanned<Node>> = match leaf.node.get_ref() {
                Node::Array(items) => items.iter().collect(),
                _ => vec![&leaf.node],
            };
            let mut idx = Vec::new();
            for w in wanted {
                let value = w.get_ref().to_value();
                let hits: Vec<usize> = (0..axis.values.len())
                    .filter(|&vi| {
                        let v = &axis.values[vi];
                        (axis.key == leaf.key && same_value(&v.value, &value))
                            || v.assigns.iter().any(|a| a.key == leaf.key && same_value(&a.value, &value))
                    })
                    .collect();
                if hits.is_empty() {
                    let labels: Vec<&str> = axis.values.iter().map(|v| v.label.as_str()).collect();
                    return Err(self.source.error(
                        &w.span(),
                        format!(
                            "exclude: {} = {} matches no value of axis `{}` (values: {})",
                            leaf.key,
                            label(&value),
                            axis.key,
                            labels.join(", ")
                        ),
                    ));
                }
                idx.extend(hits);
            }
            conds.push((ai, idx));
        }
        if conds.is_empty() {
            return Err(self.source.error(&node.span(), "exclude: the rule is empty"));
        }
        Ok(Exclude { span: node.span(), conds })
    }
}

fn flatten(prefix: &str, key_span: Range<usize>, node: &Spanned<Node>, out: &mut Vec<Leaf>) {
    match node.get_ref() {
        Node::Table(entries) => {
            for (k, v) in entries {
                let key = if prefix.is_empty() { k.get_ref().clone() } else { format!("{prefix}.{}", k.get_ref()) };
                flatten(&key, k.span(), v, out);
            }
        }
        _ => out.push(Leaf { key: prefix.to_string(), key_span, node: node.clone() }),
    }
}

/// Value equality that treats `1` and `1.0` as the same number.
pub fn same_value(a: &toml::Value, b: &toml::Value) -> bool {
    use toml::Value::{Float, Integer};
    match (a, b) {
        (Integer(x), Float(y)) | (Float(y), Integer(x)) => (*x as f64) == *y,
        _ => a == b,
    }
}

/// A table-valued axis value may name itself: `{ label = "w/o tau", student.tau = 1.0 }`. The
/// `label` key is the value's display label (plan, reports), not a RunConfig setting.
fn split_label(source: &Source, item: &Spanned<Node>) -> Result<(Spanned<Node>, Option<String>)> {
    let Node::Table(entries) = item.get_ref() else { return Ok((item.clone(), None)) };
    let mut rest = Vec::new();
    let mut display = None;
    for (k, v) in entries {
        if k.get_ref() != "label" {
            rest.push((k.clone(), v.clone()));
            continue;
        }
        match v.get_ref() {
            Node::Scalar(toml::Value::String(s)) if !s.trim().is_empty() => display = Some(s.trim().to_string()),
            other => {
                return Err(source.error(
                    &v.span(),
                    format!("axes: `label` must be a non-empty string, found {}", other.type_name()),
                ))
            }
        }
    }
    Ok((Spanned::new(item.span(), Node::Table(rest)), display))
}

/// A short display form: strings bare, tables as `k=v,k=v`.
pub fn label(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Table(t) => t.iter().map(|(k, v)| format!("{k}={}", label(v))).collect::<Vec<_>>().join(","),
        toml::Value::Array(a) => format!("[{}]", a.iter().map(label).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn grid(text: &str) -> Result<Grid> {
        Grid::from_source(Source { path: "g.toml".into(), text: text.into() })
    }

    #[test]
    fn flattens_dotted_and_nested_keys() {
        let g = grid(
            "seeds = [1, 2]\n[fixed]\ndataset = \"beauty\"\ntrain.max_epochs = 3\n[fixed.model]\nhidden = 32\n\
             [axes]\nmodel = [\"pop\", \"sasrec\"]\n\"train.lr\" = [1e-3, 1e-2]\n",
        )
        .unwrap();
        let keys: Vec<&str> = g.fixed.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["dataset", "train.max_epochs", "model.hidden"]);
        assert_eq!(g.axes[0].key, "model");
        assert_eq!(g.axes[0].values[1].assigns[0].key, "model.kind");
        assert_eq!(g.axes[1].key, "train.lr");
        assert_eq!(g.columns, ["model", "train.lr"]);
        assert_eq!(g.seeds, [1, 2]);
    }

    #[test]
    fn trial_caps_default_and_override() {
        assert_eq!(grid("").unwrap().trial, trial::Trial::default());
        let g = grid("[trial]\nepochs = 20\nusers = 2000\n").unwrap();
        assert_eq!(g.trial, trial::Trial { epochs: 20, users: 2000, ..trial::Trial::default() });
    }

    #[test]
    fn table_axis_values_set_several_fields() {
        let g = grid("[[axes.model]]\nkind = \"sasrec\"\nhidden = 32\n[[axes.model]]\nkind = \"gru4rec\"\n").unwrap();
        let v = &g.axes[0].values;
        assert_eq!(v[0].label, "hidden=32,kind=sasrec");
        let keys: Vec<&str> = v[0].assigns.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["model.kind", "model.hidden"]);
        assert_eq!(g.source.line(v[1].assigns[0].span.start), 5);
    }

    #[test]
    fn structural_errors_name_line_and_key() {
        let cases = [
            ("[axes]\nmodel = \"pop\"\n", "g.toml:2: axes: `model` must be a list"),
            ("[axes]\ntrain.lr = []\n", "g.toml:2: axes: `train.lr` has no values"),
            ("[axes]\nmodel = [\"pop\", \"pop\"]\n", "g.toml:2: axes: `model`: \"pop\" is listed twice"),
            ("seeds = []\n", "g.toml:1: seeds: the list is empty"),
            ("[fixed]\nseed = 3\n", "g.toml:2: fixed: `seed` is set by the top-level `seeds`"),
            ("[fixed]\ntrain.lr = 1e-3\n[axes]\ntrain.lr = [1e-3]\n", "g.toml:4: `train.lr` is set both by axis"),
            (
                "[axes]\nmodel = [\"pop\"]\n[[exclude]]\nmodle = \"pop\"\n",
                "g.toml:4: exclude: `modle` is not an axis or",
            ),
            (
                "[axes]\nmodel = [\"pop\"]\n[[exclude]]\nmodel = \"sasrec\"\n",
                "g.toml:4: exclude: model = sasrec matches no value of axis `model` (values: pop)",
            ),
            ("fixed = 3\n", "g.toml:1: `fixed` must be a table"),
            ("[trial]\nepochs = 4\nseeds = 0\n", "g.toml:1: trial: `seeds` must be at least 1"),
            ("[trial]\nepoch = 4\n", "g.toml:2: unknown field `epoch`"),
        ];
        for (text, want) in cases {
            let e = grid(text).unwrap_err();
            assert!(crate::error::is_bad_input(&e));
            assert!(e.to_string().starts_with(want), "expected `{want}`, got: {e}");
        }
    }
}
