//! Every Binance call through an HTTP CONNECT proxy (the fake one in
//! `tests/fakes`, on 127.0.0.1): REST in-process, REST and the WebSocket in
//! the real binary; `NO_PROXY`; and HTTP 451, Binance's answer to a refused
//! region, named in the error, the log and `/health`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::market::start_funding_check;
use crate::common::{http_get, wait_until, Running, TempDir};
use volspike::binance::governor::{GovernorConfig, WeightGovernor};
use volspike::binance::proxy::BinanceProxy;
use volspike::binance::{BinanceRest, REGION_REFUSED};
use volspike_fakes::{FakeBinance, FakeProxy, Market};

/// The fake's `host:port`, as a CONNECT names it.
fn authority(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn rest_via(binance: &FakeBinance, proxy: Option<&BinanceProxy>) -> BinanceRest {
    BinanceRest::with_proxy(
        &binance.rest_url(),
        Arc::new(WeightGovernor::new(GovernorConfig::default())),
        4,
        Duration::from_secs(10),
        proxy,
    )
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_calls_go_through_the_proxy_with_credentials() {
    let binance = FakeBinance::start(Market::synthetic(5)).expect("fake binance");
    let proxy = FakeProxy::start().expect("fake proxy");
    // user:pw
    proxy.require_auth("Basic dXNlcjpwdw==");
    let url = format!("http://user:pw@127.0.0.1:{}", proxy.port());
    let via = BinanceProxy::parse(&url, "VOLSPIKE_BINANCE_PROXY").expect("valid");
    let rest = rest_via(&binance, Some(&via));
    let info = rest
        .exchange_info()
        .await
        .expect("exchangeInfo through the proxy");
    assert!(!info.symbols.is_empty());
    let oi = rest.open_interest("BTCUSDT").await.expect("openInterest");
    assert!(oi.contracts > 0.0);
    let connects = proxy.connects();
    assert!(!connects.is_empty());
    assert!(
        connects
            .iter()
            .all(|c| *c == authority(&binance.rest_url())),
        "{connects:?}"
    );
    assert_eq!(binance.requests().len(), 2, "both calls reached Binance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_hosts_are_reached_directly() {
    let binance = FakeBinance::start(Market::synthetic(5)).expect("fake binance");
    let proxy = FakeProxy::start().expect("fake proxy");
    let env: BTreeMap<String, String> = [
        ("HTTP_PROXY".to_string(), proxy.url()),
        ("NO_PROXY".to_string(), "localhost,127.0.0.1".to_string()),
    ]
    .into();
    let via = BinanceProxy::resolve(None, &env, &binance.rest_url())
        .expect("valid")
        .expect("a proxy from HTTP_PROXY");
    let rest = rest_via(&binance, Some(&via));
    rest.exchange_info().await.expect("direct");
    assert!(proxy.connects().is_empty(), "{:?}", proxy.connects());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_451_says_binance_refuses_this_region() {
    let binance = FakeBinance::start(Market::synthetic(5)).expect("fake binance");
    binance.fail_next(1, 451, None);
    let rest = rest_via(&binance, None);
    let err = rest.exchange_info().await.expect_err("451");
    assert!(err.to_string().contains(REGION_REFUSED), "{err}");
}

#[test]
fn the_binary_reaches_binance_rest_and_websocket_through_the_conventional_proxy() {
    let binance = FakeBinance::start(Market::synthetic(20)).expect("fake binance");
    binance.ws_set_interval(Duration::from_millis(300));
    let proxy = FakeProxy::start().expect("fake proxy");
    let dir = TempDir::new("proxy-binary");
    let via = proxy.url();
    // The fake speaks plain http/ws, so the conventional variable is HTTP_PROXY.
    let app = start_funding_check(
        &dir,
        &binance,
        Duration::from_secs(4),
        &[
            ("HTTP_PROXY", via.as_str()),
            ("VOLSPIKE_HEALTH_MIN_SYMBOLS", "10"),
        ],
    );
    // The WebSocket through the tunnel: funding data is served.
    wait_until(Duration::from_secs(30), || {
        let (status, _) = http_get(&app.addr, "/funding/BTCUSDT").ok()?;
        (status == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("no funding data; log:\n{}", app.log_text()));
    // REST through the tunnel: funding_health's exchangeInfo and premiumIndex.
    let job = wait_until(Duration::from_secs(40), || {
        let (_, body) = http_get(&app.addr, "/health").ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let job = json["jobs"]["funding_health"].clone();
        (job["runs"].as_u64().unwrap_or(0) > 0).then_some(job)
    })
    .unwrap_or_else(|| panic!("funding_health never ran; log:\n{}", app.log_text()));
    assert_eq!(job["lastResult"], "ok", "{job}\n{}", app.log_text());
    let connects = proxy.connects();
    let (rest_host, ws_host) = (authority(&binance.rest_url()), authority(&binance.ws_url()));
    assert!(connects.contains(&ws_host), "{connects:?}");
    assert!(connects.contains(&rest_host), "{connects:?}");
    assert!(
        binance
            .requests()
            .iter()
            .any(|r| r.path == "/fapi/v1/premiumIndex"),
        "REST reached Binance"
    );
}

#[test]
fn a_451_is_named_in_the_log_and_health() {
    let binance = FakeBinance::start(Market::synthetic(20)).expect("fake binance");
    binance.ws_set_interval(Duration::from_millis(300));
    // Every REST call answers 451, as Binance does to a refused region.
    binance.fail_next(100_000, 451, None);
    let dir = TempDir::new("proxy-451");
    let app = start_funding_check(
        &dir,
        &binance,
        Duration::from_secs(4),
        &[("VOLSPIKE_HEALTH_MIN_SYMBOLS", "10")],
    );
    let body = wait_until(Duration::from_secs(40), || {
        let (_, body) = http_get(&app.addr, "/health").ok()?;
        body.contains(REGION_REFUSED).then_some(body)
    })
    .unwrap_or_else(|| panic!("/health never named the 451; log:\n{}", app.log_text()));
    assert!(body.contains("funding_health"), "{body}");
    assert!(
        app.log_text().contains(REGION_REFUSED),
        "{}",
        app.log_text()
    );
}

#[test]
fn the_websocket_authenticates_to_the_proxy_named_by_the_setting() {
    let binance = FakeBinance::start(Market::synthetic(5)).expect("fake binance");
    binance.ws_set_interval(Duration::from_millis(300));
    let proxy = FakeProxy::start().expect("fake proxy");
    proxy.require_auth("Basic dXNlcjpwdw==");
    let dir = TempDir::new("proxy-ws-auth");
    let ws = binance.ws_url();
    let via = format!("http://user:pw@127.0.0.1:{}", proxy.port());
    let app = Running::start(
        &dir,
        &["--local", "--only", "funding_stream"],
        &[
            ("BINANCE_WS_URL", ws.as_str()),
            ("VOLSPIKE_BINANCE_PROXY", via.as_str()),
        ],
    );
    wait_until(Duration::from_secs(30), || {
        let (status, _) = http_get(&app.addr, "/funding/BTCUSDT").ok()?;
        (status == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("no funding data; log:\n{}", app.log_text()));
    assert_eq!(proxy.connects(), [authority(&ws)]);
    assert!(
        !app.log_text().contains("user:pw"),
        "credentials stay out of the log"
    );
}
