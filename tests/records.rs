//! Every committed run record is what it says it is: it verifies against its folder (run id,
//! seed, run.toml's hash) and carries a seal that matches it, its run.toml and its epochs.csv.
//! A record added unsealed (trained by a binary from before 2026-12-07) fails here until
//! `kdsr sweep seal <grid>` seals it.

use kdsr::results::record::RunRecord;
use std::path::Path;

#[test]
fn every_committed_record_is_sealed_and_verifies() {
    let reports = Path::new(env!("CARGO_MANIFEST_DIR")).join("reports");
    let mut checked = 0;
    let mut problems = Vec::new();
    for grid in std::fs::read_dir(&reports).unwrap().flatten() {
        let name = grid.file_name().to_string_lossy().to_string();
        let runs = grid.path().join("runs");
        // Trial grids (`<grid>.trial`) are not committed.
        if name.ends_with(".trial") || !runs.is_dir() {
            continue;
        }
        for run in std::fs::read_dir(&runs).unwrap().flatten() {
            if !run.path().join("metrics.json").is_file() {
                continue;
            }
            match RunRecord::read(&run.path()) {
                Ok(rec) if rec.seal.is_some() => checked += 1,
                Ok(_) => problems.push(format!("{}: not sealed (`kdsr sweep seal {name}`)", run.path().display())),
                Err(e) => problems.push(format!("{e:#}")),
            }
        }
    }
    assert!(problems.is_empty(), "{} records do not verify:\n{}", problems.len(), problems.join("\n"));
    assert!(checked > 200, "only {checked} committed records found under {}", reports.display());
}
