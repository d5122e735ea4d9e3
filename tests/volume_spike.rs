//! The volume_spike job against the fake Binance and the fake backend, with
//! time driven by the test: each tick is called with the wall-clock time it
//! stands for, and the fake's candles are set for that moment.

use std::time::Duration;

use serde_json::{json, Value};
use volspike::binance::frames::{MarkValues, Update, Values};
use volspike::clock::from_unix_ms;
use volspike::jobs::volume_spike::rules::Rules;
use volspike::jobs::volume_spike::VolumeSpike;
use volspike_fakes::{Candle, FakeBackend, FakeBinance, Market, SymbolState};

use crate::common::jobs::JobRig;
use crate::common::TempDir;

const HOUR: i64 = 3_600_000;
/// 2025-12-03T13:00:00Z
const H13: i64 = 1_764_766_800_000;
const H14: i64 = H13 + HOUR;
const H15: i64 = H14 + HOUR;
const MINUTE: u64 = 60_000;
const PATH: &str = "/api/volume-alerts/ingest";

fn candle(open_time_ms: i64, open: f64, close: f64, quote_volume: f64) -> Candle {
    Candle::moving(open_time_ms, open, close, quote_volume)
}

/// BTC spikes in the 14:00 hour (10M → 40M so far); ETH is flat.
fn market() -> Market {
    let mut market = Market::new();
    let mut btc = SymbolState::perpetual("BTCUSDT", 102.5, 5e9);
    btc.candles = vec![
        candle(H13, 100.0, 100.0, 10e6),
        candle(H14, 100.0, 102.5, 40e6),
    ];
    market.insert(btc);
    let mut eth = SymbolState::perpetual("ETHUSDT", 3000.0, 2e9);
    eth.candles = vec![
        candle(H13, 3000.0, 3000.0, 50e6),
        candle(H14, 3000.0, 2990.0, 60e6),
    ];
    market.insert(eth);
    market
}

/// One job instance in its world; dropping it stops delivery (a restart).
struct Rig {
    rig: JobRig,
    job: VolumeSpike,
}

impl Rig {
    fn new(binance: &FakeBinance, backend: &FakeBackend, state: &std::path::Path) -> Rig {
        let rig = JobRig::new(binance, backend, state);
        rig.services.funding.cache.apply(
            &[Update {
                symbol: "BTCUSDT".into(),
                event_time: Some(1_764_770_700_000),
                values: Values::Mark(MarkValues {
                    mark_price: Some(102.4),
                    index_price: Some(102.3),
                    funding_rate: Some(0.0001),
                    next_funding_time: Some(1_764_777_600_000),
                }),
            }],
            1_764_770_700_000,
        );
        let job = VolumeSpike::new(&rig.services, Rules::default());
        Rig { rig, job }
    }

    fn tick(&mut self, at_ms: i64) -> String {
        self.rig
            .tick(&mut self.job, from_unix_ms(at_ms as u64))
            .expect("tick succeeds")
    }
}

fn bodies(backend: &FakeBackend) -> Vec<Value> {
    backend
        .requests_to(PATH)
        .into_iter()
        .filter_map(|r| r.json)
        .collect()
}

#[test]
fn a_spike_posts_exactly_the_backend_payload_and_updates_follow() {
    let binance = FakeBinance::start(market()).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    // The hour-start OI snapshot the backend would have: 1000 contracts.
    backend.set_json(
        "GET",
        "/api/market/open-interest/snapshot",
        200,
        json!({"found": true, "symbol": "BTCUSDT", "openInterest": 1000.0, "openInterestUsd": null,
               "markPrice": null, "ts": "2025-12-03T14:00:00Z", "source": "realtime"}),
    );
    binance
        .market()
        .update("BTCUSDT", |s| s.open_interest = 1100.0);
    let dir = TempDir::new("volume-spike");
    let mut rig = Rig::new(&binance, &backend, &dir.join("state"));

    // 14:05: BTC at 4× the previous hour and 40M → one SPIKE.
    let summary = rig.tick(H14 + 5 * MINUTE as i64);
    assert!(summary.contains("1 spikes"), "{summary}");
    let posts = backend.wait_for_requests(PATH, 1, Duration::from_secs(20));
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(post.method, "POST");
    assert_eq!(post.header("x-api-key"), Some("test-key"));
    assert!(post
        .header("content-type")
        .unwrap_or("")
        .starts_with("application/json"));
    assert_eq!(
        post.json,
        Some(json!({
            "symbol": "BTCUSDT",
            "asset": "BTC",
            "currentVolume": 40000000.0,
            "previousVolume": 10000000.0,
            "volumeRatio": 4.0,
            "price": 102.5,
            "fundingRate": 0.0001,
            "candleDirection": "bullish",
            "message": "BTC hourly volume 40.00M (4.00× prev) — VOLUME SPIKE!",
            "timestamp": "2025-12-03T14:05:00Z",
            "detectionTime": "2025-12-03T14:05:00Z",
            "hourTimestamp": "2025-12-03T14:00:00Z",
            "isUpdate": false,
            "alertType": "SPIKE",
            "priceChange": 0.025,
            "oiChange": 0.1
        }))
    );
    // The snapshot was asked for the hour start of the primary backend.
    let snapshot = backend.requests_to("/api/market/open-interest/snapshot");
    assert_eq!(
        snapshot.first().and_then(|r| r.query_param("ts")),
        Some("2025-12-03T14:00:00Z")
    );

    // 14:10: still a spike, already alerted: nothing new.
    rig.tick(H14 + 10 * MINUTE as i64);

    // A restart in the middle of the hour: a new job on the same state dir.
    drop(rig);
    let mut rig = Rig::new(&binance, &backend, &dir.join("state"));
    rig.tick(H14 + 15 * MINUTE as i64);
    // 14:30: the first alert came at :05 (≤ :20) → HALF_UPDATE, whatever the ratio.
    binance.market().set_candles(
        "BTCUSDT",
        vec![
            candle(H13, 100.0, 100.0, 10e6),
            candle(H14, 100.0, 99.0, 20e6),
        ],
    );
    rig.tick(H14 + 30 * MINUTE as i64);
    // 15:00: FULL_UPDATE about the 14:00 hour, from closed candles (limit=3).
    binance.market().set_candles(
        "BTCUSDT",
        vec![
            candle(H13, 100.0, 100.0, 10e6),
            candle(H14, 100.0, 101.0, 55e6),
            candle(H15, 101.0, 101.0, 0.1e6),
        ],
    );
    let at_hour = rig.tick(H15 + 500);
    assert!(at_hour.contains("klines limit 3"), "{at_hour}");

    let all = backend.wait_for_requests(PATH, 3, Duration::from_secs(20));
    let types: Vec<_> = all
        .iter()
        .filter_map(|r| r.json.as_ref())
        .map(|j| j["alertType"].clone())
        .collect();
    assert_eq!(
        types,
        vec![json!("SPIKE"), json!("HALF_UPDATE"), json!("FULL_UPDATE")],
        "no re-fire across the restart"
    );
    let half = &all[1].json.clone().unwrap_or_default();
    assert_eq!(
        half["message"],
        "HALF-UPDATE: BTC hourly volume 20.00M (2.00× prev) — VOLUME SPIKE!"
    );
    assert_eq!(half["isUpdate"], true);
    assert_eq!(half["candleDirection"], "bearish");
    let full = &all[2].json.clone().unwrap_or_default();
    assert_eq!(
        full["message"],
        "UPDATE: BTC hourly volume 55.00M (5.50× prev) — VOLUME SPIKE!"
    );
    assert_eq!(full["hourTimestamp"], "2025-12-03T14:00:00Z");
    // ETH never spiked.
    assert!(bodies(&backend).iter().all(|b| b["symbol"] == "BTCUSDT"));
    // The sweep went through the klines endpoint with the limits of docs/jobs.md.
    let limits: Vec<String> = binance
        .requests()
        .iter()
        .filter(|r| r.path == "/fapi/v1/klines" && r.query.contains("BTCUSDT"))
        .map(|r| r.query.clone())
        .collect();
    assert!(
        limits.iter().any(|q| q.contains("limit=2"))
            && limits.iter().any(|q| q.contains("limit=3")),
        "{limits:?}"
    );
}

#[test]
fn a_quiet_market_posts_nothing() {
    let mut quiet = Market::new();
    for (symbol, volume) in [("BTCUSDT", 50e6), ("ETHUSDT", 30e6), ("SOLUSDT", 0.5e6)] {
        let mut s = SymbolState::perpetual(symbol, 10.0, 1e9);
        // 2.9× is under the ratio; SOL is 10× but tiny.
        let current = if symbol == "SOLUSDT" {
            5e6 * 0.5
        } else {
            volume * 2.9
        };
        s.candles = vec![
            candle(H13, 10.0, 10.0, volume),
            candle(H14, 10.0, 11.0, current),
        ];
        quiet.insert(s);
    }
    let binance = FakeBinance::start(quiet).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    let dir = TempDir::new("volume-quiet");
    let mut rig = Rig::new(&binance, &backend, &dir.join("state"));
    for minute in [5, 10, 30, 55] {
        let summary = rig.tick(H14 + minute * MINUTE as i64);
        assert!(summary.contains("0 spikes"), "{summary}");
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(bodies(&backend).is_empty(), "{:?}", bodies(&backend));
}

#[test]
fn the_volume_ratio_goes_at_full_precision_and_the_message_at_two_decimals() {
    // 15M → 50M: the old script sent 3.3333333333333335.
    let mut market = Market::new();
    let mut btc = SymbolState::perpetual("BTCUSDT", 100.0, 5e9);
    btc.candles = vec![
        candle(H13, 100.0, 100.0, 15e6),
        candle(H14, 100.0, 101.0, 50e6),
    ];
    market.insert(btc);
    let binance = FakeBinance::start(market).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    let dir = TempDir::new("volume-ratio");
    let mut rig = Rig::new(&binance, &backend, &dir.join("state"));
    let summary = rig.tick(H14 + 5 * MINUTE as i64);
    assert!(summary.contains("1 spikes"), "{summary}");
    let posts = backend.wait_for_requests(PATH, 1, Duration::from_secs(20));
    let body = posts[0].json.clone().unwrap_or_default();
    assert_eq!(body["volumeRatio"].as_f64(), Some(3.3333333333333335));
    assert_eq!(
        body["message"],
        "BTC hourly volume 50.00M (3.33× prev) — VOLUME SPIKE!"
    );
}

/// `n` symbols spiking in the 14:00 hour (10M → 40M).
fn spiking(n: usize) -> Market {
    let mut market = Market::new();
    for i in 0..n {
        let mut s = SymbolState::perpetual(&format!("S{i}USDT"), 102.5, 5e9);
        s.open_interest = 1100.0;
        s.candles = vec![
            candle(H13, 100.0, 100.0, 10e6),
            candle(H14, 100.0, 102.5, 40e6),
        ];
        market.insert(s);
    }
    market
}

const SNAPSHOT: &str = "/api/market/open-interest/snapshot";

#[test]
fn a_slow_backend_never_makes_volume_alerts_late_they_go_without_oi_change() {
    let binance = FakeBinance::start(spiking(10)).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    backend.set_json(
        "GET",
        SNAPSHOT,
        200,
        json!({"found": true, "symbol": "X", "openInterest": 1000.0, "ts": "2025-12-03T14:00:00Z"}),
    );
    // Every snapshot lookup hangs past the client's 10 s timeout.
    backend.delay_route("GET", SNAPSHOT, Duration::from_secs(30));
    let dir = TempDir::new("volume-slow");
    let mut rig = Rig::new(&binance, &backend, &dir.join("state"));
    let omitted_before = rig.rig.services.oi_change_omissions.totals();
    let started = std::time::Instant::now();
    let summary = rig.tick(H14 + 5 * MINUTE as i64);
    let took = started.elapsed();
    // /metrics counts them too (other tests may add: at least these 10).
    let omitted = rig.rig.services.oi_change_omissions.totals();
    assert!(
        omitted.past_budget >= omitted_before.past_budget + 10,
        "{omitted_before:?} → {omitted:?}"
    );
    println!("figure: tick with 10 spikes and a hanging snapshot route took {took:?}");
    assert!(summary.contains("10 spikes"), "{summary}");
    assert!(summary.contains("oiChange omitted for 10"), "{summary}");
    // Sequential lookups would take 10 × 10 s; one shared budget is 5 s.
    assert!(took < Duration::from_secs(30), "{took:?}");
    // The lookups ran side by side, not one after another.
    let asked = backend.requests_to(SNAPSHOT).len();
    assert!(asked >= 8, "{asked} lookups started");
    let posts = backend.wait_for_requests(PATH, 10, Duration::from_secs(20));
    assert_eq!(posts.len(), 10);
    assert!(posts
        .iter()
        .all(|p| p.json.as_ref().is_some_and(|j| j.get("oiChange").is_none())));
}

#[test]
fn a_snapshot_far_from_the_hour_start_is_not_used() {
    let binance = FakeBinance::start(spiking(2)).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    // The newest sample before 14:00 is 72 hours old.
    backend.set_json(
        "GET",
        SNAPSHOT,
        200,
        json!({"found": true, "symbol": "X", "openInterest": 1000.0, "ts": "2025-11-30T14:00:00Z"}),
    );
    let dir = TempDir::new("volume-stale");
    let mut rig = Rig::new(&binance, &backend, &dir.join("state"));
    let omitted_before = rig.rig.services.oi_change_omissions.totals();
    let summary = rig.tick(H14 + 5 * MINUTE as i64);
    assert!(summary.contains("and 2 (stale snapshot)"), "{summary}");
    let omitted = rig.rig.services.oi_change_omissions.totals();
    assert!(
        omitted.stale_snapshot >= omitted_before.stale_snapshot + 2,
        "{omitted_before:?} → {omitted:?}"
    );
    let posts = backend.wait_for_requests(PATH, 2, Duration::from_secs(20));
    assert_eq!(posts.len(), 2);
    assert!(posts
        .iter()
        .all(|p| p.json.as_ref().is_some_and(|j| j.get("oiChange").is_none())));
    // 9 minutes before the hour start is close enough.
    backend.set_json(
        "GET",
        SNAPSHOT,
        200,
        json!({"found": true, "symbol": "X", "openInterest": 1000.0, "ts": "2025-12-03T13:51:00.000Z"}),
    );
    binance.market().update("S0USDT", |s| {
        s.candles = vec![
            candle(H13, 100.0, 100.0, 10e6),
            candle(H14, 100.0, 99.0, 20e6),
        ]
    });
    rig.tick(H14 + 30 * MINUTE as i64);
    let posts = backend.wait_for_requests(PATH, 3, Duration::from_secs(20));
    let update = posts[2].json.clone().unwrap_or_default();
    assert_eq!(update["alertType"], "HALF_UPDATE");
    assert_eq!(update["oiChange"], 0.1);
}
