//! Talking to the service manager: `systemctl` as a child process.
//!
//! We run the `systemctl` binary rather than speaking D-Bus: it is on every
//! systemd host, it is what an operator would type (so our error messages can
//! quote the command), and it keeps a D-Bus client out of a static binary.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::child::{wait_within, Finished, WaitError};

/// Properties read for every unit we look at; one `systemctl show` call.
pub const PROPERTIES: &[&str] = &[
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "UnitFileState",
    "FragmentPath",
    "Result",
    "InvocationID",
    "NRestarts",
    "ExecMainStatus",
    "ExecMainCode",
    "ActiveEnterTimestamp",
    "ActiveEnterTimestampMonotonic",
    "ActiveExitTimestampMonotonic",
];

/// What systemd says about one unit (`systemctl show`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    /// The unit's name, e.g. `volspike.service`.
    pub id: String,
    /// `loaded`, `not-found`, `masked`, `error`…
    pub load_state: String,
    /// `active`, `inactive`, `activating`, `deactivating`, `failed`…
    pub active_state: String,
    /// Type-specific detail: `running`, `auto-restart`, `waiting`, `dead`…
    pub sub_state: String,
    /// `enabled`, `disabled`, `static`, `masked`… (empty when not found).
    pub unit_file_state: String,
    /// The unit file systemd loaded it from (empty when not found).
    pub fragment_path: String,
    /// `success`, `exit-code`, `watchdog`…
    pub result: String,
    /// Changes every time the unit is (re)started; empty when never started.
    pub invocation_id: String,
    /// Automatic restarts since the unit was last started by hand.
    pub n_restarts: String,
    /// Exit status of the main process's last run.
    pub exec_main_status: String,
    /// How it ended: `1` exited, `2` killed, `3` dumped core.
    pub exec_main_code: String,
    /// When it last became active, as systemd prints it (empty or `n/a`: never).
    pub active_enter_timestamp: String,
    /// The same in µs of the monotonic clock (0: never).
    pub active_enter_monotonic: String,
    /// When it last left the active state, µs of the monotonic clock (0: never).
    pub active_exit_monotonic: String,
}

impl UnitState {
    /// A unit systemd does not know: no file loaded.
    pub fn not_found(id: &str) -> UnitState {
        UnitState {
            id: id.to_string(),
            load_state: "not-found".into(),
            active_state: "inactive".into(),
            sub_state: "dead".into(),
            ..UnitState::default()
        }
    }

    /// Whether systemd found a unit file for it.
    pub fn exists(&self) -> bool {
        self.load_state != "not-found" && !self.load_state.is_empty()
    }

    /// Whether it is enabled (will start at boot or with its timer).
    pub fn is_enabled(&self) -> bool {
        matches!(
            self.unit_file_state.as_str(),
            "enabled" | "enabled-runtime" | "linked" | "linked-runtime" | "alias"
        )
    }

    /// Whether it runs or is on its way to running (a restart loop counts).
    pub fn is_running_or_starting(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "activating" | "reloading" | "refreshing"
        )
    }

    /// Whether it is up: active, and for a service past READY.
    pub fn is_up(&self) -> bool {
        self.active_state == "active"
            && (self.sub_state == "running" || !self.id.ends_with(".service"))
    }

    /// `active/running`: READY for a Type=notify service.
    pub fn is_ready(&self) -> bool {
        self.active_state == "active" && self.sub_state == "running"
    }

    /// Old process told to stop → new READY, from systemd's own timestamps.
    pub fn downtime(&self) -> Option<Duration> {
        let monotonic_us = |v: &str| v.parse::<u64>().ok().filter(|v| *v > 0);
        let left = monotonic_us(&self.active_exit_monotonic)?;
        let entered = monotonic_us(&self.active_enter_monotonic)?;
        entered.checked_sub(left).map(Duration::from_micros)
    }

    /// `exited with status 1; result exit-code` and the like, for messages.
    pub fn exit_summary(&self) -> String {
        let status = &self.exec_main_status;
        let how = match self.exec_main_code.as_str() {
            "1" => format!("exited with status {status}"),
            "2" => format!("killed by signal {status}"),
            "3" => format!("dumped core (signal {status})"),
            _ => format!("main process status {status}"),
        };
        format!("{how}; result {}", self.result)
    }

    fn from_map(id: &str, map: &BTreeMap<String, String>) -> UnitState {
        let get = |k: &str| map.get(k).cloned().unwrap_or_default();
        UnitState {
            id: map.get("Id").cloned().unwrap_or_else(|| id.to_string()),
            load_state: get("LoadState"),
            active_state: get("ActiveState"),
            sub_state: get("SubState"),
            unit_file_state: get("UnitFileState"),
            fragment_path: get("FragmentPath"),
            result: get("Result"),
            invocation_id: get("InvocationID"),
            n_restarts: get("NRestarts"),
            exec_main_status: get("ExecMainStatus"),
            exec_main_code: get("ExecMainCode"),
            active_enter_timestamp: get("ActiveEnterTimestamp"),
            active_enter_monotonic: get("ActiveEnterTimestampMonotonic"),
            active_exit_monotonic: get("ActiveExitTimestampMonotonic"),
        }
    }
}

/// Parses `systemctl show` output for `units` (one `KEY=value` block per
/// unit, blocks separated by blank lines, in the order asked).
pub fn parse_show(units: &[String], text: &str) -> Vec<UnitState> {
    let mut blocks: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
    for line in text.lines() {
        if line.trim().is_empty() {
            if blocks.last().is_some_and(|b| !b.is_empty()) {
                blocks.push(BTreeMap::new());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            if let Some(block) = blocks.last_mut() {
                block.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }
    units
        .iter()
        .map(|unit| {
            // Match by Id (systemctl resolves aliases, so fall back to order).
            let by_id = blocks
                .iter()
                .find(|b| b.get("Id").map(String::as_str) == Some(unit.as_str()));
            match by_id {
                Some(map) => UnitState::from_map(unit, map),
                None => {
                    let index = units.iter().position(|u| u == unit).unwrap_or(0);
                    match blocks.get(index) {
                        Some(map) if !map.is_empty() => UnitState::from_map(unit, map),
                        _ => UnitState::not_found(unit),
                    }
                }
            }
        })
        .collect()
}

/// Reads the state of units from the service manager.
pub trait UnitQuery {
    /// The state of each unit in `units`, in the same order.
    fn states(&self, units: &[String]) -> Result<Vec<UnitState>, String>;
}

/// The real service manager, through `systemctl show`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Systemctl;

impl UnitQuery for Systemctl {
    fn states(&self, units: &[String]) -> Result<Vec<UnitState>, String> {
        show(units, None)
    }
}

impl Systemctl {
    /// The state of one unit.
    pub fn state(&self, unit: &str) -> Result<UnitState, String> {
        one(unit, None)
    }

    /// The state of one unit, or an error when systemctl does not answer
    /// within `timeout` (a hung D-Bus must not hang a command a person waits on).
    pub fn state_within(&self, unit: &str, timeout: Duration) -> Result<UnitState, String> {
        one(unit, Some(timeout))
    }
}

fn one(unit: &str, timeout: Option<Duration>) -> Result<UnitState, String> {
    show(&[unit.to_string()], timeout)?
        .pop()
        .ok_or_else(|| format!("systemctl show {unit}: no answer"))
}

/// One `systemctl show` for `units`.
fn show(units: &[String], timeout: Option<Duration>) -> Result<Vec<UnitState>, String> {
    if units.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = vec![
        "show".to_string(),
        format!("--property={}", PROPERTIES.join(",")),
    ];
    args.push("--".into());
    args.extend(units.iter().cloned());
    let out = match timeout {
        None => output(&args)?,
        Some(timeout) => output_within(&args, timeout)?,
    };
    Ok(parse_show(units, &out))
}

/// Runs `systemctl ARGS`; an error quotes the command and systemctl's stderr.
pub fn run<S: AsRef<str>>(args: &[S]) -> Result<(), String> {
    output(args).map(|_| ())
}

/// Runs `systemctl ARGS` and returns its stdout.
pub fn output<S: AsRef<str>>(args: &[S]) -> Result<String, String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let shown = format!("systemctl {}", args.join(" "));
    let out = Command::new("systemctl")
        .args(&args)
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .output()
        .map_err(|e| format!("{shown}: cannot run systemctl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim();
        Err(format!(
            "{shown} failed ({}){}{}",
            out.status,
            if stderr.is_empty() { "" } else { ": " },
            stderr
        ))
    }
}

/// [`output`] for a command that answers at once (`show`): killed and an
/// error after `timeout`. The output is a few short lines, so reading it
/// after the exit cannot deadlock on a full pipe.
pub fn output_within<S: AsRef<str>>(args: &[S], timeout: Duration) -> Result<String, String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let shown = format!("systemctl {}", args.join(" "));
    let mut child = Command::new("systemctl")
        .args(&args)
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    let Finished {
        status,
        stdout,
        stderr,
    } = wait_within(&mut child, timeout).map_err(|e| match e {
        WaitError::TimedOut => format!("systemctl did not answer within {timeout:?}"),
        WaitError::Wait(e) => format!("systemctl: {e}"),
    })?;
    if status.success() {
        Ok(stdout)
    } else {
        // The first line says why (e.g. "System has not been booted with systemd").
        let first = stderr.lines().next().map(str::trim).unwrap_or("");
        Err(if first.is_empty() {
            format!("{shown} failed ({status})")
        } else {
            first.to_string()
        })
    }
}

/// `systemctl status --no-pager` text of a unit, whatever its exit code
/// (3 means "not running", which is still worth showing).
pub fn status_text(unit: &str, lines: u32) -> String {
    match Command::new("systemctl")
        .args([
            "status",
            "--no-pager",
            "--full",
            "-n",
            &lines.to_string(),
            unit,
        ])
        .env("SYSTEMD_COLORS", "0")
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => format!("(cannot run systemctl status {unit}: {e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_blocks_are_matched_to_units() {
        let units = vec!["a.service".to_string(), "b.timer".to_string()];
        let text = "Id=a.service\nLoadState=loaded\nActiveState=active\nSubState=running\nUnitFileState=enabled\nFragmentPath=/etc/systemd/system/a.service\nInvocationID=abc\n\nId=b.timer\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nUnitFileState=\nFragmentPath=\n";
        let states = parse_show(&units, text);
        assert_eq!(states.len(), 2);
        assert!(states[0].exists() && states[0].is_enabled() && states[0].is_up());
        assert_eq!(states[0].invocation_id, "abc");
        assert!(!states[1].exists() && !states[1].is_enabled());
    }

    #[test]
    fn missing_block_means_not_found() {
        let units = vec!["x.service".to_string()];
        assert_eq!(
            parse_show(&units, ""),
            vec![UnitState::not_found("x.service")]
        );
    }

    #[test]
    fn activating_service_is_not_up() {
        let s = UnitState {
            id: "v.service".into(),
            active_state: "activating".into(),
            sub_state: "start".into(),
            ..UnitState::default()
        };
        assert!(s.is_running_or_starting() && !s.is_up());
    }
}
