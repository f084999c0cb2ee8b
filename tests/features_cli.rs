//! `kdsr features build`: output on real data, and bad input (exit code 2, the file, line or
//! key named, no panic).

mod common;

use std::io::Write;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = common::kdsr_bin().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).to_string(), stderr)
}

#[test]
fn attributes_report_shape_and_zero_rows() {
    let (code, out, err) = run(&["features", "build", "--dataset", "toys", "--modality", "attributes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("shape      [11925, 1027]"), "{out}");
    assert!(out.contains("zero rows  0 of 11924 items"), "{out}");
    assert!(out.contains("seconds"), "{out}");
}

#[test]
fn clothing_has_no_side_information() {
    for modality in ["text", "attributes"] {
        let (code, _, err) = run(&["features", "build", "--dataset", "clothing", "--modality", modality]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("clothing has no item side information"), "{err}");
    }
}

#[test]
fn bad_options_and_files_are_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-encoder");
    let (code, _, err) = run(&[
        "features",
        "build",
        "--dataset",
        "beauty",
        "--modality",
        "text",
        "--encoder",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no-encoder: text encoder folder not found"), "{err}");

    let (code, _, err) = run(&["features", "build", "--dataset", "beauty", "--modality", "image"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no image features") && err.contains("--file"), "{err}");

    let npy = dir.path().join("img.npy");
    std::fs::write(&npy, b"\x93NUMPY garbage").unwrap();
    let (code, _, err) =
        run(&["features", "build", "--dataset", "beauty", "--modality", "image", "--file", npy.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("img.npy: cannot read as .npy"), "{err}");

    let (code, _, err) = run(&["features", "build", "--dataset", "beauty", "--modality", "attributes", "--file", "x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--file applies to --modality image only"), "{err}");
}

#[test]
fn broken_attribute_file_names_file_and_key() {
    // A data directory with the real Beauty sequences and a broken attribute file.
    let dir = tempfile::tempdir().unwrap();
    let amazon = dir.path().join("amazon");
    std::fs::create_dir(&amazon).unwrap();
    let real = common::paths().data_dir.join("amazon/Beauty.txt.gz");
    std::fs::copy(real, amazon.join("Beauty.txt.gz")).unwrap();
    let write_gz = |name: &str, body: &str| {
        let f = std::fs::File::create(amazon.join(name)).unwrap();
        let mut enc = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        enc.write_all(body.as_bytes()).unwrap();
        enc.finish().unwrap();
    };
    let data_dir = dir.path().to_str().unwrap();
    let build =
        || run(&["--data-dir", data_dir, "features", "build", "--dataset", "beauty", "--modality", "attributes"]);
    write_gz("Beauty_item2attributes.json.gz", r#"{"1": [1, 2], "2": [3, "brand"]}"#);
    let (code, _, err) = build();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Beauty_item2attributes.json.gz: key \"2\""), "{err}");
    write_gz("Beauty_item2attributes.json.gz", "{\"1\": [1, 2],\n \"2\": [3,\n");
    let (code, _, err) = build();
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Beauty_item2attributes.json.gz:3"), "{err}");
    // Items missing from the file get zero rows, and the count is reported.
    write_gz("Beauty_item2attributes.json.gz", r#"{"1": [1, 2], "2": [3]}"#);
    let (code, out, err) = build();
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("zero rows  12099 of 12101 items have no attributes"), "{out}");
}
