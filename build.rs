//! Records the version, commit, build date and target triple for `volspike version`.
//!
//! `VOLSPIKE_VERSION_OVERRIDE=0.1.1 cargo build` gives a binary that reports
//! 0.1.1 instead of Cargo.toml's version: a build-time knob for self-update
//! tests only (a real release bumps Cargo.toml).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    // A container build (cross) may have no git: let the caller pass it in.
    let commit = std::env::var("VOLSPIKE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    // Build-time knob for tests of self-update (tests/droplet/update.test.sh):
    // a second binary that calls itself a newer version without editing
    // Cargo.toml. Release builds leave it unset and report the crate version.
    let version = std::env::var("VOLSPIKE_VERSION_OVERRIDE")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| std::env::var("CARGO_PKG_VERSION").unwrap_or_default());
    println!("cargo:rustc-env=VOLSPIKE_VERSION={version}");
    println!("cargo:rustc-env=VOLSPIKE_COMMIT={commit}");
    println!("cargo:rustc-env=VOLSPIKE_BUILD_DATE={date}");
    println!(
        "cargo:rustc-env=VOLSPIKE_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!("cargo:rerun-if-env-changed=VOLSPIKE_COMMIT");
    println!("cargo:rerun-if-env-changed=VOLSPIKE_VERSION_OVERRIDE");
    for path in git_watch_paths() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The git files whose change means a new commit id: HEAD and its reflog
/// (a checkout, a commit, a reset), the current branch's loose ref and
/// packed-refs. Asked of git rather than assumed at `.git/`, because in a
/// worktree `.git` is a file pointing elsewhere, and a path that does not
/// exist makes cargo rerun this script (and rebuild volspike) every build.
/// Only this branch's ref, not all of `refs/heads`: other worktrees' commits
/// must not rebuild this one. Outside git (a source tarball) nothing is watched.
fn git_watch_paths() -> Vec<PathBuf> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .current_dir(&manifest_dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let text = String::from_utf8(out.stdout).ok()?;
        Some(text.trim().to_string()).filter(|t| !t.is_empty())
    };
    let mut names = vec!["HEAD".to_string(), "logs/HEAD".to_string()];
    names.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    names.push("packed-refs".to_string());
    names
        .iter()
        .filter_map(|name| git(&["rev-parse", "--git-path", name]))
        // git answers relative to the directory it ran in.
        .map(|path| manifest_dir.join(path))
        .filter(|path| path.exists())
        .collect()
}
