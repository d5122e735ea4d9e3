//! What every job last did, for `/health`, `STATUS=` and the dashboard.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::clock::iso;

/// A run overdue by more than this (and not running) counts as unhealthy.
const OVERDUE_GRACE: Duration = Duration::from_secs(60);

/// One job's record.
#[derive(Debug, Clone, Default)]
pub struct JobStatus {
    /// Human description of the schedule.
    pub schedule: String,
    /// Whether a tick is running now.
    pub running: bool,
    /// When the last tick started.
    pub last_run: Option<SystemTime>,
    /// How long the last finished tick took.
    pub last_duration: Option<Duration>,
    /// Every finished tick's duration added up: with `runs`, the duration
    /// summary on `/metrics` (a rate of it over a rate of runs is the mean).
    pub total_duration: Duration,
    /// Whether the last finished tick succeeded.
    pub last_ok: Option<bool>,
    /// The last success's summary line.
    pub last_summary: Option<String>,
    /// The last error, kept after later successes for the operator.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at: Option<SystemTime>,
    /// When the next tick is due.
    pub next_run: Option<SystemTime>,
    /// Ticks finished.
    pub runs: u64,
    /// Ticks failed.
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_failures: u64,
}

impl JobStatus {
    /// Healthy: the last tick did not fail and the next one is not overdue.
    pub fn healthy(&self, now: SystemTime) -> bool {
        let overdue = !self.running && self.next_run.is_some_and(|next| now > next + OVERDUE_GRACE);
        self.consecutive_failures == 0 && !overdue
    }
}

/// The `/health` JSON for one job.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// `ok`, `failing`, `overdue` or `pending` (not run yet).
    pub state: &'static str,
    /// Schedule description.
    pub schedule: String,
    /// Whether a tick is running now.
    pub running: bool,
    /// ISO time of the last start.
    pub last_run: Option<String>,
    /// `ok` or `error`.
    pub last_result: Option<&'static str>,
    /// Summary of the last success.
    pub last_summary: Option<String>,
    /// The last error message.
    pub last_error: Option<String>,
    /// ISO time of the last error.
    pub last_error_at: Option<String>,
    /// Duration of the last finished tick, in seconds.
    pub last_duration_seconds: Option<f64>,
    /// ISO time the next tick is due.
    pub next_run: Option<String>,
    /// Ticks finished.
    pub runs: u64,
    /// Ticks failed.
    pub failures: u64,
}

/// Shared board of job records; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    /// Each job's record, by job name.
    jobs: Arc<RwLock<BTreeMap<&'static str, JobStatus>>>,
}

impl StatusBoard {
    /// Applies `change` to the record of `name`, creating it when new.
    pub fn update(&self, name: &'static str, change: impl FnOnce(&mut JobStatus)) {
        let mut jobs = match self.jobs.write() {
            Ok(jobs) => jobs,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(jobs.entry(name).or_default());
    }

    /// A copy of every record.
    pub fn snapshot(&self) -> BTreeMap<&'static str, JobStatus> {
        match self.jobs.read() {
            Ok(jobs) => jobs.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The `/health` view of every job, and whether all are healthy.
    pub fn views(&self, now: SystemTime) -> (BTreeMap<&'static str, JobView>, bool) {
        let mut all_healthy = true;
        let views = self
            .snapshot()
            .into_iter()
            .map(|(name, s)| {
                let healthy = s.healthy(now);
                all_healthy &= healthy;
                let state = if s.consecutive_failures > 0 {
                    "failing"
                } else if !healthy {
                    "overdue"
                } else if s.last_ok.is_none() {
                    "pending"
                } else {
                    "ok"
                };
                let view = JobView {
                    state,
                    schedule: s.schedule,
                    running: s.running,
                    last_run: s.last_run.map(iso),
                    last_result: s.last_ok.map(|ok| if ok { "ok" } else { "error" }),
                    last_summary: s.last_summary,
                    last_error: s.last_error,
                    last_error_at: s.last_error_at.map(iso),
                    last_duration_seconds: s.last_duration.map(|d| d.as_secs_f64()),
                    next_run: s.next_run.map(iso),
                    runs: s.runs,
                    failures: s.failures,
                };
                (name, view)
            })
            .collect();
        (views, all_healthy)
    }

    /// `"5 jobs: 4 ok, 1 failing (open_interest)"`, for systemd's STATUS line.
    pub fn summary(&self, now: SystemTime) -> String {
        let jobs = self.snapshot();
        let failing: Vec<_> = jobs
            .iter()
            .filter(|(_, s)| !s.healthy(now))
            .map(|(name, _)| *name)
            .collect();
        if failing.is_empty() {
            format!("{} jobs ok", jobs.len())
        } else {
            format!(
                "{} jobs: {} ok, {} unhealthy ({})",
                jobs.len(),
                jobs.len() - failing.len(),
                failing.len(),
                failing.join(", ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::from_unix_ms;

    #[test]
    fn failure_and_overdue_are_unhealthy() {
        let board = StatusBoard::default();
        let now = from_unix_ms(10_000_000);
        board.update("a", |s| {
            s.last_ok = Some(true);
            s.next_run = Some(now);
        });
        board.update("b", |s| {
            s.last_ok = Some(false);
            s.consecutive_failures = 1;
        });
        board.update("c", |s| s.next_run = Some(now - Duration::from_secs(600)));
        let (views, healthy) = board.views(now);
        assert!(!healthy);
        assert_eq!(views["a"].state, "ok");
        assert_eq!(views["b"].state, "failing");
        assert_eq!(views["c"].state, "overdue");
        assert_eq!(board.summary(now), "3 jobs: 1 ok, 2 unhealthy (b, c)");
    }
}
