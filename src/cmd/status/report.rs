//! The verdict of `volspike status`: what systemd and `/health` said,
//! judged into healthy, degraded or not running (pure, unit-tested).

use serde::Serialize;
use serde_json::Value;

use super::address::Target;
use super::probe::Probe;
use super::unit::{self, UnitState};
use crate::cmd::exit::ExitCode;

/// The overall answer and its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    /// `/health` answered 200 `ok`: exit 0.
    Healthy,
    /// Running but degraded, or answering in a way that is not a healthy
    /// `/health`: exit 1.
    Degraded,
    /// Not running: exit 3.
    NotRunning,
}

impl Verdict {
    /// The exit code.
    pub fn code(self) -> ExitCode {
        match self {
            Verdict::Healthy => ExitCode::Ok,
            Verdict::Degraded => ExitCode::Failure,
            Verdict::NotRunning => ExitCode::NotRunning,
        }
    }
}

/// Everything `status` found; `--json` prints it as is.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Healthy, degraded or not running.
    pub verdict: Verdict,
    /// The systemd unit.
    pub unit: UnitState,
    /// Where `/health` was asked.
    pub target: Target,
    /// The HTTP status of `/health`, when it answered.
    pub http_status: Option<u16>,
    /// The `/health` body, when it answered JSON.
    pub health: Option<Value>,
    /// Why the verdict is not "healthy", when that is not in `health`.
    pub problem: Option<String>,
}

/// Judges what was found.
pub fn judge(unit: UnitState, target: Target, probe: Probe) -> Report {
    let (verdict, http_status, health, mut problem) = match probe {
        Probe::Refused(why) => (Verdict::NotRunning, None, None, Some(why)),
        Probe::Failed(why) => (Verdict::Degraded, None, None, Some(why)),
        Probe::Answer { status, body } => {
            let ok = status == 200 && body.as_ref().is_some_and(|b| b["status"] == "ok");
            let ours = body.as_ref().is_some_and(|b| b["jobs"].is_object());
            let problem = if !ours {
                Some(format!(
                    "HTTP {status} from {} is not volspike's /health (another program on this port?)",
                    target.addr
                ))
            } else {
                None
            };
            let verdict = if ok && ours {
                Verdict::Healthy
            } else {
                Verdict::Degraded
            };
            (verdict, Some(status), body, problem)
        }
    };
    // systemd knows best whether the service runs: an answer on the port
    // with the unit down comes from some other process.
    let verdict = if unit.is_down() {
        if http_status.is_some() {
            problem = Some(format!(
                "systemd says {} is down, yet something answers on {}: not the service",
                unit::UNIT,
                target.addr
            ));
        }
        Verdict::NotRunning
    } else {
        verdict
    };
    Report {
        verdict,
        unit,
        target,
        http_status,
        health,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn target() -> Target {
        Target {
            addr: "127.0.0.1:8080".parse().expect("addr"),
            origin: "default".into(),
        }
    }

    fn unit(active: &str) -> UnitState {
        UnitState::Unit {
            active_state: active.into(),
            sub_state: "x".into(),
            n_restarts: None,
            active_since: None,
        }
    }

    fn answer(status: u16, body: Value) -> Probe {
        Probe::Answer {
            status,
            body: Some(body),
        }
    }

    #[test]
    fn verdicts() {
        let ok = json!({"status": "ok", "jobs": {}});
        let degraded = json!({"status": "degraded", "jobs": {}});
        let none = || UnitState::NoSystemd { reason: "x".into() };
        assert_eq!(
            judge(none(), target(), answer(200, ok.clone()))
                .verdict
                .code(),
            ExitCode::Ok
        );
        assert_eq!(
            judge(unit("active"), target(), answer(200, ok.clone()))
                .verdict
                .code(),
            ExitCode::Ok
        );
        assert_eq!(
            judge(none(), target(), answer(200, degraded.clone()))
                .verdict
                .code(),
            ExitCode::Failure,
            "an optional problem (200 degraded) still exits 1"
        );
        let critical = json!({"status": "critical", "jobs": {}});
        assert_eq!(
            judge(none(), target(), answer(503, critical))
                .verdict
                .code(),
            ExitCode::Failure
        );
        assert_eq!(
            judge(none(), target(), answer(503, degraded))
                .verdict
                .code(),
            ExitCode::Failure
        );
        assert_eq!(
            judge(none(), target(), Probe::Refused("no".into()))
                .verdict
                .code(),
            ExitCode::NotRunning
        );
        assert_eq!(
            judge(none(), target(), Probe::Failed("timeout".into()))
                .verdict
                .code(),
            ExitCode::Failure
        );
        // Something else on the port.
        let other = judge(none(), target(), answer(200, json!({"status": "ok"})));
        assert_eq!(other.verdict.code(), ExitCode::Failure);
        assert!(other.problem.is_some());
        // The unit is down: whatever answers is not the service.
        let down = judge(unit("failed"), target(), answer(200, ok));
        assert_eq!(down.verdict.code(), ExitCode::NotRunning);
        assert!(down.problem.is_some_and(|p| p.contains("not the service")));
        assert_eq!(
            judge(unit("inactive"), target(), Probe::Refused("no".into()))
                .verdict
                .code(),
            ExitCode::NotRunning
        );
    }
}
