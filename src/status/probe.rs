//! `GET /health` on the running appliance, with short timeouts: `status` is
//! typed by a person waiting for an answer, and a wedged server must not
//! hang it.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

/// Connecting to loopback either works at once or not at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole request; `/health` answers from memory in milliseconds.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read (a `/health` body is a few KB).
const ANSWER_LIMIT: u64 = 4 << 20;

/// What asking `/health` gave.
#[derive(Debug, Clone)]
pub enum Probe {
    /// Nothing listens there: the appliance is not running.
    Refused(String),
    /// Something is wrong on the way (timeout, garbage): running or not,
    /// it does not answer as it should.
    Failed(String),
    /// An HTTP answer.
    Answer {
        /// Its status (200 healthy, 503 degraded).
        status: u16,
        /// Its JSON body; `None` when it was not JSON (not our server).
        body: Option<Value>,
    },
}

/// Asks `http://addr/health`.
pub fn health(addr: SocketAddr) -> Probe {
    let config = ureq::Agent::config_builder()
        // A 503 is the degraded answer we want to read, not an error.
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(REQUEST_TIMEOUT))
        .user_agent(format!("volspike-status/{}", crate::version::VERSION))
        .build();
    let agent = ureq::Agent::new_with_config(config);
    let url = format!("http://{addr}/health");
    match agent.get(&url).call() {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let body = response
                .body_mut()
                .with_config()
                .limit(ANSWER_LIMIT)
                .read_to_string()
                .ok()
                .and_then(|text| serde_json::from_str(&text).ok());
            Probe::Answer { status, body }
        }
        Err(ureq::Error::Io(e)) if e.kind() == io::ErrorKind::ConnectionRefused => {
            Probe::Refused(format!("nothing listens on {addr} ({e})"))
        }
        Err(ureq::Error::ConnectionFailed) => Probe::Refused(format!("cannot connect to {addr}")),
        Err(e) => Probe::Failed(format!("{url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn refused_answered_and_garbage() {
        // A port just released: nothing listens.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        assert!(matches!(health(addr), Probe::Refused(_)));

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            for body in ["{\"status\":\"degraded\"}", "not json"] {
                let (mut s, _) = listener.accept().expect("accept");
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = write!(
                    s,
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        match health(addr) {
            Probe::Answer { status, body } => {
                assert_eq!(status, 503);
                assert_eq!(body.expect("json")["status"], "degraded");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            health(addr),
            Probe::Answer {
                status: 503,
                body: None
            }
        ));
        server.join().expect("server");
    }
}
