//! `GET /metrics`: the appliance in the Prometheus text format, read from
//! the same shared state as `/health` (nothing is double-booked):
//!
//! - build info, overall health, critical loops (last progress);
//! - the standard `process_*` metrics (memory, CPU, fds, start time);
//! - per job, labelled `volspike_job` (a `job` label would clash with the
//!   one Prometheus attaches to every target and be renamed
//!   `exported_job`): runs, failures, tick durations (summary), last/next
//!   run, health (`funding_stream`'s runs are the connections it opened);
//! - alerts and posts enqueued by type (accepted by the outbox; duplicates
//!   not counted; delivery is counted per backend), and per backend the
//!   backlog and delivery counters;
//! - volume alerts' detection latency; in volume `stream` mode the kline
//!   connections, streams, control messages, pacing, reconnects, symbols
//!   in a gap and previous hours read over REST;
//! - the funding WebSocket: state, messages, reconnects, last message time,
//!   symbols and the times of the oldest and newest data;
//! - Binance weight in use, ceiling and limit, 429s and pauses;
//! - HTTP requests by route template and status.
//!
//! Counters reset when the process restarts, as Prometheus expects. Points
//! in time are `*_timestamp_seconds` gauges (seconds since the epoch), the
//! Prometheus convention: `time() - x` is the age, and it keeps counting
//! when the appliance stops answering.
//!
//! Adding a metric: one `e.family(…)` + `e.sample(…)` (or `e.single(…)`)
//! in the section it belongs to; `tests/metrics.rs` runs `promtool check
//! metrics` on the result.

mod binance;
mod delivery;
pub mod encode;
mod http;
mod kline;
pub mod latency;
pub(crate) mod process;

use std::time::SystemTime;

use encode::{Encoder, Kind};

use super::context::HttpContext;
use super::reply::Reply;
use crate::clock::unix_ms;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
pub fn handle(ctx: &HttpContext) -> Reply {
    let text = render(ctx, SystemTime::now());
    Reply {
        status: 200,
        content_type: CONTENT_TYPE,
        body: text.into_bytes().into(),
    }
}

/// The label naming a job. Not `job`: Prometheus attaches that to every
/// series (the scrape target's job) and renames ours to `exported_job`.
const JOB_LABEL: &str = "volspike_job";

/// Seconds since the epoch, for timestamp gauges.
fn epoch_seconds(t: SystemTime) -> f64 {
    unix_ms(t) as f64 / 1000.0
}

/// The whole exposition as of `now`.
pub fn render(ctx: &HttpContext, now: SystemTime) -> String {
    let mut e = Encoder::default();
    build_and_health(&mut e, ctx, now);
    process::write(&mut e, &process::read());
    jobs(&mut e, ctx, now);
    delivery::alerts_and_delivery(&mut e, ctx);
    latency::write(&mut e);
    kline::streams(&mut e, ctx, crate::clock::now());
    binance::websocket(&mut e, ctx, now);
    binance::governor(&mut e, ctx);
    binance::bodies(&mut e);
    http::requests_and_limits(&mut e, ctx);
    e.finish()
}

fn build_and_health(e: &mut Encoder, ctx: &HttpContext, now: SystemTime) {
    e.family(
        "volspike_build_info",
        Kind::Gauge,
        "Always 1; the labels say which build is running.",
    );
    e.sample(
        "volspike_build_info",
        &[
            ("version", crate::version::VERSION),
            ("commit", crate::version::COMMIT),
            ("target", crate::version::TARGET),
        ],
        1.0,
    );
    let (_, healthy) = super::health::body(ctx, now);
    e.single(
        "volspike_healthy",
        Kind::Gauge,
        "1 when /health answers 200, 0 when it answers 503.",
        f64::from(u8::from(healthy)),
    );
    e.family(
        "volspike_loop_alive",
        Kind::Gauge,
        "1 while a critical loop reports progress within its deadline (the watchdog's view).",
    );
    let loops = ctx.liveness.states();
    for l in &loops {
        e.sample(
            "volspike_loop_alive",
            &[("loop", l.name)],
            f64::from(u8::from(l.alive)),
        );
    }
    e.family(
        "volspike_loop_last_progress_timestamp_seconds",
        Kind::Gauge,
        "When a critical loop last reported progress, seconds since the epoch.",
    );
    let now_seconds = epoch_seconds(now);
    for l in &loops {
        e.sample(
            "volspike_loop_last_progress_timestamp_seconds",
            &[("loop", l.name)],
            now_seconds - l.seconds_since_progress,
        );
    }
}

fn jobs(e: &mut Encoder, ctx: &HttpContext, now: SystemTime) {
    let jobs = ctx.board.snapshot();
    let each = |e: &mut Encoder,
                name: &str,
                kind: Kind,
                help: &str,
                value: &dyn Fn(&crate::jobs::status::JobStatus) -> Option<f64>| {
        e.family(name, kind, help);
        for (job, s) in &jobs {
            if let Some(v) = value(s) {
                e.sample(name, &[(JOB_LABEL, job)], v);
            }
        }
    };
    each(
        e,
        "volspike_job_runs_total",
        Kind::Counter,
        "Ticks finished (funding_stream: connections opened).",
        &|s| Some(s.runs as f64),
    );
    each(
        e,
        "volspike_job_failures_total",
        Kind::Counter,
        "Ticks failed (funding_stream: times the stream went unhealthy).",
        &|s| Some(s.failures as f64),
    );
    e.family(
        "volspike_job_duration_seconds",
        Kind::Summary,
        "Duration of finished ticks of scheduled jobs.",
    );
    for (job, s) in &jobs {
        // The stream is not ticked: it has no durations to report.
        if s.last_duration.is_none() {
            continue;
        }
        e.sample(
            "volspike_job_duration_seconds_sum",
            &[(JOB_LABEL, job)],
            s.total_duration.as_secs_f64(),
        );
        e.sample(
            "volspike_job_duration_seconds_count",
            &[(JOB_LABEL, job)],
            s.runs as f64,
        );
    }
    each(
        e,
        "volspike_job_last_duration_seconds",
        Kind::Gauge,
        "Duration of the last finished tick.",
        &|s| s.last_duration.map(|d| d.as_secs_f64()),
    );
    each(
        e,
        "volspike_job_last_run_timestamp_seconds",
        Kind::Gauge,
        "When the last tick started (funding_stream: when the connection opened).",
        &|s| s.last_run.map(epoch_seconds),
    );
    each(
        e,
        "volspike_job_next_run_timestamp_seconds",
        Kind::Gauge,
        "When the next tick is due.",
        &|s| s.next_run.map(epoch_seconds),
    );
    each(
        e,
        "volspike_job_healthy",
        Kind::Gauge,
        "1 when the job's last tick did not fail and the next is not overdue.",
        &|s| Some(f64::from(u8::from(s.healthy(now)))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_declared_once_and_samples_follow_it() {
        let ctx = crate::http::context::tests::ctx();
        ctx.board.update("liquid_universe", |s| {
            s.runs = 2;
            s.failures = 1;
            s.last_duration = Some(std::time::Duration::from_millis(1500));
            s.total_duration = std::time::Duration::from_secs(3);
        });
        ctx.requests.record("/health", 200);
        let text = render(&ctx, SystemTime::now());
        assert!(text.contains(&format!(
            "volspike_build_info{{version=\"{}\",commit=\"{}\",target=\"{}\"}} 1\n",
            crate::version::VERSION,
            crate::version::COMMIT,
            crate::version::TARGET
        )));
        assert!(text.contains("volspike_job_runs_total{volspike_job=\"liquid_universe\"} 2\n"));
        assert!(text
            .contains("volspike_job_duration_seconds_sum{volspike_job=\"liquid_universe\"} 3\n"));
        assert!(text
            .contains("volspike_job_duration_seconds_count{volspike_job=\"liquid_universe\"} 2\n"));
        assert!(text.contains("volspike_alerts_enqueued_total{type=\"volume_alert\"} 0\n"));
        assert!(text.contains("volspike_volume_alerts_oi_change_omitted_total{reason=\"budget\"} "));
        assert!(text.contains(
            "volspike_volume_alerts_oi_change_omitted_total{reason=\"stale_snapshot\"} "
        ));
        assert!(
            !text.contains("{job="),
            "a job label clashes with Prometheus's"
        );
        assert!(text.contains("\nprocess_resident_memory_bytes "));
        assert!(text.contains("\nprocess_start_time_seconds "));
        assert!(text.contains("volspike_http_requests_total{route=\"/health\",status=\"200\"} 1\n"));
        // Structure: each TYPE once; each sample's name starts with the
        // family declared last.
        let mut seen = std::collections::BTreeSet::new();
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default().to_string();
                assert!(seen.insert(name.clone()), "{name} declared twice");
                family = name;
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&family), "{line} outside {family}");
            }
        }
    }
}
