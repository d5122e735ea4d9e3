//! The open_interest job against fake Binance and fake backend, with time
//! driven by the test: the job is built directly and `tick(now)` is called
//! with chosen times 30 s apart, while the fakes answer over real sockets.
//!
//! No timing assertions: waits poll a condition with a generous deadline.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use volspike::backend::{Outbox, OI_ALERT_PATH, OI_SAMPLES_PATH};
use volspike::config::OpenInterestConfig;
use volspike::jobs::liquid_universe::rules::Member;
use volspike::jobs::liquid_universe::LiquidSet;
use volspike::jobs::open_interest::{OpenInterest, Settings, STATE_FILE};
use volspike::state::StateDir;
use volspike_fakes::{BackendRequest, FakeBackend, FakeBinance, Market, SymbolState};

use crate::common::jobs::{self, fast_outbox, mark, JobRig, T0_MS};
use crate::common::TempDir;

/// Long enough for a loaded 2-core machine; only reached on failure.
const PATIENCE: Duration = Duration::from_secs(30);
/// The backend key.
const KEY: &str = "oi-test-key";

/// The tick `i` × 30 s after T0 (the tape's first tick).
fn at(i: u64) -> SystemTime {
    jobs::at(i * 30)
}

/// The job's services on `binance` and `backend` (key [`KEY`]) with
/// `ceiling_pct` % of Binance's weight for the appliance, and the
/// directory holding the outbox's state.
fn world(
    tag: &str,
    binance: &FakeBinance,
    backend: &FakeBackend,
    ceiling_pct: u32,
) -> (JobRig, TempDir) {
    let dir = TempDir::new(&format!("oi-it-{tag}"));
    let rig = JobRig::with_env(
        binance,
        backend,
        &dir.join("state"),
        &[
            ("ALERT_INGEST_API_KEY", KEY.to_string()),
            ("VOLSPIKE_WEIGHT_CEILING_PCT", ceiling_pct.to_string()),
            ("VOLSPIKE_BINANCE_CONCURRENCY", "8".to_string()),
        ],
        fast_outbox(),
    );
    (rig, dir)
}

/// The job's own state in `dir`.
fn state(dir: &TempDir) -> StateDir {
    StateDir::open(dir.path()).expect("state dir")
}

/// Makes `symbols` the liquid set.
fn liquid(set: &LiquidSet, symbols: &[String]) {
    set.set(
        symbols
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    Member {
                        quote_volume_24h: 5e8,
                        entered_at_ms: T0_MS,
                        last_seen_at_ms: T0_MS,
                    },
                )
            })
            .collect(),
    );
}

/// The fixture of most tests: fake Binance with a few symbols whose open
/// interest the test sets, a fake backend, and the job's services on them
/// (outbox, funding cache, liquid set, REST client with the default budget).
struct Rig {
    /// Fake Binance (BTCUSDT, ETHUSDT, SYM0001USDT in the liquid set).
    binance: FakeBinance,
    /// Fake backend that records the posts.
    backend: FakeBackend,
    /// Runtime, services and delivery loop.
    jobs: JobRig,
    /// The outbox's state directory.
    _dir: TempDir,
}

impl Rig {
    fn start(tag: &str) -> Rig {
        let binance = FakeBinance::start(Market::synthetic(4)).expect("fake binance");
        let backend = FakeBackend::start().expect("fake backend");
        backend.expect_api_key(KEY);
        let (jobs, dir) = world(tag, &binance, &backend, 50);
        let cache = &jobs.services.funding.cache;
        let symbols: Vec<String> = ["BTCUSDT", "ETHUSDT", "SYM0001USDT"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for s in &symbols {
            mark(cache, s, 100.0, 0.0001);
        }
        mark(cache, "BTCUSDT", 65_000.0, 0.0001);
        liquid(&jobs.services.liquid, &symbols);
        let rig = Rig {
            binance,
            backend,
            jobs,
            _dir: dir,
        };
        rig.set_oi("BTCUSDT", 200_000.0);
        rig.set_oi("ETHUSDT", 1_000_000.0);
        rig.set_oi("SYM0001USDT", 10_000.0);
        rig
    }

    fn set_oi(&self, symbol: &str, contracts: f64) {
        assert!(self
            .binance
            .market()
            .update(symbol, |s| s.open_interest = contracts));
    }

    fn job(&self, state: &TempDir, settings: Settings) -> OpenInterest {
        self.job_with(state, settings, self.jobs.services.outbox.clone())
    }

    fn job_with(&self, state: &TempDir, settings: Settings, outbox: Outbox) -> OpenInterest {
        job_on(&self.jobs, state, settings, outbox)
    }
}

/// The job on `rig`'s REST client, funding cache and liquid set, posting
/// through `outbox`, with its own state in `state`.
fn job_on(rig: &JobRig, state: &TempDir, settings: Settings, outbox: Outbox) -> OpenInterest {
    let services = &rig.services;
    OpenInterest::new(
        services.rest.clone(),
        services.funding.cache.clone(),
        services.liquid.clone(),
        outbox,
        self::state(state),
        settings,
    )
}

/// Ticks `job` at each of `ticks`, asserting each tick succeeds.
fn run(rig: &JobRig, job: &mut OpenInterest, ticks: impl IntoIterator<Item = u64>) {
    for i in ticks {
        let summary = rig.tick(job, at(i));
        assert!(summary.is_ok(), "tick {i}: {summary:?}");
    }
}

fn bodies(requests: &[BackendRequest]) -> Vec<Value> {
    requests
        .iter()
        .map(|r| r.json.clone().unwrap_or(Value::Null))
        .collect()
}

#[test]
fn a_four_percent_jump_after_five_flat_minutes_alerts_once_with_every_field() {
    let rig = Rig::start("jump");
    let state = TempDir::new("jump-state");
    let mut job = rig.job(&state, Settings::default());
    // Ticks 0..=10: five minutes of flat open interest.
    run(&rig.jobs, &mut job, 0..=10);
    // Tick 11 (10:05:30): +4% = 8,000 contracts; mark +2%.
    rig.set_oi("BTCUSDT", 208_000.0);
    mark(
        &rig.jobs.services.funding.cache,
        "BTCUSDT",
        66_300.0,
        0.0001,
    );
    let summary = rig.jobs.tick(&mut job, at(11)).expect("tick 11");
    assert!(summary.contains("1 alerts"), "{summary}");
    // It stays outside for a while: no repeat.
    run(&rig.jobs, &mut job, 12..=14);
    rig.jobs.drained();

    let alerts = rig.backend.requests_to(OI_ALERT_PATH);
    assert_eq!(alerts.len(), 1, "{:?}", bodies(&alerts));
    assert_eq!(alerts[0].status, 200);
    assert_eq!(alerts[0].header("x-api-key"), Some(KEY));
    assert_eq!(
        alerts[0].json,
        Some(json!({
            "symbol": "BTCUSDT",
            "direction": "UP",
            "baseline": 200000.0,
            "current": 208000.0,
            "pctChange": 0.04,
            "absChange": 8000.0,
            "timestamp": "2025-12-05T10:05:30Z",
            "source": "oi_realtime_poller",
            "timeframe": "5 min",
            "priceChange": 0.02,
            "fundingRate": 0.0001
        }))
    );
}

#[test]
fn a_flat_tape_and_a_small_contract_symbol_never_alert() {
    let rig = Rig::start("flat");
    let state = TempDir::new("flat-state");
    let mut job = rig.job(&state, Settings::default());
    run(&rig.jobs, &mut job, 0..=10);
    // SYM0001USDT +10% but only 1,000 contracts: under the 5,000 floor.
    rig.set_oi("SYM0001USDT", 11_000.0);
    // ETHUSDT moves 1%: under the threshold.
    rig.set_oi("ETHUSDT", 1_010_000.0);
    run(&rig.jobs, &mut job, 11..=20);
    rig.jobs.drained();
    assert!(rig.backend.requests_to(OI_ALERT_PATH).is_empty());
    // Every tick posted its samples.
    assert_eq!(rig.backend.requests_to(OI_SAMPLES_PATH).len(), 21);
}

#[test]
fn samples_go_in_chunks_of_at_most_100_with_the_exact_shape() {
    let binance = FakeBinance::start(Market::synthetic(250)).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    backend.expect_api_key(KEY);
    let (jobs, _dir) = world("chunks", &binance, &backend, 50);
    let market = binance.market();
    let symbols: Vec<String> = market
        .snapshot()
        .iter()
        .filter(|s| s.is_usdt_perpetual_trading())
        .map(|s| s.symbol.clone())
        .collect();
    assert_eq!(symbols.len(), 250);
    // The stream knows half the symbols; the rest need the REST fallback.
    for s in symbols.iter().step_by(2) {
        mark(&jobs.services.funding.cache, s, 2.0, 0.0001);
    }
    liquid(&jobs.services.liquid, &symbols);
    let state = TempDir::new("chunks-state");
    let mut job = job_on(
        &jobs,
        &state,
        Settings::default(),
        jobs.services.outbox.clone(),
    );
    binance.clear_requests();
    let summary = jobs.tick(&mut job, at(0)).expect("tick");
    assert!(
        summary.starts_with("250 symbols polled, 0 failed, 250 samples posted, 0 alerts"),
        "{summary}"
    );
    jobs.drained();

    // Binance: one openInterest per symbol, ONE all-symbol ticker/price.
    let asked = binance.requests();
    let oi_calls = asked
        .iter()
        .filter(|r| r.path == "/fapi/v1/openInterest")
        .count();
    let price_calls: Vec<_> = asked
        .iter()
        .filter(|r| r.path == "/fapi/v2/ticker/price")
        .collect();
    assert_eq!(oi_calls, 250);
    assert_eq!(price_calls.len(), 1);
    assert!(!price_calls[0].query.contains("symbol"));

    let posts = backend.requests_to(OI_SAMPLES_PATH);
    assert_eq!(posts.len(), 3);
    let snapshot = market.snapshot();
    let mut seen = BTreeMap::new();
    for post in &posts {
        assert_eq!(post.header("x-api-key"), Some(KEY));
        let body = post.json.clone().expect("JSON body");
        let mut fields: Vec<&str> = body
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, ["data", "source", "timestamp", "totalSymbols"]);
        assert_eq!(body["source"], "realtime");
        assert_eq!(body["timestamp"], "2025-12-05T10:00:00Z");
        assert_eq!(body["totalSymbols"], 250);
        let data = body["data"].as_array().expect("data");
        assert!(!data.is_empty() && data.len() <= 100, "{}", data.len());
        for item in data {
            let mut keys: Vec<&str> = item
                .as_object()
                .expect("item")
                .keys()
                .map(String::as_str)
                .collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                ["markPrice", "openInterest", "openInterestUsd", "symbol"]
            );
            let symbol = item["symbol"].as_str().expect("symbol");
            let state: &SymbolState = snapshot.get(symbol).expect("listed");
            let contracts = item["openInterest"].as_f64().expect("contracts");
            let price = item["markPrice"].as_f64().expect("price");
            // The fake sends contracts with 3 decimals and prices with 8.
            assert!((contracts - state.open_interest).abs() < 0.001, "{symbol}");
            // Cached marks where the stream had them, else ticker/price (the last price).
            let expected_price = if symbols.iter().position(|s| s == symbol).unwrap_or(1) % 2 == 0 {
                2.0
            } else {
                state.last_price
            };
            assert!(
                (price - expected_price).abs() <= 1e-8,
                "{symbol}: {price} vs {expected_price}"
            );
            // serde_json's default float parser may be one ulp off.
            let usd = item["openInterestUsd"].as_f64().expect("usd");
            assert!(
                (usd - contracts * price).abs() <= 1e-12 * usd.abs(),
                "{symbol}: {usd} vs {contracts} × {price}"
            );
            seen.insert(symbol.to_string(), ());
        }
    }
    assert_eq!(seen.len(), 250, "every symbol exactly once");
}

#[test]
fn cooldown_and_history_hold_across_a_restart() {
    let rig = Rig::start("restart");
    let state = TempDir::new("restart-state");
    {
        let mut job = rig.job(&state, Settings::default());
        run(&rig.jobs, &mut job, 0..=10);
        rig.set_oi("BTCUSDT", 208_000.0);
        run(&rig.jobs, &mut job, 11..=11);
    } // dropped: the process is gone
    rig.jobs.drained();
    assert_eq!(rig.backend.requests_to(OI_ALERT_PATH).len(), 1);

    // A copy of the state for the control run below.
    let control_state = TempDir::new("restart-control");
    std::fs::create_dir_all(control_state.path()).expect("control dir");
    std::fs::copy(
        state.path().join(STATE_FILE),
        control_state.path().join(STATE_FILE),
    )
    .expect("copy state");

    // The restarted job gets a brand-new outbox (its own dedup ledger is
    // empty), so only the job's persisted cooldown can stop a second alert.
    let fresh_backend = FakeBackend::start().expect("fake backend");
    let (fresh, _fresh_dir) = world("restart-fresh", &rig.binance, &fresh_backend, 50);
    let replay = |rig: &Rig| {
        rig.set_oi("BTCUSDT", 200_000.0);
    };
    {
        let mut job = rig.job_with(&state, Settings::default(), fresh.services.outbox.clone());
        // Back inside at 10:06:00, crossing again at 10:06:30: 60 s after
        // the first alert, well within the 600 s cooldown.
        replay(&rig);
        run(&rig.jobs, &mut job, 12..=12);
        rig.set_oi("BTCUSDT", 208_000.0);
        run(&rig.jobs, &mut job, 13..=14);
    }
    fresh.drained();
    assert!(
        fresh_backend.requests_to(OI_ALERT_PATH).is_empty(),
        "{:?}",
        bodies(&fresh_backend.requests_to(OI_ALERT_PATH))
    );
    let saved = std::fs::read_to_string(state.path().join(STATE_FILE)).expect("state file");
    assert!(saved.contains("5 min|UP"), "{saved}");

    // Control: the same replay with a 50 s cooldown does alert, so the
    // replay is a real crossing (history survived) and the cooldown is what
    // held it above. (50 s, not 60: samples carry their read time, a few ms
    // after the due time, so the alerts are not exactly 60 s apart.)
    let control_backend = FakeBackend::start().expect("fake backend");
    let (control, _control_dir) =
        world("restart-control-outbox", &rig.binance, &control_backend, 50);
    let short = Settings::from_config(
        &OpenInterestConfig {
            cooldowns: [
                Duration::from_secs(50),
                Duration::from_secs(900),
                Duration::from_secs(3600),
            ],
            ..OpenInterestConfig::default()
        },
        Duration::from_secs(180),
    );
    {
        let mut job = rig.job_with(&control_state, short, control.services.outbox.clone());
        replay(&rig);
        run(&rig.jobs, &mut job, 12..=12);
        rig.set_oi("BTCUSDT", 208_000.0);
        run(&rig.jobs, &mut job, 13..=14);
    }
    control.drained();
    let again = control_backend.requests_to(OI_ALERT_PATH);
    assert_eq!(again.len(), 1, "{:?}", bodies(&again));
    assert_eq!(
        again[0].json.as_ref().map(|b| b["timestamp"].clone()),
        Some(json!("2025-12-05T10:06:30Z"))
    );
}

#[test]
fn a_corrupt_state_file_starts_empty() {
    let rig = Rig::start("corrupt");
    let state = TempDir::new("corrupt-state");
    std::fs::create_dir_all(state.path()).expect("dir");
    std::fs::write(
        state.path().join(STATE_FILE),
        b"{\"version\":1,\"symbols\":",
    )
    .expect("write");
    let mut job = rig.job(&state, Settings::default());
    run(&rig.jobs, &mut job, 0..=1);
    let saved = std::fs::read(state.path().join(STATE_FILE)).expect("state file");
    let parsed: Value = serde_json::from_slice(&saved).expect("valid JSON again");
    assert_eq!(parsed["version"], 1);
    assert_eq!(
        parsed["symbols"]["BTCUSDT"]["samples"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[test]
fn no_liquid_symbols_is_a_quiet_tick() {
    let rig = Rig::start("empty");
    let state = TempDir::new("empty-state");
    let mut job = OpenInterest::new(
        rig.jobs.services.rest.clone(),
        rig.jobs.services.funding.cache.clone(),
        LiquidSet::default(),
        rig.jobs.services.outbox.clone(),
        self::state(&state),
        Settings::default(),
    );
    rig.binance.clear_requests();
    assert_eq!(
        rig.jobs.tick(&mut job, at(0)).expect("tick"),
        "no liquid symbols yet"
    );
    assert!(rig.binance.requests().is_empty());
}

/// Collects formatted log output.
#[derive(Clone, Default)]
struct Captured(
    /// Everything written so far.
    Arc<Mutex<Vec<u8>>>,
);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut v) => v.extend_from_slice(buf),
            Err(p) => p.into_inner().extend_from_slice(buf),
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        let bytes = match self.0.lock() {
            Ok(v) => v.clone(),
            Err(p) => p.into_inner().clone(),
        };
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

// The ticks run on this thread (`block_on`), so the job's log events happen
// where the capturing subscriber is installed.
#[test]
fn a_small_budget_stretches_the_poll_and_says_so_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let binance = FakeBinance::start(Market::synthetic(60)).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    let (jobs, _dir) = world("stretch", &binance, &backend, 5);
    let symbols: Vec<String> = binance.market().symbols().into_iter().take(40).collect();
    for s in &symbols {
        mark(&jobs.services.funding.cache, s, 1.0, 0.0001);
    }
    liquid(&jobs.services.liquid, &symbols);
    // 5% of 2400 = 120/min, of which this job may use half: 60/min. Forty
    // symbols every 30 s would need 80/min: stretched to 40 s.
    let state = TempDir::new("stretch-state");
    let mut job = job_on(
        &jobs,
        &state,
        Settings::default(),
        jobs.services.outbox.clone(),
    );
    let first = jobs.tick(&mut job, at(0)).expect("tick 0");
    assert!(first.contains("(poll stretched to 40 s)"), "{first}");
    let second = jobs.tick(&mut job, at(1)).expect("tick 1");
    assert!(
        second.starts_with("waiting: poll stretched to 40 s"),
        "{second}"
    );
    let third = jobs.tick(&mut job, at(2)).expect("tick 2");
    assert!(third.starts_with("40 symbols polled"), "{third}");
    drop(jobs);

    let log = captured.text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("stretching")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0]
            .contains("open_interest: 40 symbols need 80 weight/min; stretching the poll to 40 s"),
        "{}",
        lines[0]
    );
    // Only the polls reached Binance: two sweeps of forty.
    let oi_calls = binance
        .requests()
        .iter()
        .filter(|r| r.path == "/fapi/v1/openInterest")
        .count();
    assert_eq!(oi_calls, 80);
}

/// The real binary runs the job (`--local`: samples only logged) and
/// reports it in `/health`; without a liquid set yet it polls nothing.
#[test]
fn the_binary_runs_open_interest() {
    let binance = FakeBinance::start(Market::synthetic(4)).expect("fake binance");
    let dir = crate::common::TempDir::new("oi-bin");
    let fapi = binance.rest_url();
    let running = crate::common::Running::start(
        &dir,
        &["--local", "--only", "open_interest"],
        &[("BINANCE_FAPI_URL", fapi.as_str())],
    );
    assert!(running.wait_http(), "{}", running.log_text());
    let health = crate::common::wait_until(PATIENCE, || {
        crate::common::http_get(&running.addr, "/health")
            .ok()
            .filter(|(_, body)| body.contains("no liquid symbols yet"))
    });
    assert!(health.is_some(), "{}", running.log_text());
    let (_, body) = health.unwrap_or_default();
    let parsed: Value = serde_json::from_str(&body).expect("health JSON");
    assert_eq!(parsed["jobs"]["open_interest"]["schedule"], "every 30s");
    assert!(binance
        .requests()
        .iter()
        .all(|r| r.path != "/fapi/v1/openInterest"));
}

#[test]
fn usdcusdt_is_sampled_but_never_alerts() {
    let rig = Rig::start("usdc");
    rig.binance
        .market()
        .upsert(SymbolState::perpetual("USDCUSDT", 1.0, 5e8));
    rig.set_oi("USDCUSDT", 200_000.0);
    mark(&rig.jobs.services.funding.cache, "USDCUSDT", 1.0, 0.0001);
    let symbols: Vec<String> = ["BTCUSDT", "USDCUSDT"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    liquid(&rig.jobs.services.liquid, &symbols);
    let state = TempDir::new("usdc-state");
    let mut job = rig.job(&state, Settings::default());
    run(&rig.jobs, &mut job, 0..=10);
    // Both jump +10 % (20,000 contracts): over every threshold and the floor.
    rig.set_oi("USDCUSDT", 220_000.0);
    rig.set_oi("BTCUSDT", 220_000.0);
    run(&rig.jobs, &mut job, 11..=14);
    rig.jobs.drained();

    let alerted: Vec<Value> = bodies(&rig.backend.requests_to(OI_ALERT_PATH))
        .into_iter()
        .map(|b| b["symbol"].clone())
        .collect();
    assert_eq!(alerted, vec![json!("BTCUSDT")], "only BTCUSDT alerts");
    let sampled = bodies(&rig.backend.requests_to(OI_SAMPLES_PATH))
        .iter()
        .flat_map(|b| b["data"].as_array().cloned().unwrap_or_default())
        .filter(|item| item["symbol"] == "USDCUSDT")
        .count();
    assert_eq!(sampled, 15, "USDCUSDT is still sampled every tick");
}

#[test]
fn a_sample_read_late_carries_the_time_it_was_read() {
    let rig = Rig::start("late");
    let state = TempDir::new("late-state");
    let mut job = rig.job(&state, Settings::default());
    // Every answer takes 2.5 s, as a poll held by the weight budget would.
    rig.binance.set_latency(Duration::from_millis(2500));
    run(&rig.jobs, &mut job, [0]);
    rig.binance.set_latency(Duration::ZERO);
    rig.jobs.drained();
    let posts = bodies(&rig.backend.requests_to(OI_SAMPLES_PATH));
    assert_eq!(posts.len(), 1, "{posts:?}");
    let stamp = posts[0]["timestamp"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let read_at = humantime::parse_rfc3339(&stamp).expect("ISO timestamp");
    let late = read_at.duration_since(at(0)).unwrap_or(Duration::ZERO);
    assert!(
        late >= Duration::from_secs(2),
        "the sample says {stamp}, the poll was due at 10:00:00Z and read 2.5 s later"
    );
}
