//! `/metrics` section about the HTTP server itself: requests answered, the
//! server's limits and what they did.

use super::encode::{Encoder, Kind};
use crate::http::context::HttpContext;

/// Requests answered by route and status; the server's limits and what they did.
pub(super) fn requests_and_limits(e: &mut Encoder, ctx: &HttpContext) {
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
    #[rustfmt::skip]
    let families: [(&str, Kind, &str, f64); 15] = [
        ("volspike_http_connections_open", Kind::Gauge, "HTTP connections open now.", server.open_connections as f64),
        ("volspike_http_connections_max", Kind::Gauge, "Connection cap (sized under the file-descriptor limit).", limits.max_connections as f64),
        ("volspike_http_request_line_max_bytes", Kind::Gauge, "Longest request line accepted (414 beyond).", limits.max_request_line_bytes as f64),
        ("volspike_http_head_max_bytes", Kind::Gauge, "Longest request head accepted (431 beyond).", limits.max_head_bytes as f64),
        ("volspike_http_head_timeout_seconds", Kind::Gauge, "Time a client has to send a request head.", limits.head_timeout_seconds as f64),
        ("volspike_http_write_timeout_seconds", Kind::Gauge, "Time a reply may take to be written.", limits.write_timeout_seconds as f64),
        ("volspike_http_drain_grace_seconds", Kind::Gauge, "At shutdown, time an idle connection waits for a request already sent.", limits.drain_grace_seconds as f64),
        ("volspike_http_drain_limit_seconds", Kind::Gauge, "At shutdown, time the server waits for its connections to finish.", limits.drain_limit_seconds as f64),
        ("volspike_http_first_data_wait_seconds", Kind::Gauge, "At start under socket activation, longest wait for funding data before accepting (0: none).", limits.first_data_wait_seconds as f64),
        ("volspike_http_connections_evicted_total", Kind::Counter, "Connections waiting on their client closed to make room at the cap.", server.evicted as f64),
        ("volspike_http_connections_refused_total", Kind::Counter, "Connections answered 503 at the cap with none evictable.", server.refused as f64),
        ("volspike_http_head_timeouts_total", Kind::Counter, "Connections closed: head not received in time.", server.head_timeouts as f64),
        ("volspike_http_write_timeouts_total", Kind::Counter, "Connections closed: reply not read in time.", server.write_timeouts as f64),
        ("volspike_http_rejected_heads_total", Kind::Counter, "Request heads refused (400, 414, 431, 505).", server.rejected_heads as f64),
        ("volspike_http_accept_errors_total", Kind::Counter, "Failed accept calls (e.g. out of file descriptors).", server.accept_errors as f64),
    ];
    e.singles(families);
}
