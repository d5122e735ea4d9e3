//! The fake Binance REST API: shapes, weights, failures, concurrency.

use std::time::{Duration, Instant};

use crate::common::{get, raw, Resp};
use serde_json::Value;
use volspike_fakes::{Candle, FakeBinance, Market, FILTERED_OUT_SYMBOLS, HOUR_MS};

fn fake(n: usize) -> FakeBinance {
    FakeBinance::start(Market::synthetic(n)).expect("start fake binance")
}

fn is_decimal_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.parse::<f64>().is_ok())
}

fn assert_strings(obj: &Value, fields: &[&str]) {
    for f in fields {
        assert!(
            is_decimal_string(&obj[*f]),
            "{f} must be a decimal string: {obj}"
        );
    }
}

fn assert_ints(obj: &Value, fields: &[&str]) {
    for f in fields {
        assert!(obj[*f].is_i64(), "{f} must be an integer: {obj}");
    }
}

fn used_weight(resp: &Resp) -> u32 {
    resp.header("X-MBX-USED-WEIGHT-1M")
        .and_then(|v| v.parse().ok())
        .expect("X-MBX-USED-WEIGHT-1M header")
}

#[test]
fn exchange_info_lists_every_symbol_with_filter_fields() {
    let fake = fake(10);
    let resp = get(&fake.rest_url(), "/fapi/v1/exchangeInfo");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Content-Type"), Some("application/json"));
    let info = resp.json();
    assert_eq!(info["timezone"], "UTC");
    assert!(info["serverTime"].is_i64());
    let limit = &info["rateLimits"][0];
    assert_eq!(
        (
            limit["rateLimitType"].as_str(),
            limit["interval"].as_str(),
            limit["limit"].as_u64()
        ),
        (Some("REQUEST_WEIGHT"), Some("MINUTE"), Some(2400))
    );
    let symbols = info["symbols"].as_array().expect("symbols");
    assert_eq!(symbols.len(), 15);
    let keep = |s: &&Value| {
        s["contractType"] == "PERPETUAL" && s["quoteAsset"] == "USDT" && s["status"] == "TRADING"
    };
    let kept: Vec<&str> = symbols
        .iter()
        .filter(keep)
        .filter_map(|s| s["symbol"].as_str())
        .collect();
    assert_eq!(kept.len(), 10);
    for name in FILTERED_OUT_SYMBOLS {
        assert!(
            !kept.contains(&name),
            "{name} must fail the universe filter"
        );
    }
    let quarterly = symbols
        .iter()
        .find(|s| s["symbol"] == "BTCUSDT_261225")
        .expect("quarterly");
    assert_eq!(quarterly["pair"], "BTCUSDT");
    assert_eq!(quarterly["contractType"], "CURRENT_QUARTER");
    let btc = symbols
        .iter()
        .find(|s| s["symbol"] == "BTCUSDT")
        .expect("BTCUSDT");
    assert_eq!(
        (btc["baseAsset"].as_str(), btc["marginAsset"].as_str()),
        (Some("BTC"), Some("USDT"))
    );
}

#[test]
fn tickers_premium_and_open_interest_send_strings() {
    let fake = fake(5);
    let url = fake.rest_url();

    let one = get(&url, "/fapi/v1/ticker/24hr?symbol=BTCUSDT").json();
    assert_eq!(one.as_object().map(|o| o.len()), Some(16));
    assert_eq!(one["symbol"], "BTCUSDT");
    assert_strings(
        &one,
        &[
            "priceChange",
            "priceChangePercent",
            "weightedAvgPrice",
            "lastPrice",
            "lastQty",
            "openPrice",
            "highPrice",
            "lowPrice",
            "volume",
            "quoteVolume",
        ],
    );
    assert_ints(
        &one,
        &["openTime", "closeTime", "firstId", "lastId", "count"],
    );
    let all = get(&url, "/fapi/v1/ticker/24hr").json();
    assert_eq!(all.as_array().map(Vec::len), Some(10));

    let price = get(&url, "/fapi/v2/ticker/price?symbol=ETHUSDT").json();
    assert_eq!(price["symbol"], "ETHUSDT");
    assert_strings(&price, &["price"]);
    assert_ints(&price, &["time"]);
    assert_eq!(
        get(&url, "/fapi/v2/ticker/price")
            .json()
            .as_array()
            .map(Vec::len),
        Some(10)
    );

    let oi = get(&url, "/fapi/v1/openInterest?symbol=BTCUSDT").json();
    assert_strings(&oi, &["openInterest"]);
    assert_eq!(oi["symbol"], "BTCUSDT");
    assert_ints(&oi, &["time"]);
    assert_eq!(get(&url, "/fapi/v1/openInterest").status, 400);

    let premium = get(&url, "/fapi/v1/premiumIndex?symbol=BTCUSDT").json();
    assert_strings(
        &premium,
        &[
            "markPrice",
            "indexPrice",
            "estimatedSettlePrice",
            "lastFundingRate",
            "interestRate",
        ],
    );
    assert_ints(&premium, &["nextFundingTime", "time"]);
    let quarterly = get(&url, "/fapi/v1/premiumIndex?symbol=BTCUSDT_261225").json();
    assert_eq!(quarterly["lastFundingRate"], "");
    assert_eq!(quarterly["nextFundingTime"], 0);
    assert_eq!(
        get(&url, "/fapi/v1/premiumIndex")
            .json()
            .as_array()
            .map(Vec::len),
        Some(10)
    );

    // Market changes show up in the next answer.
    fake.market().update("BTCUSDT", |s| s.last_price = 12_345.5);
    let price = get(&url, "/fapi/v2/ticker/price?symbol=BTCUSDT").json();
    assert_eq!(price["price"], "12345.50000000");
}

#[test]
fn klines_are_twelve_element_arrays_of_the_last_candles() {
    let fake = fake(3);
    let url = fake.rest_url();
    let base = Candle::hour_start(1_764_770_400_000);
    let candles: Vec<Candle> = (0..5)
        .map(|i| Candle::flat(base + i * HOUR_MS, 100.0, 1e6 * (i + 1) as f64))
        .collect();
    assert!(fake.market().set_candles("ETHUSDT", candles));

    let resp = get(&url, "/fapi/v1/klines?symbol=ETHUSDT&interval=1h&limit=3");
    assert_eq!(resp.status, 200);
    let rows = resp.json();
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 3);
    for row in rows {
        let row = row.as_array().expect("kline array");
        assert_eq!(row.len(), 12);
        for i in [0, 6, 8] {
            assert!(row[i].is_i64(), "element {i} must be an integer: {row:?}");
        }
        for i in [1, 2, 3, 4, 5, 7, 9, 10, 11] {
            assert!(
                is_decimal_string(&row[i]),
                "element {i} must be a decimal string: {row:?}"
            );
        }
        assert_eq!(row[6].as_i64(), row[0].as_i64().map(|t| t + 3_599_999));
    }
    // The last three candles, oldest first; quote volume at index 7.
    assert_eq!(rows[0][0].as_i64(), Some(base + 2 * HOUR_MS));
    assert_eq!(rows[2][7], "5000000.00000000");

    let from = get(
        &url,
        &format!("/fapi/v1/klines?symbol=ETHUSDT&interval=1h&limit=2&startTime={base}"),
    )
    .json();
    assert_eq!(from[0][0].as_i64(), Some(base));

    let bad_interval = get(&url, "/fapi/v1/klines?symbol=ETHUSDT&interval=5m&limit=3");
    assert_eq!(bad_interval.status, 400);
    assert_eq!(bad_interval.json()["code"], -1120);
    assert_eq!(bad_interval.json()["msg"], "Invalid interval.");
    assert_eq!(
        get(&url, "/fapi/v1/klines?symbol=ETHUSDT&interval=1h&limit=abc").status,
        400
    );
}

#[test]
fn unknown_symbol_path_and_garbage_requests() {
    let fake = fake(2);
    let url = fake.rest_url();
    for target in [
        "/fapi/v1/ticker/24hr?symbol=NOPEUSDT",
        "/fapi/v1/klines?symbol=NOPEUSDT&interval=1h&limit=3",
        "/fapi/v1/openInterest?symbol=NOPEUSDT",
        "/fapi/v1/premiumIndex?symbol=NOPEUSDT",
        "/fapi/v2/ticker/price?symbol=NOPEUSDT",
    ] {
        let resp = get(&url, target);
        assert_eq!(resp.status, 400, "{target}");
        assert_eq!(
            resp.json(),
            serde_json::json!({"code": -1121, "msg": "Invalid symbol."})
        );
    }
    assert_eq!(get(&url, "/fapi/v1/nope").status, 404);

    assert!(raw(&url, b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(raw(
        &url,
        b"GET /fapi/v1/exchangeInfo HTTP/1.1\r\nno colon here\r\n\r\n"
    )
    .starts_with("HTTP/1.1 400"));
    assert!(raw(&url, b"GET / HTTP/9.9\r\n\r\n").starts_with("HTTP/1.1 400"));
    // Still serving.
    assert_eq!(get(&url, "/fapi/v1/exchangeInfo").status, 200);
}

#[test]
fn weight_is_counted_and_reported() {
    let fake = fake(3);
    let url = fake.rest_url();
    let calls = [
        ("/fapi/v1/exchangeInfo", 1),
        ("/fapi/v1/ticker/24hr", 40),
        ("/fapi/v1/ticker/24hr?symbol=BTCUSDT", 1),
        ("/fapi/v1/klines?symbol=BTCUSDT&interval=1h&limit=3", 1),
        ("/fapi/v1/klines?symbol=BTCUSDT&interval=1h&limit=200", 2),
        ("/fapi/v1/premiumIndex", 10),
        ("/fapi/v2/ticker/price", 2),
        ("/fapi/v1/ticker/24hr?symbol=NOPE", 1),
    ];
    let mut previous: Option<u32> = None;
    for (target, weight) in calls {
        let used = used_weight(&get(&url, target));
        match previous {
            // Same wall-clock minute: the header grows by the call's weight;
            // a new minute starts again from the call's weight.
            Some(p) => assert!(
                used == p + weight || used == weight,
                "{target}: {p} -> {used}"
            ),
            None => assert!(used >= weight),
        }
        previous = Some(used);
    }
    assert_eq!(fake.weight_in_window(Duration::from_secs(300)), 58);
    let log = fake.requests();
    assert_eq!(log.len(), 8);
    assert_eq!(log[3].path, "/fapi/v1/klines");
    assert_eq!(log[3].query, "symbol=BTCUSDT&interval=1h&limit=3");
    assert_eq!(log[3].weight, 1);
    assert_eq!(log[7].status, 400);
    assert!(fake.weight_this_minute() >= 1);

    fake.clear_requests();
    assert!(fake.requests().is_empty());
    assert_eq!(fake.weight_in_window(Duration::from_secs(300)), 0);
}

#[test]
fn stats_route_sums_weight_per_window_and_path_and_costs_nothing() {
    let fake = fake(3);
    let url = fake.rest_url();
    let _ = get(&url, "/fapi/v1/ticker/24hr");
    let _ = get(&url, "/fapi/v1/klines?symbol=BTCUSDT&interval=1h&limit=2");
    let _ = get(&url, "/fapi/v1/klines?symbol=ETHUSDT&interval=1h&limit=2");
    let _ = get(&url, "/fapi/v1/klines?symbol=NOPE&interval=1h&limit=2");
    let resp = get(&url, "/__stats");
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("X-MBX-USED-WEIGHT-1M").is_none(),
        "not a Binance route"
    );
    let stats = resp.json();
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["weight"], 43);
    assert_eq!(stats["windowMs"], 60_000);
    assert_eq!(stats["paths"]["/fapi/v1/klines"]["requests"], 3);
    assert_eq!(stats["paths"]["/fapi/v1/klines"]["weight"], 3);
    assert_eq!(stats["paths"]["/fapi/v1/ticker/24hr"]["weight"], 40);
    assert_eq!(stats["statuses"]["200"], 3);
    assert_eq!(stats["statuses"]["400"], 1);
    let windows = stats["windows"].as_array().expect("windows");
    let summed: u64 = windows
        .iter()
        .map(|w| w["weight"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(summed, 43);
    assert!(windows
        .iter()
        .all(|w| w["start"].as_i64().unwrap_or(1) % 60_000 == 0));
    // The route itself is neither charged nor recorded.
    assert_eq!(fake.requests().len(), 4);
    assert_eq!(fake.stats(0)["weight"], 43);
    // `since` in the future: nothing yet.
    let later = get(&url, "/__stats?since=99999999999999").json();
    assert_eq!(
        (later["requests"].as_u64(), later["weight"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn fail_next_answers_scripted_errors_and_still_charges_weight() {
    let fake = fake(2);
    let url = fake.rest_url();
    fake.fail_next(2, 429, Some(7));
    for _ in 0..2 {
        let resp = get(&url, "/fapi/v1/ticker/24hr");
        assert_eq!(resp.status, 429);
        assert_eq!(resp.header("Retry-After"), Some("7"));
        assert_eq!(resp.json()["code"], -1003);
        assert!(resp.json()["msg"]
            .as_str()
            .is_some_and(|m| m.starts_with("Too many requests")));
        assert!(used_weight(&resp) >= 40);
    }
    let ok = get(&url, "/fapi/v1/ticker/24hr");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("Retry-After"), None);

    fake.fail_next(1, 418, None);
    let banned = get(&url, "/fapi/v1/exchangeInfo");
    assert_eq!(banned.status, 418);
    assert_eq!(banned.header("Retry-After"), None);
    assert_eq!(banned.json()["code"], -1003);
    fake.fail_next(1, 500, None);
    assert_eq!(get(&url, "/fapi/v1/exchangeInfo").status, 500);

    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 200, 418, 500]);
    assert_eq!(fake.weight_in_window(Duration::from_secs(300)), 40 * 3 + 2);
}

#[test]
fn weight_limit_answers_429_with_retry_after() {
    let fake = fake(2);
    let url = fake.rest_url();
    fake.set_weight_limit(50);
    // Two 40-weight calls in one minute exceed 50; a minute boundary can
    // reset the counter once, so allow a few tries.
    let limited = (0..6)
        .map(|_| get(&url, "/fapi/v1/ticker/24hr"))
        .find(|r| r.status == 429)
        .expect("a 429 once the minute's weight exceeds the limit");
    assert_eq!(limited.json()["code"], -1003);
    let retry: u64 = limited
        .header("Retry-After")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(used_weight(&limited) > 50);

    fake.set_weight_limit(u32::MAX);
    assert_eq!(get(&url, "/fapi/v1/ticker/24hr").status, 200);
}

#[test]
fn concurrent_requests_overlap_their_latency() {
    let fake = fake(2);
    let url = fake.rest_url();
    let latency = Duration::from_millis(300);
    fake.set_latency(latency);
    let start = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let status = get(&url, "/fapi/v1/openInterest?symbol=BTCUSDT").status;
                (status, t.elapsed())
            })
        })
        .collect();
    for t in threads {
        let (status, took) = t.join().expect("client thread");
        assert_eq!(status, 200);
        assert!(took >= latency, "answered before the latency: {took:?}");
    }
    let total = start.elapsed();
    // Serially this would take 8 × 300 ms = 2.4 s.
    assert!(
        total < Duration::from_millis(1800),
        "8 concurrent requests took {total:?}"
    );
}

#[test]
fn spike_route_puts_the_open_hour_across_the_rule_and_lists_injections() {
    let fake = fake(3);
    let url = fake.rest_url();
    let previous = fake
        .market()
        .get("BTCUSDT")
        .and_then(|s| s.candles.iter().rev().nth(1).map(|c| c.quote_volume))
        .expect("BTC has a previous hour");
    let resp = get(&url, "/__spike?symbol=BTCUSDT");
    assert_eq!(resp.status, 200);
    let answer = resp.json();
    assert_eq!(answer["quoteVolume"], previous * 4.0 + 3e6);
    let open = fake
        .market()
        .get("BTCUSDT")
        .and_then(|s| s.candles.last().map(|c| c.quote_volume));
    assert_eq!(open, Some(previous * 4.0 + 3e6));
    assert_eq!(get(&url, "/__spike?symbol=NOPEUSDT").status, 404);
    let marks = get(&url, "/__spikes").json();
    assert_eq!(marks[0]["symbol"], "BTCUSDT");
    assert_eq!(marks[0]["injectedMs"], answer["injectedMs"]);
    // No kline subscriber: no push carried it yet.
    assert!(marks[0]["firstEventMs"].is_null());
    assert!(
        fake.requests().is_empty(),
        "control routes are not Binance's"
    );
}
