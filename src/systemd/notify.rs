//! `sd_notify` messages: `READY=1`, `STATUS=`, `STOPPING=1`, `WATCHDOG=1`.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op. A failed
//! send is logged, never fatal: the appliance's work matters more than its
//! paperwork, and systemd's own timeouts catch a process that cannot notify.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Tells systemd the service is up, with a first status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Replaces the one-line status shown by `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// Tells systemd a clean stop has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Feeds the watchdog; only called when every critical loop is alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}
