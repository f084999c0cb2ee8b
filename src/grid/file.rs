//! The grid file as written (`experiments/<name>.toml`): a serde mirror that rejects unknown
//! top-level keys and keeps the byte span of every key and value below them, so that every
//! later error can name the file, the line and the key.

use crate::error::bad_input;
use serde::de::{Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The top level of a grid file. Everything below `fixed`, `axes`, `exclude` and `include` is
/// kept as a spanned [`Node`] tree and checked against [`crate::config::RunConfig`] later.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GridFile {
    /// Free text shown by `kdsr sweep plan`.
    #[serde(default)]
    pub description: Option<String>,
    /// The defaults the grid's runs start from (`recbole`, the default, or `paper`).
    #[serde(default)]
    pub preset: Option<crate::config::Preset>,
    /// Seeds every grid point runs with (default: 2023..=2027).
    #[serde(default)]
    pub seeds: Option<Spanned<Vec<Spanned<u64>>>>,
    /// Settings shared by every run: RunConfig fields as (dotted) keys.
    #[serde(default)]
    pub fixed: Option<Spanned<Node>>,
    /// RunConfig fields with a list of values each; the runs are their cartesian product.
    #[serde(default)]
    pub axes: Option<Spanned<Node>>,
    /// Partial assignments of axis values; matching grid points are dropped.
    #[serde(default)]
    pub exclude: Vec<Spanned<Node>>,
    /// Extra grid points (RunConfig fields on top of `fixed`), added after `exclude`.
    #[serde(default)]
    pub include: Vec<Spanned<Node>>,
    /// What `--budget quick` runs of this grid ([`super::trial::Trial`]).
    #[serde(default)]
    pub trial: Option<Spanned<super::trial::Trial>>,
    /// How `kdsr report` lays out this grid's tables and figures: parsed by the report stage
    /// (`report::spec`), from the file's text so that its errors name their lines.
    #[serde(default)]
    pub report: Option<toml::Value>,
}

/// A TOML value that keeps the span of every key and value below it.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Table(Vec<(Spanned<String>, Spanned<Node>)>),
    Array(Vec<Spanned<Node>>),
    Scalar(toml::Value),
}

impl Node {
    /// The plain TOML value.
    pub fn to_value(&self) -> toml::Value {
        match self {
            Node::Scalar(v) => v.clone(),
            Node::Array(items) => toml::Value::Array(items.iter().map(|i| i.get_ref().to_value()).collect()),
            Node::Table(entries) => {
                toml::Value::Table(entries.iter().map(|(k, v)| (k.get_ref().clone(), v.get_ref().to_value())).collect())
            }
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Node::Table(_) => "a table",
            Node::Array(_) => "a list",
            Node::Scalar(v) => v.type_str(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(toml::Value::Boolean(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(toml::Value::Integer(v)))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v).map(|v| Node::Scalar(toml::Value::Integer(v))).map_err(|_| E::custom("integer is too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(toml::Value::Float(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(toml::Value::String(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(toml::Value::String(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            if key.get_ref().starts_with("$__toml_private") {
                return Err(A::Error::custom("dates and times are not grid values"));
            }
            entries.push((key, map.next_value::<Spanned<Node>>()?));
        }
        // The deserializer hands keys over sorted; keep the file's order instead.
        entries.sort_by_key(|(k, _)| k.span().start);
        Ok(Node::Table(entries))
    }
}

/// A grid file's path and text, for turning byte spans into `file:line` in error messages.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

impl Source {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("{}: cannot read grid file: {e}", path.display())))?;
        Ok(Self { path: path.to_path_buf(), text })
    }

    /// 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    /// A bad-input error at `span`: `path:line: msg`.
    pub fn error(&self, span: &Range<usize>, msg: impl fmt::Display) -> anyhow::Error {
        bad_input(format!("{}:{}: {msg}", self.path.display(), self.line(span.start)))
    }

    /// A bad-input error about the whole file.
    pub fn file_error(&self, msg: impl fmt::Display) -> anyhow::Error {
        bad_input(format!("{}: {msg}", self.path.display()))
    }

    /// Parses the top level; TOML syntax errors, unknown top-level keys and wrong types
    /// become `path:line: message` followed by the offending line.
    pub fn parse(&self) -> anyhow::Result<GridFile> {
        self.parse_as()
    }

    /// Parses the file as `T` (a view of some of its sections); errors name the file and line
    /// and quote the line.
    pub fn parse_as<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        toml::from_str(&self.text).map_err(|e| {
            let mut msg = e.message().trim_end().to_string();
            if msg.contains("dotted key") {
                msg += " (a key cannot hold both a value and a table: with other `model.*` keys in the \
                        same table, write `model.kind = ...` instead of `model = ...`)";
            }
            match e.span() {
                Some(span) => {
                    let line = self.line(span.start);
                    let text = self.text.lines().nth(line - 1).unwrap_or("").trim_end();
                    bad_input(format!("{}:{line}: {msg}\n    {line} | {text}", self.path.display()))
                }
                None => self.file_error(msg),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Source {
        Source { path: "g.toml".into(), text: text.into() }
    }

    #[test]
    fn spans_reach_nested_keys() {
        let s = source("[axes]\ntrain.lr = [1e-3, 3e-4]\nmodel = [\"pop\"]\n");
        let g = s.parse().unwrap();
        let Node::Table(axes) = g.axes.unwrap().into_inner() else { panic!("table") };
        let (train, node) = &axes[0];
        assert_eq!(train.get_ref(), "train");
        assert_eq!(s.line(train.span().start), 2);
        let Node::Table(inner) = node.get_ref() else { panic!("table") };
        let (lr, values) = &inner[0];
        assert_eq!(lr.get_ref(), "lr");
        let Node::Array(items) = values.get_ref() else { panic!("array") };
        assert_eq!(items[1].get_ref(), &Node::Scalar(toml::Value::Float(3e-4)));
        assert_eq!(&s.text[items[1].span()], "3e-4");
        assert_eq!(s.line(axes[1].0.span().start), 3);
    }

    #[test]
    fn unknown_top_level_key_names_line_and_key() {
        let e = source("seeds = [1]\n\n[axis]\nmodel = [\"pop\"]\n").parse().unwrap_err().to_string();
        assert!(e.starts_with("g.toml:3: unknown field `axis`"), "{e}");
        let e = source("seeds = [2023, \"x\"]\n").parse().unwrap_err().to_string();
        assert!(e.starts_with("g.toml:1: ") && e.contains("seeds = [2023"), "{e}");
    }
}
