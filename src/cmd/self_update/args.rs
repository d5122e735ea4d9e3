//! The command line of `volspike self-update`.

use std::path::PathBuf;

use clap::Args;

/// `volspike self-update`.
#[derive(Debug, Args)]
pub struct SelfUpdateArgs {
    /// Only report whether an update is available.
    #[arg(long)]
    pub check: bool,
    /// Install this version (also allows going back to an older one).
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// Install a local artifact (volspike-<version>-<target>.tar.gz) with the same checks.
    #[arg(long, value_name = "PATH")]
    pub from: Option<PathBuf>,
    /// Put the previous binary (/usr/local/bin/volspike.previous) back and restart.
    #[arg(long, conflicts_with_all = ["from", "version", "check"])]
    pub rollback: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Seconds the new version has to become READY and answer /health before it is rolled back.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub start_timeout: u64,
}
