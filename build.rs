//! Records the version, commit, build date and target triple for `volspike version`.
//!
//! `VOLSPIKE_VERSION_OVERRIDE=0.1.1 cargo build` gives a binary that reports
//! 0.1.1 instead of Cargo.toml's version: a build-time knob for self-update
//! tests only (a real release bumps Cargo.toml).

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
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
}
