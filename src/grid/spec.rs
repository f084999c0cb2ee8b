//! Grid points -> [`RunConfig`]s and run ids.
//!
//! A point's settings are applied one by one to the TOML form of the default RunConfig for
//! its model and seed, and each is checked by deserialising the result (so RunConfig's own
//! serde definitions are the schema). A setting that RunConfig rejects as an unknown field,
//! or drops on the way back (a field of another model), does not apply to that run; a wrong
//! type or value is an error at the setting's line. The finished config must pass
//! [`RunConfig::validate`], else the combination is impossible and named as such.

use super::{Assign, Grid, Point};
use crate::config::{get_path, set_path, turns_modality_on, RunConfig};
use crate::data::{DatasetId, DatasetRef};
use crate::model::ModelKind;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

/// RunConfig tables that are tagged enums: a plain string there names the variant, so
/// `model = "sasrec"` means `model.kind = "sasrec"`.
pub const TAGGED_TABLES: &[&str] = &["model"];

/// `model` holding a string -> `model.kind`; other keys unchanged.
pub fn normalize_key(key: &str, is_string: bool) -> String {
    if is_string && TAGGED_TABLES.contains(&key) {
        format!("{key}.kind")
    } else {
        key.to_string()
    }
}

/// One run of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedRun {
    pub config: RunConfig,
    pub run_id: String,
    /// Per plan column, the value's label; `-` where the run does not set it, or where the
    /// setting does not apply to the run's model.
    pub labels: Vec<String>,
    pub seed_index: usize,
}

/// RunConfigs for `points`, deduplicated by run id (first wins), in point order.
pub fn resolve(grid: &Grid, points: &[Point]) -> Result<Vec<ResolvedRun>> {
    let mut bases: HashMap<(ModelKind, u64), toml::Table> = HashMap::new();
    // Every setting's key -> (first span, applied to some run).
    let mut used: BTreeMap<String, (Range<usize>, bool)> = BTreeMap::new();
    let mut kinds: Vec<ModelKind> = Vec::new();
    let mut runs: Vec<ResolvedRun> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for point in points {
        let at = |span: &Range<usize>, msg: String| grid.source.error(span, msg);
        let at_point = |msg: &str| match point.span.is_empty() {
            true => grid.source.file_error(msg),
            false => at(&point.span, msg.to_string()),
        };
        let Some(kind_assign) = point.assigns.iter().rev().find(|a| a.key == "model.kind") else {
            return Err(at_point("no model: set `model` (e.g. model = \"sasrec\") in [fixed], [axes] or [[include]]"));
        };
        let kind: ModelKind = kind_assign
            .value
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| at(&kind_assign.span, format!("model: {}", e.message())))?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
        if !point.assigns.iter().any(|a| a.key == "dataset") {
            return Err(at_point("no dataset: set `dataset` (e.g. dataset = \"beauty\") in [fixed] or [axes]"));
        }
        let mut table = match bases.get(&(kind, point.seed)) {
            Some(t) => t.clone(),
            None => {
                let mut cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), kind, point.seed);
                grid.preset.apply(&mut cfg);
                let t = toml::Table::try_from(&cfg).context("serialising a default RunConfig")?;
                bases.insert((kind, point.seed), t.clone());
                t
            }
        };
        let mut applied_columns = vec![false; grid.columns.len()];
        // A modality setting applies only to a run that has modality embeddings: by its
        // model's default or by a setting of the point that turns them on.
        let has_modality = table.contains_key("modality") || point.assigns.iter().any(|a| turns_modality_on(&a.key));
        // Settings whose meaning depends on others (train.mask_ratio): judged on the finished
        // config.
        let mut conditional: Vec<&Assign> = Vec::new();
        for a in &point.assigns {
            let entry = used.entry(a.key.clone()).or_insert((a.span.clone(), false));
            if a.key == "model.kind" {
                entry.1 = true;
                mark(&mut applied_columns, a.column);
                continue;
            }
            if a.key.starts_with("modality.") && !turns_modality_on(&a.key) && !has_modality {
                continue;
            }
            let mut probe = table.clone();
            if !set_path(&mut probe, &a.key, a.value.clone()) {
                continue;
            }
            match toml::Value::Table(probe.clone()).try_into::<RunConfig>() {
                Err(e) if e.message().contains("unknown field") => {}
                Err(e) => return Err(at(&a.span, format!("{}: {}", a.key, e.message().trim_end()))),
                Ok(cfg) => {
                    // Applied if the key survives the round trip, or if it changed the config
                    // (a value that is left out of the TOML, such as a legacy default).
                    let back = toml::Table::try_from(&cfg).context("serialising a RunConfig")?;
                    let before: Option<RunConfig> = toml::Value::Table(table.clone()).try_into().ok();
                    if get_path(&back, &a.key).is_some() || before.as_ref() != Some(&cfg) {
                        table = probe;
                        if CONDITIONAL.contains(&a.key.as_str()) {
                            conditional.push(a);
                        } else {
                            entry.1 = true;
                            mark(&mut applied_columns, a.column);
                        }
                    }
                }
            }
        }
        let mut config: RunConfig = toml::Value::Table(table.clone()).try_into().context("building a RunConfig")?;
        for a in conditional {
            if config.applies(&a.key) {
                used.entry(a.key.clone()).or_insert((a.span.clone(), false)).1 = true;
                mark(&mut applied_columns, a.column);
            } else {
                remove_path(&mut table, &a.key);
                config = toml::Value::Table(table.clone()).try_into().context("building a RunConfig")?;
            }
        }
        let labels: Vec<String> = point
            .labels
            .iter()
            .zip(&applied_columns)
            .map(|(l, &ok)| match l {
                Some(l) if ok => l.clone(),
                _ => "-".into(),
            })
            .collect();
        if let Err(msg) = config.validate() {
            let culprit = point.assigns.iter().rev().find(|a| msg.contains(&a.key)).map(|a| a.span.clone());
            let combo: Vec<String> = grid
                .columns
                .iter()
                .zip(&labels)
                .filter(|(_, l)| *l != "-")
                .map(|(c, l)| format!("{c}={l}"))
                .chain([format!("seed={}", point.seed)])
                .collect();
            let text = format!("impossible combination ({}): {msg}", combo.join(", "));
            return Err(match culprit.or(Some(point.span.clone()).filter(|s| !s.is_empty())) {
                Some(span) => at(&span, text),
                None => grid.source.file_error(text),
            });
        }
        let run_id = config.run_id();
        if !seen.insert(run_id.clone()) {
            continue;
        }
        runs.push(ResolvedRun { config, run_id, labels, seed_index: point.seed_index });
    }
    // The first such setting in the file.
    if let Some((key, (span, _))) = used.iter().filter(|(_, (_, applied))| !applied).min_by_key(|(_, (s, _))| s.start) {
        return Err(grid
            .source
            .error(span, format!("`{key}` is not a setting of any run in this grid ({})", known_fields(key, &kinds))));
    }
    Ok(runs)
}

/// Settings that exist in every run's config but mean something only with others
/// ([`RunConfig::applies`]); a run where they mean nothing keeps its default.
const CONDITIONAL: &[&str] = &["train.mask_ratio"];

/// Removes the value at a dotted path (the config's default then applies).
fn remove_path(table: &mut toml::Table, key: &str) {
    match key.split_once('.') {
        None => {
            table.remove(key);
        }
        Some((first, rest)) => {
            if let Some(toml::Value::Table(inner)) = table.get_mut(first) {
                remove_path(inner, rest);
            }
        }
    }
}

fn mark(applied: &mut [bool], column: Option<usize>) {
    if let Some(c) = column {
        applied[c] = true;
    }
}

/// What the runs' configs do have next to `key`, for the error message.
fn known_fields(key: &str, kinds: &[ModelKind]) -> String {
    let parent = key.rsplit_once('.').map(|(p, _)| p);
    let mut parts = Vec::new();
    for &kind in kinds {
        let cfg = RunConfig::new(DatasetRef::Named(DatasetId::Beauty), kind, 0);
        let Ok(base) = toml::Table::try_from(&cfg) else { continue };
        let table = match parent {
            None => Some(&base),
            Some(p) => get_path(&base, p).and_then(|v| v.as_table()),
        };
        let Some(table) = table else { continue };
        let mut keys: Vec<String> = table.keys().map(|k| parent.map_or(k.clone(), |p| format!("{p}.{k}"))).collect();
        if parent.is_none() {
            keys.push("max_users".into());
        }
        let line = format!("{} has {}", kind.name(), keys.join(", "));
        if !parts.contains(&line) {
            parts.push(line);
        }
    }
    if parts.is_empty() {
        "no run's config has a table of that name".into()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::{expand, file::Source};

    fn runs(text: &str) -> Result<Vec<ResolvedRun>> {
        let g = Grid::from_source(Source { path: "g.toml".into(), text: text.into() })?;
        resolve(&g, &expand(&g)?)
    }

    fn err(text: &str) -> String {
        let e = runs(text).unwrap_err();
        assert!(crate::error::is_bad_input(&e), "not bad input: {e:#}");
        e.to_string()
    }

    /// Golden expansion: if RunConfig's canonical TOML changes, these ids change with it
    /// (print them with `cargo test golden -- --nocapture`).
    #[test]
    fn golden_expansion() {
        let r = runs(
            "seeds = [2023, 2024]\n[fixed]\nprotocol = \"paper\"\ndataset = \"beauty\"\nmax_users = 500\ntrain.max_epochs = 2\n\
             [axes]\nmodel.kind = [\"pop\", \"sasrec\", \"gru4rec\"]\nmodel.hidden = [32, 64]\n",
        )
        .unwrap();
        let got: Vec<String> = r.iter().map(|r| format!("{} {}", r.labels.join(" "), r.run_id)).collect();
        for line in &got {
            eprintln!("{line}");
        }
        // pop has no hidden size: its two hidden values collapse into one run per seed.
        assert_eq!(r.len(), 2 + 4 + 4);
        assert_eq!(r[0].labels, ["pop", "-"]);
        assert_eq!(r[2].labels, ["sasrec", "32"]);
        assert_eq!(r[2].config.max_users, Some(500));
        assert_eq!(r[2].config.train.max_epochs, 2);
        match &r[2].config.model {
            crate::config::ModelSpec::Sasrec(c) => assert_eq!(c.hidden, 32),
            other => panic!("{other:?}"),
        }
        let ids: Vec<&str> = r.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(ids, GOLDEN_IDS);
    }

    const GOLDEN_IDS: [&str; 10] = [
        "beauty-pop-14bb9b4da620ebea",
        "beauty-pop-34af25fb2761ad34",
        "beauty-sasrec-d80340fed105a814",
        "beauty-sasrec-620f30507ece99c5",
        "beauty-sasrec-0b9858f4046ee052",
        "beauty-sasrec-f2214b82b703ba16",
        "beauty-gru4rec-d5d96528ff4e71fb",
        "beauty-gru4rec-be2896bec4a31579",
        "beauty-gru4rec-09a9c9c71dc40e81",
        "beauty-gru4rec-29f8c20d251dc9a0",
    ];

    #[test]
    fn settings_errors_name_line_and_key() {
        let e = err("[fixed]\ndataset = \"beauty\"\n[axes]\nmodel = [\"pop\", \"sasrac\"]\n");
        assert!(e.starts_with("g.toml:4: model: unknown variant `sasrac`"), "{e}");
        let e = err("[fixed]\ndataset = \"beuty\"\nmodel = \"pop\"\n");
        assert!(e.starts_with("g.toml:2: dataset: unknown dataset `beuty`"), "{e}");
        let e = err("[fixed]\ndataset = \"beauty\"\nmodel = \"sasrec\"\n[axes]\ntrain.lr = [1e-3, \"fast\"]\n");
        assert!(e.starts_with("g.toml:5: train.lr: invalid type: string \"fast\""), "{e}");
        let e = err(
            "[fixed]\ndataset = \"beauty\"\n\n[axes]\nmodel.kind = [\"sasrec\", \"gru4rec\"]\nmodel.n_head = [1, 2]\n",
        );
        assert!(e.starts_with("g.toml:6: `model.n_head` is not a setting of any run in this grid"), "{e}");
        assert!(e.contains("sasrec has model.attn_dropout, model.hidden") && e.contains("model.n_heads"), "{e}");
        let e =
            err("[fixed]\ndataset = \"beauty\"\n[axes]\nmodel.kind = [\"pop\", \"gru4rec\"]\nmodel.n_heads = [1, 2]\n");
        assert!(e.starts_with("g.toml:5: `model.n_heads` is not a setting of any run"), "{e}");
        let e = err("[fixed]\ntrain.lrr = 1\ndataset = \"beauty\"\nmodel = \"pop\"\n");
        assert!(e.starts_with("g.toml:2: `train.lrr` is not a setting"), "{e}");
        let e = err("[fixed]\ndataset = \"beauty\"\nmodel = \"sasrec\"\n[axes]\nmodel.hidden = [64, 63]\n");
        assert!(e.starts_with("g.toml:5: impossible combination (model.hidden=63, seed=2023)"), "{e}");
        assert!(e.contains("multiple of model.n_heads"), "{e}");
        let e = err("[fixed]\ndataset = \"beauty\"\n");
        assert!(e.contains("no model"), "{e}");
        let e = err("[fixed]\nmodel = \"pop\"\n");
        assert!(e.contains("no dataset"), "{e}");
    }

    #[test]
    fn settings_apply_only_where_the_model_has_them() {
        let r = runs(
            "seeds = [1]\n[fixed]\ndataset = \"beauty\"\nmodel.n_heads = 1\n[axes]\nmodel.kind = [\"sasrec\", \"gru4rec\"]\n\
             protocol = [\"paper\", \"leave-one-out\"]\n",
        )
        .unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[1].labels, ["sasrec", "leave-one-out"]);
        assert!(matches!(&r[0].config.model, crate::config::ModelSpec::Sasrec(c) if c.n_heads == 1));
    }
}
