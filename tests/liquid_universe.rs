//! The liquid_universe job against the fake Binance and the fake backend:
//! the exact post for a known market, hysteresis across ticks, seeding from
//! the backend, and no post at all after a failed or partial Binance read
//! (the backend deletes whatever a post leaves out).

use std::time::Duration;

use serde_json::{json, Value};
use volspike::binance::frames::{TickerValues, Update, Values};
use volspike::clock::from_unix_ms;
use volspike::jobs::liquid_universe::rules::Thresholds;
use volspike::jobs::liquid_universe::LiquidUniverse;
use volspike_fakes::{FakeBackend, FakeBinance, Market, SymbolState};

use crate::common::jobs::JobRig;
use crate::common::TempDir;

const PATH: &str = "/api/market/open-interest/liquid-universe/update";
/// 2025-12-05T10:00:00Z
const T0: u64 = 1_764_928_800_000;

/// AAA $150M and BBB exactly $100M (not above), CCC $80M; plus a
/// quarterly, a TradFi perpetual, a settling contract, a USDC pair and a
/// pending one, each trading $500M: none of them is in the universe.
fn market() -> Market {
    let mut market = Market::new();
    for (symbol, volume) in [("AAAUSDT", 150e6), ("BBBUSDT", 100e6), ("CCCUSDT", 80e6)] {
        market.insert(SymbolState::perpetual(symbol, 1.0, volume));
    }
    let filtered = Market::synthetic(0);
    for symbol in volspike_fakes::FILTERED_OUT_SYMBOLS {
        if let Some(state) = filtered.get(symbol) {
            market.insert(state.clone());
        }
    }
    market
}

fn posts(backend: &FakeBackend) -> Vec<Value> {
    backend
        .requests_to(PATH)
        .into_iter()
        .filter_map(|r| r.json)
        .collect()
}

fn symbols(post: &Value) -> Vec<String> {
    post["symbols"]
        .as_array()
        .map(|s| {
            s.iter()
                .filter_map(|e| e["symbol"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn posts_the_whole_liquid_set_with_hysteresis() {
    let binance = FakeBinance::start(market()).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    let dir = TempDir::new("liquid");
    let rig = JobRig::new(&binance, &backend, &dir.join("state"));
    let mut job = LiquidUniverse::new(&rig.services, Thresholds::default());

    let summary = rig.tick(&mut job, from_unix_ms(T0)).expect("first tick");
    assert!(
        summary.starts_with("1 liquid of 3 universe symbols"),
        "{summary}"
    );
    let first = backend.wait_for_requests(PATH, 1, Duration::from_secs(20));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].header("x-api-key"), Some("test-key"));
    assert_eq!(
        first[0].json,
        Some(json!({
            "symbols": [{
                "symbol": "AAAUSDT",
                "quoteVolume24h": 150000000.0,
                "enteredAt": "2025-12-05T10:00:00Z",
                "lastSeenAt": "2025-12-05T10:00:00Z"
            }],
            "updatedAt": "2025-12-05T10:00:00Z"
        }))
    );
    // The set is shared with open_interest in-process.
    assert_eq!(
        rig.services
            .liquid
            .get()
            .keys()
            .cloned()
            .collect::<Vec<_>>(),
        vec!["AAAUSDT"]
    );

    // AAA falls to $60M (above the $50M exit: stays); CCC rises to $101M (enters).
    binance
        .market()
        .update("AAAUSDT", |s| s.quote_volume_24h = 60e6);
    binance
        .market()
        .update("CCCUSDT", |s| s.quote_volume_24h = 101e6);
    rig.tick(&mut job, from_unix_ms(T0 + 300_000))
        .expect("second tick");
    let second = backend.wait_for_requests(PATH, 2, Duration::from_secs(20));
    let body = second[1].json.clone().unwrap_or_default();
    assert_eq!(symbols(&body), vec!["AAAUSDT", "CCCUSDT"]);
    assert_eq!(
        body["symbols"][0]["enteredAt"], "2025-12-05T10:00:00Z",
        "entry time kept"
    );
    assert_eq!(body["symbols"][0]["lastSeenAt"], "2025-12-05T10:05:00Z");
    assert_eq!(body["symbols"][1]["enteredAt"], "2025-12-05T10:05:00Z");
}

#[test]
fn a_failed_or_partial_read_posts_nothing() {
    let binance = FakeBinance::start(market()).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    let dir = TempDir::new("liquid-fail");
    let rig = JobRig::new(&binance, &backend, &dir.join("state"));
    let mut job = LiquidUniverse::new(&rig.services, Thresholds::default());

    // ticker/24hr fails (exchangeInfo is fine): the tick fails, nothing posted.
    binance.fail_next_on("/fapi/v1/ticker/24hr", 1, 500);
    let failed = rig.tick(&mut job, from_unix_ms(T0));
    let error = format!("{:#}", failed.expect_err("a failed read fails the tick"));
    assert!(
        error.contains("ticker/24hr failed; universe not posted"),
        "{error}"
    );

    // exchangeInfo fails: the same.
    binance.fail_next_on("/fapi/v1/exchangeInfo", 1, 503);
    assert!(rig.tick(&mut job, from_unix_ms(T0 + 300_000)).is_err());

    // Nothing is liquid: posting [] would delete the backend's universe.
    binance
        .market()
        .update("AAAUSDT", |s| s.quote_volume_24h = 1e6);
    let empty = rig.tick(&mut job, from_unix_ms(T0 + 600_000));
    assert!(format!("{:#}", empty.expect_err("empty set")).contains("not posted"));

    std::thread::sleep(Duration::from_millis(500));
    assert!(posts(&backend).is_empty(), "{:?}", posts(&backend));
    assert!(binance
        .requests()
        .iter()
        .any(|r| r.path == "/fapi/v1/ticker/24hr" && r.status == 500));
}

#[test]
fn the_first_tick_starts_from_the_backends_set() {
    let binance = FakeBinance::start(market()).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    // The backend knows CCC as liquid since yesterday; at $80M it stays.
    backend.set_json(
        "GET",
        "/api/market/open-interest/liquid-universe",
        200,
        json!({"updatedAt": "2025-12-05T09:55:00Z", "enterThreshold": 100000000, "exitThreshold": 50000000,
               "symbols": [{"symbol": "CCCUSDT", "quoteVolume24h": 120000000.0, "enteredAt": "2025-12-04T08:00:00Z",
                            "lastSeenAt": "2025-12-05T09:55:00Z", "estimatedPollIntervalSec": 30}],
               "totalSymbols": 1}),
    );
    let dir = TempDir::new("liquid-seed");
    let rig = JobRig::new(&binance, &backend, &dir.join("state"));
    let mut job = LiquidUniverse::new(&rig.services, Thresholds::default());
    rig.tick(&mut job, from_unix_ms(T0)).expect("tick");
    let post = backend.wait_for_requests(PATH, 1, Duration::from_secs(20));
    let body = post[0].json.clone().unwrap_or_default();
    assert_eq!(symbols(&body), vec!["AAAUSDT", "CCCUSDT"]);
    assert_eq!(body["symbols"][1]["enteredAt"], "2025-12-04T08:00:00Z");
    // The seed GET is public: no key sent.
    let seed = backend.requests_to("/api/market/open-interest/liquid-universe");
    assert_eq!(seed.len(), 1);
    assert_eq!(seed[0].header("x-api-key"), None);
}

#[test]
fn volumes_come_from_the_stream_when_it_has_every_symbol() {
    let binance = FakeBinance::start(market()).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    let dir = TempDir::new("liquid-stream");
    let rig = JobRig::new(&binance, &backend, &dir.join("state"));
    let mut job = LiquidUniverse::new(&rig.services, Thresholds::default());
    let now_ms = volspike::clock::unix_ms(std::time::SystemTime::now());
    let ticker = |symbol: &str, volume: f64| Update {
        symbol: symbol.into(),
        event_time: Some(now_ms),
        values: Values::Ticker(TickerValues {
            last_price: Some(1.0),
            quote_volume: Some(volume),
            price_change_percent: None,
        }),
    };
    // Only two of the three universe symbols in the stream: REST is asked.
    let cache = &rig.services.funding.cache;
    cache.apply(
        &[ticker("AAAUSDT", 150e6), ticker("BBBUSDT", 100e6)],
        now_ms,
    );
    let partial = rig.tick(&mut job, from_unix_ms(T0)).expect("tick");
    assert!(partial.ends_with("volumes from ticker/24hr)"), "{partial}");
    let rest_reads = |b: &FakeBinance| {
        b.requests()
            .iter()
            .filter(|r| r.path == "/fapi/v1/ticker/24hr")
            .count()
    };
    assert_eq!(rest_reads(&binance), 1);

    // All three, and the stream says CCC now trades $130M: no REST read, and
    // the stream's figures decide.
    cache.apply(&[ticker("CCCUSDT", 130e6)], now_ms);
    let complete = rig
        .tick(&mut job, from_unix_ms(T0 + 300_000))
        .expect("tick");
    assert!(complete.ends_with("volumes from stream)"), "{complete}");
    assert_eq!(rest_reads(&binance), 1, "no second ticker/24hr");
    let posts = backend.wait_for_requests(PATH, 2, Duration::from_secs(20));
    let body = posts[1].json.clone().unwrap_or_default();
    assert_eq!(symbols(&body), vec!["AAAUSDT", "CCCUSDT"]);
    assert_eq!(body["symbols"][1]["quoteVolume24h"], 130000000.0);
}
