//! Bad input on the command line or in files: one clear message naming the file and line (or
//! the flag or key), exit code 2, no panic.

mod common;

use std::io::Write;
use std::path::Path;

fn run(args: &[&str]) -> (i32, String) {
    let out = common::kdsr_bin().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

fn stats_of(path: &Path) -> (i32, String) {
    run(&["data", "stats", "--dataset", &format!("seq:{}", path.display())])
}

#[test]
fn missing_file() {
    let (code, err) = stats_of(Path::new("/nonexistent/seqs.txt"));
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/seqs.txt") && err.contains("cannot open"), "{err}");
}

#[test]
fn bad_sequence_files_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], &str); 4] = [
        ("nonint.txt", b"1 2 3\n2 3 4\n3 4 five\n", "nonint.txt:3"),
        ("cols.txt", b"1 2 3\n2\n", "nonint.txt:2"),
        ("empty.txt", b"", "empty"),
        ("twice.txt", b"1 2 3\n2 3 4\n1 5 6\n", "twice.txt:3: user 1 already has a sequence on line 1"),
    ];
    for (name, body, want) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        let (code, err) = stats_of(&p);
        assert_eq!(code, 2, "{name}: {err}");
        let want = want.replace("nonint.txt", name);
        assert!(err.contains(&want), "{name}: expected `{want}` in: {err}");
    }
}

#[test]
fn truncated_gzip_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let full = std::fs::read(common::paths().data_dir.join("amazon/Beauty.txt.gz")).unwrap();
    let p = dir.path().join("cut.txt.gz");
    std::fs::File::create(&p).unwrap().write_all(&full[..full.len() / 3]).unwrap();
    let (code, err) = stats_of(&p);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cut.txt.gz:") && err.contains("truncated"), "{err}");
}

#[test]
fn bad_ratings_csv_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ratings.csv");
    std::fs::write(&p, "A1,B1,5.0,1000\nA2,B2,4.0\n").unwrap();
    let (code, err) = run(&["data", "stats", "--dataset", &format!("csv:{}", p.display())]);
    assert_eq!(code, 2);
    assert!(err.contains("ratings.csv:2") && err.contains("4 comma-separated columns"), "{err}");
}

#[test]
fn bad_flags_and_config_keys() {
    let (code, err) = run(&["train", "--dataset", "beuty", "--model", "sasrec"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown dataset `beuty`"), "{err}");
    let (code, err) = run(&["train", "--dataset", "beauty"]);
    assert_eq!(code, 2);
    assert!(err.contains("--model is required"), "{err}");
    let (code, err) = run(&["train", "--dataset", "beauty", "--model", "sasrec", "--valid-metric", "ndcg@7"]);
    assert_eq!(code, 2);
    assert!(err.contains("ndcg@7"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("run.toml");
    std::fs::write(&p, "dataset = \"beauty\"\nseed = 1\n\n[model]\nkind = \"sasrec\"\nn_layer = 3\n").unwrap();
    let (code, err) = run(&["train", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    // The key and the table it sits in (line 4) are named.
    assert!(err.contains("run.toml") && err.contains("unknown field `n_layer`") && err.contains("line 4"), "{err}");
    std::fs::write(&p, "dataset = \"beauty\"\nseed = 1\n[model]\nkind = \"sasrec\"\nhidden = 63\n").unwrap();
    let (code, err) = run(&["train", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("multiple of model.n_heads"), "{err}");
}

#[test]
fn movielens_missing_cache_says_how_to_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run(&["--cache-dir", dir.path().to_str().unwrap(), "data", "stats", "--dataset", "ml-1m"]);
    assert_eq!(code, 2);
    assert!(err.contains("just data"), "{err}");
}

#[test]
fn devices_a_build_lacks_are_bad_input() {
    let (code, err) = run(&["--device", "tpu", "train", "--dataset", "beauty", "--model", "pop"]);
    assert_eq!(code, 2);
    assert!(err.contains("expected cpu, cuda or cuda:N"), "{err}");
    if !cfg!(feature = "cuda") {
        let (code, err) =
            run(&["--device", "cuda", "train", "--dataset", "beauty", "--model", "sasrec", "--epochs", "1"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("--device cuda:0") && err.contains("just build-cuda"), "{err}");
        let (code, err) = run(&["--device", "cuda", "sweep", "run", "quick", "--jobs", "2"]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("one run at a time"), "{err}");
    }
}

#[test]
fn gate_without_baseline_is_bad_input_and_plan_warns_of_missing_dataset_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.toml");
    let (code, err) = run(&["gate", "ci", "--baseline", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("none.toml") && err.contains("cannot read the baseline"), "{err}");
    let grid = dir.path().join("g.toml");
    std::fs::write(&grid, "seeds = [1]\n[fixed]\ndataset = \"seq:/nonexistent/s.txt\"\nmodel = \"pop\"\n").unwrap();
    // The plan says so (the file may still appear before the run: a warning, not an error).
    let out = common::kdsr_bin().args(["sweep", "plan", grid.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("warning: dataset `seq:/nonexistent/s.txt`: no such file"), "{text}");
}

/// A resume state edited or damaged, and a run lock whose path is a folder: exit 2 naming the
/// file, with the way to start over; never a silent resume.
#[test]
fn damaged_resume_states_and_lock_folders_are_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("tiny.txt");
    let mut f = std::fs::File::create(&data).unwrap();
    for u in 0..40 {
        let items: Vec<String> = (0..8).map(|k| format!("{}", 1 + (u * 7 + k * 3) % 30)).collect();
        writeln!(f, "{} {}", u + 1, items.join(" ")).unwrap();
    }
    let runs = d.path().join("grid").join("runs");
    let dataset = format!("seq:{}", data.display());
    let train = |extra: &[&str]| {
        let mut args =
            vec!["train", "--dataset", &dataset, "--model", "sasrec", "--epochs", "3", "--out", runs.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = common::kdsr_bin().args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(!text.contains("panicked"), "panic: {text}");
        (out.status.code().unwrap_or(-1), text)
    };
    let (code, text) = train(&["--stop-after", "1"]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("paused after epoch 1"), "{text}");
    let run = std::fs::read_dir(&runs).unwrap().flatten().next().unwrap().path();
    let state = run.join("resume").join("state.json");
    let original = std::fs::read_to_string(&state).unwrap();

    // Adam's step edited: the state's own checksum.
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    v["adam_step"] = (v["adam_step"].as_i64().unwrap() + 1).into();
    std::fs::write(&state, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let (code, text) = train(&[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("state.json") && text.contains("checksum") && text.contains("--force"), "{text}");

    // Bytes of the tensor file changed (it still parses): the checksum state.json holds of it.
    std::fs::write(&state, &original).unwrap();
    let tensors = run.join("resume").join(v["tensors"].as_str().unwrap());
    let mut bytes = std::fs::read(&tensors).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&tensors, bytes).unwrap();
    let (code, text) = train(&[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(v["tensors"].as_str().unwrap()) && text.contains("checksum"), "{text}");

    // Starting over as the message says, with the run's lock path taken by a folder.
    let lock =
        d.path().join("grid").join(".locks").join(format!("{}.lock", run.file_name().unwrap().to_string_lossy()));
    let _ = std::fs::remove_file(&lock);
    std::fs::create_dir_all(&lock).unwrap();
    let (code, text) = train(&["--force"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(".lock") && text.contains("is a folder"), "{text}");
    std::fs::remove_dir(&lock).unwrap();
    let (code, text) = train(&["--force"]);
    assert_eq!(code, 0, "{text}");
}
