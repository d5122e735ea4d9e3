//! Self-update started from inside `volspike.service` (by the service
//! itself or a shell in its cgroup) continues as a transient unit, so the
//! restart does not kill it half-way.

use std::fs;
use std::io::Write;

use super::args::SelfUpdateArgs;
use super::context::Context;
use crate::cmd::exit::ExitCode;
use crate::update::restart;

/// Whether this process runs inside `unit`'s cgroup (a restart would kill it).
pub(crate) fn in_service_cgroup(unit: &str) -> bool {
    fs::read_to_string("/proc/self/cgroup")
        .map(|text| restart::inside_unit_cgroup(&text, unit))
        .unwrap_or(false)
}

/// Inside `volspike.service` the restart would kill us: run the same update
/// as a transient unit of its own and relay its exit status.
pub(crate) fn relaunch_outside(ctx: &Context, args: &SelfUpdateArgs) -> ExitCode {
    if !args.yes {
        complain!(
            "refused: running inside {}, so the update must continue as a transient unit, which cannot ask questions: pass --yes; nothing was changed",
            ctx.unit
        );
        return ExitCode::Failure;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            complain!("failed: cannot find this binary to relaunch it: {e}; nothing was changed");
            return ExitCode::Failure;
        }
    };
    let name = restart::transient_name("run");
    let mut cmd = std::process::Command::new("systemd-run");
    cmd.arg(format!("--unit={name}"))
        .arg("--description=volspike self-update (moved out of volspike.service)")
        .args(["--collect", "--wait", "--pipe", "--quiet"]);
    for var in [
        "VOLSPIKE_UPDATE_URL",
        "VOLSPIKE_HTTP_ADDR",
        "VOLSPIKE_STATE_DIR",
    ] {
        if let Ok(v) = std::env::var(var) {
            cmd.arg(format!("--setenv={var}={v}"));
        }
    }
    cmd.arg("--").arg(exe).arg("self-update").arg("--yes");
    cmd.arg(format!("--start-timeout={}", ctx.start_timeout.as_secs()));
    if args.rollback {
        cmd.arg("--rollback");
    }
    if let Some(v) = &args.version {
        cmd.arg(format!("--version={v}"));
    }
    if let Some(from) = &args.from {
        match fs::canonicalize(from) {
            Ok(abs) => {
                cmd.arg("--from").arg(abs);
            }
            Err(e) => {
                complain!(
                    "refused: cannot read {}: {e}; the installed binary is untouched",
                    from.display()
                );
                return ExitCode::Failure;
            }
        }
    }
    say!(
        "running inside {}: continuing as transient unit {name} (log: journalctl -u {name})",
        ctx.unit
    );
    match cmd.status() {
        Ok(status) => status
            .code()
            .map_or(ExitCode::Failure, ExitCode::from_status),
        Err(e) => {
            complain!("failed: cannot run systemd-run: {e}; nothing was changed");
            ExitCode::Failure
        }
    }
}
