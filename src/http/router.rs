//! Which handler answers which request: methods, the target-length guard
//! and the path table. Handlers are plain functions from a request to a
//! [`Reply`]; the server calls [`route`] on its handler threads.

use std::time::SystemTime;

use super::context::HttpContext;
use super::reply::Reply;
use super::{dashboard, funding, health, metrics};

/// Longest request target (path and query) accepted: the server refuses a
/// longer request line while reading it; this guards callers of [`route`].
pub const MAX_URL: usize = super::server::limits::MAX_REQUEST_LINE;

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
mod tests {
    use super::*;
    use crate::http::context::tests::ctx;

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
