//! The job's thresholds and timing: [`OpenInterestConfig`] turned into the
//! rules [`super::rules`] applies.

use std::time::Duration;

use super::rules::{Timeframe, TIMEFRAMES};
use crate::config::OpenInterestConfig;

/// The job's thresholds and timing; [`OpenInterestConfig`] turned into rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Poll interval before stretching.
    pub poll: Duration,
    /// The three timeframes' rules (threshold, lookback, tolerance, cooldown, floor).
    pub timeframes: [Timeframe; 3],
    /// Fraction (0..=1) of the governor's ceiling this job may use.
    pub weight_share: f64,
    /// Funding-cache marks older than this are not used (the stream is down):
    /// the REST price fallback is taken instead.
    pub stale_after: Duration,
}

impl Settings {
    /// Rules from the configuration: the docs/jobs.md lookbacks and tolerances
    /// (fixed, since the backend only knows the labels `5 min`, `15 min`,
    /// `1 hour`) with the configured thresholds, cooldowns and floor.
    pub fn from_config(config: &OpenInterestConfig, stale_after: Duration) -> Settings {
        let mut timeframes = TIMEFRAMES;
        for (i, tf) in timeframes.iter_mut().enumerate() {
            tf.threshold = config.thresholds[i];
            tf.cooldown_ms = config.cooldowns[i].as_millis() as u64;
            tf.min_abs_contracts = config.min_contracts;
        }
        Settings {
            poll: config.poll,
            timeframes,
            weight_share: config.weight_share,
            stale_after,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_config(
            &OpenInterestConfig::default(),
            Duration::from_secs(crate::config::settings::FUNDING_STALE_SECS.default),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_thresholds_cooldowns_and_floor_from_config() {
        let config = OpenInterestConfig {
            min_contracts: 10.0,
            thresholds: [0.01, 0.02, 0.04],
            cooldowns: [
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(3),
            ],
            ..OpenInterestConfig::default()
        };
        let s = Settings::from_config(&config, Duration::from_secs(180));
        assert_eq!(s.timeframes[1].threshold, 0.02);
        assert_eq!(s.timeframes[2].cooldown_ms, 3000);
        assert!(s.timeframes.iter().all(|t| t.min_abs_contracts == 10.0));
        // Lookbacks stay those of the labels the backend knows.
        assert_eq!(s.timeframes[0].lookback_ms, 300_000);
        assert_eq!(Settings::default().timeframes, TIMEFRAMES);
    }
}
