//! Helpers shared by the integration tests: run the real binary, find free
//! ports, make temporary directories, speak a little HTTP. Declared once,
//! in `tests/tests.rs`.
#![allow(dead_code)] // each test file uses a different subset

pub mod cdp;
pub mod jobs;
pub mod market;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test: cargo's build of this tree, or the one named by
/// `VOLSPIKE_TEST_BIN` (to measure a release build with the same tests).
pub fn bin() -> PathBuf {
    std::env::var_os("VOLSPIKE_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_volspike")))
}

/// A command for the binary with a clean environment (no stray settings from
/// the developer's shell), PATH kept.
pub fn volspike() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    cmd
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral port on 127.0.0.1")
}

/// The temporary directory the unit tests use too.
pub use volspike_fakes::TempDir;

/// A `/proc/<pid>/status` field as a number: KiB for the memory fields
/// (VmRSS, VmHWM), a count for Threads; 0 when the process or field is gone.
pub fn proc_status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// GET `path` on `addr`; returns status and body. Generous timeouts.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `volspike run`, killed on drop.
pub struct Running {
    /// The process.
    pub child: Child,
    /// Its HTTP address.
    pub addr: String,
    /// File receiving its stderr.
    pub log: PathBuf,
}

impl Running {
    /// Starts `volspike run <args>` with `env`, HTTP on a free port, state in `dir`.
    pub fn start(dir: &TempDir, args: &[&str], env: &[(&str, &str)]) -> Running {
        Running::start_with(dir, args, env, |_| {})
    }

    /// [`Running::start`], with `configure` applied to the command last
    /// (resource limits, a pre-exec hook).
    pub fn start_with(
        dir: &TempDir,
        args: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Running {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("volspike.log");
        let stderr = std::fs::File::create(&log).expect("creating the log file");
        let mut cmd = volspike();
        cmd.arg("run")
            .args(args)
            .env("VOLSPIKE_HTTP_ADDR", &addr)
            .env("VOLSPIKE_STATE_DIR", dir.join("state"))
            // Tests never reach Binance: unless a test points these at a
            // fake, they lead to a closed port on loopback.
            .env("BINANCE_FAPI_URL", "http://127.0.0.1:9")
            .env("BINANCE_WS_URL", "ws://127.0.0.1:9/market")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr);
        configure(&mut cmd);
        let child = cmd.spawn().expect("starting volspike run");
        Running { child, addr, log }
    }

    /// Waits for `/health` to answer at all.
    pub fn wait_http(&self) -> bool {
        wait_until(Duration::from_secs(30), || {
            http_get(&self.addr, "/health").ok()
        })
        .is_some()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        signal(self.child.id(), "TERM");
    }

    /// Waits up to `timeout` for exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_until(timeout, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal by name with kill(1): no libc binding needed in tests.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Writes `text` to `path`.
pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("writing a test file");
}

/// A `VOLSPIKE_CLOCK_OFFSET_MS` value that puts the appliance's clock
/// `lead` before the next multiple of `period`, so a wall-clock job runs
/// about `lead` after start instead of up to `period` later.
pub fn clock_offset_before_boundary(period: Duration, lead: Duration) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let period = period.as_millis() as i64;
    let boundary = (now / period + 1) * period;
    (boundary - lead.as_millis() as i64 - now).to_string()
}
