//! The appliance's one HTTP server (tiny_http): `/health` now, and the
//! funding API, dashboard and metrics as they arrive.
//!
//! Handlers are plain functions from a request to a [`Reply`], so they are
//! unit-tested without sockets; this file owns the sockets, the worker
//! threads and the liveness beat of the "http" critical loop.

pub mod health;

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backend::Outbox;
use crate::jobs::status::StatusBoard;
use crate::shutdown::Shutdown;
use crate::systemd::liveness::{Heartbeat, Liveness};

/// How long a worker waits for a request before checking shutdown and
/// beating its heartbeat.
const POLL: Duration = Duration::from_millis(500);

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
}

/// Routes one request.
pub fn route(ctx: &HttpContext, method: &str, url: &str) -> Reply {
    if method != "GET" && method != "HEAD" {
        return Reply::error(405, "only GET is supported");
    }
    let path = url.split('?').next().unwrap_or("");
    match path {
        "/health" => health::handle(ctx),
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
        let server = tiny_http::Server::http(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (VOLSPIKE_HTTP_ADDR): {e}"))?;
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

    /// Serves on `workers` threads until shutdown.
    pub fn spawn(
        self,
        ctx: HttpContext,
        heartbeat: Heartbeat,
        shutdown: Shutdown,
        workers: usize,
    ) -> Vec<JoinHandle<()>> {
        let ctx = Arc::new(ctx);
        (0..workers.max(1))
            .map(|i| {
                let server = self.server.clone();
                let ctx = ctx.clone();
                let heartbeat = heartbeat.clone();
                let shutdown = shutdown.clone();
                std::thread::Builder::new()
                    .name(format!("http-{i}"))
                    .spawn(move || serve(&server, &ctx, &heartbeat, &shutdown))
                    .expect("spawning an HTTP worker thread at start")
            })
            .collect()
    }
}

fn serve(
    server: &tiny_http::Server,
    ctx: &HttpContext,
    heartbeat: &Heartbeat,
    shutdown: &Shutdown,
) {
    while !shutdown.is_triggered() {
        heartbeat.beat_blocking();
        let request = match server.recv_timeout(POLL) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "HTTP accept failed");
                std::thread::sleep(POLL);
                continue;
            }
        };
        let reply = route(ctx, request.method().as_str(), request.url());
        let header =
            tiny_http::Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes());
        let length = reply.body.len();
        let response = tiny_http::Response::new(
            tiny_http::StatusCode(reply.status),
            header.into_iter().collect(),
            Cursor::new(reply.body),
            Some(length),
            None,
        );
        if let Err(e) = request.respond(response) {
            // The client went away mid-answer; nothing to do but note it.
            tracing::debug!(error = %e, "HTTP client disconnected before the reply was sent");
        }
    }
}
