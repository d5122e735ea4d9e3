//! The small market the operator-surface tests (dashboard, metrics,
//! status) run the real binary against: few symbols, each one a case; and
//! the real binary's funding jobs started against a fake exchange.

use volspike_fakes::{FakeBinance, Market, SymbolState};

use std::time::Duration;

use super::{clock_offset_before_boundary, http_get, wait_until, Running, TempDir};

/// The symbols the dashboard must list, in table order (volume, largest first).
pub const TABLE: [&str; 3] = ["AAAUSDT", "BBBUSDT", "CCCUSDT"];

/// Four USDT perpetuals and a quarterly:
/// - `AAAUSDT` $2.5B, funding +0.05 % (green row), price 2.5;
/// - `BBBUSDT` $1.2B, funding −0.05 % (red row), price 65,000;
/// - `CCCUSDT` $400M, funding +0.01 % (plain row), price 0.5;
/// - `DDDUSDT` $50M: below the $100M threshold, not listed;
/// - `EEEUSDT_261225`, a quarterly at $5B: not a perpetual, not listed.
pub fn known_market() -> Market {
    let mut market = Market::new();
    let mut aaa = SymbolState::perpetual("AAAUSDT", 2.5, 2.5e9);
    aaa.funding_rate = Some(0.0005);
    let mut bbb = SymbolState::perpetual("BBBUSDT", 65_000.0, 1.2e9);
    bbb.funding_rate = Some(-0.0005);
    let mut ccc = SymbolState::perpetual("CCCUSDT", 0.5, 400e6);
    ccc.funding_rate = Some(0.0001);
    let mut ddd = SymbolState::perpetual("DDDUSDT", 1.0, 50e6);
    ddd.funding_rate = Some(0.0005);
    let mut quarterly = SymbolState::perpetual("EEEUSDT_261225", 10.0, 5e9);
    quarterly.base_asset = "EEE".into();
    quarterly.contract_type = "CURRENT_QUARTER".into();
    quarterly.funding_rate = None;
    quarterly.next_funding_time = 0;
    for s in [aaa, bbb, ccc, ddd, quarterly] {
        market.insert(s);
    }
    market
}

/// The fake exchange serving [`known_market`].
pub fn fake_binance() -> FakeBinance {
    FakeBinance::start(known_market()).expect("starting the fake Binance on 127.0.0.1")
}

/// `volspike run --local --only funding_stream` against `fake`, plus `env`.
pub fn start_appliance(dir: &TempDir, fake: &FakeBinance, env: &[(&str, &str)]) -> Running {
    let ws = fake.ws_url();
    let rest = fake.rest_url();
    let mut all = vec![
        ("BINANCE_WS_URL", ws.as_str()),
        ("BINANCE_FAPI_URL", rest.as_str()),
    ];
    all.extend_from_slice(env);
    let app = Running::start(dir, &["--local", "--only", "funding_stream"], &all);
    assert!(
        app.wait_http(),
        "HTTP never came up; log:\n{}",
        app.log_text()
    );
    app
}

/// `volspike run --local --only funding_stream,funding_health` against
/// `binance`, with the clock `lead` before a minute boundary (the check
/// runs about `lead` after start), plus `env`. Does not wait for HTTP.
pub fn start_funding_check(
    dir: &TempDir,
    binance: &FakeBinance,
    lead: Duration,
    env: &[(&str, &str)],
) -> Running {
    let offset = clock_offset_before_boundary(Duration::from_secs(60), lead);
    let (rest, ws) = (binance.rest_url(), binance.ws_url());
    let mut all = vec![
        ("BINANCE_FAPI_URL", rest.as_str()),
        ("BINANCE_WS_URL", ws.as_str()),
        ("VOLSPIKE_CLOCK_OFFSET_MS", offset.as_str()),
    ];
    all.extend_from_slice(env);
    Running::start(
        dir,
        &["--local", "--only", "funding_stream,funding_health"],
        &all,
    )
}

/// Waits until the dashboard's table lists every symbol of [`TABLE`].
pub fn wait_for_table(app: &Running) {
    let filled = wait_until(Duration::from_secs(60), || {
        let (status, body) = http_get(&app.addr, "/api/dashboard").ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        let rows = json["market"]["rows"].as_array()?;
        (status == 200 && rows.len() == TABLE.len()).then_some(())
    });
    assert!(
        filled.is_some(),
        "the dashboard never listed {TABLE:?}; log:\n{}",
        app.log_text()
    );
}
