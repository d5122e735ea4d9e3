//! `volspike install`: make this machine run the appliance under systemd.
//!
//! Install first looks at the machine and computes a [`Plan`] ([`plan`]):
//! the list of [`Action`]s ([`actions`]) that bring it to the installed
//! state, each with a description. An empty plan means "already installed,
//! nothing to do" and nothing is touched (no restart). `--dry-run` prints the
//! plan and stops. Otherwise the actions run in order, each printed as it
//! happens; the first failure stops the run with the step, the path and the
//! cause.
//!
//! Planning only reads files (under a root prefix, so tests use a temporary
//! directory) and asks systemd about units through [`UnitQuery`]; applying is
//! the only part that writes or runs `systemctl`/`useradd`.
//!
//! Exit codes: 0 installed and READY; 1 failure (nothing after the failing
//! step was done); 78 installed but not started because the env file lacks
//! required settings (the service would exit 78 anyway).

pub mod actions;
mod machine;
pub mod plan;
mod report;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use actions::{apply, Action, Owner};
pub use machine::lookup_user;
pub use plan::{plan, BadEnvFile, Options, Plan};

use anyhow::{anyhow, bail};
use clap::Args;

use crate::cmd::exit::ExitCode;
use crate::service::fs::effective_uid;
use crate::service::paths::{Layout, ENV_FILE, SERVICE};
use crate::service::ready::{self, Waited};
#[cfg(doc)]
use crate::service::systemctl::UnitQuery;
use crate::service::systemctl::{self, Systemctl, UnitState};
use report::{print_findings, print_not_started, print_status};

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

/// How long to wait for READY after (re)starting.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How waiting for READY ended.
#[derive(Debug)]
enum Readiness {
    /// active/running with a new invocation.
    Ready(Box<UnitState>),
    /// It failed or is in a restart loop; the message says how.
    Failed(String),
}

/// Why a new invocation that stopped during its start did not come up.
fn failure(state: &UnitState) -> String {
    let exit = state.exec_main_status.as_str();
    if exit == ExitCode::Config.code().to_string() {
        format!(
            "{SERVICE} exited with status 78: configuration error (see `volspike check-config`)"
        )
    } else {
        format!(
            "{SERVICE} did not come up: {}/{} (result {}, exit status {exit})",
            state.active_state, state.sub_state, state.result
        )
    }
}

/// Waits until a new invocation (not `before`) is READY, fails, or
/// `timeout` passes.
fn wait_ready(before: &str, timeout: Duration) -> Readiness {
    match ready::wait_for_new_invocation(SERVICE, before, Instant::now() + timeout) {
        Err(e) => Readiness::Failed(e),
        Ok(Waited::Ready(state)) => Readiness::Ready(Box::new(state)),
        Ok(Waited::Failed(state)) => Readiness::Failed(failure(&state)),
        Ok(Waited::TimedOut(state)) => Readiness::Failed(format!(
            "{SERVICE} not READY after {} s: still {}/{}",
            timeout.as_secs(),
            state.active_state,
            state.sub_state
        )),
    }
}

/// Runs the command: [`ExitCode::Ok`] installed and READY,
/// [`ExitCode::Config`] installed but not started (the env file lacks
/// required settings: the service would exit 78 anyway), `Err` when a step
/// failed (nothing after it was done).
pub fn run(args: InstallArgs) -> anyhow::Result<ExitCode> {
    let euid = effective_uid();
    if !args.dry_run && euid != Some(0) {
        bail!("install must run as root; try sudo volspike install (nothing was changed)");
    }
    // Without systemd as PID 1 every systemctl call would fail half-way.
    if !Path::new("/run/systemd/system").is_dir() {
        if args.dry_run {
            println!("WARNING: systemd is not running on this machine (no /run/systemd/system); install would refuse");
        } else {
            bail!("systemd is not running on this machine (no /run/systemd/system); the appliance needs systemd as PID 1 (nothing was changed)");
        }
    }
    let options = Options {
        // /proc/self/exe reads this very program even if its file was
        // replaced or removed since it started.
        source_binary: PathBuf::from("/proc/self/exe"),
        env_file: args.env_file.clone(),
        keep_legacy: args.keep_legacy,
        dry_run: args.dry_run,
    };
    let layout = Layout::system();
    let plan = match plan(&layout, &options, &Systemctl) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("volspike install: {e:#} (nothing was changed)");
            // A bad --env-file is a configuration problem, as in check-config.
            return Ok(if e.is::<BadEnvFile>() {
                ExitCode::Config
            } else {
                ExitCode::Failure
            });
        }
    };
    print_findings(&plan);
    let total = plan.actions.len();

    if args.dry_run {
        if euid != Some(0) {
            println!(
                "dry run as uid {}: showing what `sudo volspike install` would do",
                euid.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
            );
        }
        if total == 0 {
            println!("dry run: already installed, nothing to do");
        } else {
            println!("dry run: {total} action(s) would run; nothing was changed:");
            for (i, action) in plan.actions.iter().enumerate() {
                println!("[{}/{total}] {}", i + 1, action.describe());
            }
        }
        if !plan.config_ok() {
            println!(
                "dry run: the service would not be started: {ENV_FILE} lacks {}",
                if plan.missing_keys.is_empty() {
                    "valid settings".to_string()
                } else {
                    plan.missing_keys.join(", ")
                }
            );
            for p in &plan.config_problems {
                println!("  - {p}");
            }
            // Judged like check-config: a configuration that would not
            // start is EX_CONFIG, unless the file could not be read here.
            if !plan.config_unknown {
                return Ok(ExitCode::Config);
            }
        }
        return Ok(ExitCode::Ok);
    }

    if total == 0 {
        if !plan.config_ok() {
            print_not_started(&plan);
            return Ok(ExitCode::Config);
        }
        println!("already installed, nothing to do");
        println!(
            "{SERVICE}: {}/{} (invocation {})",
            plan.service.active_state, plan.service.sub_state, plan.service.invocation_id
        );
        return Ok(ExitCode::Ok);
    }

    let mut started = None;
    for (i, action) in plan.actions.iter().enumerate() {
        println!("[{}/{total}] {}", i + 1, action.describe());
        let invocation_before = match action {
            Action::Start { .. } => Systemctl
                .state(SERVICE)
                .map(|s| s.invocation_id)
                .unwrap_or_default(),
            _ => String::new(),
        };
        if let Err(e) = apply(&layout, action) {
            return Err(anyhow!(
                "step {}/{total} failed: {e:#}; the steps after it were not run",
                i + 1
            ));
        }
        if matches!(action, Action::Start { .. }) {
            started = Some(wait_ready(&invocation_before, READY_TIMEOUT));
        }
    }

    if !plan.config_ok() {
        print_not_started(&plan);
        return Ok(ExitCode::Config);
    }
    match started {
        Some(Readiness::Ready(state)) => {
            println!(
                "{SERVICE} is READY ({}/{}, invocation {})",
                state.active_state, state.sub_state, state.invocation_id
            );
            print_status(&plan);
            println!("\ninstalled; follow it with `journalctl -u volspike -f`, check it with `volspike check-config`");
            Ok(ExitCode::Ok)
        }
        Some(Readiness::Failed(why)) => {
            eprintln!("volspike install: {why}");
            print!("{}", systemctl::status_text(SERVICE, 20));
            eprintln!("see: journalctl -u volspike -n 50; volspike check-config");
            Ok(ExitCode::Failure)
        }
        None => {
            // Nothing needed a restart (e.g. only a legacy unit was retired).
            print_status(&plan);
            println!("\ninstalled");
            Ok(ExitCode::Ok)
        }
    }
}
