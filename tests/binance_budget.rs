//! The weight governor against the fake Binance: simulated minutes of heavy
//! load never show the fake more than the ceiling per window, and a 429 with
//! `Retry-After` stops every REST call until it has passed.
//!
//! Binance's window is a minute; the fake and the governor both take a
//! shorter window here so ten "minutes" take twenty seconds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use volspike::binance::governor::{GovernorConfig, WeightGovernor};
use volspike::binance::BinanceRest;
use volspike_fakes::{FakeBinance, Market};

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_simulated_minutes_never_exceed_the_ceiling() {
    let window = Duration::from_secs(2);
    let ceiling = 60;
    let fake = FakeBinance::start(Market::synthetic(120)).expect("fake binance");
    fake.set_weight_window(window);
    fake.set_weight_limit(2 * ceiling);
    let governor = Arc::new(WeightGovernor::new(GovernorConfig {
        ceiling,
        limit: 2 * ceiling,
        window,
        ..GovernorConfig::default()
    }));
    let rest = BinanceRest::new(
        &fake.rest_url(),
        governor.clone(),
        8,
        Duration::from_secs(10),
    )
    .expect("client");
    let symbols: Vec<String> = fake.market().symbols();

    // Keep asking for far more than the budget for ten windows: klines
    // sweeps (weight 1 each) plus an all-symbol ticker (weight 40) per round.
    let deadline = tokio::time::Instant::now() + window * 10;
    let mut calls = 0usize;
    while tokio::time::Instant::now() < deadline {
        let sweep = rest.for_each_symbol(
            symbols.iter().take(40).cloned(),
            |rest, symbol| async move { rest.klines(&symbol, "1h", 2).await },
        );
        let (results, tickers) = tokio::join!(sweep, rest.tickers_24h());
        calls += results.len() + 1;
        assert!(tickers.is_ok(), "{tickers:?}");
        assert!(
            results.iter().all(|(_, r)| r.is_ok()),
            "every call queued, none failed"
        );
    }

    let mut per_window: BTreeMap<u64, u32> = BTreeMap::new();
    for r in fake.requests() {
        *per_window
            .entry(ms(r.received_at) / window.as_millis() as u64)
            .or_default() += r.weight;
    }
    assert!(
        per_window.len() >= 8,
        "load spanned the windows: {per_window:?}"
    );
    let worst = per_window.values().copied().max().unwrap_or(0);
    assert!(
        worst <= ceiling,
        "a window saw {worst} > ceiling {ceiling}: {per_window:?}"
    );
    assert!(
        fake.requests().iter().all(|r| r.status == 200),
        "no 429 from the fake"
    );
    // The load really was over budget: the governor had to hold calls back.
    assert!(calls as u32 > ceiling * 10 / 40, "{calls} calls");
    println!("windows: {per_window:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_stops_every_rest_call() {
    let fake = FakeBinance::start(Market::synthetic(20)).expect("fake binance");
    let rest = BinanceRest::new(
        &fake.rest_url(),
        Arc::new(WeightGovernor::default()),
        8,
        Duration::from_secs(10),
    )
    .expect("client");
    fake.fail_next(1, 429, Some(3));
    let hit = SystemTime::now();
    let first = rest.open_interest("BTCUSDT").await;
    assert!(first.is_err(), "the 429 is an error for that call");
    // Every endpoint now waits: none reaches the fake before 3 s have passed.
    let (a, b, c) = tokio::join!(
        rest.klines("ETHUSDT", "1h", 2),
        rest.premium_index("BTCUSDT"),
        rest.exchange_info()
    );
    assert!(a.is_ok() && b.is_ok() && c.is_ok());
    let requests = fake.requests();
    assert_eq!(requests.first().map(|r| r.status), Some(429));
    for r in &requests[1..] {
        let after = r.received_at.duration_since(hit).unwrap_or_default();
        assert!(
            after >= Duration::from_millis(2_900),
            "{} reached the fake {after:?} after the 429",
            r.path
        );
    }
}

/// One scaled "sweep minute" (a 6 s window standing for Binance's minute,
/// the default 40 % ceiling of 960 per window): the volume sweep over 600
/// universe symbols (weight 1 each), liquid_universe's exchangeInfo +
/// ticker/24hr (41), and two open-interest polls of 200 liquid symbols half
/// a window apart (200 each). Returns the weight the fake saw per window
/// (relative to the first) and the windows the OI requests landed in.
async fn sweep_minute(yielding_sweep: bool) -> (BTreeMap<u64, u32>, Vec<u64>) {
    let window = Duration::from_secs(6);
    let ceiling = 960;
    let fake = FakeBinance::start(Market::synthetic(600)).expect("fake binance");
    fake.set_weight_window(window);
    fake.set_weight_limit(2400);
    let governor = Arc::new(WeightGovernor::new(GovernorConfig {
        ceiling,
        limit: 2400,
        window,
        ..GovernorConfig::default()
    }));
    let rest = BinanceRest::new(
        &fake.rest_url(),
        governor.clone(),
        12,
        Duration::from_secs(10),
    )
    .expect("client");
    let symbols: Vec<String> = fake.market().symbols();
    let liquid: Vec<String> = symbols.iter().take(200).cloned().collect();
    // open_interest registers its polls: 200 per poll, two polls per window.
    governor.reserve(400);
    // Start just after a window boundary, as the sweep does at :x5:00.
    let window_ms = window.as_millis() as u64;
    let into = ms(SystemTime::now()) % window_ms;
    tokio::time::sleep(Duration::from_millis(window_ms - into + 50)).await;
    let first_window = ms(SystemTime::now()) / window_ms;

    let sweeper = if yielding_sweep {
        rest.yielding()
    } else {
        rest.clone()
    };
    let sweep = sweeper.for_each_symbol(symbols.clone(), |rest, symbol| async move {
        rest.klines(&symbol, "1h", 2).await
    });
    let poll = |rest: BinanceRest, names: Vec<String>| async move {
        rest.for_each_symbol(names, |rest, symbol| async move {
            rest.open_interest(&symbol).await
        })
        .await
    };
    let liquid_universe = async {
        let (a, b) = tokio::join!(rest.exchange_info(), rest.tickers_24h());
        assert!(a.is_ok() && b.is_ok());
    };
    let second_poll = async {
        tokio::time::sleep(window / 2).await;
        poll(rest.clone(), liquid.clone()).await
    };
    let (swept, first, (), second) = tokio::join!(
        sweep,
        poll(rest.clone(), liquid.clone()),
        liquid_universe,
        second_poll
    );
    assert!(swept.iter().all(|(_, r)| r.is_ok()));
    assert!(first.iter().chain(&second).all(|(_, r)| r.is_ok()));

    let mut per_window: BTreeMap<u64, u32> = BTreeMap::new();
    let mut oi_windows = Vec::new();
    for r in fake.requests() {
        let w = ms(r.received_at) / window_ms - first_window;
        *per_window.entry(w).or_default() += r.weight;
        if r.path == "/fapi/v1/openInterest" {
            oi_windows.push(w);
        }
    }
    (per_window, oi_windows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_minute_yields_to_the_oi_polls() {
    // The demand of the sweep minute at 200 liquid symbols: 600 + 41 + 400
    // = 1041 > 960, so something has to wait. Before, the sweep took the
    // window first and the second poll was held into the next window.
    let (per_window, oi_windows) = sweep_minute(true).await;
    println!("yielding sweep: weight per window {per_window:?}");
    let demand: u32 = per_window.values().sum();
    assert!(
        demand > 960,
        "the sweep minute's demand fits after all: {per_window:?}"
    );
    assert!(
        per_window.values().all(|w| *w <= 960),
        "a window over the ceiling: {per_window:?}"
    );
    assert_eq!(oi_windows.len(), 400);
    assert!(
        oi_windows.iter().all(|w| *w == 0),
        "an OI request was held into a later window: {oi_windows:?}"
    );
    assert!(
        per_window.get(&1).is_some_and(|w| *w > 0),
        "the sweep's tail went to the next window: {per_window:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_that_does_not_yield_holds_the_second_oi_poll() {
    // The measurement behind the yielding sweep: the same minute with the
    // sweep as a regular caller holds part of the second poll back a window.
    let (per_window, oi_windows) = sweep_minute(false).await;
    println!("regular sweep: weight per window {per_window:?}");
    let held = oi_windows.iter().filter(|w| **w > 0).count();
    println!(
        "OI requests held into the next window: {held} of {}",
        oi_windows.len()
    );
    assert!(held > 0, "{per_window:?}");
}
