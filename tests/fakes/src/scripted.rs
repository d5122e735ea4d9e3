//! A scripted HTTP server: each answer comes from the test's closure, given
//! the request's path and query and its 0-based number. For client tests
//! that need exact bodies, statuses and headers request by request (a 429 on
//! the first call, a ban, a malformed payload, a slow answer) rather than
//! [`crate::FakeBinance`]'s market model. Every connection has its own thread
//! (so concurrency is real); each request's arrival time and the most
//! requests in flight at once are recorded.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http_server::{Handler, HttpRequest, HttpResponse, HttpServer};
use crate::sync::lock;

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: impl Into<String>) -> Reply {
        Reply::status(200, body)
    }

    /// Any status with a body.
    pub fn status(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: body.into(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Answers only after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Path and query as sent, e.g. `/fapi/v1/openInterest?symbol=BTCUSDT`.
    pub url: String,
    /// When it arrived.
    pub at: Instant,
}

/// What the server has seen so far.
#[derive(Default)]
struct Record {
    /// Every request, in arrival order.
    hits: Mutex<Vec<Hit>>,
    /// Requests being answered right now.
    in_flight: AtomicUsize,
    /// The highest `in_flight` seen.
    max_in_flight: AtomicUsize,
}

/// A running scripted server on 127.0.0.1; dropping it closes the port and
/// every connection.
pub struct ScriptedServer {
    /// The bound address.
    addr: SocketAddr,
    /// What it has seen.
    record: Arc<Record>,
    /// The listener; held for its drop.
    _server: HttpServer,
}

impl ScriptedServer {
    /// Starts on an ephemeral port, answering with `script(url, n)` where
    /// `n` counts requests from 0 in arrival order.
    pub fn start(
        script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static,
    ) -> io::Result<ScriptedServer> {
        let record = Arc::new(Record::default());
        let seen = Arc::clone(&record);
        let handler: Handler =
            Arc::new(move |request: HttpRequest| Some(answer(&seen, &script, &request)));
        let server = HttpServer::bind("127.0.0.1:0", handler)?;
        Ok(ScriptedServer {
            addr: server.local_addr(),
            record,
            _server: server,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests seen so far, in arrival order.
    pub fn hits(&self) -> Vec<Hit> {
        lock(&self.record.hits).clone()
    }

    /// The most requests that were being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.record.max_in_flight.load(Ordering::SeqCst)
    }
}

/// Records one request and builds its answer from the script.
fn answer(
    record: &Record,
    script: &(impl Fn(&str, usize) -> Reply + ?Sized),
    request: &HttpRequest,
) -> HttpResponse {
    let now = record.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    record.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let url = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    let n = {
        let mut hits = lock(&record.hits);
        hits.push(Hit {
            url: url.clone(),
            at: Instant::now(),
        });
        hits.len() - 1
    };
    let reply = script(&url, n);
    std::thread::sleep(reply.delay);
    // Leave the in-flight count before the answer is written: once the
    // client has it, it may send its next request, which must not count
    // double.
    record.in_flight.fetch_sub(1, Ordering::SeqCst);
    HttpResponse {
        status: reply.status,
        headers: reply.headers,
        body: reply.body.into_bytes(),
        stream: None,
    }
}
