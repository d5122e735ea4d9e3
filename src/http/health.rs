//! `GET /health`: every job's last run, result, error and next run, and the
//! liveness of the critical loops. 200 when all is healthy, 503 otherwise.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::{HttpContext, Reply};
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
    /// The funding WebSocket (its health also counts as the
    /// `funding_stream` job in `jobs`).
    pub websocket: StreamView,
}

/// Builds the health body and whether the appliance is healthy.
pub fn body(ctx: &HttpContext, now: SystemTime) -> (HealthBody, bool) {
    let (jobs, jobs_healthy) = ctx.board.views(now);
    let loops = ctx.liveness.states();
    let healthy = jobs_healthy && loops.iter().all(|l| l.alive);
    let body = HealthBody {
        status: if healthy { "ok" } else { "degraded" },
        version: crate::version::VERSION,
        uptime_seconds: ctx.started.elapsed().as_secs(),
        mode: if ctx.local { "local" } else { "backend" },
        jobs,
        loops,
        websocket: ctx.funding.stream.view(),
    };
    (body, healthy)
}

/// `GET /health`.
pub fn handle(ctx: &HttpContext) -> Reply {
    let (body, healthy) = body(ctx, SystemTime::now());
    Reply::json(if healthy { 200 } else { 503 }, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::status::StatusBoard;
    use crate::systemd::liveness::Liveness;
    use std::time::{Duration, Instant};

    fn ctx() -> HttpContext {
        HttpContext {
            started: Instant::now(),
            board: StatusBoard::default(),
            liveness: Liveness::new(None),
            local: true,
            funding: Default::default(),
        }
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
    fn a_stalled_loop_is_unhealthy() {
        let ctx = ctx();
        let _beat = ctx.liveness.register("scheduler", Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(handle(&ctx).status, 503);
    }
}
