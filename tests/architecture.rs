//! The stages import each other without a cycle: the graph of `crate::<module>` references
//! between top-level modules of src/ (outside tests and comments) is acyclic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()) {
        if e.is_dir() {
            rust_files(&e, out);
        } else if e.extension().is_some_and(|x| x == "rs") {
            out.push(e);
        }
    }
}

/// Top-level module -> the top-level modules its code refers to.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap().map(|e| e.unwrap().path()) {
        let name = e.file_stem().unwrap().to_string_lossy().to_string();
        if name == "lib" || name == "main" {
            continue;
        }
        let mut files = Vec::new();
        if e.is_dir() {
            rust_files(&e, &mut files);
        } else if e.extension().is_some_and(|x| x == "rs") {
            files.push(e.clone());
        } else {
            continue;
        }
        modules.insert(name, files);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .iter()
        .map(|(m, files)| {
            let mut deps = BTreeSet::new();
            for f in files {
                let text = std::fs::read_to_string(f).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap();
                for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for part in line.split("crate::").skip(1) {
                        let id: String = part.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                        if id != *m && names.contains(&id) {
                            deps.insert(id);
                        }
                    }
                }
            }
            (m.clone(), deps)
        })
        .collect()
}

/// A cycle through `start`, if any (depth-first).
fn cycle_from(g: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn go(
        g: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in g.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if go(g, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    go(g, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn stages_import_without_cycles() {
    let g = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(g.len() > 10, "found only {:?}", g.keys());
    assert!(g["report"].contains("analysis") && g["analysis"].contains("sweep"), "the scan sees imports: {g:?}");
    for m in g.keys() {
        if let Some(c) = cycle_from(&g, m) {
            panic!("import cycle: {} -> {m}", c.join(" -> "));
        }
    }
}

#[test]
fn a_planted_cycle_is_found() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("grid".into()).or_default().insert("report".into());
    g.entry("report".into()).or_default().insert("sweep".into());
    g.entry("sweep".into()).or_default().insert("grid".into());
    assert_eq!(cycle_from(&g, "grid").unwrap(), vec!["grid", "report", "sweep"]);
    g.get_mut("sweep").unwrap().clear();
    assert!(cycle_from(&g, "grid").is_none());
}
