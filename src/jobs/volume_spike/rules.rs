//! The volume-spike rules of docs/jobs.md, as pure functions of candles, the tick
//! time and what was already alerted. No I/O: unit-tested with plain values.
//!
//! Ticks fall on wall-clock 5-minute boundaries. At hh:00 the hour that just
//! closed is compared with the hour before (`limit=3`, closed candles only);
//! at other ticks the open hour so far is compared with the last closed hour
//! (`limit=2`). A spike fires once per (symbol, hour); the same (symbol, hour)
//! then gets a HALF_UPDATE at :30 if it first fired by :20, and a FULL_UPDATE
//! at the next hh:00 unless it first fired at :55.

use crate::backend::CandleDirection;

/// The candle fields the rules need (from a 1h kline).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candle {
    /// Open time, ms since the epoch: identifies the hour.
    pub open_time_ms: u64,
    /// Close time, ms (open + 1 h − 1 ms).
    pub close_time_ms: u64,
    /// Open price.
    pub open: f64,
    /// Close (or last) price.
    pub close: f64,
    /// Quote-asset volume in USDT (kline field 7).
    pub quote_volume: f64,
}

/// Thresholds (`VOLSPIKE_SPIKE_RATIO`, `VOLSPIKE_SPIKE_MIN_VOLUME`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Minimum current/previous ratio.
    pub min_ratio: f64,
    /// Minimum current hour quote volume, USDT.
    pub min_quote_volume: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            min_ratio: crate::config::settings::SPIKE_RATIO.default,
            min_quote_volume: crate::config::settings::SPIKE_MIN_VOLUME.default,
        }
    }
}

/// The backend's `alertType`: its own enum, so a decision is the payload
/// field without a translation table.
pub use crate::backend::VolumeAlertType as AlertType;

/// The message prefix of each alert type.
pub fn prefix(alert: AlertType) -> &'static str {
    match alert {
        AlertType::Spike => "",
        AlertType::HalfUpdate => "HALF-UPDATE: ",
        AlertType::FullUpdate => "UPDATE: ",
    }
}

/// How many klines to ask for at a tick of `minute` past the hour.
pub fn klines_limit(minute: u32) -> u16 {
    if minute == 0 {
        3
    } else {
        2
    }
}

/// The (current, previous) candles for a tick at `now_ms`, `minute` past the hour.
///
/// At hh:00 only closed candles count (close time before now): the last two
/// of them. Otherwise the last candle is the open hour and the one before it
/// the last closed hour. `None` when Binance returned too few candles (a new
/// listing), which is not an error.
pub fn select(candles: &[Candle], now_ms: u64, minute: u32) -> Option<(Candle, Candle)> {
    if minute == 0 {
        let closed: Vec<&Candle> = candles
            .iter()
            .filter(|c| c.close_time_ms < now_ms)
            .collect();
        match closed.as_slice() {
            [.., previous, current] => Some((**current, **previous)),
            _ => None,
        }
    } else {
        match candles {
            [.., previous, current] => Some((*current, *previous)),
            _ => None,
        }
    }
}

/// current/previous, 0 when previous is 0 (a symbol with no volume before).
pub fn ratio(current: f64, previous: f64) -> f64 {
    if previous > 0.0 {
        current / previous
    } else {
        0.0
    }
}

/// What to post for one symbol at one tick, if anything.
///
/// `first_alert_minute` is the minute of the first alert already sent for
/// the current candle's hour (`None` when it has not fired).
pub fn decide(
    current: &Candle,
    previous: &Candle,
    minute: u32,
    first_alert_minute: Option<u32>,
    rules: &Rules,
) -> Option<AlertType> {
    match first_alert_minute {
        Some(first) => match minute {
            30 if first <= 20 => Some(AlertType::HalfUpdate),
            0 if first != 55 => Some(AlertType::FullUpdate),
            _ => None,
        },
        None => {
            let r = ratio(current.quote_volume, previous.quote_volume);
            (r >= rules.min_ratio && current.quote_volume >= rules.min_quote_volume)
                .then_some(AlertType::Spike)
        }
    }
}

/// The minute recorded as "first alert" for a spike found at `minute`.
///
/// A spike found at hh:00 is about the hour that just closed; recording 60
/// keeps it from ever matching the :30 or :55 rules of that hour.
pub fn first_alert_minute(minute: u32) -> u32 {
    if minute == 0 {
        60
    } else {
        minute
    }
}

/// Bullish when the candle closed above its open, else bearish.
pub fn direction(candle: &Candle) -> CandleDirection {
    if candle.close > candle.open {
        CandleDirection::Bullish
    } else {
        CandleDirection::Bearish
    }
}

/// (close − open) / open; `None` when open is 0.
pub fn price_change(candle: &Candle) -> Option<f64> {
    (candle.open > 0.0).then(|| (candle.close - candle.open) / candle.open)
}

/// `12.34K`, `150.00M`, `1.20B` as the old alerts wrote amounts.
pub fn format_amount(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1e9 {
        format!("{:.2}B", value / 1e9)
    } else if abs >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if abs >= 1e3 {
        format!("{:.2}K", value / 1e3)
    } else {
        format!("{value:.2}")
    }
}

/// `"{prefix}{ASSET} hourly volume {150.00M} ({3.33}× prev) — VOLUME SPIKE!"`.
pub fn message(alert: AlertType, asset: &str, current: f64, ratio: f64) -> String {
    format!(
        "{}{asset} hourly volume {} ({ratio:.2}× prev) — VOLUME SPIKE!",
        prefix(alert),
        format_amount(current)
    )
}

/// The asset of a USDT symbol when exchangeInfo's baseAsset is not at hand.
pub fn asset_of(symbol: &str) -> &str {
    symbol.strip_suffix("USDT").unwrap_or(symbol)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;
    const H14: u64 = 1_764_770_400_000; // 2025-12-03T14:00:00Z

    fn candle(open_time_ms: u64, open: f64, close: f64, quote_volume: f64) -> Candle {
        Candle {
            open_time_ms,
            close_time_ms: open_time_ms + HOUR - 1,
            open,
            close,
            quote_volume,
        }
    }

    #[test]
    fn at_the_hour_only_closed_candles_count() {
        // At 15:00 Binance returns 13:00, 14:00 (closed) and 15:00 (just opened).
        let klines = [
            candle(H14 - HOUR, 1.0, 1.0, 10e6),
            candle(H14, 1.0, 1.1, 40e6),
            candle(H14 + HOUR, 1.1, 1.1, 0.1e6),
        ];
        let now = H14 + HOUR + 2_000;
        let (current, previous) = select(&klines, now, 0).expect("two closed candles");
        assert_eq!(current.open_time_ms, H14);
        assert_eq!(previous.open_time_ms, H14 - HOUR);
        assert_eq!(klines_limit(0), 3);
    }

    #[test]
    fn between_hours_the_open_candle_is_current() {
        let klines = [
            candle(H14 - HOUR, 1.0, 1.0, 10e6),
            candle(H14, 1.0, 1.1, 35e6),
        ];
        let (current, previous) = select(&klines, H14 + 5 * 60_000, 5).expect("two candles");
        assert_eq!(current.open_time_ms, H14);
        assert_eq!(previous.quote_volume, 10e6);
        assert_eq!(klines_limit(5), 2);
        assert_eq!(select(&klines[..1], H14 + 5 * 60_000, 5), None);
    }

    #[test]
    fn spike_needs_ratio_and_volume() {
        let rules = Rules::default();
        let prev = candle(H14 - HOUR, 1.0, 1.0, 1e6);
        // 3× but only 3.0M: fires (both thresholds inclusive).
        assert_eq!(
            decide(&candle(H14, 1.0, 1.1, 3e6), &prev, 5, None, &rules),
            Some(AlertType::Spike)
        );
        // 2.9×: no.
        assert_eq!(
            decide(&candle(H14, 1.0, 1.1, 2.9e6), &prev, 5, None, &rules),
            None
        );
        // 10× but 2M: too small.
        let small_prev = candle(H14 - HOUR, 1.0, 1.0, 0.2e6);
        assert_eq!(
            decide(&candle(H14, 1.0, 1.1, 2e6), &small_prev, 5, None, &rules),
            None
        );
        // previous 0 → ratio 0 → no spike.
        let zero = candle(H14 - HOUR, 1.0, 1.0, 0.0);
        assert_eq!(
            decide(&candle(H14, 1.0, 1.1, 50e6), &zero, 5, None, &rules),
            None
        );
    }

    #[test]
    fn updates_follow_the_first_alert_minute() {
        let rules = Rules::default();
        let prev = candle(H14 - HOUR, 1.0, 1.0, 100e6);
        let cur = candle(H14, 1.0, 1.0, 1e6); // no longer a spike: updates are sent anyway
        assert_eq!(
            decide(&cur, &prev, 30, Some(20), &rules),
            Some(AlertType::HalfUpdate)
        );
        assert_eq!(decide(&cur, &prev, 30, Some(25), &rules), None);
        assert_eq!(
            decide(&cur, &prev, 0, Some(25), &rules),
            Some(AlertType::FullUpdate)
        );
        assert_eq!(decide(&cur, &prev, 0, Some(55), &rules), None);
        assert_eq!(
            decide(&cur, &prev, 35, Some(5), &rules),
            None,
            "already alerted, no re-fire"
        );
        // A spike found at hh:00 is about the closed hour: recorded as minute
        // 60, it never matches the :30 rule.
        assert_eq!(first_alert_minute(0), 60);
        assert_eq!(
            decide(&cur, &prev, 30, Some(first_alert_minute(0)), &rules),
            None
        );
    }

    #[test]
    fn message_and_amounts_match_the_old_alerts() {
        assert_eq!(format_amount(12_340.0), "12.34K");
        assert_eq!(format_amount(150_000_000.0), "150.00M");
        assert_eq!(format_amount(1_200_000_000.0), "1.20B");
        assert_eq!(format_amount(999.0), "999.00");
        assert_eq!(
            message(AlertType::Spike, "BTC", 150e6, 150.0 / 45.0),
            "BTC hourly volume 150.00M (3.33× prev) — VOLUME SPIKE!"
        );
        assert_eq!(
            message(AlertType::HalfUpdate, "ETH", 7.5e6, 3.0),
            "HALF-UPDATE: ETH hourly volume 7.50M (3.00× prev) — VOLUME SPIKE!"
        );
        assert_eq!(
            message(AlertType::FullUpdate, "SOL", 1.2e9, 4.0),
            "UPDATE: SOL hourly volume 1.20B (4.00× prev) — VOLUME SPIKE!"
        );
    }

    #[test]
    fn direction_and_price_change() {
        let up = candle(H14, 100.0, 102.5, 1.0);
        assert_eq!(direction(&up), CandleDirection::Bullish);
        assert!((price_change(&up).unwrap_or_default() - 0.025).abs() < 1e-12);
        assert_eq!(
            direction(&candle(H14, 100.0, 100.0, 1.0)),
            CandleDirection::Bearish
        );
        assert_eq!(price_change(&candle(H14, 0.0, 1.0, 1.0)), None);
        assert_eq!(asset_of("1000PEPEUSDT"), "1000PEPE");
    }
}
