//! The systemd unit's state, from `systemctl show`, when systemd is there.
//! Absent systemctl, a machine not booted with systemd, or no volspike
//! unit are all normal (a developer's `run --local`); they are reported,
//! not errors.

use std::collections::BTreeMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The unit `install` writes.
pub const UNIT: &str = "volspike.service";
/// `systemctl show` answers at once; a hung D-Bus must not hang `status`.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(3);
/// The properties read.
const PROPERTIES: &str = "LoadState,ActiveState,SubState,NRestarts,ActiveEnterTimestamp";

/// What systemd says about the unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "systemd", rename_all = "camelCase")]
pub enum UnitState {
    /// No systemctl, or it cannot reach systemd (not booted with it, a
    /// container): the reason.
    #[serde(rename = "absent")]
    NoSystemd {
        /// Why, for the output.
        reason: String,
    },
    /// systemd runs, but knows no volspike unit.
    #[serde(rename = "noUnit")]
    NotInstalled,
    /// The unit's state.
    #[serde(rename = "present", rename_all = "camelCase")]
    Unit {
        /// `active`, `inactive`, `failed`, `activating`, `deactivating`, `reloading`.
        active_state: String,
        /// `running`, `dead`, `auto-restart`, …
        sub_state: String,
        /// Restarts by systemd since the unit was loaded, when known.
        n_restarts: Option<u64>,
        /// When it last became active, as systemd prints it; `None` when never.
        active_since: Option<String>,
    },
}

impl UnitState {
    /// Whether systemd says the service is down (inactive or failed): then
    /// whatever answers on the port is not the service.
    pub fn is_down(&self) -> bool {
        matches!(self, UnitState::Unit { active_state, .. }
            if active_state == "inactive" || active_state == "failed")
    }

    /// One line for the table.
    pub fn describe(&self) -> String {
        match self {
            UnitState::NoSystemd { reason } => format!("no systemd ({reason})"),
            UnitState::NotInstalled => format!("{UNIT} is not installed"),
            UnitState::Unit {
                active_state,
                sub_state,
                n_restarts,
                active_since,
            } => {
                let mut line = format!("{active_state} ({sub_state})");
                if let Some(since) = active_since {
                    line.push_str(&format!(" since {since}"));
                }
                if let Some(n) = n_restarts {
                    line.push_str(&format!(", {n} restart{}", if *n == 1 { "" } else { "s" }));
                }
                line
            }
        }
    }
}

/// Asks systemd about [`UNIT`].
pub fn query() -> UnitState {
    let child = Command::new("systemctl")
        .args(["show", "-p", PROPERTIES, UNIT])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            return UnitState::NoSystemd {
                reason: format!("cannot run systemctl: {e}"),
            }
        }
    };
    let deadline = Instant::now() + SYSTEMCTL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return UnitState::NoSystemd {
                    reason: format!("systemctl did not answer within {SYSTEMCTL_TIMEOUT:?}"),
                };
            }
            Err(e) => {
                return UnitState::NoSystemd {
                    reason: format!("systemctl: {e}"),
                }
            }
        }
    };
    // The output is a few short lines: reading after exit cannot deadlock.
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    if !status.success() {
        let reason = stderr
            .lines()
            .next()
            .unwrap_or("systemctl failed")
            .trim()
            .to_string();
        return UnitState::NoSystemd { reason };
    }
    parse(&stdout)
}

/// Parses `systemctl show` output (`Key=value` lines).
pub fn parse(text: &str) -> UnitState {
    let props: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    if props.get("LoadState").is_some_and(|s| *s == "not-found") {
        return UnitState::NotInstalled;
    }
    let get = |key: &str| props.get(key).map(|v| v.to_string());
    UnitState::Unit {
        active_state: get("ActiveState").unwrap_or_else(|| "unknown".into()),
        sub_state: get("SubState").unwrap_or_else(|| "unknown".into()),
        n_restarts: props.get("NRestarts").and_then(|v| v.parse().ok()),
        // systemd prints an empty value (or "n/a") for "never".
        active_since: get("ActiveEnterTimestamp").filter(|v| !v.is_empty() && v != "n/a"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_output() {
        let state = parse(
            "LoadState=loaded\nActiveState=active\nSubState=running\nNRestarts=2\n\
             ActiveEnterTimestamp=Wed 2026-05-06 10:00:00 UTC\n",
        );
        assert!(!state.is_down());
        assert_eq!(
            state.describe(),
            "active (running) since Wed 2026-05-06 10:00:00 UTC, 2 restarts"
        );
        let state = parse(
            "LoadState=loaded\nActiveState=failed\nSubState=failed\nNRestarts=0\nActiveEnterTimestamp=\n",
        );
        assert!(state.is_down());
        assert_eq!(state.describe(), "failed (failed), 0 restarts");
        let state = parse("LoadState=not-found\nActiveState=inactive\nSubState=dead\n");
        assert_eq!(state, UnitState::NotInstalled);
        assert!(!state.is_down(), "no unit is not a stopped unit");
    }
}
