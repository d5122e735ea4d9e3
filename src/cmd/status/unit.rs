//! The systemd unit's state, from `systemctl show`, when systemd is there.
//! Absent systemctl, a machine not booted with systemd, or no volspike
//! unit are all normal (a developer's `run --local`); they are reported,
//! not errors.

use std::time::Duration;

use serde::Serialize;

use crate::service::systemctl::{self, Systemctl};

/// The unit `install` writes.
pub const UNIT: &str = crate::service::paths::SERVICE;
/// `systemctl show` answers at once; a hung D-Bus must not hang `status`.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(3);

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
    match Systemctl.state_within(UNIT, SYSTEMCTL_TIMEOUT) {
        Ok(state) => UnitState::from(&state),
        Err(reason) => UnitState::NoSystemd { reason },
    }
}

/// Parses `systemctl show` output (`Key=value` lines).
pub fn parse(text: &str) -> UnitState {
    match systemctl::parse_show(&[UNIT.to_string()], text).pop() {
        Some(state) => UnitState::from(&state),
        None => UnitState::NotInstalled,
    }
}

impl From<&systemctl::UnitState> for UnitState {
    fn from(state: &systemctl::UnitState) -> UnitState {
        if !state.exists() {
            return UnitState::NotInstalled;
        }
        let known = |v: &str| {
            if v.is_empty() {
                "unknown".to_string()
            } else {
                v.to_string()
            }
        };
        let since = state.active_enter_timestamp.as_str();
        UnitState::Unit {
            active_state: known(&state.active_state),
            sub_state: known(&state.sub_state),
            n_restarts: state.n_restarts.parse().ok(),
            // systemd prints an empty value (or "n/a") for "never".
            active_since: (!since.is_empty() && since != "n/a").then(|| since.to_string()),
        }
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
