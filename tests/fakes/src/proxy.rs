//! [`FakeProxy`]: an HTTP CONNECT proxy on `127.0.0.1`, the kind an operator
//! in a region Binance refuses puts in front of every Binance call. It
//! answers `CONNECT host:port` with `200` and then copies bytes both ways;
//! anything else gets `405`. Every tunnel's target is recorded, so a test
//! can prove which calls went through it; `require_auth` makes it demand a
//! `Proxy-Authorization` header (`407` otherwise).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Longest request head read.
const MAX_HEAD: usize = 16 * 1024;

/// A CONNECT proxy on an ephemeral port of 127.0.0.1. Stops on drop.
pub struct FakeProxy {
    /// Bound address.
    port: u16,
    /// Shared with the accept thread.
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// `host:port` of every CONNECT, in arrival order (refused ones too).
    connects: Mutex<Vec<String>>,
    /// The `Proxy-Authorization` value required, if any.
    auth: Mutex<Option<String>>,
    /// Set on drop: the accept loop ends.
    stopped: AtomicBool,
}

impl FakeProxy {
    /// Starts the proxy.
    pub fn start() -> io::Result<FakeProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        let shared = state.clone();
        thread::Builder::new()
            .name("fake-proxy".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if shared.stopped.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let state = shared.clone();
                    let _ =
                        thread::Builder::new()
                            .name("fake-proxy-conn".into())
                            .spawn(move || {
                                let _ = serve(conn, &state);
                            });
                }
            })?;
        Ok(FakeProxy { port, state })
    }

    /// `http://127.0.0.1:<port>`, for `VOLSPIKE_BINANCE_PROXY` or `HTTPS_PROXY`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every CONNECT target so far (`host:port`).
    pub fn connects(&self) -> Vec<String> {
        self.state
            .connects
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// From now on, a CONNECT without `Proxy-Authorization: <value>` gets 407.
    pub fn require_auth(&self, value: &str) {
        if let Ok(mut auth) = self.state.auth.lock() {
            *auth = Some(value.to_string());
        }
    }
}

impl Drop for FakeProxy {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One client connection: the CONNECT, then the tunnel.
fn serve(mut client: TcpStream, state: &State) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = read_head(&mut client)?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "CONNECT" {
        client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    }
    if let Ok(mut connects) = state.connects.lock() {
        connects.push(target.to_string());
    }
    let required = state.auth.lock().ok().and_then(|a| a.clone());
    if let Some(required) = required {
        let given = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("proxy-authorization"))
            .map(|(_, v)| v.trim().to_string());
        if given.as_deref() != Some(required.as_str()) {
            client.write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
            )?;
            return Ok(());
        }
    }
    let upstream = match TcpStream::connect(target) {
        Ok(s) => s,
        Err(_) => {
            client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")?;
            return Ok(());
        }
    };
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
    client.set_read_timeout(None)?;
    let (mut c_read, mut u_write) = (client.try_clone()?, upstream.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut c_read, &mut u_write);
        let _ = u_write.shutdown(Shutdown::Write);
    });
    let (mut u_read, mut c_write) = (upstream, client);
    let _ = io::copy(&mut u_read, &mut c_write);
    let _ = c_write.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// Reads up to the blank line ending the request head, byte by byte so no
/// tunnelled byte is consumed.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD || stream.read(&mut byte)? == 0 {
            return Err(io::Error::other("no complete request head"));
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
