//! The `fake-binance` and `fake-backend` executables.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{get, next_frame, post, ws_connect};

/// A child process killed (by its own handle) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `exe` with `args` and returns it with its READY line.
fn start(exe: &str, args: &[&str]) -> (Running, String) {
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("READY line");
    assert!(line.starts_with("READY "), "{line:?}");
    (running, line.trim_end().to_string())
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(' ')
        .find_map(|part| part.strip_prefix(name))
        .unwrap_or_else(|| panic!("{name} missing in {line}"))
}

#[test]
fn fake_binance_binary_serves_rest_and_ws() {
    let (_child, ready) = start(
        env!("CARGO_BIN_EXE_fake-binance"),
        &[
            "--symbols",
            "10",
            "--ws-interval-ms",
            "100",
            "--latency-ms",
            "0",
        ],
    );
    let rest = field(&ready, "rest=");
    let ws = field(&ready, "ws=");
    assert!(rest.starts_with("http://127.0.0.1:"));
    assert!(ws.starts_with("ws://127.0.0.1:") && ws.ends_with("/market"));
    let info = get(rest, "/fapi/v1/exchangeInfo").json();
    assert_eq!(info["symbols"].as_array().map(Vec::len), Some(15));
    let mut socket = ws_connect(
        &format!("{ws}/stream?streams=!markPrice@arr"),
        Duration::from_millis(100),
    )
    .expect("ws");
    assert_eq!(next_frame(&mut socket).0, "!markPrice@arr");
}

#[test]
fn fake_binance_binary_rejects_bad_arguments() {
    for args in [&["--symbols", "many"][..], &["--bogus", "1"], &["--rest"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_fake-binance"))
            .args(args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: fake-binance"));
    }
}

#[test]
fn fake_backend_binary_logs_requests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("fake-backend-bin.jsonl");
    let log_arg = log.to_string_lossy().into_owned();
    let (_child, ready) = start(
        env!("CARGO_BIN_EXE_fake-backend"),
        &["--addr", "127.0.0.1:0", "--log", &log_arg],
    );
    let url = field(&ready, "url=");
    let resp = post(
        url,
        "/api/volume-alerts/ingest",
        &[("X-API-Key", "k")],
        r#"{"symbol":"BTCUSDT"}"#,
    );
    assert_eq!(resp.status, 400);
    let text = std::fs::read_to_string(&log).expect("log file");
    let line: serde_json::Value =
        serde_json::from_str(text.lines().next().expect("one line")).expect("JSON");
    assert_eq!(line["path"], "/api/volume-alerts/ingest");
    assert_eq!(line["body"]["symbol"], "BTCUSDT");

    let out = Command::new(env!("CARGO_BIN_EXE_fake-backend"))
        .arg("--nope")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}
