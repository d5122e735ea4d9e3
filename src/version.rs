//! Build information: what `volspike version` prints and `/health` reports.

/// The version, e.g. `0.1.0`: Cargo.toml's, unless the build set
/// `VOLSPIKE_VERSION_OVERRIDE` (see build.rs; used by the self-update tests).
pub const VERSION: &str = env!("VOLSPIKE_VERSION");
/// The target triple the binary was built for.
pub const TARGET: &str = env!("VOLSPIKE_TARGET");
/// The git commit it was built from (`unknown` outside a checkout).
pub const COMMIT: &str = env!("VOLSPIKE_COMMIT");
/// The UTC build date.
pub const BUILD_DATE: &str = env!("VOLSPIKE_BUILD_DATE");

/// The version with target, commit and build date, as `volspike --version`
/// and `volspike version` print it after the program name.
pub const LONG: &str = concat!(
    env!("VOLSPIKE_VERSION"),
    " (",
    env!("VOLSPIKE_TARGET"),
    ", commit ",
    env!("VOLSPIKE_COMMIT"),
    ", built ",
    env!("VOLSPIKE_BUILD_DATE"),
    ")"
);

/// One line: `volspike 0.1.0 (x86_64-unknown-linux-musl, commit abc, built 2026-11-25)`.
pub fn line() -> String {
    format!("volspike {LONG}")
}
