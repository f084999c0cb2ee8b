//! `kdsr report claims` on the committed records: the generated files and the README's
//! generated blocks equal what the records give (so the README cannot drift from them), a
//! planted edit in a block fails the check and a rewrite restores it, and a malformed claims
//! file is bad input naming the file, line and key.

mod common;

use std::path::Path;
use std::process::Output;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kdsr(args: &[&str]) -> Output {
    common::kdsr_bin().current_dir(root()).args(["report", "claims"]).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The committed reports/claims/ and README.md blocks are what the committed records give.
#[test]
fn committed_claims_and_readme_blocks_match_the_records() {
    let o = kdsr(&["--check", "--readme", "README.md"]);
    assert!(o.status.success(), "{}", text(&o));
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("<!-- generated:claims -->"), "the README holds the claims table");
}

/// A verdict changed by hand inside a generated block: the check fails naming the block, and
/// the rewrite puts the generated text back.
#[test]
fn a_planted_edit_in_a_readme_block_fails_the_check() {
    let original = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = original.find("<!-- generated:claims -->").expect("claims block");
    let end = original[start..].find("<!-- /generated:claims -->").unwrap() + start;
    let verdict = original[start..end].find("**not supported**").expect("a verdict in the block") + start;
    let mut planted = original.clone();
    planted.replace_range(verdict..verdict + "**not supported**".len(), "**supported**");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("README.md");
    std::fs::write(&copy, &planted).unwrap();
    let copy_arg = copy.to_str().unwrap();
    let o = kdsr(&["--check", "--readme", copy_arg]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("block `claims`"), "{}", text(&o));
    // The rewrite, through the library so that the repository's reports/claims/ is not written.
    let file = kdsr::report::claims::spec::ClaimsFile::read(&root().join("experiments/claims.toml")).unwrap();
    let claims = kdsr::report::claims::Claims::compute(file, &root().join("reports")).unwrap();
    let blocks = kdsr::report::readme::generated(&claims, &planted, "README.md", &root().join("reports")).unwrap();
    let (restored, changed) = kdsr::report::readme::update(&planted, "README.md", &blocks).unwrap();
    assert_eq!(changed, ["claims"]);
    std::fs::write(&copy, restored).unwrap();
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), original, "the rewrite restores the block");
}

/// A malformed claims file: exit code 2, the message names the file, line and key.
#[test]
fn a_malformed_claims_file_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(root().join("experiments/claims.toml")).unwrap();
    let cases = [
        (good.replacen("direction = \"greater\"", "direction = \"upwards\"", 1), "direction"),
        (
            good.replacen("modality = \"tuned + CDL\" }", "modality = \"tuned + KDSR\" }", 1),
            "no run of grid `fig3_beauty`",
        ),
        (good.replacen("grid = \"fig3_beauty\"", "grid = \"fig9\"", 1), "grid `fig9`"),
        (
            good.replacen(
                "treatment = { model = \"sasrec\", modality",
                "treatment = { modle = \"sasrec\", modality",
                1,
            ),
            "`modle` is not a plan column",
        ),
    ];
    for (i, (text_in, want)) in cases.iter().enumerate() {
        assert_ne!(text_in, &good, "case {i} changes the file");
        let path = dir.path().join(format!("claims{i}.toml"));
        std::fs::write(&path, text_in).unwrap();
        let o = kdsr(&["--check", "--claims", path.to_str().unwrap()]);
        let msg = text(&o);
        assert_eq!(o.status.code(), Some(2), "case {i}: {msg}");
        assert!(msg.contains(&format!("claims{i}.toml:")) && msg.contains(want), "case {i}: {msg}");
    }
}
