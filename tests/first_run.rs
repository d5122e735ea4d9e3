//! The first minutes of `volspike run --local` as a newcomer sees them
//! without network: the dashboard's address at start, and one clear line
//! about Binance being unreachable instead of a retry line every few
//! seconds (the stream's backoff starts below a second).

use std::time::Duration;

use crate::common::{wait_until, Running, TempDir};

#[test]
fn unreachable_binance_is_one_line_and_the_dashboard_url_is_printed() {
    let dir = TempDir::new("first-run");
    // The default test environment points Binance at a closed port.
    let app = Running::start(&dir, &["--local", "--only", "funding_stream"], &[]);
    assert!(app.wait_http(), "HTTP never came up:\n{}", app.log_text());
    let ready = wait_until(Duration::from_secs(30), || {
        app.log_text()
            .lines()
            .find(|l| l.contains("dashboard at http://"))
            .map(str::to_string)
    })
    .unwrap_or_else(|| panic!("no dashboard address in the log:\n{}", app.log_text()));
    assert!(
        ready.contains(&format!("dashboard at http://{}/", app.addr)),
        "{ready}"
    );
    // Long enough for several attempts (backoff 0.5 s, 1 s, 2 s, 4 s …).
    std::thread::sleep(Duration::from_secs(8));
    let log = app.log_text();
    let attempts_logged = log
        .lines()
        .filter(|l| l.contains("funding stream") && (l.contains("WARN") || l.contains("ERROR")))
        .count();
    assert_eq!(
        attempts_logged, 1,
        "one line for the outage, not one per attempt:\n{log}"
    );
    assert!(
        log.contains("cannot reach Binance at 127.0.0.1:9"),
        "the line names the host:\n{log}"
    );
    // The attempts did happen (they are counted for /health and /metrics).
    let (_, health) = crate::common::http_get(&app.addr, "/health").expect("GET /health");
    let json: serde_json::Value = serde_json::from_str(&health).expect("json");
    assert!(
        json["websocket"]["reconnectAttempts"].as_u64().unwrap_or(0) >= 2,
        "{health}"
    );
}

/// Every scheduled job with Binance unreachable: the scheduler retries a
/// failed tick after 5 s, 10 s, 20 s, then every 30 s, and logs one
/// WARN/ERROR line per job for the stretch (the retries go to debug), not
/// one per retry.
#[test]
fn a_job_failing_on_unreachable_binance_logs_once_not_per_retry() {
    let dir = TempDir::new("first-run-jobs");
    let app = Running::start(&dir, &["--local"], &[]);
    assert!(app.wait_http(), "HTTP never came up:\n{}", app.log_text());
    // Retries at 5 s and 15 s after the first failure.
    let retried = wait_until(Duration::from_secs(60), || {
        let (_, health) = crate::common::http_get(&app.addr, "/health").ok()?;
        let json: serde_json::Value = serde_json::from_str(&health).ok()?;
        let jobs = json["jobs"].as_object()?;
        let failing: Vec<String> = jobs
            .iter()
            .filter(|(_, s)| s["state"] == "failing" && s["failures"].as_u64().unwrap_or(0) >= 3)
            .map(|(name, _)| name.clone())
            .collect();
        (!failing.is_empty()).then_some(failing)
    })
    .unwrap_or_else(|| panic!("no job failed three times in a row:\n{}", app.log_text()));
    let log = app.log_text();
    for job in &retried {
        let loud: Vec<&str> = log
            .lines()
            // `job{JOB="name"}` on a terminal, `JOB=name` in the journal.
            .filter(|l| l.contains(&format!("JOB=\"{job}\"")) || l.contains(&format!("JOB={job} ")))
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        assert_eq!(
            loud.len(),
            1,
            "{job} failed 3 times: one WARN/ERROR line, not one per retry:\n{}\n--- log ---\n{log}",
            loud.join("\n")
        );
    }
}
