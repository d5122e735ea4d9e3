//! `volspike check-config`: validate the configuration and list every
//! problem, with each setting's effective value and where it came from.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cmd::exit::ExitCode;
use crate::config::{self, Config, Mode, Sources};
use crate::service::paths::ENV_FILE as DEFAULT_ENV_FILE;

/// `volspike check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Env file to check (default: /etc/volspike/volspike.env when it exists).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

/// Runs the command: [`ExitCode::Ok`] when valid, [`ExitCode::Config`] with
/// every problem printed.
pub fn run(args: CheckConfigArgs) -> anyhow::Result<ExitCode> {
    let env_file: Option<PathBuf> = args.env_file.or_else(|| {
        Path::new(DEFAULT_ENV_FILE)
            .exists()
            .then(|| PathBuf::from(DEFAULT_ENV_FILE))
    });
    let sources = match Sources::load(env_file.as_deref()) {
        Ok(sources) => sources,
        Err(problem) => {
            println!("problems:\n  - {problem}");
            return Ok(ExitCode::Config);
        }
    };
    match &env_file {
        Some(path) => println!("configuration: environment + {}", path.display()),
        None => println!("configuration: environment only (no {DEFAULT_ENV_FILE})"),
    }
    let listing = config::effective(&sources);
    let width = listing.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for e in &listing {
        let origin = e
            .origin
            .as_ref()
            .map(|o| format!("  [{o}]"))
            .unwrap_or_default();
        println!("  {:width$}  {}{origin}", e.name, e.shown);
    }
    let (report, ok) = match Config::from_sources(&sources, Mode::default()) {
        Ok((_, report)) => (report, true),
        Err(report) => (report, false),
    };
    if !report.warnings.is_empty() {
        println!("warnings:");
        for w in &report.warnings {
            println!("  - {w}");
        }
    }
    if ok {
        println!("configuration is valid");
        Ok(ExitCode::Ok)
    } else {
        println!("problems ({}):", report.problems.len());
        for p in &report.problems {
            println!("  - {p}");
        }
        Ok(ExitCode::Config)
    }
}
