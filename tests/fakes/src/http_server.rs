//! A minimal HTTP/1.1 server on std threads (one thread per connection).
//!
//! Written here rather than taken from a crate because the fakes need control
//! over the connections themselves: the fake backend's outage must reset the
//! pooled keep-alive connections of the client, not only refuse new ones.
//!
//! Supported: request line, headers, bodies with `Content-Length` or
//! `Transfer-Encoding: chunked`, `Expect: 100-continue`, keep-alive (HTTP/1.1
//! default, `Connection: close`, HTTP/1.0). Anything malformed is answered with
//! `400` and the connection is closed; nothing a client sends can panic the
//! server.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::http_util::reason_phrase;
use crate::tcp_server::{ConnHandler, Connections, TcpServer};

/// Longest accepted request line or header line, in bytes.
const MAX_LINE: u64 = 16 * 1024;
/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 100;
/// Largest accepted request body, in bytes.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// An idle keep-alive connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One parsed HTTP request.
#[derive(Debug, Clone)]
pub(crate) struct HttpRequest {
    /// Method as sent, e.g. `GET`.
    pub method: String,
    /// Path without the query string, still percent-encoded.
    pub path: String,
    /// Raw query string after `?` (empty when absent).
    pub query: String,
    /// Headers in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Request body (de-chunked).
    pub body: Vec<u8>,
    /// When the request line arrived.
    pub received_at: SystemTime,
}

/// An HTTP response to write back.
#[derive(Debug, Clone)]
pub(crate) struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Extra headers (`Content-Length` and `Connection` are added by the server).
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: Vec<u8>,
    /// A body generated while it is written, instead of `body`: a huge or
    /// endless answer the fake does not hold in memory.
    pub stream: Option<StreamedBody>,
}

/// A body written as it is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamedBody {
    /// `len` bytes of JSON-looking filler, with a `Content-Length`.
    Sized(usize),
    /// Filler without end (no `Content-Length`); the connection closes when
    /// the client stops reading.
    Endless,
}

/// Request handler: `None` hangs up without answering.
pub(crate) type Handler = Arc<dyn Fn(HttpRequest) -> Option<HttpResponse> + Send + Sync>;

/// An HTTP server bound to one address.
pub(crate) struct HttpServer {
    tcp: TcpServer,
}

impl HttpServer {
    /// Binds `addr` and serves every request with `handler`.
    pub(crate) fn bind(addr: &str, handler: Handler) -> io::Result<HttpServer> {
        let conn_handler: ConnHandler = Arc::new(move |stream, conns| {
            serve_connection(stream, &conns, &handler);
        });
        Ok(HttpServer {
            tcp: TcpServer::bind(addr, conn_handler)?,
        })
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.tcp.local_addr()
    }

    /// Closes the listener and every open connection.
    pub(crate) fn shutdown(&mut self) {
        self.tcp.shutdown();
    }
}

/// Why reading a request stopped.
enum ReadError {
    /// The client sent something that is not HTTP/1.x: answer 400 and close.
    Malformed(&'static str),
    /// The body is larger than [`MAX_BODY`]: answer 413 and close.
    TooLarge,
    /// The socket failed or timed out: just close.
    Io,
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Io
    }
}

fn serve_connection(stream: TcpStream, conns: &Arc<Connections>, handler: &Handler) {
    let Ok(guard) = conns.register(&stream) else {
        return;
    };
    if stream.set_read_timeout(Some(IDLE_TIMEOUT)).is_err() {
        return;
    }
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let (request, keep_alive) = match read_request(&mut reader, &mut writer) {
            Ok(Some(parsed)) => parsed,
            Ok(None) | Err(ReadError::Io) => break,
            Err(ReadError::Malformed(why)) => {
                let body = format!("{{\"error\":\"Bad request: {why}\"}}");
                let _ = write_response(&mut writer, &plain(400, body), false);
                break;
            }
            Err(ReadError::TooLarge) => {
                let body = "{\"error\":\"Request body too large\"}".to_string();
                let _ = write_response(&mut writer, &plain(413, body), false);
                break;
            }
        };
        let Some(response) = handler(request) else {
            break;
        };
        if !guard.is_open() || write_response(&mut writer, &response, keep_alive).is_err() {
            break;
        }
        if !keep_alive {
            break;
        }
    }
    let _ = writer.shutdown(std::net::Shutdown::Both);
}

fn plain(status: u16, body: String) -> HttpResponse {
    HttpResponse {
        stream: None,
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: body.into_bytes(),
    }
}

/// Reads one line (without CRLF) of at most [`MAX_LINE`] bytes.
///
/// `Ok(None)` on EOF before any byte.
fn read_line(reader: &mut BufReader<TcpStream>) -> Result<Option<String>, ReadError> {
    let mut raw = Vec::new();
    let n = reader.by_ref().take(MAX_LINE).read_until(b'\n', &mut raw)?;
    if n == 0 {
        return Ok(None);
    }
    if raw.last() != Some(&b'\n') {
        return Err(if n as u64 >= MAX_LINE {
            ReadError::Malformed("line too long")
        } else {
            ReadError::Io
        });
    }
    raw.pop();
    if raw.last() == Some(&b'\r') {
        raw.pop();
    }
    String::from_utf8(raw)
        .map(Some)
        .map_err(|_| ReadError::Malformed("line is not UTF-8"))
}

/// Reads the next request; `Ok(None)` when the client closed the connection
/// between requests. Also returns whether the connection stays open after it.
fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> Result<Option<(HttpRequest, bool)>, ReadError> {
    // Tolerate stray empty lines between requests (RFC 9112 §2.2).
    let line = loop {
        match read_line(reader)? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let received_at = SystemTime::now();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed("request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Malformed("method"));
    }
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Malformed("HTTP version")),
    };
    if !target.starts_with('/') {
        return Err(ReadError::Malformed("request target"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };

    let mut headers = Vec::new();
    loop {
        let Some(line) = read_line(reader)? else {
            return Err(ReadError::Io);
        };
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::Malformed("too many headers"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed("header line"));
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(ReadError::Malformed("header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };

    let connection = header("connection").unwrap_or("").to_ascii_lowercase();
    let keep_alive = if http10 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| ReadError::Malformed("Content-Length"))?;
        if len > MAX_BODY {
            return Err(ReadError::TooLarge);
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    } else {
        Vec::new()
    };

    let request = HttpRequest {
        method: method.to_string(),
        path,
        query,
        headers,
        body,
        received_at,
    };
    Ok(Some((request, keep_alive)))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?.ok_or(ReadError::Io)?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_hex, 16).map_err(|_| ReadError::Malformed("chunk size"))?;
        if body.len().saturating_add(size) > MAX_BODY {
            return Err(ReadError::TooLarge);
        }
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(reader)?.ok_or(ReadError::Io)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.ok_or(ReadError::Io)?.is_empty() {
            return Err(ReadError::Malformed("chunk terminator"));
        }
    }
}

fn write_response(
    out: &mut TcpStream,
    response: &HttpResponse,
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason_phrase(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let keep_alive = keep_alive && response.stream != Some(StreamedBody::Endless);
    match response.stream {
        Some(StreamedBody::Sized(len)) => head.push_str(&format!("Content-Length: {len}\r\n")),
        Some(StreamedBody::Endless) => {}
        None => head.push_str(&format!("Content-Length: {}\r\n", response.body.len())),
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut message = head.into_bytes();
    let Some(stream) = response.stream else {
        message.extend_from_slice(&response.body);
        out.write_all(&message)?;
        return out.flush();
    };
    out.write_all(&message)?;
    // `[` then `0,` forever: looks like the start of a JSON array.
    let filler = b"0,".repeat(32 * 1024);
    out.write_all(b"[")?;
    let mut left = match stream {
        StreamedBody::Sized(len) => len.saturating_sub(1),
        StreamedBody::Endless => usize::MAX,
    };
    while left > 0 {
        let n = left.min(filler.len());
        out.write_all(&filler[..n])?;
        left -= n;
    }
    out.flush()
}
