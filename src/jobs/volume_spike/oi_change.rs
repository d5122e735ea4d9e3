//! `oiChange` of volume alerts: open interest now (Binance) against the
//! backend's snapshot at the hour start. The lookups of one tick run
//! concurrently ([`LOOKUP_CONCURRENCY`] at a time) and share one deadline
//! ([`LOOKUP_BUDGET`]): a slow or hanging backend costs the tick at most
//! that long, and the alerts whose lookup did not finish go out without
//! `oiChange` (it is optional) instead of late: elite users see an alert
//! the moment it is ingested.
//!
//! The snapshot route answers the newest sample at or before the hour
//! start, however old; a sample more than [`SNAPSHOT_MAX_DISTANCE`] from
//! the hour start is not "OI at the hour start" and is not used.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::backend::{Auth, BackendClient};
use crate::binance::BinanceRest;
use crate::clock::{from_unix_ms, iso, unix_ms};

/// All lookups of one tick finish within this, or are given up.
pub const LOOKUP_BUDGET: Duration = Duration::from_secs(5);
/// Lookups in flight at once.
pub const LOOKUP_CONCURRENCY: usize = 8;
/// Farthest a snapshot's timestamp may be from the hour start.
pub const SNAPSHOT_MAX_DISTANCE: Duration = Duration::from_secs(10 * 60);
/// The backend's snapshot route.
const SNAPSHOT_PATH: &str = "/api/market/open-interest/snapshot";

/// Why one symbol has no `oiChange`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Missing {
    /// The backend has no sample at or before the hour start.
    NotFound,
    /// The newest sample is too far from the hour start (its time).
    Stale(String),
    /// The answer or Binance failed, or the OI is 0.
    Failed(String),
}

/// What the lookups of one tick found.
#[derive(Debug, Default)]
pub(crate) struct Lookups {
    /// `(symbol, hour ms)` → change as a fraction.
    pub changes: HashMap<(String, u64), f64>,
    /// Snapshots not used because of their age.
    pub stale: usize,
    /// Lookups still running at the deadline (their alerts go without).
    pub timed_out: usize,
}

/// The hour-start open interest from a snapshot answer, when the sample
/// is found and within [`SNAPSHOT_MAX_DISTANCE`] of `hour_ms`.
pub(crate) fn hour_start_oi(answer: &Value, hour_ms: u64) -> Result<f64, Missing> {
    if answer["found"] != true {
        return Err(Missing::NotFound);
    }
    let ts = answer["ts"]
        .as_str()
        .ok_or_else(|| Missing::Failed("snapshot without ts".into()))?;
    let at = humantime::parse_rfc3339_weak(ts.trim_end_matches('Z'))
        .map_err(|e| Missing::Failed(format!("snapshot ts {ts:?}: {e}")))?;
    let distance = unix_ms(at).abs_diff(hour_ms);
    if distance > SNAPSHOT_MAX_DISTANCE.as_millis() as u64 {
        return Err(Missing::Stale(ts.to_string()));
    }
    answer["openInterest"]
        .as_f64()
        .filter(|oi| *oi > 0.0)
        .ok_or_else(|| Missing::Failed("snapshot without a positive openInterest".into()))
}

/// The backend snapshot client (primary) and Binance.
#[derive(Clone)]
pub(crate) struct OiLookup {
    /// The primary backend; `None` in `--local` mode.
    pub client: Option<BackendClient>,
    /// Binance, for the current open interest.
    pub rest: BinanceRest,
    /// Alerts sent without `oiChange`, counted for `/metrics`.
    pub omissions: crate::jobs::oi_change_omissions::OiChangeOmissionCounters,
}

impl OiLookup {
    /// Looks up every `(symbol, hour ms)` concurrently within `budget`.
    pub(crate) async fn changes(&self, wanted: Vec<(String, u64)>, budget: Duration) -> Lookups {
        let mut found = Lookups::default();
        if self.client.is_none() || wanted.is_empty() {
            return found;
        }
        let permits = Arc::new(Semaphore::new(LOOKUP_CONCURRENCY));
        let mut tasks = JoinSet::new();
        for (symbol, hour_ms) in wanted {
            let lookup = self.clone();
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let change = lookup.one(&symbol, hour_ms).await;
                (symbol, hour_ms, change)
            });
        }
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            match tokio::time::timeout_at(deadline, tasks.join_next()).await {
                Ok(Some(Ok((symbol, hour_ms, result)))) => match result {
                    Ok(change) => {
                        found.changes.insert((symbol, hour_ms), change);
                    }
                    Err(Missing::NotFound) => {}
                    Err(Missing::Stale(ts)) => {
                        found.stale += 1;
                        tracing::warn!(symbol, snapshot_ts = %ts, "hour-start OI snapshot is more than {} min from the hour start; oiChange omitted", SNAPSHOT_MAX_DISTANCE.as_secs() / 60);
                    }
                    Err(Missing::Failed(e)) => {
                        tracing::warn!(symbol, "no oiChange: {e}")
                    }
                },
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) => {
                    found.timed_out = tasks.len();
                    tracing::warn!(
                        unfinished = found.timed_out,
                        budget_ms = budget.as_millis() as u64,
                        "OI lookups did not finish within the tick's budget; those alerts go out without oiChange"
                    );
                    tasks.abort_all();
                    break;
                }
            }
        }
        self.omissions.record(found.timed_out, found.stale);
        found
    }

    /// One symbol's change since `hour_ms`.
    async fn one(&self, symbol: &str, hour_ms: u64) -> Result<f64, Missing> {
        let client = self
            .client
            .clone()
            .ok_or_else(|| Missing::Failed("no backend".into()))?;
        let symbol_owned = symbol.to_string();
        let ts = iso(from_unix_ms(hour_ms));
        let answer = tokio::task::spawn_blocking(move || {
            client.get_json(
                SNAPSHOT_PATH,
                &[("symbol", symbol_owned.as_str()), ("ts", ts.as_str())],
                Auth::Header,
            )
        })
        .await
        .map_err(|e| Missing::Failed(e.to_string()))?
        .map_err(|e| Missing::Failed(format!("no hour-start OI snapshot: {e}")))?;
        let start = hour_start_oi(&answer, hour_ms)?;
        let current = self
            .rest
            .open_interest(symbol)
            .await
            .map_err(|e| Missing::Failed(format!("no current open interest: {e}")))?
            .contracts;
        Ok((current - start) / start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2025-12-03T14:00:00Z
    const H14: u64 = 1_764_770_400_000;

    #[test]
    fn a_snapshot_is_used_only_near_the_hour_start() {
        let at = |ts: &str| json!({"found": true, "openInterest": 1000.0, "ts": ts});
        assert_eq!(hour_start_oi(&at("2025-12-03T14:00:00Z"), H14), Ok(1000.0));
        assert_eq!(
            hour_start_oi(&at("2025-12-03T13:50:00.000Z"), H14),
            Ok(1000.0)
        );
        assert_eq!(
            hour_start_oi(&at("2025-12-03T13:49:59Z"), H14),
            Err(Missing::Stale("2025-12-03T13:49:59Z".into()))
        );
        // The 72-hour-old sample of the field report.
        assert!(matches!(
            hour_start_oi(&at("2025-11-30T14:00:00Z"), H14),
            Err(Missing::Stale(_))
        ));
        assert_eq!(
            hour_start_oi(&json!({"found": false}), H14),
            Err(Missing::NotFound)
        );
        assert!(matches!(
            hour_start_oi(
                &json!({"found": true, "openInterest": 0.0, "ts": "2025-12-03T14:00:00Z"}),
                H14
            ),
            Err(Missing::Failed(_))
        ));
        assert!(matches!(
            hour_start_oi(&json!({"found": true, "openInterest": 5.0}), H14),
            Err(Missing::Failed(_))
        ));
    }
}
