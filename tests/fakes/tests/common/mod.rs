//! Test helpers: a tiny std-only HTTP/1.1 client and a WebSocket client.
//! Declared once, in `tests/tests.rs`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::{Message, WebSocket};

/// Generous timeout for anything a busy 2-core machine should still manage.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// One HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// `host:port` of an `http://host:port` base URL.
pub fn host_of(base: &str) -> &str {
    base.trim_start_matches("http://")
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or("")
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub fn request(
    base: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> io::Result<Resp> {
    let mut stream = TcpStream::connect(host_of(base))?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        host_of(base)
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or(""));
    stream.write_all(head.as_bytes())?;
    read_response(&mut BufReader::new(stream))
}

/// GET `base` + `target`, panicking on I/O errors.
pub fn get(base: &str, target: &str) -> Resp {
    request(base, "GET", target, &[], None).unwrap_or_else(|e| panic!("GET {target}: {e}"))
}

/// POST JSON to `base` + `target`, panicking on I/O errors.
pub fn post(base: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    request(base, "POST", target, &all, Some(body)).unwrap_or_else(|e| panic!("POST {target}: {e}"))
}

/// Reads exactly one response (Content-Length framed) from `reader`.
pub fn read_response<R: Read>(reader: &mut BufReader<R>) -> io::Result<Resp> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no response"));
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("status line {line:?}"))
        })?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Sends raw bytes and returns whatever comes back until the server closes.
pub fn raw(base: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(host_of(base)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `cond` every 10 ms until true or [`PATIENCE`] passed.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// A WebSocket client with a read timeout.
pub type Ws = WebSocket<TcpStream>;

/// Connects to `url` (`ws://host:port/path?query`); reads time out after `read_timeout`.
pub fn ws_connect(url: &str, read_timeout: Duration) -> Result<Ws, String> {
    let stream = TcpStream::connect(host_of(url)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(PATIENCE))
        .map_err(|e| e.to_string())?;
    let (ws, _) = tungstenite::client(url, stream).map_err(|e| e.to_string())?;
    ws.get_ref()
        .set_read_timeout(Some(read_timeout))
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// What a client read produced.
#[derive(Debug)]
pub enum Got {
    Msg(Message),
    /// Read timed out: nothing arrived.
    Nothing,
    /// The connection ended (error or close).
    Closed(String),
}

/// One read on `ws`.
pub fn ws_read(ws: &mut Ws) -> Got {
    match ws.read() {
        Ok(m) => Got::Msg(m),
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Got::Nothing
        }
        Err(e) => Got::Closed(e.to_string()),
    }
}

/// Reads until a text frame parses as a combined-stream frame; returns (stream, data).
pub fn next_frame(ws: &mut Ws) -> (String, Value) {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Got::Msg(Message::Text(text)) = ws_read(ws) {
            if let Ok(v) = serde_json::from_str::<Value>(text.as_str()) {
                if let (Some(s), Some(d)) = (v["stream"].as_str(), v.get("data")) {
                    return (s.to_string(), d.clone());
                }
            }
        }
    }
    panic!("no stream frame within {PATIENCE:?}");
}
