//! How a stretch of failed connection attempts is logged: the first
//! failure at warn, then one summary line every [`SUMMARY_EVERY`] while it
//! lasts (each attempt only at debug), and one line when it ends. Without
//! this, an appliance started without network prints a retry line every few
//! seconds forever and the cause scrolls away.

use std::time::{Duration, Instant};

/// How often a lasting outage is summarized.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(300);

/// What to log for one failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Say {
    /// The first failure of a stretch: log it in full.
    First,
    /// A summary is due: `failures` attempts over `lasting`.
    Summary {
        /// Failed attempts so far in this stretch.
        failures: u64,
        /// Since the first failure.
        lasting: Duration,
    },
    /// Nothing above debug.
    Quiet,
}

/// The current stretch of failures, if any.
#[derive(Debug, Default)]
pub struct OutageLog {
    /// When the stretch began.
    since: Option<Instant>,
    /// Failed attempts in it.
    failures: u64,
    /// When it was last summarized (or began).
    last_said: Option<Instant>,
}

impl OutageLog {
    /// Records a failed attempt at `now`.
    pub fn failed(&mut self, now: Instant) -> Say {
        self.failures += 1;
        let Some(since) = self.since else {
            self.since = Some(now);
            self.last_said = Some(now);
            return Say::First;
        };
        let said = self.last_said.unwrap_or(since);
        if now.saturating_duration_since(said) >= SUMMARY_EVERY {
            self.last_said = Some(now);
            Say::Summary {
                failures: self.failures,
                lasting: now.saturating_duration_since(since),
            }
        } else {
            Say::Quiet
        }
    }

    /// Records a success at `now`; returns the stretch it ended (failed
    /// attempts, duration), if there was one.
    pub fn recovered(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let since = self.since.take()?;
        let failures = std::mem::take(&mut self.failures);
        self.last_said = None;
        Some((failures, now.saturating_duration_since(since)))
    }
}

/// `95 s`, `12 min`, `3 h 5 min`: an outage's length for a log line.
pub fn lasting_text(d: Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else {
        format!("{} h {} min", s / 3600, s % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_then_a_summary_every_five_minutes_then_recovery() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut log = OutageLog::default();
        assert_eq!(log.recovered(at(0)), None, "no outage yet");
        assert_eq!(log.failed(at(0)), Say::First);
        // Retries every 20 s for ten minutes: two summaries, nothing else.
        let says: Vec<Say> = (1..=30).map(|i| log.failed(at(i * 20))).collect();
        let summaries: Vec<&Say> = says.iter().filter(|s| **s != Say::Quiet).collect();
        assert_eq!(
            summaries,
            [
                &Say::Summary {
                    failures: 16,
                    lasting: Duration::from_secs(300)
                },
                &Say::Summary {
                    failures: 31,
                    lasting: Duration::from_secs(600)
                }
            ]
        );
        assert_eq!(log.recovered(at(610)), Some((31, Duration::from_secs(610))));
        // A new stretch starts over.
        assert_eq!(log.failed(at(700)), Say::First);
        assert_eq!(lasting_text(Duration::from_secs(610)), "10 min");
        assert_eq!(lasting_text(Duration::from_secs(45)), "45 s");
        assert_eq!(
            lasting_text(Duration::from_secs(3 * 3600 + 300)),
            "3 h 5 min"
        );
    }
}
