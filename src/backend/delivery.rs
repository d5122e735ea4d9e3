//! The delivery loop of one backend: take the oldest ready post, send it,
//! act on the outcome, back off on failure. A critical loop: it beats its
//! heartbeat every iteration, waits at most [`IDLE_WAIT`] between beats, and
//! every request has a timeout, so a wedged loop is visible to the watchdog.
//!
//! Backoff has two levels. No answer at all (connection refused, timeout)
//! means the backend is unreachable: the whole queue waits. An answer that
//! asks for a retry (5xx, 429) concerns one route: only posts to that route
//! wait (their order kept), so one broken route cannot hold alerts back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::client::{BackendClient, SendOutcome};
use super::queue::{Queue, StoredPost};
use crate::clock::unix_ms;
use crate::shutdown::Shutdown;
use crate::systemd::liveness::Heartbeat;

/// Longest idle wait between two beats.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How long an in-flight request may finish after shutdown started, so its
/// outcome is recorded (else it stays on disk and is resent next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Exponential backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Wait after the first failure.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    /// 1 s doubling to 5 min.
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl BackoffPolicy {
    /// The wait after `failures` consecutive failures (≥ 1): doubling from
    /// `initial`, capped at `max`, then jittered into [½, 1] of that so
    /// restarted appliances do not retry in lockstep.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let full = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        full.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// Consecutive failures and the earliest next attempt.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    /// Failures in a row.
    failures: u32,
    /// No attempt before this.
    until: Instant,
}

impl Backoff {
    /// Records one more failure; returns the wait.
    fn fail(&mut self, policy: &BackoffPolicy, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let delay = policy.delay(self.failures);
        self.until = now + delay;
        delay
    }
}

/// Runs until shutdown. `wake` is notified on every enqueue.
pub(crate) async fn run(
    queue: Arc<Queue>,
    client: BackendClient,
    policy: BackoffPolicy,
    wake: Arc<Notify>,
    heartbeat: Heartbeat,
    mut shutdown: Shutdown,
) {
    let backend = queue.name();
    // Whole-backend backoff (unreachable) and per-route backoff (retry answers).
    let mut unreachable: Option<Backoff> = None;
    let mut routes: HashMap<String, Backoff> = HashMap::new();
    loop {
        heartbeat.beat().await;
        if shutdown.is_triggered() {
            break;
        }
        let now = Instant::now();
        let next = match unreachable {
            Some(b) if b.until > now => None,
            _ => queue.next(|path| routes.get(path).is_some_and(|b| b.until > now)),
        };
        let Some(post) = next else {
            // Sleep until the earliest backoff ends, a new post, or IDLE_WAIT.
            let mut wake_at = now + IDLE_WAIT;
            if let Some(b) = unreachable.filter(|b| b.until > now) {
                wake_at = wake_at.min(b.until);
            }
            for b in routes.values().filter(|b| b.until > now) {
                wake_at = wake_at.min(b.until);
            }
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
            continue;
        };

        let Some(outcome) = send(&client, &post, &mut shutdown).await else {
            tracing::info!(backend, post = %post.label, "stopping with a request in flight; it stays queued");
            break;
        };
        let now = Instant::now();
        match outcome {
            SendOutcome::Delivered { status } => {
                unreachable = None;
                routes.remove(&post.path);
                if post.kind.is_alert() {
                    tracing::info!(backend, status, "delivered {}", post.label);
                } else {
                    tracing::debug!(backend, status, "delivered {}", post.label);
                }
                record(&queue, backend, &post, |q, p| {
                    q.delivered(p, unix_ms(std::time::SystemTime::now()))
                })
                .await;
            }
            SendOutcome::Rejected { status, body } => {
                unreachable = None;
                routes.remove(&post.path);
                let hint = if status == 401 || status == 403 {
                    " (check this backend's API key)"
                } else {
                    ""
                };
                tracing::error!(
                    backend,
                    status,
                    route = %post.path,
                    answer = %body,
                    "backend rejected {}{hint}; dropped, not retried",
                    post.label
                );
                let error = format!("HTTP {status} for {}: {body}", post.label);
                record(&queue, backend, &post, |q, p| q.rejected(p, error)).await;
            }
            SendOutcome::Retry { status, reason } => {
                let delay = match status {
                    None => unreachable
                        .get_or_insert(Backoff {
                            failures: 0,
                            until: now,
                        })
                        .fail(&policy, now),
                    Some(_) => {
                        unreachable = None;
                        routes
                            .entry(post.path.clone())
                            .or_insert(Backoff {
                                failures: 0,
                                until: now,
                            })
                            .fail(&policy, now)
                    }
                };
                tracing::warn!(
                    backend,
                    route = %post.path,
                    retry_in_ms = delay.as_millis() as u64,
                    "{} not delivered ({reason}); will retry",
                    post.label
                );
                queue.retried(format!("{}: {reason}", post.label));
            }
        }
    }
    tracing::info!(backend, "delivery stopped; undelivered posts stay on disk");
}

/// Sends `post` on the blocking pool. `None` when shutdown came first and
/// the request did not finish within [`SHUTDOWN_GRACE`].
async fn send(
    client: &BackendClient,
    post: &Arc<StoredPost>,
    shutdown: &mut Shutdown,
) -> Option<SendOutcome> {
    let client = client.clone();
    let job = post.clone();
    let mut handle =
        tokio::task::spawn_blocking(move || client.post_json(&job.path, &job.body, job.auth));
    let joined = tokio::select! {
        joined = &mut handle => joined,
        _ = shutdown.wait() => tokio::time::timeout(SHUTDOWN_GRACE, &mut handle).await.ok()?,
    };
    Some(joined.unwrap_or_else(|e| SendOutcome::Retry {
        status: None,
        reason: format!("the request task failed: {e}"),
    }))
}

/// Applies a file operation to the queue on the blocking pool (it fsyncs).
async fn record(
    queue: &Arc<Queue>,
    backend: &'static str,
    post: &Arc<StoredPost>,
    op: impl FnOnce(&Queue, &StoredPost) -> std::io::Result<()> + Send + 'static,
) {
    let q = queue.clone();
    let p = post.clone();
    let result = tokio::task::spawn_blocking(move || op(&q, &p)).await;
    let error = match result {
        Ok(Ok(())) => return,
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    // The post stays on disk and in memory: it is sent again, which the
    // ledger or the backend's idempotence makes harmless at worst.
    tracing::error!(backend, error = %error, "cannot update the outbox after sending {}", post.label);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let policy = BackoffPolicy::default();
        for _ in 0..50 {
            let first = policy.delay(1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let fourth = policy.delay(4);
            assert!(fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8));
            let late = policy.delay(100);
            assert!(late >= Duration::from_secs(150) && late <= Duration::from_secs(300));
        }
    }
}
