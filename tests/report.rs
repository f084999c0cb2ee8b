//! `kdsr report` and `kdsr gate` on hand-made records: known means and stds in the summary,
//! the table's best/second marks and paper column, missing runs named with their reason,
//! figures written as real PNG/SVG, a bad `[report]` naming its line, and the gate failing on a
//! planted regression.

mod common;

use kdsr::sweep::plan::Plan;
use kdsr::sweep::Scale;
use std::path::{Path, PathBuf};
use std::process::Output;

const GRID: &str = r#"description = "hand-made records"
seeds = [1, 2, 3]

[fixed]
dataset = "beauty"

[axes]
model = ["pop", "sasrec", "gru4rec"]

[report]
rows = ["dataset", "metric"]
columns = ["model"]
metrics = ["hr@5", "hr@20"]
reference = { model = "pop" }
paper = "table2"
figures = ["drift", "compat"]
x = "model"
"#;

/// hr@20 per (model, seed); hr@5 is half of it. gru4rec seed 3 has no record.
fn hr20(model: &str, seed: u64) -> Option<f64> {
    match model {
        "pop" => Some([2.0, 2.5, 3.0][seed as usize - 1]),
        "sasrec" => Some([10.0, 12.0, 14.0][seed as usize - 1]),
        "gru4rec" => [Some(8.0), Some(9.0), None][seed as usize - 1],
        "srgnn" => Some(9.0),
        _ => None,
    }
}

struct Setup {
    dir: tempfile::TempDir,
    grid: PathBuf,
    runs: Vec<(String, String, u64, kdsr::config::RunConfig)>,
}

impl Setup {
    fn new(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let grid = dir.path().join("hand.toml");
        std::fs::write(&grid, text).unwrap();
        // A grid that does not load has no runs (the bad-input tests).
        let runs = Plan::build(grid.to_str().unwrap(), Scale::default(), None)
            .map(|plan| {
                plan.all
                    .iter()
                    .map(|r| {
                        (r.run_id.clone(), r.config.model.kind().name().to_string(), r.config.seed, r.config.clone())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { dir, grid, runs }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("reports")
    }

    fn write_records(&self, scale_sasrec: f64) {
        for (id, model, seed, cfg) in &self.runs {
            let Some(h) = hr20(model, *seed) else { continue };
            let h = if model == "sasrec" { h * scale_sasrec } else { h };
            let d = self.out().join("hand").join("runs").join(id);
            std::fs::create_dir_all(&d).unwrap();
            let record = common::hand_record(cfg, &[("hr@5", h / 2.0), ("hr@20", h), ("ndcg@20", h / 3.0)]);
            std::fs::write(d.join("metrics.json"), record).unwrap();
            let mut csv = String::from("epoch,loss,drift_text_original,drift_text_id\n");
            for e in 1..=3 {
                csv += &format!("{e},9.0,{},\n", 0.8 - 0.1 * e as f64 - 0.01 * *seed as f64);
            }
            std::fs::write(d.join("epochs.csv"), csv).unwrap();
        }
    }

    fn kdsr(&self, args: &[&str]) -> (i32, String, String) {
        let mut c = common::kdsr_bin();
        c.args(args).args([self.grid.to_str().unwrap(), "--out", self.out().to_str().unwrap()]);
        let out: Output = c.output().unwrap();
        let (so, se) =
            (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        assert!(!se.contains("panicked"), "panic: {se}");
        (out.status.code().unwrap_or(-1), so, se)
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn report_aggregates_hand_made_records() {
    let s = Setup::new(GRID);
    s.write_records(1.0);
    let (code, stdout, stderr) = s.kdsr(&["report"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let dir = s.out().join("hand");

    // summary.csv: sasrec hr@20 = 12 ± 2 over 3 seeds; gru4rec 8.5 over 2.
    let summary = read(&dir.join("summary.csv"));
    let header: Vec<&str> = summary.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name}: {header:?}"));
    let row = |model: &str| -> Vec<String> {
        summary.lines().find(|l| l.split(',').nth(1) == Some(model)).unwrap().split(',').map(String::from).collect()
    };
    let num = |r: &[String], name: &str| r[col(name)].parse::<f64>().unwrap();
    let sas = row("sasrec");
    assert!((num(&sas, "hr@20_mean") - 12.0).abs() < 1e-9);
    assert!((num(&sas, "hr@20_std") - 2.0).abs() < 1e-9);
    assert_eq!(sas[col("n")], "3");
    assert!(num(&sas, "hr@20_p") < 0.05, "sasrec vs pop paired over 3 seeds");
    let gru = row("gru4rec");
    assert!((num(&gru, "hr@20_mean") - 8.5).abs() < 1e-9);
    assert_eq!(gru[col("n")], "2");
    assert!(dir.join("summary.parquet").metadata().unwrap().len() > 100);

    // table.md: SASRec best (bold), GRU4Rec second (underlined), the paper's SASRec beside.
    let md = read(&dir.join("table.md"));
    assert!(md.contains("**12.00 ± 2.00"), "{md}");
    assert!(md.contains("<u>8.50 ± 0.71"), "{md}");
    assert!(md.contains("SASRec (paper)") && md.contains("14.07"), "{md}");
    assert!(read(&dir.join("table.tex")).contains("\\textbf{12.00 $\\pm$ 2.00"));
    assert!(read(&dir.join("table.csv")).lines().count() == 3, "header + H@5 + H@20 rows");

    // report.md: provenance and the missing run with its reason.
    let report = read(&dir.join("report.md"));
    assert!(report.contains("8 finished of 9 planned"), "{report}");
    assert!(report.contains("not run yet") && report.contains("gru4rec"), "{report}");
    assert!(report.contains("0123456789ab"), "code version in the header: {report}");

    // Figure 1 as PNG and SVG.
    let png = std::fs::read(dir.join("figure1_drift_beauty_text.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(read(&dir.join("figure1_drift_beauty_text.svg")).contains("<svg"));
    assert!(report.contains("figure1_drift_beauty_text.png"));
    // Figure 3 (bars per model).
    let png = std::fs::read(dir.join("figure3_compat_beauty.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(read(&dir.join("figure3_compat_beauty.svg")).contains("<svg"));
}

#[test]
fn a_record_that_does_not_verify_stops_the_report() {
    let s = Setup::new(GRID);
    s.write_records(1.0);
    // A record copied into another run's folder: not that run's result.
    let ids: Vec<&String> = s.runs.iter().map(|r| &r.0).collect();
    let runs = s.out().join("hand").join("runs");
    std::fs::copy(runs.join(ids[3]).join("metrics.json"), runs.join(ids[4]).join("metrics.json")).unwrap();
    let (code, _, stderr) = s.kdsr(&["report"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{}/metrics.json", ids[4])) && stderr.contains("not of its folder"), "{stderr}");
    assert!(!s.out().join("hand").join("report.md").exists(), "no report from records that do not verify");
    // `sweep run` stops the same way before training anything, and so does `gate`.
    let (code, _, stderr) = s.kdsr(&["sweep", "run"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("{}/metrics.json", ids[4])) && stderr.contains("to train the run again"),
        "{stderr}"
    );
    let base = s.dir.path().join("baseline.toml");
    let (code, _, stderr) = s.kdsr(&["gate", "--baseline", base.to_str().unwrap(), "--write-baseline"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{}/metrics.json", ids[4])), "{stderr}");
}

#[test]
fn a_sealed_record_edited_or_given_another_epochs_table_is_refused() {
    let s = Setup::new(GRID);
    s.write_records(1.0);
    let (code, stdout, stderr) = s.kdsr(&["sweep", "seal"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("sealed 8 records (0 were sealed already)"), "{stdout}");
    let (code, stdout, _) = s.kdsr(&["sweep", "seal"]);
    assert!(code == 0 && stdout.contains("sealed 0 records (8 were sealed already)"), "{stdout}");
    let (code, _, stderr) = s.kdsr(&["report"]);
    assert_eq!(code, 0, "{stderr}");
    let runs = s.out().join("hand").join("runs");
    let (a, b) = (&s.runs[0].0, &s.runs[1].0);
    // A metric edited by hand: the folder checks cannot see it, the seal does.
    let path = runs.join(a).join("metrics.json");
    let text = read(&path);
    std::fs::write(&path, text.replacen("\"hr@20\": 2.0", "\"hr@20\": 2.5", 1)).unwrap();
    assert_ne!(read(&path), text, "the edit applies");
    for args in [&["report"][..], &["sweep", "run"][..]] {
        let (code, _, stderr) = s.kdsr(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(&format!("{a}/metrics.json")) && stderr.contains("own checksum"), "{stderr}");
    }
    std::fs::write(&path, &text).unwrap();
    // Another run's per-epoch table.
    std::fs::copy(runs.join(b).join("epochs.csv"), runs.join(a).join("epochs.csv")).unwrap();
    let (code, _, stderr) = s.kdsr(&["report"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&format!("{a}/epochs.csv")) && stderr.contains("does not match"), "{stderr}");
}

#[test]
fn figure4_lines_over_a_numeric_axis() {
    let s = Setup::new(
        r#"seeds = [1, 2]
[fixed]
dataset = "beauty"
[axes]
model = ["sasrec", "gru4rec"]
train.lr = [1e-3, 3e-3]
[report]
rows = ["train.lr"]
columns = ["model", "metric"]
metrics = ["hr@20"]
figures = ["encoders"]
x = "train.lr"
"#,
    );
    s.write_records(1.0);
    let (code, stdout, stderr) = s.kdsr(&["report"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let dir = s.out().join("hand");
    assert!(read(&dir.join("figure4_encoders_beauty.svg")).contains("<svg"));
    let md = read(&dir.join("table.md"));
    assert!(md.contains("| train.lr | SASRec H@20 | GRU4Rec H@20 |"), "{md}");
    assert!(md.contains("| 0.001 |") && md.contains("| 0.003 |"), "{md}");

    // A non-numeric x axis is an error naming it.
    let bad = Setup::new(&std::fs::read_to_string(&s.grid).unwrap().replace("x = \"train.lr\"", "x = \"model\""));
    bad.write_records(1.0);
    let (code, _, stderr) = bad.kdsr(&["report"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("needs numeric values"), "{stderr}");
}

#[test]
fn bad_report_section_names_the_line() {
    let s = Setup::new(&GRID.replace("columns = [\"model\"]", "columns = [\"modle\"]"));
    s.write_records(1.0);
    let (code, _, stderr) = s.kdsr(&["report"]);
    assert_eq!(code, 2, "{stderr}");
    // The [report] section's line, the key and the value.
    assert!(stderr.contains("hand.toml:10: report.columns: `modle` is not a plan column"), "{stderr}");

    let s = Setup::new(&GRID.replace("metrics = [\"hr@5\", \"hr@20\"]", "metrics = [\"hr@7\"]"));
    let (code, _, stderr) = s.kdsr(&["report"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("hand.toml:13") && stderr.contains("hr@7"), "{stderr}");
    // The sweep checks the section before it plans or trains anything.
    for sub in ["plan", "run"] {
        let (code, _, stderr) = s.kdsr(&["sweep", sub]);
        assert_eq!(code, 2, "sweep {sub}: {stderr}");
        assert!(stderr.contains("hand.toml:13") && stderr.contains("hr@7"), "sweep {sub}: {stderr}");
    }
    assert!(!s.out().join("hand").join("runs").exists(), "nothing was run");
}

#[test]
fn gate_fails_on_a_planted_regression() {
    let s = Setup::new(GRID);
    s.write_records(1.0);
    let baseline = s.dir.path().join("baseline.toml");
    let b = baseline.to_str().unwrap();
    let (code, stdout, stderr) = s.kdsr(&["gate", "--baseline", b, "--write-baseline"]);
    assert_eq!(code, 2, "a grid with a missing run cannot be a baseline: {stdout}{stderr}");
    assert!(stderr.contains("1 of the grid's runs have no record"), "{stderr}");

    // Fill in the missing run, write the baseline, pass.
    let gru3 = s.runs.iter().find(|r| r.1 == "gru4rec" && r.2 == 3).unwrap();
    let d = s.out().join("hand").join("runs").join(&gru3.0);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("metrics.json"), common::hand_record(&gru3.3, &[("hr@20", 8.5), ("ndcg@20", 2.8)])).unwrap();
    let (code, stdout, stderr) = s.kdsr(&["gate", "--baseline", b, "--write-baseline"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let text = read(&baseline);
    assert!(text.contains("[[beat]]") && text.contains("Produced by"), "{text}");
    let (code, stdout, stderr) = s.kdsr(&["gate", "--baseline", b]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("all") && !stdout.contains("FAIL"), "{stdout}");

    // Planted regression: SASRec loses 40%.
    s.write_records(0.6);
    let (code, stdout, stderr) = s.kdsr(&["gate", "--baseline", b]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let failing: Vec<&str> = stdout.lines().filter(|l| l.ends_with("FAIL")).collect();
    assert!(!failing.is_empty() && failing.iter().all(|l| l.contains("sasrec")), "{stdout}");
    assert!(stderr.contains("checks failed"), "{stderr}");
}

#[test]
fn protocol_bias_and_gradient_share_sections() {
    use kdsr::eval::{Metric, Metrics};
    use kdsr::results::record::{EpochValue, RunRecord};
    let s = Setup::new(GRID);
    s.write_records(1.0);
    // Give the SASRec runs the released code's selection (hr@20 one point higher, hr@5
    // unchanged) and a gradient probe: CE 3, holistic 1, dissected 0 on text at epoch 1; 1 / 1
    // / 2 at epoch 3 (the last). The other models kept no per-epoch test metrics (as a grid
    // whose pop runs have them and whose neural runs do not), so the section covers one group,
    // which it still names as the main table does.
    for (id, model, _, _) in &s.runs {
        let d = s.out().join("hand").join("runs").join(id);
        let Ok(mut rec) = RunRecord::read(&d) else { continue };
        if model != "sasrec" {
            continue;
        }
        let bump = |m: Metric| if m.to_string() == "hr@20" { 1.0 } else { 0.0 };
        rec.released_selection = Some(
            Metrics::all()
                .into_iter()
                .map(|m| (m, EpochValue { value: rec.test.get(m) + bump(m), epoch: 3 }))
                .collect(),
        );
        // The per-epoch table first, then the record that seals it (as training writes them).
        let csv = "epoch,loss,grad_text_ce,grad_text_holistic,grad_text_dissected\n\
                   1,9.0,3.0,1.0,0.0\n2,8.0,2.0,1.0,1.0\n3,7.0,1.0,1.0,2.0\n";
        std::fs::write(d.join("epochs.csv"), csv).unwrap();
        rec.write(&d).unwrap();
    }
    let (code, stdout, stderr) = s.kdsr(&["report"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report = read(&s.out().join("hand").join("report.md"));
    // SASRec hr@20: 12.00 ours, 13.00 released; no p-value, as pop kept no per-epoch metrics.
    assert!(report.contains("## Protocol bias"), "{report}");
    let line = report.lines().find(|l| l.starts_with("| sasrec | 3 | hr@20 |")).unwrap_or_else(|| panic!("{report}"));
    assert!(line.contains("| 12.00 | 13.00 | +1.00 | - | - |"), "{line}");
    let line = report.lines().find(|l| l.starts_with("| sasrec | 3 | hr@5 |")).unwrap();
    assert!(line.contains("| 6.00 | 6.00 | +0.00 |"), "{line}");
    // Shares: 75 / 25 / 0 at epoch 1, no epoch 5, 25 / 25 / 50 at the last.
    assert!(report.contains("## Gradient shares"), "{report}");
    let line = report.lines().find(|l| l.starts_with("| sasrec | text |")).unwrap_or_else(|| panic!("{report}"));
    assert_eq!(line, "| sasrec | text | 75 / 25 / 0 (3.0e0) | - | 25 / 25 / 50 (1.0e0) |");
    assert!(!report.contains("| pop | text |"), "runs without the probe have no rows");
}

#[test]
fn ordering_section_compares_the_model_order_with_the_paper() {
    // H@20 means: SASRec 12, SR-GNN 9, GRU4Rec 8.5 (seeds 1-2); the paper's Beauty column:
    // SASRec 14.07 > GRU4Rec 12.72 > SR-GNN 10.24. One discordant pair of three: τ = 1/3.
    let s = Setup::new(
        &GRID.replace(r#"model = ["pop", "sasrec", "gru4rec"]"#, r#"model = ["pop", "sasrec", "gru4rec", "srgnn"]"#),
    );
    s.write_records(1.0);
    let (code, stdout, stderr) = s.kdsr(&["report"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let report = read(&s.out().join("hand").join("report.md"));
    assert!(report.contains("## Model ordering against the paper"), "{report}");
    let section = &report[report.find("## Model ordering").unwrap()..];
    let line = section.lines().find(|l| l.starts_with("| Beauty | H@20 |")).unwrap_or_else(|| panic!("{report}"));
    assert_eq!(line, "| Beauty | H@20 | 3 | +0.33 | SASRec > SR-GNN > GRU4Rec | SASRec > GRU4Rec > SR-GNN |");
    // Pop has no paper value and is left out; a grid with two such columns has no section.
    let s = Setup::new(GRID);
    s.write_records(1.0);
    let (code, _, _) = s.kdsr(&["report"]);
    assert_eq!(code, 0);
    assert!(!read(&s.out().join("hand").join("report.md")).contains("## Model ordering"));
}

/// A grid of `models` on Beauty plus SASRec + CDL (an include), three seeds, with H@20 by
/// variant and the `[report]` lines `report`.
fn grid_with_cdl(models: &str, report: &str) -> String {
    format!(
        r#"description = "models and SASRec + CDL"
seeds = [1, 2, 3]

[fixed]
dataset = "beauty"

[axes]
model = {models}

[[include]]
model.kind = "sasrec"
modality.mode = "cdl"

[report]
rows = ["dataset", "metric"]
columns = ["variant"]
metrics = ["hr@20"]
{report}
"#
    )
}

/// A reference over two columns (`{ model = "sasrec", "modality.mode" = "-" }`): SASRec + CDL,
/// which shares the model label with the reference, still gets its paired test against plain
/// SASRec, as popularity does; a reference no run has is named in the error.
#[test]
fn reference_over_two_columns() {
    let grid = grid_with_cdl(r#"["pop", "sasrec"]"#, r#"reference = { model = "sasrec", "modality.mode" = "-" }"#);
    let s = Setup::new(&grid);
    assert_eq!(s.runs.len(), 9, "pop, sasrec, sasrec + cdl x 3 seeds");
    for (id, model, seed, cfg) in &s.runs {
        let base = hr20(model, *seed).unwrap();
        // CDL adds 1.0, 1.5, 1.2: a clear paired gain over SASRec.
        let h = if cfg.modality.is_some() { base + [1.0, 1.5, 1.2][*seed as usize - 1] } else { base };
        let d = s.out().join("hand").join("runs").join(id);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("metrics.json"), common::hand_record(cfg, &[("hr@20", h), ("ndcg@20", h / 3.0)]))
            .unwrap();
        std::fs::write(d.join("epochs.csv"), "epoch,loss\n1,9.0\n").unwrap();
        if cfg.modality.is_some() {
            // The CDL runs carry a peak memory (700 + seed MiB); the others are older records.
            let path = d.join("metrics.json");
            let mut rec: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
            rec["peak_rss_mib"] = (700.0 + *seed as f64).into();
            std::fs::write(&path, rec.to_string()).unwrap();
        }
    }
    let (code, stdout, stderr) = s.kdsr(&["report"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let summary = read(&s.out().join("hand").join("summary.csv"));
    let header: Vec<&str> = summary.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name}: {header:?}"));
    let p_of = |model: &str, mode: &str| -> String {
        let line = summary
            .lines()
            .find(|l| {
                let f: Vec<&str> = l.split(',').collect();
                f[col("model")] == model && f[col("modality.mode")] == mode
            })
            .unwrap_or_else(|| panic!("no {model} {mode}: {summary}"));
        line.split(',').nth(col("hr@20_p")).unwrap().to_string()
    };
    assert_eq!(p_of("sasrec", "-"), "", "the reference has no test against itself: {summary}");
    // d = 1.0, 1.5, 1.2: mean 1.2333, sd 0.2517, t = 8.487, p = 0.0136.
    let p: f64 = p_of("sasrec", "cdl").parse().unwrap_or_else(|e| panic!("{e}: {summary}"));
    assert!((p - 0.0136).abs() < 5e-4, "{p}");
    assert!(p_of("pop", "-").parse::<f64>().unwrap() < 0.01, "{summary}");
    let report = read(&s.out().join("hand").join("report.md"));
    assert!(report.contains("against model = sasrec, modality.mode unset"), "{report}");
    // The cost section: the largest peak over seeds, "-" where records have none.
    assert!(report.contains("## Cost"), "{report}");
    assert!(report.contains("| sasrec / cdl | 3 | 1 | 3 | 2 | 703 |"), "{report}");
    assert!(report.contains("| pop | 3 | 1 | 3 | 2 | - |"), "{report}");

    let s = Setup::new(&grid.replace("\"modality.mode\" = \"-\"", "\"modality.mode\" = \"tuned\""));
    let (code, _, stderr) = s.kdsr(&["report"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("report.reference: no run has model = sasrec, modality.mode = tuned"), "{stderr}");
}

/// A whole variant with a display name (`names`, keyed by its labels joined by " / ") is one
/// column under that name and takes the paper's column of that name; without the name the
/// same variant borrows nothing (SASRec + CDL is not the paper's SASRec).
#[test]
fn a_named_variant_takes_the_papers_column() {
    let grid = grid_with_cdl(r#"["sasrec"]"#, "paper = \"table2\"\nnames = { \"sasrec / cdl\" = \"KDSR\" }");
    for (named, text) in
        [(true, grid.to_string()), (false, grid.replace("names = { \"sasrec / cdl\" = \"KDSR\" }", ""))]
    {
        let s = Setup::new(&text);
        assert_eq!(s.runs.len(), 6, "sasrec, sasrec + cdl x 3 seeds");
        s.write_records(1.0);
        let (code, stdout, stderr) = s.kdsr(&["report"]);
        assert_eq!(code, 0, "{stdout}{stderr}");
        let md = read(&s.out().join("hand").join("table.md"));
        let header = md.lines().next().unwrap();
        // The paper's Beauty H@20: SASRec 14.07, KDSR 14.68.
        assert!(header.contains("SASRec (paper)") && md.contains("14.07"), "{md}");
        if named {
            assert!(header.contains("| KDSR | KDSR (paper) |"), "{md}");
            assert!(md.contains("14.68"), "{md}");
        } else {
            assert!(header.contains("SASRec / tuned + CDL") && !header.contains("KDSR"), "{md}");
            assert!(!md.contains("14.68"), "{md}");
        }
    }
}

/// Every grid file of experiments/ plans (full and trial budgets) and reports with no records:
/// its axes, includes, excludes and `[report]` section (layout, reference, paper, figures)
/// are valid, so a typo in a committed grid fails here rather than hours into a sweep.
#[test]
fn every_grid_file_plans_and_reports() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let mut grids: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        // The claims file is not a grid (tests/claims.rs checks it).
        .filter(|p| p.file_name().is_some_and(|n| n != "claims.toml"))
        .collect();
    grids.sort();
    assert!(grids.len() >= 10, "{grids:?}");
    let out = tempfile::tempdir().unwrap();
    for g in &grids {
        let g = g.to_str().unwrap();
        for args in [vec!["sweep", "plan", g], vec!["sweep", "plan", g, "--budget", "quick"], vec!["report", g]] {
            let o = common::kdsr_bin().args(&args).arg("--out").arg(out.path()).output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success() && !err.contains("panicked"), "kdsr {}: {err}", args.join(" "));
        }
    }
}
