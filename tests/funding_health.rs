//! funding_health in the real binary against the fake Binance: the stream
//! fills the cache, the check passes and cross-checks BTCUSDT with REST;
//! with the stream stalled, the check fails and `/health` says why.

use std::time::Duration;

use crate::common::market::start_funding_check;
use crate::common::{http_get, wait_until, Running, TempDir};
use volspike_fakes::{FakeBinance, Market};

fn job_state(addr: &str) -> Option<serde_json::Value> {
    let (_, body) = http_get(addr, "/health").ok()?;
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    let job = json["jobs"]["funding_health"].clone();
    (job["runs"].as_u64().unwrap_or(0) > 0).then_some(job)
}

/// Runs the stream and the check against `binance`, with the clock just
/// before a minute boundary; returns the app and the check's first result.
fn first_check(
    dir: &TempDir,
    binance: &FakeBinance,
    extra: &[(&str, &str)],
) -> (Running, serde_json::Value) {
    let app = start_funding_check(dir, binance, Duration::from_secs(4), extra);
    let job = wait_until(Duration::from_secs(40), || job_state(&app.addr))
        .unwrap_or_else(|| panic!("funding_health never ran; log:\n{}", app.log_text()));
    (app, job)
}

#[test]
fn the_check_passes_on_a_live_stream_and_cross_checks_rest() {
    let binance = FakeBinance::start(Market::synthetic(20)).expect("fake binance");
    binance.ws_set_interval(Duration::from_millis(300));
    let dir = TempDir::new("funding-health");
    let (app, job) = first_check(&dir, &binance, &[("VOLSPIKE_HEALTH_MIN_SYMBOLS", "10")]);
    assert_eq!(job["lastResult"], "ok", "{job}\n{}", app.log_text());
    let summary = job["lastSummary"].as_str().unwrap_or("");
    assert!(summary.contains("BTCUSDT matches REST"), "{summary}");
    assert!(
        binance
            .requests()
            .iter()
            .any(|r| r.path == "/fapi/v1/premiumIndex" && r.query.contains("BTCUSDT")),
        "the cross-check asked REST"
    );
}

#[test]
fn too_few_symbols_fail_the_check_in_health() {
    let binance = FakeBinance::start(Market::synthetic(5)).expect("fake binance");
    let dir = TempDir::new("funding-health-few");
    let (app, job) = first_check(&dir, &binance, &[]);
    assert_eq!(job["lastResult"], "error", "{job}");
    let error = job["lastError"].as_str().unwrap_or("");
    assert!(
        error.contains("symbols with funding (expected ≥ 500)"),
        "{error}"
    );
    // A failing check is an optional problem: 200 "degraded", not a 503
    // (the stream itself, which is critical, is fine).
    let (status, body) = http_get(&app.addr, "/health").expect("/health");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("/health is JSON");
    assert_eq!(health["status"], "degraded", "{body}");
    assert_eq!(health["problems"][0]["component"], "job:funding_health");
    assert_eq!(health["problems"][0]["severity"], "optional");
}

#[test]
fn a_delisted_symbol_is_evicted_and_never_fails_the_check() {
    // A contract that expires (the old daemon kept it and failed the check
    // until a restart): in the stream and the listing at start, gone from
    // both before the first check.
    let mut market = Market::synthetic(20);
    market.insert(volspike_fakes::SymbolState::perpetual("GONEUSDT", 1.0, 1e6));
    let binance = FakeBinance::start(market).expect("fake binance");
    binance.ws_set_interval(Duration::from_millis(300));
    let dir = TempDir::new("funding-health-delisted");
    let app = start_funding_check(
        &dir,
        &binance,
        Duration::from_secs(10),
        &[
            ("VOLSPIKE_HEALTH_MIN_SYMBOLS", "10"),
            // Two seconds of silence is stale: the delisted symbol ages
            // past it long before the check.
            ("VOLSPIKE_FUNDING_STALE_SECS", "2"),
        ],
    );
    wait_until(Duration::from_secs(30), || {
        let (status, _) = http_get(&app.addr, "/funding/GONEUSDT").ok()?;
        (status == 200).then_some(())
    })
    .unwrap_or_else(|| panic!("GONEUSDT never served; log:\n{}", app.log_text()));
    assert!(binance.market().remove("GONEUSDT").is_some());
    let job = wait_until(Duration::from_secs(40), || job_state(&app.addr))
        .unwrap_or_else(|| panic!("funding_health never ran; log:\n{}", app.log_text()));
    assert_eq!(job["lastResult"], "ok", "{job}\n{}", app.log_text());
    let summary = job["lastSummary"].as_str().unwrap_or("");
    assert!(
        summary.contains("1 delisted or silent symbols evicted"),
        "{summary}"
    );
    let (status, _) = http_get(&app.addr, "/funding/GONEUSDT").expect("/funding/GONEUSDT");
    assert_eq!(status, 404, "evicted from the cache");
    assert!(app.log_text().contains("GONEUSDT"), "the log names it");
    let (status, body) = http_get(&app.addr, "/health").expect("/health");
    assert_eq!(status, 200, "{body}");
}
