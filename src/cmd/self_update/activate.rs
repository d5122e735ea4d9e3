//! Steps 5-6: swap the verified binary in, restart the service outside
//! its cgroup, wait for READY and `/health`; on failure put the old binary
//! back and restart it.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;

use super::context::Context;
use super::outcome::Problem;
use crate::service::fs as service_fs;
use crate::update::record::UpdateRecord;
use crate::update::restart;

/// Swap `new_binary` in, restart, wait; on failure restore and restart.
pub(crate) fn activate(
    ctx: &Context,
    new_binary: &Path,
    from: &str,
    to: &str,
    rec: &mut UpdateRecord,
) -> Result<(), Problem> {
    let before = restart::show(&ctx.unit)
        .map_err(|e| Problem::Refused(format!("cannot ask systemd about {}: {e}", ctx.unit)))?;
    // From here on, losing the terminal or a Ctrl-C must not stop us
    // between the swap and the verdict (new version healthy, or old back).
    ignore_interruptions();
    let swapped = service_fs::swap_in(&ctx.layout, new_binary)
        .map_err(|e| Problem::Failed(format!("cannot swap in the new binary: {e}")))?;
    say!(
        "{} is now {to}; {from} kept as {}",
        ctx.layout.binary().display(),
        ctx.layout.previous_binary().display()
    );
    if before.load_state != "loaded" || !before.is_running_or_starting() {
        if let Err(e) = swapped.commit() {
            complain!("warning: {e}");
        }
        say!(
            "{} is {}: not restarted (start it with `systemctl start {}`)",
            ctx.unit,
            if before.load_state == "loaded" {
                before.active_state.as_str()
            } else {
                "not installed"
            },
            ctx.unit
        );
        return Ok(());
    }
    let outcome = restart::restart_outside(&ctx.unit).and_then(|job| {
        say!(
            "restarting {} (transient unit {job}); waiting up to {} s for READY and /health (Ctrl-C is ignored until then)",
            ctx.unit,
            ctx.start_timeout.as_secs()
        );
        restart::wait_ready(
            &ctx.unit,
            &before.invocation_id,
            to,
            ctx.health,
            ctx.start_timeout,
        )
    });
    match outcome {
        Ok(ready) => {
            if let Err(e) = swapped.commit() {
                complain!("warning: {e}");
            }
            rec.downtime_ms = ready.downtime.map(|d| d.as_millis() as u64);
            say!(
                "volspike {to} is running (invocation {}): READY {:.2} s after the restart request, /health 200",
                ready.invocation,
                ready.ready_after.as_secs_f64()
            );
            match ready.downtime {
                Some(d) => say!(
                    "downtime {:.3} s (old stopping -> new READY, systemd timestamps)",
                    d.as_secs_f64()
                ),
                None => say!("downtime unknown (systemd gave no timestamps)"),
            }
            Ok(())
        }
        Err(why) => {
            complain!("{to} did not come up: {why}; restoring {from}");
            match restore(ctx, swapped, from) {
                Ok(()) => Err(Problem::RolledBack(format!(
                    "{to} did not come up healthy within {} s ({why}); {from} is back in {} and running, READY and healthy",
                    ctx.start_timeout.as_secs(),
                    ctx.layout.binary().display()
                ))),
                Err(e) => Err(Problem::Failed(format!(
                    "{to} did not come up ({why}), and restoring {from} failed too: {e:#}; check `systemctl status {}`",
                    ctx.unit
                ))),
            }
        }
    }
}

/// Undo the swap and bring the old binary back up.
fn restore(ctx: &Context, swapped: service_fs::Swapped, from: &str) -> anyhow::Result<()> {
    swapped.undo().context("cannot put the old binary back")?;
    let before = restart::show(&ctx.unit).map_err(anyhow::Error::msg)?;
    restart::restart_outside(&ctx.unit).map_err(anyhow::Error::msg)?;
    restart::wait_ready(
        &ctx.unit,
        &before.invocation_id,
        from,
        ctx.health,
        ctx.start_timeout,
    )
    .map(|_| ())
    .map_err(anyhow::Error::msg)
}

/// The terminal going away (ssh dropped) sends SIGHUP, Ctrl-C SIGINT; the
/// update must finish or roll back regardless.
fn ignore_interruptions() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}
