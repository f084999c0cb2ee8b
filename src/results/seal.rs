//! A record's seal: BLAKE3 checksums of the files its run wrote before the record (`run.toml`,
//! `epochs.csv`) and of the record itself. A record edited after the run, a per-epoch table
//! replaced by another run's, or a file truncated into something that still parses is refused,
//! naming the file, wherever records are read (`report`, `sweep run`, `gate`, claims).
//!
//! The record's own checksum is `blake3(canonical(record with seal.record = ""))`, where
//! `canonical` is serde_json's compact serialisation of the parsed JSON value: it does not
//! depend on the file's layout, and it covers fields this version of the code does not know.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The run files a seal covers, where the run folder holds them when the record is written.
pub const SEALED_FILES: [&str; 2] = ["run.toml", "epochs.csv"];

/// `seal` in `metrics.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    /// BLAKE3 (hex) of each of [`SEALED_FILES`] the folder held, by file name.
    pub files: BTreeMap<String, String>,
    /// BLAKE3 (hex) of the record's canonical JSON with this field empty.
    pub record: String,
}

fn bad(path: &Path, msg: &str) -> anyhow::Error {
    crate::error::bad_input(format!("{}: {msg}", path.display()))
}

fn file_hash(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, &format!("cannot read: {e}")))?;
    Ok(blake3::hash(&bytes).to_hex().to_string())
}

/// `blake3(canonical(record))` with `seal.record` blanked.
fn record_hash(record: &Value) -> Result<String> {
    let mut v = record.clone();
    if let Some(seal) = v.get_mut("seal").and_then(Value::as_object_mut) {
        seal.insert("record".into(), Value::String(String::new()));
    }
    Ok(blake3::hash(&serde_json::to_vec(&v)?).to_hex().to_string())
}

/// Seals `record` (a record's JSON value) against the run folder `dir`: sets its `seal` from
/// the sealed files `dir` holds now and from the record itself, and returns it.
pub fn seal(record: &mut Value, dir: &Path) -> Result<Seal> {
    let mut files = BTreeMap::new();
    for name in SEALED_FILES {
        let path = dir.join(name);
        if path.is_file() {
            files.insert(name.to_string(), file_hash(&path)?);
        }
    }
    let obj = record.as_object_mut().ok_or_else(|| anyhow::anyhow!("a record is a JSON object"))?;
    obj.insert("seal".into(), serde_json::to_value(Seal { files: files.clone(), record: String::new() })?);
    let seal = Seal { files, record: record_hash(record)? };
    record["seal"] = serde_json::to_value(&seal)?;
    Ok(seal)
}

/// What [`check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// The record and every file it sealed match their checksums.
    Verified,
    /// A record written before records were sealed (`kdsr sweep seal` adds the seal).
    Legacy,
}

/// Checks the seal of `record`, read from `<dir>/metrics.json`: bad input naming the file
/// whose checksum does not match, or the sealed file that is gone.
pub fn check(record: &Value, dir: &Path) -> Result<Sealed> {
    let path = dir.join("metrics.json");
    let Some(raw) = record.get("seal") else { return Ok(Sealed::Legacy) };
    let seal: Seal =
        serde_json::from_value(raw.clone()).map_err(|e| bad(&path, &format!("`seal` is not a record's seal: {e}")))?;
    if record_hash(record)? != seal.record {
        return Err(bad(&path, "does not match its own checksum (`seal.record`): edited after the run was recorded?"));
    }
    for (name, want) in &seal.files {
        if !SEALED_FILES.contains(&name.as_str()) {
            return Err(bad(&path, &format!("`seal.files` names `{name}`, which is not a file a record seals")));
        }
        let file = dir.join(name);
        if !file.is_file() {
            return Err(bad(&file, "missing, but the run's record (metrics.json) was sealed with it"));
        }
        if &file_hash(&file)? != want {
            return Err(bad(
                &file,
                "does not match the checksum in the run's record (metrics.json): edited or replaced after the run?",
            ));
        }
    }
    Ok(Sealed::Verified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn folder() -> (tempfile::TempDir, Value) {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("run.toml"), "seed = 7\n").unwrap();
        std::fs::write(d.path().join("epochs.csv"), "epoch,loss\n1,6.5\n").unwrap();
        (d, json!({ "run_id": "r", "test": { "hr@20": 13.5, "ndcg@20": 0.1 + 0.2 }, "seconds": null }))
    }

    #[test]
    fn a_sealed_record_verifies_through_its_file_and_any_edit_is_refused() {
        let (d, mut rec) = folder();
        assert_eq!(check(&rec, d.path()).unwrap(), Sealed::Legacy);
        let seal = seal(&mut rec, d.path()).unwrap();
        assert_eq!(seal.files.len(), 2);
        // Written in any layout and read back: still verifies (exact float round trip).
        let back: Value = serde_json::from_str(&serde_json::to_string_pretty(&rec).unwrap()).unwrap();
        assert_eq!(check(&back, d.path()).unwrap(), Sealed::Verified);

        let mut edited = back.clone();
        edited["test"]["hr@20"] = json!(13.6);
        let err = check(&edited, d.path()).unwrap_err();
        assert!(crate::error::is_bad_input(&err) && err.to_string().contains("metrics.json"), "{err:#}");

        let mut extra = back.clone();
        extra["note"] = json!("added");
        assert!(check(&extra, d.path()).is_err());

        std::fs::write(d.path().join("epochs.csv"), "epoch,loss\n1,6.4\n").unwrap();
        let err = check(&back, d.path()).unwrap_err();
        assert!(err.to_string().contains("epochs.csv") && err.to_string().contains("does not match"), "{err:#}");

        std::fs::remove_file(d.path().join("epochs.csv")).unwrap();
        let err = check(&back, d.path()).unwrap_err();
        assert!(err.to_string().contains("epochs.csv") && err.to_string().contains("missing"), "{err:#}");
    }

    #[test]
    fn a_seal_naming_a_foreign_file_is_refused() {
        let (d, mut rec) = folder();
        seal(&mut rec, d.path()).unwrap();
        rec["seal"]["files"]["../other/metrics.json"] = json!("00");
        let h = record_hash(&rec).unwrap();
        rec["seal"]["record"] = json!(h);
        let err = check(&rec, d.path()).unwrap_err();
        assert!(err.to_string().contains("not a file a record seals"), "{err:#}");
    }
}
