//! The appliance's one HTTP server: `/health`, the funding API, the
//! dashboard (`/`, `/api/dashboard`, `/watchlist.txt`) and `/metrics`.
//!
//! Handlers are plain functions from a request to a [`Reply`], so they are
//! unit-tested without sockets; [`server`] owns the sockets, the bounds on
//! connections, heads, time and memory, the handler threads and the
//! liveness beat of the "http" critical loop (its accept loop).

pub mod dashboard;
pub mod funding;
pub mod health;
pub mod metrics;
pub mod requests;
pub mod server;

pub use server::HttpServer;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::binance::governor::WeightGovernor;

use crate::backend::Outbox;
use crate::binance::Universe;
use crate::jobs::status::StatusBoard;
use crate::systemd::liveness::Liveness;

/// Requests waiting for a handler thread; beyond this, new requests get 503.
pub const MAX_QUEUED: usize = 64;
/// Longest request target (path and query) accepted: the server refuses a
/// longer request line while reading it; this guards callers of [`route`].
pub const MAX_URL: usize = server::limits::MAX_REQUEST_LINE;

/// An answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The body; shared so prepared snapshots are sent without a copy.
    pub body: Arc<[u8]>,
}

impl Reply {
    /// A JSON reply.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply {
                status,
                content_type: "application/json",
                body: body.into(),
            },
            Err(e) => Reply::error(500, &format!("cannot encode reply: {e}")),
        }
    }

    /// A JSON error: `{"error": "..."}`.
    pub fn error(status: u16, message: &str) -> Reply {
        let body = serde_json::json!({ "error": message }).to_string();
        Reply {
            status,
            content_type: "application/json",
            body: body.into_bytes().into(),
        }
    }
}

/// What handlers read: the appliance's shared state.
#[derive(Debug, Clone)]
pub struct HttpContext {
    /// When the process started, for uptime.
    pub started: Instant,
    /// Every job's record.
    pub board: StatusBoard,
    /// Critical loops' liveness.
    pub liveness: Liveness,
    /// `run --local`: nothing is posted to a backend.
    pub local: bool,
    /// The outbox, for delivery stats; `None` in tests that do not need it.
    pub outbox: Option<Outbox>,
    /// The Binance weight governor, for its state; `None` in tests.
    pub governor: Option<Arc<WeightGovernor>>,
    /// The funding cache and stream counters.
    pub funding: funding::FundingApi,
    /// The universe list, peeked (never fetched) by the dashboard to keep
    /// its table to USDT perpetuals; `None` in tests.
    pub universe: Option<Arc<Universe>>,
    /// Requests answered by route and status, for `/metrics`.
    pub requests: requests::RequestCounters,
    /// The server's limits and what they did, for `/health` and `/metrics`.
    pub http: server::limits::HttpStats,
}

/// Routes one request.
pub fn route(ctx: &HttpContext, method: &str, url: &str) -> Reply {
    if method != "GET" && method != "HEAD" {
        return Reply::error(405, "only GET is supported");
    }
    if url.len() > MAX_URL {
        return Reply::error(
            414,
            &format!("request target too long (limit {MAX_URL} bytes)"),
        );
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    match path {
        "/" | "/index.html" => dashboard::page(),
        "/api/dashboard" => dashboard::api(ctx, SystemTime::now()),
        "/watchlist.txt" => dashboard::watchlist(ctx, SystemTime::now()),
        "/metrics" => metrics::handle(ctx),
        "/health" => health::handle(ctx),
        p if p == "/funding" || p.starts_with("/funding/") => {
            funding::route(&ctx.funding, p, query, SystemTime::now())
        }
        _ => Reply::error(404, "no such route"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jobs::status::StatusBoard;
    use crate::systemd::liveness::Liveness;

    /// A context with nothing running: what handler tests start from.
    pub(crate) fn ctx() -> HttpContext {
        HttpContext {
            started: Instant::now(),
            board: StatusBoard::default(),
            liveness: Liveness::new(None),
            local: true,
            outbox: None,
            governor: None,
            funding: funding::FundingApi::default(),
            universe: None,
            requests: requests::RequestCounters::default(),
            http: server::limits::HttpStats::default(),
        }
    }

    #[test]
    fn routing_and_limits() {
        let ctx = ctx();
        assert_eq!(route(&ctx, "POST", "/funding").status, 405);
        assert_eq!(route(&ctx, "GET", "/nowhere").status, 404);
        let long = format!("/funding/{}", "A".repeat(MAX_URL));
        assert_eq!(route(&ctx, "GET", &long).status, 414);
        // No stream data yet: the funding routes answer 503, not 404.
        assert_eq!(route(&ctx, "GET", "/funding").status, 503);
        assert_eq!(route(&ctx, "GET", "/funding/BTCUSDT?x=1").status, 503);
        assert_eq!(route(&ctx, "GET", "/funding/health").status, 503);
        assert_eq!(route(&ctx, "HEAD", "/health").status, 200);
        // The dashboard answers even before any data.
        assert_eq!(route(&ctx, "GET", "/").status, 200);
        assert_eq!(route(&ctx, "GET", "/api/dashboard").status, 200);
        assert_eq!(route(&ctx, "GET", "/watchlist.txt").status, 200);
        assert_eq!(route(&ctx, "GET", "/metrics").status, 200);
    }
}
