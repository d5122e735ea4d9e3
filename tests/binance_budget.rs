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
