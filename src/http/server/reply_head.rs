//! Framing a [`Reply`]'s status line and headers for the wire. A leaf: the
//! accept loop (for its 503 refusal) and the connections both use it.

use crate::http::reply::Reply;

/// The status line and headers of `reply`, framed by tiny_http
/// (`Content-Length`, `Date`, `Server`); the body is written separately
/// from its shared buffer, so a prepared snapshot is never copied.
pub(crate) fn reply_head(reply: &Reply, version: (u8, u8), close: bool) -> Vec<u8> {
    let mut headers: Vec<tiny_http::Header> = Vec::with_capacity(1);
    headers.extend(
        tiny_http::Header::from_bytes(&b"Content-Type"[..], reply.content_type.as_bytes()).ok(),
    );
    let response = tiny_http::Response::new(
        tiny_http::StatusCode(reply.status),
        headers,
        std::io::empty(),
        Some(reply.body.len()),
        None,
    )
    .with_chunked_threshold(usize::MAX);
    let mut out = Vec::with_capacity(192);
    let http_version = tiny_http::HTTPVersion(version.0, version.1);
    // Writing to a Vec cannot fail.
    let _ = response.raw_print(&mut out, http_version, &[], true, None);
    // tiny_http leaves `Connection` to its own server; say it here.
    let connection = match (close, version.0, version.1) {
        (true, _, _) => Some("close"),
        (false, 1, 0) => Some("keep-alive"),
        _ => None,
    };
    if let Some(value) = connection {
        if out.ends_with(b"\r\n\r\n") {
            out.truncate(out.len() - 2);
            out.extend_from_slice(format!("Connection: {value}\r\n\r\n").as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_heads_carry_length_type_and_connection() {
        let reply = Reply::error(404, "no such route");
        let head = String::from_utf8(reply_head(&reply, (1, 1), true)).expect("ASCII");
        assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
        assert!(head.contains(&format!("Content-Length: {}\r\n", reply.body.len())));
        assert!(head.contains("Content-Type: application/json\r\n"));
        assert!(head.contains("Connection: close\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        let kept = String::from_utf8(reply_head(&reply, (1, 0), false)).expect("ASCII");
        assert!(kept.starts_with("HTTP/1.0 404 ") && kept.contains("Connection: keep-alive"));
    }
}
