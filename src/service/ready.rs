//! Is the service up? One readiness wait (a new invocation reaching READY)
//! and one `/health` client, used by install, self-update and status.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::systemctl::{Systemctl, UnitState};

/// How often the unit is looked at while waiting.
const POLL: Duration = Duration::from_millis(100);
/// Connecting to loopback either works at once or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Each read and write; `/health` answers from memory in milliseconds.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read (a `/health` body is a few KB).
const ANSWER_LIMIT: u64 = 4 << 20;

/// A server listening on every address (`0.0.0.0`, `[::]`) is reached on
/// loopback; one connects to a concrete address, not to a wildcard.
pub fn connectable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// Why `/health` gave no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthError {
    /// Nothing listens there: the appliance is not running.
    Refused(String),
    /// Something is wrong on the way (timeout, garbage).
    Failed(String),
}

impl std::fmt::Display for HealthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthError::Refused(why) | HealthError::Failed(why) => f.write_str(why),
        }
    }
}

/// `GET /health` over plain HTTP/1.0 at `addr`: the status code and body.
pub fn get_health(addr: SocketAddr) -> Result<(u16, String), HealthError> {
    let failed = |what: &str, e: io::Error| HealthError::Failed(format!("{what} {addr}: {e}"));
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| {
        if e.kind() == io::ErrorKind::ConnectionRefused {
            HealthError::Refused(format!("nothing listens on {addr} ({e})"))
        } else {
            failed("connect", e)
        }
    })?;
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    stream
        .write_all(
            format!("GET /health HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .map_err(|e| failed("send to", e))?;
    let mut response = Vec::new();
    stream
        .take(ANSWER_LIMIT)
        .read_to_end(&mut response)
        .map_err(|e| failed("read from", e))?;
    parse_answer(&response)
        .ok_or_else(|| HealthError::Failed(format!("{addr} answered no HTTP status line")))
}

/// The status code and body of a raw HTTP answer.
fn parse_answer(response: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(response);
    let status = text
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// Where a start stands, judged from one look at the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The new invocation has not begun or is still starting.
    Waiting,
    /// A new invocation is active/running (READY).
    Ready,
    /// The new invocation failed or stopped during its start.
    Failed,
}

/// Judges `now` against the invocation that ran before the restart. Only a
/// new invocation counts either way: right after `restart --no-block` the
/// old, possibly failed, one is still shown.
pub fn classify(now: &UnitState, old_invocation: &str) -> Progress {
    let new = !now.invocation_id.is_empty() && now.invocation_id != old_invocation;
    if !new {
        return Progress::Waiting;
    }
    match (now.active_state.as_str(), now.sub_state.as_str()) {
        ("active", "running") => Progress::Ready,
        ("failed", _) | ("activating", "auto-restart") | ("inactive", _) | ("deactivating", _) => {
            Progress::Failed
        }
        _ => Progress::Waiting,
    }
}

/// How waiting for READY ended, with the last look at the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    /// A new invocation is READY.
    Ready(UnitState),
    /// The new invocation failed during its start.
    Failed(UnitState),
    /// Still not READY when the deadline passed.
    TimedOut(UnitState),
}

/// Polls `unit` until a new invocation (not `old_invocation`) is READY
/// (Type=notify: only after READY=1), fails, or `deadline` passes. An error
/// is systemctl itself failing.
pub fn wait_for_new_invocation(
    unit: &str,
    old_invocation: &str,
    deadline: Instant,
) -> Result<Waited, String> {
    loop {
        let now = Systemctl.state(unit)?;
        match classify(&now, old_invocation) {
            Progress::Ready => return Ok(Waited::Ready(now)),
            Progress::Failed => return Ok(Waited::Failed(now)),
            Progress::Waiting if Instant::now() >= deadline => return Ok(Waited::TimedOut(now)),
            Progress::Waiting => std::thread::sleep(POLL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use volspike_fakes::Reply;

    fn state(active: &str, sub: &str, invocation: &str) -> UnitState {
        UnitState {
            id: "volspike.service".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            invocation_id: invocation.into(),
            ..UnitState::default()
        }
    }

    #[test]
    fn wildcards_are_reached_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:9000".parse().expect("addr");
        let v6: SocketAddr = "[::]:9000".parse().expect("addr");
        let concrete: SocketAddr = "10.0.0.1:80".parse().expect("addr");
        assert_eq!(connectable(v4), "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(connectable(v6), "[::1]:9000".parse().expect("addr"));
        assert_eq!(connectable(concrete), concrete);
    }

    #[test]
    fn only_a_new_invocation_counts() {
        // (active, sub, invocation now) against invocation "a" before.
        let cases = [
            ("active", "running", "b", Progress::Ready),
            ("active", "running", "a", Progress::Waiting),
            ("failed", "failed", "a", Progress::Waiting),
            ("activating", "start", "b", Progress::Waiting),
            ("activating", "auto-restart", "b", Progress::Failed),
            ("inactive", "dead", "b", Progress::Failed),
        ];
        for (active, sub, invocation, expected) in cases {
            let now = state(active, sub, invocation);
            assert_eq!(classify(&now, "a"), expected, "{active}/{sub} {invocation}");
        }
    }

    #[test]
    fn answers_are_parsed_and_garbage_is_not() {
        assert_eq!(
            parse_answer(b"HTTP/1.1 503 Service Unavailable\r\nA: b\r\n\r\n{\"x\":1}"),
            Some((503, "{\"x\":1}".to_string()))
        );
        assert_eq!(parse_answer(b"SSH-2.0-OpenSSH\r\n"), None);
    }

    #[test]
    fn refused_is_told_apart() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        assert!(matches!(get_health(addr), Err(HealthError::Refused(_))));
    }

    #[test]
    fn health_over_loopback() {
        let server = crate::testkit::serve(|_, _| {
            Reply::status(503, r#"{"version":"1.0.0"}"#).header("Content-Type", "application/json")
        });
        let (status, body) = get_health(server.addr()).expect("answer");
        assert_eq!(status, 503);
        assert!(body.contains("1.0.0"));
    }
}
