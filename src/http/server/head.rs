//! Parsing one HTTP/1.x request head from the bytes received so far, with
//! the size limits enforced on what has arrived: a line that is already too
//! long is rejected before its end is seen, so a client streaming an endless
//! line costs at most the limit, never the line.
//!
//! Pure: no sockets; the connection code feeds it its buffer after every read.

/// Size limits of a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HeadLimits {
    /// Longest request line (method, target, version); beyond it, 414.
    pub max_request_line: usize,
    /// Longest whole head (request line and headers); beyond it, 431.
    pub max_head: usize,
}

/// A parsed request head: what routing and the reply need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target (path and query), valid UTF-8.
    pub target: String,
    /// `(1, 0)` or `(1, 1)`.
    pub version: (u8, u8),
    /// Whether the client lets the connection stay open after the reply.
    pub keep_alive: bool,
    /// The request announces a body (`Content-Length` > 0 or
    /// `Transfer-Encoding`); no route takes one, so the connection is closed
    /// after the reply rather than reading the body.
    pub has_body: bool,
}

/// Why a head is refused; each maps to the status sent before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The request line passed [`HeadLimits::max_request_line`]: 414.
    RequestLineTooLong,
    /// The head passed [`HeadLimits::max_head`]: 431.
    HeadTooLarge,
    /// Not HTTP/1.x syntax (or a target that is not UTF-8): 400.
    Malformed(&'static str),
    /// HTTP/2 (its connection preface) or another version: 505.
    VersionNotSupported,
}

impl Rejection {
    /// The status code answered.
    pub fn status(self) -> u16 {
        match self {
            Rejection::RequestLineTooLong => 414,
            Rejection::HeadTooLarge => 431,
            Rejection::Malformed(_) => 400,
            Rejection::VersionNotSupported => 505,
        }
    }

    /// The error message answered.
    pub fn message(self, limits: &HeadLimits) -> String {
        match self {
            Rejection::RequestLineTooLong => format!(
                "request line too long (limit {} bytes)",
                limits.max_request_line
            ),
            Rejection::HeadTooLarge => format!(
                "request header fields too large (limit {} bytes)",
                limits.max_head
            ),
            Rejection::Malformed(why) => format!("bad request: {why}"),
            Rejection::VersionNotSupported => "only HTTP/1.0 and HTTP/1.1 are served".to_string(),
        }
    }
}

/// The outcome of parsing the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The head is not complete yet and no limit is passed: read more.
    Incomplete,
    /// A whole head, and how many bytes of the buffer it used (pipelined
    /// requests may follow).
    Complete(Head, usize),
    /// Answer this status and close.
    Rejected(Rejection),
}

/// Parses `buf` (the bytes received on a connection since the last request).
///
/// Lines may end in CRLF or a bare LF (RFC 9112 §2.2 lets a server accept
/// both); empty lines before the request line are skipped.
pub(crate) fn parse(buf: &[u8], limits: &HeadLimits) -> Parsed {
    let mut start = 0;
    while buf[start..].starts_with(b"\r\n") || buf[start..].starts_with(b"\n") {
        start += if buf[start] == b'\r' { 2 } else { 1 };
    }
    let rest = &buf[start..];
    let Some(line_end) = rest.iter().position(|&b| b == b'\n') else {
        return if rest.len() > limits.max_request_line {
            Parsed::Rejected(Rejection::RequestLineTooLong)
        } else if rest.len() >= 4 && !is_token(&rest[..rest.len().min(16)], b' ') {
            // Not even a method: no point waiting for the line's end.
            Parsed::Rejected(Rejection::Malformed("no request line"))
        } else {
            Parsed::Incomplete
        };
    };
    let line = trim_cr(&rest[..line_end]);
    if line.len() > limits.max_request_line {
        return Parsed::Rejected(Rejection::RequestLineTooLong);
    }
    let (method, target, version) = match request_line(line) {
        Ok(parts) => parts,
        Err(rejection) => return Parsed::Rejected(rejection),
    };
    // Headers: from after the request line to the first empty line.
    let mut pos = line_end + 1;
    let mut keep_alive = version == (1, 1);
    let mut has_body = false;
    loop {
        let Some(end) = rest[pos..].iter().position(|&b| b == b'\n') else {
            return if rest.len() > limits.max_head {
                Parsed::Rejected(Rejection::HeadTooLarge)
            } else {
                Parsed::Incomplete
            };
        };
        let header = trim_cr(&rest[pos..pos + end]);
        pos += end + 1;
        if pos > limits.max_head {
            return Parsed::Rejected(Rejection::HeadTooLarge);
        }
        if header.is_empty() {
            break;
        }
        if header[0] == b' ' || header[0] == b'\t' {
            return Parsed::Rejected(Rejection::Malformed("folded header line"));
        }
        let Some(colon) = header.iter().position(|&b| b == b':') else {
            return Parsed::Rejected(Rejection::Malformed("header line without a colon"));
        };
        let name = &header[..colon];
        let value = trim_spaces(&header[colon + 1..]);
        if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(trim_spaces) {
                if option.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || (name.eq_ignore_ascii_case(b"content-length") && value.iter().any(|&b| b != b'0'))
        {
            has_body = true;
        }
    }
    let head = Head {
        method,
        target,
        version,
        keep_alive: keep_alive && !has_body,
        has_body,
    };
    Parsed::Complete(head, start + pos)
}

/// Splits and checks `METHOD SP TARGET SP HTTP/x.y`.
fn request_line(line: &[u8]) -> Result<(String, String, (u8, u8)), Rejection> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    let version = match version {
        b"HTTP/1.1" => (1, 1),
        b"HTTP/1.0" => (1, 0),
        v if v.starts_with(b"HTTP/") => return Err(Rejection::VersionNotSupported),
        _ => return Err(Rejection::Malformed("no HTTP version")),
    };
    if method.is_empty() || !is_token(method, 0) {
        return Err(Rejection::Malformed("bad method"));
    }
    if target.is_empty() || target.iter().any(|b| b.is_ascii_control()) {
        return Err(Rejection::Malformed("bad request target"));
    }
    let target = std::str::from_utf8(target)
        .map_err(|_| Rejection::Malformed("request target is not UTF-8"))?;
    // Method checked as a token above, so it is ASCII.
    let method = String::from_utf8_lossy(method).into_owned();
    Ok((method, target.to_string(), version))
}

/// Whether `bytes` (up to an optional `stop` byte) are HTTP token characters.
fn is_token(bytes: &[u8], stop: u8) -> bool {
    bytes
        .iter()
        .take_while(|&&b| stop == 0 || b != stop)
        .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_spaces(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_request_line: 64,
        max_head: 256,
    };

    fn complete(buf: &[u8]) -> (Head, usize) {
        match parse(buf, &LIMITS) {
            Parsed::Complete(head, used) => (head, used),
            other => panic!("expected a head from {buf:?}, got {other:?}"),
        }
    }

    fn rejected(buf: &[u8]) -> Rejection {
        match parse(buf, &LIMITS) {
            Parsed::Rejected(r) => r,
            other => panic!("expected a rejection of {buf:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_plain_get_and_a_pipelined_one() {
        let req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n";
        let (head, used) = complete(req);
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/health");
        assert_eq!(head.version, (1, 1));
        assert!(head.keep_alive && !head.has_body);
        let (next, _) = complete(&req[used..]);
        assert_eq!(next.target, "/metrics");
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let (head, used) = complete(b"\nGET /x HTTP/1.0\nConnection: keep-alive\n\n");
        assert_eq!(head.target, "/x");
        assert!(head.keep_alive);
        assert_eq!(used, 41);
    }

    #[test]
    fn incomplete_heads_wait_for_more() {
        assert_eq!(parse(b"", &LIMITS), Parsed::Incomplete);
        assert_eq!(parse(b"GE", &LIMITS), Parsed::Incomplete);
        assert_eq!(
            parse(b"GET /a HTTP/1.1\r\nHost:", &LIMITS),
            Parsed::Incomplete
        );
    }

    #[test]
    fn limits_are_enforced_before_the_line_ends() {
        let long_line = format!("GET /{}", "a".repeat(100));
        assert_eq!(
            rejected(long_line.as_bytes()),
            Rejection::RequestLineTooLong
        );
        let long_header = format!("GET / HTTP/1.1\r\nX: {}", "b".repeat(300));
        assert_eq!(rejected(long_header.as_bytes()), Rejection::HeadTooLarge);
        let many = format!("GET / HTTP/1.1\r\n{}", "X: y\r\n".repeat(60));
        assert_eq!(rejected(many.as_bytes()), Rejection::HeadTooLarge);
        assert_eq!(Rejection::RequestLineTooLong.status(), 414);
        assert_eq!(Rejection::HeadTooLarge.status(), 431);
    }

    #[test]
    fn odd_requests_get_an_answer_not_a_wait() {
        assert_eq!(
            rejected(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
            Rejection::VersionNotSupported
        );
        assert_eq!(
            rejected(b"GET /\xff\xfe HTTP/1.1\r\n\r\n").status(),
            400,
            "invalid UTF-8 in the target"
        );
        assert_eq!(rejected(b"\x16\x03\x01\x02\x00").status(), 400, "TLS hello");
        assert_eq!(rejected(b"GET / HTTP/1.1\r\n folded\r\n\r\n").status(), 400);
        assert_eq!(rejected(b"GET /\r\n\r\n").status(), 400, "HTTP/0.9");
    }

    #[test]
    fn a_body_closes_the_connection_after_the_reply() {
        let (head, _) = complete(b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert!(head.has_body && !head.keep_alive);
        let (head, _) = complete(b"GET /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(!head.has_body && head.keep_alive);
        let (head, _) = complete(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!head.keep_alive);
    }
}
