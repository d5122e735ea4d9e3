//! The volume job in `stream` mode in the real binary, against the fake
//! Binance's kline streams and the fake backend: an injected crossing is
//! posted once with the exact payload the moment the stream shows it, quiet
//! tapes post nothing, HALF_UPDATE and FULL_UPDATE come at :30 and hh:00
//! with the stream's figures, a stream down falls back to the REST sweep,
//! and the stream and the sweep never post the same hour twice.
//!
//! Times inside an hour are reached with `VOLSPIKE_CLOCK_OFFSET_MS` (and
//! the same offset on the fake's streams). No timing assertions: waits are
//! "eventually, within a generous patience".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use volspike_fakes::{Candle, FakeBackend, FakeBinance, Market, SymbolState};

use crate::common::{http_get, wait_until, Running, TempDir};

const HOUR: i64 = 3_600_000;
const MINUTE: i64 = 60_000;
const PATH: &str = "/api/volume-alerts/ingest";
const SNAPSHOT: &str = "/api/market/open-interest/snapshot";
const PATIENCE: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn iso(ms: i64) -> String {
    volspike::clock::iso(volspike::clock::from_unix_ms(ms as u64))
}

fn candle(open_time_ms: i64, open: f64, close: f64, quote_volume: f64) -> Candle {
    Candle::moving(open_time_ms, open, close, quote_volume)
}

/// SPIKEUSDT and QUIETUSDT closed the hour before `hour` at 10 M and trade
/// 10 M so far in it; SMALLUSDT is 4× but below 3 M. No candle after
/// `hour`: REST's last two klines are the previous and the open hour.
fn market(hour: i64) -> Market {
    let mut market = Market::new();
    for (symbol, previous, now) in [
        ("SPIKEUSDT", 10e6, 10e6),
        ("QUIETUSDT", 10e6, 20e6),
        ("SMALLUSDT", 0.5e6, 2e6),
    ] {
        let mut state = SymbolState::perpetual(symbol, 102.5, 240e6);
        state.open_interest = 1100.0;
        state.candles = vec![
            candle(hour - 2 * HOUR, 100.0, 100.0, previous),
            candle(hour - HOUR, 100.0, 100.0, previous),
            candle(hour, 100.0, 102.5, now),
        ];
        market.insert(state);
    }
    market
}

/// The fakes and a state directory that outlives restarts.
struct World {
    binance: FakeBinance,
    backend: FakeBackend,
    dir: TempDir,
}

impl World {
    fn new(name: &str, hour: i64) -> World {
        let binance = FakeBinance::start(market(hour)).expect("fake binance");
        let backend = FakeBackend::start().expect("fake backend");
        // The hour-start OI the backend would have: 1000 contracts.
        backend.set_json(
            "GET",
            SNAPSHOT,
            200,
            json!({"found": true, "symbol": "SPIKEUSDT", "openInterest": 1000.0,
                   "openInterestUsd": null, "markPrice": null, "ts": iso(hour), "source": "realtime"}),
        );
        World {
            binance,
            backend,
            dir: TempDir::new(name),
        }
    }

    /// Starts the appliance with its clock (and the fake streams') shifted
    /// so that it is `at` (unix ms) now.
    fn start_at(&self, at: i64, source: &str) -> Running {
        let offset = at - now_ms();
        self.binance.set_clock_offset_ms(offset);
        let offset = offset.to_string();
        let env = [
            ("BACKEND_URL", self.backend.url()),
            ("ALERT_INGEST_API_KEY", "stream-key".to_string()),
            ("BINANCE_FAPI_URL", self.binance.rest_url()),
            ("BINANCE_WS_URL", self.binance.ws_url()),
            ("VOLSPIKE_CLOCK_OFFSET_MS", offset),
            ("VOLSPIKE_WS_SILENCE_SECS", "3".to_string()),
            ("VOLSPIKE_VOLUME_SOURCE", source.to_string()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Running::start(&self.dir, &["--only", "volume_spike"], &env)
    }

    /// Waits until the streams are subscribed and every symbol's previous
    /// hour was read over REST: from then on the stream decides alone.
    fn wait_streaming(&self, running: &Running) {
        let ready = wait_until(PATIENCE, || {
            let subscribed = !self.binance.ws_subscriptions().is_empty();
            let seeded = self
                .binance
                .requests()
                .iter()
                .filter(|r| r.path == "/fapi/v1/klines")
                .count()
                >= 3;
            (subscribed && seeded).then_some(())
        });
        assert!(
            ready.is_some(),
            "never streaming; log:\n{}",
            running.log_text()
        );
        // A few pushes (every 250 ms) so every tape is fresh.
        std::thread::sleep(Duration::from_secs(1));
    }

    fn alerts(&self) -> Vec<Value> {
        self.backend
            .requests_to(PATH)
            .into_iter()
            .filter_map(|r| r.json)
            .collect()
    }

    fn klines_requests_for(&self, symbol: &str) -> usize {
        self.binance
            .requests()
            .iter()
            .filter(|r| r.path == "/fapi/v1/klines" && r.query.contains(symbol))
            .count()
    }
}

/// The start of an hour whose minutes the tests walk through (any hour
/// works: the clocks are shifted to it).
fn some_hour() -> i64 {
    now_ms() / HOUR * HOUR - 3 * HOUR
}

fn health_summary(running: &Running) -> String {
    http_get(&running.addr, "/health")
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
        .and_then(|h| {
            h["jobs"]["volume_spike"]["lastSummary"]
                .as_str()
                .map(String::from)
        })
        .unwrap_or_default()
}

#[test]
fn an_injected_crossing_is_posted_once_with_the_exact_payload_and_quiet_tapes_never() {
    let hour = some_hour();
    let world = World::new("stream-crossing", hour);
    // At :07, far from the next tick's slots mattering: the stream alone decides.
    let running = world.start_at(hour + 7 * MINUTE, "stream");
    world.wait_streaming(&running);
    assert!(world.alerts().is_empty(), "nothing crossed yet");
    // The detect thread and the one connection are critical loops, alive.
    assert_stream_loops_alive(&running);

    // The kline streams on /metrics: one connection up carrying the three
    // symbols (under the 1024 cap), subscribed in one message, nothing
    // held back, no reconnect, no gap, three previous hours read over REST.
    let metrics = wait_until(Duration::from_secs(10), || {
        let m = metrics_of(&running);
        (m.get("volspike_kline_updates_total").copied() > Some(0.0)
            && m.get("volspike_kline_gap_symbols") == Some(&0.0))
        .then_some(m)
    })
    .unwrap_or_default();
    for (name, value) in [
        ("volspike_kline_connections", 1.0),
        ("volspike_kline_connections_up", 1.0),
        ("volspike_kline_streams", 3.0),
        ("volspike_kline_streams_per_connection_max", 1024.0),
        ("volspike_kline_control_messages_per_second_max", 5.0),
        (
            r#"volspike_kline_control_messages_total{method="SUBSCRIBE"}"#,
            1.0,
        ),
        (
            r#"volspike_kline_control_messages_total{method="UNSUBSCRIBE"}"#,
            0.0,
        ),
        ("volspike_kline_control_messages_paced_total", 0.0),
        ("volspike_kline_reconnects_total", 0.0),
        ("volspike_kline_gap_symbols", 0.0),
        ("volspike_kline_previous_volumes_read_total", 3.0),
    ] {
        assert_eq!(metrics.get(name), Some(&value), "{name}: {metrics:?}");
    }
    // The whole page with the kline families passes Prometheus's linter.
    let (_, text) = http_get(&running.addr, "/metrics").unwrap_or_default();
    crate::metrics::promtool_check(&text);

    let injected = world.binance.set_open_hour_volume("SPIKEUSDT", 35e6);
    let posts = world
        .backend
        .wait_for_requests(PATH, 1, Duration::from_secs(30));
    assert_eq!(posts.len(), 1, "log:\n{}", running.log_text());
    assert_eq!(posts[0].header("x-api-key"), Some("stream-key"));
    let mut body = posts[0].json.clone().unwrap_or_default();
    // detectionTime is the moment the stream saw it: after the injection,
    // and the same as timestamp.
    let detected = body["detectionTime"].as_str().unwrap_or("").to_string();
    let detected_ms = humantime::parse_rfc3339(&detected)
        .map(|t| volspike::clock::unix_ms(t) as i64)
        .unwrap_or(0);
    assert!(
        detected_ms >= injected / 1000 * 1000,
        "{detected} before the injection"
    );
    assert_eq!(body["timestamp"], body["detectionTime"]);
    if let Some(map) = body.as_object_mut() {
        map.remove("detectionTime");
        map.remove("timestamp");
    }
    assert_eq!(
        body,
        json!({
            "symbol": "SPIKEUSDT",
            "asset": "SPIKE",
            "currentVolume": 35000000.0,
            "previousVolume": 10000000.0,
            "volumeRatio": 3.5,
            "price": 102.5,
            "fundingRate": 0.0,
            "candleDirection": "bullish",
            "message": "SPIKE hourly volume 35.00M (3.50× prev) — VOLUME SPIKE!",
            "hourTimestamp": iso(hour),
            "isUpdate": false,
            "alertType": "SPIKE",
            "priceChange": 0.025,
            "oiChange": 0.1
        })
    );
    // More updates of the same hour (4 a second), a bigger volume: still one.
    world.binance.set_open_hour_volume("SPIKEUSDT", 50e6);
    std::thread::sleep(Duration::from_secs(3));
    let alerts = world.alerts();
    assert_eq!(alerts.len(), 1, "posted once: {alerts:?}");
    assert_decided_once(&running);
    // The latency of that alert, both stages, is on /metrics.
    let both = wait_until(Duration::from_secs(10), || {
        let (_, metrics) = http_get(&running.addr, "/metrics").ok()?;
        (metrics.contains("volspike_volume_alert_event_to_queued_seconds_count 1")
            && metrics.contains("volspike_volume_alert_queued_to_delivered_seconds_count 1"))
        .then_some(())
    });
    assert!(
        both.is_some(),
        "{:?}",
        http_get(&running.addr, "/metrics").map(|(_, m)| m)
    );
}

#[test]
fn half_and_full_updates_come_at_their_times_with_the_streams_figures() {
    let hour = some_hour() - HOUR;
    let world = World::new("stream-updates", hour);
    // 14:18:30 → the spike is seen before :20 and recorded as the :20 slot.
    let first = world.start_at(hour + 18 * MINUTE + 30_000, "stream");
    world.wait_streaming(&first);
    world.binance.set_open_hour_volume("SPIKEUSDT", 40e6);
    let spike = world
        .backend
        .wait_for_requests(PATH, 1, Duration::from_secs(30));
    assert_eq!(spike.len(), 1, "log:\n{}", first.log_text());
    drop(first);

    // 14:29:30 on the same state: HALF_UPDATE at :30 from the stream.
    world.binance.set_open_hour_volume("SPIKEUSDT", 45e6);
    let second = world.start_at(hour + 29 * MINUTE + 30_000, "stream");
    world.wait_streaming(&second);
    let half = world
        .backend
        .wait_for_requests(PATH, 2, Duration::from_secs(40));
    assert_eq!(half.len(), 2, "log:\n{}", second.log_text());
    let body = half[1].json.clone().unwrap_or_default();
    assert_eq!(body["alertType"], "HALF_UPDATE");
    assert_eq!(body["currentVolume"], 45e6);
    assert_eq!(body["timestamp"], iso(hour + 30 * MINUTE));
    let summary = wait_until(Duration::from_secs(10), || {
        let s = health_summary(&second);
        s.contains(":30").then_some(s)
    })
    .unwrap_or_default();
    assert!(
        summary.contains("3 symbols from the stream, 0 swept over REST"),
        "{summary}"
    );
    drop(second);

    // 14:59:30: at 15:00 the closed 14:00 hour (k.x from the stream) → FULL_UPDATE.
    world.binance.market().update("SPIKEUSDT", |s| {
        if let Some(c) = s.candles.iter_mut().find(|c| c.open_time_ms == hour) {
            c.quote_volume = 55e6;
        }
    });
    let third = world.start_at(hour + 59 * MINUTE + 30_000, "stream");
    world.wait_streaming(&third);
    let full = world
        .backend
        .wait_for_requests(PATH, 3, Duration::from_secs(40));
    assert_eq!(full.len(), 3, "log:\n{}", third.log_text());
    let body = full[2].json.clone().unwrap_or_default();
    assert_eq!(body["alertType"], "FULL_UPDATE");
    assert_eq!(body["currentVolume"], 55e6);
    assert_eq!(body["hourTimestamp"], iso(hour));
    assert_eq!(body["timestamp"], iso(hour + HOUR));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(world.alerts().len(), 3, "{:?}", world.alerts());
}

#[test]
fn while_the_stream_is_down_the_sweep_posts_and_the_stream_never_repeats_it() {
    let hour = some_hour();
    let world = World::new("stream-down", hour);
    // The spike is already in the candles; the streams are stalled from the start.
    world
        .binance
        .market()
        .set_candles("SPIKEUSDT", market_spiking(hour));
    world.binance.ws_set_stalled(true);
    // 14:09:45: the :10 tick sweeps every symbol over REST.
    let running = world.start_at(hour + 9 * MINUTE + 45_000, "stream");
    let posts = world
        .backend
        .wait_for_requests(PATH, 1, Duration::from_secs(40));
    assert_eq!(posts.len(), 1, "log:\n{}", running.log_text());
    let body = posts[0].json.clone().unwrap_or_default();
    assert_eq!(body["alertType"], "SPIKE");
    assert_eq!(body["timestamp"], iso(hour + 10 * MINUTE));
    let summary = wait_until(Duration::from_secs(10), || {
        let s = health_summary(&running);
        s.contains(":10").then_some(s)
    })
    .unwrap_or_default();
    assert!(summary.contains("3 swept over REST"), "{summary}");

    // The stream comes back and shows the same hour: no second post.
    world.binance.ws_set_stalled(false);
    world.binance.ws_drop_all();
    let flowing = wait_until(PATIENCE, || {
        let (_, metrics) = http_get(&running.addr, "/health").ok()?;
        (!world.binance.ws_subscriptions().is_empty() && metrics.contains("volume_stream"))
            .then_some(())
    });
    assert!(flowing.is_some(), "log:\n{}", running.log_text());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(world.alerts().len(), 1, "{:?}", world.alerts());
    assert_decided_once(&running);
}

#[test]
fn a_gap_after_the_stream_posted_is_swept_over_rest_without_a_second_post() {
    // 14:14:40: the stream posts, then goes silent before the :15 tick.
    let (world, running) = streaming_at("stream-gap", 14 * MINUTE + 40_000);
    world.binance.set_open_hour_volume("SPIKEUSDT", 35e6);
    let posts = world
        .backend
        .wait_for_requests(PATH, 1, Duration::from_secs(30));
    assert_eq!(posts.len(), 1, "log:\n{}", running.log_text());
    let before = world.klines_requests_for("SPIKEUSDT");
    world.binance.ws_set_stalled(true);
    // The :15 tick sweeps the silent symbols over REST and sees the same hour.
    let swept = wait_until(Duration::from_secs(40), || {
        let s = health_summary(&running);
        (s.contains(":15") && world.klines_requests_for("SPIKEUSDT") > before).then_some(s)
    });
    assert!(
        swept.is_some(),
        "no REST sweep in the gap; log:\n{}",
        running.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(world.alerts().len(), 1, "{:?}", world.alerts());
    assert_decided_once(&running);
}

/// The fakes and the appliance in `stream` mode at `into_hour` ms past
/// [`some_hour`], once it is streaming.
fn streaming_at(name: &str, into_hour: i64) -> (World, Running) {
    let hour = some_hour();
    let world = World::new(name, hour);
    let running = world.start_at(hour + into_hour, "stream");
    world.wait_streaming(&running);
    (world, running)
}

/// Asserts the detect thread and the one kline connection are on
/// `/health` as two live `volume_stream` loops; returns the answer.
fn assert_stream_loops_alive(running: &Running) -> (u16, Value) {
    let (code, body) = http_get(&running.addr, "/health").unwrap_or_default();
    let health: Value = serde_json::from_str(&body).unwrap_or_default();
    let loops: Vec<&Value> = health["loops"]
        .as_array()
        .map(|l| l.iter().filter(|l| l["name"] == "volume_stream").collect())
        .unwrap_or_default();
    assert_eq!(loops.len(), 2, "{health}");
    assert!(loops.iter().all(|l| l["alive"] == true), "{health}");
    (code, health)
}

/// `/metrics`' samples, by name with labels as written, when it answers.
fn metrics_of(running: &Running) -> std::collections::BTreeMap<String, f64> {
    let text = http_get(&running.addr, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[test]
fn a_stalled_kline_link_is_reconnected_and_its_symbols_swept_without_a_health_problem() {
    // docs/health.md: a kline connection that is down is not a problem by
    // itself (its thread keeps beating while it reconnects); its symbols
    // are swept over REST at the next slot and the job's summary says so.
    let (world, running) = streaming_at("stream-stalled", 14 * MINUTE + 35_000);
    // Accepting, never sending: the link's silence limit (3 s) must notice.
    world.binance.ws_set_stalled(true);
    let metrics = wait_until(PATIENCE, || {
        let m = metrics_of(&running);
        (m.get("volspike_kline_reconnects_total").copied() >= Some(1.0)
            && m.get("volspike_kline_gap_symbols") == Some(&3.0))
        .then_some(m)
    });
    assert!(
        metrics.is_some(),
        "{:?}\nlog:\n{}",
        metrics_of(&running),
        running.log_text()
    );
    assert!(
        running
            .log_text()
            .contains("kline stream down: no kline for 3 s"),
        "log:\n{}",
        running.log_text()
    );
    // The :15 slot sweeps the three silent symbols over REST.
    let summary = wait_until(PATIENCE, || {
        let s = health_summary(&running);
        s.contains(":15").then_some(s)
    })
    .unwrap_or_default();
    assert!(
        summary.contains("0 symbols from the stream, 3 swept over REST"),
        "{summary}\nlog:\n{}",
        running.log_text()
    );
    // Still stalled: /health answers 200, no critical problem, the two
    // volume_stream loops alive.
    let (code, health) = assert_stream_loops_alive(&running);
    assert_eq!(code, 200, "{health}");
    let critical: Vec<&Value> = health["problems"]
        .as_array()
        .map(|p| p.iter().filter(|p| p["severity"] == "critical").collect())
        .unwrap_or_default();
    assert!(critical.is_empty(), "{health}");
    // Back on the stream: the gap closes on the reconnected link.
    world.binance.ws_set_stalled(false);
    let back = wait_until(PATIENCE, || {
        let m = metrics_of(&running);
        (m.get("volspike_kline_gap_symbols") == Some(&0.0)
            && m.get("volspike_kline_connections_up") == Some(&1.0))
        .then_some(())
    });
    assert!(back.is_some(), "{:?}", metrics_of(&running));
}

/// The spike was decided once: the other side saw the ledger, not just the
/// outbox refusing a duplicate.
fn assert_decided_once(running: &Running) {
    let log = running.log_text();
    assert_eq!(log.matches("VOLUME SPIKE!").count(), 1, "log:\n{log}");
    assert!(!log.contains("already sent"), "log:\n{log}");
}

/// SPIKEUSDT's candles with the open hour already at 40 M (4×).
fn market_spiking(hour: i64) -> Vec<Candle> {
    vec![
        candle(hour - 2 * HOUR, 100.0, 100.0, 10e6),
        candle(hour - HOUR, 100.0, 100.0, 10e6),
        candle(hour, 100.0, 102.5, 40e6),
    ]
}

#[test]
fn sweep_mode_opens_no_kline_stream_and_sweeps_every_symbol() {
    let hour = some_hour();
    let world = World::new("sweep-mode", hour);
    world
        .binance
        .market()
        .set_candles("SPIKEUSDT", market_spiking(hour));
    let running = world.start_at(hour + 9 * MINUTE + 50_000, "sweep");
    let posts = world
        .backend
        .wait_for_requests(PATH, 1, Duration::from_secs(40));
    assert_eq!(posts.len(), 1, "log:\n{}", running.log_text());
    let body = posts[0].json.clone().unwrap_or_default();
    assert_eq!(body["timestamp"], iso(hour + 10 * MINUTE));
    let summary = wait_until(Duration::from_secs(10), || {
        let s = health_summary(&running);
        s.contains(":10").then_some(s)
    })
    .unwrap_or_default();
    assert!(summary.starts_with("swept 3 symbols at :10"), "{summary}");
    assert!(world.binance.ws_subscriptions().is_empty());
    assert_eq!(world.binance.ws_total_connections(), 0);
}
