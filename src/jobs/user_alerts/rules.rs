//! user_alerts' rules, pure so they are tested without a backend:
//! * the cross: up when `prev < threshold <= current`, down when
//!   `prev > threshold >= current`; no previous value, no cross;
//! * when an uncrossed alert is worth an update-checked (see the module docs
//!   of [`super`] for why skipping the others loses no cross).

use std::time::{Duration, SystemTime};

/// Whether and how a value crossed a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cross {
    /// From below to at-or-above.
    Up,
    /// From above to at-or-below.
    Down,
}

/// The cross between `previous` and `current` over `threshold`, if any.
pub fn crossed(previous: Option<f64>, current: f64, threshold: f64) -> Option<Cross> {
    let previous = previous?;
    if previous < threshold && threshold <= current {
        Some(Cross::Up)
    } else if previous > threshold && threshold >= current {
        Some(Cross::Down)
    } else {
        None
    }
}

/// Where a value sits relative to a threshold.
fn side(value: f64, threshold: f64) -> std::cmp::Ordering {
    value
        .partial_cmp(&threshold)
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// Whether an uncrossed alert gets an update-checked (see the module docs).
/// `last_sent` is the last update-checked this process enqueued for the
/// alert (when, and the value), which the backend may not show yet.
pub fn should_update(
    previous: Option<f64>,
    current: f64,
    threshold: f64,
    last_sent: Option<(SystemTime, f64)>,
    now: SystemTime,
    refresh: Duration,
) -> bool {
    let recent =
        last_sent.filter(|(at, _)| now.duration_since(*at).is_ok_and(|since| since < refresh));
    // Told the backend a value on the same side a moment ago: its view is
    // (or will be, once delivered) good enough; do not repeat it every tick.
    if recent.is_some_and(|(_, sent)| side(sent, threshold) == side(current, threshold)) {
        return false;
    }
    let Some(previous) = previous else {
        return true;
    };
    if side(previous, threshold) != side(current, threshold) {
        return true;
    }
    previous != current && recent.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::from_unix_ms;

    #[test]
    fn cross_rules_of_the_spec() {
        assert_eq!(
            crossed(None, 200.0, 100.0),
            None,
            "no previous value, no cross"
        );
        assert_eq!(
            crossed(Some(99.0), 100.0, 100.0),
            Some(Cross::Up),
            "reaching counts"
        );
        assert_eq!(
            crossed(Some(100.0), 120.0, 100.0),
            None,
            "starting on it is not crossing up"
        );
        assert_eq!(crossed(Some(101.0), 100.0, 100.0), Some(Cross::Down));
        assert_eq!(crossed(Some(120.0), 110.0, 100.0), None);
        assert_eq!(
            crossed(Some(0.0002), -0.0001, 0.0),
            Some(Cross::Down),
            "funding through zero"
        );
    }

    #[test]
    fn update_checked_only_when_it_matters() {
        let t0 = from_unix_ms(1_764_928_800_000);
        let refresh = Duration::from_secs(300);
        let later = |s| t0 + Duration::from_secs(s);
        // No baseline yet: yes, unless one was just sent (not delivered yet).
        assert!(should_update(None, 1.0, 2.0, None, t0, refresh));
        assert!(!should_update(
            None,
            1.0,
            2.0,
            Some((t0, 1.1)),
            later(30),
            refresh
        ));
        assert!(should_update(
            None,
            1.0,
            2.0,
            Some((t0, 1.1)),
            later(300),
            refresh
        ));
        // Unchanged: never.
        assert!(!should_update(Some(1.0), 1.0, 2.0, None, t0, refresh));
        // Moved, never sent: yes; sent 30 s ago: no; 5 minutes ago: yes.
        assert!(should_update(Some(1.0), 1.5, 2.0, None, t0, refresh));
        assert!(!should_update(
            Some(1.0),
            1.5,
            2.0,
            Some((t0, 1.2)),
            later(30),
            refresh
        ));
        assert!(should_update(
            Some(1.0),
            1.5,
            2.0,
            Some((t0, 1.2)),
            later(300),
            refresh
        ));
        // Sitting on the threshold, then leaving it without crossing: at once.
        assert!(should_update(
            Some(2.0),
            2.5,
            2.0,
            Some((t0, 2.0)),
            later(30),
            refresh
        ));
        assert!(should_update(
            Some(2.0),
            1.5,
            2.0,
            Some((t0, 2.0)),
            later(30),
            refresh
        ));
    }
}
