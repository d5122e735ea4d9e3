//! An HTTP CONNECT proxy for every Binance call, REST and WebSocket.
//!
//! Binance answers HTTP 451 to addresses in regions it refuses (the United
//! States among them), and a droplet may sit in one. The proxy comes from
//! `VOLSPIKE_BINANCE_PROXY`, else the conventional `HTTPS_PROXY` (for
//! `https`/`wss` URLs) or `HTTP_PROXY` (for `http`/`ws`), lower-case names
//! too; hosts listed in `NO_PROXY` are reached directly. Only `http://`
//! proxies are supported: the tunnel is a plain `CONNECT host:port`, and TLS
//! to Binance runs inside it end to end, so the proxy sees no content.
//!
//! REST goes through ureq's own CONNECT support ([`BinanceProxy::ureq`]);
//! the WebSocket opens the tunnel here ([`BinanceProxy::tunnel`]) and hands
//! the stream to tungstenite.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The setting that names the proxy explicitly.
pub const PROXY_SETTING: &str = crate::config::settings::BINANCE_PROXY.name();

/// Longest CONNECT answer header read from a proxy.
const MAX_CONNECT_ANSWER: usize = 8 * 1024;

/// A proxy to reach Binance through.
#[derive(Clone, PartialEq, Eq)]
pub struct BinanceProxy {
    /// Proxy host name or address (brackets removed from IPv6).
    pub host: String,
    /// Proxy port (default 80 for `http://`, as curl's 1080 is for SOCKS).
    pub port: u16,
    /// `user:password` for `Proxy-Authorization: Basic`, when given.
    credentials: Option<String>,
    /// The setting it came from, for messages.
    pub source: String,
    /// Hosts reached directly (`NO_PROXY` entries, lower-case).
    no_proxy: Vec<String>,
}

impl std::fmt::Debug for BinanceProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials are secrets: never in logs or check-config.
        write!(f, "{}", self.shown())
    }
}

impl BinanceProxy {
    /// `http://host:port` (with `****@` when credentials are set): safe to print.
    pub fn shown(&self) -> String {
        let auth = if self.credentials.is_some() {
            "****@"
        } else {
            ""
        };
        format!(
            "http://{auth}{}:{} (from {})",
            self.host, self.port, self.source
        )
    }

    /// Parses `http://[user:pass@]host[:port][/]` or `host:port`.
    pub fn parse(value: &str, source: &str) -> Result<BinanceProxy, String> {
        let value = value.trim();
        let rest = match value.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(format!(
                "{source}: {scheme}:// proxies are not supported; use an http:// (CONNECT) proxy"
            ))
            }
            None => value,
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(format!("{source}: a proxy URL has no path: {value}"));
        }
        let (credentials, hostport) = match rest.rsplit_once('@') {
            Some((creds, hostport)) => (Some(creds.to_string()), hostport),
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport)
            .ok_or_else(|| format!("{source}: expected http://host:port, got {value}"))?;
        Ok(BinanceProxy {
            host,
            port: port.unwrap_or(80),
            credentials,
            source: source.to_string(),
            no_proxy: Vec::new(),
        })
    }

    /// The proxy for Binance from the settings and the environment `env`:
    /// `explicit` (`VOLSPIKE_BINANCE_PROXY`) wins, else `HTTPS_PROXY` /
    /// `HTTP_PROXY` by the scheme of `binance_url` (the REST base). `NO_PROXY`
    /// is kept for [`BinanceProxy::applies_to`]. `Ok(None)` without a proxy.
    pub fn resolve(
        explicit: Option<&str>,
        env: &BTreeMap<String, String>,
        binance_url: &str,
    ) -> Result<Option<BinanceProxy>, String> {
        let var = |names: &[&str]| {
            names.iter().find_map(|n| {
                env.get(*n)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (v.clone(), n.to_string()))
            })
        };
        let secure = binance_url.starts_with("https://") || binance_url.starts_with("wss://");
        let found = match explicit.filter(|v| !v.trim().is_empty()) {
            Some(v) => Some((v.to_string(), PROXY_SETTING.to_string())),
            None if secure => var(&["HTTPS_PROXY", "https_proxy"]),
            None => var(&["HTTP_PROXY", "http_proxy"]),
        };
        let Some((value, source)) = found else {
            return Ok(None);
        };
        let mut proxy = BinanceProxy::parse(&value, &source)?;
        if let Some((list, _)) = var(&["NO_PROXY", "no_proxy"]) {
            proxy.no_proxy = list
                .split(',')
                .map(|e| e.trim().to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect();
        }
        Ok(Some(proxy))
    }

    /// Whether a connection to `host` goes through the proxy: not when
    /// `NO_PROXY` lists it (`*`, the host itself, or a domain suffix
    /// `.example.com` / `example.com` matching sub-domains, as curl does).
    pub fn applies_to(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        !self.no_proxy.iter().any(|entry| {
            let entry = entry.trim_start_matches('*');
            if entry.is_empty() {
                return true;
            }
            let bare = entry.trim_start_matches('.');
            host == bare || host.ends_with(&format!(".{bare}"))
        })
    }

    /// The ureq proxy for REST calls to `host`, `None` when `host` is reached directly.
    pub fn ureq(&self, host: &str) -> Result<Option<ureq::Proxy>, String> {
        if !self.applies_to(host) {
            return Ok(None);
        }
        let auth = self
            .credentials
            .as_ref()
            .map_or_else(String::new, |c| format!("{c}@"));
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        ureq::Proxy::new(&format!("http://{auth}{host}:{}", self.port))
            .map(Some)
            .map_err(|e| format!("{}: {e}", self.source))
    }

    /// A TCP stream to `host:port` through the proxy (`CONNECT`), ready for
    /// TLS or a WebSocket handshake; `timeout` bounds the connect and the
    /// proxy's answer.
    pub fn tunnel(&self, host: &str, port: u16, timeout: Duration) -> Result<TcpStream, String> {
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve the proxy {}: {e}", self.host))?
            .collect();
        let mut last = format!("the proxy {} resolved to no address", self.host);
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = format!("cannot connect to the proxy at {addr}: {e}"),
            }
        }
        let mut tcp = tcp.ok_or(last)?;
        tcp.set_read_timeout(Some(timeout))
            .and_then(|_| tcp.set_write_timeout(Some(timeout)))
            .map_err(|e| format!("proxy socket options: {e}"))?;
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(c) = &self.credentials {
            request.push_str(&format!(
                "Proxy-Authorization: Basic {}\r\n",
                base64(c.as_bytes())
            ));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes())
            .map_err(|e| format!("proxy CONNECT {target}: {e}"))?;
        let answer = read_head(&mut tcp).map_err(|e| format!("proxy CONNECT {target}: {e}"))?;
        let status_line = answer.lines().next().unwrap_or_default();
        let code = status_line.split_whitespace().nth(1).unwrap_or_default();
        if code != "200" {
            return Err(format!(
                "proxy {} refused CONNECT {target}: {status_line}",
                self.host
            ));
        }
        Ok(tcp)
    }
}

/// Splits `host[:port]`, `[v6][:port]`; `None` for an empty host or a bad port.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
        None => None,
    };
    Some((host.to_string(), port))
}

/// Reads a proxy's answer up to the blank line ending its headers, one byte
/// at a time so nothing of the tunnelled stream is consumed.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_ANSWER {
            return Err(io::Error::other("answer headers too long"));
        }
        match stream.read(&mut byte)? {
            0 => return Err(io::Error::other("the proxy closed the connection")),
            _ => head.push(byte[0]),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Standard base64 with padding (RFC 4648), for `Proxy-Authorization`.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_explicit_setting_wins_then_the_conventional_variables() {
        let e = env(&[
            ("HTTPS_PROXY", "http://corp:3128"),
            ("http_proxy", "plain:8080"),
        ]);
        let p = BinanceProxy::resolve(
            Some("http://relay.example:8888"),
            &e,
            "https://fapi.binance.com",
        )
        .expect("valid")
        .expect("a proxy");
        assert_eq!(
            (p.host.as_str(), p.port, p.source.as_str()),
            ("relay.example", 8888, PROXY_SETTING)
        );
        let p = BinanceProxy::resolve(None, &e, "https://fapi.binance.com")
            .expect("valid")
            .expect("a proxy");
        assert_eq!(
            (p.host.as_str(), p.port, p.source.as_str()),
            ("corp", 3128, "HTTPS_PROXY")
        );
        let p = BinanceProxy::resolve(None, &e, "http://127.0.0.1:9")
            .expect("valid")
            .expect("a proxy");
        assert_eq!((p.host.as_str(), p.port), ("plain", 8080));
        assert_eq!(
            BinanceProxy::resolve(None, &env(&[]), "https://x").expect("valid"),
            None
        );
        assert!(BinanceProxy::resolve(Some("socks5://h:1080"), &e, "https://x").is_err());
        assert!(BinanceProxy::resolve(Some("http://h:notaport"), &e, "https://x").is_err());
    }

    #[test]
    fn no_proxy_lists_hosts_reached_directly() {
        let e = env(&[("NO_PROXY", "localhost, .internal.example,binance.com")]);
        let p = BinanceProxy::resolve(Some("h:1"), &e, "https://x")
            .expect("valid")
            .expect("a proxy");
        assert!(!p.applies_to("localhost"));
        assert!(!p.applies_to("a.internal.example"));
        assert!(
            !p.applies_to("fapi.binance.com"),
            "a domain covers its sub-domains"
        );
        assert!(p.applies_to("notbinance.com"));
        assert!(p.applies_to("127.0.0.1"));
        let all = BinanceProxy::resolve(Some("h:1"), &env(&[("no_proxy", "*")]), "https://x")
            .expect("valid")
            .expect("a proxy");
        assert!(!all.applies_to("fapi.binance.com"));
    }

    #[test]
    fn credentials_are_never_shown_and_are_sent_as_basic() {
        let p = BinanceProxy::parse("http://user:s3cret@relay:8080/", "X").expect("valid");
        assert!(!format!("{p:?}").contains("s3cret"));
        assert_eq!(p.shown(), "http://****@relay:8080 (from X)");
        assert_eq!(base64(b"user:s3cret"), "dXNlcjpzM2NyZXQ=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
        let v6 = BinanceProxy::parse("http://[::1]:3128", "X").expect("valid");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 3128));
    }
}
