//! The WebSocket link to Binance's `/market` route: how a stream connects
//! (bounded connect and handshake, optional CONNECT proxy, rustls), reads
//! with a short timeout, and closes. Used by the funding stream job
//! ([`crate::jobs::funding_stream`], which owns the run loop and its
//! status) and the kline link; this file holds no loop and no job state.
//!
//! A link is dead when no *data* message arrived for the silence limit
//! (30 s by default): this also catches Binance's retired legacy URL, which
//! connects and acknowledges but never sends data. The connection is
//! replaced on purpose before the server's 24 h cut-off.

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::WebSocket;

use super::proxy::BinanceProxy;

/// The streams requested on the one connection.
pub const STREAMS: &str = "!markPrice@arr/!ticker@arr";
/// TCP connect and WebSocket handshake limit.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A blocked write (pong, close) gives up after this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Binance closes a connection at 24 h; we replace it before that.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(23 * 3600 + 30 * 60);
/// First reconnect delay.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Largest frame or message accepted (a 600-symbol ticker array is ~200 KB).
const MAX_MESSAGE: usize = 16 << 20;
/// How long the close handshake may take at shutdown.
const CLOSE_BUDGET: Duration = Duration::from_secs(2);

/// An open stream connection.
pub(crate) type Link = WebSocket<MaybeTlsStream<TcpStream>>;

/// How the stream connects and when it gives a link up.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// Base URL (`wss://fstream.binance.com/market`); `/stream?streams=…` is appended.
    pub base_url: String,
    /// No data message for this long: the link is dead.
    pub silence: Duration,
    /// Replace the connection after this long (before Binance's 24 h cut-off).
    pub max_connection_age: Duration,
    /// First reconnect delay.
    pub backoff_min: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// The HTTP CONNECT proxy to reach Binance through, if any.
    pub proxy: Option<BinanceProxy>,
}

impl StreamSettings {
    /// Production settings for `base_url` and the silence limit.
    pub fn new(base_url: &str, silence: Duration) -> StreamSettings {
        StreamSettings {
            base_url: base_url.trim_end_matches('/').to_string(),
            silence,
            max_connection_age: MAX_CONNECTION_AGE,
            backoff_min: BACKOFF_MIN,
            backoff_max: BACKOFF_MAX,
            proxy: None,
        }
    }

    /// These settings, connecting through `proxy`.
    pub fn with_proxy(mut self, proxy: Option<BinanceProxy>) -> StreamSettings {
        self.proxy = proxy;
        self
    }

    /// The full stream URL.
    pub fn url(&self) -> String {
        format!("{}/stream?streams={STREAMS}", self.base_url)
    }

    /// The host (and port) of the base URL, for log lines.
    pub fn host(&self) -> &str {
        let rest = self
            .base_url
            .split_once("://")
            .map_or(self.base_url.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }

    /// How long the stream may be without data before `/health` calls it
    /// failing: two silence periods (one reconnect's worth), at least 5 s.
    pub fn health_grace(&self) -> Duration {
        (self.silence * 2).max(Duration::from_secs(5))
    }
}

/// Whether a tungstenite error is only a read or write timeout.
pub(crate) fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
}

/// The TCP socket under a (possibly TLS) stream.
fn tcp(stream: &MaybeTlsStream<TcpStream>) -> Option<&TcpStream> {
    match stream {
        MaybeTlsStream::Plain(s) => Some(s),
        MaybeTlsStream::Rustls(s) => Some(&s.sock),
        _ => None,
    }
}

/// Sets the read timeout of the TCP socket under the link.
pub(crate) fn set_read_timeout(ws: &mut Link, t: Duration) -> io::Result<()> {
    match tcp(ws.get_ref()) {
        Some(s) => s.set_read_timeout(Some(t)),
        None => Err(io::Error::other("unknown stream type")),
    }
}

/// Sends a close frame and waits briefly for the server's reply.
pub(crate) fn close(ws: &mut Link) {
    if ws.close(None).is_err() {
        return;
    }
    let until = Instant::now() + CLOSE_BUDGET;
    while Instant::now() < until {
        match ws.read() {
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {}
            Err(_) => return,
        }
    }
}

/// A direct TCP connection to `host:port`, trying each resolved address.
fn direct(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last_error = format!("{host} resolved to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last_error = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last_error)
}

/// Opens the WebSocket with bounded connect and handshake times (tungstenite's
/// own `connect` has neither). `ws://` is plain TCP, `wss://` rustls with the
/// process's crypto provider and the bundled web PKI roots.
pub(crate) fn connect(url: &str, proxy: Option<&BinanceProxy>) -> Result<Link, String> {
    let request = url
        .into_client_request()
        .map_err(|e| format!("bad URL {url}: {e}"))?;
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or_else(|| format!("no host in {url}"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("wss") => 443,
        _ => 80,
    });
    let tcp = match proxy.filter(|p| p.applies_to(&host)) {
        // The tunnel carries the TLS handshake and the WebSocket end to end.
        Some(proxy) => proxy.tunnel(&host, port, CONNECT_TIMEOUT)?,
        None => direct(&host, port)?,
    };
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT))
        .and_then(|_| tcp.set_write_timeout(Some(WRITE_TIMEOUT)))
        .map_err(|e| format!("socket options: {e}"))?;
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let connector = tungstenite::Connector::Rustls(crate::net::websocket_tls());
    match tungstenite::client_tls_with_config(request, tcp, Some(config), Some(connector)) {
        Ok((ws, _response)) => Ok(ws),
        // With a read timeout, a handshake that stalls comes back as "interrupted".
        Err(HandshakeError::Interrupted(_)) => Err(format!(
            "handshake timed out after {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
        Err(HandshakeError::Failure(tungstenite::Error::Http(response)))
            if response.status().as_u16() == 451 =>
        {
            Err(format!(
                "handshake refused with HTTP 451: {}",
                crate::binance::REGION_REFUSED
            ))
        }
        Err(HandshakeError::Failure(e)) => Err(format!("handshake failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_grace() {
        let s = StreamSettings::new("wss://fstream.binance.com/market/", Duration::from_secs(30));
        assert_eq!(
            s.url(),
            "wss://fstream.binance.com/market/stream?streams=!markPrice@arr/!ticker@arr"
        );
        assert_eq!(s.health_grace(), Duration::from_secs(60));
        assert!(s.max_connection_age < Duration::from_secs(24 * 3600));
    }

    #[test]
    fn a_451_handshake_names_the_region_and_the_setting() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                use std::io::{Read, Write};
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let _ = s.write_all(
                    b"HTTP/1.1 451 Unavailable For Legal Reasons\r\nContent-Length: 0\r\n\r\n",
                );
            }
        });
        let err =
            connect(&format!("ws://127.0.0.1:{port}/market/stream"), None).expect_err("refused");
        assert!(err.contains(crate::binance::REGION_REFUSED), "{err}");
        let _ = server.join();
    }

    #[test]
    fn connect_failures_are_errors_not_panics() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        assert!(connect("ws://127.0.0.1:1/stream", None).is_err());
        assert!(connect("not a url", None).is_err());
        // A TLS handshake against a server that hangs up: an error, not a panic.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                use std::io::Write;
                let _ = s.write_all(b"HTTP/1.1 500 nope\r\n\r\n");
            }
        });
        let err =
            connect(&format!("wss://localhost:{port}/market/stream"), None).expect_err("no TLS");
        assert!(err.contains("handshake"), "{err}");
        let _ = server.join();
    }
}
