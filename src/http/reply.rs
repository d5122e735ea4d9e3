//! The answer type every handler returns: a status, a content type and a
//! shared body. A leaf: handlers and the server import it, it imports none
//! of them.

use std::sync::Arc;

use serde::Serialize;

/// An answer to one request.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// The body; shared so prepared snapshots are sent without a copy.
    pub body: Arc<[u8]>,
}

impl Reply {
    /// A JSON reply.
    pub fn json<T: Serialize>(status: u16, value: &T) -> Reply {
        match serde_json::to_vec(value) {
            Ok(body) => Reply {
                status,
                content_type: "application/json",
                body: body.into(),
            },
            Err(e) => Reply::error(500, &format!("cannot encode reply: {e}")),
        }
    }

    /// A JSON error: `{"error": "..."}`.
    pub fn error(status: u16, message: &str) -> Reply {
        let body = serde_json::json!({ "error": message }).to_string();
        Reply {
            status,
            content_type: "application/json",
            body: body.into_bytes().into(),
        }
    }
}
