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

pub mod encode;
pub(crate) mod process;

use std::time::SystemTime;

use encode::{Encoder, Kind};

use super::context::HttpContext;
use super::reply::Reply;
use crate::backend::Kind as PostKind;
use crate::clock::unix_ms;
use crate::jobs::funding_stream::StreamState;

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
    alerts_and_delivery(&mut e, ctx);
    websocket(&mut e, ctx, now);
    binance(&mut e, ctx);
    binance_bodies(&mut e);
    http(&mut e, ctx);
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

fn alerts_and_delivery(e: &mut Encoder, ctx: &HttpContext) {
    let enqueued = ctx
        .outbox
        .as_ref()
        .map(|o| o.enqueued_by_kind())
        .unwrap_or_default();
    let count = |kind: PostKind| enqueued.get(kind.as_str()).copied().unwrap_or(0) as f64;
    // Enqueued, not sent: whether a backend accepted them is
    // volspike_outbox_delivered_total, per backend.
    e.family(
        "volspike_alerts_enqueued_total",
        Kind::Counter,
        "Alerts accepted by the outbox (queued for the backends, or logged with --local), by type; duplicates not counted.",
    );
    for kind in PostKind::ALL.into_iter().filter(|k| k.is_alert()) {
        e.sample(
            "volspike_alerts_enqueued_total",
            &[("type", kind.as_str())],
            count(kind),
        );
    }
    let omitted = crate::jobs::oi_change_omissions::totals();
    e.family(
        "volspike_volume_alerts_oi_change_omitted_total",
        Kind::Counter,
        "Volume alerts sent without oiChange: the hour-start lookup missed the tick's budget, or the backend's snapshot was too far from the hour start.",
    );
    for (reason, count) in [
        ("budget", omitted.past_budget),
        ("stale_snapshot", omitted.stale_snapshot),
    ] {
        e.sample(
            "volspike_volume_alerts_oi_change_omitted_total",
            &[("reason", reason)],
            count as f64,
        );
    }
    let stats = ctx.outbox.as_ref().map(|o| o.stats()).unwrap_or_default();
    // Counted where the outbox records the backend's 2xx: an alert sent to
    // two backends counts once on each.
    e.family(
        "volspike_alerts_delivered_total",
        Kind::Counter,
        "Alerts a backend accepted (2xx), by backend and type.",
    );
    for (backend, s) in &stats {
        for kind in PostKind::ALL.into_iter().filter(|k| k.is_alert()) {
            let delivered = s.delivered_by_kind.get(kind.as_str()).copied().unwrap_or(0);
            e.sample(
                "volspike_alerts_delivered_total",
                &[("backend", backend), ("type", kind.as_str())],
                delivered as f64,
            );
        }
    }
    e.family(
        "volspike_posts_enqueued_total",
        Kind::Counter,
        "Posts of every kind accepted by the outbox; duplicates not counted.",
    );
    for kind in PostKind::ALL {
        e.sample(
            "volspike_posts_enqueued_total",
            &[("kind", kind.as_str())],
            count(kind),
        );
    }
    type Pick = fn(&crate::backend::DeliveryStats) -> Option<f64>;
    let families: [(&str, Kind, &str, Pick); 13] = [
        (
            "volspike_outbox_pending",
            Kind::Gauge,
            "Posts waiting for delivery (the undelivered backlog), per backend.",
            |s| Some(s.pending as f64),
        ),
        (
            // Absent when nothing is pending: zero would read 1970.
            "volspike_outbox_oldest_pending_timestamp_seconds",
            Kind::Gauge,
            "When the oldest undelivered post was enqueued, seconds since the epoch (absent when none), per backend.",
            |s| s.oldest_pending_enqueued_ms.map(|ms| ms as f64 / 1000.0),
        ),
        (
            "volspike_outbox_delivered_total",
            Kind::Counter,
            "Posts the backend accepted.",
            |s| Some(s.delivered as f64),
        ),
        (
            "volspike_outbox_retried_total",
            Kind::Counter,
            "Delivery attempts that failed and will be retried.",
            |s| Some(s.retried as f64),
        ),
        (
            "volspike_outbox_dropped_total",
            Kind::Counter,
            "Posts set aside as dead letters (refused with a 4xx, or a 5xx repeated while others went through).",
            |s| Some(s.dropped as f64),
        ),
        (
            "volspike_outbox_shed_total",
            Kind::Counter,
            "Open-interest sample batches shed because the queue was full.",
            |s| Some(s.shed as f64),
        ),
        (
            "volspike_outbox_refused_total",
            Kind::Counter,
            "Posts refused because the queue was full of alerts.",
            |s| Some(s.refused as f64),
        ),
        (
            "volspike_outbox_dead_letters",
            Kind::Gauge,
            "Refused posts kept in the dead-letter folder (volspike outbox list), per backend.",
            |s| Some(s.dead_letters as f64),
        ),
        (
            "volspike_outbox_dead_letters_max",
            Kind::Gauge,
            "Most dead letters kept per backend (VOLSPIKE_DEAD_LETTERS_MAX); the oldest are deleted beyond it.",
            |s| Some(s.dead_letters_max as f64),
        ),
        (
            "volspike_outbox_dead_letters_deleted_total",
            Kind::Counter,
            "Dead letters deleted because the folder was at its cap.",
            |s| Some(s.dead_letters_deleted as f64),
        ),
        (
            "volspike_outbox_coalesced_total",
            Kind::Counter,
            "Latest-state posts (universe, update-checked) replaced by a newer one before sending.",
            |s| Some(s.coalesced as f64),
        ),
        (
            "volspike_outbox_paused",
            Kind::Gauge,
            "1 while the backend rejects the API key (401/403) and delivery to it waits.",
            |s| Some(f64::from(u8::from(s.paused.is_some()))),
        ),
        (
            "volspike_outbox_disk_error",
            Kind::Gauge,
            "1 while the state directory refuses the outbox's writes.",
            |s| Some(f64::from(u8::from(s.disk_error.is_some()))),
        ),
    ];
    for (name, kind, help, pick) in families {
        e.family(name, kind, help);
        for (backend, s) in &stats {
            if let Some(v) = pick(s) {
                e.sample(name, &[("backend", backend)], v);
            }
        }
    }
}

fn websocket(e: &mut Encoder, ctx: &HttpContext, now: SystemTime) {
    let stream = &ctx.funding.stream;
    e.family(
        "volspike_websocket_state",
        Kind::Gauge,
        "1 for the funding WebSocket's current state.",
    );
    for (state, word) in [
        (StreamState::Disabled, "disabled"),
        (StreamState::Connecting, "connecting"),
        (StreamState::Connected, "connected"),
        (StreamState::Backoff, "backoff"),
        (StreamState::Stopped, "stopped"),
    ] {
        e.sample(
            "volspike_websocket_state",
            &[("state", word)],
            f64::from(u8::from(stream.state() == state)),
        );
    }
    e.single(
        "volspike_websocket_messages_total",
        Kind::Counter,
        "Data frames received on the funding WebSocket.",
        stream.messages_received() as f64,
    );
    e.single(
        "volspike_websocket_garbage_frames_total",
        Kind::Counter,
        "Unreadable frames skipped.",
        stream.garbage_frames() as f64,
    );
    e.single(
        "volspike_websocket_reconnects_total",
        Kind::Counter,
        "Connection attempts after the first.",
        stream.reconnect_attempts() as f64,
    );
    // Absent (not zero) before the first message: zero would read 1970.
    if let Some(ms) = stream.last_message_ms() {
        e.single(
            "volspike_websocket_last_message_timestamp_seconds",
            Kind::Gauge,
            "When the last data frame arrived, seconds since the epoch.",
            ms as f64 / 1000.0,
        );
    }
    let now_ms = unix_ms(now);
    let cache = &ctx.funding.cache;
    e.single(
        "volspike_funding_symbols",
        Kind::Gauge,
        "Symbols with funding data in the cache.",
        cache.funding_len() as f64,
    );
    let updated_at = |age: std::time::Duration| {
        now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)) as f64 / 1000.0
    };
    if let Some(age) = cache.oldest_age(now) {
        e.single(
            "volspike_funding_oldest_update_timestamp_seconds",
            Kind::Gauge,
            "When the least recently updated symbol was last updated, seconds since the epoch.",
            updated_at(age),
        );
    }
    e.single(
        "volspike_funding_evicted_symbols_total",
        Kind::Counter,
        "Symbols dropped from the funding cache: no longer listed by Binance (once silent past the stale limit) or silent for an hour.",
        cache.evicted_total() as f64,
    );
    if let Some(age) = cache.newest_age(now) {
        e.single(
            "volspike_funding_newest_update_timestamp_seconds",
            Kind::Gauge,
            "When the most recently updated symbol was last updated, seconds since the epoch.",
            updated_at(age),
        );
    }
}

fn binance(e: &mut Encoder, ctx: &HttpContext) {
    let Some(status) = ctx.governor.as_ref().map(|g| g.status()) else {
        return;
    };
    e.single(
        "volspike_binance_weight_used",
        Kind::Gauge,
        "Binance request weight counted in the current window (max of own count and X-MBX-USED-WEIGHT-1M).",
        f64::from(status.used_in_window),
    );
    e.single(
        "volspike_binance_weight_ceiling",
        Kind::Gauge,
        "The weight this appliance allows itself per window.",
        f64::from(status.ceiling),
    );
    e.single(
        "volspike_binance_weight_limit",
        Kind::Gauge,
        "Binance's weight limit per window.",
        f64::from(status.limit),
    );
    e.single(
        "volspike_binance_weight_reserved",
        Kind::Gauge,
        "Weight per window reserved for open_interest's polls; the volume sweep leaves it free.",
        f64::from(status.reserved_per_window),
    );
    e.single(
        "volspike_binance_weight_sweep_cap",
        Kind::Gauge,
        "Most weight the volume sweep may take per window; the rest of it waits for the next window.",
        f64::from(status.yielding_cap),
    );
    e.single(
        "volspike_binance_weight_queued",
        Kind::Gauge,
        "Callers waiting for weight now.",
        status.queued as f64,
    );
    e.single(
        "volspike_binance_requests_total",
        Kind::Counter,
        "Binance REST requests granted weight.",
        status.requests_total as f64,
    );
    e.single(
        "volspike_binance_rate_limited_total",
        Kind::Counter,
        "429/418 answers from Binance.",
        status.rate_limited_total as f64,
    );
    e.single(
        "volspike_binance_pauses_total",
        Kind::Counter,
        "Pauses after a 429/418.",
        status.pauses_total as f64,
    );
}

fn http(e: &mut Encoder, ctx: &HttpContext) {
    e.family(
        "volspike_http_requests_total",
        Kind::Counter,
        "HTTP requests answered, by route template and status.",
    );
    for ((route, status), count) in ctx.requests.snapshot() {
        e.sample(
            "volspike_http_requests_total",
            &[("route", route), ("status", &status.to_string())],
            count as f64,
        );
    }
    let server = ctx.http.view();
    let limits = server.limits;
    let families: [(&str, Kind, &str, f64); 15] = [
        (
            "volspike_http_connections_open",
            Kind::Gauge,
            "HTTP connections open now.",
            server.open_connections as f64,
        ),
        (
            "volspike_http_connections_max",
            Kind::Gauge,
            "Connection cap (sized under the file-descriptor limit).",
            limits.max_connections as f64,
        ),
        (
            "volspike_http_request_line_max_bytes",
            Kind::Gauge,
            "Longest request line accepted (414 beyond).",
            limits.max_request_line_bytes as f64,
        ),
        (
            "volspike_http_head_max_bytes",
            Kind::Gauge,
            "Longest request head accepted (431 beyond).",
            limits.max_head_bytes as f64,
        ),
        (
            "volspike_http_head_timeout_seconds",
            Kind::Gauge,
            "Time a client has to send a request head.",
            limits.head_timeout_seconds as f64,
        ),
        (
            "volspike_http_write_timeout_seconds",
            Kind::Gauge,
            "Time a reply may take to be written.",
            limits.write_timeout_seconds as f64,
        ),
        (
            "volspike_http_drain_grace_seconds",
            Kind::Gauge,
            "At shutdown, time an idle connection waits for a request already sent.",
            limits.drain_grace_seconds as f64,
        ),
        (
            "volspike_http_drain_limit_seconds",
            Kind::Gauge,
            "At shutdown, time the server waits for its connections to finish.",
            limits.drain_limit_seconds as f64,
        ),
        (
            "volspike_http_first_data_wait_seconds",
            Kind::Gauge,
            "At start under socket activation, longest wait for funding data before accepting (0: none).",
            limits.first_data_wait_seconds as f64,
        ),
        (
            "volspike_http_connections_evicted_total",
            Kind::Counter,
            "Connections waiting on their client closed to make room at the cap.",
            server.evicted as f64,
        ),
        (
            "volspike_http_connections_refused_total",
            Kind::Counter,
            "Connections answered 503 at the cap with none evictable.",
            server.refused as f64,
        ),
        (
            "volspike_http_head_timeouts_total",
            Kind::Counter,
            "Connections closed: head not received in time.",
            server.head_timeouts as f64,
        ),
        (
            "volspike_http_write_timeouts_total",
            Kind::Counter,
            "Connections closed: reply not read in time.",
            server.write_timeouts as f64,
        ),
        (
            "volspike_http_rejected_heads_total",
            Kind::Counter,
            "Request heads refused (400, 414, 431, 505).",
            server.rejected_heads as f64,
        ),
        (
            "volspike_http_accept_errors_total",
            Kind::Counter,
            "Failed accept calls (e.g. out of file descriptors).",
            server.accept_errors as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        e.single(name, kind, help, value);
    }
}

fn binance_bodies(e: &mut Encoder) {
    let bodies = crate::binance::rest::body_limits();
    e.single(
        "volspike_binance_body_cap_bytes",
        Kind::Gauge,
        "Largest Binance answer read (exchangeInfo's cap, counted after gzip).",
        bodies.largest_cap_bytes as f64,
    );
    e.single(
        "volspike_binance_body_in_flight_max_bytes",
        Kind::Gauge,
        "Binance answer bytes all calls in flight may hold at once.",
        bodies.in_flight_bytes as f64,
    );
    e.single(
        "volspike_binance_bodies_cut_total",
        Kind::Counter,
        "Binance answers cut at their cap (the call failed).",
        bodies.cut_total as f64,
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
