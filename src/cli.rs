//! The command line: assembles every command's clap `Args` (each owned by
//! its module under [`crate::cmd`]) and dispatches to it. Exit codes are
//! [`ExitCode`]'s: 0 ok, 1 failure, 2 usage, 3 not running (`status`), 78
//! configuration error.

use clap::{Parser, Subcommand};

use crate::cmd::check_config::{self, CheckConfigArgs};
use crate::cmd::exit::ExitCode;
use crate::cmd::install::{self, InstallArgs};
use crate::cmd::outbox::{self, OutboxArgs};
use crate::cmd::run::{self, RunArgs};
use crate::cmd::self_update::{self, SelfUpdateArgs};
use crate::cmd::status::{self, StatusArgs};
use crate::cmd::uninstall::{self, UninstallArgs};

/// One static binary that watches Binance USDⓈ-M futures and feeds the
/// VolSpike backend: volume spikes, open interest, funding, user alerts,
/// Telegram news. It installs itself, runs under systemd and updates itself.
#[derive(Debug, Parser)]
#[command(name = "volspike", version = crate::version::LONG, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every enabled job and the HTTP server in the foreground (the unit's ExecStart).
    Run(RunArgs),
    /// Install on this machine as root: binary, user, env file, state dir, systemd units.
    Install(InstallArgs),
    /// Stop, disable and remove the service's unit and binary (--purge: state and env file too).
    Uninstall(UninstallArgs),
    /// Update from the signed release source or a local artifact; roll back on failure.
    SelfUpdate(SelfUpdateArgs),
    /// Show what the service is doing: unit state, version, jobs, WebSocket, backlog, weight.
    Status(StatusArgs),
    /// Validate the configuration; exit 0, or 78 with every problem listed.
    CheckConfig(CheckConfigArgs),
    /// List, replay or drop the dead letters: posts a backend refused for good.
    Outbox(OutboxArgs),
    /// Print version, target triple, commit and build date.
    Version,
}

impl Command {
    /// The name the operator typed, for messages (`volspike <name>: …`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Run(_) => "run",
            Command::Install(_) => "install",
            Command::Uninstall(_) => "uninstall",
            Command::SelfUpdate(_) => "self-update",
            Command::Status(_) => "status",
            Command::CheckConfig(_) => "check-config",
            Command::Outbox(_) => "outbox",
            Command::Version => "version",
        }
    }

    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Run(args) => run::run(args),
            Command::CheckConfig(args) => check_config::run(args),
            Command::Version => {
                println!("{}", crate::version::line());
                Ok(ExitCode::Ok)
            }
            Command::Install(args) => install::run(args),
            Command::Uninstall(args) => uninstall::run(args),
            Command::SelfUpdate(args) => self_update::run(args),
            Command::Status(args) => status::run(args),
            Command::Outbox(args) => outbox::run(&args),
        }
    }
}

/// Parses the command line and runs the command. A command's error is a
/// failure: printed as `volspike <command>: <error: its causes>`, exit 1.
pub fn main() -> std::process::ExitCode {
    let command = Cli::parse().command;
    let name = command.name();
    let code = command.run().unwrap_or_else(|e| {
        eprintln!("volspike {name}: {e:#}");
        ExitCode::Failure
    });
    code.into()
}
