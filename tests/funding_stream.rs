//! The real binary (`volspike run --local`) against the fake Binance
//! WebSocket: a tape ends up value for value in the funding API; dropped,
//! stalled, garbage-fed and legacy-URL sockets are reconnected, data goes
//! stale (503) while down, pings are answered, shutdown is clean.
//!
//! No timing assertions: every wait is "eventually, within a generous
//! patience", so a busy 2-core machine only makes the tests slower.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use volspike_fakes::{Change, FakeBinance, Market, TapeStep};

use crate::common::TempDir;

/// Longest wait for anything that should happen within a few seconds.
const PATIENCE: Duration = Duration::from_secs(45);

/// A running `volspike run --local`; killed on drop if still running.
struct App {
    child: Child,
    http: String,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Its state directory, removed after the process is killed.
    _state_dir: TempDir,
}

impl App {
    fn start(ws_url: &str, rest_url: &str, extra_env: &[(&str, &str)]) -> App {
        let state_dir = TempDir::new("stream");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_volspike"));
        cmd.args(["run", "--local"])
            .env("BINANCE_WS_URL", ws_url)
            .env("BINANCE_FAPI_URL", rest_url)
            .env("VOLSPIKE_HTTP_ADDR", "127.0.0.1:0")
            .env("VOLSPIKE_STATE_DIR", state_dir.path())
            .env("VOLSPIKE_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("JOURNAL_STREAM")
            .env_remove("VOLSPIKE_DISABLED_JOBS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn volspike");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().expect("stderr piped");
        let lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(addr) = http_addr(&line) {
                    let _ = tx.send(addr);
                }
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let http = match rx.recv_timeout(PATIENCE) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "volspike never logged ready; stderr:\n{}",
                    stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
                );
            }
        };
        App {
            child,
            http,
            stderr,
            _state_dir: state_dir,
        }
    }

    fn get(&self, target: &str) -> (u16, Value) {
        get(&self.http, target)
    }

    fn log(&self) -> String {
        self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// SIGTERM, then the exit code (within the patience).
    fn stop(&mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `http=ADDR` field of the "ready" log line.
fn http_addr(line: &str) -> Option<String> {
    if !line.contains("ready") {
        return None;
    }
    let start = line.find("http=")? + 5;
    let addr: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    (!addr.is_empty()).then_some(addr)
}

/// One HTTP/1.0 GET; (0, Null) when the connection fails.
fn get(addr: &str, target: &str) -> (u16, Value) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, Value::Null);
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
    if stream
        .write_all(format!("GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return (0, Value::Null);
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Polls `check` until it returns `Some`, or panics with `what` and the log.
fn eventually<T>(app: &App, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for: {what}\n--- volspike log ---\n{}",
                app.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The fake sends decimals with 8 places; the API returns what was sent.
fn dec8(x: f64) -> f64 {
    format!("{x:.8}").parse().expect("decimal")
}

fn fake(n: usize) -> FakeBinance {
    let fake = FakeBinance::start(Market::synthetic(n)).expect("start fake binance");
    fake.ws_set_interval(Duration::from_millis(200));
    fake
}

fn fresh(app: &App, symbol: &str) {
    eventually(app, &format!("/funding/{symbol} answers 200"), || {
        (app.get(&format!("/funding/{symbol}")).0 == 200).then_some(())
    });
}

/// Compares every fake symbol with `/funding`; `None` while any differs.
fn mismatches(fake: &FakeBinance, app: &App) -> Vec<String> {
    let (status, all) = app.get("/funding");
    if status != 200 {
        return vec![format!("/funding answered {status}")];
    }
    let market = fake.market().snapshot();
    let mut wrong = Vec::new();
    for s in market.iter() {
        let Some(got) = all["data"]
            .as_array()
            .and_then(|d| d.iter().find(|o| o["symbol"] == s.symbol.as_str()))
        else {
            wrong.push(format!("{} missing", s.symbol));
            continue;
        };
        let expect_rate = s.funding_rate.map(dec8);
        let expect_next = s.funding_rate.map(|_| s.next_funding_time);
        let ok = got["markPrice"].as_f64() == Some(dec8(s.mark_price))
            && got["indexPrice"].as_f64() == Some(dec8(s.index_price))
            && got["fundingRate"].as_f64() == expect_rate
            && got["nextFundingTime"].as_i64() == expect_next;
        if !ok {
            wrong.push(format!("{}: got {got}", s.symbol));
        }
    }
    if all["count"].as_u64() != Some(market.len() as u64) {
        wrong.push(format!("count {} != {}", all["count"], market.len()));
    }
    wrong
}

#[test]
fn a_tape_reaches_the_funding_api_value_for_value() {
    let fake = fake(30);
    let mut app = App::start(&fake.ws_url(), &fake.rest_url(), &[]);
    fresh(&app, "BTCUSDT");

    let mark = |after_ms, symbol: &str, price, funding| TapeStep {
        after: Duration::from_millis(after_ms),
        symbol: symbol.into(),
        change: Change::Mark {
            price,
            index: price * 0.999,
            funding,
        },
    };
    let tape = vec![
        mark(0, "ETHUSDT", 3456.12345678, Some(-0.00012345)),
        mark(100, "BTCUSDT", 64000.5, Some(0.0003)),
        mark(300, "SYM0001USDT", 0.01234567, None),
        mark(600, "ETHUSDT", 3460.87654321, Some(0.00007)),
        TapeStep {
            after: Duration::from_millis(700),
            symbol: "BTCUSDT".into(),
            // The ticker's `p` (price change) moves with this; the mark must not.
            change: Change::Last { price: 1.0 },
        },
    ];
    assert_eq!(fake.market().play(tape).join(), 5);
    let mut last = Vec::new();
    eventually(&app, "every symbol matches the fake", || {
        last = mismatches(&fake, &app);
        last.is_empty().then_some(())
    });

    let (status, eth) = app.get("/funding/ethusdt");
    assert_eq!(status, 200);
    assert_eq!(eth["markPrice"].as_f64(), Some(3460.87654321));
    assert_eq!(eth["fundingRate"].as_f64(), Some(0.00007));
    assert!(eth["ageSeconds"].as_f64().is_some());
    let (_, btc) = app.get("/funding/BTCUSDT");
    assert_eq!(
        btc["markPrice"].as_f64(),
        Some(64000.5),
        "never a ticker's p"
    );
    // The old API's types: updatedAt is epoch seconds as a float.
    let now_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let updated = btc["updatedAt"].as_f64().unwrap_or(0.0);
    assert!(btc["updatedAt"].is_f64(), "{btc}");
    assert!(
        (now_secs - updated).abs() < 600.0,
        "{updated} vs {now_secs}"
    );
    // A quarterly has no funding: 404 with the old error shape, not nulls.
    let (status, quarterly) = app.get("/funding/btcusdt_261225");
    assert_eq!(status, 404, "{quarterly}");
    assert!(quarterly["detail"]["error"].is_string(), "{quarterly}");
    let (status, unknown) = app.get("/funding/NOSUCHUSDT");
    assert_eq!(status, 404);
    assert!(unknown["detail"]["error"].is_string(), "{unknown}");

    let (status, batch) = app.get("/funding/batch?symbols=btcusdt,ETHUSDT,NOSUCHUSDT");
    assert_eq!(status, 200);
    assert_eq!(batch["found"], 2);
    assert_eq!(batch["total"], 3);
    assert_eq!(batch["missing"], serde_json::json!(["NOSUCHUSDT"]));

    // Pings are answered with the same payload.
    fake.ws_send_ping(b"volspike-ping-42");
    eventually(&app, "a pong with the ping's payload", || {
        fake.ws_pongs()
            .iter()
            .any(|p| p.as_slice() == b"volspike-ping-42")
            .then_some(())
    });

    let (status, health) = app.get("/funding/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["websocketConnected"], true);
    assert_eq!(
        health["symbolCount"].as_u64(),
        Some(fake.market().snapshot().len() as u64)
    );
    // Symbol updates, not frames: the first frame alone carries every symbol.
    let symbols = fake.market().snapshot().len() as u64;
    assert!(
        health["messagesReceived"]
            .as_u64()
            .is_some_and(|n| n >= symbols),
        "{health}"
    );
    assert!(health["uptimeSeconds"].is_f64(), "{health}");
    let connected = health["lastConnectedTime"].as_f64().unwrap_or(0.0);
    assert!(health["lastConnectedTime"].is_f64(), "{health}");
    assert!((now_secs - connected).abs() < 600.0, "{connected}");
    let (_, overall) = app.get("/health");
    assert_eq!(overall["websocket"]["connected"], true, "{overall}");
    eventually(&app, "/health shows funding_stream ok", || {
        (app.get("/health").1["jobs"]["funding_stream"]["state"] == "ok").then_some(())
    });

    assert_eq!(app.stop(), Some(0), "clean exit on SIGTERM");
    eventually(&app, "the fake sees the socket closed", || {
        (fake.ws_connections() == 0).then_some(())
    });
    let log = app.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("funding stream closed for shutdown"), "{log}");
}

#[test]
fn drop_garbage_and_stall_reconnect_and_go_stale() {
    let fake = fake(10);
    let mut app = App::start(
        &fake.ws_url(),
        &fake.rest_url(),
        &[
            ("VOLSPIKE_FUNDING_STALE_SECS", "3"),
            ("VOLSPIKE_WS_SILENCE_SECS", "3"),
        ],
    );
    fresh(&app, "BTCUSDT");

    // Garbage frames are skipped: same connection, data keeps flowing.
    let before = fake.ws_total_connections();
    for _ in 0..5 {
        fake.ws_send_garbage();
    }
    eventually(&app, "garbage frames counted", || {
        (app.get("/health").1["websocket"]["garbageFrames"].as_u64() >= Some(2)).then_some(())
    });
    fake.market().update("ETHUSDT", |s| s.mark_price = 1111.0);
    eventually(&app, "data after garbage", || {
        (app.get("/funding/ETHUSDT").1["markPrice"].as_f64() == Some(1111.0)).then_some(())
    });
    assert_eq!(
        fake.ws_total_connections(),
        before,
        "garbage must not reconnect"
    );

    // An abrupt drop: reconnected, data fresh again.
    fake.ws_drop_all();
    eventually(&app, "a reconnect after the drop", || {
        (fake.ws_total_connections() > before).then_some(())
    });
    fake.market().update("ETHUSDT", |s| s.mark_price = 2222.0);
    eventually(&app, "data after the drop", || {
        (app.get("/funding/ETHUSDT").1["markPrice"].as_f64() == Some(2222.0)).then_some(())
    });
    eventually(&app, "reconnectAttempts counted", || {
        (app.get("/funding/health").1["reconnectAttempts"].as_u64() >= Some(1)).then_some(())
    });

    // A stall (socket open, nothing sent): the silence limit reconnects, and
    // while nothing flows the data goes stale.
    let before_stall = fake.ws_total_connections();
    fake.ws_set_stalled(true);
    eventually(&app, "503 while stalled", || {
        (app.get("/funding/BTCUSDT").0 == 503).then_some(())
    });
    assert_eq!(app.get("/funding").0, 503);
    assert_eq!(app.get("/funding/batch?symbols=BTCUSDT").0, 503);
    let (status, health) = app.get("/funding/health");
    assert_eq!(status, 503);
    assert_ne!(health["status"], "healthy");
    eventually(&app, "a reconnect after silence", || {
        (fake.ws_total_connections() > before_stall).then_some(())
    });
    eventually(&app, "/health reports the stream failing", || {
        let (status, h) = app.get("/health");
        (status == 503 && h["jobs"]["funding_stream"]["state"] == "failing").then_some(())
    });

    fake.ws_set_stalled(false);
    fresh(&app, "BTCUSDT");
    eventually(&app, "/health recovers", || {
        (app.get("/health").1["jobs"]["funding_stream"]["state"] == "ok").then_some(())
    });
    assert_eq!(app.stop(), Some(0));
    let log = app.log();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.contains("no data for"),
        "silence logged as the reason:\n{log}"
    );
}

#[test]
fn the_retired_legacy_url_counts_as_dead() {
    let fake = fake(5);
    let mut app = App::start(
        &fake.ws_legacy_url(),
        &fake.rest_url(),
        &[("VOLSPIKE_WS_SILENCE_SECS", "2")],
    );
    eventually(&app, "reconnects away from a silent socket", || {
        (fake.ws_total_connections() >= 2).then_some(())
    });
    let (status, health) = app.get("/funding/health");
    assert_eq!(status, 503);
    assert_eq!(health["symbolCount"], 0);
    assert_eq!(app.get("/funding/BTCUSDT").0, 503, "no data is not a 404");
    assert_eq!(app.stop(), Some(0));
    assert!(!app.log().contains("panicked"));
}

#[test]
fn hostile_requests_get_json_errors() {
    let fake = fake(3);
    let mut app = App::start(&fake.ws_url(), &fake.rest_url(), &[]);
    fresh(&app, "BTCUSDT");
    let many = vec!["BTCUSDT"; 10_000].join(",");
    let too_many = vec!["BTCUSDT"; 1_001].join(",");
    let cases = [
        ("/funding/%ZZ", 400),
        ("/funding/%C3%28", 400),
        ("/funding/batch", 400),
        ("/funding/batch?symbols=%FF", 400),
        ("/funding/nope/extra", 404),
    ];
    for (target, want) in cases {
        let (status, body) = app.get(target);
        assert_eq!(status, want, "{target}: {body}");
        assert!(body["detail"]["error"].is_string(), "{target}: {body}");
    }
    // Over the batch limit but within the request-line limit: the handler's 400.
    let (status, body) = app.get(&format!("/funding/batch?symbols={too_many}"));
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"]["error"].is_string(), "{body}");
    // Over the request-line limit (16 KiB): refused while reading, 414.
    let (status, body) = app.get(&format!("/funding/batch?symbols={many}"));
    assert_eq!(status, 414, "{body}");
    let (status, _) = app.get(&format!("/funding/{}", "A".repeat(50_000)));
    assert!(status == 414 || status == 400, "{status}");
    // Still serving.
    assert_eq!(app.get("/funding/BTCUSDT").0, 200);
    assert_eq!(app.stop(), Some(0));
    assert!(!app.log().contains("panicked"));
}
