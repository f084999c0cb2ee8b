//! `kdsr sweep slurm`: an sbatch array script, one grid shard per array task. The tasks share
//! the reports folder (a shared filesystem), each runs `kdsr sweep run --shard $ID/N`, and a
//! resubmission (or a plain `kdsr sweep run`) finishes whatever a task left undone.

use super::plan::Plan;
use std::fmt::Write as _;
use std::path::Path;

/// Slurm resources per array task.
#[derive(Debug, Clone, clap::Args)]
pub struct SlurmOptions {
    /// Array tasks (grid shards); default: one per run, at most 1000 (never more than runs).
    #[arg(long)]
    pub tasks: Option<usize>,
    /// CPUs per task; the task's runs share them (see `kdsr sweep run --help`).
    #[arg(long, default_value_t = 2)]
    pub cpus_per_task: usize,
    /// Wall-time limit per task (sbatch --time).
    #[arg(long, default_value = "24:00:00")]
    pub time: String,
    /// Memory per task (sbatch --mem).
    #[arg(long, default_value = "16G")]
    pub mem: String,
    #[arg(long)]
    pub partition: Option<String>,
    #[arg(long)]
    pub account: Option<String>,
}

/// Shell single-quoting.
fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:=@%+,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The script text. `data`, `binary`, `workdir`, `grid_file` and `log_dir` should be absolute.
#[allow(clippy::too_many_arguments)]
pub fn script(
    plan: &Plan,
    opts: &SlurmOptions,
    data: &crate::data::DataPaths,
    binary: &Path,
    workdir: &Path,
    grid_file: &Path,
    out: &Path,
    log_dir: &Path,
) -> (String, usize) {
    let tasks = opts.tasks.unwrap_or(1000).min(plan.all.len()).max(1);
    let mut s = String::new();
    let _ = writeln!(s, "#!/bin/bash");
    let _ = writeln!(
        s,
        "# Written by `kdsr sweep slurm {}`: {} runs in {tasks} array tasks.",
        plan.grid.name,
        plan.all.len()
    );
    let _ = writeln!(
        s,
        "# Submit with `sbatch <this file>`; resubmitting finishes what is left (finished runs are skipped)."
    );
    let _ = writeln!(s, "#SBATCH --job-name=kdsr-{}", plan.grid.name);
    let _ = writeln!(s, "#SBATCH --array=0-{}", tasks - 1);
    let _ = writeln!(s, "#SBATCH --cpus-per-task={}", opts.cpus_per_task);
    let _ = writeln!(s, "#SBATCH --mem={}", opts.mem);
    let _ = writeln!(s, "#SBATCH --time={}", opts.time);
    let _ = writeln!(s, "#SBATCH --output={}/%A_%a.out", log_dir.display());
    if let Some(p) = &opts.partition {
        let _ = writeln!(s, "#SBATCH --partition={p}");
    }
    if let Some(a) = &opts.account {
        let _ = writeln!(s, "#SBATCH --account={a}");
    }
    let _ = writeln!(s, "set -euo pipefail");
    let _ = writeln!(s, "cd {}", quote(&workdir.display().to_string()));
    let mut cmd = vec![
        quote(&binary.display().to_string()),
        "--data-dir".into(),
        quote(&data.data_dir.display().to_string()),
        "--cache-dir".into(),
        quote(&data.cache_dir.display().to_string()),
        "--threads".into(),
        "\"${SLURM_CPUS_PER_TASK:-1}\"".into(),
        "sweep".into(),
        "run".into(),
        quote(&grid_file.display().to_string()),
        "--shard".into(),
        format!("\"${{SLURM_ARRAY_TASK_ID}}/{tasks}\""),
        "--out".into(),
        quote(&out.display().to_string()),
        "--quiet".into(),
    ];
    cmd.extend(plan.scale.to_flags());
    let _ = writeln!(s, "exec {}", cmd.join(" "));
    (s, tasks)
}
