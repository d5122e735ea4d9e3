//! The market model behind the fake Binance: symbols, prices, volumes, open
//! interest and hourly candles.
//!
//! REST answers and WebSocket frames are rendered from this model on every
//! request, so a test changes the market through a [`MarketHandle`] and the
//! appliance sees the change on its next poll or the next pushed frame.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::sync::{lock, now_ms};

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;

/// Eight hours in milliseconds: Binance's usual funding interval.
const FUNDING_INTERVAL_MS: i64 = 8 * HOUR_MS;

/// Symbols that [`Market::synthetic`] adds on top of the USDT perpetuals and
/// that the appliance's universe filter (`contractType == "PERPETUAL"`,
/// `quoteAsset == "USDT"`, `status == "TRADING"`) must reject.
///
/// Each one breaks exactly one condition and trades well above the $100M
/// liquidity threshold, so a filter that forgets a condition lets it through:
///
/// | symbol | breaks |
/// |---|---|
/// | `BTCUSDT_261225` | `contractType` `CURRENT_QUARTER` (also sends `"r":""`, `"T":0`) |
/// | `XAUUSDT` | `contractType` `TRADIFI_PERPETUAL` |
/// | `DELISTUSDT` | `status` `SETTLING` |
/// | `BTCUSDC` | `quoteAsset` `USDC` |
/// | `PENDINGUSDT` | `contractType` `""` (status stays `TRADING`) |
pub const FILTERED_OUT_SYMBOLS: [&str; 5] = [
    "BTCUSDT_261225",
    "XAUUSDT",
    "DELISTUSDT",
    "BTCUSDC",
    "PENDINGUSDT",
];

/// One hourly candle (kline).
#[derive(Debug, Clone, PartialEq)]
pub struct Candle {
    /// Open time, ms since the epoch (a multiple of [`HOUR_MS`] for hourly candles).
    pub open_time_ms: i64,
    /// Open price.
    pub open: f64,
    /// High price.
    pub high: f64,
    /// Low price.
    pub low: f64,
    /// Close price (the last price while the candle is still open).
    pub close: f64,
    /// Volume in base asset.
    pub base_volume: f64,
    /// Volume in quote asset (USDT): what the volume-spike detector compares.
    pub quote_volume: f64,
    /// Number of trades.
    pub trades: u64,
}

impl Candle {
    /// Close time: `open_time_ms + 3_599_999`, as Binance reports it.
    pub fn close_time_ms(&self) -> i64 {
        self.open_time_ms + HOUR_MS - 1
    }

    /// A candle at `price` (open = close, high/low ±0.2 %) trading
    /// `quote_volume` USDT, with base volume and trade count derived from it.
    pub fn flat(open_time_ms: i64, price: f64, quote_volume: f64) -> Candle {
        Candle {
            open_time_ms,
            open: price,
            high: price * 1.002,
            low: price * 0.998,
            close: price,
            base_volume: if price > 0.0 {
                quote_volume / price
            } else {
                0.0
            },
            quote_volume,
            // About one trade per $5,000, at least one.
            trades: ((quote_volume / 5_000.0) as u64).max(1),
        }
    }

    /// A candle moving from `open` to `close` (high and low at the two)
    /// trading `quote_volume` USDT, 1000 trades.
    pub fn moving(open_time_ms: i64, open: f64, close: f64, quote_volume: f64) -> Candle {
        Candle {
            open_time_ms,
            open,
            high: open.max(close),
            low: open.min(close),
            close,
            base_volume: quote_volume / close,
            quote_volume,
            trades: 1000,
        }
    }

    /// Open time of the hour containing `ms`.
    pub fn hour_start(ms: i64) -> i64 {
        ms.div_euclid(HOUR_MS) * HOUR_MS
    }

    /// `count` consecutive flat hourly candles, the last one being the hour in
    /// progress at `now_ms` (Binance's still-open candle), each trading
    /// `quote_volume` USDT at `price`.
    pub fn hourly_series(now_ms: i64, count: usize, price: f64, quote_volume: f64) -> Vec<Candle> {
        let current = Candle::hour_start(now_ms);
        (0..count)
            .map(|i| {
                let hours_back = (count - 1 - i) as i64;
                Candle::flat(current - hours_back * HOUR_MS, price, quote_volume)
            })
            .collect()
    }
}

/// Everything the fake knows about one symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolState {
    /// Symbol, e.g. `BTCUSDT`.
    pub symbol: String,
    /// Base asset, e.g. `BTC`.
    pub base_asset: String,
    /// Quote asset, e.g. `USDT` (also the margin asset in this fake).
    pub quote_asset: String,
    /// `PERPETUAL`, `CURRENT_QUARTER`, `NEXT_QUARTER`, `TRADIFI_PERPETUAL` or `""`.
    pub contract_type: String,
    /// `TRADING`, `SETTLING`, `PENDING_TRADING`, ...
    pub status: String,
    /// Mark price.
    pub mark_price: f64,
    /// Index price.
    pub index_price: f64,
    /// Funding rate as a decimal (0.0001 = 0.01 %); `None` for contracts
    /// without funding, sent as `"r":""` / `"lastFundingRate":""` with a
    /// next funding time of 0, like Binance does for quarterlies.
    pub funding_rate: Option<f64>,
    /// Next funding time, ms since the epoch.
    pub next_funding_time: i64,
    /// Last traded price.
    pub last_price: f64,
    /// 24 h price change in quote currency (last price − open price 24 h ago).
    pub price_change: f64,
    /// 24 h volume in quote asset (USDT).
    pub quote_volume_24h: f64,
    /// 24 h volume in base asset.
    pub base_volume_24h: f64,
    /// Open interest in contracts (base asset units).
    pub open_interest: f64,
    /// Hourly candles, oldest first; the last one is the hour in progress.
    pub candles: Vec<Candle>,
}

impl SymbolState {
    /// A trading USDT perpetual at `price` with `quote_volume_24h` USDT of
    /// 24 h volume: funding 0.01 %, mark = last = `price`, index 0.02 %
    /// below, no 24 h change, open interest worth a quarter of the daily
    /// volume, and three flat hourly candles of 1/24 of the daily volume each.
    pub fn perpetual(symbol: &str, price: f64, quote_volume_24h: f64) -> SymbolState {
        let now = now_ms();
        let base = symbol.strip_suffix("USDT").unwrap_or(symbol);
        let base_volume_24h = if price > 0.0 {
            quote_volume_24h / price
        } else {
            0.0
        };
        SymbolState {
            symbol: symbol.to_string(),
            base_asset: base.to_string(),
            quote_asset: "USDT".into(),
            contract_type: "PERPETUAL".into(),
            status: "TRADING".into(),
            mark_price: price,
            index_price: price * 0.9998,
            funding_rate: Some(0.0001),
            next_funding_time: (now.div_euclid(FUNDING_INTERVAL_MS) + 1) * FUNDING_INTERVAL_MS,
            last_price: price,
            price_change: 0.0,
            quote_volume_24h,
            base_volume_24h,
            open_interest: base_volume_24h * 0.25,
            candles: Candle::hourly_series(now, 3, price, quote_volume_24h / 24.0),
        }
    }

    /// True when the appliance's universe filter keeps this symbol:
    /// `contractType == "PERPETUAL"`, `quoteAsset == "USDT"`, `status == "TRADING"`.
    pub fn is_usdt_perpetual_trading(&self) -> bool {
        self.contract_type == "PERPETUAL" && self.quote_asset == "USDT" && self.status == "TRADING"
    }

    /// Pair name as in exchangeInfo: base + quote (`BTCUSDT` for `BTCUSDT_261225`).
    pub fn pair(&self) -> String {
        format!("{}{}", self.base_asset, self.quote_asset)
    }

    /// Price 24 h ago (`last_price − price_change`).
    pub fn open_price_24h(&self) -> f64 {
        self.last_price - self.price_change
    }

    /// 24 h change in percent of the open price (0 when the open is 0).
    pub fn price_change_percent(&self) -> f64 {
        let open = self.open_price_24h();
        if open == 0.0 {
            0.0
        } else {
            self.price_change / open * 100.0
        }
    }
}

/// The set of symbols the fake exchange lists, keyed and ordered by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Market {
    symbols: BTreeMap<String, SymbolState>,
}

impl Market {
    /// An empty market.
    pub fn new() -> Market {
        Market::default()
    }

    /// `n` trading USDT perpetuals plus the five [`FILTERED_OUT_SYMBOLS`].
    ///
    /// The perpetuals are `BTCUSDT`, `ETHUSDT`, then `SYM0001USDT`,
    /// `SYM0002USDT`, ... (deterministic, no randomness). 24 h quote volumes
    /// fall from $20B (BTC) to $1M (last symbol) so that about a third of
    /// them trade above $100M; prices span $0.01..$10,000 with funding rates
    /// between −0.0001 and 0.0003 and 24 h changes within ±10 %.
    pub fn synthetic(n: usize) -> Market {
        let mut market = Market::new();
        for i in 0..n {
            let (symbol, price) = match i {
                0 => ("BTCUSDT".to_string(), 65_000.0),
                1 => ("ETHUSDT".to_string(), 3_500.0),
                _ => {
                    let exponent = (mix(i as u64) % 600) as f64 / 100.0 - 2.0;
                    (
                        format!("SYM{:04}USDT", i - 1),
                        round_sig(10f64.powf(exponent)),
                    )
                }
            };
            // t runs 1 → 0; volume = 1M × 20000^(t²): the square makes about
            // 32 % of the symbols land above $100M.
            let t = if n > 1 {
                1.0 - i as f64 / (n - 1) as f64
            } else {
                1.0
            };
            let volume = 1e6 * 20_000f64.powf(t * t);
            let h = mix(i as u64 ^ 0xfeed);
            let mut state = SymbolState::perpetual(&symbol, price, volume);
            state.funding_rate = Some(0.0001 + ((h % 21) as f64 - 10.0) * 0.00002);
            state.price_change = price * (((h >> 8) % 201) as f64 - 100.0) / 1000.0;
            state.mark_price = price * (1.0 + (((h >> 16) % 11) as f64 - 5.0) * 0.0001);
            state.index_price = state.mark_price * 0.9998;
            market.insert(state);
        }
        for state in filtered_out_symbols() {
            market.insert(state);
        }
        market
    }

    /// Inserts `state`, replacing any symbol of the same name.
    pub fn insert(&mut self, state: SymbolState) {
        self.symbols.insert(state.symbol.clone(), state);
    }

    /// Removes `symbol`, returning its state.
    pub fn remove(&mut self, symbol: &str) -> Option<SymbolState> {
        self.symbols.remove(symbol)
    }

    /// State of `symbol`.
    pub fn get(&self, symbol: &str) -> Option<&SymbolState> {
        self.symbols.get(symbol)
    }

    /// Mutable state of `symbol`.
    pub fn get_mut(&mut self, symbol: &str) -> Option<&mut SymbolState> {
        self.symbols.get_mut(symbol)
    }

    /// All symbol names, sorted.
    pub fn symbols(&self) -> Vec<String> {
        self.symbols.keys().cloned().collect()
    }

    /// All symbols, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = &SymbolState> {
        self.symbols.values()
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// True when no symbol is listed.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }
}

/// The five symbols of [`FILTERED_OUT_SYMBOLS`], each at $500M of 24 h volume.
fn filtered_out_symbols() -> Vec<SymbolState> {
    const VOLUME: f64 = 500e6;
    let mut quarterly = SymbolState::perpetual("BTCUSDT_261225", 66_000.0, VOLUME);
    quarterly.base_asset = "BTC".into();
    quarterly.contract_type = "CURRENT_QUARTER".into();
    quarterly.funding_rate = None;
    quarterly.next_funding_time = 0;

    let mut gold = SymbolState::perpetual("XAUUSDT", 2_650.0, VOLUME);
    gold.contract_type = "TRADIFI_PERPETUAL".into();

    let mut settling = SymbolState::perpetual("DELISTUSDT", 0.5, VOLUME);
    settling.status = "SETTLING".into();

    let mut usdc = SymbolState::perpetual("BTCUSDC", 65_010.0, VOLUME);
    usdc.base_asset = "BTC".into();
    usdc.quote_asset = "USDC".into();

    let mut pending = SymbolState::perpetual("PENDINGUSDT", 1.0, VOLUME);
    pending.contract_type = String::new();

    vec![quarterly, gold, settling, usdc, pending]
}

/// SplitMix64 finaliser: a cheap deterministic hash for synthetic data.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Rounds to 5 significant digits, so synthetic prices look like tick sizes.
fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(4 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// Shared, mutable access to the [`Market`] a [`crate::FakeBinance`] serves.
///
/// Cheap to clone; all clones see the same market. Every method takes the
/// lock once, so each call is atomic with respect to REST answers and pushed
/// frames.
#[derive(Debug, Clone, Default)]
pub struct MarketHandle {
    inner: Arc<Mutex<Market>>,
}

impl MarketHandle {
    /// Wraps `market` for sharing.
    pub fn new(market: Market) -> MarketHandle {
        MarketHandle {
            inner: Arc::new(Mutex::new(market)),
        }
    }

    /// Inserts or replaces a symbol.
    pub fn upsert(&self, state: SymbolState) {
        lock(&self.inner).insert(state);
    }

    /// Applies `f` to `symbol`'s state; false when the symbol is unknown.
    pub fn update(&self, symbol: &str, f: impl FnOnce(&mut SymbolState)) -> bool {
        match lock(&self.inner).get_mut(symbol) {
            Some(state) => {
                f(state);
                true
            }
            None => false,
        }
    }

    /// Delists `symbol`, returning its last state.
    pub fn remove(&self, symbol: &str) -> Option<SymbolState> {
        lock(&self.inner).remove(symbol)
    }

    /// Replaces `symbol`'s hourly candles (oldest first); false when unknown.
    pub fn set_candles(&self, symbol: &str, candles: Vec<Candle>) -> bool {
        self.update(symbol, |s| s.candles = candles)
    }

    /// A copy of `symbol`'s state.
    pub fn get(&self, symbol: &str) -> Option<SymbolState> {
        lock(&self.inner).get(symbol).cloned()
    }

    /// All symbol names, sorted.
    pub fn symbols(&self) -> Vec<String> {
        lock(&self.inner).symbols()
    }

    /// A copy of the whole market.
    pub fn snapshot(&self) -> Market {
        lock(&self.inner).clone()
    }

    /// Runs `f` with the market locked (no copy).
    pub(crate) fn read<R>(&self, f: impl FnOnce(&Market) -> R) -> R {
        f(&lock(&self.inner))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_market_shape() {
        let market = Market::synthetic(600);
        assert_eq!(market.len(), 605);
        let perps: Vec<&SymbolState> = market
            .iter()
            .filter(|s| s.is_usdt_perpetual_trading())
            .collect();
        assert_eq!(perps.len(), 600);
        for name in FILTERED_OUT_SYMBOLS {
            let s = market.get(name).expect("filtered-out symbol present");
            assert!(
                !s.is_usdt_perpetual_trading(),
                "{name} must be filtered out"
            );
        }
        let liquid = perps.iter().filter(|s| s.quote_volume_24h > 100e6).count();
        assert!((150..=250).contains(&liquid), "liquid = {liquid}");
        let max = perps.iter().map(|s| s.quote_volume_24h).fold(0.0, f64::max);
        let min = perps
            .iter()
            .map(|s| s.quote_volume_24h)
            .fold(f64::MAX, f64::min);
        assert!((max - 20e9).abs() < 1.0 && (min - 1e6).abs() < 1.0);
        assert!(market.get("SYM0001USDT").is_some() && market.get("SYM0598USDT").is_some());
        assert!(perps
            .iter()
            .all(|s| s.candles.len() == 3 && s.last_price > 0.0));
        let again = Market::synthetic(600);
        assert_eq!(again.symbols(), market.symbols());
        assert!(
            again
                .iter()
                .zip(market.iter())
                .all(|(a, b)| a.last_price == b.last_price
                    && a.quote_volume_24h == b.quote_volume_24h)
        );
    }

    #[test]
    fn hourly_series_ends_with_current_hour() {
        let now = 10 * HOUR_MS + 123;
        let candles = Candle::hourly_series(now, 3, 2.0, 100.0);
        let opens: Vec<i64> = candles.iter().map(|c| c.open_time_ms).collect();
        assert_eq!(opens, vec![8 * HOUR_MS, 9 * HOUR_MS, 10 * HOUR_MS]);
        assert_eq!(candles[0].close_time_ms(), 9 * HOUR_MS - 1);
        assert_eq!(candles[0].base_volume, 50.0);
    }

    #[test]
    fn handle_mutations() {
        let handle = MarketHandle::new(Market::synthetic(2));
        assert!(handle.update("BTCUSDT", |s| s.last_price = 1.0));
        assert_eq!(handle.get("BTCUSDT").map(|s| s.last_price), Some(1.0));
        assert!(!handle.update("NOPE", |_| {}));
        assert!(handle.set_candles("ETHUSDT", vec![]));
        assert!(handle.get("ETHUSDT").is_some_and(|s| s.candles.is_empty()));
        assert!(handle.remove("ETHUSDT").is_some());
        assert!(!handle.symbols().contains(&"ETHUSDT".to_string()));
        handle.upsert(SymbolState::perpetual("NEWUSDT", 1.0, 1e6));
        assert!(handle.get("NEWUSDT").is_some());
    }
}
