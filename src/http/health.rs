//! `GET /health`: every job's last run, result, error and next run, and the
//! liveness of the critical loops, and each backend's delivery backlog.
//! 200 when all is healthy, 503 otherwise.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::{HttpContext, Reply};
use crate::backend::{DeliveryCondition, DeliveryStats};
use crate::binance::governor::GovernorStatus;
use crate::binance::stream::StreamView;
use crate::jobs::status::JobView;
use crate::systemd::liveness::LoopState;

/// The `/health` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthBody {
    /// `ok` or `degraded`.
    pub status: &'static str,
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
}

/// A backlog whose oldest post waits longer than this makes health degraded:
/// the backend has been unreachable (or refusing with 5xx) for too long.
pub const BACKLOG_DEGRADED_SECONDS: u64 = 600;

/// Whether every backend's backlog is younger than [`BACKLOG_DEGRADED_SECONDS`]
/// and no backend is paused (401/403) or refused by the disk. Dead letters
/// alone are listed in `deliveryProblems` but keep the appliance healthy:
/// delivery works, and a refused post now and then is routine.
fn delivery_healthy(delivery: &BTreeMap<&'static str, DeliveryStats>) -> bool {
    delivery.values().all(|s| {
        s.oldest_pending_seconds
            .is_none_or(|age| age <= BACKLOG_DEGRADED_SECONDS)
            && matches!(
                s.condition(),
                DeliveryCondition::Ok | DeliveryCondition::DeadLetters(_)
            )
    })
}

/// One line per backend whose delivery is blocked or degraded.
fn delivery_problems(delivery: &BTreeMap<&'static str, DeliveryStats>) -> Vec<String> {
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

/// Builds the health body and whether the appliance is healthy.
pub fn body(ctx: &HttpContext, now: SystemTime) -> (HealthBody, bool) {
    let (jobs, jobs_healthy) = ctx.board.views(now);
    let loops = ctx.liveness.states();
    let delivery = ctx
        .outbox
        .as_ref()
        .map(|outbox| outbox.stats())
        .unwrap_or_default();
    let healthy = jobs_healthy && loops.iter().all(|l| l.alive) && delivery_healthy(&delivery);
    let body = HealthBody {
        status: if healthy { "ok" } else { "degraded" },
        version: crate::version::VERSION,
        uptime_seconds: ctx.started.elapsed().as_secs(),
        mode: if ctx.local { "local" } else { "backend" },
        jobs,
        loops,
        delivery_problems: delivery_problems(&delivery),
        delivery,
        binance: ctx.governor.as_ref().map(|g| g.status()),
        websocket: ctx.funding.stream.view(),
    };
    (body, healthy)
}

/// `GET /health`.
pub fn handle(ctx: &HttpContext) -> Reply {
    let (body, healthy) = body(ctx, crate::clock::now());
    Reply::json(if healthy { 200 } else { 503 }, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ctx() -> HttpContext {
        crate::http::tests::ctx()
    }

    #[test]
    fn healthy_until_a_job_fails() {
        let ctx = ctx();
        ctx.board.update("volume_spike", |s| s.last_ok = Some(true));
        assert_eq!(handle(&ctx).status, 200);
        ctx.board.update("volume_spike", |s| {
            s.last_ok = Some(false);
            s.consecutive_failures = 1;
            s.last_error = Some("klines timed out".into());
        });
        let reply = handle(&ctx);
        assert_eq!(reply.status, 503);
        let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("json");
        assert_eq!(json["status"], "degraded");
        assert_eq!(
            json["jobs"]["volume_spike"]["lastError"],
            "klines timed out"
        );
        assert_eq!(json["jobs"]["volume_spike"]["lastResult"], "error");
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
        assert!(delivery_healthy(&delivery));
        delivery.insert(
            "dev",
            DeliveryStats {
                pending: 1,
                oldest_pending_seconds: Some(BACKLOG_DEGRADED_SECONDS + 1),
                ..DeliveryStats::default()
            },
        );
        assert!(!delivery_healthy(&delivery));
    }

    #[test]
    fn a_paused_backend_is_unhealthy_and_dead_letters_are_named_but_not_unhealthy() {
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
        assert!(!delivery_healthy(&delivery));
        let problems = delivery_problems(&delivery);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("dev: 2 dead letters kept"));
        assert!(
            problems[1].contains("primary: blocked: delivery paused: backend rejects the API key")
        );
        delivery.remove("primary");
        assert!(delivery_healthy(&delivery), "dead letters alone");
        delivery.insert(
            "primary",
            DeliveryStats {
                disk_error: Some("no space left on device".into()),
                ..DeliveryStats::default()
            },
        );
        assert!(!delivery_healthy(&delivery));
        assert!(
            delivery_problems(&delivery)[1].starts_with("primary: degraded: outbox cannot write")
        );
    }

    #[test]
    fn a_stalled_loop_is_unhealthy() {
        let ctx = ctx();
        let _beat = ctx.liveness.register("scheduler", Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(handle(&ctx).status, 503);
    }
}
