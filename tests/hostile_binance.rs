//! The real binary against a Binance that answers with a 50 MB body, an
//! endless body and a gzip bomb: every answer is cut at its endpoint's cap,
//! memory stays small, and the failing job (optional) leaves `/health` 200
//! `degraded`, then `ok` once Binance answers normally again.

use std::time::Duration;

use crate::common::{http_get, proc_status, wait_until, Running, TempDir};
use volspike_fakes::{FakeBinance, HostileBody, Market};

const EXCHANGE_INFO: &str = "/fapi/v1/exchangeInfo";
const MIB: usize = 1024 * 1024;

fn requests_to(fake: &FakeBinance, path: &str) -> usize {
    fake.requests().iter().filter(|r| r.path == path).count()
}

/// Runs liquid_universe (exchangeInfo, then ticker/24hr, at start and on
/// every retry) against `body` and returns the peak RSS in KiB.
fn peak_rss_against(tag: &str, body: HostileBody) -> u64 {
    let fake = FakeBinance::start(Market::synthetic(50)).expect("fake binance");
    fake.serve_hostile(EXCHANGE_INFO, Some(body));
    let dir = TempDir::new(tag);
    let rest = fake.rest_url();
    let app = Running::start(
        &dir,
        &["--local", "--only", "liquid_universe"],
        &[("BINANCE_FAPI_URL", rest.as_str())],
    );
    assert!(app.wait_http(), "no HTTP; log:\n{}", app.log_text());
    // The first tick and its first retry (5 s later) both meet the body.
    let met = wait_until(Duration::from_secs(60), || {
        (requests_to(&fake, EXCHANGE_INFO) >= 2).then_some(())
    });
    assert!(met.is_some(), "no retry; log:\n{}", app.log_text());
    // Two cut answers counted: under load one attempt may fail otherwise
    // first (its request timed out while inflating), so wait for the cuts
    // themselves, not for any two failures.
    let failed = wait_until(Duration::from_secs(60), || {
        let (status, body) = http_get(&app.addr, "/health").ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let job = &json["jobs"]["liquid_universe"];
        let cuts = json["binanceBodies"]["cutTotal"].as_u64()?;
        (job["failures"].as_u64()? >= 2 && cuts >= 2).then_some((status, json))
    });
    let (status, health) = failed.unwrap_or_else(|| panic!("no failure; log:\n{}", app.log_text()));
    assert_eq!(
        status, 200,
        "an optional job failing is not a 503: {health}"
    );
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["problems"][0]["component"], "job:liquid_universe");
    assert_eq!(health["problems"][0]["severity"], "optional");
    let error = health["jobs"]["liquid_universe"]["lastError"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        error.contains("exchangeInfo failed") && error.contains("larger than"),
        "{error}"
    );
    let cut = health["binanceBodies"]["cutTotal"].as_u64().unwrap_or(0);
    assert!(cut >= 2, "cuts are counted in /health: {health}");

    // Binance heals: the retry (within 30 s) succeeds and health is ok.
    fake.serve_hostile(EXCHANGE_INFO, None);
    let cleared = std::time::Instant::now();
    let healed = wait_until(Duration::from_secs(60), || {
        let (status, body) = http_get(&app.addr, "/health").ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200 && json["status"] == "ok").then_some(())
    });
    assert!(
        healed.is_some(),
        "health never recovered; log:\n{}",
        app.log_text()
    );
    let peak = proc_status(app.child.id(), "VmHWM");
    eprintln!(
        "{tag}: peak RSS {peak} KiB after {} exchangeInfo calls; /health ok {:?} after the fault cleared",
        requests_to(&fake, EXCHANGE_INFO),
        cleared.elapsed()
    );
    peak
}

#[test]
fn a_huge_body_is_cut_at_the_cap() {
    let peak = peak_rss_against("binance-huge", HostileBody::Huge(50 * MIB));
    assert!(peak > 0 && peak < 32 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn an_endless_body_is_cut_at_the_cap() {
    let peak = peak_rss_against("binance-endless", HostileBody::Endless);
    assert!(peak > 0 && peak < 32 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_gzip_bomb_is_cut_at_the_cap_after_inflating() {
    let peak = peak_rss_against("binance-gzip", HostileBody::GzipBomb(512 * MIB));
    assert!(peak > 0 && peak < 32 * 1024, "peak RSS {peak} KiB");
}
