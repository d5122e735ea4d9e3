//! `GET /health`: every job's last run, result, error and next run, the
//! liveness of the critical loops, each backend's delivery backlog, the HTTP
//! server's limits, and the problems found, each critical or optional.
//!
//! - 200 `"status":"ok"`: nothing wrong.
//! - 200 `"status":"degraded"`: only optional parts fail (a job's tick, such
//!   as the Telegram poll or an alert sweep that Binance refused); the
//!   appliance still does what it exists for, so an uptime monitor must not
//!   page. The `problems` list says what and why.
//! - 503 `"status":"critical"`: something the appliance exists for is down:
//!   the funding stream is stale, delivery to a backend is blocked, or a
//!   critical loop stopped (the watchdog restarts the service for the last).
//!
//! The rules are in `docs/health.md`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::context::HttpContext;
use super::reply::Reply;
use super::server::limits::HttpView;
use crate::backend::{DeliveryCondition, DeliveryStats};
use crate::binance::governor::GovernorStatus;
use crate::jobs::funding_stream::StreamView;
use crate::jobs::status::JobView;
use crate::systemd::liveness::LoopState;

/// The `/health` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthBody {
    /// `ok`, `degraded` (optional problems, 200) or `critical` (503).
    pub status: &'static str,
    /// Every reason the status is not `ok`, critical ones first.
    pub problems: Vec<Problem>,
    /// Crate version.
    pub version: &'static str,
    /// Seconds since start.
    pub uptime_seconds: u64,
    /// `backend` (posting) or `local` (alerts only logged).
    pub mode: &'static str,
    /// Every job by name.
    pub jobs: BTreeMap<&'static str, JobView>,
    /// Every critical loop.
    pub loops: Vec<LoopState>,
    /// Each backend's outbox: pending, oldest pending age, delivered,
    /// retried, dropped (4xx), shed, refused. Empty in `--local` mode.
    pub delivery: BTreeMap<&'static str, DeliveryStats>,
    /// What holds delivery back, one line per backend with a problem
    /// (`primary: blocked: delivery paused: backend rejects the API key …`,
    /// `dev: degraded: 2 dead letters kept …`); empty when posts flow.
    pub delivery_problems: Vec<String>,
    /// The Binance weight governor: weight used in the window, ceiling,
    /// pause after a 429/418, queued callers.
    pub binance: Option<GovernorStatus>,
    /// The funding WebSocket (its health also counts as the
    /// `funding_stream` job in `jobs`).
    pub websocket: StreamView,
    /// The HTTP server's limits and what they did.
    pub http: HttpView,
    /// The caps on Binance answers and how many answers they cut.
    pub binance_bodies: crate::binance::rest::BodyLimits,
    /// Volume alerts' detection latency (kline event → queued → delivered).
    pub volume_latency: crate::alert_latency::LatencyView,
}

/// How much a problem matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Severity {
    /// What the appliance exists for is down: `/health` answers 503.
    Critical,
    /// An optional part fails: `/health` answers 200 `degraded`.
    Optional,
}

/// One reason `/health` is not `ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// What fails: `job:<name>`, `loop:<name>` or `delivery:<backend>`.
    pub component: String,
    /// Critical or optional.
    pub severity: Severity,
    /// Why, in words.
    pub reason: String,
}

/// A backlog whose oldest post waits longer than this means delivery is
/// blocked: the backend has been unreachable (or refusing with 5xx) too long.
pub const BACKLOG_DEGRADED_SECONDS: u64 = 600;

/// The problems of the jobs: failing or overdue ones.
fn job_problems(jobs: &BTreeMap<&'static str, JobView>) -> Vec<Problem> {
    jobs.iter()
        .filter(|(_, view)| matches!(view.state, "failing" | "overdue"))
        .map(|(name, view)| Problem {
            component: format!("job:{name}"),
            // Critical or optional as registered (jobs::registry::ALL).
            severity: if crate::jobs::registry::is_critical(name) {
                Severity::Critical
            } else {
                Severity::Optional
            },
            reason: match (view.state, &view.last_error) {
                ("failing", Some(error)) => format!("last tick failed: {error}"),
                ("failing", None) => "last tick failed".to_string(),
                _ => "next run is overdue".to_string(),
            },
        })
        .collect()
}

/// The problems of the critical loops: each one past its deadline.
fn loop_problems(loops: &[LoopState]) -> Vec<Problem> {
    loops
        .iter()
        .filter(|l| !l.alive)
        .map(|l| Problem {
            component: format!("loop:{}", l.name),
            severity: Severity::Critical,
            reason: format!(
                "no progress for {:.0} s (deadline {:.0} s)",
                l.seconds_since_progress, l.deadline_seconds
            ),
        })
        .collect()
}

/// The problems of delivery: each backend whose delivery is blocked, by a
/// backlog older than [`BACKLOG_DEGRADED_SECONDS`], a backend refusing the
/// API key (401/403: paused, nothing reaches it until the operator acts),
/// or a state directory refusing writes (new posts cannot be made durable).
/// Dead letters alone are no problem: they are named in `deliveryProblems`,
/// but delivery works and a refused post now and then is routine (a user
/// deleted an alert between two checks).
fn delivery_problems(delivery: &BTreeMap<&'static str, DeliveryStats>) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (backend, s) in delivery {
        let component = format!("delivery:{backend}");
        if let Some(age) = s
            .oldest_pending_seconds
            .filter(|age| *age > BACKLOG_DEGRADED_SECONDS)
        {
            problems.push(Problem {
                component: component.clone(),
                severity: Severity::Critical,
                reason: format!(
                    "delivery blocked: the oldest post has waited {age} s (limit {BACKLOG_DEGRADED_SECONDS} s)"
                ),
            });
        }
        match s.condition() {
            DeliveryCondition::Blocked(why) | DeliveryCondition::Degraded(why) => {
                problems.push(Problem {
                    component,
                    severity: Severity::Critical,
                    reason: why,
                })
            }
            DeliveryCondition::DeadLetters(_) | DeliveryCondition::Ok => {}
        }
    }
    problems
}

/// One line per backend whose delivery is not plainly ok (`deliveryProblems`),
/// dead letters included.
fn delivery_notes(delivery: &BTreeMap<&'static str, DeliveryStats>) -> Vec<String> {
    delivery
        .iter()
        .filter_map(|(backend, s)| match s.condition() {
            DeliveryCondition::Ok => None,
            DeliveryCondition::Blocked(why) => Some(format!("{backend}: blocked: {why}")),
            DeliveryCondition::Degraded(why) => Some(format!("{backend}: degraded: {why}")),
            DeliveryCondition::DeadLetters(why) => Some(format!("{backend}: {why}")),
        })
        .collect()
}

/// The overall status word for `problems`.
fn status_of(problems: &[Problem]) -> &'static str {
    if problems.iter().any(|p| p.severity == Severity::Critical) {
        "critical"
    } else if problems.is_empty() {
        "ok"
    } else {
        "degraded"
    }
}

/// Builds the health body and whether `/health` answers 200 (nothing
/// critical is down).
pub fn body(ctx: &HttpContext, now: SystemTime) -> (HealthBody, bool) {
    let (jobs, _) = ctx.board.views(now);
    let loops = ctx.liveness.states();
    let delivery = ctx
        .outbox
        .as_ref()
        .map(|outbox| outbox.stats())
        .unwrap_or_default();
    let mut problems = loop_problems(&loops);
    problems.extend(delivery_problems(&delivery));
    problems.extend(job_problems(&jobs));
    problems.sort_by_key(|p| p.severity);
    let status = status_of(&problems);
    let body = HealthBody {
        status,
        problems,
        version: crate::version::VERSION,
        uptime_seconds: ctx.started.elapsed().as_secs(),
        mode: if ctx.local { "local" } else { "backend" },
        jobs,
        loops,
        delivery_problems: delivery_notes(&delivery),
        delivery,
        binance: ctx.governor.as_ref().map(|g| g.status()),
        websocket: ctx.funding.stream.view(),
        http: ctx.http.view(),
        binance_bodies: crate::binance::rest::body_limits(),
        volume_latency: crate::alert_latency::view(),
    };
    (body, status != "critical")
}

/// `GET /health`.
pub fn handle(ctx: &HttpContext) -> Reply {
    let (body, serving) = body(ctx, crate::clock::now());
    Reply::json(if serving { 200 } else { 503 }, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx() -> HttpContext {
        crate::http::context::tests::ctx()
    }

    fn json(reply: &Reply) -> serde_json::Value {
        serde_json::from_slice(&reply.body).expect("json")
    }

    #[test]
    fn an_optional_job_failing_is_degraded_but_200() {
        let ctx = ctx();
        ctx.board.update("volume_spike", |s| s.last_ok = Some(true));
        assert_eq!(handle(&ctx).status, 200);
        assert_eq!(json(&handle(&ctx))["status"], "ok");
        for job in ["volume_spike", "telegram"] {
            ctx.board.update(job, |s| {
                s.last_ok = Some(false);
                s.consecutive_failures = 1;
                s.last_error = Some("klines timed out".into());
            });
        }
        let reply = handle(&ctx);
        assert_eq!(reply.status, 200);
        let json = json(&reply);
        assert_eq!(json["status"], "degraded");
        assert_eq!(
            json["jobs"]["volume_spike"]["lastError"],
            "klines timed out"
        );
        assert_eq!(json["jobs"]["volume_spike"]["lastResult"], "error");
        assert_eq!(json["problems"][0]["component"], "job:telegram");
        assert_eq!(json["problems"][0]["severity"], "optional");
        assert_eq!(
            json["problems"][1]["reason"],
            "last tick failed: klines timed out"
        );
    }

    #[test]
    fn a_failing_funding_stream_is_critical() {
        let ctx = ctx();
        ctx.board.update("telegram", |s| s.consecutive_failures = 1);
        ctx.board.update("funding_stream", |s| {
            s.consecutive_failures = 1;
            s.last_error = Some("no frame for 60 s".into());
        });
        let reply = handle(&ctx);
        assert_eq!(reply.status, 503);
        let json = json(&reply);
        assert_eq!(json["status"], "critical");
        assert_eq!(json["problems"][0]["component"], "job:funding_stream");
        assert_eq!(json["problems"][0]["severity"], "critical");
        assert_eq!(json["problems"][1]["severity"], "optional");
    }

    #[test]
    fn an_old_backlog_is_degraded() {
        let mut delivery = BTreeMap::new();
        delivery.insert(
            "primary",
            DeliveryStats {
                pending: 3,
                oldest_pending_seconds: Some(BACKLOG_DEGRADED_SECONDS),
                ..DeliveryStats::default()
            },
        );
        assert!(delivery_problems(&delivery).is_empty());
        delivery.insert(
            "dev",
            DeliveryStats {
                pending: 1,
                oldest_pending_seconds: Some(BACKLOG_DEGRADED_SECONDS + 1),
                ..DeliveryStats::default()
            },
        );
        let problems = delivery_problems(&delivery);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].component, "delivery:dev");
        assert_eq!(status_of(&problems), "critical");
    }

    #[test]
    fn a_paused_backend_or_a_refusing_disk_is_critical_and_dead_letters_are_only_named() {
        let mut delivery = BTreeMap::new();
        delivery.insert(
            "primary",
            DeliveryStats {
                paused: Some("backend rejects the API key (HTTP 401 on /x)".into()),
                ..DeliveryStats::default()
            },
        );
        delivery.insert(
            "dev",
            DeliveryStats {
                dead_letters: 2,
                ..DeliveryStats::default()
            },
        );
        let problems = delivery_problems(&delivery);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].component, "delivery:primary");
        assert_eq!(status_of(&problems), "critical");
        let notes = delivery_notes(&delivery);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("dev: 2 dead letters kept"));
        assert!(notes[1].contains("primary: blocked: delivery paused: backend rejects the API key"));
        delivery.remove("primary");
        assert!(
            delivery_problems(&delivery).is_empty(),
            "dead letters alone"
        );
        delivery.insert(
            "primary",
            DeliveryStats {
                disk_error: Some("no space left on device".into()),
                ..DeliveryStats::default()
            },
        );
        assert_eq!(status_of(&delivery_problems(&delivery)), "critical");
        assert!(delivery_notes(&delivery)[1].starts_with("primary: degraded: outbox cannot write"));
    }

    #[test]
    fn a_stalled_loop_is_unhealthy() {
        let ctx = ctx();
        let _beat = ctx.liveness.register("scheduler", Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(10));
        let reply = handle(&ctx);
        assert_eq!(reply.status, 503);
        assert_eq!(json(&reply)["problems"][0]["component"], "loop:scheduler");
    }
}
