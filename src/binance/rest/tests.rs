//! REST client tests against a scripted server on 127.0.0.1 (never Binance).
//! Timing assertions are one-sided ("not before"), so a slow box cannot fail them.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::binance::governor::GovernorConfig;
use crate::binance::test_server::{Reply, TestServer};

const EXCHANGE_INFO: &str = r#"{"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400}],
 "symbols":[
  {"symbol":"BTCUSDT","pair":"BTCUSDT","contractType":"PERPETUAL","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT","marginAsset":"USDT"},
  {"symbol":"XAUUSDT","pair":"XAUUSDT","contractType":"TRADIFI_PERPETUAL","status":"TRADING","baseAsset":"XAU","quoteAsset":"USDT","marginAsset":"USDT"},
  {"symbol":"NEWUSDT","pair":"NEWUSDT","contractType":"","status":"PENDING_TRADING","baseAsset":"NEW","quoteAsset":"USDT","marginAsset":"USDT"}]}"#;
const TICKER: &str = r#"{"symbol":"BTCUSDT","priceChange":"-94.99999800","priceChangePercent":"-95.960","weightedAvgPrice":"0.29628482","lastPrice":"4.00000200","lastQty":"200.00000000","openPrice":"99.00000000","highPrice":"100.00000000","lowPrice":"0.10000000","volume":"8913.30000000","quoteVolume":"15.30000000","openTime":1499783499040,"closeTime":1499869899040,"firstId":28385,"lastId":28460,"count":76}"#;
const PRICE: &str = r#"{"symbol":"BTCUSDT","price":"6000.01","time":1589437530011}"#;
const KLINE: &str = r#"[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100","148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397","28.46694368","0"]"#;
const OI: &str = r#"{"openInterest":"10659.509","symbol":"BTCUSDT","time":1589437530011}"#;
const PREMIUM: &str = r#"{"symbol":"BTCUSDT","markPrice":"11793.63104562","indexPrice":"11781.80495970","estimatedSettlePrice":"11781.16138815","lastFundingRate":"0.00038246","interestRate":"0.00010000","nextFundingTime":1597392000000,"time":1597370495002}"#;

/// A governor whose window (a day) will not roll over during a test.
fn steady_governor() -> Arc<WeightGovernor> {
    Arc::new(WeightGovernor::new(GovernorConfig::with_fraction(
        2400,
        0.5,
        Duration::from_secs(86_400),
    )))
}

/// A client for `server` with the given bounds.
fn client(server: &TestServer, concurrency: usize, timeout: Duration) -> BinanceRest {
    BinanceRest::new(&server.base_url, steady_governor(), concurrency, timeout).expect("client")
}

/// Answers like Binance for every endpoint the client knows.
fn binance_like(url: &str, _n: usize) -> Reply {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let single = query.contains("symbol=");
    let body = match path {
        "/fapi/v1/exchangeInfo" => EXCHANGE_INFO.to_owned(),
        "/fapi/v1/ticker/24hr" if single => TICKER.to_owned(),
        "/fapi/v1/ticker/24hr" => format!("[{TICKER},{TICKER}]"),
        "/fapi/v2/ticker/price" if single => PRICE.to_owned(),
        "/fapi/v2/ticker/price" => format!("[{PRICE}]"),
        "/fapi/v1/klines" => format!("[{KLINE},{KLINE},{KLINE}]"),
        "/fapi/v1/openInterest" => OI.to_owned(),
        "/fapi/v1/premiumIndex" if single => PREMIUM.to_owned(),
        "/fapi/v1/premiumIndex" => format!("[{PREMIUM}]"),
        _ => return Reply::status(404, r#"{"code":-1,"msg":"no such path"}"#),
    };
    Reply::json(body).header("X-MBX-USED-WEIGHT-1M", "7")
}

#[tokio::test]
async fn every_endpoint_decodes_and_sends_the_right_query() {
    let server = TestServer::start(2, binance_like);
    let rest = client(&server, 4, DEFAULT_TIMEOUT);
    let info = rest.exchange_info().await.expect("exchangeInfo");
    assert_eq!(info.symbols.len(), 3);
    let universe = rest.universe().await.expect("universe");
    assert_eq!(universe.len(), 1);
    assert_eq!(universe[0].symbol, "BTCUSDT");
    assert_eq!(rest.tickers_24h().await.expect("tickers").len(), 2);
    assert_eq!(
        rest.ticker_24h("BTCUSDT")
            .await
            .expect("ticker")
            .quote_volume,
        15.3
    );
    assert_eq!(rest.prices().await.expect("prices")[0].price, 6000.01);
    assert_eq!(rest.price("BTCUSDT").await.expect("price").price, 6000.01);
    let klines = rest.klines("BTCUSDT", "1h", 3).await.expect("klines");
    assert_eq!(klines.len(), 3);
    assert_eq!(klines[2].quote_volume, 2434.19055334);
    assert_eq!(
        rest.open_interest("BTCUSDT").await.expect("oi").contracts,
        10659.509
    );
    let premium = rest.premium_index("BTCUSDT").await.expect("premium");
    assert_eq!(premium.last_funding_rate, Some(0.00038246));
    assert_eq!(
        rest.premium_index_all().await.expect("premium all").len(),
        1
    );

    let urls: Vec<String> = server.hits().into_iter().map(|h| h.url).collect();
    assert!(urls.contains(&"/fapi/v1/klines?symbol=BTCUSDT&interval=1h&limit=3".to_owned()));
    assert!(urls.contains(&"/fapi/v1/openInterest?symbol=BTCUSDT".to_owned()));
    assert!(urls.contains(&"/fapi/v2/ticker/price".to_owned()));
    assert!(urls.contains(&"/fapi/v1/ticker/24hr".to_owned()));
    // Weights charged: 1+1+40+1+2+1+1(klines limit 3)+1+1+10.
    assert_eq!(rest.governor().status().own_used_in_window, 59);
}

#[tokio::test]
async fn the_used_weight_header_reaches_the_governor() {
    let server = TestServer::start(1, |_, _| {
        Reply::json(OI).header("X-MBX-USED-WEIGHT-1M", "1150")
    });
    let rest = client(&server, 1, DEFAULT_TIMEOUT);
    rest.open_interest("BTCUSDT").await.expect("oi");
    let status = rest.governor().status();
    assert_eq!(status.server_used_in_window, 1150);
    assert_eq!(status.used_in_window, 1150);
}

#[tokio::test]
async fn a_429_with_retry_after_pauses_every_endpoint() {
    let server = TestServer::start(2, |url, n| {
        if n == 0 {
            Reply::status(429, r#"{"code":-1003,"msg":"Too many requests."}"#)
                .header("Retry-After", "1")
        } else {
            binance_like(url, n)
        }
    });
    let rest = client(&server, 4, DEFAULT_TIMEOUT);
    let err = rest.open_interest("BTCUSDT").await.expect_err("429");
    assert!(
        matches!(err, BinanceError::RateLimited { retry_after, .. } if retry_after >= Duration::from_secs(1)),
        "{err:?}"
    );
    assert!(err.is_rate_limit());
    assert_eq!(err.symbol(), Some("BTCUSDT"));
    assert!(
        err.to_string().contains("/fapi/v1/openInterest (BTCUSDT)"),
        "{err}"
    );
    assert!(rest.governor().status().paused_until.is_some());
    // Other endpoints wait out the pause rather than fail or go through.
    let (a, b) = tokio::join!(rest.premium_index_all(), rest.klines("ETHUSDT", "1h", 2));
    a.expect("premiumIndex after pause");
    b.expect("klines after pause");
    let hits = server.hits();
    assert_eq!(hits.len(), 3);
    for later in &hits[1..] {
        assert!(
            later.at.duration_since(hits[0].at) >= Duration::from_secs(1),
            "{hits:?}"
        );
    }
}

#[tokio::test]
async fn a_418_is_a_ban_that_pauses_until_the_announced_time() {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        + 60_000;
    let server = TestServer::start(1, move |_, _| {
        Reply::status(
            418,
            format!(r#"{{"code":-1003,"msg":"Way too many requests; IP banned until {until}."}}"#),
        )
    });
    let rest = client(&server, 1, DEFAULT_TIMEOUT);
    let err = rest.price("BTCUSDT").await.expect_err("418");
    match &err {
        BinanceError::Banned {
            retry_after, msg, ..
        } => {
            assert!(*retry_after > Duration::from_secs(50), "{retry_after:?}");
            assert!(msg.contains("banned until"));
        }
        other => panic!("expected Banned, got {other:?}"),
    }
    let paused_until = rest.governor().status().paused_until.expect("paused");
    assert!(u128::from(paused_until) + 2_000 >= until);
}

#[tokio::test]
async fn malformed_payloads_are_decode_errors() {
    let server = TestServer::start(1, |url, _| {
        if url.starts_with("/fapi/v1/openInterest") {
            Reply::json(r#"{"openInterest":"lots","symbol":"BTCUSDT","time":1}"#)
        } else {
            Reply::json("<html>maintenance</html>")
        }
    });
    let rest = client(&server, 1, DEFAULT_TIMEOUT);
    let err = rest.open_interest("BTCUSDT").await.expect_err("bad number");
    assert!(
        matches!(&err, BinanceError::Decode { endpoint: Endpoint::OpenInterest, symbol: Some(s), .. } if s == "BTCUSDT"),
        "{err:?}"
    );
    let err = rest.tickers_24h().await.expect_err("html");
    assert!(matches!(
        err,
        BinanceError::Decode {
            endpoint: Endpoint::Ticker24h,
            symbol: None,
            ..
        }
    ));
    assert!(err.to_string().contains("maintenance"), "{err}");
}

#[tokio::test]
async fn binance_error_bodies_become_status_errors() {
    let server = TestServer::start(1, |_, _| {
        Reply::status(400, r#"{"code":-1121,"msg":"Invalid symbol."}"#)
    });
    let rest = client(&server, 1, DEFAULT_TIMEOUT);
    let err = rest.klines("NOPE", "1h", 2).await.expect_err("400");
    match &err {
        BinanceError::Status {
            code,
            binance_code,
            msg,
            symbol,
            ..
        } => {
            assert_eq!(
                (*code, *binance_code, msg.as_str()),
                (400, Some(-1121), "Invalid symbol.")
            );
            assert_eq!(symbol.as_deref(), Some("NOPE"));
        }
        other => panic!("expected Status, got {other:?}"),
    }
    assert!(rest.governor().status().paused_until.is_none());
}

#[tokio::test]
async fn the_concurrency_bound_holds_at_the_server() {
    let server = TestServer::start(12, |url, n| {
        binance_like(url, n).delayed(Duration::from_millis(60))
    });
    let rest = client(&server, 3, DEFAULT_TIMEOUT);
    let symbols: Vec<String> = (0..15).map(|i| format!("S{i}USDT")).collect();
    let results = rest
        .for_each_symbol(symbols.clone(), |rest, s| async move {
            rest.open_interest(&s).await
        })
        .await;
    assert_eq!(results.len(), 15);
    for ((name, result), expected) in results.iter().zip(&symbols) {
        assert_eq!(name, expected, "results keep input order");
        assert!(result.is_ok(), "{name}: {result:?}");
    }
    assert_eq!(server.hits().len(), 15);
    let peak = server.max_in_flight();
    assert!((1..=3).contains(&peak), "peak in flight {peak}");
}

#[tokio::test]
async fn a_panicking_sweep_task_is_an_error_for_its_symbol_only() {
    let server = TestServer::start(2, binance_like);
    let rest = client(&server, 2, DEFAULT_TIMEOUT);
    let results = rest
        .for_each_symbol(["BTCUSDT", "BAD"], |rest, s| async move {
            if s == "BAD" {
                panic!("test panic for BAD");
            }
            rest.open_interest(&s).await
        })
        .await;
    assert!(results[0].1.is_ok());
    let err = results[1].1.as_ref().expect_err("panicked");
    assert!(matches!(err, BinanceError::Task { .. }));
    assert_eq!(err.symbol(), Some("BAD"));
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout() {
    let server = TestServer::start(1, |url, n| {
        binance_like(url, n).delayed(Duration::from_secs(2))
    });
    let rest = client(&server, 1, Duration::from_millis(200));
    let err = rest.open_interest("BTCUSDT").await.expect_err("timeout");
    assert!(
        matches!(&err, BinanceError::Timeout { after, symbol: Some(_), .. } if *after == Duration::from_millis(200)),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_a_network_error() {
    // Bind and drop to get a port that (almost surely) nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let rest = BinanceRest::new(
        &format!("http://127.0.0.1:{port}/"),
        steady_governor(),
        1,
        DEFAULT_TIMEOUT,
    )
    .expect("client");
    let err = rest.exchange_info().await.expect_err("refused");
    assert!(
        matches!(
            err,
            BinanceError::Network {
                endpoint: Endpoint::ExchangeInfo,
                ..
            }
        ),
        "{err:?}"
    );
    // The message names the host, so "unreachable" says which one.
    let text = err.to_string();
    assert!(text.contains(" on 127.0.0.1:"), "{text}");
}

#[test]
fn bad_settings_are_config_errors() {
    let g = steady_governor();
    assert!(matches!(
        BinanceRest::new("fapi.binance.com", Arc::clone(&g), 8, DEFAULT_TIMEOUT),
        Err(BinanceError::Config(_))
    ));
    assert!(BinanceRest::new(DEFAULT_BASE_URL, Arc::clone(&g), 0, DEFAULT_TIMEOUT).is_err());
    let ok = BinanceRest::new("https://fapi.binance.com/", g, 8, DEFAULT_TIMEOUT).expect("ok");
    assert_eq!(ok.base_url(), "https://fapi.binance.com");
    assert_eq!(ok.max_concurrency(), 8);
}

#[test]
fn header_helpers() {
    assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
    assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    assert_eq!(parse_retry_after("-1"), None);
    assert_eq!(
        banned_until_ms(
            "Way too many requests; IP banned until 1589437530011. Please use WebSocket."
        ),
        Some(1589437530011)
    );
    assert_eq!(banned_until_ms("Too many requests."), None);
}
