//! The command line: every command of the appliance, parsed by clap, and the
//! dispatch to each command's module. Exit codes: 0 ok, 1 failure, 2 usage,
//! 78 configuration error.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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

/// `volspike run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run only these jobs, comma-separated: funding_stream, funding_health,
    /// volume_spike, liquid_universe, open_interest, user_alerts, telegram.
    #[arg(long, value_delimiter = ',', value_name = "JOB,JOB")]
    pub only: Vec<String>,
    /// No backend needed: alerts go to the log, the state dir and the dashboard instead of being posted.
    #[arg(long)]
    pub local: bool,
    /// Read configuration from this env file too (the environment wins).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

/// `volspike install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Print every action and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Env file to install as /etc/volspike/volspike.env (default: import /home/trader/.volspike.env when present).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Leave the old Python deployment's units running (they would post every alert twice).
    #[arg(long)]
    pub keep_legacy: bool,
}

/// `volspike uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Also remove the state directory and the env file.
    #[arg(long)]
    pub purge: bool,
}

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

/// `volspike check-config`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Env file to check (default: /etc/volspike/volspike.env when it exists).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

/// `volspike outbox`.
#[derive(Debug, Args)]
pub struct OutboxArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: OutboxAction,
    /// State directory (default: $VOLSPIKE_STATE_DIR, else $STATE_DIRECTORY, else /var/lib/volspike).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Only this backend (primary, dev); default: every backend with an outbox.
    #[arg(long, global = true, value_name = "NAME")]
    pub backend: Option<String>,
}

/// `volspike outbox <action>`.
#[derive(Debug, Subcommand)]
pub enum OutboxAction {
    /// List the dead letters and why each was refused.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue dead letters again (an ID from `list`, or `all`); a running service picks them up within seconds.
    Retry {
        /// Dead-letter ID, or `all`.
        id: String,
    },
    /// Delete dead letters for good (an ID from `list`, or `all`).
    Drop {
        /// Dead-letter ID, or `all`.
        id: String,
    },
}

/// Parses the command line and runs the command; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => crate::run::run(args),
        Command::CheckConfig(args) => crate::check_config::run(args),
        Command::Version => {
            println!("{}", crate::version::line());
            0
        }
        Command::Install(args) => crate::systemd::install::run(args),
        Command::Uninstall(args) => crate::systemd::uninstall::run(args),
        Command::SelfUpdate(args) => crate::update::run(args),
        Command::Status(args) => crate::status::run(args),
        Command::Outbox(args) => crate::backend::command::run(&args),
    }
}
