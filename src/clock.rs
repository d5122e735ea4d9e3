//! Wall-clock helpers: UTC timestamps in the backend's format and
//! wall-clock boundaries (":00, :05 … :55") for scheduled jobs.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The hidden test switch that shifts the appliance's wall clock, so a test
/// can put the real binary seconds before a 5-minute or hourly boundary
/// instead of waiting for one. Milliseconds, may be negative.
pub const OFFSET_VARIABLE: &str = crate::config::settings::CLOCK_OFFSET.name();

/// The wall clock the scheduler and jobs use: the system clock, shifted by
/// `VOLSPIKE_CLOCK_OFFSET_MS` when a test sets it (read once).
pub fn now() -> SystemTime {
    static OFFSET_MS: OnceLock<i64> = OnceLock::new();
    let offset = *OFFSET_MS.get_or_init(|| {
        std::env::var(OFFSET_VARIABLE)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    });
    let real = SystemTime::now();
    if offset >= 0 {
        real + Duration::from_millis(offset.unsigned_abs())
    } else {
        real - Duration::from_millis(offset.unsigned_abs())
    }
}

/// Milliseconds since the Unix epoch (0 for times before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The time `ms` milliseconds after the Unix epoch.
pub fn from_unix_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the format the backend's strict parser accepts.
pub fn iso(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The first multiple of `period` (counted from the epoch, so from midnight
/// UTC for periods that divide a day) strictly after `now`.
pub fn next_boundary(now: SystemTime, period: Duration) -> SystemTime {
    let period_ms = period.as_millis().max(1) as u64;
    let now_ms = unix_ms(now);
    from_unix_ms((now_ms / period_ms + 1) * period_ms)
}

/// `t` rounded down to a multiple of `period`.
pub fn floor(t: SystemTime, period: Duration) -> SystemTime {
    let period_ms = period.as_millis().max(1) as u64;
    from_unix_ms(unix_ms(t) / period_ms * period_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_is_whole_seconds_utc() {
        assert_eq!(iso(from_unix_ms(1_764_770_700_123)), "2025-12-03T14:05:00Z");
    }

    #[test]
    fn boundaries_are_wall_clock() {
        let five = Duration::from_secs(300);
        let t = from_unix_ms(1_764_770_700_000); // 14:05:00 exactly
        assert_eq!(iso(next_boundary(t, five)), "2025-12-03T14:10:00Z");
        let t = from_unix_ms(1_764_770_999_999); // 14:09:59.999
        assert_eq!(iso(next_boundary(t, five)), "2025-12-03T14:10:00Z");
        assert_eq!(
            iso(floor(t, Duration::from_secs(3600))),
            "2025-12-03T14:00:00Z"
        );
    }
}
