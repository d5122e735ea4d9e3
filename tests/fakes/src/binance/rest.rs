//! The fake Binance REST API: routes, request weight, rate limiting and the
//! failure controls.

use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::json;
use super::market::{Market, MarketHandle, SymbolState};
use crate::http_server::{HttpRequest, HttpResponse, StreamedBody};
use crate::http_util::{json_response, parse_query, query_value};
use crate::sync::{lock, millis};

/// Binance's IP limit: request weight per minute.
pub const DEFAULT_WEIGHT_LIMIT: u32 = 2400;

const MINUTE_MS: i64 = 60_000;

/// The fake's control route reporting what clients used (not a Binance route).
pub const STATS_PATH: &str = "/__stats";

/// One REST request as the fake Binance saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestRequest {
    /// Path, e.g. `/fapi/v1/klines`.
    pub path: String,
    /// Raw query string (without `?`; empty when absent).
    pub query: String,
    /// Request weight charged (also for failed requests).
    pub weight: u32,
    /// When the request arrived.
    pub received_at: SystemTime,
    /// Status code answered.
    pub status: u16,
}

/// Scripted failures for the next requests.
#[derive(Debug, Clone, Copy)]
struct Failures {
    remaining: usize,
    status: u16,
    retry_after_secs: Option<u64>,
    /// Only requests to this path fail; `None`: any request.
    path: Option<&'static str>,
}

/// Weight used in one wall-clock minute.
#[derive(Debug, Default, Clone, Copy)]
struct MinuteWeight {
    minute: i64,
    used: u32,
}

/// The REST routes the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    ExchangeInfo,
    Ticker24h,
    TickerPrice,
    Klines,
    OpenInterest,
    PremiumIndex,
}

impl Route {
    fn find(method: &str, path: &str) -> Option<Route> {
        if method != "GET" {
            return None;
        }
        Some(match path.trim_end_matches('/') {
            "/fapi/v1/exchangeInfo" => Route::ExchangeInfo,
            "/fapi/v1/ticker/24hr" => Route::Ticker24h,
            "/fapi/v2/ticker/price" => Route::TickerPrice,
            "/fapi/v1/klines" => Route::Klines,
            "/fapi/v1/openInterest" => Route::OpenInterest,
            "/fapi/v1/premiumIndex" => Route::PremiumIndex,
            _ => return None,
        })
    }

    /// Request weight per `docs/binance.md`.
    fn weight(self, params: &[(String, String)]) -> u32 {
        let has_symbol = query_value(params, "symbol").is_some_and(|s| !s.is_empty());
        match self {
            Route::ExchangeInfo | Route::OpenInterest => 1,
            Route::Ticker24h => {
                if has_symbol {
                    1
                } else {
                    40
                }
            }
            Route::TickerPrice => {
                if has_symbol {
                    1
                } else {
                    2
                }
            }
            Route::PremiumIndex => {
                if has_symbol {
                    1
                } else {
                    10
                }
            }
            Route::Klines => {
                // Binance's default limit is 500.
                let limit = query_value(params, "limit")
                    .and_then(|l| l.parse::<u64>().ok())
                    .unwrap_or(500);
                match limit {
                    0..=99 => 1,
                    100..=499 => 2,
                    500..=1000 => 5,
                    _ => 10,
                }
            }
        }
    }
}

/// An answer before the weight header is added.
struct Answer {
    status: u16,
    body: Value,
    retry_after_secs: Option<u64>,
}

impl Answer {
    fn ok(body: Value) -> Answer {
        Answer {
            status: 200,
            body,
            retry_after_secs: None,
        }
    }

    fn error(status: u16, code: i32, msg: &str) -> Answer {
        Answer {
            status,
            body: json::error(code, msg),
            retry_after_secs: None,
        }
    }

    fn invalid_symbol() -> Answer {
        Answer::error(400, -1121, "Invalid symbol.")
    }

    fn missing(param: &str) -> Answer {
        Answer::error(
            400,
            -1102,
            &format!("Mandatory parameter '{param}' was not sent, was empty/null, or malformed."),
        )
    }
}

/// State and behaviour controls of the REST server.
pub(crate) struct RestState {
    market: MarketHandle,
    latency: Mutex<Duration>,
    failures: Mutex<Option<Failures>>,
    log: Mutex<Vec<RestRequest>>,
    minute: Mutex<MinuteWeight>,
    weight_limit: AtomicU32,
    /// Length of Binance's weight window in ms: a minute, or shorter when a
    /// test simulates many minutes quickly.
    window_ms: AtomicI64,
    /// Paths answered with a hostile body instead of the real answer.
    hostile: Mutex<Vec<(String, HostileBody)>>,
}

/// A 200 answer no real Binance sends, to test the client's body limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostileBody {
    /// A body of this many bytes, with its `Content-Length`.
    Huge(usize),
    /// A body without end.
    Endless,
    /// A gzip body (`Content-Encoding: gzip`) that inflates to this many bytes.
    GzipBomb(usize),
}

impl HostileBody {
    /// The HTTP answer carrying this body.
    fn response(self) -> HttpResponse {
        let mut response = HttpResponse {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: Vec::new(),
            stream: None,
        };
        match self {
            HostileBody::Huge(len) => response.stream = Some(StreamedBody::Sized(len)),
            HostileBody::Endless => response.stream = Some(StreamedBody::Endless),
            HostileBody::GzipBomb(len) => {
                response.body = gzip_of_zeros(len);
                response
                    .headers
                    .push(("Content-Encoding".into(), "gzip".into()));
            }
        }
        response
    }
}

/// `len` zero bytes, gzipped (about 1 KB per MB); compressed once per size.
fn gzip_of_zeros(len: usize) -> Vec<u8> {
    use std::io::Write;
    static CACHE: Mutex<Vec<(usize, Vec<u8>)>> = Mutex::new(Vec::new());
    let mut cache = lock(&CACHE);
    if let Some((_, bytes)) = cache.iter().find(|(l, _)| *l == len) {
        return bytes.clone();
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len());
        if encoder.write_all(&zeros[..n]).is_err() {
            break;
        }
        left -= n;
    }
    let bytes = encoder.finish().unwrap_or_default();
    cache.push((len, bytes.clone()));
    bytes
}

impl RestState {
    pub(crate) fn new(market: MarketHandle) -> RestState {
        RestState {
            market,
            latency: Mutex::new(Duration::ZERO),
            failures: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            minute: Mutex::new(MinuteWeight::default()),
            weight_limit: AtomicU32::new(DEFAULT_WEIGHT_LIMIT),
            window_ms: AtomicI64::new(MINUTE_MS),
            hostile: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn set_hostile(&self, path: &str, body: Option<HostileBody>) {
        let mut hostile = lock(&self.hostile);
        hostile.retain(|(p, _)| p != path);
        if let Some(body) = body {
            hostile.push((path.to_string(), body));
        }
    }

    fn hostile_for(&self, path: &str) -> Option<HostileBody> {
        lock(&self.hostile)
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, body)| *body)
    }

    pub(crate) fn set_weight_window(&self, window: Duration) {
        let ms = i64::try_from(window.as_millis())
            .unwrap_or(MINUTE_MS)
            .max(1);
        self.window_ms.store(ms, Ordering::SeqCst);
    }

    fn window_ms(&self) -> i64 {
        self.window_ms.load(Ordering::SeqCst)
    }

    pub(crate) fn set_latency(&self, latency: Duration) {
        *lock(&self.latency) = latency;
    }

    pub(crate) fn fail_next(&self, n: usize, status: u16, retry_after_secs: Option<u64>) {
        *lock(&self.failures) = (n > 0).then_some(Failures {
            remaining: n,
            status,
            retry_after_secs,
            path: None,
        });
    }

    pub(crate) fn fail_next_on(&self, path: &'static str, n: usize, status: u16) {
        *lock(&self.failures) = (n > 0).then_some(Failures {
            remaining: n,
            status,
            retry_after_secs: None,
            path: Some(path),
        });
    }

    pub(crate) fn set_weight_limit(&self, limit: u32) {
        self.weight_limit.store(limit, Ordering::SeqCst);
    }

    pub(crate) fn requests(&self) -> Vec<RestRequest> {
        lock(&self.log).clone()
    }

    pub(crate) fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    pub(crate) fn weight_in_window(&self, window: Duration) -> u32 {
        let since = SystemTime::now()
            .checked_sub(window)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        lock(&self.log)
            .iter()
            .filter(|r| r.received_at >= since)
            .map(|r| r.weight)
            .sum()
    }

    pub(crate) fn weight_this_minute(&self) -> u32 {
        let current = millis(SystemTime::now()).div_euclid(self.window_ms());
        let minute = lock(&self.minute);
        if minute.minute == current {
            minute.used
        } else {
            0
        }
    }

    /// Adds `weight` to the minute of `at`; returns the minute's total.
    fn charge(&self, weight: u32, at: SystemTime) -> u32 {
        let current = millis(at).div_euclid(self.window_ms());
        let mut minute = lock(&self.minute);
        if minute.minute != current {
            *minute = MinuteWeight {
                minute: current,
                used: 0,
            };
        }
        minute.used = minute.used.saturating_add(weight);
        minute.used
    }

    fn take_failure(&self, path: &str) -> Option<Failures> {
        let mut failures = lock(&self.failures);
        let current = (*failures)?;
        if current.path.is_some_and(|only| only != path) {
            return None;
        }
        *failures = (current.remaining > 1).then_some(Failures {
            remaining: current.remaining - 1,
            ..current
        });
        Some(current)
    }

    /// What the recorded requests received at or after `since_ms` (unix
    /// ms) cost, in total, per weight window (a wall-clock minute unless
    /// [`RestState::set_weight_window`]) and per path:
    /// `{"requests","weight","windowMs","windows":[{"start","requests","weight"}],
    /// "paths":{"/fapi/v1/klines":{"requests","weight"}},"statuses":{"200":n}}`.
    pub(crate) fn stats(&self, since_ms: i64) -> Value {
        use std::collections::BTreeMap;
        let window = self.window_ms();
        let mut windows: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        let mut paths: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
        let (mut requests, mut weight) = (0u64, 0u64);
        for r in lock(&self.log).iter() {
            let at = millis(r.received_at);
            if at < since_ms {
                continue;
            }
            let w = u64::from(r.weight);
            requests += 1;
            weight += w;
            let slot = windows.entry(at.div_euclid(window) * window).or_default();
            slot.0 += 1;
            slot.1 += w;
            let slot = paths.entry(r.path.clone()).or_default();
            slot.0 += 1;
            slot.1 += w;
            *statuses.entry(r.status.to_string()).or_default() += 1;
        }
        serde_json::json!({
            "requests": requests,
            "weight": weight,
            "windowMs": window,
            "windows": windows.iter().map(|(start, (n, w))| serde_json::json!({
                "start": start, "requests": n, "weight": w,
            })).collect::<Vec<_>>(),
            "paths": paths.iter().map(|(p, (n, w))| (p.clone(), serde_json::json!({
                "requests": n, "weight": w,
            }))).collect::<serde_json::Map<_, _>>(),
            "statuses": statuses,
        })
    }

    /// Answers one request; every request is charged and recorded, except
    /// the fake's own control route `GET /__stats[?since=MS]` (see
    /// [`RestState::stats`]), which costs nothing and is answered at once.
    pub(crate) fn handle(&self, req: HttpRequest) -> HttpResponse {
        let params = parse_query(&req.query);
        if req.path == STATS_PATH {
            let since = query_value(&params, "since")
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(i64::MIN);
            return json_response(200, &self.stats(since));
        }
        let route = Route::find(&req.method, &req.path);
        // Unknown routes cost 1, like any request reaching Binance.
        let weight = route.map_or(1, |r| r.weight(&params));
        let used = self.charge(weight, req.received_at);

        let latency = *lock(&self.latency);
        if !latency.is_zero() {
            thread::sleep(latency);
        }

        if let Some(body) = self.hostile_for(&req.path) {
            lock(&self.log).push(RestRequest {
                path: req.path,
                query: req.query,
                weight,
                received_at: req.received_at,
                status: 200,
            });
            return body.response();
        }
        let now = millis(SystemTime::now());
        let answer = if let Some(failure) = self.take_failure(&req.path) {
            scripted_failure(failure, now)
        } else if used > self.weight_limit.load(Ordering::SeqCst) {
            let limit = self.weight_limit.load(Ordering::SeqCst);
            let window = self.window_ms();
            let next_minute_ms = (now.div_euclid(window) + 1) * window;
            Answer {
                retry_after_secs: Some(((next_minute_ms - now + 999) / 1000).max(1) as u64),
                ..Answer::error(
                    429,
                    -1003,
                    &format!(
                        "Too many requests; current limit of IP(127.0.0.1) is {limit} requests per minute. Please use the websocket for live updates to avoid polling the API."
                    ),
                )
            }
        } else {
            match route {
                None => Answer::error(404, -1000, "Not found."),
                Some(route) => self.market.read(|m| answer(route, m, &params, now)),
            }
        };

        lock(&self.log).push(RestRequest {
            path: req.path,
            query: req.query,
            weight,
            received_at: req.received_at,
            status: answer.status,
        });

        let mut response = json_response(answer.status, &answer.body);
        response
            .headers
            .push(("X-MBX-USED-WEIGHT-1M".into(), used.to_string()));
        if let Some(secs) = answer.retry_after_secs {
            response
                .headers
                .push(("Retry-After".into(), secs.to_string()));
        }
        response
    }
}

fn scripted_failure(failure: Failures, now: i64) -> Answer {
    let msg = if failure.status == 418 {
        let until = now + failure.retry_after_secs.unwrap_or(120) as i64 * 1000;
        format!(
            "Way too many requests; IP(127.0.0.1) banned until {until}. Please use the websocket for live updates to avoid bans."
        )
    } else {
        "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute. Please use the websocket for live updates to avoid polling the API.".to_string()
    };
    Answer {
        retry_after_secs: failure.retry_after_secs,
        ..Answer::error(failure.status, -1003, &msg)
    }
}

/// One symbol (`symbol` given) or every symbol rendered with `render`.
fn one_or_all(
    market: &Market,
    params: &[(String, String)],
    render: impl Fn(&SymbolState) -> Value,
) -> Answer {
    match query_value(params, "symbol").filter(|s| !s.is_empty()) {
        Some(symbol) => match market.get(symbol) {
            Some(state) => Answer::ok(render(state)),
            None => Answer::invalid_symbol(),
        },
        None => Answer::ok(Value::Array(market.iter().map(render).collect())),
    }
}

fn answer(route: Route, market: &Market, params: &[(String, String)], now: i64) -> Answer {
    match route {
        Route::ExchangeInfo => Answer::ok(json::exchange_info(market, DEFAULT_WEIGHT_LIMIT, now)),
        Route::Ticker24h => one_or_all(market, params, |s| json::ticker_24hr(s, now)),
        Route::TickerPrice => one_or_all(market, params, |s| json::ticker_price(s, now)),
        Route::PremiumIndex => one_or_all(market, params, |s| json::premium_index(s, now)),
        Route::OpenInterest => match query_value(params, "symbol").filter(|s| !s.is_empty()) {
            None => Answer::missing("symbol"),
            Some(symbol) => match market.get(symbol) {
                Some(state) => Answer::ok(json::open_interest(state, now)),
                None => Answer::invalid_symbol(),
            },
        },
        Route::Klines => klines(market, params),
    }
}

fn klines(market: &Market, params: &[(String, String)]) -> Answer {
    let Some(symbol) = query_value(params, "symbol").filter(|s| !s.is_empty()) else {
        return Answer::missing("symbol");
    };
    let Some(interval) = query_value(params, "interval").filter(|s| !s.is_empty()) else {
        return Answer::missing("interval");
    };
    if interval != "1h" {
        return Answer::error(400, -1120, "Invalid interval.");
    }
    let number = |name: &str| -> Result<Option<i64>, Answer> {
        match query_value(params, name) {
            None => Ok(None),
            Some(raw) => raw.parse::<i64>().map(Some).map_err(|_| {
                Answer::error(
                    400,
                    -1100,
                    &format!("Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."),
                )
            }),
        }
    };
    let (limit, start, end) = match (number("limit"), number("startTime"), number("endTime")) {
        (Ok(l), Ok(s), Ok(e)) => (l.unwrap_or(500), s, e),
        (Err(a), _, _) | (_, Err(a), _) | (_, _, Err(a)) => return a,
    };
    if !(1..=1500).contains(&limit) {
        return Answer::error(400, -1130, "Data sent for parameter 'limit' is not valid.");
    }
    let Some(state) = market.get(symbol) else {
        return Answer::invalid_symbol();
    };
    let selected: Vec<_> = state
        .candles
        .iter()
        .filter(|c| start.is_none_or(|s| c.open_time_ms >= s))
        .filter(|c| end.is_none_or(|e| c.open_time_ms <= e))
        .collect();
    let limit = limit as usize;
    // With startTime Binance returns the first `limit` candles from there,
    // otherwise the last `limit` up to endTime (or now).
    let chosen = if start.is_some() {
        &selected[..limit.min(selected.len())]
    } else {
        &selected[selected.len().saturating_sub(limit)..]
    };
    Answer::ok(Value::Array(
        chosen.iter().map(|c| json::kline(c)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Vec<(String, String)> {
        parse_query(q)
    }

    #[test]
    fn weights_follow_the_spec() {
        assert_eq!(Route::Ticker24h.weight(&params("")), 40);
        assert_eq!(Route::Ticker24h.weight(&params("symbol=BTCUSDT")), 1);
        assert_eq!(Route::TickerPrice.weight(&params("")), 2);
        assert_eq!(Route::PremiumIndex.weight(&params("")), 10);
        assert_eq!(Route::PremiumIndex.weight(&params("symbol=X")), 1);
        assert_eq!(Route::Klines.weight(&params("limit=3")), 1);
        assert_eq!(Route::Klines.weight(&params("limit=99")), 1);
        assert_eq!(Route::Klines.weight(&params("limit=100")), 2);
        assert_eq!(Route::Klines.weight(&params("limit=499")), 2);
        assert_eq!(Route::Klines.weight(&params("limit=500")), 5);
        assert_eq!(Route::Klines.weight(&params("limit=1000")), 5);
        assert_eq!(Route::Klines.weight(&params("limit=1001")), 10);
        assert_eq!(Route::Klines.weight(&params("")), 5);
        assert_eq!(Route::find("GET", "/fapi/v1/klines"), Some(Route::Klines));
        assert_eq!(Route::find("POST", "/fapi/v1/klines"), None);
    }

    #[test]
    fn failures_count_down() {
        let state = RestState::new(MarketHandle::default());
        state.fail_next(2, 429, Some(3));
        assert!(state.take_failure("/a").is_some_and(|f| f.status == 429));
        assert!(state.take_failure("/b").is_some());
        assert!(state.take_failure("/a").is_none());
    }

    #[test]
    fn a_path_failure_spares_other_paths() {
        let state = RestState::new(MarketHandle::default());
        state.fail_next_on("/fapi/v1/ticker/24hr", 1, 500);
        assert!(state.take_failure("/fapi/v1/exchangeInfo").is_none());
        assert!(state
            .take_failure("/fapi/v1/ticker/24hr")
            .is_some_and(|f| f.status == 500));
        assert!(state.take_failure("/fapi/v1/ticker/24hr").is_none());
    }
}
