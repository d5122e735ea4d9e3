//! Durable delivery in the real binary: a volume spike detected while the
//! backend is down survives `kill -9` and arrives exactly once after the
//! restart; a restart inside the hour re-fires nothing.

use std::time::Duration;

use crate::common::{clock_offset_before_boundary, http_get, signal, wait_until, Running, TempDir};
use volspike_fakes::{Candle, FakeBackend, FakeBinance, Market, SymbolState};

const HOUR: i64 = 3_600_000;
const PATH: &str = "/api/volume-alerts/ingest";

fn candle(open_time_ms: i64, quote_volume: f64) -> Candle {
    Candle {
        open_time_ms,
        open: 100.0,
        high: 103.0,
        low: 99.0,
        close: 102.0,
        base_volume: quote_volume / 101.0,
        quote_volume,
        trades: 100,
    }
}

/// BTC's volume quadruples hour after hour, so the tick finds a spike
/// whether it falls at hh:00 (closed candles) or inside the hour.
fn spiking_market(boundary_ms: i64) -> Market {
    let hour = boundary_ms / HOUR * HOUR;
    let mut market = Market::new();
    let mut btc = SymbolState::perpetual("BTCUSDT", 102.0, 5e9);
    btc.candles = vec![
        candle(hour - 2 * HOUR, 10e6),
        candle(hour - HOUR, 40e6),
        candle(hour, 160e6),
    ];
    market.insert(btc);
    let mut eth = SymbolState::perpetual("ETHUSDT", 3000.0, 2e9);
    eth.candles = vec![
        candle(hour - 2 * HOUR, 50e6),
        candle(hour - HOUR, 50e6),
        candle(hour, 50e6),
    ];
    market.insert(eth);
    market
}

fn pending(addr: &str) -> u64 {
    http_get(addr, "/health")
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|json| json["delivery"]["primary"]["pending"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_spike_detected_while_the_backend_is_down_survives_kill_9_and_arrives_once() {
    let period = Duration::from_secs(300);
    let offset = clock_offset_before_boundary(period, Duration::from_secs(4));
    let shifted_boundary = {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let shifted = now + offset.parse::<i64>().unwrap_or(0);
        (shifted / 300_000 + 1) * 300_000
    };
    let binance = FakeBinance::start(spiking_market(shifted_boundary)).expect("fake binance");
    let backend = FakeBackend::start().expect("fake backend");
    backend.set_down(true);
    let dir = TempDir::new("spike-crash");
    let env = [
        ("BACKEND_URL", backend.url()),
        ("ALERT_INGEST_API_KEY", "crash-key".to_string()),
        ("BINANCE_FAPI_URL", binance.rest_url()),
        ("BINANCE_WS_URL", binance.ws_url()),
    ];
    let mut first_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    first_env.push(("VOLSPIKE_CLOCK_OFFSET_MS", offset.as_str()));
    let mut first = Running::start(&dir, &["--only", "volume_spike,funding_stream"], &first_env);

    // Detected and on disk, not delivered: the backend is down.
    let queued = wait_until(Duration::from_secs(60), || {
        (pending(&first.addr) >= 1).then_some(())
    });
    assert!(
        queued.is_some(),
        "the spike was never queued; log:\n{}",
        first.log_text()
    );
    assert!(
        first.log_text().contains("BTC hourly volume"),
        "{}",
        first.log_text()
    );
    signal(first.child.id(), "KILL");
    let _ = first.wait_exit(Duration::from_secs(10));
    assert!(
        backend.requests_to(PATH).is_empty(),
        "nothing got through while down"
    );

    // The backend comes back; the restarted appliance resends what was pending.
    backend.set_down(false);
    let second_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let second = Running::start(
        &dir,
        &["--only", "volume_spike,funding_stream"],
        &second_env,
    );
    let delivered = backend.wait_for_requests(PATH, 1, Duration::from_secs(60));
    assert_eq!(delivered.len(), 1, "log:\n{}", second.log_text());
    let body = delivered[0].json.clone().unwrap_or_default();
    assert_eq!(body["symbol"], "BTCUSDT");
    assert_eq!(body["alertType"], "SPIKE");
    assert_eq!(delivered[0].header("x-api-key"), Some("crash-key"));
    // And only once, however long we look.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(backend.requests_to(PATH).len(), 1, "delivered exactly once");
    assert_eq!(pending(&second.addr), 0);
}
