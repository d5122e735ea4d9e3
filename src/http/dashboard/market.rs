//! The dashboard's market table: USDT perpetuals above $100M of 24 h quote
//! volume, sorted by volume, with the numbers already formatted (so the page
//! only places text, and the formatting rules are unit-tested here) and
//! raw (so the page can sort on them).
//!
//! Data: 24 h quote volume and last price from the funding cache's ticker
//! part (`!ticker@arr` `q` and `c`), funding rate from its mark part
//! (`!markPrice@arr` `r`). The cache also holds quarterlies, TradFi
//! perpetuals and whatever else the stream carries, so rows are limited to
//! the universe: the exchangeInfo list when a job has fetched one (the
//! dashboard never spends Binance weight to get it), otherwise symbols
//! ending in `USDT` without a `_` and with a funding rate (quarterlies have
//! none). That fallback cannot tell a TradFi perpetual (`XAUUSDT`) from a
//! crypto one; the view says which filter was used.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::binance::cache::SymbolData;

/// Rows need more than this much 24 h quote volume (USDT).
pub const MIN_VOLUME: f64 = 100_000_000.0;
/// Funding above this (decimal: 0.0003 = 0.03 %) paints the value green.
pub const POSITIVE_FUNDING: f64 = 0.0003;
/// Funding below this paints the value red.
pub const NEGATIVE_FUNDING: f64 = -0.0003;

/// How a funding value is coloured; the page maps it to `up` / `down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    /// Funding above +0.03 %: longs pay.
    Positive,
    /// Funding below −0.03 %: shorts pay.
    Negative,
    /// In between.
    Neutral,
}

impl Tone {
    /// The tone of a funding rate (decimal). Compared in decimal units, not
    /// percent: `0.0003 * 100.0` is a hair above `0.03` in floating point.
    pub fn of(funding_rate: f64) -> Tone {
        if funding_rate > POSITIVE_FUNDING {
            Tone::Positive
        } else if funding_rate < NEGATIVE_FUNDING {
            Tone::Negative
        } else {
            Tone::Neutral
        }
    }
}

/// One table row. Numbers come raw (the page sorts on them) and as text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    /// `BTCUSDT`.
    pub symbol: String,
    /// `BTC`: the symbol without its `USDT` suffix.
    pub asset: String,
    /// 24 h quote volume in USDT.
    pub volume: f64,
    /// `$1.23B` / `$456.78M`.
    pub volume_text: String,
    /// Funding rate as a decimal (0.0001 = 0.01 %).
    pub funding_rate: f64,
    /// `+0.010%`: signed percent with 3 decimals.
    pub funding_text: String,
    /// Funding annualised at three fundings a day, in percent.
    pub funding_annualized: f64,
    /// `+10.95%`.
    pub funding_annualized_text: String,
    /// Next funding time, ms since the epoch; `None` when unknown.
    pub next_funding_ms: Option<u64>,
    /// Last traded price (mark price until a ticker arrived).
    pub price: f64,
    /// `$65,000.00`, `$1.2345`, `$0.012345`.
    pub price_text: String,
    /// 24 h price change in percent; `None` until a ticker carried it.
    pub change_24h: Option<f64>,
    /// `+1.25%`, or `–` when unknown.
    pub change_24h_text: String,
    /// Open interest in USD from the open_interest job's latest sample;
    /// `None` when that job has not sampled the symbol.
    pub open_interest_usd: Option<f64>,
    /// `$1.23B`, or `–` when unknown.
    pub open_interest_text: String,
    /// Colour of the funding value.
    pub tone: Tone,
}

/// Fundings per year at Binance's usual 8-hour interval: the annualised
/// column is `rate × 3 × 365`. Symbols on a 4-hour interval read half their
/// true yearly rate; the column header says which interval is assumed.
pub const FUNDINGS_PER_YEAR: f64 = 3.0 * 365.0;

/// Which filter picked the symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum UniverseSource {
    /// The exchangeInfo list (PERPETUAL, USDT, TRADING).
    ExchangeInfo,
    /// No list fetched yet: names ending in `USDT` without `_`.
    SymbolName,
}

/// The table and what it was built from.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketView {
    /// Rows, by volume, largest first.
    pub rows: Vec<Row>,
    /// The volume threshold (USDT).
    pub min_volume: f64,
    /// Which universe filter was used.
    pub universe: UniverseSource,
    /// Seconds since the newest funding update; `None` before any data.
    pub data_age_seconds: Option<f64>,
    /// Whether that age is beyond the stale limit: the page warns.
    pub stale: bool,
}

/// Builds the table from the cache's entries. `universe` is the set of
/// universe symbols when known; `stale_after_ms` is the cache's stale limit.
pub fn view(
    entries: &[(String, SymbolData)],
    universe: Option<&BTreeSet<String>>,
    now_ms: u64,
    stale_after_ms: u64,
) -> MarketView {
    let in_universe = |symbol: &str| match universe {
        Some(set) => set.contains(symbol),
        None => symbol.ends_with("USDT") && !symbol.contains('_'),
    };
    let mut rows: Vec<Row> = entries
        .iter()
        .filter(|(symbol, _)| in_universe(symbol))
        .filter_map(|(symbol, data)| {
            let volume = data.quote_volume_24h.filter(|v| v.is_finite())?;
            let funding_rate = data.funding_rate.filter(|r| r.is_finite())?;
            let price = data
                .last_price
                .or(data.mark_price)
                .filter(|p| p.is_finite())?;
            (volume > MIN_VOLUME).then(|| row(symbol, data, volume, funding_rate, price))
        })
        .collect();
    rows.sort_by(|a, b| {
        b.volume
            .total_cmp(&a.volume)
            .then_with(|| a.symbol.cmp(&b.symbol))
    });
    let newest = entries.iter().filter_map(|(_, d)| d.mark_updated_ms).max();
    let age_ms = newest.map(|ms| now_ms.saturating_sub(ms));
    MarketView {
        rows,
        min_volume: MIN_VOLUME,
        universe: if universe.is_some() {
            UniverseSource::ExchangeInfo
        } else {
            UniverseSource::SymbolName
        },
        data_age_seconds: age_ms.map(|ms| ms as f64 / 1000.0),
        stale: age_ms.is_some_and(|ms| ms > stale_after_ms),
    }
}

/// One row from the cache entry of `symbol` and its already-checked values.
fn row(symbol: &str, data: &SymbolData, volume: f64, funding_rate: f64, price: f64) -> Row {
    let change_24h = data.price_change_percent_24h.filter(|c| c.is_finite());
    let open_interest_usd = data.open_interest_usd.filter(|v| v.is_finite());
    let funding_annualized = funding_rate * FUNDINGS_PER_YEAR * 100.0;
    Row {
        symbol: symbol.to_string(),
        asset: asset(symbol).to_string(),
        volume,
        volume_text: money(volume),
        funding_rate,
        funding_text: funding_percent(funding_rate),
        funding_annualized,
        funding_annualized_text: signed_percent(funding_annualized, 2),
        next_funding_ms: data.next_funding_time.filter(|t| *t > 0),
        price,
        price_text: price_text(price),
        change_24h,
        change_24h_text: change_24h.map_or_else(|| "–".to_string(), |c| signed_percent(c, 2)),
        open_interest_usd,
        open_interest_text: open_interest_usd.map_or_else(|| "–".to_string(), money),
        tone: Tone::of(funding_rate),
    }
}

/// The TradingView watchlist: `BINANCE:{ASSET}USDT.P`, one per line, in
/// table order.
pub fn watchlist(rows: &[Row]) -> String {
    rows.iter()
        .map(|r| format!("BINANCE:{}USDT.P\n", r.asset))
        .collect()
}

/// `BTCUSDT` → `BTC`.
fn asset(symbol: &str) -> &str {
    symbol.strip_suffix("USDT").unwrap_or(symbol)
}

/// `$1.23B`, `$456.78M`, `$12.34K`, `$12.34`. Chooses the unit after
/// rounding, so 999,999,999 reads `$1.00B`, not `$1000.00M`.
pub fn money(v: f64) -> String {
    let units = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")];
    for (scale, suffix) in units {
        if (v.abs() / scale * 100.0).round() >= 100.0 {
            return format!("${:.2}{suffix}", v / scale);
        }
    }
    format!("${v:.2}")
}

/// `0.0005` → `+0.050%`, `-0.0005` → `-0.050%`, zero → `0.000%` (never
/// `-0.000%` or `+0.000%`).
pub fn funding_percent(rate: f64) -> String {
    signed_percent(rate * 100.0, 3)
}

/// `percent` with `decimals` decimals and its sign: `+1.25%`, `-0.50%`;
/// a value that rounds to zero reads unsigned.
pub fn signed_percent(percent: f64, decimals: usize) -> String {
    let text = format!("{:.decimals$}", percent.abs());
    if text.bytes().all(|b| b == b'0' || b == b'.') {
        format!("{text}%")
    } else if percent < 0.0 {
        format!("-{text}%")
    } else {
        format!("+{text}%")
    }
}

/// Prices as traders read them: cents with thousands separators from
/// $1,000, four decimals from $1, six from $0.01, eight below.
pub fn price_text(p: f64) -> String {
    let a = p.abs();
    let decimals = if a >= 1000.0 {
        2
    } else if a >= 1.0 {
        4
    } else if a >= 0.01 {
        6
    } else {
        8
    };
    let plain = format!("{a:.decimals$}");
    let (int, frac) = plain.split_once('.').unwrap_or((&plain, ""));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if p < 0.0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}${grouped}")
    } else {
        format!("{sign}${grouped}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(symbol: &str, volume: f64, funding: Option<f64>, price: f64) -> (String, SymbolData) {
        (
            symbol.to_string(),
            SymbolData {
                mark_price: Some(price),
                funding_rate: funding,
                mark_updated_ms: Some(1_000),
                last_price: Some(price),
                quote_volume_24h: Some(volume),
                ticker_updated_ms: Some(1_000),
                ..SymbolData::default()
            },
        )
    }

    #[test]
    fn formats() {
        assert_eq!(money(1_234_000_000.0), "$1.23B");
        assert_eq!(money(456_780_000.0), "$456.78M");
        assert_eq!(money(100_000_001.0), "$100.00M");
        assert_eq!(money(999_999_999.0), "$1.00B");
        assert_eq!(money(12_340.0), "$12.34K");
        assert_eq!(funding_percent(0.0005), "+0.050%");
        assert_eq!(funding_percent(0.0004), "+0.040%");
        assert_eq!(funding_percent(-0.0005), "-0.050%");
        assert_eq!(funding_percent(0.0001), "+0.010%");
        assert_eq!(funding_percent(-0.0000001), "0.000%");
        assert_eq!(funding_percent(0.0000001), "0.000%");
        assert_eq!(signed_percent(1.254, 2), "+1.25%");
        assert_eq!(signed_percent(-12.5, 2), "-12.50%");
        assert_eq!(price_text(65_000.0), "$65,000.00");
        assert_eq!(price_text(1_234_567.891), "$1,234,567.89");
        assert_eq!(price_text(3.5), "$3.5000");
        assert_eq!(price_text(0.012345), "$0.012345");
        assert_eq!(price_text(0.00001234), "$0.00001234");
        assert_eq!(price_text(999.5), "$999.5000");
    }

    #[test]
    fn tones_at_the_thresholds() {
        assert_eq!(Tone::of(0.0005), Tone::Positive);
        assert_eq!(Tone::of(0.0003), Tone::Neutral);
        assert_eq!(Tone::of(0.00030001), Tone::Positive);
        assert_eq!(Tone::of(-0.0003), Tone::Neutral);
        assert_eq!(Tone::of(-0.0005), Tone::Negative);
        assert_eq!(Tone::of(0.0001), Tone::Neutral);
    }

    #[test]
    fn rows_are_liquid_usdt_perpetuals_by_volume() {
        let entries = vec![
            entry("AAAUSDT", 150e6, Some(0.0005), 1.5),
            {
                let (symbol, mut data) = entry("BBBUSDT", 2.5e9, Some(-0.0005), 65_000.0);
                data.price_change_percent_24h = Some(-2.5);
                data.next_funding_time = Some(28_800_000);
                data.open_interest_usd = Some(1.2e9);
                (symbol, data)
            },
            entry("CCCUSDT", 400e6, Some(0.0001), 0.5),
            entry("DDDUSDT", 99e6, Some(0.0001), 2.0),
            entry("BTCUSDT_261225", 5e9, None, 66_000.0),
            entry("BTCUSDC", 5e9, Some(0.0001), 66_000.0),
            entry("XAUUSDT", 500e6, Some(0.0001), 2_650.0),
        ];
        let view = view(&entries, None, 3_000, 180_000);
        let symbols: Vec<&str> = view.rows.iter().map(|r| r.symbol.as_str()).collect();
        // The name filter cannot tell XAUUSDT (TradFi) apart…
        assert_eq!(symbols, ["BBBUSDT", "XAUUSDT", "CCCUSDT", "AAAUSDT"]);
        assert_eq!(view.universe, UniverseSource::SymbolName);
        assert_eq!(view.data_age_seconds, Some(2.0));
        assert!(!view.stale);
        let bbb = &view.rows[0];
        assert_eq!(bbb.asset, "BBB");
        assert_eq!(bbb.volume_text, "$2.50B");
        assert_eq!(bbb.funding_text, "-0.050%");
        // 3 fundings a day for a year: -0.05 % × 1095 = -54.75 %.
        assert_eq!(bbb.funding_annualized_text, "-54.75%");
        assert_eq!(bbb.change_24h_text, "-2.50%");
        assert_eq!(bbb.change_24h, Some(-2.5));
        assert_eq!(bbb.next_funding_ms, Some(28_800_000));
        assert_eq!(bbb.open_interest_text, "$1.20B");
        assert_eq!(view.rows[3].change_24h_text, "–");
        assert_eq!(view.rows[3].open_interest_text, "–");
        assert_eq!(view.rows[3].funding_text, "+0.050%");
        assert_eq!(bbb.price_text, "$65,000.00");
        assert_eq!(bbb.tone, Tone::Negative);
        assert_eq!(view.rows[3].tone, Tone::Positive);
        // … the exchangeInfo universe does.
        let universe: BTreeSet<String> = ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let view = super::view(&entries, Some(&universe), 500_000, 180_000);
        let symbols: Vec<&str> = view.rows.iter().map(|r| r.symbol.as_str()).collect();
        assert_eq!(symbols, ["BBBUSDT", "CCCUSDT", "AAAUSDT"]);
        assert_eq!(view.universe, UniverseSource::ExchangeInfo);
        assert!(view.stale);
        assert_eq!(
            watchlist(&view.rows),
            "BINANCE:BBBUSDT.P\nBINANCE:CCCUSDT.P\nBINANCE:AAAUSDT.P\n"
        );
    }

    #[test]
    fn nothing_yet_is_an_empty_table() {
        let view = view(&[], None, 1, 180_000);
        assert!(view.rows.is_empty());
        assert_eq!(view.data_age_seconds, None);
        assert!(!view.stale);
        assert_eq!(watchlist(&view.rows), "");
    }
}
