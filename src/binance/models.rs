//! Typed answers of the Binance USDⓈ-M REST endpoints the appliance uses.
//!
//! Binance sends prices, quantities and volumes as JSON strings. They are
//! parsed to `f64` exactly once, here, while deserializing, so the rest of the
//! crate never sees a numeric string. Unknown fields are ignored (serde's
//! default) because Binance adds fields without notice (`ap`, `st`, `ps` …).
//! Anything that does not parse is a deserialization error for that call,
//! never a panic and never a silent zero.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// `GET /fapi/v1/exchangeInfo`: rate limits and every listed symbol.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeInfo {
    /// The IP/order limits Binance announces (`REQUEST_WEIGHT` is the one that matters here).
    #[serde(default)]
    pub rate_limits: Vec<RateLimit>,
    /// Every symbol, including quarterlies, TradFi perpetuals and pending ones.
    pub symbols: Vec<SymbolInfo>,
}

impl ExchangeInfo {
    /// The symbols of the appliance's universe (see [`SymbolInfo::is_universe`]).
    pub fn universe(&self) -> Vec<SymbolInfo> {
        self.symbols
            .iter()
            .filter(|s| s.is_universe())
            .cloned()
            .collect()
    }

    /// The announced `REQUEST_WEIGHT` limit per minute (2400 today), if present.
    pub fn request_weight_per_minute(&self) -> Option<u32> {
        self.rate_limits
            .iter()
            .find(|r| r.rate_limit_type == "REQUEST_WEIGHT" && r.interval == "MINUTE")
            .and_then(|r| {
                let per = r.interval_num.max(1);
                u32::try_from(r.limit / u64::from(per)).ok()
            })
    }
}

/// One entry of `exchangeInfo.rateLimits`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// `REQUEST_WEIGHT`, `ORDERS` …
    pub rate_limit_type: String,
    /// `MINUTE`, `SECOND` …
    pub interval: String,
    /// How many `interval`s the limit spans (1 for "per minute").
    pub interval_num: u32,
    /// The limit itself (2400 for `REQUEST_WEIGHT` per minute).
    pub limit: u64,
}

/// One entry of `exchangeInfo.symbols`, reduced to what the appliance needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SymbolInfo {
    /// Trading symbol, e.g. `BTCUSDT`.
    pub symbol: String,
    /// Underlying pair, e.g. `BTCUSDT` (also for quarterlies like `BTCUSDT_260626`).
    #[serde(default)]
    pub pair: String,
    /// `PERPETUAL`, `CURRENT_QUARTER`, `NEXT_QUARTER`, `TRADIFI_PERPETUAL`, or `""` (pending).
    pub contract_type: String,
    /// `TRADING`, `SETTLING`, `PENDING_TRADING` …
    pub status: String,
    /// Base asset, e.g. `BTC`.
    #[serde(default)]
    pub base_asset: String,
    /// Quote asset, e.g. `USDT`.
    pub quote_asset: String,
    /// Margin asset, e.g. `USDT`.
    #[serde(default)]
    pub margin_asset: String,
}

impl SymbolInfo {
    /// True for exactly the appliance's universe: USDT-quoted classic perpetuals
    /// that are trading. `TRADIFI_PERPETUAL`, quarterlies and pending (`""`) are out.
    pub fn is_universe(&self) -> bool {
        self.contract_type == "PERPETUAL" && self.quote_asset == "USDT" && self.status == "TRADING"
    }
}

/// `GET /fapi/v1/ticker/24hr`: rolling 24 h statistics of one symbol.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticker24h {
    /// Trading symbol.
    pub symbol: String,
    /// Absolute price change over 24 h.
    #[serde(deserialize_with = "f64_from_str")]
    pub price_change: f64,
    /// Price change over 24 h in percent.
    #[serde(deserialize_with = "f64_from_str")]
    pub price_change_percent: f64,
    /// Volume-weighted average price over 24 h.
    #[serde(deserialize_with = "f64_from_str")]
    pub weighted_avg_price: f64,
    /// Last traded price.
    #[serde(deserialize_with = "f64_from_str")]
    pub last_price: f64,
    /// Quantity of the last trade.
    #[serde(deserialize_with = "f64_from_str")]
    pub last_qty: f64,
    /// Price 24 h ago.
    #[serde(deserialize_with = "f64_from_str")]
    pub open_price: f64,
    /// Highest price over 24 h.
    #[serde(deserialize_with = "f64_from_str")]
    pub high_price: f64,
    /// Lowest price over 24 h.
    #[serde(deserialize_with = "f64_from_str")]
    pub low_price: f64,
    /// 24 h volume in base asset (contracts).
    #[serde(deserialize_with = "f64_from_str")]
    pub volume: f64,
    /// 24 h volume in quote asset (USDT): what "liquid" is measured with.
    #[serde(deserialize_with = "f64_from_str")]
    pub quote_volume: f64,
    /// Start of the 24 h window, unix ms.
    pub open_time: i64,
    /// End of the 24 h window, unix ms.
    pub close_time: i64,
    /// First trade id in the window (-1 when there was none).
    pub first_id: i64,
    /// Last trade id in the window (-1 when there was none).
    pub last_id: i64,
    /// Number of trades in the window.
    pub count: u64,
}

/// `GET /fapi/v2/ticker/price`: the latest price of one symbol.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceTicker {
    /// Trading symbol.
    pub symbol: String,
    /// Latest price.
    #[serde(deserialize_with = "f64_from_str")]
    pub price: f64,
    /// Transaction time, unix ms (0 if Binance leaves it out).
    #[serde(default)]
    pub time: i64,
}

/// One candle of `GET /fapi/v1/klines` (Binance sends a 12-element array).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Kline {
    /// Candle open time, unix ms.
    pub open_time_ms: i64,
    /// Open price.
    pub open: f64,
    /// High price.
    pub high: f64,
    /// Low price.
    pub low: f64,
    /// Close price (the last price for the candle still open).
    pub close: f64,
    /// Volume in base asset (contracts).
    pub base_volume: f64,
    /// Candle close time, unix ms (inclusive: open + interval − 1).
    pub close_time_ms: i64,
    /// Volume in quote asset (USDT): what volume_spike compares.
    pub quote_volume: f64,
    /// Number of trades.
    pub trades: u64,
    /// Taker-buy volume in base asset.
    pub taker_buy_base: f64,
    /// Taker-buy volume in quote asset.
    pub taker_buy_quote: f64,
}

impl<'de> Deserialize<'de> for Kline {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(KlineVisitor)
    }
}

/// Reads the positional kline array; extra trailing elements are ignored so a
/// 13th field added by Binance does not break decoding.
struct KlineVisitor;

impl<'de> Visitor<'de> for KlineVisitor {
    type Value = Kline;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a kline array of at least 11 elements")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kline, A::Error> {
        let kline = Kline {
            open_time_ms: next_elem(&mut seq, 0)?,
            open: next_elem::<Flex, A>(&mut seq, 1)?.0,
            high: next_elem::<Flex, A>(&mut seq, 2)?.0,
            low: next_elem::<Flex, A>(&mut seq, 3)?.0,
            close: next_elem::<Flex, A>(&mut seq, 4)?.0,
            base_volume: next_elem::<Flex, A>(&mut seq, 5)?.0,
            close_time_ms: next_elem(&mut seq, 6)?,
            quote_volume: next_elem::<Flex, A>(&mut seq, 7)?.0,
            trades: next_elem(&mut seq, 8)?,
            taker_buy_base: next_elem::<Flex, A>(&mut seq, 9)?.0,
            taker_buy_quote: next_elem::<Flex, A>(&mut seq, 10)?.0,
        };
        // Element 11 ("ignore") and anything Binance may append later.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(kline)
    }
}

/// Next element of a kline array; `idx` only feeds the error message.
fn next_elem<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(
    seq: &mut A,
    idx: usize,
) -> Result<T, A::Error> {
    seq.next_element::<T>()?
        .ok_or_else(|| de::Error::invalid_length(idx, &"a 12-element kline"))
}

/// `GET /fapi/v1/openInterest`: current open interest of one symbol.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenInterest {
    /// Trading symbol.
    pub symbol: String,
    /// Open interest in contracts (base asset), not USD.
    #[serde(rename = "openInterest", deserialize_with = "f64_from_str")]
    pub contracts: f64,
    /// Time of the figure, unix ms.
    pub time: i64,
}

/// `GET /fapi/v1/premiumIndex`: mark price and funding of one symbol.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PremiumIndex {
    /// Trading symbol.
    pub symbol: String,
    /// Mark price.
    #[serde(deserialize_with = "f64_from_str")]
    pub mark_price: f64,
    /// Index price.
    #[serde(deserialize_with = "f64_from_str")]
    pub index_price: f64,
    /// Estimated settle price (only meaningful in the last hour before settlement).
    #[serde(default, deserialize_with = "opt_f64_from_str")]
    pub estimated_settle_price: Option<f64>,
    /// Last funding rate; `None` for quarterlies, which send `""`.
    #[serde(default, deserialize_with = "opt_f64_from_str")]
    pub last_funding_rate: Option<f64>,
    /// Interest rate; `None` when Binance sends `""`.
    #[serde(default, deserialize_with = "opt_f64_from_str")]
    pub interest_rate: Option<f64>,
    /// Next funding time, unix ms (0 for quarterlies).
    #[serde(default)]
    pub next_funding_time: i64,
    /// Time of the figures, unix ms.
    pub time: i64,
}

/// Binance's error body: `{"code":-1121,"msg":"Invalid symbol."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ApiErrorBody {
    /// Binance error code (negative), e.g. -1003 "too many requests / banned".
    pub code: i64,
    /// Human-readable message.
    #[serde(default)]
    pub msg: String,
}

/// A number that Binance may send as a string (the usual case) or as a JSON number.
/// Non-finite values (`"NaN"`, `"inf"`) are rejected: they would poison every ratio.
struct Flex(f64);

impl<'de> Deserialize<'de> for Flex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match opt_flex(deserializer)? {
            Some(v) => Ok(Flex(v)),
            None => Err(de::Error::invalid_value(
                de::Unexpected::Str(""),
                &"a decimal number",
            )),
        }
    }
}

/// Deserializes a decimal string (or number) into `f64`; `""` is an error.
pub fn f64_from_str<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Flex::deserialize(deserializer).map(|f| f.0)
}

/// Deserializes a decimal string (or number) into `Some(f64)`; `""` and `null` into `None`.
pub fn opt_f64_from_str<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<f64>, D::Error> {
    opt_flex(deserializer)
}

/// Shared parser: string or number → `Some(f64)`, `""`/null → `None`.
fn opt_flex<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    deserializer.deserialize_any(FlexVisitor)
}

/// Visitor behind [`opt_flex`].
struct FlexVisitor;

impl Visitor<'_> for FlexVisitor {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal number as a string or number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<f64>, E> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        let parsed: f64 = v
            .parse()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))?;
        finite(parsed).map(Some)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Option<f64>, E> {
        finite(v).map(Some)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<f64>, E> {
        Ok(Some(v as f64))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<f64>, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<f64>, E> {
        Ok(None)
    }
}

/// Rejects NaN and infinities.
fn finite<E: de::Error>(v: f64) -> Result<f64, E> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(E::custom(format!("non-finite number {v}")))
    }
}

#[cfg(test)]
mod tests;
