//! HTTP helpers shared by the fakes: query decoding, JSON responses.

use serde_json::Value;

use crate::http_server::HttpResponse;

/// Standard reason phrase for the status codes the fakes use.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        418 => "I'm a teapot",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Decodes an `application/x-www-form-urlencoded` query string into pairs.
///
/// `+` is a space, `%XX` a byte; invalid escapes are kept literally and
/// invalid UTF-8 is replaced, so decoding never fails.
pub(crate) fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

/// First value of `name` in decoded query pairs.
pub(crate) fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Percent-decodes one query component (`+` means space).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A JSON response with `status` and `body`.
pub(crate) fn json_response(status: u16, body: &Value) -> HttpResponse {
    HttpResponse {
        stream: None,
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_pairs() {
        let pairs = parse_query("symbol=BTCUSDT&ts=2025-12-03T14%3A00%3A00Z&x=a+b&flag&bad=%zz%4");
        assert_eq!(query_value(&pairs, "symbol"), Some("BTCUSDT"));
        assert_eq!(query_value(&pairs, "ts"), Some("2025-12-03T14:00:00Z"));
        assert_eq!(query_value(&pairs, "x"), Some("a b"));
        assert_eq!(query_value(&pairs, "flag"), Some(""));
        assert_eq!(query_value(&pairs, "bad"), Some("%zz%4"));
        assert_eq!(query_value(&pairs, "missing"), None);
    }

    #[test]
    fn decodes_multibyte_utf8() {
        assert_eq!(percent_decode("%E2%93%88"), "Ⓢ");
    }
}
