//! Generated blocks in a Markdown file (the README): the text between
//! `<!-- generated:NAME -->` and `<!-- /generated:NAME -->`, each marker on its own line, is
//! replaced by block `NAME` as `kdsr report claims --readme FILE` computes it from the records:
//! `claims` (the claims table), `claim:<id>` (one claim's tables), `replicates` (the
//! comparisons recorded by several grids), `table:<grid>` (the grid's `table.md` as
//! `kdsr report <grid>` renders it). Text outside the markers is left as it is.

use crate::error::bad_input;
use anyhow::Result;
use std::collections::BTreeMap;

/// A block found in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub name: String,
    /// 1-based line of the opening marker.
    pub line: usize,
    /// Byte range of the content (between the markers' lines).
    pub content: std::ops::Range<usize>,
}

fn marker(line: &str, close: bool) -> Option<&str> {
    let inner = line.trim().strip_prefix("<!--")?.strip_suffix("-->")?.trim();
    let rest = if close { inner.strip_prefix("/generated:")? } else { inner.strip_prefix("generated:")? };
    Some(rest.trim())
}

/// The blocks of `text` in order; a marker without its partner, nested or mismatched markers
/// are bad input naming `path` and the line.
pub fn find(text: &str, path: &str) -> Result<Vec<Block>> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize, usize)> = None;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += line.len();
        if let Some(name) = marker(line, false) {
            if let Some((other, at, _)) = &open {
                return Err(bad_input(format!("{path}:{}: block `{name}` opens inside `{other}` (line {at})", i + 1)));
            }
            open = Some((name.to_string(), i + 1, offset));
        } else if let Some(name) = marker(line, true) {
            match open.take() {
                Some((o, at, from)) if o == name => out.push(Block { name: o, line: at, content: from..start }),
                Some((o, at, _)) => {
                    return Err(bad_input(format!("{path}:{}: `/generated:{name}` closes `{o}` (line {at})", i + 1)))
                }
                None => return Err(bad_input(format!("{path}:{}: `/generated:{name}` without its opening", i + 1))),
            }
        }
    }
    if let Some((name, at, _)) = open {
        return Err(bad_input(format!("{path}:{at}: block `{name}` is never closed")));
    }
    Ok(out)
}

/// The content of every block `text` names: the claims' blocks, and `table:<grid>` rendered
/// from the grid's records under `out` (`table:<grid>.trial`: from its `--budget quick`
/// trial's records).
pub fn generated(
    claims: &crate::report::claims::Claims,
    text: &str,
    path: &str,
    out: &std::path::Path,
) -> Result<BTreeMap<String, String>> {
    let mut blocks = crate::report::claims::render::blocks(claims);
    for b in find(text, path)? {
        if let Some(grid) = b.name.strip_prefix("table:") {
            let table = crate::report::table_markdown(grid, out)
                .map_err(|e| bad_input(format!("{path}:{}: block `{}`: {e:#}", b.line, b.name)))?;
            blocks.insert(b.name.clone(), table);
        }
    }
    Ok(blocks)
}

/// `text` with every block's content replaced by `blocks[name]`, and the names of the blocks
/// whose content changed. A block name that `blocks` lacks is bad input.
pub fn update(text: &str, path: &str, blocks: &BTreeMap<String, String>) -> Result<(String, Vec<String>)> {
    let mut out = String::with_capacity(text.len());
    let mut changed = Vec::new();
    let mut last = 0;
    for b in find(text, path)? {
        let want = blocks.get(&b.name).ok_or_else(|| {
            bad_input(format!(
                "{path}:{}: no generated block `{}` (known: {})",
                b.line,
                b.name,
                blocks.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let want = if want.ends_with('\n') { want.clone() } else { format!("{want}\n") };
        if text[b.content.clone()] != want {
            changed.push(b.name.clone());
        }
        out += &text[last..b.content.start];
        out += &want;
        last = b.content.end;
    }
    out += &text[last..];
    Ok((out, changed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_replaced_and_stale_ones_named() {
        let text = "intro\n<!-- generated:a -->\nold\n<!-- /generated:a -->\nmid\n<!-- generated:b -->\nsame\n<!-- /generated:b -->\nend\n";
        let blocks: BTreeMap<String, String> = [("a".into(), "new".into()), ("b".into(), "same\n".into())].into();
        let (out, changed) = update(text, "R.md", &blocks).unwrap();
        assert_eq!(changed, ["a"]);
        assert_eq!(out, text.replace("old", "new"));
        let (again, changed) = update(&out, "R.md", &blocks).unwrap();
        assert!(changed.is_empty() && again == out, "idempotent");
    }

    #[test]
    fn broken_markers_name_the_line() {
        let e = find("x\n<!-- generated:a -->\n", "R.md").unwrap_err();
        assert!(e.to_string().starts_with("R.md:2:") && crate::error::is_bad_input(&e), "{e}");
        let e = find("<!-- generated:a -->\n<!-- /generated:b -->\n", "R.md").unwrap_err();
        assert!(e.to_string().starts_with("R.md:2:"), "{e}");
        let e = update("<!-- generated:zz -->\n<!-- /generated:zz -->\n", "R.md", &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("no generated block `zz`"), "{e}");
    }
}
