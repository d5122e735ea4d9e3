//! The funding API (was `funding_api_server.py`), served from the funding
//! cache's prepared snapshot:
//!
//! - `GET /funding` → `{"data":[{…},…],"count":N,"generatedAt":ms}`, every
//!   symbol with funding data, sorted by symbol; ages as of `generatedAt`
//!   (at most about a second old, see [`crate::binance::cache`]).
//! - `GET /funding/{symbol}` (case-insensitive, percent-decoded) →
//!   `{"symbol","markPrice","fundingRate","nextFundingTime","indexPrice","updatedAt","ageSeconds"}`;
//!   `ageSeconds` is computed at request time. `fundingRate` and
//!   `nextFundingTime` are `null` for contracts without funding (quarterlies).
//!   404 unknown symbol, 503 when that symbol's data is stale.
//! - `GET /funding/batch?symbols=A,B` → `{"data":[…],"found":n,"missing":[…],"total":n}`:
//!   `data` holds the fresh entries in request order, `missing` the requested
//!   symbols (upper-cased, de-duplicated) that are unknown or stale, `found`
//!   is `data`'s length and `total` the number of distinct symbols asked for.
//!   At most [`MAX_BATCH`] names per request (duplicates count); more is a 400.
//! - `GET /funding/health` → the old daemon's body (see [`FundingHealth`]),
//!   200 when healthy, 503 otherwise.
//!
//! While the whole cache is stale (its newest entry older than the stale
//! threshold) or still empty, every data route answers 503: a consumer must
//! not take old funding for current. Bad input is a JSON 400.

use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::Reply;
use crate::binance::cache::{FundingCache, Snapshot};
use crate::binance::frames::valid_symbol;
use crate::binance::stream::{StreamState, StreamStatus};
use crate::clock::unix_ms;

/// Most symbols one batch request may name (Binance lists about 700).
pub const MAX_BATCH: usize = 1000;
/// Longest query string read for a batch. Generous (the router caps the
/// whole target at [`super::MAX_URL`]): an over-long list should meet the
/// clearer "too many symbols" 400 first.
pub const MAX_QUERY: usize = 128 * 1024;

/// What the funding handlers read; cheap to clone.
#[derive(Debug, Clone)]
pub struct FundingApi {
    /// The cache the stream writes.
    pub cache: FundingCache,
    /// The stream's counters.
    pub stream: StreamStatus,
    /// Data older than this is stale (503).
    pub stale_after: Duration,
}

impl Default for FundingApi {
    fn default() -> Self {
        FundingApi {
            cache: FundingCache::new(),
            stream: StreamStatus::new(),
            stale_after: Duration::from_secs(crate::config::settings::FUNDING_STALE_SECS.default),
        }
    }
}

/// The `/funding/health` body, field for field the old daemon's.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FundingHealth {
    /// `healthy` (connected, fresh data), `degraded` (one of the two),
    /// `unhealthy` (neither) or `disabled` (the funding_stream job is off).
    pub status: &'static str,
    /// Whether the WebSocket is open.
    pub websocket_connected: bool,
    /// Symbols with funding data.
    pub symbol_count: usize,
    /// Seconds since the appliance started, with milliseconds (a float, as
    /// the old daemon's).
    pub uptime_seconds: f64,
    /// When the last connection opened, epoch seconds as a float (the old
    /// daemon's `time.time()`); `null` when never.
    pub last_connected_time: Option<f64>,
    /// Symbol updates received since start (the old daemon counted one per
    /// symbol in each frame, not frames).
    pub messages_received: u64,
    /// Connection attempts after the first.
    pub reconnect_attempts: u64,
    /// Age of the least recently updated symbol.
    pub oldest_data_age_seconds: Option<f64>,
    /// Age of the most recently updated symbol.
    pub newest_data_age_seconds: Option<f64>,
}

/// Whether the cache as a whole can be served.
enum Overall {
    /// Nothing received yet.
    NoData,
    /// The newest entry is older than the threshold.
    Stale(f64),
    /// Servable.
    Fresh,
}

fn overall(api: &FundingApi, snap: &Snapshot, now_ms: u64) -> Overall {
    match snap.newest_ms {
        None => Overall::NoData,
        Some(newest) => {
            let age = now_ms.saturating_sub(newest);
            if age > api.stale_after.as_millis() as u64 {
                Overall::Stale(age as f64 / 1000.0)
            } else {
                Overall::Fresh
            }
        }
    }
}

fn unavailable(api: &FundingApi, o: &Overall) -> Option<Reply> {
    match o {
        Overall::Fresh => None,
        Overall::NoData => Some(fail(
            503,
            &format!(
                "no funding data yet (stream {})",
                state_word(api.stream.state())
            ),
        )),
        Overall::Stale(age) => Some(fail(
            503,
            &format!(
                "funding data is stale: newest update {age:.1} s old (limit {} s); stream {}",
                api.stale_after.as_secs(),
                state_word(api.stream.state())
            ),
        )),
    }
}

fn state_word(s: StreamState) -> &'static str {
    match s {
        StreamState::Disabled => "disabled",
        StreamState::Connecting => "connecting",
        StreamState::Connected => "connected",
        StreamState::Backoff => "reconnecting",
        StreamState::Stopped => "stopped",
    }
}

/// An error reply in the old funding API's shape (FastAPI's
/// `HTTPException`): `{"detail":{"error":"…"}}`, on every `/funding` route
/// so a client of the old server reads errors the way it always did.
fn fail(status: u16, message: &str) -> Reply {
    let body = serde_json::json!({ "detail": { "error": message } }).to_string();
    Reply {
        status,
        content_type: "application/json",
        body: body.into_bytes().into(),
    }
}

/// Routes a path under `/funding`; `query` is the raw query string.
pub fn route(api: &FundingApi, path: &str, query: &str, now: SystemTime) -> Reply {
    let now_ms = unix_ms(now);
    match path.trim_end_matches('/') {
        "/funding" => all(api, now_ms),
        "/funding/health" => health(api, now),
        "/funding/batch" => batch(api, query, now_ms),
        other => match other.strip_prefix("/funding/") {
            Some(segment) if !segment.contains('/') => one(api, segment, now_ms),
            _ => fail(404, "no such route"),
        },
    }
}

/// `GET /funding`.
pub fn all(api: &FundingApi, now_ms: u64) -> Reply {
    let snap = api.cache.snapshot(now_ms);
    if let Some(reply) = unavailable(api, &overall(api, &snap, now_ms)) {
        return reply;
    }
    Reply {
        status: 200,
        content_type: "application/json",
        body: snap.all.clone(),
    }
}

/// `GET /funding/{symbol}`; `raw` is the undecoded path segment.
pub fn one(api: &FundingApi, raw: &str, now_ms: u64) -> Reply {
    let symbol = match normalize(raw, false) {
        Ok(symbol) => symbol,
        Err(why) => return fail(400, &why),
    };
    let snap = api.cache.snapshot(now_ms);
    let o = overall(api, &snap, now_ms);
    let Some(entry) = snap.by_symbol.get(&symbol) else {
        // With no data at all, "unknown" would be a lie: say why instead.
        if let Overall::NoData = o {
            return unavailable(api, &o).unwrap_or_else(|| fail(503, "no data"));
        }
        return fail(404, &format!("unknown symbol {symbol}"));
    };
    // A contract without funding (a quarterly such as BTCUSDT_261225) has
    // nothing this route is for: the old server answered 404, not nulls.
    if !entry.has_funding_rate {
        return fail(
            404,
            &format!("no funding rate for {symbol}: the contract has none"),
        );
    }
    let age = entry.age_seconds(now_ms);
    if age > api.stale_after.as_secs_f64() {
        return fail(
            503,
            &format!(
                "funding data for {symbol} is stale: {age:.1} s old (limit {} s)",
                api.stale_after.as_secs()
            ),
        );
    }
    let mut body = Vec::with_capacity(entry.prefix.len() + 32);
    entry.write_with_age(&mut body, now_ms);
    Reply {
        status: 200,
        content_type: "application/json",
        body: body.into(),
    }
}

/// `GET /funding/batch?symbols=A,B`.
pub fn batch(api: &FundingApi, query: &str, now_ms: u64) -> Reply {
    if query.len() > MAX_QUERY {
        return fail(400, &format!("query too long (limit {MAX_QUERY} bytes)"));
    }
    let Some(raw) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("symbols="))
    else {
        return fail(400, "missing query parameter symbols=A,B");
    };
    let decoded = match percent_decode(raw, true).map(String::from_utf8) {
        Ok(Ok(s)) => s,
        _ => return fail(400, "symbols: invalid percent-encoding or UTF-8"),
    };
    let mut symbols: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // The cap counts names as listed, duplicates included: it bounds the
    // work a request can ask for.
    for (listed, part) in decoded
        .split([',', ' '])
        .filter(|p| !p.trim().is_empty())
        .enumerate()
    {
        if listed >= MAX_BATCH {
            return fail(
                400,
                &format!("too many symbols (limit {MAX_BATCH} per request)"),
            );
        }
        let symbol = match normalize(part, true) {
            Ok(s) => s,
            Err(why) => return fail(400, &why),
        };
        if seen.insert(symbol.clone()) {
            symbols.push(symbol);
        }
    }
    if symbols.is_empty() {
        return fail(400, "symbols is empty; expected symbols=A,B");
    }
    let snap = api.cache.snapshot(now_ms);
    if let Some(reply) = unavailable(api, &overall(api, &snap, now_ms)) {
        return reply;
    }
    let stale_ms = api.stale_after.as_millis() as u64;
    let mut body = Vec::with_capacity(64 + symbols.len() * 200);
    body.extend_from_slice(b"{\"data\":[");
    let mut found = 0usize;
    let mut missing: Vec<&str> = Vec::new();
    for symbol in &symbols {
        match snap.by_symbol.get(symbol) {
            Some(entry) if now_ms.saturating_sub(entry.updated_ms) <= stale_ms => {
                if found > 0 {
                    body.push(b',');
                }
                entry.write_with_age(&mut body, now_ms);
                found += 1;
            }
            _ => missing.push(symbol),
        }
    }
    body.extend_from_slice(b"],\"found\":");
    body.extend_from_slice(found.to_string().as_bytes());
    body.extend_from_slice(b",\"missing\":");
    // Symbols passed `valid_symbol`, so serde_json cannot fail here.
    body.extend_from_slice(&serde_json::to_vec(&missing).unwrap_or_else(|_| b"[]".to_vec()));
    body.extend_from_slice(b",\"total\":");
    body.extend_from_slice(symbols.len().to_string().as_bytes());
    body.push(b'}');
    Reply {
        status: 200,
        content_type: "application/json",
        body: body.into(),
    }
}

/// `GET /funding/health`.
pub fn health(api: &FundingApi, now: SystemTime) -> Reply {
    let body = health_body(api, now);
    let status = if body.status == "healthy" { 200 } else { 503 };
    Reply::json(status, &body)
}

/// Builds the `/funding/health` body at `now`.
pub fn health_body(api: &FundingApi, now: SystemTime) -> FundingHealth {
    let state = api.stream.state();
    let connected = state == StreamState::Connected;
    let newest = api.cache.newest_age(now);
    let fresh = newest.is_some_and(|age| age <= api.stale_after);
    let status = match (state, connected, fresh) {
        (StreamState::Disabled, _, _) => "disabled",
        (_, true, true) => "healthy",
        (_, true, false) | (_, false, true) => "degraded",
        (_, false, false) => "unhealthy",
    };
    let secs = |d: Duration| (d.as_millis() as f64) / 1000.0;
    FundingHealth {
        status,
        websocket_connected: connected,
        symbol_count: api.cache.funding_len(),
        uptime_seconds: secs(api.stream.uptime()),
        last_connected_time: api.stream.last_connected_ms().map(|ms| ms as f64 / 1000.0),
        messages_received: api.stream.symbol_updates(),
        reconnect_attempts: api.stream.reconnect_attempts(),
        oldest_data_age_seconds: api.cache.oldest_age(now).map(secs),
        newest_data_age_seconds: newest.map(secs),
    }
}

/// A `%` not followed by two hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed percent-encoding")]
pub struct BadEscape;

/// Decodes `%XX` (and `+` as space when `plus_is_space`); a malformed
/// escape is an error rather than passed through.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Result<Vec<u8>, BadEscape> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(BadEscape)?;
                // from_str_radix alone would accept a sign ("%+5").
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(BadEscape);
                }
                let hex = std::str::from_utf8(hex).map_err(|_| BadEscape)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| BadEscape)?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Upper-cases and validates one symbol; `decoded` says whether
/// percent-decoding already happened.
fn normalize(raw: &str, decoded: bool) -> Result<String, String> {
    let text = if decoded {
        raw.to_string()
    } else {
        match percent_decode(raw, false).map(String::from_utf8) {
            Ok(Ok(s)) => s,
            _ => return Err("symbol: invalid percent-encoding or UTF-8".into()),
        }
    };
    let symbol = text.trim().to_ascii_uppercase();
    if valid_symbol(&symbol) {
        Ok(symbol)
    } else {
        let shown: String = symbol.chars().take(40).collect();
        Err(format!(
            "invalid symbol {shown:?}: expected letters, digits, '_' or '-', at most 32"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::frames::{self, Frame};
    use crate::clock::from_unix_ms;

    const T0: u64 = 1_700_000_000_000;

    fn api_with(text: &str, at_ms: u64) -> FundingApi {
        let api = FundingApi::default();
        feed(&api, text, at_ms);
        api
    }

    fn feed(api: &FundingApi, text: &str, at_ms: u64) {
        let Ok(Frame::Data { updates, .. }) = frames::parse(text) else {
            panic!("test frame must parse");
        };
        api.cache.apply(&updates, at_ms);
        api.cache.rebuild(at_ms);
    }

    const MARK: &str = r#"{"stream":"!markPrice@arr","data":[
        {"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11185.87786614","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000,"ap":"1","st":1},
        {"e":"markPriceUpdate","E":1562305380000,"s":"ETHUSDT","p":"300.5","i":"300.1","r":"-0.0001","T":1562306400000},
        {"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT_260925","p":"70000","i":"69990","r":"","T":0,"st":2}]}"#;

    fn json(reply: &Reply) -> serde_json::Value {
        serde_json::from_slice(&reply.body).expect("every reply is JSON")
    }

    fn at(ms: u64) -> SystemTime {
        from_unix_ms(ms)
    }

    #[test]
    fn one_symbol_case_insensitive_with_request_time_age() {
        let api = api_with(MARK, T0);
        for path in [
            "/funding/btcusdt",
            "/funding/BtcUsdt",
            "/funding/%62tcusdt",
            "/funding/BTCUSDT/",
        ] {
            let reply = route(&api, path, "", at(T0 + 2_500));
            assert_eq!(reply.status, 200, "{path}");
            let v = json(&reply);
            assert_eq!(v["symbol"], "BTCUSDT");
            assert_eq!(v["markPrice"], 11185.87786614);
            assert_eq!(v["indexPrice"], 11784.62659091);
            assert_eq!(v["fundingRate"], 0.00038167);
            assert_eq!(v["nextFundingTime"], 1562306400000u64);
            assert_eq!(v["updatedAt"], T0 as f64 / 1000.0, "epoch seconds");
            assert!(v["updatedAt"].is_f64());
            assert_eq!(v["ageSeconds"], 2.5);
            let keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
            assert_eq!(keys.len(), 7);
        }
        // A quarterly has no funding: 404 as the old server, not nulls.
        let q = route(&api, "/funding/btcusdt_260925", "", at(T0));
        assert_eq!(q.status, 404);
        assert!(json(&q)["detail"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("BTCUSDT_260925")));
    }

    #[test]
    fn unknown_is_404_and_stale_is_503() {
        let api = api_with(MARK, T0);
        assert_eq!(route(&api, "/funding/DOGEUSDT", "", at(T0)).status, 404);
        // BTC keeps ageing while ETH is refreshed: BTC alone is stale.
        feed(
            &api,
            r#"{"stream":"!markPrice@arr","data":[{"e":"markPriceUpdate","s":"ETHUSDT","p":"301","i":"301","r":"0.0001","T":1}]}"#,
            T0 + 170_000,
        );
        let later = at(T0 + 181_000);
        let stale = route(&api, "/funding/BTCUSDT", "", later);
        assert_eq!(stale.status, 503);
        assert!(json(&stale)["detail"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("stale")));
        assert_eq!(route(&api, "/funding/ETHUSDT", "", later).status, 200);
        // Everything stale: /funding and batch are 503 too.
        let much_later = at(T0 + 400_000);
        assert_eq!(route(&api, "/funding", "", much_later).status, 503);
        assert_eq!(
            route(&api, "/funding/batch", "symbols=ETHUSDT", much_later).status,
            503
        );
    }

    #[test]
    fn empty_cache_is_503_not_404() {
        let api = FundingApi::default();
        for path in ["/funding", "/funding/BTCUSDT"] {
            assert_eq!(route(&api, path, "", at(T0)).status, 503, "{path}");
        }
        assert_eq!(
            route(&api, "/funding/batch", "symbols=BTCUSDT", at(T0)).status,
            503
        );
    }

    #[test]
    fn all_symbols() {
        let api = api_with(MARK, T0);
        let reply = route(&api, "/funding", "", at(T0 + 100));
        assert_eq!(reply.status, 200);
        let v = json(&reply);
        assert_eq!(v["count"], 3);
        assert_eq!(v["data"][0]["symbol"], "BTCUSDT");
    }

    #[test]
    fn batch_lists_missing_symbols() {
        let api = api_with(MARK, T0);
        let reply = route(
            &api,
            "/funding/batch",
            "x=1&symbols=ethusdt,%20BTCUSDT,NOPEUSDT,ETHUSDT,,",
            at(T0 + 1_000),
        );
        assert_eq!(reply.status, 200);
        let v = json(&reply);
        assert_eq!(v["found"], 2);
        assert_eq!(v["total"], 3);
        assert_eq!(v["missing"], serde_json::json!(["NOPEUSDT"]));
        assert_eq!(v["data"][0]["symbol"], "ETHUSDT");
        assert_eq!(v["data"][1]["symbol"], "BTCUSDT");
        assert_eq!(v["data"][1]["ageSeconds"], 1.0);
    }

    #[test]
    fn bad_input_is_a_json_400() {
        let api = api_with(MARK, T0);
        let many = format!("symbols={}", vec!["BTCUSDT"; 10_000].join(","));
        let long_symbol = format!("/funding/{}", "A".repeat(100));
        let cases: Vec<(&str, &str)> = vec![
            ("/funding/batch", ""),
            ("/funding/batch", "symbols="),
            ("/funding/batch", "symbols=%ZZ"),
            ("/funding/batch", "symbols=%+5"),
            ("/funding/batch", "symbols=%FF%FE"),
            ("/funding/batch", "symbols=BTC\"USDT"),
            ("/funding/batch", &many),
            ("/funding/%", ""),
            ("/funding/%C3%A9", ""),
            ("/funding/BTC%22", ""),
            (&long_symbol, ""),
        ];
        for (path, query) in cases {
            let reply = route(&api, path, query, at(T0));
            assert_eq!(
                reply.status,
                400,
                "{path}?{}",
                &query[..query.len().min(40)]
            );
            assert!(json(&reply)["detail"]["error"].is_string());
        }
        assert_eq!(route(&api, "/funding/a/b", "", at(T0)).status, 404);
    }

    #[test]
    fn health_body_has_exactly_the_old_fields() {
        let api = api_with(MARK, T0);
        let v = json(&route(&api, "/funding/health", "", at(T0 + 1_000)));
        let mut keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "lastConnectedTime",
                "messagesReceived",
                "newestDataAgeSeconds",
                "oldestDataAgeSeconds",
                "reconnectAttempts",
                "status",
                "symbolCount",
                "uptimeSeconds",
                "websocketConnected"
            ]
        );
        assert_eq!(v["status"], "disabled");
        assert_eq!(v["symbolCount"], 3);
        assert_eq!(v["newestDataAgeSeconds"], 1.0);
        // The old daemon's types: floats in seconds, never connected = null.
        assert!(v["uptimeSeconds"].is_f64(), "{v}");
        assert!(v["lastConnectedTime"].is_null());
        assert!(v["messagesReceived"].is_u64());
    }
}
