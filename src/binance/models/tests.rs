//! Decoding tests with the exact sample payloads of `docs/binance.md`.

use super::*;
use serde::Deserialize;

const EXCHANGE_INFO: &str = r#"{
  "timezone":"UTC","serverTime":1589437530011,
  "rateLimits":[
    {"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":2400},
    {"rateLimitType":"ORDERS","interval":"MINUTE","intervalNum":1,"limit":1200}
  ],
  "symbols":[
    {"symbol":"BTCUSDT","pair":"BTCUSDT","contractType":"PERPETUAL","status":"TRADING",
     "baseAsset":"BTC","quoteAsset":"USDT","marginAsset":"USDT","pricePrecision":2,
     "filters":[{"filterType":"PRICE_FILTER","tickSize":"0.10"}],"underlyingSubType":["PoW"]},
    {"symbol":"XAUUSDT","pair":"XAUUSDT","contractType":"TRADIFI_PERPETUAL","status":"TRADING",
     "baseAsset":"XAU","quoteAsset":"USDT","marginAsset":"USDT"},
    {"symbol":"BTCUSDT_260626","pair":"BTCUSDT","contractType":"CURRENT_QUARTER","status":"TRADING",
     "baseAsset":"BTC","quoteAsset":"USDT","marginAsset":"USDT"},
    {"symbol":"NEWUSDT","pair":"NEWUSDT","contractType":"","status":"PENDING_TRADING",
     "baseAsset":"NEW","quoteAsset":"USDT","marginAsset":"USDT"},
    {"symbol":"OLDUSDT","pair":"OLDUSDT","contractType":"PERPETUAL","status":"SETTLING",
     "baseAsset":"OLD","quoteAsset":"USDT","marginAsset":"USDT"},
    {"symbol":"ETHUSDC","pair":"ETHUSDC","contractType":"PERPETUAL","status":"TRADING",
     "baseAsset":"ETH","quoteAsset":"USDC","marginAsset":"USDC"},
    {"symbol":"ETHUSDT","pair":"ETHUSDT","contractType":"PERPETUAL","status":"TRADING",
     "baseAsset":"ETH","quoteAsset":"USDT","marginAsset":"USDT","st":1,"ps":"x"}
  ]
}"#;

#[test]
fn exchange_info_filters_exactly_the_universe() {
    let info: ExchangeInfo = serde_json::from_str(EXCHANGE_INFO).expect("decodes");
    assert_eq!(info.symbols.len(), 7);
    let names: Vec<_> = info.universe().into_iter().map(|s| s.symbol).collect();
    assert_eq!(names, ["BTCUSDT", "ETHUSDT"]);
    assert_eq!(info.request_weight_per_minute(), Some(2400));
    let btc = &info.symbols[0];
    assert_eq!(
        (
            btc.pair.as_str(),
            btc.base_asset.as_str(),
            btc.margin_asset.as_str()
        ),
        ("BTCUSDT", "BTC", "USDT")
    );
}

#[test]
fn exchange_info_without_symbols_is_an_error() {
    assert!(serde_json::from_str::<ExchangeInfo>(r#"{"rateLimits":[]}"#).is_err());
    assert!(serde_json::from_str::<ExchangeInfo>(r#"{"symbols":[{"symbol":"X"}]}"#).is_err());
}

const TICKER_24H: &str = r#"{"symbol":"BTCUSDT","priceChange":"-94.99999800","priceChangePercent":"-95.960",
 "weightedAvgPrice":"0.29628482","lastPrice":"4.00000200","lastQty":"200.00000000",
 "openPrice":"99.00000000","highPrice":"100.00000000","lowPrice":"0.10000000",
 "volume":"8913.30000000","quoteVolume":"15.30000000","openTime":1499783499040,
 "closeTime":1499869899040,"firstId":28385,"lastId":28460,"count":76}"#;

#[test]
fn ticker_24h_single_and_array() {
    let t: Ticker24h = serde_json::from_str(TICKER_24H).expect("decodes");
    assert_eq!(t.symbol, "BTCUSDT");
    assert_eq!(t.price_change, -94.999998);
    assert_eq!(t.price_change_percent, -95.96);
    assert_eq!(t.weighted_avg_price, 0.29628482);
    assert_eq!(t.last_price, 4.000002);
    assert_eq!(t.last_qty, 200.0);
    assert_eq!(t.open_price, 99.0);
    assert_eq!(t.high_price, 100.0);
    assert_eq!(t.low_price, 0.1);
    assert_eq!(t.volume, 8913.3);
    assert_eq!(t.quote_volume, 15.3);
    assert_eq!((t.open_time, t.close_time), (1499783499040, 1499869899040));
    assert_eq!((t.first_id, t.last_id, t.count), (28385, 28460, 76));
    let all: Vec<Ticker24h> =
        serde_json::from_str(&format!("[{TICKER_24H},{TICKER_24H}]")).expect("array decodes");
    assert_eq!(all.len(), 2);
}

#[test]
fn ticker_24h_with_a_non_numeric_string_is_an_error() {
    let bad = TICKER_24H.replace(r#""quoteVolume":"15.30000000""#, r#""quoteVolume":"abc""#);
    assert!(serde_json::from_str::<Ticker24h>(&bad).is_err());
    let empty = TICKER_24H.replace(r#""quoteVolume":"15.30000000""#, r#""quoteVolume":"""#);
    assert!(serde_json::from_str::<Ticker24h>(&empty).is_err());
    let nan = TICKER_24H.replace(r#""quoteVolume":"15.30000000""#, r#""quoteVolume":"NaN""#);
    assert!(serde_json::from_str::<Ticker24h>(&nan).is_err());
    let missing = TICKER_24H.replace(r#""quoteVolume":"15.30000000","#, "");
    assert!(serde_json::from_str::<Ticker24h>(&missing).is_err());
}

#[test]
fn price_ticker_v2() {
    let p: PriceTicker =
        serde_json::from_str(r#"{"symbol":"BTCUSDT","price":"6000.01","time":1589437530011}"#)
            .expect("decodes");
    assert_eq!(p.symbol, "BTCUSDT");
    assert_eq!(p.price, 6000.01);
    assert_eq!(p.time, 1589437530011);
    let all: Vec<PriceTicker> = serde_json::from_str(
        r#"[{"symbol":"A","price":"1","time":1},{"symbol":"B","price":"2.5","time":2}]"#,
    )
    .expect("array decodes");
    assert_eq!(all[1].price, 2.5);
    assert!(serde_json::from_str::<PriceTicker>(r#"{"symbol":"A","price":"x"}"#).is_err());
}

const KLINE: &str = r#"[1499040000000, "0.01634790", "0.80000000", "0.01575800", "0.01577100", "148976.11427815",
 1499644799999, "2434.19055334", 308, "1756.87402397", "28.46694368", "0"]"#;

#[test]
fn kline_from_the_12_element_array() {
    let k: Kline = serde_json::from_str(KLINE).expect("decodes");
    assert_eq!(
        k,
        Kline {
            open_time_ms: 1499040000000,
            open: 0.0163479,
            high: 0.8,
            low: 0.015758,
            close: 0.015771,
            base_volume: 148976.11427815,
            close_time_ms: 1499644799999,
            quote_volume: 2434.19055334,
            trades: 308,
            taker_buy_base: 1756.87402397,
            taker_buy_quote: 28.46694368,
        }
    );
    let many: Vec<Kline> = serde_json::from_str(&format!("[{KLINE},{KLINE}]")).expect("array");
    assert_eq!(many.len(), 2);
}

#[test]
fn kline_tolerates_an_extra_trailing_element() {
    let longer = KLINE.replace(r#""0"]"#, r#""0", "new"]"#);
    assert!(serde_json::from_str::<Kline>(&longer).is_ok());
}

#[test]
fn malformed_klines_are_errors() {
    let short = r#"[1499040000000, "0.01634790", "0.8"]"#;
    assert!(serde_json::from_str::<Kline>(short).is_err());
    let bad_num = KLINE.replace(r#""2434.19055334""#, r#""2434.1.9""#);
    assert!(serde_json::from_str::<Kline>(&bad_num).is_err());
    let bad_time = KLINE.replace("1499040000000", r#""soon""#);
    assert!(serde_json::from_str::<Kline>(&bad_time).is_err());
    assert!(serde_json::from_str::<Kline>(r#"{"open":1}"#).is_err());
    assert!(
        serde_json::from_str::<Vec<Kline>>(r#"{"code":-1121,"msg":"Invalid symbol."}"#).is_err()
    );
}

#[test]
fn open_interest_is_contracts() {
    let oi: OpenInterest = serde_json::from_str(
        r#"{"openInterest":"10659.509","symbol":"BTCUSDT","time":1589437530011}"#,
    )
    .expect("decodes");
    assert_eq!(oi.symbol, "BTCUSDT");
    assert_eq!(oi.contracts, 10659.509);
    assert_eq!(oi.time, 1589437530011);
    assert!(
        serde_json::from_str::<OpenInterest>(r#"{"openInterest":"","symbol":"X","time":1}"#)
            .is_err()
    );
}

const PREMIUM: &str = r#"{"symbol":"BTCUSDT","markPrice":"11793.63104562","indexPrice":"11781.80495970",
 "estimatedSettlePrice":"11781.16138815","lastFundingRate":"0.00038246","interestRate":"0.00010000",
 "nextFundingTime":1597392000000,"time":1597370495002}"#;

#[test]
fn premium_index_perpetual() {
    let p: PremiumIndex = serde_json::from_str(PREMIUM).expect("decodes");
    assert_eq!(p.mark_price, 11793.63104562);
    assert_eq!(p.index_price, 11781.8049597);
    assert_eq!(p.estimated_settle_price, Some(11781.16138815));
    assert_eq!(p.last_funding_rate, Some(0.00038246));
    assert_eq!(p.interest_rate, Some(0.0001));
    assert_eq!(
        (p.next_funding_time, p.time),
        (1597392000000, 1597370495002)
    );
}

#[test]
fn premium_index_quarterly_sends_empty_funding_and_new_fields() {
    let quarterly = r#"{"symbol":"BTCUSDT_260626","markPrice":"11793.6","indexPrice":"11781.8",
      "estimatedSettlePrice":"11781.1","lastFundingRate":"","interestRate":"",
      "nextFundingTime":0,"time":1597370495002,"ap":"11790.1","st":1,"ps":"BTCUSDT"}"#;
    let p: PremiumIndex = serde_json::from_str(quarterly).expect("decodes");
    assert_eq!(p.last_funding_rate, None);
    assert_eq!(p.interest_rate, None);
    assert_eq!(p.next_funding_time, 0);
    let all: Vec<PremiumIndex> =
        serde_json::from_str(&format!("[{PREMIUM},{quarterly}]")).expect("mixed array decodes");
    assert_eq!(all.len(), 2);
}

#[test]
fn premium_index_without_mark_price_is_an_error() {
    let bad = PREMIUM.replace(r#""markPrice":"11793.63104562","#, "");
    assert!(serde_json::from_str::<PremiumIndex>(&bad).is_err());
    let empty = PREMIUM.replace(r#""markPrice":"11793.63104562""#, r#""markPrice":"""#);
    assert!(serde_json::from_str::<PremiumIndex>(&empty).is_err());
}

/// The WebSocket mark-price sample of docs/binance.md, decoded with the same helpers:
/// `"r":""` (quarterlies) must not fail the frame, `ap`/`st`/`ps` are ignored.
#[derive(Deserialize)]
struct MarkPriceSample {
    #[serde(rename = "p", deserialize_with = "f64_from_str")]
    mark: f64,
    #[serde(rename = "r", deserialize_with = "opt_f64_from_str")]
    rate: Option<f64>,
}

#[test]
fn helpers_accept_the_ws_sample_with_empty_funding_and_new_fields() {
    let frame = r#"[{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11185.87786614",
       "i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000},
      {"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT_260626","p":"11185.8","i":"1","P":"1",
       "r":"","T":0,"ap":"11185.1","st":2,"ps":"BTCUSD"}]"#;
    let v: Vec<MarkPriceSample> = serde_json::from_str(frame).expect("decodes");
    assert_eq!(v[0].mark, 11185.87786614);
    assert_eq!(v[0].rate, Some(0.00038167));
    assert_eq!(v[1].rate, None);
}

#[test]
fn api_error_body() {
    let e: ApiErrorBody =
        serde_json::from_str(r#"{"code":-1121,"msg":"Invalid symbol."}"#).expect("decodes");
    assert_eq!((e.code, e.msg.as_str()), (-1121, "Invalid symbol."));
}
