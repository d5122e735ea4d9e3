//! Liveness of the critical loops, and the watchdog that depends on it.
//!
//! Each critical loop (scheduler, HTTP server, WebSocket reader, delivery)
//! registers a [`Heartbeat`] with a deadline and beats it whenever it makes
//! progress. The watchdog task pings systemd only while every loop has beaten
//! within its deadline, so a wedged loop stops the pings and systemd restarts
//! the service. A free-running ping thread would prove nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::shutdown::Shutdown;

/// One critical loop's progress record.
#[derive(Debug)]
struct LoopEntry {
    /// Loop name, as shown in `/health` and the log.
    name: &'static str,
    /// Longest allowed gap between two beats.
    deadline: Duration,
    /// Milliseconds since [`Liveness::started`] of the last beat.
    last_beat_ms: AtomicU64,
    /// Set when the test switch wedges this loop.
    wedge_after: Option<Duration>,
    /// Set once the wedge took effect, so it is logged once.
    wedged: AtomicBool,
}

/// The registry of critical loops.
#[derive(Debug, Clone)]
pub struct Liveness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The time every beat is measured from.
    started: Instant,
    /// Registered loops.
    loops: Mutex<Vec<Arc<LoopEntry>>>,
    /// The loop named by `VOLSPIKE_WEDGE`, and after how long it wedges.
    wedge: Option<(String, Duration)>,
}

/// A critical loop's handle for reporting progress.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    entry: Arc<LoopEntry>,
    started: Instant,
}

/// The state of one loop, for `/health`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoopState {
    /// Loop name.
    pub name: &'static str,
    /// Seconds since its last beat.
    pub seconds_since_progress: f64,
    /// Its deadline in seconds.
    pub deadline_seconds: f64,
    /// Whether it beat within its deadline.
    pub alive: bool,
}

/// Parses the test switch `VOLSPIKE_WEDGE=<loop>[@<seconds>]` (default 5 s,
/// so READY and the first pings are seen before the wedge).
pub fn parse_wedge(spec: &str) -> (String, Duration) {
    match spec.split_once('@') {
        Some((name, secs)) => (
            name.to_string(),
            Duration::from_secs_f64(secs.parse().unwrap_or(5.0)),
        ),
        None => (spec.to_string(), Duration::from_secs(5)),
    }
}

impl Liveness {
    /// A registry; `wedge` names a loop to wedge on purpose (tests only).
    pub fn new(wedge: Option<(String, Duration)>) -> Liveness {
        Liveness {
            inner: Arc::new(Inner {
                started: Instant::now(),
                loops: Mutex::new(Vec::new()),
                wedge,
            }),
        }
    }

    /// Registers a critical loop that must beat at least every `deadline`.
    pub fn register(&self, name: &'static str, deadline: Duration) -> Heartbeat {
        let wedge_after = match &self.inner.wedge {
            Some((wedged, after)) if wedged == name => Some(*after),
            _ => None,
        };
        let entry = Arc::new(LoopEntry {
            name,
            deadline,
            last_beat_ms: AtomicU64::new(self.now_ms()),
            wedge_after,
            wedged: AtomicBool::new(false),
        });
        if let Ok(mut loops) = self.inner.loops.lock() {
            loops.push(entry.clone());
        }
        Heartbeat {
            entry,
            started: self.inner.started,
        }
    }

    fn now_ms(&self) -> u64 {
        self.inner.started.elapsed().as_millis() as u64
    }

    /// Every loop's state, in registration order.
    pub fn states(&self) -> Vec<LoopState> {
        let now = self.now_ms();
        let loops = match self.inner.loops.lock() {
            Ok(loops) => loops.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        loops
            .iter()
            .map(|l| {
                let since = Duration::from_millis(
                    now.saturating_sub(l.last_beat_ms.load(Ordering::Relaxed)),
                );
                LoopState {
                    name: l.name,
                    seconds_since_progress: since.as_secs_f64(),
                    deadline_seconds: l.deadline.as_secs_f64(),
                    alive: since <= l.deadline,
                }
            })
            .collect()
    }

    /// Names of loops past their deadline; empty when all are alive.
    pub fn stalled(&self) -> Vec<&'static str> {
        self.states()
            .into_iter()
            .filter(|s| !s.alive)
            .map(|s| s.name)
            .collect()
    }
}

impl Heartbeat {
    /// Whether the test switch has wedged this loop by now (logged once).
    fn wedged_now(&self) -> bool {
        match self.entry.wedge_after {
            Some(after) if self.started.elapsed() >= after => {
                if !self.entry.wedged.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        loop_name = self.entry.name,
                        "VOLSPIKE_WEDGE: wedging this loop on purpose"
                    );
                }
                true
            }
            _ => false,
        }
    }

    fn record(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.entry.last_beat_ms.store(now, Ordering::Relaxed);
    }

    /// Records progress of an async loop. When the test switch wedges this
    /// loop, the call never returns: the loop really stops, as a hung one would.
    pub async fn beat(&self) {
        if self.wedged_now() {
            std::future::pending::<()>().await;
        }
        self.record();
    }

    /// Records progress of a thread loop; wedging parks the thread for good.
    pub fn beat_blocking(&self) {
        if self.wedged_now() {
            loop {
                std::thread::park();
            }
        }
        self.record();
    }
}

/// Pings systemd's watchdog every `interval` while every loop is alive.
///
/// `interval` is half of `WATCHDOG_USEC`. When a loop stalls, the pings stop
/// and the log names the loop, so the journal shows why systemd restarted us.
pub async fn watchdog_task(liveness: Liveness, interval: Duration, mut shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_stalled = false;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = ticker.tick() => {}
        }
        let stalled = liveness.stalled();
        if stalled.is_empty() {
            if was_stalled {
                tracing::info!("every critical loop is alive again; watchdog pings resume");
            }
            crate::systemd::notify::watchdog();
            was_stalled = false;
        } else if !was_stalled {
            tracing::error!(loops = ?stalled, "critical loop stalled: withholding watchdog pings so systemd restarts the service");
            was_stalled = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_loop_past_its_deadline_is_stalled() {
        let liveness = Liveness::new(None);
        let fast = liveness.register("fast", Duration::from_secs(60));
        let slow = liveness.register("slow", Duration::from_millis(1));
        fast.beat().await;
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(liveness.stalled(), vec!["slow"]);
        slow.beat().await;
        assert!(liveness.states().iter().any(|s| s.name == "slow"));
    }

    #[tokio::test]
    async fn the_wedge_switch_stops_the_named_loop() {
        let liveness = Liveness::new(Some(parse_wedge("scheduler@0")));
        let beat = liveness.register("scheduler", Duration::from_secs(60));
        let wedged = tokio::time::timeout(Duration::from_millis(100), beat.beat()).await;
        assert!(wedged.is_err(), "a wedged loop's beat never returns");
        let other = liveness.register("http", Duration::from_secs(60));
        let free = tokio::time::timeout(Duration::from_millis(100), other.beat()).await;
        assert!(free.is_ok());
    }

    #[test]
    fn wedge_spec_parses() {
        assert_eq!(
            parse_wedge("http@2.5"),
            ("http".to_string(), Duration::from_millis(2500))
        );
        assert_eq!(
            parse_wedge("scheduler"),
            ("scheduler".to_string(), Duration::from_secs(5))
        );
    }
}
