//! `GET /metrics` of the real binary fed by the fake Binance, parsed by the
//! reference Prometheus text parser (Python's `prometheus_client`, from
//! Debian's python3-prometheus-client, installed by tests/prereqs.sh), and
//! scraped twice: counters move as the stream delivers and requests arrive.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::market::{fake_binance, start_appliance, wait_for_table};
use crate::common::{http_get, wait_until, TempDir};
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
pub(crate) fn promtool_check(text: &str) {
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

/// An alert the fake backend answers 503 to, then accepts.
fn spike_alert() -> volspike::backend::VolumeAlert {
    volspike::backend::VolumeAlert {
        symbol: "BTCUSDT".into(),
        asset: "BTC".into(),
        current_volume: 150e6,
        previous_volume: 45e6,
        volume_ratio: 3.33,
        price: Some(65000.5),
        funding_rate: None,
        candle_direction: None,
        message: "BTCUSDT hourly volume 150.00M (3.33× prev) — VOLUME SPIKE!".into(),
        timestamp: "2025-12-03T14:05:00Z".into(),
        detection_time: None,
        hour_timestamp: "2025-12-03T14:00:00Z".into(),
        is_update: Some(false),
        alert_type: Some(volspike::backend::VolumeAlertType::Spike),
        price_change: None,
        oi_change: None,
    }
}

/// The outbox the appliance runs, with its delivery loop, against the fake
/// backend, and the HTTP context `/metrics` and `/health` read.
struct OutboxRig {
    /// Runs the delivery loop.
    _runtime: tokio::runtime::Runtime,
    /// Stops the loop at the end.
    trigger: volspike::shutdown::ShutdownTrigger,
    /// The outbox under test.
    outbox: volspike::backend::Outbox,
    /// What the HTTP routes read.
    ctx: volspike::http::HttpContext,
}

impl OutboxRig {
    fn start(
        dir: &TempDir,
        fake: &volspike_fakes::FakeBackend,
        settings: volspike::backend::OutboxSettings,
    ) -> OutboxRig {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let state = volspike::state::StateDir::open(dir.path()).expect("state dir");
        let backends = [volspike::config::BackendConfig {
            name: "primary",
            url: fake.url(),
            key: volspike::config::Secret::new("metrics-key"),
            kinds: None,
        }];
        let outbox = volspike::backend::Outbox::open(&state, &backends, settings).expect("outbox");
        let (trigger, shutdown) = volspike::shutdown::channel();
        let liveness = volspike::systemd::liveness::Liveness::new(None);
        {
            let _guard = runtime.enter();
            outbox.start_delivery(&liveness, shutdown);
        }
        let ctx = volspike::http::HttpContext {
            started: std::time::Instant::now(),
            board: Default::default(),
            liveness,
            local: false,
            outbox: Some(outbox.clone()),
            governor: None,
            funding: Default::default(),
            universe: None,
            requests: Default::default(),
            http: Default::default(),
            oi_change_omissions: Default::default(),
            volume_stream: None,
        };
        OutboxRig {
            _runtime: runtime,
            trigger,
            outbox,
            ctx,
        }
    }

    /// The body of `GET path`.
    fn get(&self, path: &str) -> String {
        String::from_utf8(volspike::http::route(&self.ctx, "GET", path).body.to_vec())
            .expect("utf-8")
    }

    /// `/metrics`, as text and parsed.
    fn metrics(&self) -> (String, Vec<(String, Sample)>) {
        let text = self.get("/metrics");
        let samples = parse(&text);
        (text, samples)
    }
}

impl Drop for OutboxRig {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}

/// In process: the outbox the appliance runs, the fake backend, and the
/// same `/metrics` handler. Delivered alerts move only on the backend's
/// 2xx (enqueued moves at once); the oldest pending post is a timestamp,
/// present while it waits.
#[test]
fn alerts_delivered_move_only_once_the_backend_accepts() {
    use volspike::backend::Post;
    use volspike_fakes::FakeBackend;

    let dir = TempDir::new("metrics-delivered");
    let fake = FakeBackend::start().expect("fake backend");
    fake.fail_next(1_000_000, 503);
    let rig = OutboxRig::start(&dir, &fake, crate::common::jobs::fast_outbox());
    let metrics = || rig.metrics();
    let outbox = &rig.outbox;
    let delivered = |samples: &[(String, Sample)]| {
        value(
            samples,
            "volspike_alerts_delivered_total",
            &[("backend", "primary"), ("type", "volume_alert")],
        )
    };
    let (_, before) = metrics();
    assert_eq!(delivered(&before), Some(0.0));
    assert_eq!(
        value(
            &before,
            "volspike_outbox_oldest_pending_timestamp_seconds",
            &[("backend", "primary")]
        ),
        None,
        "nothing pending: no timestamp (zero would read 1970)"
    );

    let enqueued_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64();
    outbox
        .enqueue_blocking(Post::volume_alert(&spike_alert()))
        .expect("enqueue");
    // Several 503s answered: still pending, enqueued but not delivered.
    let refused = wait_until(Duration::from_secs(30), || {
        (fake.requests().len() >= 3).then_some(())
    });
    assert!(refused.is_some(), "the outbox never tried the backend");
    let (text, waiting) = metrics();
    promtool_check(&text);
    assert_eq!(
        value(
            &waiting,
            "volspike_alerts_enqueued_total",
            &[("type", "volume_alert")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        delivered(&waiting),
        Some(0.0),
        "a 503 is no delivery:\n{text}"
    );
    let oldest = value(
        &waiting,
        "volspike_outbox_oldest_pending_timestamp_seconds",
        &[("backend", "primary")],
    )
    .unwrap_or_else(|| panic!("no oldest pending timestamp while one waits:\n{text}"));
    assert!(
        (oldest - enqueued_at).abs() < 60.0,
        "oldest pending at {oldest}, enqueued at {enqueued_at}"
    );

    // The backend accepts: delivered moves to 1, the timestamp goes.
    fake.fail_next(0, 503);
    let accepted = wait_until(Duration::from_secs(30), || {
        let (text, now) = metrics();
        (delivered(&now) == Some(1.0)).then_some((text, now))
    });
    let (text, after) =
        accepted.unwrap_or_else(|| panic!("delivered never reached 1:\n{}", metrics().0));
    promtool_check(&text);
    assert_eq!(
        value(
            &after,
            "volspike_outbox_oldest_pending_timestamp_seconds",
            &[("backend", "primary")]
        ),
        None,
        "{text}"
    );
    assert_eq!(
        value(
            &after,
            "volspike_outbox_delivered_total",
            &[("backend", "primary")]
        ),
        Some(1.0)
    );
}

/// Dead letters beyond the cap: the oldest are deleted, and how many is in
/// `/metrics` and `/health`.
#[test]
fn dead_letters_beyond_the_cap_are_deleted_and_counted() {
    use volspike::backend::Post;
    use volspike_fakes::FakeBackend;

    let dir = TempDir::new("metrics-dead-cap");
    let fake = FakeBackend::start().expect("fake backend");
    // A 400 refuses a post for good: each one becomes a dead letter.
    fake.fail_next(1_000_000, 400);
    let settings = volspike::backend::OutboxSettings {
        dead_letters_max: 2,
        ..crate::common::jobs::fast_outbox()
    };
    let rig = OutboxRig::start(&dir, &fake, settings);
    for symbol in ["AUSDT", "BUSDT", "CUSDT", "DUSDT", "EUSDT"] {
        let mut alert = spike_alert();
        alert.symbol = symbol.into();
        rig.outbox
            .enqueue_blocking(Post::volume_alert(&alert))
            .expect("enqueue");
    }
    let refused = wait_until(Duration::from_secs(30), || {
        let (text, now) = rig.metrics();
        (value(
            &now,
            "volspike_outbox_dropped_total",
            &[("backend", "primary")],
        ) == Some(5.0))
        .then_some((text, now))
    });
    let (text, now) =
        refused.unwrap_or_else(|| panic!("five posts never refused:\n{}", rig.metrics().0));
    promtool_check(&text);
    let backend = [("backend", "primary")];
    assert_eq!(
        value(&now, "volspike_outbox_dead_letters", &backend),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(&now, "volspike_outbox_dead_letters_max", &backend),
        Some(2.0)
    );
    assert_eq!(
        value(&now, "volspike_outbox_dead_letters_deleted_total", &backend),
        Some(3.0),
        "{text}"
    );
    let health: Value = serde_json::from_str(&rig.get("/health")).expect("health JSON");
    assert_eq!(
        health["delivery"]["primary"]["deadLettersDeleted"], 3,
        "{health}"
    );
    assert_eq!(health["delivery"]["primary"]["deadLetters"], 2, "{health}");
    let notes = health["deliveryProblems"].to_string();
    assert!(
        notes.contains("3 older ones deleted at the cap of 2"),
        "{health}"
    );
    let files = std::fs::read_dir(dir.join("outbox/primary/dead"))
        .expect("dead folder")
        .count();
    assert_eq!(files, 2);
}
