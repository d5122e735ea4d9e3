//! funding_health's rules: when the funding cache is fit to serve, how far
//! it may stray from REST, and the tick's summary text. Pure, so each check
//! is tested without a socket; the job in [`super`] reads the cache, the
//! stream's counters and REST, and hands the figures here.

use std::time::Duration;

/// The symbol compared with REST.
pub(crate) const REFERENCE: &str = "BTCUSDT";
/// Mark prices may differ by this fraction (0.1%).
const MARK_TOLERANCE: f64 = 0.001;
/// Funding rates may differ by this much.
const FUNDING_TOLERANCE: f64 = 1e-7;
/// A message must have arrived within this.
const MESSAGE_WITHIN: Duration = Duration::from_secs(60);
/// How often BTCUSDT is cross-checked against REST `premiumIndex`.
pub(crate) const CROSS_CHECK_EVERY: Duration = Duration::from_secs(300);
/// A symbol silent this long leaves the cache even when Binance still lists
/// it (or the listing is unknown): it is not coming back on this connection.
pub const EVICT_SILENT_AFTER: Duration = Duration::from_secs(3600);

/// What the checks need to know, read at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Symbols with a funding rate in the cache.
    pub symbols: usize,
    /// Age of the oldest entry.
    pub oldest_age: Option<Duration>,
    /// Time since the last stream message.
    pub since_last_message: Option<Duration>,
}

/// Thresholds of the checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Minimum symbol count (500 for the real market).
    pub min_symbols: usize,
    /// Entries older than this are stale.
    pub stale_after: Duration,
}

/// Every problem with `obs`; empty when healthy.
pub fn assess(obs: &Observation, limits: &Limits) -> Vec<String> {
    let mut problems = Vec::new();
    if obs.symbols < limits.min_symbols {
        problems.push(format!(
            "{} symbols with funding (expected ≥ {})",
            obs.symbols, limits.min_symbols
        ));
    }
    match obs.oldest_age {
        Some(age) if age > limits.stale_after => problems.push(format!(
            "oldest entry is {} s old (stale after {} s)",
            age.as_secs(),
            limits.stale_after.as_secs()
        )),
        _ => {}
    }
    match obs.since_last_message {
        None => problems.push("no stream message yet".to_string()),
        Some(age) if age > MESSAGE_WITHIN => {
            problems.push(format!("last stream message {} s ago", age.as_secs()))
        }
        Some(_) => {}
    }
    problems
}

/// Differences between the cache and REST for the reference symbol.
pub fn compare(
    cached_mark: f64,
    cached_rate: Option<f64>,
    rest_mark: f64,
    rest_rate: Option<f64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if rest_mark > 0.0 && ((cached_mark - rest_mark) / rest_mark).abs() > MARK_TOLERANCE {
        problems.push(format!(
            "{REFERENCE} mark {cached_mark} vs REST {rest_mark} (> 0.1% apart)"
        ));
    }
    if let (Some(a), Some(b)) = (cached_rate, rest_rate) {
        if (a - b).abs() > FUNDING_TOLERANCE {
            problems.push(format!("{REFERENCE} funding {a} vs REST {b}"));
        }
    }
    problems
}

/// The tick's one-line summary. Ages that do not exist yet (no data, no
/// message) are left out rather than printed as `0 s` or `-1 s`.
pub(crate) fn summary_line(
    symbols: usize,
    oldest_age: Option<Duration>,
    since_last_message: Option<Duration>,
    evicted: usize,
    checked_rest: bool,
) -> String {
    let mut parts = vec![format!("{symbols} symbols")];
    if let Some(age) = oldest_age {
        parts.push(format!("oldest {} s", age.as_secs()));
    }
    parts.push(match since_last_message {
        Some(age) => format!("last message {} s ago", age.as_secs()),
        None => "no message yet".to_string(),
    });
    if evicted > 0 {
        parts.push(format!("{evicted} delisted or silent symbols evicted"));
    }
    if checked_rest {
        parts.push("BTCUSDT matches REST".to_string());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_never_invents_an_age() {
        assert_eq!(
            summary_line(0, None, None, 0, false),
            "0 symbols, no message yet"
        );
        assert_eq!(
            summary_line(
                612,
                Some(Duration::from_secs(3)),
                Some(Duration::from_secs(1)),
                2,
                true
            ),
            "612 symbols, oldest 3 s, last message 1 s ago, 2 delisted or silent symbols evicted, BTCUSDT matches REST"
        );
    }

    const LIMITS: Limits = Limits {
        min_symbols: 500,
        stale_after: Duration::from_secs(180),
    };

    #[test]
    fn a_full_fresh_cache_is_healthy() {
        let obs = Observation {
            symbols: 612,
            oldest_age: Some(Duration::from_secs(4)),
            since_last_message: Some(Duration::from_secs(1)),
        };
        assert!(assess(&obs, &LIMITS).is_empty());
    }

    #[test]
    fn each_check_reports_its_problem() {
        let obs = Observation {
            symbols: 12,
            oldest_age: Some(Duration::from_secs(200)),
            since_last_message: Some(Duration::from_secs(90)),
        };
        let problems = assess(&obs, &LIMITS);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("12 symbols"));
        assert!(problems[1].contains("200 s old"));
        assert!(problems[2].contains("90 s ago"));
        let never = Observation {
            since_last_message: None,
            ..obs
        };
        assert!(assess(&never, &LIMITS)
            .iter()
            .any(|p| p.contains("no stream message")));
    }

    #[test]
    fn rest_comparison_tolerances() {
        assert!(
            compare(65000.0, Some(0.0001), 65050.0, Some(0.0001)).is_empty(),
            "0.077% apart is fine"
        );
        assert_eq!(
            compare(65000.0, Some(0.0001), 65100.0, Some(0.0001)).len(),
            1,
            "0.15% is not"
        );
        assert_eq!(
            compare(65000.0, Some(0.0001), 65000.0, Some(0.00012)).len(),
            1
        );
        assert!(
            compare(65000.0, None, 65000.0, Some(0.0001)).is_empty(),
            "no cached rate, nothing to compare"
        );
    }
}
