//! `volspike self-update`: replace the installed binary with a signed
//! release, restart the service, and put the old one back if the new one does
//! not come up healthy.
//!
//! The steps, each of which can refuse with the reason and leave the running
//! binary untouched until step 5:
//! 1. find the artifact: the newest release in the manifest at
//!    `VOLSPIKE_UPDATE_URL` (self_update's manifest backend), an explicit
//!    `--version`, or a local file (`--from`);
//! 2. check its name (version, target) and the version policy: only newer
//!    versions unless `--version` names the one wanted;
//! 3. download into a private staging directory beside the binary and check
//!    the SHA-256 digest (manifest or `<artifact>.sha256`) and the ed25519
//!    signature against the built-in keys plus `/etc/volspike/release-keys.pub`;
//! 4. unpack and run the new binary's `version`: it must say the same version
//!    and our target;
//! 5. swap by rename, keeping the old binary as `volspike.previous`;
//! 6. restart `volspike.service` from a transient unit (outside the service's
//!    cgroup) and wait for a new READY, `/health` 200 with the new version,
//!    and that it stays up; otherwise restore the old binary, restart, and
//!    exit 1 saying why.
//!
//! `--rollback` runs steps 4–6 with `volspike.previous` as the new binary.
//! Every attempt (except `--check`) is recorded in `<state dir>/update.json`.

// The macros come first: the modules below print with them.
/// Writes a line to stdout and ignores failures: an operator's ssh session
/// dropping mid-update must not panic the updater before it can roll back.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), "volspike self-update: {}", format_args!($($arg)*));
    }};
}
/// [`say!`] for stderr.
macro_rules! complain {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), "volspike self-update: {}", format_args!($($arg)*));
    }};
}

mod activate;
mod args;
mod context;
mod flow;
mod outcome;
mod relaunch;

use std::io::Write;

pub use args::SelfUpdateArgs;
use context::Context;
use outcome::{Done, Problem};

use crate::cmd::exit::ExitCode;
use crate::service::fs::is_root;
use crate::service::paths::{BINARY, SERVICE};
use crate::update::lock::{Lock, LockError};
use crate::update::record::{self, UpdateRecord};

/// Runs the command: [`ExitCode::Ok`] updated (or nothing to do),
/// [`ExitCode::Failure`] refused, rolled back or failed (said why, and
/// recorded), [`ExitCode::Config`] when the configuration is unreadable.
pub fn run(args: SelfUpdateArgs) -> anyhow::Result<ExitCode> {
    // One crypto provider for every TLS user (self_update's ureq agent).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ctx = match Context::load(&args) {
        Ok(ctx) => ctx,
        Err(why) => {
            complain!("configuration error: {why:#}");
            return Ok(ExitCode::Config);
        }
    };
    for warning in &ctx.keys.warnings {
        complain!("warning: {warning}");
    }
    let changes_things = !args.check;
    if changes_things && !is_root() {
        anyhow::bail!(
            "refused: replacing {BINARY} and restarting {SERVICE} needs root (sudo volspike self-update …); nothing was changed"
        );
    }
    if changes_things && relaunch::in_service_cgroup(&ctx.unit) {
        return Ok(relaunch::relaunch_outside(&ctx, &args));
    }
    let _lock = if changes_things {
        let lock = Lock::take(&ctx.layout).map_err(|e| match e {
            LockError::Held(why) => Problem::Refused(why),
            LockError::Failed(why) => Problem::Failed(why),
        });
        match lock {
            Ok(lock) => Some(lock),
            Err(problem) => anyhow::bail!("{problem}"),
        }
    } else {
        None
    };
    let (action, source) = if args.rollback {
        (
            "rollback",
            ctx.layout.previous_binary().display().to_string(),
        )
    } else if let Some(from) = &args.from {
        ("update", from.display().to_string())
    } else {
        ("update", ctx.update_url.clone().unwrap_or_default())
    };
    let mut rec = UpdateRecord::now(action, &source);
    let result = if args.rollback {
        flow::rollback(&ctx, &args, &mut rec)
    } else {
        flow::update(&ctx, &args, &mut rec)
    };
    let code = match &result {
        Ok(_) => ExitCode::Ok,
        Err(problem) => {
            complain!("{problem}");
            ExitCode::Failure
        }
    };
    let record_it = changes_things && result != Ok(Done::NothingDone);
    if record_it {
        rec.at = UpdateRecord::now(action, &source).at;
        match &result {
            Ok(_) => rec.outcome = "ok".into(),
            Err(problem) => {
                rec.outcome = problem.outcome().into();
                rec.reason = Some(problem.reason().to_string());
            }
        }
        if let Err(e) = record::append(&ctx.state_dir, rec) {
            complain!(
                "warning: could not record the attempt in {}/{}: {e}",
                ctx.state_dir.display(),
                record::FILE
            );
        }
    }
    Ok(code)
}
