//! `volspike status [--json] [--env-file F]`: what the service is doing.
//!
//! Asks systemd about the unit (when there is systemd) and the running
//! appliance for its `/health`, and prints both as a table (or one JSON
//! object). Exit codes, as `systemctl status` and LSB init scripts use them:
//! 0 healthy, 1 degraded (or answering wrongly), 3 not running (nothing
//! listens, or systemd says the unit is inactive/failed), 78 when the
//! address cannot be worked out from the configuration.

pub mod address;
pub mod probe;
pub mod report;
pub mod table;
pub mod unit;

use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::Context;
use clap::Args;

use crate::cmd::exit::ExitCode;

/// `volspike status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON object (unit and /health) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Read VOLSPIKE_HTTP_ADDR from this env file when the environment has none (default: /etc/volspike/volspike.env when readable).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

/// Runs the command: the verdict's exit code (0 healthy, 1 degraded, 3 not
/// running), [`ExitCode::Config`] when the address cannot be worked out.
pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let target = match address::resolve(args.env_file.as_deref()) {
        Ok(target) => target,
        Err(problem) => {
            eprintln!("volspike status: {problem:#}");
            return Ok(ExitCode::Config);
        }
    };
    let unit = unit::query();
    let probe = probe::health(target.addr);
    let report = report::judge(unit, target, probe);
    if args.json {
        let json = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        println!("{json}");
    } else {
        print!("{}", table::render(&report, SystemTime::now()));
    }
    Ok(report.verdict.code())
}
