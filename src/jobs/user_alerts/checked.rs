//! When an uncrossed alert is worth an update-checked (see the module docs
//! of [`super`]): pure, so the rule is tested without a backend.

use std::time::{Duration, SystemTime};

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
