//! Outbound HTTP: the one place every client (Binance REST, the backend,
//! Telegram) gets its ureq agent from, so timeouts, the user agent, status
//! handling and TLS trust are the same everywhere; and the WebSocket's TLS
//! config, with the same trust: the system store counts.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// Read buffer of each pooled connection: holds one answer's status line and
/// headers (ureq fails a header that does not fit; Binance's are ~2 KiB) and
/// one TLS record (16 KiB) of plaintext; bodies stream through it.
const INPUT_BUFFER: usize = 32 * 1024;
/// Write buffer of each pooled connection: request line and headers, then
/// the body in chunks of this size.
const OUTPUT_BUFFER: usize = 16 * 1024;

/// An agent with a whole-request `timeout`, a connect timeout no longer than
/// it, our user agent, up to `idle_per_host` warm connections per host, and
/// statuses as responses rather than errors: every caller needs the status
/// and body of a 4xx/5xx to classify and log it (429 `Retry-After`,
/// Telegram's `retry_after`, the backend's rejection details).
pub fn agent(timeout: Duration, idle_per_host: usize) -> ureq::Agent {
    agent_via(timeout, idle_per_host, None)
}

/// [`agent`] whose connections go through `proxy` (an HTTP CONNECT proxy;
/// TLS to the target runs inside the tunnel): Binance REST when a proxy is
/// configured, since Binance refuses some regions.
pub fn agent_via(
    timeout: Duration,
    idle_per_host: usize,
    proxy: Option<ureq::Proxy>,
) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .proxy(proxy)
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
        .max_idle_connections_per_host(idle_per_host.max(1))
        // ureq's 128 KiB defaults are zero-filled, so resident, for every
        // pooled connection: 256 KiB each, 3 MiB for the Binance pool alone.
        .input_buffer_size(INPUT_BUFFER)
        .output_buffer_size(OUTPUT_BUFFER)
        .user_agent(format!("volspike/{}", crate::version::VERSION))
        .tls_config(TlsConfig::builder().root_certs(ureq_roots()).build())
        .build();
    ureq::Agent::new_with_config(config)
}

/// The system's root certificates (`/etc/ssl/certs` on Debian), read once.
/// Empty when the machine has none: callers then use Mozilla's bundled roots.
fn system_roots() -> &'static [rustls::pki_types::CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<rustls::pki_types::CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in loaded.errors.iter().take(3) {
            tracing::warn!("reading the system trust store: {error}");
        }
        loaded.certs
    })
}

/// Roots for ureq: the system store when it has certificates (so a CA an
/// operator installed, e.g. a TLS-inspecting proxy's, counts), else the
/// bundled Mozilla roots.
fn ureq_roots() -> RootCerts {
    let system = system_roots();
    if system.is_empty() {
        return RootCerts::WebPki;
    }
    let certs: Vec<Certificate<'static>> = system
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    RootCerts::Specific(Arc::new(certs))
}

/// A rustls client config for the WebSocket: the system store plus the
/// bundled Mozilla roots, with the process's one crypto provider (ring).
pub fn websocket_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let (added, ignored) = roots.add_parsable_certificates(system_roots().iter().cloned());
            tracing::debug!(added, ignored, "system roots added for the WebSocket");
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.with_root_certificates(roots.clone())
                        .with_no_client_auth()
                })
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(roots)
                        .with_no_client_auth()
                });
            Arc::new(config)
        })
        .clone()
}
