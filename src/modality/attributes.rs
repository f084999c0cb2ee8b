//! Item attributes as a multi-hot modality.
//!
//! - Amazon (beauty, sports, toys): `*_item2attributes.json.gz`, a JSON object
//!   `{"item id": [attribute id, ...]}` (S3-Rec's release: categories and brand share one id
//!   space and cannot be told apart). Beauty and Sports use the ids of their sequence files.
//!   The Toys file uses the numbering of `Toys_and_Games.txt`, not `toys_sequential_data.txt`
//!   (kdsr's Toys): the map between them is recovered from the two sequence files and verified
//!   ([`super::align`]); if it cannot be established the build fails.
//! - MovieLens: the genres of the RecBole `.item` file, one column per genre name (sorted).
//!
//! Feature: x_i[a - 1] = 1 if item i has attribute id a, else 0 (dim = largest attribute id;
//! for MovieLens, column k is the k-th genre name in sorted order). Not normalised.

use super::{align, text, Catalogue};
use crate::data::sources::read_sequence_file;
use crate::data::{DataPaths, DatasetId};
use crate::error::bad_input;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest attribute id accepted: the multi-hot matrix is dense, one column per id.
pub const MAX_ATTRIBUTE_ID: u32 = 100_000;

/// The attribute ids (1-based, sorted, unique) of every catalogue item.
pub fn item_attributes(id: DatasetId, paths: &DataPaths) -> Result<Catalogue<Vec<u32>>> {
    let amazon = paths.data_dir.join("amazon");
    match id {
        DatasetId::Beauty => read_item2attributes(&amazon.join("Beauty_item2attributes.json.gz")),
        DatasetId::Sports => read_item2attributes(&amazon.join("Sports_and_Outdoors_item2attributes.json.gz")),
        DatasetId::Toys => toys_attributes(
            &amazon.join("Toys_and_Games_item2attributes.json.gz"),
            &amazon.join("toys_sequential_data.txt.gz"),
            &amazon.join("Toys_and_Games.txt.gz"),
        ),
        DatasetId::Ml1m | DatasetId::Ml100k => {
            let path = text::recbole_item_file(id, paths).expect("MovieLens has an .item file");
            let items = text::read_recbole_items(&path)?;
            let names: BTreeSet<&str> = items.rows.iter().flat_map(|r| r.genres.iter().map(String::as_str)).collect();
            let col: BTreeMap<&str, u32> = names.iter().enumerate().map(|(k, g)| (*g, k as u32 + 1)).collect();
            let values = items
                .rows
                .iter()
                .map(|r| {
                    let mut v: Vec<u32> = r.genres.iter().map(|g| col[g.as_str()]).collect();
                    v.sort_unstable();
                    v.dedup();
                    v
                })
                .collect();
            Ok(Catalogue { tokens: items.tokens, values, inputs: vec![path] })
        }
        DatasetId::Clothing => Err(bad_input("clothing has no item attributes in the shared data")),
    }
}

/// Reads an S3-Rec `item2attributes` JSON (optionally gzipped); tokens are the item ids
/// in ascending order.
pub fn read_item2attributes(path: &Path) -> Result<Catalogue<Vec<u32>>> {
    let file = std::fs::File::open(path).map_err(|e| bad_input(format!("{}: cannot open: {e}", path.display())))?;
    let mut text = String::new();
    let read = if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(file).read_to_string(&mut text)
    } else {
        std::io::BufReader::new(file).read_to_string(&mut text)
    };
    read.map_err(|e| bad_input(format!("{}: cannot read (truncated or corrupt gzip?): {e}", path.display())))?;
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).map_err(|e| {
        bad_input(format!(
            "{}:{}: expected a JSON object {{\"item id\": [attribute ids]}}: {e}",
            path.display(),
            e.line()
        ))
    })?;
    let mut rows: Vec<(u64, Vec<u32>)> = Vec::with_capacity(map.len());
    for (key, value) in &map {
        let id = key.parse::<u64>().ok().filter(|&v| v > 0).ok_or_else(|| {
            bad_input(format!("{}: key \"{key}\": expected a positive integer item id", path.display()))
        })?;
        let list = value.as_array().ok_or_else(|| {
            bad_input(format!("{}: key \"{key}\": expected a list of attribute ids, found {value}", path.display()))
        })?;
        let mut attrs = Vec::with_capacity(list.len());
        for v in list {
            match v.as_u64() {
                Some(a) if a > 0 && a <= MAX_ATTRIBUTE_ID as u64 => attrs.push(a as u32),
                _ => {
                    return Err(bad_input(format!(
                        "{}: key \"{key}\": expected positive integer attribute ids up to {MAX_ATTRIBUTE_ID} (the \
                         multi-hot width), found {v}",
                        path.display()
                    )))
                }
            }
        }
        attrs.sort_unstable();
        attrs.dedup();
        rows.push((id, attrs));
    }
    rows.sort_unstable_by_key(|(id, _)| *id);
    Ok(Catalogue {
        tokens: rows.iter().map(|(id, _)| id.to_string()).collect(),
        values: rows.into_iter().map(|(_, a)| a).collect(),
        inputs: vec![path.to_path_buf()],
    })
}

/// Toys: attributes keyed by `Toys_and_Games.txt` ids, re-keyed to `toys_sequential_data.txt`
/// ids through the recovered item map.
pub fn toys_attributes(attrs: &Path, kdsr_seqs: &Path, attr_seqs: &Path) -> Result<Catalogue<Vec<u32>>> {
    let read = |p: &Path| -> Result<Vec<Vec<u32>>> {
        Ok(read_sequence_file(p)?.into_iter().map(|(_, s)| s.into_iter().map(|i| i as u32).collect()).collect())
    };
    let (a, b) = (read(kdsr_seqs)?, read(attr_seqs)?);
    let f = align::align_numberings(&a, &b).map_err(|why| {
        bad_input(format!(
            "cannot map the item ids of {} onto those of {} (the numbering of {}): {why}",
            kdsr_seqs.display(),
            attr_seqs.display(),
            attrs.display()
        ))
    })?;
    let cat = read_item2attributes(attrs)?;
    let index: std::collections::HashMap<&str, usize> =
        cat.tokens.iter().enumerate().map(|(r, t)| (t.as_str(), r)).collect();
    // An item whose counterpart has no entry gets no attributes (a zero row, counted).
    let values = (1..f.len())
        .map(|i| index.get(f[i].to_string().as_str()).map(|&r| cat.values[r].clone()).unwrap_or_default())
        .collect();
    let mut inputs: Vec<PathBuf> = cat.inputs;
    inputs.extend([kdsr_seqs.to_path_buf(), attr_seqs.to_path_buf()]);
    Ok(Catalogue { tokens: (1..f.len()).map(|i| i.to_string()).collect(), values, inputs })
}

/// Dense multi-hot rows `[n, dim]` (row-major) with dim = the largest attribute id.
pub fn multi_hot(cat: &Catalogue<Vec<u32>>) -> (Vec<f32>, usize) {
    let dim = cat.values.iter().flatten().max().copied().unwrap_or(0) as usize;
    let mut rows = vec![0f32; cat.values.len() * dim];
    for (r, attrs) in cat.values.iter().enumerate() {
        for &a in attrs {
            rows[r * dim + a as usize - 1] = 1.0;
        }
    }
    (rows, dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_parses_and_errors_name_the_key() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        std::fs::write(&p, r#"{"10": [3, 1, 3], "2": [2]}"#).unwrap();
        let c = read_item2attributes(&p).unwrap();
        assert_eq!(c.tokens, ["2", "10"]);
        assert_eq!(c.values, [vec![2], vec![1, 3]]);
        let (rows, dim) = multi_hot(&c);
        assert_eq!((dim, rows), (3, vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0]));
        std::fs::write(&p, r#"{"1": [1], "x": [2]}"#).unwrap();
        assert!(read_item2attributes(&p).unwrap_err().to_string().contains("key \"x\""));
        std::fs::write(&p, r#"{"1": [1, "b"]}"#).unwrap();
        assert!(read_item2attributes(&p).unwrap_err().to_string().contains("key \"1\""));
        std::fs::write(&p, r#"{"1": [1], "7": [4000000000]}"#).unwrap();
        let e = read_item2attributes(&p).unwrap_err().to_string();
        assert!(e.contains("key \"7\"") && e.contains("up to 100000"), "{e}");
        std::fs::write(&p, "{\"1\": [1],\n\"2\": [}").unwrap();
        let e = read_item2attributes(&p).unwrap_err().to_string();
        assert!(e.contains("a.json:2"), "{e}");
    }
}
