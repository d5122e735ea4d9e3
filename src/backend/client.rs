//! One VolSpike backend over HTTP (ureq 3, rustls), and the classification
//! of its answers that the outbox acts on (docs/backend.md "Retries and rejections").
//!
//! ureq is blocking: async callers run these methods inside
//! `tokio::task::spawn_blocking`. Every request has a global timeout, so a
//! call never holds its caller (and the delivery heartbeat) for long.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{BackendConfig, Secret};

/// Longest a whole request (connect, send, answer) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of an answer read for a POST (only logged).
const POST_ANSWER_LIMIT: u64 = 64 * 1024;
/// Most bytes of an answer read for a GET (the liquid universe is the largest).
const GET_ANSWER_LIMIT: u64 = 8 * 1024 * 1024;
/// Most characters of an answer body put into a log line.
const LOG_BODY_CHARS: usize = 500;

/// Where a request carries the backend key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Auth {
    /// `X-API-Key: <key>` (most routes).
    Header,
    /// `?apiKey=<key>` (GET `/api/user-alerts-trigger/*`).
    QueryParam,
    /// `"apiKey": <key>` added to the JSON body at send time (POST
    /// `/api/user-alerts-trigger/*`); the key is never stored with the post.
    BodyField,
    /// No key (public routes such as the liquid-universe read).
    Public,
}

/// What became of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// 2xx: the backend has it.
    Delivered {
        /// The status code.
        status: u16,
    },
    /// Network error, timeout, 5xx or 429: send again later.
    Retry {
        /// The status code, `None` for a network error or timeout.
        status: Option<u16>,
        /// What went wrong, for the log (body excerpt or error text).
        reason: String,
    },
    /// Any other 4xx: the backend will never accept it; drop it.
    Rejected {
        /// The status code.
        status: u16,
        /// The answer body (truncated), for the log.
        body: String,
    },
}

/// How a status code is acted upon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Delivered,
    /// 5xx and 429 (and anything unexpected, such as a 3xx left after
    /// redirects: a misconfiguration an operator fixes without losing alerts).
    Retry,
    /// Every other 4xx.
    Rejected,
}

/// Classifies a status code per docs/backend.md.
pub fn classify(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Delivered,
        429 => StatusClass::Retry,
        400..=499 => StatusClass::Rejected,
        _ => StatusClass::Retry,
    }
}

/// A failed GET.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// No answer: network error or timeout.
    #[error("{backend} {path}: {detail}")]
    Network {
        /// Backend name.
        backend: &'static str,
        /// Route.
        path: String,
        /// Error text (key redacted).
        detail: String,
    },
    /// A non-2xx answer.
    #[error("{backend} {path}: HTTP {status}: {body}")]
    Status {
        /// Backend name.
        backend: &'static str,
        /// Route.
        path: String,
        /// Status code.
        status: u16,
        /// Body excerpt.
        body: String,
    },
    /// A 2xx answer that is not JSON.
    #[error("{backend} {path}: answer is not JSON: {detail}")]
    Json {
        /// Backend name.
        backend: &'static str,
        /// Route.
        path: String,
        /// Parser error.
        detail: String,
    },
}

/// A client for one backend; cheap to clone (the agent is shared).
#[derive(Debug, Clone)]
pub struct BackendClient {
    /// `primary` or `dev`.
    name: &'static str,
    /// Base URL without a trailing slash.
    base_url: String,
    /// The backend's key.
    key: Secret,
    /// Connection pool and timeouts.
    agent: ureq::Agent,
}

impl BackendClient {
    /// A client for `backend` with the standard timeouts.
    pub fn new(backend: &BackendConfig) -> BackendClient {
        BackendClient {
            name: backend.name,
            base_url: backend.url.trim_end_matches('/').to_string(),
            key: backend.key.clone(),
            agent: crate::net::agent(REQUEST_TIMEOUT, 2),
        }
    }

    /// The backend's name (`primary`, `dev`).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// POSTs `body` as JSON to `path`, with the key where `auth` says.
    pub fn post_json(&self, path: &str, body: &Value, auth: Auth) -> SendOutcome {
        let url = format!("{}{}", self.base_url, path);
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json");
        let mut body = body.clone();
        match auth {
            Auth::Header => request = request.header("X-API-Key", self.key.expose()),
            Auth::QueryParam => request = request.query("apiKey", self.key.expose()),
            Auth::BodyField => {
                if let Value::Object(fields) = &mut body {
                    fields.insert("apiKey".into(), Value::String(self.key.expose().into()));
                }
            }
            Auth::Public => {}
        }
        let bytes = match serde_json::to_vec(&body) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Only a broken in-memory value gets here; the backend would
                // refuse it too, so it is a rejection, not a retry.
                return SendOutcome::Rejected {
                    status: 0,
                    body: format!("cannot encode the body: {e}"),
                };
            }
        };
        match request.send(&bytes[..]) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let text = response
                    .body_mut()
                    .with_config()
                    .limit(POST_ANSWER_LIMIT)
                    .read_to_string()
                    .unwrap_or_else(|e| format!("<answer unreadable: {e}>"));
                let text = self.redact(&excerpt(&text));
                match classify(status) {
                    StatusClass::Delivered => SendOutcome::Delivered { status },
                    StatusClass::Retry => SendOutcome::Retry {
                        status: Some(status),
                        reason: format!("HTTP {status}: {text}"),
                    },
                    StatusClass::Rejected => SendOutcome::Rejected { status, body: text },
                }
            }
            Err(e) => SendOutcome::Retry {
                status: None,
                reason: self.redact(&e.to_string()),
            },
        }
    }

    /// GETs `path` with `query` and the key where `auth` says; the JSON answer
    /// of a 2xx, else an error naming backend, route and cause.
    pub fn get_json(
        &self,
        path: &str,
        query: &[(&str, &str)],
        auth: Auth,
    ) -> Result<Value, GetError> {
        let url = format!("{}{}", self.base_url, path);
        let mut request = self.agent.get(&url).query_pairs(query.iter().copied());
        match auth {
            Auth::Header => request = request.header("X-API-Key", self.key.expose()),
            // A GET has no body: the body-field routes take the key as query.
            Auth::QueryParam | Auth::BodyField => {
                request = request.query("apiKey", self.key.expose())
            }
            Auth::Public => {}
        }
        let network = |detail: String| GetError::Network {
            backend: self.name,
            path: path.to_string(),
            detail: self.redact(&detail),
        };
        let mut response = request.call().map_err(|e| network(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(GET_ANSWER_LIMIT)
            .read_to_string()
            .map_err(|e| network(e.to_string()))?;
        if classify(status) != StatusClass::Delivered {
            return Err(GetError::Status {
                backend: self.name,
                path: path.to_string(),
                status,
                body: self.redact(&excerpt(&text)),
            });
        }
        serde_json::from_str(&text).map_err(|e| GetError::Json {
            backend: self.name,
            path: path.to_string(),
            detail: e.to_string(),
        })
    }

    /// `text` with the key replaced by `****`: error texts may quote a URL
    /// that carries `apiKey`, and secrets are never logged.
    fn redact(&self, text: &str) -> String {
        let key = self.key.expose();
        if key.is_empty() {
            text.to_string()
        } else {
            text.replace(key, "****")
        }
    }
}

/// The first [`LOG_BODY_CHARS`] characters of `text`, marked when cut.
fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(LOG_BODY_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_backend_md_says() {
        for ok in [200, 201, 204, 299] {
            assert_eq!(classify(ok), StatusClass::Delivered, "{ok}");
        }
        for retry in [429, 500, 502, 503, 504] {
            assert_eq!(classify(retry), StatusClass::Retry, "{retry}");
        }
        for rejected in [400, 401, 403, 404, 409, 413, 422] {
            assert_eq!(classify(rejected), StatusClass::Rejected, "{rejected}");
        }
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(LOG_BODY_CHARS + 10);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), LOG_BODY_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn a_closed_port_is_a_retry_and_never_shows_the_key() {
        // Bind and drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("ephemeral port");
        let client = BackendClient::new(&BackendConfig {
            name: "primary",
            url: format!("http://127.0.0.1:{port}"),
            key: Secret::new("sekrit-key"),
            kinds: None,
        });
        match client.post_json("/x", &serde_json::json!({}), Auth::QueryParam) {
            SendOutcome::Retry {
                status: None,
                reason,
            } => {
                assert!(!reason.contains("sekrit-key"), "{reason}")
            }
            other => panic!("expected a network retry, got {other:?}"),
        }
        let err = client
            .get_json("/api/user-alerts-trigger/active", &[], Auth::QueryParam)
            .expect_err("nobody listens");
        assert!(!err.to_string().contains("sekrit-key"), "{err}");
    }
}
