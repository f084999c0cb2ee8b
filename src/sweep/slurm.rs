//! `kdsr sweep slurm`: an sbatch array script, one grid shard per array task. The tasks share
//! the reports folder (a shared filesystem), each runs `kdsr sweep run --shard $ID/N`, and a
//! resubmission (or a plain `kdsr sweep run`) finishes whatever a task left undone.

use super::plan::Plan;
use crate::input_bail;
use anyhow::Result;
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
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:=@%+,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A value for an `#SBATCH` line: as is when plain, else in double quotes, which sbatch's
/// parser keeps together (spaces, `#`). A value sbatch cannot carry (a double quote, a
/// backslash, a control character) is an error naming `what`.
fn sbatch_value(what: &str, v: &str) -> Result<String> {
    if v.is_empty() || v.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        input_bail!(
            "{what} {v:?}: an #SBATCH value cannot be empty or hold a double quote, a backslash or a control character"
        );
    }
    if v.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:=@%+,".contains(c)) {
        Ok(v.to_string())
    } else {
        Ok(format!("\"{v}\""))
    }
}

/// A Slurm partition or account name (a comma-separated list for partitions): letters, digits,
/// `_`, `-`, `.`; anything else is cut or misread by sbatch, so it is an error naming the flag.
fn check_name(flag: &str, v: &str) -> Result<()> {
    if v.is_empty()
        || !v.split(',').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)))
    {
        input_bail!("{flag} {v:?}: not a Slurm name (letters, digits, `_`, `-`, `.`; partitions comma-separated)");
    }
    Ok(())
}

/// sbatch's `--time` formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S` (digits), or
/// `UNLIMITED` / `infinite`.
pub fn check_time(v: &str) -> Result<()> {
    if v.eq_ignore_ascii_case("unlimited") || v.eq_ignore_ascii_case("infinite") {
        return Ok(());
    }
    let digits = |p: &str| !p.is_empty() && p.len() <= 6 && p.chars().all(|c| c.is_ascii_digit());
    let ok = match v.split_once('-') {
        Some((days, rest)) => digits(days) && (1..=3).contains(&rest.split(':').count()) && rest.split(':').all(digits),
        None => (1..=3).contains(&v.split(':').count()) && v.split(':').all(digits),
    };
    if !ok {
        input_bail!("--time {v:?}: not a Slurm time limit (minutes, M:S, H:M:S, D-H, D-H:M, D-H:M:S or UNLIMITED)");
    }
    Ok(())
}

/// sbatch's `--mem` format: a whole number with an optional unit `K`, `M`, `G` or `T`
/// (megabytes without one).
pub fn check_mem(v: &str) -> Result<()> {
    let number = v.strip_suffix(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']).unwrap_or(v);
    if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
        input_bail!(
            "--mem {v:?}: not a Slurm memory size (a whole number with an optional unit K, M, G or T, e.g. 16G)"
        );
    }
    Ok(())
}

impl SlurmOptions {
    /// Rejects values sbatch would misread or silently change, naming the flag.
    pub fn check(&self) -> Result<()> {
        if self.tasks == Some(0) {
            input_bail!("--tasks 0: an array needs at least 1 task");
        }
        if self.cpus_per_task == 0 {
            input_bail!("--cpus-per-task 0: a task needs at least 1 CPU");
        }
        check_time(&self.time)?;
        check_mem(&self.mem)?;
        if let Some(p) = &self.partition {
            check_name("--partition", p)?;
        }
        if let Some(a) = &self.account {
            check_name("--account", a)?;
        }
        Ok(())
    }
}

/// The script text and its number of array tasks, after [`SlurmOptions::check`]. `data`, `binary`, `workdir`, `grid_file` and `log_dir` should be absolute.
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
) -> Result<(String, usize)> {
    opts.check()?;
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
    let _ = writeln!(s, "#SBATCH --job-name={}", sbatch_value("the grid name", &format!("kdsr-{}", plan.grid.name))?);
    let _ = writeln!(s, "#SBATCH --array=0-{}", tasks - 1);
    let _ = writeln!(s, "#SBATCH --cpus-per-task={}", opts.cpus_per_task);
    let _ = writeln!(s, "#SBATCH --mem={}", opts.mem);
    let _ = writeln!(s, "#SBATCH --time={}", opts.time);
    let log_dir = log_dir.display().to_string();
    if log_dir.contains('%') {
        input_bail!("{log_dir}: the Slurm log folder cannot hold `%` (sbatch reads it as a file-name pattern)");
    }
    let _ = writeln!(s, "#SBATCH --output={}", sbatch_value("the log folder", &format!("{log_dir}/%A_%a.out"))?);
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
    Ok((s, tasks))
}
