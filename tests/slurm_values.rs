//! `kdsr sweep slurm` quotes or refuses every value it writes into `#SBATCH` lines and the
//! printed submit command: odd folders survive, values sbatch would cut or misread are bad
//! input (exit 2) naming the flag.

mod common;

use std::process::Command;

const GRID: &str = "seeds = [1, 2]\n[fixed]\ndataset = \"beauty\"\nmax_users = 50\nmodel = \"pop\"\n";

fn slurm(dir: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    let grid = dir.join("g.toml");
    std::fs::write(&grid, GRID).unwrap();
    let out = dir.join("my reports");
    let o = common::kdsr_bin()
        .args(["sweep", "slurm", grid.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string());
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (o.status.code().unwrap_or(-1), stdout, stderr)
}

#[test]
fn an_out_folder_with_a_space_is_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, err) = slurm(dir.path(), &["--partition", "gpu,cpu", "--account", "lab-1", "--time", "1-12:00"]);
    assert_eq!(code, 0, "{err}");
    let script = dir.path().join("my reports/g/slurm.sbatch");
    let text = std::fs::read_to_string(&script).unwrap();
    let logs = dir.path().join("my reports/g/slurm");
    let logs = std::path::absolute(logs).unwrap();
    assert!(text.contains(&format!("#SBATCH --output=\"{}/%A_%a.out\"", logs.display())), "{text}");
    assert!(text.contains("#SBATCH --partition=gpu,cpu") && text.contains("#SBATCH --account=lab-1"), "{text}");
    assert!(text.contains("#SBATCH --time=1-12:00"), "{text}");
    assert!(Command::new("bash").arg("-n").arg(&script).status().unwrap().success());
    // The printed command is one shell word for the path.
    assert!(stdout.contains(&format!("submit with: sbatch '{}'", script.display())), "{stdout}");
}

#[test]
fn values_sbatch_would_misread_are_bad_input() {
    let cases: &[(&[&str], &str)] = &[
        (&["--partition", "gpu x"], "--partition"),
        (&["--account", "a#b"], "--account"),
        (&["--tasks", "0"], "--tasks"),
        (&["--cpus-per-task", "0"], "--cpus-per-task"),
        (&["--time", "soon"], "--time"),
        (&["--time", "1:2:3:4"], "--time"),
        (&["--mem", "lots"], "--mem"),
        (&["--mem", "16GB"], "--mem"),
    ];
    for (args, flag) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (code, _, err) = slurm(dir.path(), args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!dir.path().join("my reports/g/slurm.sbatch").exists(), "{args:?} wrote a script");
    }
}
