//! The delivery loop of one backend: take the oldest ready post, send it,
//! act on the outcome, back off on failure. A critical loop: it beats its
//! heartbeat every iteration, waits at most [`IDLE_WAIT`] between beats, and
//! every request has a timeout, so a wedged loop is visible to the watchdog.
//!
//! The rules (also in `docs/delivery.md`):
//! - No answer (connection refused, timeout): the backend is unreachable,
//!   the whole queue waits (jittered backoff, capped at 30 s by default).
//! - 5xx / 429 for a post: that post waits on its own backoff while later
//!   posts, even on the same route, go on; when a second post of the same
//!   route fails too without a success in between, the route waits as well.
//!   A post answered 5xx [`MAX_STRIKES`] times while the backend accepted
//!   other posts in between is refused for good: it becomes a dead letter.
//! - 401 / 403: the key is wrong; nothing is dropped, delivery to this
//!   backend pauses (`/health`: "backend rejects the API key") and probes
//!   with its oldest post on the backoff until a 2xx.
//! - Any other 4xx: the post is a dead letter at once.
//! - A post is marked "in flight" before it is sent, when its kind can be
//!   checked; if its answer is lost (timeout, crash), the backend is asked
//!   whether it has it before it is sent again ([`super::recheck`]).
//! - Disk errors never cause a resend: see [`Queue::delivered`]; the files
//!   are retried by [`Queue::flush`] on the backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::client::{BackendClient, SendOutcome};
use super::queue::{Queue, StoredPost};
use super::recheck::{self, Recheck};
use crate::backoff::BackoffPolicy;
use crate::clock::unix_ms;
use crate::shutdown::Shutdown;
use crate::systemd::liveness::Heartbeat;

/// Longest idle wait between two beats.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How long an in-flight request may finish after shutdown started, so its
/// outcome is recorded (else it stays on disk and is resent next start).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// 5xx answers to one post, each after the backend accepted another post,
/// before that post is set aside as a dead letter.
pub(crate) const MAX_STRIKES: u32 = 5;
/// How often replays asked by `volspike outbox retry` are picked up.
const RETRY_SCAN_EVERY: Duration = Duration::from_secs(5);

/// Consecutive failures and the earliest next attempt.
#[derive(Debug, Clone, Copy)]
struct Hold {
    /// Failures in a row.
    failures: u32,
    /// No attempt before this.
    until: Instant,
}

impl Hold {
    /// Records one more failure on `slot` (created when empty); returns the wait.
    fn fail(slot: &mut Option<Hold>, policy: &BackoffPolicy, now: Instant) -> Duration {
        let b = slot.get_or_insert(Hold {
            failures: 0,
            until: now,
        });
        b.failures = b.failures.saturating_add(1);
        let delay = policy.delay(b.failures);
        b.until = now + delay;
        delay
    }

    /// Whether `slot` holds attempts back at `now`.
    fn holds(slot: &Option<Hold>, now: Instant) -> bool {
        slot.is_some_and(|b| b.until > now)
    }
}

/// One post's own retry state (in memory: a restart forgives).
#[derive(Debug, Clone, Copy)]
struct PostRetry {
    /// Its backoff.
    backoff: Option<Hold>,
    /// 5xx answers that came after the backend accepted some other post.
    strikes: u32,
    /// The backend's success count at this post's last failure.
    successes_at_failure: u64,
}

/// Everything the loop remembers between iterations.
#[derive(Debug, Default)]
struct Gates {
    /// Whole backend: no answer at all.
    unreachable: Option<Hold>,
    /// Whole backend: 401/403.
    key_refused: Option<Hold>,
    /// Whole backend: a file operation needed before sending failed.
    disk: Option<Hold>,
    /// Retrying the file changes a failing disk refused.
    flush: Option<Hold>,
    /// Per route: two posts in a row failed there.
    routes: HashMap<String, RouteRetry>,
    /// Per post.
    posts: HashMap<u64, PostRetry>,
    /// Posts accepted since start (evidence the backend works).
    successes: u64,
}

/// One route's retry state.
#[derive(Debug, Clone, Copy, Default)]
struct RouteRetry {
    /// Distinct posts that failed in a row on this route.
    failures: u32,
    /// The post that failed last (its own repeats do not count again).
    last_failed: Option<u64>,
    /// Set from the second distinct failing post in a row.
    backoff: Option<Hold>,
}

impl Gates {
    /// Whether the whole backend waits at `now`.
    fn backend_waits(&self, now: Instant) -> bool {
        Hold::holds(&self.unreachable, now)
            || Hold::holds(&self.key_refused, now)
            || Hold::holds(&self.disk, now)
    }

    /// Whether `post` may be attempted at `now`.
    fn ready(&self, post: &StoredPost, now: Instant) -> bool {
        !self
            .routes
            .get(&post.path)
            .is_some_and(|r| Hold::holds(&r.backoff, now))
            && !self
                .posts
                .get(&post.seq)
                .is_some_and(|p| Hold::holds(&p.backoff, now))
    }

    /// When the next wait ends (or `now + IDLE_WAIT`).
    fn wake_at(&self, now: Instant) -> Instant {
        let mut at = now + IDLE_WAIT;
        let backend = [
            &self.unreachable,
            &self.key_refused,
            &self.disk,
            &self.flush,
        ];
        let routes = self.routes.values().map(|r| &r.backoff);
        let posts = self.posts.values().map(|p| &p.backoff);
        for b in backend.into_iter().chain(routes).chain(posts).flatten() {
            if b.until > now {
                at = at.min(b.until);
            }
        }
        at
    }

    /// A 2xx: the backend, the route and the post are fine.
    fn succeeded(&mut self, post: &StoredPost) {
        self.unreachable = None;
        self.key_refused = None;
        self.successes += 1;
        self.routes.remove(&post.path);
        self.posts.remove(&post.seq);
    }

    /// A 5xx/429 for `post`: backs it off (and its route from the second
    /// failing post in a row); returns the post's wait and its strikes.
    fn post_failed(
        &mut self,
        post: &StoredPost,
        policy: &BackoffPolicy,
        now: Instant,
    ) -> (Duration, u32) {
        self.unreachable = None;
        let route = self.routes.entry(post.path.clone()).or_default();
        // One post failing again says nothing about the route: only a
        // second, different post failing makes the whole route wait.
        if route.last_failed != Some(post.seq) {
            route.failures += 1;
            route.last_failed = Some(post.seq);
        }
        if route.failures >= 2 {
            Hold::fail(&mut route.backoff, policy, now);
        }
        let successes = self.successes;
        let retry = self.posts.entry(post.seq).or_insert(PostRetry {
            backoff: None,
            strikes: 0,
            successes_at_failure: successes,
        });
        if successes > retry.successes_at_failure {
            retry.strikes += 1;
        }
        retry.successes_at_failure = successes;
        let delay = Hold::fail(&mut retry.backoff, policy, now);
        (delay, retry.strikes)
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
    let mut gates = Gates::default();
    let mut next_retry_scan = Instant::now() + RETRY_SCAN_EVERY;
    loop {
        heartbeat.beat().await;
        if shutdown.is_triggered() {
            break;
        }
        let now = Instant::now();
        if now >= next_retry_scan {
            next_retry_scan = now + RETRY_SCAN_EVERY;
            let q = queue.clone();
            let _ = tokio::task::spawn_blocking(move || q.adopt_retries(now_ms())).await;
            // Posts shed, coalesced or set aside need no retry state.
            gates.posts.retain(|seq, _| queue.is_pending(*seq));
        }
        if queue.has_unwritten() && !Hold::holds(&gates.flush, now) {
            let q = queue.clone();
            match blocking(move || q.flush(now_ms())).await {
                Ok(()) => gates.flush = None,
                Err(e) => {
                    let delay = Hold::fail(&mut gates.flush, &policy, now);
                    tracing::warn!(backend, error = %e, retry_in_ms = delay.as_millis() as u64, "outbox files still cannot be written");
                }
            }
        }
        let next = if gates.backend_waits(now) {
            None
        } else {
            queue.next(|p| gates.ready(p, now))
        };
        let Some((post, in_flight)) = next else {
            tokio::select! {
                _ = shutdown.wait() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(gates.wake_at(now)) => {}
            }
            continue;
        };

        if in_flight && recheck::checkable(post.kind) {
            let c = client.clone();
            let p = post.clone();
            let answer = blocking(move || Ok(recheck::recheck(&c, &p)))
                .await
                .unwrap_or_else(|e| Recheck::Unreachable(e.to_string()));
            match answer {
                Recheck::Found => {
                    tracing::info!(
                        backend,
                        "the backend already has {}; not sending it again",
                        post.label
                    );
                    gates.succeeded(&post);
                    record_delivered(&queue, &post, &mut gates, &policy).await;
                    continue;
                }
                Recheck::Send => {}
                Recheck::Unreachable(reason) => {
                    let delay = Hold::fail(&mut gates.unreachable, &policy, Instant::now());
                    tracing::warn!(
                        backend,
                        retry_in_ms = delay.as_millis() as u64,
                        "cannot check whether {} arrived ({reason}); will retry",
                        post.label
                    );
                    queue.retried(format!("{}: {reason}", post.label));
                    continue;
                }
            }
        } else if recheck::checkable(post.kind) {
            let q = queue.clone();
            let p = post.clone();
            if let Err(e) = blocking(move || q.mark_in_flight(&p)).await {
                let delay = Hold::fail(&mut gates.disk, &policy, Instant::now());
                tracing::error!(backend, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot mark {} as in flight; not sending until the disk takes writes", post.label);
                continue;
            }
            gates.disk = None;
        }

        let outcome = match send(&client, &queue, &post, &mut shutdown).await {
            Some(Attempt::Answered(outcome)) => outcome,
            Some(Attempt::Superseded) => {
                tracing::debug!(backend, post = %post.label, "a newer state replaced it before it was sent");
                continue;
            }
            None => {
                tracing::info!(backend, post = %post.label, "stopping with a request in flight; it stays queued");
                break;
            }
        };
        let now = Instant::now();
        match outcome {
            SendOutcome::Delivered { status } => {
                gates.succeeded(&post);
                if queue.is_paused() {
                    tracing::info!(
                        backend,
                        "the backend accepts the API key again; delivery resumed"
                    );
                    queue.set_paused(None);
                }
                if post.kind.is_alert() {
                    tracing::info!(backend, status, "delivered {}", post.label);
                } else {
                    tracing::debug!(backend, status, "delivered {}", post.label);
                }
                record_delivered(&queue, &post, &mut gates, &policy).await;
            }
            SendOutcome::Rejected { status, .. } if status == 401 || status == 403 => {
                queue.clear_in_flight(&post);
                key_refused(&queue, &post, status, &mut gates, &policy);
            }
            SendOutcome::Rejected { status, body } => {
                gates.unreachable = None;
                gates.posts.remove(&post.seq);
                tracing::error!(
                    backend,
                    status,
                    route = %post.path,
                    answer = %body,
                    "backend refused {}; kept as a dead letter (volspike outbox list)",
                    post.label
                );
                let reason = format!("HTTP {status} for {}: {body}", post.label);
                dead_letter(&queue, &post, reason, &mut gates, &policy).await;
            }
            SendOutcome::Retry {
                status: None,
                reason,
            } => {
                // The answer is lost: the mark stays, the next attempt checks first.
                let delay = Hold::fail(&mut gates.unreachable, &policy, now);
                will_retry(&queue, backend, &post, delay, &reason);
            }
            SendOutcome::Retry {
                status: Some(status),
                reason,
            } => {
                queue.clear_in_flight(&post);
                let (delay, strikes) = gates.post_failed(&post, &policy, now);
                if status != 429 && strikes >= MAX_STRIKES {
                    gates.posts.remove(&post.seq);
                    tracing::error!(backend, status, route = %post.path, "{} failed {strikes} times while other posts went through ({reason}); kept as a dead letter", post.label);
                    let reason =
                        format!("{reason} ({strikes} times while other posts were accepted)");
                    dead_letter(&queue, &post, reason, &mut gates, &policy).await;
                    continue;
                }
                will_retry(&queue, backend, &post, delay, &reason);
            }
        }
    }
    tracing::info!(backend, "delivery stopped; undelivered posts stay on disk");
}

/// Logs and counts a failed attempt that `post` will retry after `delay`.
fn will_retry(queue: &Queue, backend: &str, post: &StoredPost, delay: Duration, reason: &str) {
    tracing::warn!(
        backend,
        route = %post.path,
        retry_in_ms = delay.as_millis() as u64,
        "{} not delivered ({reason}); will retry",
        post.label
    );
    queue.retried(format!("{}: {reason}", post.label));
}

/// Unix ms now.
fn now_ms() -> u64 {
    unix_ms(std::time::SystemTime::now())
}

/// 401/403: keep every post, pause the backend, say why.
fn key_refused(
    queue: &Queue,
    post: &StoredPost,
    status: u16,
    gates: &mut Gates,
    policy: &BackoffPolicy,
) {
    gates.unreachable = None;
    let delay = Hold::fail(&mut gates.key_refused, policy, Instant::now());
    let reason = format!(
        "backend rejects the API key (HTTP {status} on {}); posts are kept, next try in {} s",
        post.path,
        delay.as_secs().max(1)
    );
    if !queue.is_paused() {
        tracing::error!(backend = queue.name(), status, "backend rejects the API key: delivery paused, nothing dropped; check this backend's key");
    }
    queue.set_paused(Some(reason.clone()));
    queue.retried(reason);
}

/// Records a delivery; a disk error is logged and its files retried later.
async fn record_delivered(
    queue: &Arc<Queue>,
    post: &Arc<StoredPost>,
    gates: &mut Gates,
    policy: &BackoffPolicy,
) {
    let q = queue.clone();
    let p = post.clone();
    if let Err(e) = blocking(move || q.delivered(&p, now_ms())).await {
        let delay = Hold::fail(&mut gates.flush, policy, Instant::now());
        tracing::error!(backend = queue.name(), error = %e, retry_in_ms = delay.as_millis() as u64, "{} delivered, but the outbox files cannot be updated; it is not sent again", post.label);
    }
}

/// Sets a post aside; on a disk error it stays pending and the backend waits.
async fn dead_letter(
    queue: &Arc<Queue>,
    post: &Arc<StoredPost>,
    reason: String,
    gates: &mut Gates,
    policy: &BackoffPolicy,
) {
    let q = queue.clone();
    let p = post.clone();
    if let Err(e) = blocking(move || q.dead_letter(&p, reason, now_ms())).await {
        let delay = Hold::fail(&mut gates.disk, policy, Instant::now());
        tracing::error!(backend = queue.name(), error = %e, retry_in_ms = delay.as_millis() as u64, "cannot keep {} as a dead letter; it stays queued", post.label);
    }
}

/// Runs a file operation on the blocking pool.
async fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(op)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// What one send came to.
enum Attempt {
    /// The backend answered, or the request failed: see the outcome.
    Answered(SendOutcome),
    /// A "latest state" post that a newer one replaced between being picked
    /// and the request: nothing was sent (the newer one will be).
    Superseded,
}

/// Sends `post` on a blocking thread; `None` when shutdown came first and
/// the request did not finish within the grace period.
async fn send(
    client: &BackendClient,
    queue: &Arc<Queue>,
    post: &Arc<StoredPost>,
    shutdown: &mut Shutdown,
) -> Option<Attempt> {
    let client = client.clone();
    let queue = queue.clone();
    let job = post.clone();
    let mut handle = tokio::task::spawn_blocking(move || {
        // The blocking thread may start well after the post was picked
        // (a busy pool): a coalesced post replaced meanwhile must not
        // reach the backend after, or beside, its newer state.
        if job.coalesce.is_some() && !queue.is_pending(job.seq) {
            return Attempt::Superseded;
        }
        Attempt::Answered(client.post_json(&job.path, &job.body, job.auth))
    });
    let joined = tokio::select! {
        joined = &mut handle => joined,
        _ = shutdown.wait() => tokio::time::timeout(SHUTDOWN_GRACE, &mut handle).await.ok()?,
    };
    Some(joined.unwrap_or_else(|e| {
        Attempt::Answered(SendOutcome::Retry {
            status: None,
            reason: format!("the request task failed: {e}"),
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::client::Auth;
    use crate::backend::kind::Kind;

    fn post(seq: u64, path: &str) -> StoredPost {
        StoredPost {
            seq,
            enqueued_ms: 0,
            kind: Kind::UserAlertChecked,
            path: path.into(),
            auth: Auth::BodyField,
            key: None,
            dedup_until_ms: 0,
            coalesce: None,
            label: format!("post {seq}"),
            body: serde_json::Value::Null,
        }
    }

    #[test]
    fn one_failing_post_waits_alone_and_strikes_only_while_others_succeed() {
        let policy = BackoffPolicy::default();
        let mut gates = Gates::default();
        let now = Instant::now();
        let (poison, other) = (post(1, "/checked"), post(2, "/checked"));
        // The same post failing again and again never holds the route.
        for _ in 0..4 {
            let (_, strikes) = gates.post_failed(&poison, &policy, now);
            assert_eq!(strikes, 0, "no success in between: not its fault yet");
        }
        assert!(!gates.ready(&poison, now));
        assert!(gates.ready(&other, now), "the route still flows");
        // Each failure after some other post went through is a strike.
        for expected in 1..=MAX_STRIKES {
            gates.succeeded(&other);
            let (_, strikes) = gates.post_failed(&poison, &policy, now);
            assert_eq!(strikes, expected);
        }
        // Two different posts failing in a row: the route itself waits.
        let mut gates = Gates::default();
        gates.post_failed(&poison, &policy, now);
        gates.post_failed(&other, &policy, now);
        assert!(!gates.ready(&post(3, "/checked"), now));
        assert!(gates.ready(&post(4, "/elsewhere"), now));
    }
}
