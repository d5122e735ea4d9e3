//! `/metrics` rendering of volume alerts' detection latency, recorded in
//! [`crate::alert_latency`].

use super::encode::{Encoder, Kind};
use crate::alert_latency;

/// The two summaries on `/metrics`.
pub fn write(e: &mut Encoder) {
    let v = alert_latency::view();
    for (name, help, stage) in [
        (
            "volspike_volume_alert_event_to_queued_seconds",
            "Volume alerts from the kline stream: Binance's event time to queued (last 512 alerts' quantiles).",
            &v.event_to_queued,
        ),
        (
            "volspike_volume_alert_queued_to_delivered_seconds",
            "Volume alerts: queued to delivered to a backend (last 512 alerts' quantiles).",
            &v.queued_to_delivered,
        ),
    ] {
        e.family(name, Kind::Summary, help);
        for (q, value) in [("0.5", stage.p50_ms), ("0.99", stage.p99_ms)] {
            if let Some(ms) = value {
                e.sample(name, &[("quantile", q)], ms as f64 / 1000.0);
            }
        }
        e.sample(&format!("{name}_sum"), &[], stage.sum_ms as f64 / 1000.0);
        e.sample(&format!("{name}_count"), &[], stage.count as f64);
    }
}
