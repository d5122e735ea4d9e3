//! The scheduler: one critical loop that starts each job's tick when due.
//!
//! Each tick runs in its own tokio task inside a `job` span carrying
//! `JOB=<name>`, so every event a job logs is tagged without the job doing
//! anything. A panicking tick is caught at the task boundary, recorded as a
//! failure, and the job runs again at its next time: one bad tick never takes
//! the other jobs down. A tick still running when the next is due is not
//! doubled up; the due run is skipped and logged.
//!
//! A job that keeps failing for one cause (Binance unreachable) logs its
//! first failure at error, then a summary every five minutes while it lasts,
//! then one line when a tick succeeds again; each retry is at debug
//! ([`crate::outage`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::status::StatusBoard;
use super::{Job, Schedule};
use crate::outage::{lasting_text, OutageLog, Say, SUMMARY_EVERY};
use crate::shutdown::Shutdown;
use crate::systemd::liveness::Heartbeat;

/// The longest the scheduler sleeps, so its heartbeat stays fresh and a
/// wall-clock jump is noticed within a second.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// How long running ticks get to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(5);

/// When a failed tick runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Wait after the first failure; doubled after each further one.
    pub first: Duration,
    /// Longest wait between two attempts.
    pub max: Duration,
}

impl Retry {
    /// 5 s, 10 s, 20 s, then every 30 s until a tick succeeds.
    pub const DEFAULT: Retry = Retry {
        first: Duration::from_secs(5),
        max: Duration::from_secs(30),
    };

    /// The wait before the next attempt after `failures` failures in a row.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

type TickFuture = Pin<Box<dyn Future<Output = anyhow::Result<String>> + Send>>;
type TickFn = Box<dyn Fn(SystemTime) -> TickFuture + Send + Sync>;

/// A job with its type erased, ready for the scheduler.
pub struct ScheduledJob {
    /// The job's name.
    name: &'static str,
    /// When it runs.
    schedule: Schedule,
    /// Starts one tick.
    tick: TickFn,
    /// The job's current stretch of failed ticks, for how loudly to log
    /// the next one.
    failing: Arc<std::sync::Mutex<OutageLog>>,
}

impl ScheduledJob {
    /// Wraps a job. Its state sits behind an async mutex so a tick can run in
    /// its own task (and panic there) while the job lives on for the next one.
    pub fn new<J: Job>(job: J) -> ScheduledJob {
        let schedule = job.schedule();
        let job = Arc::new(Mutex::new(job));
        ScheduledJob {
            name: J::NAME,
            schedule,
            tick: Box::new(move |now| {
                let job = job.clone();
                Box::pin(async move { job.lock().await.tick(now).await })
            }),
            failing: Arc::default(),
        }
    }

    /// The job's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// One job's scheduling state.
struct Slot {
    /// The job and its record keeping.
    job: ScheduledJob,
    /// When its next tick is due.
    next_run: SystemTime,
    /// The tick in flight (it yields whether it succeeded), and its due time.
    running: Option<(JoinHandle<bool>, SystemTime)>,
    /// Failed ticks in a row.
    failures: u32,
    /// A retry of a failed tick: when, and the due time it runs for.
    retry: Option<(SystemTime, SystemTime)>,
}

/// Runs `jobs` until shutdown, beating `heartbeat` on every turn; failed
/// ticks are retried as `retry` says.
pub async fn run(
    jobs: Vec<ScheduledJob>,
    board: StatusBoard,
    heartbeat: Heartbeat,
    mut shutdown: Shutdown,
    retry: Retry,
) {
    let now = crate::clock::now();
    let mut slots: Vec<Slot> = jobs
        .into_iter()
        .map(|job| {
            let next_run = job.schedule.first_run(now);
            board.update(job.name, |s| {
                s.schedule = job.schedule.describe();
                s.next_run = Some(next_run);
            });
            Slot {
                job,
                next_run,
                running: None,
                failures: 0,
                retry: None,
            }
        })
        .collect();

    loop {
        heartbeat.beat().await;
        let now = crate::clock::now();
        for slot in &mut slots {
            if let Some((handle, due)) = slot.running.take_if(|(h, _)| h.is_finished()) {
                // Finished: awaiting it returns at once.
                let ok = handle.await.unwrap_or(false);
                slot.failures = if ok { 0 } else { slot.failures + 1 };
                slot.retry = None;
                if !ok {
                    let at = now + retry.delay(slot.failures);
                    if at < slot.next_run {
                        slot.retry = Some((at, due));
                        board.update(slot.job.name, |s| s.next_run = Some(at));
                    }
                }
            }
            if slot.running.is_none() && now < slot.next_run {
                if let Some((_, due)) = slot.retry.filter(|(at, _)| now >= *at) {
                    slot.retry = None;
                    tracing::debug!(
                        JOB = slot.job.name,
                        failures = slot.failures,
                        "retrying the failed tick"
                    );
                    let handle = start_tick(&slot.job, due, slot.next_run, &board);
                    slot.running = Some((handle, due));
                }
                continue;
            }
            if now < slot.next_run {
                continue;
            }
            // The regular run supersedes a pending retry.
            slot.retry = None;
            let due = slot.next_run;
            slot.next_run = slot.job.schedule.next_run(due, now);
            let next_run = slot.next_run;
            if slot.running.is_some() {
                tracing::warn!(
                    JOB = slot.job.name,
                    "previous tick still running; skipping the run due now"
                );
                board.update(slot.job.name, |s| s.next_run = Some(next_run));
                continue;
            }
            slot.running = Some((start_tick(&slot.job, due, next_run, &board), due));
        }

        let earliest = slots
            .iter()
            .flat_map(|s| [Some(s.next_run), s.retry.map(|(at, _)| at)])
            .flatten()
            .min();
        let sleep = earliest
            .and_then(|t| t.duration_since(crate::clock::now()).ok())
            .unwrap_or(Duration::ZERO)
            .min(MAX_SLEEP);
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(sleep) => {}
        }
    }

    // Let running ticks finish (they may be mid-write); abandon them after DRAIN.
    let deadline = tokio::time::Instant::now() + DRAIN;
    for slot in slots {
        if let Some((handle, _)) = slot.running {
            let abort = handle.abort_handle();
            if tokio::time::timeout_at(deadline, handle).await.is_err() {
                tracing::warn!(
                    JOB = slot.job.name,
                    "tick did not finish in time for shutdown; abandoned"
                );
                abort.abort();
            }
        }
    }
}

/// Spawns one tick of `job` and records its outcome on `board`.
fn start_tick(
    job: &ScheduledJob,
    due: SystemTime,
    next_run: SystemTime,
    board: &StatusBoard,
) -> JoinHandle<bool> {
    let name = job.name;
    board.update(name, |s| {
        s.running = true;
        s.last_run = Some(crate::clock::now());
        s.next_run = Some(next_run);
    });
    let span = tracing::info_span!("job", JOB = name);
    let tick = tokio::spawn((job.tick)(due).instrument(span.clone()));
    let board = board.clone();
    let failing = job.failing.clone();
    tokio::spawn(async move {
        let started = Instant::now();
        let outcome = match tick.await {
            Ok(result) => result.map_err(|e| format!("{e:#}")),
            Err(e) if e.is_panic() => {
                Err(format!("tick panicked: {}", panic_message(e.into_panic())))
            }
            Err(_) => Err("tick was cancelled".to_string()),
        };
        let elapsed = started.elapsed();
        let duration_ms = elapsed.as_millis() as u64;
        let mut failing = match failing.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        span.in_scope(|| match &outcome {
            Ok(summary) => {
                if let Some((failures, lasting)) = failing.recovered(Instant::now()) {
                    tracing::info!(
                        "recovered: {failures} ticks failed over {}",
                        lasting_text(lasting)
                    );
                }
                tracing::info!(duration_ms, "{summary}")
            }
            Err(error) => match failing.failed_because(Instant::now(), error) {
                Say::First => tracing::error!(
                    duration_ms,
                    "tick failed: {error} (retried with backoff; while this lasts, one summary every {})",
                    lasting_text(SUMMARY_EVERY)
                ),
                Say::Summary { failures, lasting } => tracing::error!(
                    duration_ms,
                    "still failing: {failures} ticks failed over {}; last: {error}",
                    lasting_text(lasting)
                ),
                Say::Quiet => tracing::debug!(duration_ms, "tick failed again: {error}"),
            },
        });
        drop(failing);
        let ok = outcome.is_ok();
        board.update(name, |s| {
            s.running = false;
            s.runs += 1;
            s.last_duration = Some(elapsed);
            s.total_duration += elapsed;
            match outcome {
                Ok(summary) => {
                    s.last_ok = Some(true);
                    s.last_summary = Some(summary);
                    s.consecutive_failures = 0;
                }
                Err(error) => {
                    s.last_ok = Some(false);
                    s.last_error = Some(error);
                    s.last_error_at = Some(crate::clock::now());
                    s.failures += 1;
                    s.consecutive_failures += 1;
                }
            }
        });
        ok
    })
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::liveness::Liveness;

    /// Counts ticks and panics on the second one.
    struct Flaky {
        ticks: Arc<std::sync::atomic::AtomicU32>,
    }

    impl Job for Flaky {
        const NAME: &'static str = "flaky";
        fn schedule(&self) -> Schedule {
            Schedule::Every(Duration::from_millis(50))
        }
        async fn tick(&mut self, _now: SystemTime) -> anyhow::Result<String> {
            let n = self.ticks.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n == 2 {
                panic!("boom on purpose");
            }
            Ok(format!("tick {n}"))
        }
    }

    #[tokio::test]
    async fn a_panicking_tick_is_recorded_and_the_job_goes_on() {
        let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let board = StatusBoard::default();
        let liveness = Liveness::new(None);
        let (trigger, shutdown) = crate::shutdown::channel();
        let jobs = vec![ScheduledJob::new(Flaky {
            ticks: ticks.clone(),
        })];
        let handle = tokio::spawn(run(
            jobs,
            board.clone(),
            liveness.register("scheduler", Duration::from_secs(5)),
            shutdown,
            Retry::DEFAULT,
        ));
        let deadline = Instant::now() + Duration::from_secs(20);
        while ticks.load(std::sync::atomic::Ordering::SeqCst) < 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        trigger.trigger();
        handle.await.expect("scheduler ends cleanly");
        let status = board.snapshot()["flaky"].clone();
        assert!(status.runs >= 3, "{status:?}");
        assert_eq!(status.failures, 1);
        assert!(status
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("boom on purpose"));
        assert_eq!(status.consecutive_failures, 0, "later ticks succeeded");
    }

    /// Fails its first two ticks; runs hourly.
    struct FailsTwice {
        dues: Arc<std::sync::Mutex<Vec<SystemTime>>>,
    }

    impl Job for FailsTwice {
        const NAME: &'static str = "fails_twice";
        fn schedule(&self) -> Schedule {
            Schedule::Every(Duration::from_secs(3600))
        }
        async fn tick(&mut self, due: SystemTime) -> anyhow::Result<String> {
            let n = match self.dues.lock() {
                Ok(mut dues) => {
                    dues.push(due);
                    dues.len()
                }
                Err(_) => 0,
            };
            anyhow::ensure!(n > 2, "Binance unreachable (attempt {n})");
            Ok("recovered".into())
        }
    }

    #[tokio::test]
    async fn a_failed_tick_is_retried_within_seconds_for_the_same_slot() {
        let dues = Arc::new(std::sync::Mutex::new(Vec::new()));
        let board = StatusBoard::default();
        let liveness = Liveness::new(None);
        let (trigger, shutdown) = crate::shutdown::channel();
        let retry = Retry {
            first: Duration::from_millis(100),
            max: Duration::from_millis(200),
        };
        let handle = tokio::spawn(run(
            vec![ScheduledJob::new(FailsTwice { dues: dues.clone() })],
            board.clone(),
            liveness.register("scheduler", Duration::from_secs(5)),
            shutdown,
            retry,
        ));
        let deadline = Instant::now() + Duration::from_secs(20);
        while board
            .snapshot()
            .get("fails_twice")
            .is_none_or(|s| s.runs < 3)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        trigger.trigger();
        handle.await.expect("scheduler ends cleanly");
        let status = board.snapshot()["fails_twice"].clone();
        assert_eq!((status.runs, status.failures), (3, 2), "{status:?}");
        assert_eq!(status.consecutive_failures, 0);
        let dues = dues.lock().map(|d| d.clone()).unwrap_or_default();
        assert!(
            dues.windows(2).all(|w| w[0] == w[1]),
            "retries run for the failed slot: {dues:?}"
        );
    }

    #[test]
    fn retry_delays_double_up_to_the_cap() {
        let delays: Vec<u64> = (1..=6).map(|n| Retry::DEFAULT.delay(n).as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 30, 30, 30]);
        assert_eq!(Retry::DEFAULT.delay(u32::MAX).as_secs(), 30);
    }
}
