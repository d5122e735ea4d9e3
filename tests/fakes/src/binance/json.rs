//! Binance JSON shapes rendered from the market model.
//!
//! Like Binance, prices, quantities, volumes and rates are **strings**; times,
//! ids and counts are integers.

use serde_json::{json, Value};

use super::market::{Candle, Market, SymbolState, HOUR_MS};

/// One day in milliseconds.
const DAY_MS: i64 = 24 * HOUR_MS;

/// A price, rate or volume as Binance sends it: fixed 8 decimals.
pub(crate) fn dec8(x: f64) -> String {
    format!("{x:.8}")
}

/// A quantity in contracts: fixed 3 decimals (`"10659.509"`).
pub(crate) fn dec3(x: f64) -> String {
    format!("{x:.3}")
}

/// Funding rate string; `""` when the contract has no funding.
fn funding(state: &SymbolState) -> String {
    state.funding_rate.map(dec8).unwrap_or_default()
}

/// Next funding time; 0 when the contract has no funding.
fn next_funding(state: &SymbolState) -> i64 {
    if state.funding_rate.is_some() {
        state.next_funding_time
    } else {
        0
    }
}

/// Derived 24 h statistics shared by the REST and stream tickers.
struct Day {
    open: f64,
    high: f64,
    low: f64,
    weighted_avg: f64,
    first_id: i64,
    last_id: i64,
    count: i64,
}

fn day(state: &SymbolState) -> Day {
    let open = state.open_price_24h();
    let count = ((state.quote_volume_24h / 5_000.0) as i64).max(1);
    let first_id = 1_000_000;
    Day {
        open,
        high: open.max(state.last_price) * 1.01,
        low: open.min(state.last_price) * 0.99,
        weighted_avg: if state.base_volume_24h > 0.0 {
            state.quote_volume_24h / state.base_volume_24h
        } else {
            state.last_price
        },
        first_id,
        last_id: first_id + count - 1,
        count,
    }
}

/// `GET /fapi/v1/exchangeInfo`.
pub(crate) fn exchange_info(market: &Market, weight_limit: u32, now: i64) -> Value {
    let symbols: Vec<Value> = market.iter().map(exchange_symbol).collect();
    json!({
        "timezone": "UTC",
        "serverTime": now,
        "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": weight_limit},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300}
        ],
        "exchangeFilters": [],
        "assets": [
            {"asset": "USDT", "marginAvailable": true, "autoAssetExchange": "-10000"},
            {"asset": "USDC", "marginAvailable": true, "autoAssetExchange": "-10000"}
        ],
        "symbols": symbols,
    })
}

fn exchange_symbol(state: &SymbolState) -> Value {
    let delivery = if state.contract_type.contains("QUARTER") {
        1_766_649_600_000_i64 // 2025-12-25 08:00 UTC
    } else {
        4_133_404_800_000 // 2100-12-25: what Binance sends for perpetuals
    };
    json!({
        "symbol": state.symbol,
        "pair": state.pair(),
        "contractType": state.contract_type,
        "deliveryDate": delivery,
        "onboardDate": 1_569_398_400_000_i64,
        "status": state.status,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": state.base_asset,
        "quoteAsset": state.quote_asset,
        "marginAsset": state.quote_asset,
        "pricePrecision": 8,
        "quantityPrecision": 3,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": if state.contract_type == "TRADIFI_PERPETUAL" { "TRADIFI" } else { "COIN" },
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0.00000001", "maxPrice": "1000000", "tickSize": "0.00000001"},
            {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000000", "stepSize": "0.001"},
            {"filterType": "MIN_NOTIONAL", "notional": "5"}
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    })
}

/// One `GET /fapi/v1/ticker/24hr` object (all 16 fields).
pub(crate) fn ticker_24hr(state: &SymbolState, now: i64) -> Value {
    let d = day(state);
    json!({
        "symbol": state.symbol,
        "priceChange": dec8(state.price_change),
        "priceChangePercent": format!("{:.3}", state.price_change_percent()),
        "weightedAvgPrice": dec8(d.weighted_avg),
        "lastPrice": dec8(state.last_price),
        "lastQty": "1.000",
        "openPrice": dec8(d.open),
        "highPrice": dec8(d.high),
        "lowPrice": dec8(d.low),
        "volume": dec8(state.base_volume_24h),
        "quoteVolume": dec8(state.quote_volume_24h),
        "openTime": now - DAY_MS,
        "closeTime": now,
        "firstId": d.first_id,
        "lastId": d.last_id,
        "count": d.count,
    })
}

/// One `GET /fapi/v2/ticker/price` object.
pub(crate) fn ticker_price(state: &SymbolState, now: i64) -> Value {
    json!({"symbol": state.symbol, "price": dec8(state.last_price), "time": now})
}

/// One 12-element kline array.
pub(crate) fn kline(c: &Candle) -> Value {
    json!([
        c.open_time_ms,
        dec8(c.open),
        dec8(c.high),
        dec8(c.low),
        dec8(c.close),
        dec8(c.base_volume),
        c.close_time_ms(),
        dec8(c.quote_volume),
        c.trades,
        dec8(c.base_volume / 2.0),
        dec8(c.quote_volume / 2.0),
        "0"
    ])
}

/// `GET /fapi/v1/openInterest` object.
pub(crate) fn open_interest(state: &SymbolState, now: i64) -> Value {
    json!({"openInterest": dec3(state.open_interest), "symbol": state.symbol, "time": now})
}

/// One `GET /fapi/v1/premiumIndex` object.
pub(crate) fn premium_index(state: &SymbolState, now: i64) -> Value {
    let interest = if state.funding_rate.is_some() {
        dec8(0.0001)
    } else {
        String::new()
    };
    json!({
        "symbol": state.symbol,
        "markPrice": dec8(state.mark_price),
        "indexPrice": dec8(state.index_price),
        "estimatedSettlePrice": dec8(state.index_price),
        "lastFundingRate": funding(state),
        "interestRate": interest,
        "nextFundingTime": next_funding(state),
        "time": now,
    })
}

/// One `markPriceUpdate` object of `!markPrice@arr`, with the newer `ap`
/// and `st` fields a tolerant parser must ignore.
pub(crate) fn ws_mark_price(state: &SymbolState, now: i64) -> Value {
    json!({
        "e": "markPriceUpdate",
        "E": now,
        "s": state.symbol,
        "p": dec8(state.mark_price),
        "ap": dec8(state.mark_price),
        "i": dec8(state.index_price),
        "P": dec8(state.index_price),
        "r": funding(state),
        "T": next_funding(state),
        "st": 1,
    })
}

/// One `24hrTicker` object of `!ticker@arr` (`p` is the 24 h change, not a price).
pub(crate) fn ws_ticker(state: &SymbolState, now: i64) -> Value {
    let d = day(state);
    json!({
        "e": "24hrTicker",
        "E": now,
        "s": state.symbol,
        "p": dec8(state.price_change),
        "P": format!("{:.3}", state.price_change_percent()),
        "w": dec8(d.weighted_avg),
        "c": dec8(state.last_price),
        "Q": "1.000",
        "o": dec8(d.open),
        "h": dec8(d.high),
        "l": dec8(d.low),
        "v": dec8(state.base_volume_24h),
        "q": dec8(state.quote_volume_24h),
        "O": now - DAY_MS,
        "C": now,
        "F": d.first_id,
        "L": d.last_id,
        "n": d.count,
    })
}

/// A Binance error body `{"code":..,"msg":..}`.
pub(crate) fn error(code: i32, msg: &str) -> Value {
    json!({"code": code, "msg": msg})
}

/// One `<symbol>@kline_1h` event in its combined-stream envelope, stamped
/// with event time `now`; `closed` is `k.x`.
pub(crate) fn ws_kline(symbol: &str, c: &Candle, now: i64, closed: bool) -> String {
    let stream = format!("{}@kline_1h", symbol.to_ascii_lowercase());
    json!({"stream": stream, "data": {
        "e": "kline", "E": now, "s": symbol,
        "k": {
            "t": c.open_time_ms, "T": c.close_time_ms(), "s": symbol, "i": "1h",
            "f": 1, "L": c.trades, "o": dec8(c.open), "c": dec8(c.close),
            "h": dec8(c.high), "l": dec8(c.low), "v": dec8(c.base_volume),
            "n": c.trades, "x": closed, "q": dec8(c.quote_volume),
            "V": dec8(c.base_volume / 2.0), "Q": dec8(c.quote_volume / 2.0), "B": "0"
        }
    }})
    .to_string()
}
