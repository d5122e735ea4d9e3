//! Universe cache tests against a scripted server on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::binance::governor::{GovernorConfig, WeightGovernor};
use crate::binance::rest::DEFAULT_TIMEOUT;
use crate::testkit::serve;
use volspike_fakes::{Reply, ScriptedServer};

/// An exchangeInfo body with the given USDT perpetuals plus a TradFi one.
fn exchange_info(symbols: &[&str]) -> String {
    let mut entries: Vec<String> = symbols
        .iter()
        .map(|s| {
            format!(
                r#"{{"symbol":"{s}","pair":"{s}","contractType":"PERPETUAL","status":"TRADING","baseAsset":"X","quoteAsset":"USDT","marginAsset":"USDT"}}"#
            )
        })
        .collect();
    entries.push(r#"{"symbol":"XAUUSDT","pair":"XAUUSDT","contractType":"TRADIFI_PERPETUAL","status":"TRADING","baseAsset":"XAU","quoteAsset":"USDT","marginAsset":"USDT"}"#.to_owned());
    format!(r#"{{"rateLimits":[],"symbols":[{}]}}"#, entries.join(","))
}

/// A universe on `server` with the given max age.
fn universe(server: &ScriptedServer, max_age: Duration) -> Universe {
    let governor = Arc::new(WeightGovernor::new(GovernorConfig::default()));
    let rest = BinanceRest::new(&server.url(), governor, 4, DEFAULT_TIMEOUT).expect("client");
    Universe::new(rest, max_age)
}

/// Names of a list.
fn names(list: &[SymbolInfo]) -> Vec<&str> {
    list.iter().map(|s| s.symbol.as_str()).collect()
}

#[tokio::test]
async fn serves_from_cache_until_stale_then_refreshes() {
    let server = serve(|_, n| {
        if n == 0 {
            Reply::json(exchange_info(&["BTCUSDT", "ETHUSDT"]))
        } else {
            Reply::json(exchange_info(&["BTCUSDT", "ETHUSDT", "SOLUSDT"]))
        }
    });
    let universe = universe(&server, Duration::from_millis(500));
    let first = universe.symbols().await.expect("first");
    assert_eq!(names(&first), ["BTCUSDT", "ETHUSDT"]);
    let again = universe.symbols().await.expect("cached");
    assert!(
        Arc::ptr_eq(&first, &again),
        "a fresh list is served from cache"
    );
    assert_eq!(server.hits().len(), 1);
    tokio::time::sleep(Duration::from_millis(550)).await;
    let refreshed = universe.symbol_names().await.expect("refreshed");
    assert_eq!(refreshed, ["BTCUSDT", "ETHUSDT", "SOLUSDT"]);
    assert_eq!(server.hits().len(), 2);
}

#[tokio::test]
async fn a_failed_refresh_keeps_the_last_good_list() {
    let server = serve(|_, n| match n {
        0 => Reply::json(exchange_info(&["BTCUSDT"])),
        1 => Reply::status(503, "upstream down"),
        2 => Reply::json(exchange_info(&[])),
        _ => Reply::json(exchange_info(&["BTCUSDT", "ETHUSDT"])),
    });
    let universe = universe(&server, Duration::from_millis(100));
    assert_eq!(
        names(&universe.symbols().await.expect("first")),
        ["BTCUSDT"]
    );
    for _ in 0..2 {
        // Wait past the max age (also the retry delay after a failure).
        tokio::time::sleep(Duration::from_millis(150)).await;
        let served = universe.symbols().await.expect("last good list");
        assert_eq!(names(&served), ["BTCUSDT"]);
    }
    assert_eq!(
        server.hits().len(),
        3,
        "a 503 and an empty universe were both tried"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let recovered = universe.symbols().await.expect("recovered");
    assert_eq!(names(&recovered), ["BTCUSDT", "ETHUSDT"]);
}

#[tokio::test]
async fn without_any_good_list_the_error_is_returned() {
    let server = serve(|_, _| Reply::status(500, "boom"));
    let universe = universe(&server, DEFAULT_MAX_AGE);
    let err = universe.symbols().await.expect_err("no list yet");
    assert!(
        matches!(err, BinanceError::Status { code: 500, .. }),
        "{err:?}"
    );
    assert_eq!(universe.age().await, None);
}

#[tokio::test]
async fn concurrent_callers_share_one_refresh() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let server = serve(move |_, _| {
        counted.fetch_add(1, Ordering::SeqCst);
        Reply::json(exchange_info(&["BTCUSDT"])).delayed(Duration::from_millis(100))
    });
    let universe = Arc::new(universe(&server, DEFAULT_MAX_AGE));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let universe = Arc::clone(&universe);
        tasks.spawn(async move { universe.symbols().await.map(|l| l.len()) });
    }
    while let Some(joined) = tasks.join_next().await {
        assert_eq!(joined.expect("task").expect("symbols"), 1);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_exchange_info_fetched_elsewhere_updates_the_cache() {
    let server = serve(|_, _| Reply::status(500, "not called"));
    let universe = universe(&server, DEFAULT_MAX_AGE);
    // Peeking never fetches: nothing until a list arrives.
    assert!(universe.peek().is_none());
    let info: ExchangeInfo =
        serde_json::from_str(&exchange_info(&["BTCUSDT", "ETHUSDT"])).expect("sample");
    universe.update_from(&info).await;
    assert_eq!(
        universe.peek().map(|list| names(&list).join(",")),
        Some("BTCUSDT,ETHUSDT".to_string())
    );
    assert_eq!(
        universe.symbol_names().await.expect("cached"),
        ["BTCUSDT", "ETHUSDT"]
    );
    assert!(server.hits().is_empty());
}
