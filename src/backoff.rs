//! Jittered exponential backoff, the one retry rhythm of the appliance: the
//! funding and kline streams reconnect on it and backend delivery retries on
//! it. A leaf module: it imports nothing of the crate, so both sides use it
//! without importing each other.

use std::time::Duration;

/// Exponential backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Wait after the first failure.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    /// 1 s doubling to 30 s: a backend that comes back is drained within
    /// about a minute, and a refused key is probed twice a minute.
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl BackoffPolicy {
    /// The wait after `failures` consecutive failures (≥ 1): doubling from
    /// `initial`, capped at `max`, then jittered into [½, 1] of that so
    /// restarted appliances (and many clients after a Binance outage) do not
    /// retry in lockstep.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let full = self.initial.saturating_mul(1u32 << doublings).min(self.max);
        full.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// A backoff that counts its own failures: the n-th delay is drawn from
/// `[d/2, d]` with `d = min * 2^n` capped at `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The bounds.
    policy: BackoffPolicy,
    /// Delays handed out since the last reset.
    failures: u32,
}

impl Backoff {
    /// A fresh backoff from `min` doubling to `max` (at least `min`).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            policy: BackoffPolicy {
                initial: min,
                max: max.max(min),
            },
            failures: 0,
        }
    }

    /// The next delay; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.delay(self.failures)
    }

    /// Back to the first delay, after a healthy connection.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut caps = Vec::new();
        for _ in 0..9 {
            let d = b.next_delay();
            caps.push(d);
        }
        let expected = [1, 2, 4, 8, 16, 32, 60, 60, 60];
        for (d, cap) in caps.iter().zip(expected) {
            let cap = Duration::from_secs(cap);
            assert!(
                *d >= cap / 2 && *d <= cap,
                "{d:?} not within [{:?}, {cap:?}]",
                cap / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let policy = BackoffPolicy::default();
        for _ in 0..50 {
            let first = policy.delay(1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let fourth = policy.delay(4);
            assert!(fourth >= Duration::from_secs(4) && fourth <= Duration::from_secs(8));
            let late = policy.delay(100);
            assert!(late >= Duration::from_secs(15) && late <= Duration::from_secs(30));
        }
    }
}
