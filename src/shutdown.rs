//! Shutdown handed to every loop explicitly (as in mini-redis).
//!
//! One [`ShutdownTrigger`] is held by `run`; every loop holds a cheap clone of
//! [`Shutdown`]. Async loops `select!` on [`Shutdown::wait`]; thread loops
//! (the HTTP server, the WebSocket reader) poll [`Shutdown::is_triggered`]
//! between bounded blocking calls.

use tokio::sync::watch;

/// Fires shutdown for every [`Shutdown`] cloned from the same channel.
#[derive(Debug)]
pub struct ShutdownTrigger {
    /// `true` once shutdown started.
    tx: watch::Sender<bool>,
}

/// Tells a loop that the process is stopping.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Becomes `true` once, never back.
    rx: watch::Receiver<bool>,
}

/// A new trigger and its first listener.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Starts shutdown; idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

impl Shutdown {
    /// Whether shutdown has started (for thread loops).
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Completes once shutdown has started (for async loops).
    pub async fn wait(&mut self) {
        // An error means the trigger is gone, which only happens when `run`
        // itself is unwinding: treat it as shutdown too.
        let _ = self.rx.wait_for(|stopping| *stopping).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_sees_the_trigger() {
        let (trigger, shutdown) = channel();
        let mut a = shutdown.clone();
        assert!(!shutdown.is_triggered());
        trigger.trigger();
        a.wait().await;
        assert!(shutdown.is_triggered());
    }
}
