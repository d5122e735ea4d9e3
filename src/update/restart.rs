//! Restarting `volspike.service` from outside its cgroup and waiting until
//! the new process is READY and `/health` answers.
//!
//! Why outside: stopping the service kills every process in its cgroup. An
//! updater started from inside it (by the service itself, or a shell that
//! ended up there) would die halfway, before it could roll back. So the
//! restart is a job of its own transient unit (`systemd-run`), and an updater
//! that finds itself inside the service's cgroup first moves the whole update
//! into a transient unit (see [`inside_unit_cgroup`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Properties read on every poll (one `systemctl show`).
const PROPERTIES: &str = "LoadState,ActiveState,SubState,Result,InvocationID,ExecMainStatus,ExecMainCode,NRestarts,ActiveEnterTimestampMonotonic,ActiveExitTimestampMonotonic";
/// How often the unit and /health are polled.
const POLL: Duration = Duration::from_millis(100);
/// After READY and a healthy answer, the service must still be the same
/// process this much later: a binary that dies right after READY is caught.
const SETTLE: Duration = Duration::from_secs(2);

/// What systemd says about the unit (`systemctl show`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitProps {
    /// Every `KEY=value` line.
    values: BTreeMap<String, String>,
}

impl UnitProps {
    /// Parses `systemctl show` output.
    pub fn parse(text: &str) -> UnitProps {
        UnitProps {
            values: text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect(),
        }
    }

    /// One property; empty when absent.
    pub fn get(&self, key: &str) -> &str {
        self.values.get(key).map(String::as_str).unwrap_or("")
    }

    /// `loaded` for an installed unit.
    pub fn loaded(&self) -> bool {
        self.get("LoadState") == "loaded"
    }

    /// Running or on its way up: an update restarts it; a stopped service is
    /// left stopped (the operator stopped it).
    pub fn wants_running(&self) -> bool {
        matches!(
            self.get("ActiveState"),
            "active" | "activating" | "reloading"
        )
    }

    /// `active/running`, i.e. READY for a Type=notify service.
    pub fn ready(&self) -> bool {
        self.get("ActiveState") == "active" && self.get("SubState") == "running"
    }

    /// The current invocation: changes with every start.
    pub fn invocation(&self) -> &str {
        self.get("InvocationID")
    }

    fn monotonic_us(&self, key: &str) -> Option<u64> {
        self.get(key).parse().ok().filter(|v| *v > 0)
    }

    /// Old process told to stop → new READY, from systemd's own timestamps.
    pub fn downtime(&self) -> Option<Duration> {
        let left = self.monotonic_us("ActiveExitTimestampMonotonic")?;
        let entered = self.monotonic_us("ActiveEnterTimestampMonotonic")?;
        entered.checked_sub(left).map(Duration::from_micros)
    }

    /// `exit-code, status 1` and the like, for messages.
    pub fn exit_summary(&self) -> String {
        let code = self.get("ExecMainCode");
        let status = self.get("ExecMainStatus");
        let how = match code {
            "1" => format!("exited with status {status}"),
            "2" => format!("killed by signal {status}"),
            "3" => format!("dumped core (signal {status})"),
            _ => format!("main process status {status}"),
        };
        format!("{how}; result {}", self.get("Result"))
    }
}

/// Where a start stands, judged from one `systemctl show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The new invocation has not begun or is still starting.
    Waiting,
    /// A new invocation is active/running (READY).
    Ready,
    /// The new invocation failed; why.
    Failed(String),
}

/// Judges `now` against the invocation that was running before the restart.
pub fn classify(now: &UnitProps, old_invocation: &str) -> Progress {
    let new = !now.invocation().is_empty() && now.invocation() != old_invocation;
    if !new {
        return Progress::Waiting;
    }
    match (now.get("ActiveState"), now.get("SubState")) {
        ("active", "running") => Progress::Ready,
        ("failed", _) => Progress::Failed(format!(
            "volspike.service failed to start ({})",
            now.exit_summary()
        )),
        ("activating", "auto-restart") | ("inactive", _) | ("deactivating", _) => {
            Progress::Failed(format!(
                "volspike.service stopped during start ({})",
                now.exit_summary()
            ))
        }
        _ => Progress::Waiting,
    }
}

/// Reads the unit's properties.
pub fn show(unit: &str) -> Result<UnitProps, String> {
    let out = Command::new("systemctl")
        .args(["show", unit, "--property", PROPERTIES])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `systemctl show {unit}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`systemctl show {unit}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(UnitProps::parse(&String::from_utf8_lossy(&out.stdout)))
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
    let props = loop {
        let now = show(unit)?;
        match classify(&now, old_invocation) {
            Progress::Ready => break now,
            Progress::Failed(why) => return Err(why),
            Progress::Waiting => {}
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "volspike.service not READY within {} s (state {}/{})",
                timeout.as_secs(),
                now.get("ActiveState"),
                now.get("SubState")
            ));
        }
        std::thread::sleep(POLL);
    };
    let ready_after = started.elapsed();
    let invocation = props.invocation().to_string();
    let downtime = props.downtime();
    // 2. /health answers 200 with the version we installed.
    loop {
        let last_health = match get_health(health) {
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
            Err(e) => e,
        };
        let now = show(unit)?;
        if now.invocation() != invocation || !now.ready() {
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
    if now.invocation() != invocation || !now.ready() {
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

/// `GET /health` over plain HTTP/1.0 on loopback: status and body.
pub fn get_health(addr: SocketAddr) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    stream
        .write_all(
            format!("GET /health HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(1024 * 1024)
        .read_to_end(&mut response)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{addr} answered no HTTP status line"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
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

    fn props(text: &str) -> UnitProps {
        UnitProps::parse(text)
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
        match classify(&now, "aaa") {
            Progress::Failed(why) => {
                assert!(
                    why.contains("exited with status 1; result exit-code"),
                    "{why}"
                )
            }
            other => panic!("{other:?}"),
        }
        let failed = props("ActiveState=failed\nSubState=failed\nInvocationID=ccc\nExecMainCode=2\nExecMainStatus=6\nResult=signal");
        assert!(
            matches!(classify(&failed, "aaa"), Progress::Failed(w) if w.contains("killed by signal 6"))
        );
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

    #[test]
    fn health_over_loopback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\r\n{\"version\":\"1.0.0\"}");
        });
        let (status, body) = get_health(addr).expect("answer");
        assert_eq!(status, 503);
        assert!(body.contains("1.0.0"));
        let _ = server.join();
    }
}
