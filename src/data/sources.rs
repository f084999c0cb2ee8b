//! Readers for the on-disk formats: sequence files (`user item item ...`), RecBole atomic
//! `.inter` files and raw ratings CSV (`user,item,rating,timestamp`, McAuley 2014).
//!
//! Every reader names the file and the 1-based line of the first problem it meets.

use crate::data::kcore::Interaction;
use crate::error::bad_input;
use anyhow::Result;
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Opens `path` as a line reader, decompressing `.gz` files.
fn open_lines(path: &Path) -> Result<Box<dyn BufRead>> {
    let file = File::open(path).map_err(|e| bad_input(format!("{}: cannot open: {e}", path.display())))?;
    let reader: Box<dyn Read> =
        if path.extension().is_some_and(|e| e == "gz") { Box::new(MultiGzDecoder::new(file)) } else { Box::new(file) };
    Ok(Box::new(BufReader::with_capacity(1 << 16, reader)))
}

/// Calls `f(line_no, line)` for every line (1-based, without the newline). I/O and
/// decompression errors name the file and the line being read.
pub(crate) fn for_each_line(path: &Path, mut f: impl FnMut(usize, &str) -> Result<()>) -> Result<usize> {
    let mut reader = open_lines(path)?;
    let mut buf = String::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let n = reader.read_line(&mut buf).map_err(|e| {
            bad_input(format!(
                "{}:{}: cannot read (truncated or corrupt gzip, or not UTF-8): {e}",
                path.display(),
                line_no + 1
            ))
        })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        f(line_no, buf.trim_end_matches(['\n', '\r']))?;
    }
    if line_no == 0 {
        return Err(bad_input(format!("{}: file is empty", path.display())));
    }
    Ok(line_no)
}

/// Reads a sequence file: one user per line, `user_id item_id item_id ...`, items in time
/// order, positive integer ids. Returns `(user_id, items)` per non-blank line.
pub fn read_sequence_file(path: &Path) -> Result<Vec<(u64, Vec<u64>)>> {
    let mut out = Vec::new();
    let mut first_line: std::collections::HashMap<u64, usize> = Default::default();
    for_each_line(path, |line_no, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let mut fields = line.split_whitespace();
        let user = parse_id(path, line_no, fields.next().unwrap_or_default())?;
        let items = fields.map(|tok| parse_id(path, line_no, tok)).collect::<Result<Vec<_>>>()?;
        if items.is_empty() {
            return Err(bad_input(format!(
                "{}:{line_no}: expected `user_id item_id [item_id ...]`, found only one column",
                path.display()
            )));
        }
        if let Some(first) = first_line.insert(user, line_no) {
            return Err(bad_input(format!(
                "{}:{line_no}: user {user} already has a sequence on line {first} (one line per user)",
                path.display()
            )));
        }
        out.push((user, items));
        Ok(())
    })?;
    if out.is_empty() {
        return Err(bad_input(format!("{}: no sequences (only blank lines)", path.display())));
    }
    Ok(out)
}

fn parse_id(path: &Path, line_no: usize, tok: &str) -> Result<u64> {
    match tok.parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(bad_input(format!("{}:{line_no}: expected a positive integer id, found `{tok}`", path.display()))),
    }
}

/// Reads a raw ratings CSV, `user,item,rating,timestamp` per line (the McAuley 2014
/// `ratings_*.csv` files; no header, or a header line whose timestamp column is not a number).
pub fn read_ratings_csv(path: &Path) -> Result<Vec<Interaction<String>>> {
    let mut out = Vec::new();
    for_each_line(path, |line_no, line| {
        if line.trim().is_empty() {
            return Ok(());
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() != 4 {
            return Err(bad_input(format!(
                "{}:{line_no}: expected 4 comma-separated columns (user,item,rating,timestamp), found {}",
                path.display(),
                cols.len()
            )));
        }
        let ts = match cols[3].parse::<f64>() {
            Ok(t) if t.is_finite() => t,
            _ if line_no == 1 => return Ok(()), // header line
            _ => {
                return Err(bad_input(format!(
                    "{}:{line_no}: expected a numeric timestamp, found `{}`",
                    path.display(),
                    cols[3]
                )))
            }
        };
        if cols[0].is_empty() || cols[1].is_empty() {
            return Err(bad_input(format!("{}:{line_no}: empty user or item id", path.display())));
        }
        out.push(Interaction { user: cols[0].to_string(), item: cols[1].to_string(), ts });
        Ok(())
    })?;
    Ok(out)
}

/// Reads a RecBole atomic file: tab-separated, with a typed header (`user_id:token\t...`).
/// `wanted[k]` lists the accepted names of the k-th column the caller needs; `f(line_no,
/// fields, cols)` gets every non-empty data line with `cols[k]` the index of the k-th column.
/// A missing column or a line with another column count is an error naming the file and line.
pub(crate) fn for_each_atomic_row(
    path: &Path,
    wanted: &[&[&str]],
    mut f: impl FnMut(usize, &[&str], &[usize]) -> Result<()>,
) -> Result<()> {
    let mut header: Option<(Vec<usize>, usize)> = None;
    for_each_line(path, |line_no, line| {
        let fields: Vec<&str> = line.split('\t').collect();
        let Some((cols, n)) = &header else {
            let find = |names: &&[&str]| fields.iter().position(|h| names.contains(&h.split(':').next().unwrap_or("")));
            let cols: Option<Vec<usize>> = wanted.iter().map(find).collect();
            let Some(cols) = cols else {
                let names: Vec<String> = wanted.iter().map(|n| n.join(" or ")).collect();
                return Err(bad_input(format!(
                    "{}:1: expected a RecBole header with columns {}",
                    path.display(),
                    names.join(", ")
                )));
            };
            header = Some((cols, fields.len()));
            return Ok(());
        };
        if line.is_empty() {
            return Ok(());
        }
        if fields.len() != *n {
            return Err(bad_input(format!(
                "{}:{line_no}: expected {n} tab-separated columns, found {}",
                path.display(),
                fields.len()
            )));
        }
        f(line_no, &fields, cols)
    })?;
    Ok(())
}

/// Reads a RecBole atomic `.inter` file: tab-separated with a typed header such as
/// `user_id:token\titem_id:token\trating:float\ttimestamp:float`.
pub fn read_atomic_inter(path: &Path) -> Result<Vec<Interaction<String>>> {
    let mut out = Vec::new();
    for_each_atomic_row(path, &[&["user_id"], &["item_id"], &["timestamp"]], |line_no, fields, c| {
        let ts = fields[c[2]].parse::<f64>().map_err(|_| {
            bad_input(format!("{}:{line_no}: expected a numeric timestamp, found `{}`", path.display(), fields[c[2]]))
        })?;
        out.push(Interaction { user: fields[c[0]].to_string(), item: fields[c[1]].to_string(), ts });
        Ok(())
    })?;
    if out.is_empty() {
        return Err(bad_input(format!("{}: no interactions after the header", path.display())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, body: &[u8]) -> std::path::PathBuf {
        let p = dir.path().join(name);
        std::fs::File::create(&p).unwrap().write_all(body).unwrap();
        p
    }

    #[test]
    fn sequence_file_errors_name_the_line() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "s.txt", b"1 2 3\n2 4 x5\n");
        let e = read_sequence_file(&p).unwrap_err().to_string();
        assert!(e.contains("s.txt:2") && e.contains("x5"), "{e}");
        let p = write(&d, "c.txt", b"1 2 3\n2\n");
        let e = read_sequence_file(&p).unwrap_err().to_string();
        assert!(e.contains("c.txt:2") && e.contains("one column"), "{e}");
        let p = write(&d, "e.txt", b"");
        assert!(read_sequence_file(&p).unwrap_err().to_string().contains("empty"));
        let ok = read_sequence_file(&write(&d, "ok.txt", b"7 1 2\n\n8 3 4 5\n")).unwrap();
        assert_eq!(ok, vec![(7, vec![1, 2]), (8, vec![3, 4, 5])]);
    }

    #[test]
    fn ratings_csv_parses_and_rejects() {
        let d = tempfile::tempdir().unwrap();
        let p = write(&d, "r.csv", b"user,item,rating,time\nA,x,5.0,100\nB,y,4.0,99\n");
        let r = read_ratings_csv(&p).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].item, "y");
        let p = write(&d, "bad.csv", b"A,x,5.0,100\nB,y,4.0\n");
        let e = read_ratings_csv(&p).unwrap_err().to_string();
        assert!(e.contains("bad.csv:2") && e.contains("4 comma-separated"), "{e}");
        let p = write(&d, "ts.csv", b"A,x,5.0,100\nB,y,4.0,soon\n");
        assert!(read_ratings_csv(&p).unwrap_err().to_string().contains("ts.csv:2"));
    }

    #[test]
    fn truncated_gzip_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for u in 1..2000 {
            writeln!(enc, "{u} 1 2 3 4 5 6 7 8 9 10 11 12").unwrap();
        }
        let full = enc.finish().unwrap();
        let p = write(&d, "t.txt.gz", &full[..full.len() / 2]);
        let e = read_sequence_file(&p).unwrap_err().to_string();
        assert!(e.contains("t.txt.gz:") && e.contains("truncated"), "{e}");
    }
}
