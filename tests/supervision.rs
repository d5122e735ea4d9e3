//! systemd supervision without systemd: the real binary against a fake
//! `NOTIFY_SOCKET` (a unix datagram socket this test reads), plus `/health`,
//! clean stop on SIGTERM, and the journald-or-stderr choice.

use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{http_get, wait_until, Running, TempDir};

/// Every job switched off.
const NO_JOBS: &str =
    "funding_stream,funding_health,volume_spike,liquid_universe,open_interest,user_alerts,telegram";

/// Every datagram received, with when it arrived.
type Messages = Arc<Mutex<Vec<(Instant, String)>>>;

/// Binds a fake notify socket and collects what arrives on a thread.
fn fake_notify_socket(dir: &TempDir) -> (std::path::PathBuf, Messages) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("binding the fake notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("setting a read timeout");
    let messages: Messages = Arc::default();
    let sink = messages.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    if let Ok(mut all) = sink.lock() {
                        all.push((Instant::now(), text));
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    });
    (path, messages)
}

fn received(messages: &Messages) -> Vec<(Instant, String)> {
    messages.lock().map(|m| m.clone()).unwrap_or_default()
}

fn count(messages: &Messages, needle: &str) -> usize {
    received(messages)
        .iter()
        .filter(|(_, m)| m.contains(needle))
        .count()
}

/// `volspike run --local` with every job off, watchdog pings every half
/// second to a fake notify socket, and `wedge` (`loop@seconds`) stopping a
/// loop on purpose; returns once the first pings have arrived.
fn start_wedged(dir: &TempDir, wedge: &str) -> (Running, Messages) {
    let (socket, messages) = fake_notify_socket(dir);
    let socket = socket.to_string_lossy().into_owned();
    let app = Running::start(
        dir,
        &["--local"],
        &[
            ("NOTIFY_SOCKET", socket.as_str()),
            ("WATCHDOG_USEC", "1000000"),
            ("VOLSPIKE_WEDGE", wedge),
            ("VOLSPIKE_DISABLED_JOBS", NO_JOBS),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(30), || (count(&messages, "WATCHDOG=1")
            >= 2)
            .then_some(()))
        .is_some(),
        "pings before the wedge; log:\n{}",
        app.log_text()
    );
    (app, messages)
}

#[test]
fn ready_status_watchdog_and_stopping_on_a_fake_notify_socket() {
    let dir = TempDir::new("notify");
    let (socket, messages) = fake_notify_socket(&dir);
    let socket = socket.to_string_lossy().into_owned();
    let mut app = Running::start(
        &dir,
        &["--local"],
        &[
            ("NOTIFY_SOCKET", socket.as_str()),
            ("WATCHDOG_USEC", "1000000"),
            // Supervision alone: no job that could fail against the
            // closed Binance port and turn /health 503 mid-test.
            ("VOLSPIKE_DISABLED_JOBS", NO_JOBS),
        ],
    );

    let ready = wait_until(Duration::from_secs(30), || {
        received(&messages)
            .into_iter()
            .find(|(_, m)| m.contains("READY=1"))
    });
    let (_, ready) = ready.unwrap_or_else(|| panic!("no READY=1; log:\n{}", app.log_text()));
    assert!(
        ready.contains("STATUS="),
        "READY comes with a status line: {ready}"
    );
    // READY means the HTTP port is bound: /health answers right away.
    let (status, body) = http_get(&app.addr, "/health").expect("/health after READY");
    assert_eq!(status, 200, "{body}");

    // WATCHDOG_USEC=1s: pings every half second while all loops are alive.
    let pinged = wait_until(Duration::from_secs(20), || {
        (count(&messages, "WATCHDOG=1") >= 3).then_some(())
    });
    assert!(
        pinged.is_some(),
        "expected watchdog pings; got {:?}",
        received(&messages)
    );

    app.terminate();
    let exit = app.wait_exit(Duration::from_secs(10));
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(0),
        "clean exit within 10 s; log:\n{}",
        app.log_text()
    );
    assert!(
        count(&messages, "STOPPING=1") >= 1,
        "{:?}",
        received(&messages)
    );
}

#[test]
fn a_wedged_loop_stops_the_watchdog_pings() {
    let dir = TempDir::new("wedge");
    // The scheduler really stops 2 s after start; its deadline is 10 s.
    let (app, messages) = start_wedged(&dir, "scheduler@2");
    // Once the scheduler is past its deadline, /health says so and pings stop.
    let degraded = wait_until(Duration::from_secs(40), || {
        http_get(&app.addr, "/health")
            .ok()
            .filter(|(status, _)| *status == 503)
    });
    let (_, body) =
        degraded.unwrap_or_else(|| panic!("/health never degraded; log:\n{}", app.log_text()));
    let json: serde_json::Value = serde_json::from_str(&body).expect("/health is JSON");
    let scheduler = json["loops"]
        .as_array()
        .and_then(|loops| loops.iter().find(|l| l["name"] == "scheduler"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(scheduler["alive"], false, "{body}");

    let pings_then = count(&messages, "WATCHDOG=1");
    std::thread::sleep(Duration::from_secs(3));
    let pings_later = count(&messages, "WATCHDOG=1");
    assert_eq!(
        pings_then, pings_later,
        "no pings while a critical loop is wedged"
    );
    let log = app.log_text();
    assert!(log.contains("wedging this loop on purpose"), "{log}");
    assert!(log.contains("withholding watchdog pings"), "{log}");
}

#[test]
fn logs_are_plain_text_on_stderr_outside_the_journal() {
    let dir = TempDir::new("stderr-log");
    let mut app = Running::start(&dir, &["--local"], &[]);
    assert!(app.wait_http());
    app.terminate();
    let _ = app.wait_exit(Duration::from_secs(10));
    let log = app.log_text();
    assert!(log.contains("INFO") && log.contains("ready"), "{log}");
    assert!(log.contains("logging=Stderr"), "{log}");
}

#[test]
fn journal_stream_matching_stderr_selects_journald() {
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("journal-log");
    // Create the log file first so its device and inode can be named in
    // JOURNAL_STREAM, as systemd does for a service whose stderr is the journal.
    let log = dir.join("volspike.log");
    crate::common::write(&log, "");
    let meta = std::fs::metadata(&log).expect("stat log");
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let mut app = Running::start(&dir, &["--local"], &[("JOURNAL_STREAM", stream.as_str())]);
    assert!(app.wait_http());
    app.terminate();
    let _ = app.wait_exit(Duration::from_secs(10));
    let text = app.log_text();
    // Running::start truncates the same file: the inode named is stderr's.
    assert_eq!(std::fs::metadata(&log).expect("stat log").ino(), meta.ino());
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        // A real journald: events went there, not to stderr.
        assert!(!text.contains("logging=Stderr"), "{text}");
    } else {
        // No journald on this machine: the journal was detected, its socket
        // was not, and logging fell back to stderr saying why.
        assert!(text.contains("journald socket unavailable"), "{text}");
    }
}

#[test]
fn a_wedged_accept_loop_stops_the_watchdog_pings() {
    let dir = TempDir::new("wedge-http");
    // The accept loop ("http") really stops 2 s after start; its deadline
    // is 10 s. Idle handler threads must not keep the pings coming.
    let (app, messages) = start_wedged(&dir, "http@2");
    let withheld = wait_until(Duration::from_secs(40), || {
        app.log_text()
            .contains("withholding watchdog pings")
            .then_some(())
    });
    assert!(withheld.is_some(), "log:\n{}", app.log_text());
    let pings_then = count(&messages, "WATCHDOG=1");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        pings_then,
        count(&messages, "WATCHDOG=1"),
        "no pings while the accept loop is wedged"
    );
    let log = app.log_text();
    assert!(log.contains("loops=[\"http\"]"), "{log}");
    // Nothing accepts: a client gets no answer at all.
    assert!(http_get(&app.addr, "/health").is_err());
}
