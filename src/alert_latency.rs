//! Per-alert detection latency of volume alerts: Binance's kline event time
//! `E` → queued in the outbox (stream detections only; the sweep has no
//! event time), and queued → delivered to a backend. Quantiles over the
//! last [`KEPT`] alerts of each stage (p50, p99), with their sum and count
//! since start; `/metrics` renders them (`http/metrics/latency.rs`), the
//! dashboard reads them from `/health`.
//!
//! A leaf (std and serde only): the outbox and the volume job record here
//! without depending on the HTTP side.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Alerts kept per stage for the quantiles.
const KEPT: usize = 512;

/// One stage's recent samples and totals.
#[derive(Debug, Default)]
struct Stage {
    /// The last [`KEPT`] latencies, ms.
    recent: VecDeque<u64>,
    /// Every latency added up since start, ms.
    sum_ms: u64,
    /// Alerts measured since start.
    count: u64,
}

impl Stage {
    fn add(&mut self, ms: u64) {
        if self.recent.len() == KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(ms);
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.count += 1;
    }

    fn view(&self) -> StageView {
        let mut sorted: Vec<u64> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        StageView {
            p50_ms: quantile(&sorted, 0.5),
            p99_ms: quantile(&sorted, 0.99),
            last_ms: self.recent.back().copied(),
            sum_ms: self.sum_ms,
            count: self.count,
        }
    }
}

/// The nearest-rank quantile of sorted samples.
fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    let last = sorted.len().checked_sub(1)?;
    let rank = ((q * sorted.len() as f64).ceil() as usize).saturating_sub(1);
    sorted.get(rank.min(last)).copied()
}

/// Both stages.
#[derive(Debug, Default)]
struct Latencies {
    /// Kline event time → queued.
    queued: Stage,
    /// Queued → delivered.
    delivered: Stage,
}

static LATENCIES: Mutex<Latencies> = Mutex::new(Latencies {
    queued: Stage {
        recent: VecDeque::new(),
        sum_ms: 0,
        count: 0,
    },
    delivered: Stage {
        recent: VecDeque::new(),
        sum_ms: 0,
        count: 0,
    },
});

fn with<T>(f: impl FnOnce(&mut Latencies) -> T) -> T {
    match LATENCIES.lock() {
        Ok(mut l) => f(&mut l),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// A stream-detected alert was queued `ms` after its kline's event time.
pub fn record_queued(ms: u64) {
    with(|l| l.queued.add(ms));
}

/// A volume alert was delivered `ms` after it was queued.
pub fn record_delivered(ms: u64) {
    with(|l| l.delivered.add(ms));
}

/// One stage as shown on the dashboard.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StageView {
    /// Median of the recent alerts, ms.
    pub p50_ms: Option<u64>,
    /// 99th percentile of the recent alerts, ms.
    pub p99_ms: Option<u64>,
    /// The latest alert's, ms.
    pub last_ms: Option<u64>,
    /// Sum since start, ms.
    pub sum_ms: u64,
    /// Alerts measured since start.
    pub count: u64,
}

/// Both stages as shown on the dashboard (`/health` `volumeLatency`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LatencyView {
    /// Kline event time `E` → queued.
    pub event_to_queued: StageView,
    /// Queued → delivered.
    pub queued_to_delivered: StageView,
}

/// The current figures.
pub fn view() -> LatencyView {
    with(|l| LatencyView {
        event_to_queued: l.queued.view(),
        queued_to_delivered: l.delivered.view(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank_over_the_recent_alerts() {
        let mut stage = Stage::default();
        assert_eq!(stage.view().p50_ms, None);
        for ms in 1..=100 {
            stage.add(ms);
        }
        let v = stage.view();
        assert_eq!(
            (v.p50_ms, v.p99_ms, v.last_ms),
            (Some(50), Some(99), Some(100))
        );
        assert_eq!((v.sum_ms, v.count), (5050, 100));
        for _ in 0..KEPT {
            stage.add(7);
        }
        assert_eq!(stage.view().p99_ms, Some(7), "only the last {KEPT} count");
        assert_eq!(stage.view().count, 100 + KEPT as u64);
    }
}
