//! The fake VolSpike backend: records every request and answers the routes of
//! `docs/backend.md` with their documented success bodies.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use crate::http_server::{Handler, HttpRequest, HttpResponse, HttpServer};
use crate::http_util::{json_response, parse_query, query_value};
use crate::sync::{lock, millis};

/// Prefix of the routes that take the key as `apiKey` (query or JSON body).
const USER_ALERTS_PREFIX: &str = "/api/user-alerts-trigger/";
/// Required fields of a volume alert (`400 Invalid alert data` when missing).
const VOLUME_ALERT_REQUIRED: [&str; 8] = [
    "symbol",
    "asset",
    "currentVolume",
    "previousVolume",
    "volumeRatio",
    "message",
    "timestamp",
    "hourTimestamp",
];
/// Required fields of a user-alert trigger.
const TRIGGER_REQUIRED: [&str; 5] = [
    "alertId",
    "symbol",
    "currentValue",
    "previousValue",
    "crossedUp",
];

/// One request as the fake backend recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path without the query string, e.g. `/api/volume-alerts/ingest`.
    pub path: String,
    /// Decoded query parameters, in order.
    pub query: Vec<(String, String)>,
    /// Headers in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body as text (invalid UTF-8 replaced).
    pub body_raw: String,
    /// Body parsed as JSON; `None` when empty or not JSON.
    pub json: Option<Value>,
    /// When the request arrived.
    pub received_at: SystemTime,
    /// Status code answered.
    pub status: u16,
}

impl BackendRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// First value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        query_value(&self.query, name)
    }

    /// The request as one JSON object: `method`, `path`, `query` (object of
    /// first values), `headers` (object), `body` (parsed JSON, else the raw
    /// text), `status`, `received_at_ms`.
    pub fn to_json(&self) -> Value {
        let pairs_to_object = |pairs: &[(String, String)]| {
            let mut map = Map::new();
            for (name, value) in pairs {
                map.entry(name.clone())
                    .or_insert_with(|| Value::String(value.clone()));
            }
            Value::Object(map)
        };
        json!({
            "method": self.method,
            "path": self.path,
            "query": pairs_to_object(&self.query),
            "headers": pairs_to_object(&self.headers),
            "body": self.json.clone().unwrap_or_else(|| Value::String(self.body_raw.clone())),
            "status": self.status,
            "received_at_ms": millis(self.received_at),
        })
    }
}

/// A running fake backend. Dropping it closes the port and every connection.
///
/// Authentication is off until [`FakeBackend::expect_api_key`]; `GET /health`
/// and `GET /api/market/open-interest/liquid-universe` are public.
pub struct FakeBackend {
    addr: SocketAddr,
    state: Arc<BackendState>,
    server: Mutex<Option<HttpServer>>,
}

impl FakeBackend {
    /// Starts on 127.0.0.1, ephemeral port.
    pub fn start() -> io::Result<FakeBackend> {
        FakeBackend::start_on("127.0.0.1:0")
    }

    /// Starts on `addr` (e.g. `127.0.0.1:8080`).
    pub fn start_on(addr: &str) -> io::Result<FakeBackend> {
        let state = Arc::new(BackendState::default());
        let server = HttpServer::bind(addr, handler(&state))?;
        Ok(FakeBackend {
            addr: server.local_addr(),
            state,
            server: Mutex::new(Some(server)),
        })
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request recorded so far, in answer order.
    pub fn requests(&self) -> Vec<BackendRequest> {
        lock(&self.state.requests).clone()
    }

    /// The recorded requests to `path` (exact match, query excluded).
    pub fn requests_to(&self, path: &str) -> Vec<BackendRequest> {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Polls until at least `n` requests to `path` were recorded or `timeout`
    /// passed; returns the requests to `path` recorded by then.
    pub fn wait_for_requests(
        &self,
        path: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<BackendRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.requests_to(path);
            if found.len() >= n || Instant::now() >= deadline {
                return found;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        lock(&self.state.requests).clear();
    }

    /// The next `n` requests answer `status` with `{"error":"..."}` (they
    /// are recorded). Replaces any earlier setting.
    pub fn fail_next(&self, n: usize, status: u16) {
        *lock(&self.state.failures) = (n, status);
    }

    /// Down: the listener is closed (connections are refused) and every open
    /// connection is shut down; nothing is recorded. Up: listens on the same
    /// port again.
    ///
    /// # Panics
    /// If the port cannot be bound again within 5 s (taken by another process).
    pub fn set_down(&self, down: bool) {
        let mut server = lock(&self.server);
        self.state.down.store(down, Ordering::SeqCst);
        if down {
            if let Some(mut running) = server.take() {
                running.shutdown();
            }
        } else if server.is_none() {
            *server = Some(rebind(&self.addr.to_string(), &self.state));
        }
    }

    /// From now on a POST to `path` whose JSON body has `field` equal to
    /// `value` answers `status` (recorded, not stored): one refused post
    /// among others. Rules add up; the first match wins.
    pub fn fail_when(&self, path: &str, field: &str, value: Value, status: u16) {
        lock(&self.state.poison).push(PoisonRule {
            path: path.to_string(),
            field: field.to_string(),
            value,
            status,
        });
    }

    /// From now on a share (0..=1) of the POSTs are answered late: stored
    /// (recorded, and listed by the read routes) at once, answered after a
    /// delay drawn evenly from `min..=max`. A client that gives up or dies
    /// meanwhile never learns that the backend has the post.
    pub fn slow_acks(&self, share: f64, min: Duration, max: Duration) {
        *lock(&self.state.slow_acks) = Some((share, min, max));
    }

    /// From now on every `method` `path` request is answered `delay` late
    /// (a slow or hanging backend for one route); `Duration::ZERO` undoes it.
    pub fn delay_route(&self, method: &str, path: &str, delay: Duration) {
        lock(&self.state.route_delays)
            .insert((method.to_ascii_uppercase(), path.to_string()), delay);
    }

    /// From now on `method` `path` answers `status` with `body` (after the
    /// failure and key checks). Overrides the default answer.
    pub fn set_json(&self, method: &str, path: &str, status: u16, body: Value) {
        lock(&self.state.canned).insert(
            (method.to_ascii_uppercase(), path.to_string()),
            (status, body),
        );
    }

    /// From now on the key must equal `key` (`X-API-Key` header; `apiKey`
    /// query parameter or JSON body field for `/api/user-alerts-trigger/*`),
    /// else `401 {"error":"Unauthorized"}` (still recorded).
    pub fn expect_api_key(&self, key: &str) {
        *lock(&self.state.api_key) = Some(key.to_string());
    }

    /// Appends every request recorded from now on to `path`, one
    /// [`BackendRequest::to_json`] line each, flushed per line.
    pub fn log_to(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        *lock(&self.state.log) = Some(file);
        Ok(())
    }
}

fn handler(state: &Arc<BackendState>) -> Handler {
    let state = Arc::clone(state);
    Arc::new(move |req| state.handle(req))
}

fn rebind(addr: &str, state: &Arc<BackendState>) -> HttpServer {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match HttpServer::bind(addr, handler(state)) {
            Ok(server) => return server,
            Err(e) if Instant::now() >= deadline => {
                panic!("fake backend: cannot listen on {addr} again: {e}")
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A POST refused because of what its body holds.
struct PoisonRule {
    /// Route.
    path: String,
    /// Body field to compare.
    field: String,
    /// The value that is refused.
    value: Value,
    /// Status answered.
    status: u16,
}

/// Shared state behind the handler.
#[derive(Default)]
struct BackendState {
    /// Refusals by body content.
    poison: Mutex<Vec<PoisonRule>>,
    /// (share, min, max) of late answers to POSTs.
    slow_acks: Mutex<Option<(f64, Duration, Duration)>>,
    /// State of the draw for late answers (xorshift).
    draw: AtomicU64,
    /// Per-route answer delays.
    route_delays: Mutex<HashMap<(String, String), Duration>>,
    requests: Mutex<Vec<BackendRequest>>,
    /// (remaining, status) of scripted failures.
    failures: Mutex<(usize, u16)>,
    canned: Mutex<HashMap<(String, String), (u16, Value)>>,
    api_key: Mutex<Option<String>>,
    down: AtomicBool,
    next_id: AtomicU64,
    log: Mutex<Option<File>>,
}

impl BackendState {
    fn handle(&self, req: HttpRequest) -> Option<HttpResponse> {
        if self.down.load(Ordering::SeqCst) {
            return None;
        }
        let query = parse_query(&req.query);
        let body_raw = String::from_utf8_lossy(&req.body).into_owned();
        let json: Option<Value> = serde_json::from_str(&body_raw).ok();
        let (status, body) = self.answer(&req, &query, json.as_ref());
        let record = BackendRequest {
            method: req.method,
            path: req.path,
            query,
            headers: req.headers,
            body_raw,
            json,
            received_at: req.received_at,
            status,
        };
        if let Some(file) = lock(&self.log).as_mut() {
            // A full disk must not take the fake down; the test sees the gap.
            let _ = writeln!(file, "{}", record.to_json()).and_then(|()| file.flush());
        }
        let is_post = record.method == "POST";
        let route_delay = lock(&self.route_delays)
            .get(&(record.method.clone(), record.path.clone()))
            .copied();
        lock(&self.requests).push(record);
        if let Some(delay) = route_delay {
            thread::sleep(delay);
        }
        if is_post {
            if let Some(delay) = self.ack_delay() {
                thread::sleep(delay);
            }
        }
        Some(json_response(status, &body))
    }

    /// How late to answer this POST, per [`FakeBackend::slow_acks`].
    fn ack_delay(&self) -> Option<Duration> {
        let (share, min, max) = (*lock(&self.slow_acks))?;
        let mut x = self.draw.load(Ordering::SeqCst);
        if x == 0 {
            x = millis(SystemTime::now()).unsigned_abs() | 1;
        }
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let late = next() < share;
        let fraction = next();
        self.draw.store(x, Ordering::SeqCst);
        late.then(|| min + (max.saturating_sub(min)).mul_f64(fraction))
    }

    /// The volume alerts stored so far, newest first, as the read route lists them.
    fn stored_volume_alerts(&self) -> Vec<Value> {
        let requests = lock(&self.requests);
        requests
            .iter()
            .rev()
            .filter(|r| {
                r.method == "POST" && r.path == "/api/volume-alerts/ingest" && r.status == 200
            })
            .filter_map(|r| r.json.clone())
            .collect()
    }

    fn take_failure(&self) -> Option<u16> {
        let mut failures = lock(&self.failures);
        if failures.0 == 0 {
            return None;
        }
        failures.0 -= 1;
        Some(failures.1)
    }

    fn next_id(&self) -> String {
        (self.next_id.fetch_add(1, Ordering::SeqCst) + 1).to_string()
    }

    fn answer(
        &self,
        req: &HttpRequest,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> (u16, Value) {
        if let Some(status) = self.take_failure() {
            return (
                status,
                json!({"error": format!("Injected failure ({status})")}),
            );
        }
        let method = req.method.as_str();
        let path = req.path.as_str();
        if method == "POST" && body.is_none() {
            return (400, json!({"error": "Invalid JSON body"}));
        }
        if !self.authorized(req, query, body) {
            return (401, json!({"error": "Unauthorized"}));
        }
        if method == "POST" {
            let poisoned = lock(&self.poison).iter().find_map(|rule| {
                (rule.path == path && body.and_then(|b| b.get(&rule.field)) == Some(&rule.value))
                    .then_some(rule.status)
            });
            if let Some(status) = poisoned {
                return (status, json!({"error": "Internal server error"}));
            }
        }
        if let Some((status, canned)) =
            lock(&self.canned).get(&(method.to_string(), path.to_string()))
        {
            return (*status, canned.clone());
        }
        self.default_answer(method, path, query, body)
    }

    fn authorized(
        &self,
        req: &HttpRequest,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> bool {
        let Some(expected) = lock(&self.api_key).clone() else {
            return true;
        };
        let public = req.path == "/health"
            || (req.method == "GET" && req.path == "/api/market/open-interest/liquid-universe");
        if public {
            return true;
        }
        let given = if req.path.starts_with(USER_ALERTS_PREFIX) {
            query_value(query, "apiKey")
                .map(str::to_string)
                .or_else(|| {
                    body.and_then(|b| b.get("apiKey"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
        } else {
            req.headers
                .iter()
                .find(|(n, _)| n == "x-api-key")
                .map(|(_, v)| v.clone())
        };
        given.as_deref() == Some(expected.as_str())
    }

    fn default_answer(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> (u16, Value) {
        let array_len = |field: &str| {
            body.and_then(|b| b.get(field))
                .and_then(Value::as_array)
                .map(Vec::len)
        };
        let missing = |fields: &[&str]| -> Vec<String> {
            fields
                .iter()
                .filter(|f| body.and_then(|b| b.get(**f)).is_none_or(Value::is_null))
                .map(|f| f.to_string())
                .collect()
        };
        match (method, path) {
            ("GET", "/health") => (200, json!({"status": "ok"})),
            ("GET", "/api/volume-alerts") => (200, json!({"alerts": self.stored_volume_alerts()})),
            ("POST", "/api/volume-alerts/ingest") => {
                let missing = missing(&VOLUME_ALERT_REQUIRED);
                if missing.is_empty() {
                    (200, json!({"success": true, "alertId": self.next_id()}))
                } else {
                    let details: Vec<Value> = missing
                        .iter()
                        .map(|f| json!({"path": [f], "message": "Required"}))
                        .collect();
                    (
                        400,
                        json!({"error": "Invalid alert data", "details": details}),
                    )
                }
            }
            ("POST", "/api/market/open-interest/ingest" | "/api/market/open-interest") => {
                match array_len("data") {
                    Some(n) if n > 0 => (200, json!({"success": true, "inserted": n, "cached": n})),
                    _ => (400, json!({"error": "No valid data"})),
                }
            }
            ("POST", "/api/open-interest-alerts/ingest") => {
                // numeric(10,6) columns: an overflow is a database error, 500.
                let overflow = ["pctChange", "priceChange", "fundingRate"].iter().any(|f| {
                    body.and_then(|b| b.get(*f))
                        .and_then(Value::as_f64)
                        .is_some_and(|v| (v * 1e6).round().abs() >= 1e10)
                });
                if overflow {
                    (500, json!({"error": "numeric field overflow"}))
                } else {
                    (200, json!({"success": true, "id": self.next_id()}))
                }
            }
            ("GET", "/api/market/open-interest/liquid-universe") => (
                200,
                json!({"updatedAt": null, "enterThreshold": 100_000_000, "exitThreshold": 50_000_000, "symbols": [], "totalSymbols": 0}),
            ),
            ("POST", "/api/market/open-interest/liquid-universe/update") => {
                match array_len("symbols") {
                    Some(n) => (
                        200,
                        json!({"success": true, "upserted": n, "removed": 0, "totalSymbols": n}),
                    ),
                    None => (400, json!({"error": "symbols must be an array"})),
                }
            }
            ("GET", "/api/market/open-interest/snapshot") => (
                200,
                json!({"found": false, "symbol": query_value(query, "symbol"), "requestedTs": query_value(query, "ts")}),
            ),
            ("GET", "/api/user-alerts-trigger/active") => (200, json!({"alerts": []})),
            ("POST", "/api/user-alerts-trigger/trigger") => {
                let missing = missing(&TRIGGER_REQUIRED);
                if missing.is_empty() {
                    (200, json!({"success": true}))
                } else {
                    (
                        400,
                        json!({"error": "Missing required fields", "details": missing}),
                    )
                }
            }
            ("POST", "/api/user-alerts-trigger/update-checked") => (200, json!({"success": true})),
            ("POST", "/api/telegram/ingest") => {
                // `username` is NOT NULL UNIQUE in the real schema.
                let username = body
                    .and_then(|b| b.pointer("/channel/username"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if username.is_empty() {
                    return (400, json!({"error": "Invalid channel data"}));
                }
                let n = array_len("messages").unwrap_or(0);
                (
                    200,
                    json!({"success": true, "inserted": n, "duplicates": 0, "errors": 0}),
                )
            }
            _ => (404, json!({"error": "Not found"})),
        }
    }
}
