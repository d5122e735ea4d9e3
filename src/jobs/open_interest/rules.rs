//! The open-interest alert rules of docs/jobs.md as pure functions over a
//! symbol's recent samples and its alert state. No I/O.
//!
//! For each timeframe the baseline is the sample closest to `now − lookback`
//! (within a tolerance). The change is "outside" when it reaches the
//! timeframe's percentage AND at least 5,000 contracts. An alert fires only
//! when a (symbol, timeframe) goes from inside to outside, and not while the
//! (symbol, direction, timeframe) is cooling down after its last alert.
//! While it cools down the (symbol, timeframe) counts as still inside (the
//! old poller's rule), so a move that is outside when the cooldown ends
//! fires at that poll.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::settings;

/// One open-interest reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was read, ms since the epoch.
    pub ts_ms: u64,
    /// Open interest in contracts.
    pub contracts: f64,
    /// Mark price at that time, when known.
    pub mark_price: Option<f64>,
}

/// One timeframe's rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeframe {
    /// The backend's label: `5 min`, `15 min`, `1 hour`.
    pub label: &'static str,
    /// Minimum |change| as a fraction (0.03 = 3%).
    pub threshold: f64,
    /// How far back the baseline is, ms.
    pub lookback_ms: u64,
    /// How far from `now − lookback` the baseline sample may be, ms.
    pub tolerance_ms: u64,
    /// Quiet time after an alert for the same direction, ms.
    pub cooldown_ms: u64,
    /// Minimum |current − baseline| in contracts (docs/jobs.md: 5,000), so that
    /// a big percentage of a tiny open interest stays quiet.
    pub min_abs_contracts: f64,
}

/// The fixed lookbacks and tolerances, with the settings' default
/// thresholds, cooldowns and floor.
pub const TIMEFRAMES: [Timeframe; 3] = [
    timeframe(
        "5 min",
        settings::OI_PCT_5M.default,
        300_000,
        30_000,
        settings::OI_COOLDOWN_5M_SECS.default,
    ),
    timeframe(
        "15 min",
        settings::OI_PCT_15M.default,
        900_000,
        90_000,
        settings::OI_COOLDOWN_15M_SECS.default,
    ),
    timeframe(
        "1 hour",
        settings::OI_PCT_1H.default,
        3_600_000,
        120_000,
        settings::OI_COOLDOWN_1H_SECS.default,
    ),
];

/// One timeframe from the settings' units (threshold in percent, cooldown
/// in seconds) and its fixed lookback and tolerance (ms), with the default floor.
const fn timeframe(
    label: &'static str,
    threshold_pct: f64,
    lookback_ms: u64,
    tolerance_ms: u64,
    cooldown_secs: u64,
) -> Timeframe {
    Timeframe {
        label,
        threshold: threshold_pct / 100.0,
        lookback_ms,
        tolerance_ms,
        cooldown_ms: cooldown_secs * 1000,
        min_abs_contracts: MIN_ABS_CONTRACTS,
    }
}

/// Minimum |current − baseline| in contracts.
pub const MIN_ABS_CONTRACTS: f64 = settings::OI_MIN_CONTRACTS.default;

/// `UP` or `DOWN`: the backend's own enum, so an alert is the payload
/// field without a translation table.
pub use crate::backend::OiDirection as Direction;

/// A symbol's samples, oldest first, trimmed to what the longest rule needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct History {
    /// Samples in time order.
    pub samples: VecDeque<Sample>,
}

impl History {
    /// Appends a sample and drops those older than any rule can use.
    pub fn push(&mut self, sample: Sample) {
        self.samples.push_back(sample);
        let keep_ms = TIMEFRAMES
            .iter()
            .map(|t| t.lookback_ms + t.tolerance_ms)
            .max()
            .unwrap_or(0);
        while self
            .samples
            .front()
            .is_some_and(|s| s.ts_ms + keep_ms < sample.ts_ms)
        {
            self.samples.pop_front();
        }
    }

    /// The sample closest to `target_ms`, if within `tolerance_ms`.
    pub fn closest(&self, target_ms: u64, tolerance_ms: u64) -> Option<Sample> {
        self.samples
            .iter()
            .min_by_key(|s| s.ts_ms.abs_diff(target_ms))
            .filter(|s| s.ts_ms.abs_diff(target_ms) <= tolerance_ms)
            .copied()
    }
}

/// Per (symbol): whether each timeframe was outside at the last poll, and
/// when each (direction, timeframe) last fired. Persisted across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// Timeframe label → outside at the last evaluation.
    pub outside: BTreeMap<String, bool>,
    /// `"<timeframe>|<UP|DOWN>"` → ms of the last alert.
    pub last_fired_ms: BTreeMap<String, u64>,
}

/// An alert to post.
#[derive(Debug, Clone, PartialEq)]
pub struct OiAlert {
    /// Timeframe label.
    pub timeframe: &'static str,
    /// Direction of the change.
    pub direction: Direction,
    /// Baseline contracts.
    pub baseline: f64,
    /// Current contracts.
    pub current: f64,
    /// (current − baseline) / baseline.
    pub pct_change: f64,
    /// current − baseline.
    pub abs_change: f64,
    /// Mark-price change between the same two instants, when both are known.
    pub price_change: Option<f64>,
    /// The cooldown window index, for the outbox's dedup key.
    pub window: u64,
}

fn cooldown_key(tf: &Timeframe, direction: Direction) -> String {
    format!("{}|{}", tf.label, direction.as_str())
}

/// Evaluates every timeframe for one symbol whose latest sample is `now`,
/// updating `state`; returns the alerts to post.
pub fn evaluate(
    history: &History,
    state: &mut AlertState,
    now: Sample,
    timeframes: &[Timeframe],
) -> Vec<OiAlert> {
    let mut alerts = Vec::new();
    for tf in timeframes {
        let Some(target) = now.ts_ms.checked_sub(tf.lookback_ms) else {
            continue;
        };
        let usable = history
            .closest(target, tf.tolerance_ms)
            .filter(|b| b.contracts > 0.0);
        let Some(base) = usable else {
            // No baseline (just started, or a gap): inside, as the old poller.
            state.outside.insert(tf.label.to_string(), false);
            continue;
        };
        let abs_change = now.contracts - base.contracts;
        let pct_change = abs_change / base.contracts;
        let outside = pct_change.abs() >= tf.threshold && abs_change.abs() >= tf.min_abs_contracts;
        let was_outside = state
            .outside
            .insert(tf.label.to_string(), outside)
            .unwrap_or(false);
        if !outside || was_outside {
            continue;
        }
        let direction = if abs_change > 0.0 {
            Direction::Up
        } else {
            Direction::Down
        };
        let key = cooldown_key(tf, direction);
        let cooling = state
            .last_fired_ms
            .get(&key)
            .is_some_and(|last| now.ts_ms < last + tf.cooldown_ms);
        if cooling {
            // As the old poller: a cooling (symbol, timeframe) still counts
            // as inside, so a move that is still outside when the cooldown
            // ends fires then instead of waiting for a return and a new exit.
            state.outside.insert(tf.label.to_string(), false);
            continue;
        }
        state.last_fired_ms.insert(key, now.ts_ms);
        let price_change = match (base.mark_price, now.mark_price) {
            (Some(before), Some(after)) if before > 0.0 => Some((after - before) / before),
            _ => None,
        };
        alerts.push(OiAlert {
            timeframe: tf.label,
            direction,
            baseline: base.contracts,
            current: now.contracts,
            pct_change,
            abs_change,
            price_change,
            window: now.ts_ms / tf.cooldown_ms.max(1),
        });
    }
    alerts
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_764_928_800_000; // 2025-12-05T10:00:00Z

    fn sample(secs: u64, contracts: f64, price: f64) -> Sample {
        Sample {
            ts_ms: T0 + secs * 1000,
            contracts,
            mark_price: Some(price),
        }
    }

    /// Feeds samples every 30 s and collects the alerts of each poll.
    fn run(series: &[(u64, f64)]) -> Vec<(u64, OiAlert)> {
        let mut history = History::default();
        let mut state = AlertState::default();
        let mut out = Vec::new();
        for &(secs, contracts) in series {
            let now = sample(secs, contracts, 100.0 + secs as f64 / 100.0);
            history.push(now);
            for a in evaluate(&history, &mut state, now, &TIMEFRAMES) {
                out.push((secs, a));
            }
        }
        out
    }

    #[test]
    fn a_jump_over_threshold_and_floor_fires_once() {
        // 200k contracts flat for 5 min, then +4% (8k contracts).
        let mut series: Vec<(u64, f64)> = (0..=10).map(|i| (i * 30, 200_000.0)).collect();
        series.extend((11..=20).map(|i| (i * 30, 208_000.0)));
        let alerts = run(&series);
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let (at, a) = &alerts[0];
        assert_eq!(*at, 330);
        assert_eq!(a.timeframe, "5 min");
        assert_eq!(a.direction, Direction::Up);
        assert_eq!(a.baseline, 200_000.0);
        assert!((a.pct_change - 0.04).abs() < 1e-12);
        assert_eq!(a.abs_change, 8_000.0);
        assert!(a.price_change.is_some_and(|p| p > 0.0));
    }

    #[test]
    fn the_contract_floor_blocks_small_symbols() {
        // +10% but only 1,000 contracts.
        let mut series: Vec<(u64, f64)> = (0..=10).map(|i| (i * 30, 10_000.0)).collect();
        series.extend((11..=20).map(|i| (i * 30, 11_000.0)));
        assert!(run(&series).is_empty());
    }

    #[test]
    fn no_baseline_no_alert() {
        // Only two minutes of history: no 5-minute baseline within 30 s.
        let series = [(0, 100_000.0), (60, 100_000.0), (120, 150_000.0)];
        assert!(run(&series).is_empty());
    }

    #[test]
    fn cooldown_blocks_a_second_crossing_in_the_same_direction() {
        let mut history = History::default();
        let mut state = AlertState::default();
        let tf = [TIMEFRAMES[0]];
        let mut fired = Vec::new();
        // Oscillate: flat, jump, back, jump again within 10 minutes.
        for i in 0..=40u64 {
            let secs = i * 30;
            let level: f64 = match secs {
                0..=299 => 200_000.0,
                300..=419 => 210_000.0, // +5%: fires at 300
                420..=719 => 200_000.0, // back inside (and a DOWN crossing vs 210k)
                _ => 211_000.0,         // up again at 720 s: 420 s after the first
            };
            let now = sample(secs, level, 100.0);
            history.push(now);
            for a in evaluate(&history, &mut state, now, &tf) {
                fired.push((secs, a.direction));
            }
        }
        let ups: Vec<_> = fired.iter().filter(|(_, d)| *d == Direction::Up).collect();
        assert_eq!(ups.first().map(|(s, _)| *s), Some(300));
        // The second UP crossing at 720 s is 420 s after the first: cooling down.
        assert!(ups.iter().all(|(s, _)| *s == 300 || *s >= 900), "{fired:?}");
    }

    #[test]
    fn a_move_that_starts_during_the_cooldown_fires_when_it_ends() {
        // The old poller's rule: fires at 300 s (+5%), falls back inside at
        // 420 s, ramps out again at 600 s while the UP cooldown (600 s) still
        // runs, and stays out. The ramp fires at 900 s, the first poll after
        // the cooldown, without first returning inside.
        let mut history = History::default();
        let mut state = AlertState::default();
        let tf = [TIMEFRAMES[0]];
        let mut fired = Vec::new();
        for i in 0..=50u64 {
            let secs = i * 30;
            let level: f64 = match secs {
                0..=299 => 200_000.0,
                300..=419 => 210_000.0,
                420..=599 => 200_000.0,
                // A steady ramp: +3.5% over every 5 minutes, always outside.
                _ => 200_000.0 * (1.0 + 0.035 * (secs - 570) as f64 / 300.0),
            };
            let now = sample(secs, level, 100.0);
            history.push(now);
            for a in evaluate(&history, &mut state, now, &tf) {
                if a.direction == Direction::Up {
                    fired.push(secs);
                }
            }
        }
        assert_eq!(fired, vec![300, 900], "{state:?}");
    }

    #[test]
    fn the_contract_floor_is_per_timeframe_configuration() {
        // The same +10% of 10,000 contracts alerts once the floor is lowered.
        let mut series: Vec<(u64, f64)> = (0..=10).map(|i| (i * 30, 10_000.0)).collect();
        series.extend((11..=20).map(|i| (i * 30, 11_000.0)));
        let tf = [Timeframe {
            min_abs_contracts: 500.0,
            ..TIMEFRAMES[0]
        }];
        let mut history = History::default();
        let mut state = AlertState::default();
        let mut fired = 0;
        for &(secs, contracts) in &series {
            let now = sample(secs, contracts, 100.0);
            history.push(now);
            fired += evaluate(&history, &mut state, now, &tf).len();
        }
        assert_eq!(fired, 1);
    }

    #[test]
    fn state_survives_a_round_trip() {
        let mut state = AlertState::default();
        state.outside.insert("5 min".into(), true);
        state.last_fired_ms.insert("5 min|UP".into(), T0);
        let json = serde_json::to_string(&state).expect("serialise");
        let back: AlertState = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, state);
    }
}
