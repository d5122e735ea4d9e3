//! The jobs `volspike run` schedules.
//!
//! Every job has the same shape (like mini-redis' `cmd/`): a folder
//! `jobs/<job>/` where `mod.rs` does the I/O and `rules.rs` decides.
//! `mod.rs` holds the job: a struct of the clients and state it needs
//! (handed in by `run`, each field documented), its `new`, and the [`Job`]
//! impl: a name, a [`Schedule`], and one `tick` that does one round of work
//! and returns a one-line summary. `rules.rs` is the pure half: thresholds,
//! decisions, message text and parsing that needs no socket, with their unit
//! tests. Other files appear only where a concern is big enough to stand
//! alone (`open_interest/memory.rs`, `user_alerts/active.rs`,
//! `funding_stream/status.rs`). The scheduler owns timing, logging context
//! (`JOB=<name>`), panics and `/health` bookkeeping, so a job does not;
//! [`registry`] lists every job once and [`build`] builds them from config.

pub mod build;
pub mod funding_health;
pub mod funding_stream;
pub mod liquid_universe;
pub mod oi_change_omissions;
pub mod open_interest;
pub mod registry;
pub mod scheduler;
pub mod services;
pub mod status;
pub mod telegram;
pub mod user_alerts;
pub mod volume_spike;

pub use registry::ALL;

use std::future::Future;
use std::time::{Duration, SystemTime};

/// When a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// At start, then every interval after the previous start.
    Every(Duration),
    /// On wall-clock multiples of the period, UTC (`:00, :05 … :55` for 5 minutes).
    WallClock(Duration),
}

impl Schedule {
    /// The first run after the scheduler starts at `now`.
    pub fn first_run(&self, now: SystemTime) -> SystemTime {
        match self {
            Schedule::Every(_) => now,
            Schedule::WallClock(period) => crate::clock::next_boundary(now, *period),
        }
    }

    /// The run after one that was due at `due`, seen from `now`.
    ///
    /// Runs missed while a tick overran are skipped, never queued up.
    pub fn next_run(&self, due: SystemTime, now: SystemTime) -> SystemTime {
        match self {
            Schedule::Every(interval) => {
                let next = due + *interval;
                if next > now {
                    next
                } else {
                    now + *interval
                }
            }
            Schedule::WallClock(period) => crate::clock::next_boundary(now.max(due), *period),
        }
    }

    /// A short description for `/health`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(d) => format!("every {}s", d.as_secs()),
            Schedule::WallClock(d) => format!("on the {}-minute wall clock", d.as_secs() / 60),
        }
    }
}

/// One scheduled job.
pub trait Job: Send + 'static {
    /// The job's name: the `JOB` log field and its key in `/health`.
    const NAME: &'static str;

    /// When it runs.
    fn schedule(&self) -> Schedule;

    /// One round of work at `now` (the scheduled time); a one-line summary on success.
    fn tick(&mut self, now: SystemTime) -> impl Future<Output = anyhow::Result<String>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{from_unix_ms, iso};

    #[test]
    fn every_skips_missed_runs() {
        let s = Schedule::Every(Duration::from_secs(30));
        let t0 = from_unix_ms(1_000_000);
        assert_eq!(
            s.next_run(t0, t0 + Duration::from_secs(1)),
            t0 + Duration::from_secs(30)
        );
        // A tick that overran by 100 s does not cause three catch-up runs.
        let late = t0 + Duration::from_secs(100);
        assert_eq!(s.next_run(t0, late), late + Duration::from_secs(30));
    }

    #[test]
    fn wall_clock_runs_on_boundaries() {
        let s = Schedule::WallClock(Duration::from_secs(300));
        let now = from_unix_ms(1_764_770_712_000); // 14:05:12
        assert_eq!(iso(s.first_run(now)), "2025-12-03T14:10:00Z");
        let due = from_unix_ms(1_764_771_000_000); // 14:10:00
        assert_eq!(
            iso(s.next_run(due, due + Duration::from_secs(3))),
            "2025-12-03T14:15:00Z"
        );
    }
}
