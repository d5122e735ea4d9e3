//! The user_alerts job against fake Binance and fake backends: canned
//! `active` lists, exact trigger / update-checked bodies (with `apiKey` in
//! the body, to the backend the alert came from), tiers, and the real binary.
//!
//! Time is driven by the test (`tick(now)` with chosen times); waits poll a
//! condition with a generous deadline, no timing assertions.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use volspike::backend::{Outbox, USER_ALERT_CHECKED_PATH, USER_ALERT_TRIGGER_PATH};
use volspike::binance::cache::FundingCache;
use volspike::binance::frames::{TickerValues, Update, Values};
use volspike::binance::governor::{GovernorConfig, WeightGovernor};
use volspike::binance::{BinanceRest, Universe};
use volspike::clock::unix_ms;
use volspike::config::UserAlertsConfig;
use volspike::jobs::user_alerts::{Sources, UserAlerts, ACTIVE_PATH};
use volspike::state::StateDir;
use volspike_fakes::{BackendRequest, FakeBackend, FakeBinance, Market, SymbolState};

use crate::common::jobs::{at, fast_outbox, JobRig};
use crate::common::TempDir;

/// Long enough for a loaded 2-core machine; only reached on failure.
const PATIENCE: Duration = Duration::from_secs(30);
/// Key of the primary backend.
const KEY: &str = "primary-key";
/// Key of the dev backend.
const DEV_KEY: &str = "dev-key";

/// Fake Binance and two fake backends, and the job's world on them: an
/// outbox delivering to both and a funding cache the test fills as the
/// stream would.
struct Rig {
    /// Fake Binance (BTCUSDT, ETHUSDT, SYM0001USDT, SYM0002USDT).
    binance: FakeBinance,
    /// The primary backend (key [`KEY`]).
    primary: FakeBackend,
    /// The dev backend (key [`DEV_KEY`]).
    dev: FakeBackend,
    /// Runtime, services (outbox to both backends, REST client on the
    /// fake, funding cache) and delivery loop.
    jobs: JobRig,
    /// The outbox's state directory.
    _dir: TempDir,
}

impl Rig {
    fn start(tag: &str) -> Rig {
        Rig::start_with(tag, "all")
    }

    /// A rig whose second backend takes `dev_kinds` (`VOLSPIKE_DEV_BACKEND_KINDS`).
    fn start_with(tag: &str, dev_kinds: &str) -> Rig {
        let binance = FakeBinance::start(Market::synthetic(4)).expect("fake binance");
        let primary = FakeBackend::start().expect("fake backend");
        primary.expect_api_key(KEY);
        let dev = FakeBackend::start().expect("fake backend");
        dev.expect_api_key(DEV_KEY);
        let dir = TempDir::new(&format!("ua-it-{tag}"));
        let jobs = JobRig::with_env(
            &binance,
            &primary,
            &dir.join("state"),
            &[
                ("ALERT_INGEST_API_KEY", KEY.to_string()),
                ("VOLSPIKE_API_URL_DEV", dev.url()),
                ("VOLSPIKE_API_KEY_DEV", DEV_KEY.to_string()),
                ("VOLSPIKE_DEV_BACKEND_KINDS", dev_kinds.to_string()),
                ("VOLSPIKE_BINANCE_CONCURRENCY", "8".to_string()),
            ],
            fast_outbox(),
        );
        // Default lists: nothing active.
        for b in [&primary, &dev] {
            b.set_json("GET", ACTIVE_PATH, 200, json!({"alerts": []}));
        }
        Rig {
            binance,
            primary,
            dev,
            jobs,
            _dir: dir,
        }
    }

    fn job(&self) -> UserAlerts {
        UserAlerts::from_services(&self.jobs.services, UserAlertsConfig::default())
            .expect("backends are configured")
    }

    fn tick(&self, job: &mut UserAlerts, now: SystemTime) -> anyhow::Result<String> {
        self.jobs.tick(job, now)
    }

    fn last_price(&self, symbol: &str, price: f64) {
        let now = unix_ms(SystemTime::now());
        self.jobs.services.funding.cache.apply(
            &[Update {
                symbol: symbol.into(),
                event_time: Some(now),
                values: Values::Ticker(TickerValues {
                    last_price: Some(price),
                    quote_volume: Some(1e9),
                    price_change_percent: None,
                }),
            }],
            now,
        );
    }

    fn mark(&self, symbol: &str, price: f64, funding: f64) {
        crate::common::jobs::mark(&self.jobs.services.funding.cache, symbol, price, funding);
    }

    /// Waits until both backends got everything enqueued.
    fn drained(&self) {
        self.jobs.drained();
    }
}

/// One alert of an `active` list as docs/backend.md writes it.
fn alert(
    id: &str,
    symbol: &str,
    kind: &str,
    threshold: f64,
    last: Option<f64>,
    tier: &str,
) -> Value {
    json!({
        "id": id, "userId": "user-1", "symbol": symbol, "alertType": kind,
        "threshold": threshold, "lastCheckedValue": last,
        "lastCheckedAt": last.map(|_| "2025-12-05T09:59:30Z"),
        "deliveryMethod": "email", "userTier": tier
    })
}

/// The JSON bodies of `requests`, ordered by `alertId`.
fn bodies(requests: Vec<BackendRequest>) -> Vec<Value> {
    let mut out: Vec<Value> = requests
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.body_raw);
            r.json.unwrap_or(Value::Null)
        })
        .collect();
    out.sort_by_key(|b| b["alertId"].as_str().unwrap_or_default().to_string());
    out
}

#[test]
fn a_canned_list_gives_exact_triggers_and_update_checked() {
    let rig = Rig::start("canned");
    rig.last_price("BTCUSDT", 66_000.0);
    rig.mark("ETHUSDT", 3_400.0, 0.0001);
    rig.mark("SYM0001USDT", 2.0, 0.0001);
    assert!(rig
        .binance
        .market()
        .update("SYM0001USDT", |s| s.open_interest = 1_000.0));
    assert!(rig
        .binance
        .market()
        .update("ETHUSDT", |s| s.last_price = 3_500.0));
    rig.primary.set_json(
        "GET",
        ACTIVE_PATH,
        200,
        json!({"alerts": [
            // Below 65,500 last time, 66,000 now: crossed up.
            alert("a-price", "BTCUSDT", "PRICE_CROSS", 65_500.0, Some(65_000.0), "pro"),
            // 0.0002 → 0.0001 against 0.0005: not crossed.
            alert("a-funding", "ETHUSDT", "FUNDING_CROSS", 0.0005, Some(0.0002), "elite"),
            // First check: no previous value, no cross; price from REST (no ticker cached).
            alert("a-null", "ETHUSDT", "PRICE_CROSS", 3_000.0, None, "pro"),
            // 1,000 contracts × 2.0 = 2,000 USD, from 3,000 above 2,500: crossed down.
            alert("a-oi", "SYM0001USDT", "OI_CROSS", 2_500.0, Some(3_000.0), "pro"),
            // Unchanged since the last check: nothing to send.
            alert("a-same", "ETHUSDT", "FUNDING_CROSS", 0.0005, Some(0.0001), "pro"),
            // Not listed by Binance: skipped with a warning.
            alert("a-unknown", "NOPEUSDT", "PRICE_CROSS", 1.0, Some(0.5), "pro")
        ]}),
    );
    rig.dev.set_json(
        "GET",
        ACTIVE_PATH,
        200,
        json!({"alerts": [
            alert("d-price", "BTCUSDT", "PRICE_CROSS", 67_000.0, Some(68_000.0), "pro")
        ]}),
    );
    let mut job = rig.job();
    let summary = rig.tick(&mut job, at(0)).expect("tick");
    assert!(
        summary.contains("primary: 6 active (0 free not due), 2 triggered, 2 update-checked, 1 unchanged, 1 skipped"),
        "{summary}"
    );
    assert!(
        summary.contains("dev: 1 active (0 free not due), 1 triggered"),
        "{summary}"
    );
    rig.drained();

    // The lists were read with the key as query parameter.
    for (backend, key) in [(&rig.primary, KEY), (&rig.dev, DEV_KEY)] {
        let gets = backend.requests_to(ACTIVE_PATH);
        assert_eq!(gets.len(), 1);
        assert_eq!(gets[0].status, 200);
        assert_eq!(gets[0].query_param("apiKey"), Some(key));
    }
    assert_eq!(
        bodies(rig.primary.requests_to(USER_ALERT_TRIGGER_PATH)),
        vec![
            json!({"alertId": "a-oi", "symbol": "SYM0001USDT", "currentValue": 2000.0,
                   "previousValue": 3000.0, "crossedUp": false, "apiKey": KEY}),
            json!({"alertId": "a-price", "symbol": "BTCUSDT", "currentValue": 66000.0,
                   "previousValue": 65000.0, "crossedUp": true, "apiKey": KEY}),
        ]
    );
    assert_eq!(
        bodies(rig.primary.requests_to(USER_ALERT_CHECKED_PATH)),
        vec![
            json!({"alertId": "a-funding", "lastCheckedValue": 0.0001, "apiKey": KEY}),
            json!({"alertId": "a-null", "lastCheckedValue": 3500.0, "apiKey": KEY}),
        ]
    );
    // The dev backend's alert went to dev only, with dev's key.
    assert_eq!(
        bodies(rig.dev.requests_to(USER_ALERT_TRIGGER_PATH)),
        vec![
            json!({"alertId": "d-price", "symbol": "BTCUSDT", "currentValue": 66000.0,
                    "previousValue": 68000.0, "crossedUp": false, "apiKey": DEV_KEY})
        ]
    );
    assert!(rig.dev.requests_to(USER_ALERT_CHECKED_PATH).is_empty());

    // Binance: one REST price (ETHUSDT, no ticker cached), one openInterest,
    // nothing for the cached values nor for the unknown symbol.
    let asked: Vec<String> = rig
        .binance
        .requests()
        .into_iter()
        .filter(|r| r.path != "/fapi/v1/exchangeInfo")
        .map(|r| format!("{}?{}", r.path, r.query))
        .collect();
    let mut asked = asked;
    asked.sort();
    assert_eq!(
        asked,
        [
            "/fapi/v1/openInterest?symbol=SYM0001USDT",
            "/fapi/v2/ticker/price?symbol=ETHUSDT"
        ]
    );

    // Next tick, same list (delivery to the backend is not instant): the
    // triggered alerts are not triggered twice, nothing moved, nothing sent.
    rig.primary.clear();
    rig.dev.clear();
    rig.tick(&mut job, at(30)).expect("tick 2");
    rig.drained();
    assert!(rig.primary.requests_to(USER_ALERT_TRIGGER_PATH).is_empty());
    assert!(rig.primary.requests_to(USER_ALERT_CHECKED_PATH).is_empty());
    assert!(rig.dev.requests_to(USER_ALERT_TRIGGER_PATH).is_empty());
}

#[test]
fn free_alerts_wait_for_the_next_five_minute_window() {
    let rig = Rig::start("free");
    rig.last_price("BTCUSDT", 66_000.0);
    let free = |last: Option<f64>| json!({"alerts": [alert("f-1", "BTCUSDT", "PRICE_CROSS", 65_500.0, last, "free")]});
    let mut job = rig.job();

    // 10:00:00, the first tick: free alerts are checked (first check: baseline).
    rig.primary.set_json("GET", ACTIVE_PATH, 200, free(None));
    let first = rig.tick(&mut job, at(0)).expect("tick 1");
    assert!(
        first.contains("primary: 1 active (0 free not due)"),
        "{first}"
    );
    rig.drained();
    assert_eq!(
        bodies(rig.primary.requests_to(USER_ALERT_CHECKED_PATH)),
        vec![json!({"alertId": "f-1", "lastCheckedValue": 66000.0, "apiKey": KEY})]
    );

    // 10:00:30: the backend now has 65,000 as last value, so 66,000 would
    // cross; but free alerts are not due until the 10:05 window.
    rig.primary.clear();
    rig.primary
        .set_json("GET", ACTIVE_PATH, 200, free(Some(65_000.0)));
    for secs in [30, 60, 270] {
        let summary = rig.tick(&mut job, at(secs)).expect("tick");
        assert!(
            summary.contains("primary: 1 active (1 free not due), 0 triggered, 0 update-checked"),
            "{summary}"
        );
    }
    rig.drained();
    assert!(rig.primary.requests_to(USER_ALERT_TRIGGER_PATH).is_empty());
    assert!(rig.primary.requests_to(USER_ALERT_CHECKED_PATH).is_empty());
    // Pro alerts are still read every tick: the list was fetched each time.
    assert_eq!(rig.primary.requests_to(ACTIVE_PATH).len(), 3);

    // 10:05:00: a new window, free alerts are checked and this one crosses.
    rig.tick(&mut job, at(300)).expect("tick at 10:05");
    rig.drained();
    assert_eq!(
        bodies(rig.primary.requests_to(USER_ALERT_TRIGGER_PATH)),
        vec![
            json!({"alertId": "f-1", "symbol": "BTCUSDT", "currentValue": 66000.0,
                    "previousValue": 65000.0, "crossedUp": true, "apiKey": KEY})
        ]
    );
}

#[test]
fn one_backend_down_does_not_stop_the_other() {
    let rig = Rig::start("down");
    rig.last_price("BTCUSDT", 66_000.0);
    rig.dev.set_json(
        "GET",
        ACTIVE_PATH,
        200,
        json!({"alerts": [alert("d-1", "BTCUSDT", "PRICE_CROSS", 65_500.0, Some(65_000.0), "pro")]}),
    );
    rig.primary
        .set_json("GET", ACTIVE_PATH, 500, json!({"error": "boom"}));
    let mut job = rig.job();
    let summary = rig.tick(&mut job, at(0)).expect("dev still checked");
    assert!(summary.contains("(list unreadable)"), "{summary}");
    rig.drained();
    assert_eq!(rig.dev.requests_to(USER_ALERT_TRIGGER_PATH).len(), 1);

    // Both unreadable: the tick fails (and /health shows it).
    rig.dev
        .set_json("GET", ACTIVE_PATH, 200, json!({"unexpected": true}));
    assert!(rig.tick(&mut job, at(30)).is_err());
}

#[test]
fn no_backend_no_job() {
    let dir = TempDir::new("ua-it-local");
    let state = StateDir::open(dir.path()).expect("state dir");
    let rest = BinanceRest::new(
        "http://127.0.0.1:9",
        Arc::new(WeightGovernor::new(GovernorConfig::default())),
        1,
        Duration::from_secs(1),
    )
    .expect("client");
    let sources = Sources {
        outbox: Outbox::local(&state),
        rest: rest.clone(),
        universe: Arc::new(Universe::new(rest, Duration::from_secs(60))),
        cache: FundingCache::new(),
        stale_after: Duration::from_secs(180),
    };
    let job = UserAlerts::new(sources, UserAlertsConfig::default());
    assert!(job.is_none());
}

/// The real binary: `run --only user_alerts` reads the list with the key and
/// triggers through the outbox, values from REST (no stream under --only).
#[test]
fn the_binary_runs_user_alerts_end_to_end() {
    let binance = FakeBinance::start(Market::synthetic(4)).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    backend.expect_api_key(KEY);
    // BTCUSDT trades at 65,000 in the synthetic market.
    backend.set_json(
        "GET",
        ACTIVE_PATH,
        200,
        json!({"alerts": [alert("b-1", "BTCUSDT", "PRICE_CROSS", 60_000.0, Some(59_000.0), "pro")]}),
    );
    let dir = crate::common::TempDir::new("user-alerts-bin");
    let fapi = binance.rest_url();
    let url = backend.url();
    let running = crate::common::Running::start(
        &dir,
        &["--only", "user_alerts"],
        &[
            ("BINANCE_FAPI_URL", fapi.as_str()),
            ("BACKEND_URL", url.as_str()),
            ("ALERT_INGEST_API_KEY", KEY),
        ],
    );
    assert!(running.wait_http(), "{}", running.log_text());
    let triggers = backend.wait_for_requests(USER_ALERT_TRIGGER_PATH, 1, PATIENCE);
    assert_eq!(triggers.len(), 1, "{}", running.log_text());
    let body = triggers[0].json.clone().expect("JSON");
    assert_eq!(body["alertId"], "b-1");
    assert_eq!(body["crossedUp"], true);
    assert_eq!(body["previousValue"], 59000.0);
    assert_eq!(body["apiKey"], KEY);
    assert!((body["currentValue"].as_f64().unwrap_or(0.0) - 65_000.0).abs() < 1e-6);
    let gets = backend.requests_to(ACTIVE_PATH);
    assert!(gets.iter().all(|g| g.query_param("apiKey") == Some(KEY)));
    let health = crate::common::wait_until(PATIENCE, || {
        crate::common::http_get(&running.addr, "/health")
            .ok()
            .filter(|(_, body)| body.contains("user_alerts") && body.contains("triggered"))
    });
    assert!(health.is_some(), "{}", running.log_text());
}

#[test]
fn by_default_the_second_backend_is_never_polled_for_user_alerts() {
    // The old deployment checked only the primary backend's user alerts.
    let rig = Rig::start_with("dev-scope", "volume_alert");
    rig.last_price("BTCUSDT", 65_000.0);
    let list = json!({"alerts": [alert("a1", "BTCUSDT", "PRICE_CROSS", 60_000.0, None, "pro")]});
    rig.primary.set_json("GET", ACTIVE_PATH, 200, list.clone());
    rig.dev.set_json("GET", ACTIVE_PATH, 200, list);
    let mut job = rig.job();
    rig.tick(&mut job, at(0)).expect("tick");
    rig.drained();
    assert!(!rig.primary.requests_to(ACTIVE_PATH).is_empty());
    assert!(
        rig.dev.requests().is_empty(),
        "dev got {:?}",
        rig.dev.requests()
    );
}

#[test]
fn a_tradfi_perpetual_outside_the_usdt_universe_is_checked_over_rest() {
    // XAUUSDT is a TRADIFI_PERPETUAL: not in the USDT-perpetual universe, but
    // Binance lists it and the old checker read it over REST like any symbol.
    let rig = Rig::start_with("tradfi", "volume_alert");
    let mut gold = SymbolState::perpetual("XAUUSDT", 4_200.0, 5e8);
    gold.contract_type = "TRADIFI_PERPETUAL".into();
    rig.binance.market().upsert(gold);
    rig.primary.set_json(
        "GET",
        ACTIVE_PATH,
        200,
        json!({"alerts": [
            // 4,100 last time, 4,200 now (REST ticker/price: nothing cached).
            alert("gold", "XAUUSDT", "PRICE_CROSS", 4_150.0, Some(4_100.0), "pro")
        ]}),
    );
    let mut job = rig.job();
    let summary = rig.tick(&mut job, at(0)).expect("tick");
    assert!(summary.contains("1 triggered"), "{summary}");
    rig.drained();
    assert_eq!(
        bodies(rig.primary.requests_to(USER_ALERT_TRIGGER_PATH)),
        vec![
            json!({"alertId": "gold", "symbol": "XAUUSDT", "currentValue": 4200.0,
                    "previousValue": 4100.0, "crossedUp": true, "apiKey": KEY})
        ]
    );
    assert!(rig
        .binance
        .requests()
        .iter()
        .any(|r| r.path == "/fapi/v2/ticker/price" && r.query.contains("XAUUSDT")));
}
