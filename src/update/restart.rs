//! Restarting `volspike.service` from outside its cgroup and waiting until
//! the new process is READY and `/health` answers.
//!
//! Why outside: stopping the service kills every process in its cgroup. An
//! updater started from inside it (by the service itself, or a shell that
//! ended up there) would die halfway, before it could roll back. So the
//! restart is a job of its own transient unit (`systemd-run`), and an updater
//! that finds itself inside the service's cgroup first moves the whole update
//! into a transient unit (see [`inside_unit_cgroup`]).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::service::ready::{self, Waited};
use crate::service::systemctl::{Systemctl, UnitState};

/// How often /health is polled.
const POLL: Duration = Duration::from_millis(100);
/// After READY and a healthy answer, the service must still be the same
/// process this much later: a binary that dies right after READY is caught.
const SETTLE: Duration = Duration::from_secs(2);

/// Reads the unit's state.
pub fn show(unit: &str) -> Result<UnitState, String> {
    Systemctl.state(unit)
}

/// Why a new invocation that stopped during its start did not come up.
fn failure(now: &UnitState) -> String {
    if now.active_state == "failed" {
        format!("volspike.service failed to start ({})", now.exit_summary())
    } else {
        format!(
            "volspike.service stopped during start ({})",
            now.exit_summary()
        )
    }
}

/// A name for a transient unit: `volspike-update-<what>-<unix ms>`.
pub fn transient_name(what: &str) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("volspike-update-{what}-{ms}")
}

/// Asks systemd to restart `unit` as the job of a transient unit, so no
/// process of ours is involved in stopping it. Returns the transient unit's
/// name (its log: `journalctl -u <name>`).
pub fn restart_outside(unit: &str) -> Result<String, String> {
    let name = transient_name("restart");
    let out = Command::new("systemd-run")
        .arg(format!("--unit={name}"))
        .arg(format!(
            "--description=volspike self-update: restart {unit}"
        ))
        .args(["--collect", "--quiet", "--", "systemctl", "restart", unit])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => Ok(name),
        Ok(out) => Err(format!(
            "`systemd-run … systemctl restart {unit}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run systemd-run: {e}")),
    }
}

/// What a successful wait measured.
#[derive(Debug, Clone)]
pub struct Ready {
    /// From the restart request to READY.
    pub ready_after: Duration,
    /// Old left active → new READY (systemd timestamps), when known.
    pub downtime: Option<Duration>,
    /// The new invocation ID.
    pub invocation: String,
}

/// Waits until a new invocation of `unit` is READY, `/health` at `health`
/// answers 200 reporting `expected_version`, and it is still the same
/// process [`SETTLE`] later. Any failure or the timeout is an error saying why.
pub fn wait_ready(
    unit: &str,
    old_invocation: &str,
    expected_version: &str,
    health: SocketAddr,
    timeout: Duration,
) -> Result<Ready, String> {
    let started = Instant::now();
    let deadline = started + timeout;
    // 1. READY=1 from a new invocation.
    let props = match ready::wait_for_new_invocation(unit, old_invocation, deadline)? {
        Waited::Ready(now) => now,
        Waited::Failed(now) => return Err(failure(&now)),
        Waited::TimedOut(now) => {
            return Err(format!(
                "volspike.service not READY within {} s (state {}/{})",
                timeout.as_secs(),
                now.active_state,
                now.sub_state
            ))
        }
    };
    let ready_after = started.elapsed();
    let invocation = props.invocation_id.clone();
    let downtime = props.downtime();
    // 2. /health answers 200 with the version we installed.
    loop {
        let last_health = match ready::get_health(health) {
            Ok((200, body)) => {
                let version = serde_json::from_str::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("version").and_then(|v| v.as_str()).map(String::from));
                match version {
                    Some(v) if v == expected_version => break,
                    Some(v) => format!("200 but version {v}, expected {expected_version}"),
                    None => "200 without a version".to_string(),
                }
            }
            Ok((status, _)) => format!("HTTP {status}"),
            Err(e) => e.to_string(),
        };
        let now = show(unit)?;
        if now.invocation_id != invocation || !now.is_ready() {
            return Err(format!(
                "volspike.service went down after READY ({})",
                now.exit_summary()
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "READY, but http://{health}/health not healthy within {} s (last: {last_health})",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
    // 3. Still the same process a moment later.
    std::thread::sleep(SETTLE);
    let now = show(unit)?;
    if now.invocation_id != invocation || !now.is_ready() {
        return Err(format!(
            "volspike.service went down within {} s of READY ({})",
            SETTLE.as_secs(),
            now.exit_summary()
        ));
    }
    Ok(Ready {
        ready_after,
        downtime,
        invocation,
    })
}

/// Whether `/proc/self/cgroup` text puts us inside `unit`'s cgroup (v1 or v2).
pub fn inside_unit_cgroup(proc_self_cgroup: &str, unit: &str) -> bool {
    proc_self_cgroup.lines().any(|line| {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        path.split('/').any(|part| part == unit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ready::{classify, Progress};
    use crate::service::systemctl::parse_show;

    fn props(text: &str) -> UnitState {
        parse_show(&["volspike.service".to_string()], text)
            .pop()
            .expect("one unit")
    }

    #[test]
    fn a_new_invocation_that_is_running_is_ready() {
        let now = props("ActiveState=active\nSubState=running\nInvocationID=bbb\n");
        assert_eq!(classify(&now, "aaa"), Progress::Ready);
        // The old invocation still running is not READY of the new one.
        assert_eq!(classify(&now, "bbb"), Progress::Waiting);
        let starting = props("ActiveState=activating\nSubState=start\nInvocationID=bbb\n");
        assert_eq!(classify(&starting, "aaa"), Progress::Waiting);
    }

    #[test]
    fn an_exit_during_start_is_a_failure_with_the_status() {
        let now = props(
            "ActiveState=activating\nSubState=auto-restart\nInvocationID=bbb\nResult=exit-code\nExecMainCode=1\nExecMainStatus=1\n",
        );
        assert_eq!(classify(&now, "aaa"), Progress::Failed);
        let why = failure(&now);
        assert!(
            why.contains("exited with status 1; result exit-code"),
            "{why}"
        );
        let failed = props("ActiveState=failed\nSubState=failed\nInvocationID=ccc\nExecMainCode=2\nExecMainStatus=6\nResult=signal");
        assert_eq!(classify(&failed, "aaa"), Progress::Failed);
        assert!(failure(&failed).contains("killed by signal 6"));
    }

    #[test]
    fn downtime_from_systemd_timestamps() {
        let p =
            props("ActiveExitTimestampMonotonic=1000000\nActiveEnterTimestampMonotonic=1350000\n");
        assert_eq!(p.downtime(), Some(Duration::from_millis(350)));
        assert_eq!(props("ActiveExitTimestampMonotonic=0\n").downtime(), None);
    }

    #[test]
    fn cgroup_membership_v1_and_v2() {
        let v2_inside = "0::/system.slice/volspike.service\n";
        let v2_outside = "0::/user.slice/user-0.slice/session-3.scope\n";
        let v1_inside = "12:pids:/system.slice/volspike.service\n1:name=systemd:/system.slice/volspike.service\n";
        let transient = "0::/system.slice/volspike-update-run-1.service\n";
        assert!(inside_unit_cgroup(v2_inside, "volspike.service"));
        assert!(inside_unit_cgroup(v1_inside, "volspike.service"));
        assert!(!inside_unit_cgroup(v2_outside, "volspike.service"));
        assert!(!inside_unit_cgroup(transient, "volspike.service"));
    }
}
