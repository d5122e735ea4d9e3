//! Outbound HTTP: the one place every client (Binance REST, the backend,
//! Telegram) gets its ureq agent from, so timeouts, the user agent, status
//! handling and TLS trust are the same everywhere.

use std::time::Duration;

/// An agent with a whole-request `timeout`, a connect timeout no longer than
/// it, our user agent, up to `idle_per_host` warm connections per host, and
/// statuses as responses rather than errors: every caller needs the status
/// and body of a 4xx/5xx to classify and log it (429 `Retry-After`,
/// Telegram's `retry_after`, the backend's rejection details).
pub fn agent(timeout: Duration, idle_per_host: usize) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
        .max_idle_connections_per_host(idle_per_host.max(1))
        .user_agent(format!("volspike/{}", crate::version::VERSION))
        .build();
    ureq::Agent::new_with_config(config)
}
