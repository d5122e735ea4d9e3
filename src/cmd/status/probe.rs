//! `GET /health` on the running appliance, with short timeouts: `status` is
//! typed by a person waiting for an answer, and a wedged server must not
//! hang it.

use std::net::SocketAddr;

use serde_json::Value;

use crate::service::ready::{get_health, HealthError};

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
    match get_health(addr) {
        Ok((status, text)) => Probe::Answer {
            status,
            body: serde_json::from_str(&text).ok(),
        },
        Err(HealthError::Refused(why)) => Probe::Refused(why),
        Err(HealthError::Failed(why)) => Probe::Failed(format!("http://{addr}/health: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use volspike_fakes::Reply;

    #[test]
    fn refused_answered_and_garbage() {
        // A port just released: nothing listens.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        assert!(matches!(health(addr), Probe::Refused(_)));

        let server = crate::testkit::serve(|_, n| {
            let body = if n == 0 {
                "{\"status\":\"degraded\"}"
            } else {
                "not json"
            };
            Reply::status(503, body)
        });
        let addr = server.addr();
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
    }
}
