//! The appliance's one HTTP server (tiny_http): `/health`, the funding API,
//! the dashboard (`/`, `/api/dashboard`, `/watchlist.txt`) and `/metrics`.
//!
//! Handlers are plain functions from a request to a [`Reply`], so they are
//! unit-tested without sockets; this file owns the sockets, the worker
//! threads and the liveness beat of the "http" critical loop.
//!
//! Bounding work: tiny_http reads each connection on a thread of its own
//! internal pool and queues parsed requests without limit. One dispatcher
//! thread takes requests off that queue and hands them to a fixed number of
//! worker threads through a queue of [`MAX_QUEUED`] slots; a request that
//! finds the queue full is answered `503 {"error":"server busy"}` at once by
//! the dispatcher. So at most `workers` requests are being handled and
//! [`MAX_QUEUED`] are waiting, whatever the load; overload costs a cheap 503,
//! never unbounded memory or latency. What tiny_http does not let us bound is
//! the number of open connections (one pool thread each) and slow readers (no
//! socket timeouts): acceptable because the server listens on loopback only,
//! and a worker stuck on a client stops the "http" heartbeat, so the watchdog
//! restarts the service rather than serving nothing.

pub mod dashboard;
pub mod funding;
pub mod health;
pub mod metrics;
pub mod requests;

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::binance::governor::WeightGovernor;

use crate::backend::Outbox;
use crate::binance::Universe;
use crate::jobs::status::StatusBoard;
use crate::shutdown::Shutdown;
use crate::systemd::liveness::{Heartbeat, Liveness};

/// How long a worker waits for a request before checking shutdown and
/// beating its heartbeat.
const POLL: Duration = Duration::from_millis(500);
/// Requests waiting for a worker; beyond this, new requests get 503.
pub const MAX_QUEUED: usize = 64;
/// Longest request target (path and query) accepted.
pub const MAX_URL: usize = 128 * 1024;
/// At most one "server busy" log line per this period.
const BUSY_LOG_EVERY: Duration = Duration::from_secs(60);

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

/// A bound listener, not yet serving.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
}

impl HttpServer {
    /// Binds `addr`; failing here is failing before READY.
    pub fn bind(addr: SocketAddr) -> anyhow::Result<HttpServer> {
        // The socket systemd holds (volspike.socket), or `addr` bound here.
        let listener = crate::systemd::listen_fds::http_listener(addr)?;
        // tiny_http writes headers and body separately; with Nagle on, a body
        // over ~1 KB then waits for the client's delayed ACK (40 ms). Linux
        // copies TCP_NODELAY from the listener to every accepted socket.
        if let Err(e) = socket2::SockRef::from(&listener).set_tcp_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY on the HTTP listener; larger replies may be delayed");
        }
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| anyhow::anyhow!("cannot serve on {addr} (VOLSPIKE_HTTP_ADDR): {e}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow::anyhow!("listener on {addr} has no IP address"))?;
        Ok(HttpServer {
            server: Arc::new(server),
            addr,
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves on `workers` threads (plus one dispatcher) until shutdown.
    pub fn spawn(
        self,
        ctx: HttpContext,
        heartbeat: Heartbeat,
        shutdown: Shutdown,
        workers: usize,
    ) -> Vec<JoinHandle<()>> {
        let ctx = Arc::new(ctx);
        let (tx, rx) = mpsc::sync_channel::<tiny_http::Request>(MAX_QUEUED);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads: Vec<JoinHandle<()>> = (0..workers.max(1))
            .map(|i| {
                let rx = rx.clone();
                let ctx = ctx.clone();
                let heartbeat = heartbeat.clone();
                let shutdown = shutdown.clone();
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || work(&rx, &ctx, &heartbeat, &shutdown))
                    .expect("spawning an HTTP worker thread at start")
            })
            .collect();
        let server = self.server.clone();
        let requests = ctx.requests.clone();
        threads.push(
            std::thread::Builder::new()
                .name("http-dispatch".into())
                .spawn(move || dispatch(&server, tx, &requests, &shutdown))
                .expect("spawning the HTTP dispatcher thread at start"),
        );
        threads
    }
}

/// Moves requests from tiny_http to the workers' bounded queue, answering
/// 503 when it is full.
fn dispatch(
    server: &tiny_http::Server,
    tx: SyncSender<tiny_http::Request>,
    requests: &requests::RequestCounters,
    shutdown: &Shutdown,
) {
    let mut busy_logged: Option<Instant> = None;
    let mut busy_since_log = 0u64;
    while !shutdown.is_triggered() {
        let request = match server.recv_timeout(POLL) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                std::thread::sleep(POLL);
                continue;
            }
        };
        match tx.try_send(request) {
            Ok(()) => {}
            Err(TrySendError::Full(request)) => {
                busy_since_log += 1;
                if busy_logged.is_none_or(|t| t.elapsed() >= BUSY_LOG_EVERY) {
                    tracing::warn!(
                        shed = busy_since_log,
                        queued = MAX_QUEUED,
                        "HTTP overloaded: answering 503 to requests beyond the queue"
                    );
                    busy_logged = Some(Instant::now());
                    busy_since_log = 0;
                }
                requests.record(requests::route_template(request.url()), 503);
                respond(request, Reply::error(503, "server busy"));
            }
            Err(TrySendError::Disconnected(request)) => {
                requests.record(requests::route_template(request.url()), 503);
                respond(request, Reply::error(503, "shutting down"));
                return;
            }
        }
    }
}

/// One worker: takes queued requests, routes, answers.
fn work(
    rx: &Mutex<Receiver<tiny_http::Request>>,
    ctx: &HttpContext,
    heartbeat: &Heartbeat,
    shutdown: &Shutdown,
) {
    while !shutdown.is_triggered() {
        heartbeat.beat_blocking();
        let next = {
            let rx = match rx.lock() {
                Ok(rx) => rx,
                Err(poisoned) => poisoned.into_inner(),
            };
            rx.recv_timeout(POLL)
        };
        let request = match next {
            Ok(request) => request,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let reply = route(ctx, request.method().as_str(), request.url());
        ctx.requests
            .record(requests::route_template(request.url()), reply.status);
        respond(request, reply);
    }
}

/// Writes `reply`; a client gone meanwhile is only noted.
fn respond(request: tiny_http::Request, reply: Reply) {
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes());
    let length = reply.body.len();
    let response = tiny_http::Response::new(
        tiny_http::StatusCode(reply.status),
        header.into_iter().collect(),
        Cursor::new(reply.body),
        Some(length),
        None,
    )
    // Always Content-Length: the length is known, and chunking a prepared
    // 100 KB snapshot only costs the client work.
    .with_chunked_threshold(usize::MAX);
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "HTTP client disconnected before the reply was sent");
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
