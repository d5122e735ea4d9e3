//! `GET /metrics` of the real binary fed by the fake Binance, parsed by the
//! reference Prometheus text parser (Python's `prometheus_client`, from
//! Debian's python3-prometheus-client, installed by tests/prereqs.sh), and
//! scraped twice: counters move as the stream delivers and requests arrive.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::market::{fake_binance, start_appliance, wait_for_table};
use common::{http_get, wait_until, TempDir};
use serde_json::Value;

/// Debian's interpreter: the one python3-prometheus-client installs into
/// (a pyenv or venv `python3` earlier on PATH would not have it).
const PYTHON: &str = "/usr/bin/python3";

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    /// `counter`, `gauge`, `summary`, …
    kind: String,
    /// Label pairs.
    labels: BTreeMap<String, String>,
    /// The value.
    value: f64,
}

/// Parses `text` with the reference parser; fails the test on any error.
fn parse(text: &str) -> Vec<(String, Sample)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/metrics_parse.py");
    let mut child = Command::new(PYTHON)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {PYTHON} (tests/prereqs.sh installs python3-prometheus-client): {e}")
        });
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(text.as_bytes())
        .expect("feeding the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the Prometheus parser rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("parser JSON line");
            let labels = v["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                Sample {
                    kind: v["type"].as_str().unwrap_or_default().to_string(),
                    labels,
                    value: v["value"].as_f64().unwrap_or(f64::NAN),
                },
            )
        })
        .collect()
}

/// The value of sample `name` with exactly `labels`, if present.
fn value(samples: &[(String, Sample)], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .iter()
        .find(|(n, s)| n == name && s.labels == want)
        .map(|(_, s)| s.value)
}

fn scrape(addr: &str) -> (String, Vec<(String, Sample)>) {
    let (status, text) = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(status, 200, "{text}");
    let samples = parse(&text);
    (text, samples)
}

/// `promtool check metrics` (Prometheus's own linter: naming, units,
/// `_total` on counters, HELP on every family). Missing promtool is a
/// failure in CI and in tests/run.sh, a loud skip elsewhere.
fn promtool_check(text: &str) {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("promtool"))
            .find(|p| p.is_file())
    });
    let Some(promtool) = found else {
        // CI (and tests/run.sh, which installs it first) must run the check.
        assert!(
            std::env::var_os("CI").is_none() && std::env::var_os("VOLSPIKE_FULL_SUITE").is_none(),
            "promtool is not installed: tests/prereqs.sh installs Debian's `prometheus` package"
        );
        eprintln!(
            "\n*** SKIPPED promtool check metrics: promtool is not installed (tests/prereqs.sh installs Debian's `prometheus` package) ***\n"
        );
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(text.as_bytes())
        .expect("feeding promtool");
    let out = child.wait_with_output().expect("promtool output");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- /metrics ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn metrics_parse_and_counters_move() {
    let dir = TempDir::new("metrics");
    let fake = fake_binance();
    let app = start_appliance(&dir, &fake, &[]);
    wait_for_table(&app);

    let (text, first) = scrape(&app.addr);
    promtool_check(&text);
    let must = |samples: &[(String, Sample)], name: &str, labels: &[(&str, &str)]| {
        value(samples, name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in /metrics:\n{text}"))
    };
    let version = env!("CARGO_PKG_VERSION");
    let build = first
        .iter()
        .find(|(n, _)| n == "volspike_build_info")
        .map(|(_, s)| s.clone())
        .unwrap_or_else(|| panic!("no build info:\n{text}"));
    assert_eq!(build.value, 1.0);
    assert_eq!(
        build.labels.get("version").map(String::as_str),
        Some(version)
    );
    assert!(build.labels.contains_key("commit") && build.labels.contains_key("target"));
    // Types as declared.
    for (name, kind) in [
        ("volspike_job_runs_total", "counter"),
        ("volspike_websocket_messages_total", "counter"),
        ("volspike_http_requests_total", "counter"),
        ("volspike_binance_weight_used", "gauge"),
        ("volspike_healthy", "gauge"),
    ] {
        let found = first.iter().find(|(n, _)| n == name);
        assert_eq!(
            found.map(|(_, s)| s.kind.as_str()),
            Some(kind),
            "{name}:\n{text}"
        );
    }
    // Only scheduled jobs have durations; funding_stream is not ticked, so
    // the family is declared but may have no sample yet.
    assert!(text.contains("# TYPE volspike_job_duration_seconds summary"));
    assert_eq!(must(&first, "volspike_healthy", &[]), 1.0);
    assert_eq!(
        must(
            &first,
            "volspike_websocket_state",
            &[("state", "connected")]
        ),
        1.0
    );
    for kind in ["volume_alert", "oi_alert", "user_alert_trigger"] {
        assert_eq!(
            must(&first, "volspike_alerts_enqueued_total", &[("type", kind)]),
            0.0
        );
    }
    must(&first, "volspike_binance_weight_used", &[]);
    must(&first, "volspike_websocket_reconnects_total", &[]);
    let messages = must(&first, "volspike_websocket_messages_total", &[]);

    // Traffic with known routes and statuses: labels are route templates.
    // The funding API serves a snapshot rebuilt about every second, so it
    // may still answer 503 just after the table filled: wait for a 200.
    let served = wait_until(Duration::from_secs(30), || {
        let (status, _) = http_get(&app.addr, "/funding/AAAUSDT").ok()?;
        (status == 200).then_some(())
    });
    assert!(served.is_some(), "the funding API never served AAAUSDT");
    for (path, expected) in [
        ("/funding/bbbusdt", 200),
        ("/funding/NOPEUSDT", 404),
        ("/no/such/thing", 404),
    ] {
        let (status, body) = http_get(&app.addr, path).expect("GET");
        assert_eq!(status, expected, "{path}: {body}");
    }

    // The stream keeps delivering (the fake pushes every second): messages
    // move, while funding_stream's runs stay the one connection it opened
    // (frames are not runs).
    let moved = wait_until(Duration::from_secs(60), || {
        let (text, now) = scrape(&app.addr);
        let m = value(&now, "volspike_websocket_messages_total", &[])?;
        (m > messages + 2.0).then_some((text, now))
    });
    let (text, second) = moved.unwrap_or_else(|| {
        panic!(
            "websocket messages did not move from {messages}; log:\n{}",
            app.log_text()
        )
    });
    assert_eq!(
        value(
            &second,
            "volspike_job_runs_total",
            &[("volspike_job", "funding_stream")],
        ),
        Some(1.0),
        "funding_stream's runs are its connections:\n{text}"
    );
    // The process metrics every Prometheus client exports.
    let rss = must(&second, "process_resident_memory_bytes", &[]);
    assert!(rss > 1e6 && rss < 1e9, "resident memory {rss}");
    assert!(must(&second, "process_open_fds", &[]) >= 3.0);
    assert!(must(&second, "process_cpu_seconds_total", &[]) > 0.0);
    let start = must(&second, "process_start_time_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    assert!(
        start <= now + 1.0 && start > now - 600.0,
        "start time {start}, now {now}"
    );
    let last_message = must(
        &second,
        "volspike_websocket_last_message_timestamp_seconds",
        &[],
    );
    assert!(
        (now - last_message).abs() < 600.0,
        "last message at {last_message}, now {now}"
    );
    assert!(
        !text.contains("{job=") && !text.contains(",job="),
        "a `job` label clashes with Prometheus's target label:\n{text}"
    );
    promtool_check(&text);
    let requests = |route: &str, status: &str| {
        value(
            &second,
            "volspike_http_requests_total",
            &[("route", route), ("status", status)],
        )
        .unwrap_or_else(|| panic!("no request count for {route} {status}:\n{text}"))
    };
    assert_eq!(requests("/funding/{symbol}", "200"), 2.0);
    assert_eq!(requests("/funding/{symbol}", "404"), 1.0);
    assert_eq!(requests("other", "404"), 1.0);
    // Every scrape counts itself (after answering: the second saw the first).
    assert!(requests("/metrics", "200") >= 1.0);
    assert!(
        !text.contains("NOPEUSDT") && !text.contains("/no/such"),
        "raw paths leaked into labels:\n{text}"
    );
}
