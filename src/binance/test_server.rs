//! A tiny scripted HTTP server on 127.0.0.1 for the REST and universe tests
//! (the fuller fake Binance lives in tests/fakes). It answers from several
//! threads so concurrency is real, and records every request with its
//! arrival time and how many requests were in flight at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the server answers to one request.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: String,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: impl Into<String>) -> Self {
        Self::status(200, body)
    }

    /// Any status with a body.
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            body: body.into(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Answers only after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Hit {
    /// Path and query, e.g. `/fapi/v1/openInterest?symbol=BTCUSDT`.
    pub url: String,
    /// When it arrived.
    pub at: Instant,
}

/// Handler: request URL and 0-based request number → reply.
type Handler = dyn Fn(&str, usize) -> Reply + Send + Sync;

/// The running server; stops and joins its threads on drop.
pub struct TestServer {
    /// `http://127.0.0.1:port`.
    pub base_url: String,
    /// Requests seen so far.
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Highest number of requests in flight at once.
    max_in_flight: Arc<AtomicUsize>,
    /// The listener.
    server: Arc<tiny_http::Server>,
    /// Tells the worker threads to stop.
    stop: Arc<AtomicBool>,
    /// Worker threads.
    workers: Vec<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server with `threads` workers answering with `handler`.
    pub fn start(
        threads: usize,
        handler: impl Fn(&str, usize) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1:0"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let handler: Arc<Handler> = Arc::new(handler);
        let hits = Arc::new(Mutex::new(Vec::new()));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..threads)
            .map(|_| {
                let worker = Worker {
                    server: Arc::clone(&server),
                    handler: Arc::clone(&handler),
                    hits: Arc::clone(&hits),
                    in_flight: Arc::clone(&in_flight),
                    max_in_flight: Arc::clone(&max_in_flight),
                    stop: Arc::clone(&stop),
                };
                std::thread::spawn(move || worker.run())
            })
            .collect();
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            hits,
            max_in_flight,
            server,
            stop,
            workers,
        }
    }

    /// Requests seen so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("hits lock").clone()
    }

    /// Highest number of requests in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for _ in &self.workers {
            self.server.unblock();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// One answering thread.
struct Worker {
    /// The shared listener.
    server: Arc<tiny_http::Server>,
    /// The test's script.
    handler: Arc<Handler>,
    /// Requests seen so far.
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Requests being handled right now.
    in_flight: Arc<AtomicUsize>,
    /// Highest `in_flight` seen.
    max_in_flight: Arc<AtomicUsize>,
    /// Set on drop.
    stop: Arc<AtomicBool>,
}

impl Worker {
    /// Answers requests until told to stop.
    fn run(self) {
        while !self.stop.load(Ordering::SeqCst) {
            if let Ok(Some(request)) = self.server.recv_timeout(Duration::from_millis(50)) {
                self.answer(request);
            }
        }
    }

    /// Records and answers one request.
    fn answer(&self, request: tiny_http::Request) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let url = request.url().to_owned();
        let n = {
            let mut hits = self.hits.lock().expect("hits lock");
            hits.push(Hit {
                url: url.clone(),
                at: Instant::now(),
            });
            hits.len() - 1
        };
        let reply = (self.handler)(&url, n);
        std::thread::sleep(reply.delay);
        let mut response =
            tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
        for (name, value) in reply.headers {
            let header =
                tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("header");
            response = response.with_header(header);
        }
        // Leave the in-flight count before answering: once the client has the
        // answer it may send the next request, which must not count double.
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let _ = request.respond(response);
    }
}
