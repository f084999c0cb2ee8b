//! Records the git commit and dirty flag of the source tree the binary is built from, so every
//! result names the code that produced it (not the tree at the time the run finished).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    println!("cargo:rustc-env=KDSR_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=KDSR_GIT_DIRTY={dirty}");
    for path in ["src", "build.rs", "Cargo.toml", ".git/HEAD", ".git/index"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
