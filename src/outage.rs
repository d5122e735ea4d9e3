//! How a stretch of failed attempts is logged (the funding stream's
//! connections, a scheduled job's retried ticks): the first failure in
//! full, then one summary line every [`SUMMARY_EVERY`] while it lasts (each
//! attempt only at debug), and one line when it ends. Without this, an
//! appliance started without network prints a retry line every few seconds
//! forever and the cause scrolls away. A failure with another cause than
//! the stretch's is logged in full again: it is news.

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
    /// The cause last logged in full, as [`same_cause`] compares it.
    cause: Option<String>,
}

/// A failure's text with its digits removed: counts, ports of a retry or
/// elapsed times vary between two failures of one cause.
fn same_cause(error: &str) -> String {
    error.chars().filter(|c| !c.is_ascii_digit()).collect()
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

    /// Records a failed attempt at `now` caused by `error`: like
    /// [`OutageLog::failed`], except that a cause other than the one last
    /// logged is [`Say::First`] again (the stretch and its count go on).
    pub fn failed_because(&mut self, now: Instant, error: &str) -> Say {
        let cause = same_cause(error);
        let say = self.failed(now);
        if say == Say::First || self.cause.as_deref() == Some(cause.as_str()) {
            self.cause = Some(cause);
            return say;
        }
        self.cause = Some(cause);
        self.last_said = Some(now);
        Say::First
    }

    /// Records a success at `now`; returns the stretch it ended (failed
    /// attempts, duration), if there was one.
    pub fn recovered(&mut self, now: Instant) -> Option<(u64, Duration)> {
        let since = self.since.take()?;
        let failures = std::mem::take(&mut self.failures);
        self.last_said = None;
        self.cause = None;
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

    #[test]
    fn a_job_failing_with_one_cause_logs_once_then_summaries_and_a_new_cause_again() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut log = OutageLog::default();
        let refused = |port: u16| format!("cannot reach Binance at 127.0.0.1:{port}: refused");
        assert_eq!(log.failed_because(at(0), &refused(9)), Say::First);
        // The scheduler's retries: 5, 10, 20 s, then every 30 s; the digits
        // in the text vary, the cause does not.
        let mut t = 0;
        let mut said = Vec::new();
        for (i, wait) in [5, 10, 20].into_iter().chain([30; 17]).enumerate() {
            t += wait;
            said.push(log.failed_because(at(t), &refused(9 + (i % 2) as u16)));
        }
        let loud: Vec<&Say> = said.iter().filter(|s| **s != Say::Quiet).collect();
        assert_eq!(
            loud,
            [&Say::Summary {
                failures: 13,
                lasting: Duration::from_secs(305)
            }],
            "one summary in 9.6 minutes of retries"
        );
        // Another cause is news, then quiet again.
        assert_eq!(log.failed_because(at(t + 30), "disk full"), Say::First);
        assert_eq!(log.failed_because(at(t + 60), "disk full"), Say::Quiet);
        assert_eq!(
            log.recovered(at(t + 90)),
            Some((23, Duration::from_secs(t + 90)))
        );
        assert_eq!(log.failed_because(at(t + 120), "disk full"), Say::First);
    }
}
