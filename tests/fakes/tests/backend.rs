//! The fake VolSpike backend: recording, default answers, failures, outage, auth.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{get, host_of, post, raw, read_response, request, PATIENCE};
use serde_json::{json, Value};
use volspike_fakes::FakeBackend;

fn backend() -> FakeBackend {
    FakeBackend::start().expect("start fake backend")
}

fn volume_alert() -> Value {
    json!({"symbol": "BTCUSDT", "asset": "BTC", "currentVolume": 150000000.0, "previousVolume": 45000000.0,
           "volumeRatio": 3.33, "message": "spike", "timestamp": "2025-12-03T14:05:00Z",
           "hourTimestamp": "2025-12-03T14:00:00Z", "alertType": "SPIKE"})
}

#[test]
fn records_requests_and_answers_defaults() {
    let fake = backend();
    let url = fake.url();
    let key = [("X-API-Key", "k1")];

    let resp = post(
        &url,
        "/api/volume-alerts/ingest?x=1",
        &key,
        &volume_alert().to_string(),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), json!({"success": true, "alertId": "1"}));

    let cases: Vec<(&str, &str, Option<Value>, u16, Value)> = vec![
        (
            "POST",
            "/api/market/open-interest/ingest",
            Some(json!({"data": [{"symbol": "A"}, {"symbol": "B"}]})),
            200,
            json!({"success": true, "inserted": 2, "cached": 2}),
        ),
        (
            "POST",
            "/api/market/open-interest",
            Some(json!({"data": [{"symbol": "A"}]})),
            200,
            json!({"success": true, "inserted": 1, "cached": 1}),
        ),
        (
            "POST",
            "/api/market/open-interest/ingest",
            Some(json!({"data": []})),
            400,
            json!({"error": "No valid data"}),
        ),
        (
            "POST",
            "/api/market/open-interest/ingest",
            Some(json!({})),
            400,
            json!({"error": "No valid data"}),
        ),
        (
            "POST",
            "/api/open-interest-alerts/ingest",
            Some(json!({"symbol": "BTCUSDT"})),
            200,
            json!({"success": true, "id": "2"}),
        ),
        (
            "GET",
            "/api/market/open-interest/liquid-universe",
            None,
            200,
            json!({"updatedAt": null, "enterThreshold": 100000000, "exitThreshold": 50000000, "symbols": [], "totalSymbols": 0}),
        ),
        (
            "POST",
            "/api/market/open-interest/liquid-universe/update",
            Some(json!({"symbols": [{"symbol": "A"}, {"symbol": "B"}, {"symbol": "C"}]})),
            200,
            json!({"success": true, "upserted": 3, "removed": 0, "totalSymbols": 3}),
        ),
        (
            "GET",
            "/api/market/open-interest/snapshot?symbol=BTCUSDT&ts=2025-12-03T14%3A00%3A00Z",
            None,
            200,
            json!({"found": false, "symbol": "BTCUSDT", "requestedTs": "2025-12-03T14:00:00Z"}),
        ),
        (
            "GET",
            "/api/user-alerts-trigger/active?apiKey=k1",
            None,
            200,
            json!({"alerts": []}),
        ),
        (
            "POST",
            "/api/user-alerts-trigger/trigger",
            Some(
                json!({"alertId": "a", "symbol": "BTCUSDT", "currentValue": 2.0, "previousValue": 1.0, "crossedUp": true, "apiKey": "k1"}),
            ),
            200,
            json!({"success": true}),
        ),
        (
            "POST",
            "/api/user-alerts-trigger/update-checked",
            Some(json!({"alertId": "a", "lastCheckedValue": 1.0, "apiKey": "k1"})),
            200,
            json!({"success": true}),
        ),
        (
            "POST",
            "/api/telegram/ingest",
            Some(
                json!({"channel": {"id": 1, "username": "feed"}, "messages": [{"id": 1}, {"id": 2}]}),
            ),
            200,
            json!({"success": true, "inserted": 2, "duplicates": 0, "errors": 0}),
        ),
        // The real schema: username NOT NULL.
        (
            "POST",
            "/api/telegram/ingest",
            Some(json!({"channel": {"id": 1, "username": null}, "messages": [{"id": 1}]})),
            400,
            json!({"error": "Invalid channel data"}),
        ),
        // numeric(10,6) overflow.
        (
            "POST",
            "/api/open-interest-alerts/ingest",
            Some(json!({"symbol": "X", "pctChange": 10000.0})),
            500,
            json!({"error": "numeric field overflow"}),
        ),
        ("GET", "/health", None, 200, json!({"status": "ok"})),
        ("GET", "/api/nope", None, 404, json!({"error": "Not found"})),
    ];
    for (method, target, body, status, answer) in &cases {
        let resp = match body {
            Some(b) => post(&url, target, &key, &b.to_string()),
            None => request(&url, method, target, &key, None).expect("request"),
        };
        assert_eq!(
            (resp.status, resp.json()),
            (*status, answer.clone()),
            "{method} {target}"
        );
    }

    let missing = post(
        &url,
        "/api/volume-alerts/ingest",
        &key,
        r#"{"symbol":"BTCUSDT"}"#,
    );
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"], "Invalid alert data");

    let recorded = fake.requests();
    assert_eq!(recorded.len(), cases.len() + 2);
    let first = &recorded[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/api/volume-alerts/ingest")
    );
    assert_eq!(first.query, vec![("x".to_string(), "1".to_string())]);
    assert_eq!(first.header("x-api-key"), Some("k1"));
    assert_eq!(first.header("Content-Type"), Some("application/json"));
    assert_eq!(first.json.as_ref(), Some(&volume_alert()));
    assert_eq!(first.body_raw, volume_alert().to_string());
    assert_eq!(first.status, 200);
    assert!(first.received_at <= std::time::SystemTime::now());
    assert_eq!(
        fake.requests_to("/api/market/open-interest/ingest").len(),
        3
    );
    assert_eq!(
        fake.requests_to("/api/market/open-interest/snapshot")[0].query_param("ts"),
        Some("2025-12-03T14:00:00Z")
    );

    fake.clear();
    assert!(fake.requests().is_empty());
}

#[test]
fn invalid_json_is_400_and_recorded() {
    let fake = backend();
    let resp = post(&fake.url(), "/api/volume-alerts/ingest", &[], "{not json");
    assert_eq!(resp.status, 400);
    let recorded = fake.requests_to("/api/volume-alerts/ingest");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].json, None);
    assert_eq!(recorded[0].body_raw, "{not json");
    assert!(raw(&fake.url(), b"BROKEN\r\n\r\n").starts_with("HTTP/1.1 400"));
}

#[test]
fn chunked_bodies_are_decoded() {
    let fake = backend();
    let body = r#"{"data":[{"symbol":"A"}]}"#;
    let message = format!(
        "POST /api/market/open-interest/ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    let answer = raw(&fake.url(), message.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        fake.requests()[0].json,
        Some(json!({"data": [{"symbol": "A"}]}))
    );
}

#[test]
fn fail_next_then_recovers() {
    let fake = backend();
    fake.fail_next(2, 503);
    let body = volume_alert().to_string();
    let statuses: Vec<u16> = (0..3)
        .map(|_| post(&fake.url(), "/api/volume-alerts/ingest", &[], &body).status)
        .collect();
    assert_eq!(statuses, vec![503, 503, 200]);
    let recorded: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(recorded, vec![503, 503, 200]);
    let failed = post(&fake.url(), "/health", &[], "{}");
    assert_eq!(failed.status, 404);
}

#[test]
fn canned_answers_override_defaults() {
    let fake = backend();
    fake.set_json(
        "GET",
        "/api/market/open-interest/snapshot",
        200,
        json!({"found": true, "openInterest": 5.0}),
    );
    fake.set_json(
        "post",
        "/api/volume-alerts/ingest",
        400,
        json!({"error": "Invalid alert data", "details": []}),
    );
    assert_eq!(
        get(&fake.url(), "/api/market/open-interest/snapshot?symbol=X").json()["found"],
        true
    );
    let resp = post(
        &fake.url(),
        "/api/volume-alerts/ingest",
        &[],
        &volume_alert().to_string(),
    );
    assert_eq!(resp.status, 400);
}

#[test]
fn api_key_is_checked_where_the_contract_says() {
    let fake = backend();
    let url = fake.url();
    fake.expect_api_key("secret");
    let body = volume_alert().to_string();
    let unauthorized =
        |r: crate::common::Resp| r.status == 401 && r.json() == json!({"error": "Unauthorized"});

    assert!(unauthorized(post(
        &url,
        "/api/volume-alerts/ingest",
        &[],
        &body
    )));
    assert!(unauthorized(post(
        &url,
        "/api/volume-alerts/ingest",
        &[("X-API-Key", "wrong")],
        &body
    )));
    assert_eq!(
        post(
            &url,
            "/api/volume-alerts/ingest",
            &[("X-API-Key", "secret")],
            &body
        )
        .status,
        200
    );

    // User alerts take the key in the query (GET) or the body (POST), not the header.
    assert!(unauthorized(
        request(
            &url,
            "GET",
            "/api/user-alerts-trigger/active",
            &[("X-API-Key", "secret")],
            None
        )
        .expect("GET")
    ));
    assert_eq!(
        get(&url, "/api/user-alerts-trigger/active?apiKey=secret").status,
        200
    );
    let trigger = json!({"alertId": "a", "symbol": "X", "currentValue": 1, "previousValue": 0, "crossedUp": true});
    assert!(unauthorized(post(
        &url,
        "/api/user-alerts-trigger/trigger",
        &[],
        &trigger.to_string()
    )));
    let mut with_key = trigger.clone();
    with_key["apiKey"] = json!("secret");
    assert_eq!(
        post(
            &url,
            "/api/user-alerts-trigger/trigger",
            &[],
            &with_key.to_string()
        )
        .status,
        200
    );

    // Public routes.
    assert_eq!(get(&url, "/health").status, 200);
    assert_eq!(
        get(&url, "/api/market/open-interest/liquid-universe").status,
        200
    );

    // Rejected requests are still recorded.
    assert_eq!(fake.requests_to("/api/volume-alerts/ingest").len(), 3);
}

#[test]
fn down_refuses_and_resets_then_comes_back_on_the_same_port() {
    let fake = backend();
    let url = fake.url();
    // A keep-alive connection opened before the outage.
    let mut pooled = TcpStream::connect(host_of(&url)).expect("connect");
    pooled.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let keep_alive = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    pooled.write_all(keep_alive).expect("write");
    let mut reader = BufReader::new(pooled.try_clone().expect("clone"));
    assert_eq!(
        read_response(&mut reader).expect("first answer").status,
        200
    );

    fake.set_down(true);
    assert!(
        request(&url, "GET", "/health", &[], None).is_err(),
        "new connections must fail"
    );
    // The pooled connection gets no HTTP answer.
    let _ = pooled.write_all(keep_alive);
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    assert!(rest.is_empty(), "got {:?}", String::from_utf8_lossy(&rest));
    assert_eq!(fake.requests().len(), 1);

    fake.set_down(false);
    assert_eq!(fake.url(), url);
    assert_eq!(get(&url, "/health").status, 200);
    assert_eq!(fake.requests().len(), 2);
    fake.set_down(false); // idempotent
}

#[test]
fn wait_for_requests_polls_until_enough_arrived() {
    let fake = backend();
    let url = fake.url();
    let poster = std::thread::spawn(move || {
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(50));
            post(&url, "/api/open-interest-alerts/ingest", &[], "{}");
        }
    });
    let got = fake.wait_for_requests("/api/open-interest-alerts/ingest", 3, PATIENCE);
    assert_eq!(got.len(), 3);
    poster.join().expect("poster");

    let start = Instant::now();
    let partial = fake.wait_for_requests(
        "/api/open-interest-alerts/ingest",
        5,
        Duration::from_millis(200),
    );
    assert_eq!(partial.len(), 3);
    assert!(start.elapsed() >= Duration::from_millis(200));
}

#[test]
fn log_to_appends_json_lines() {
    let fake = backend();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fake-backend-log.jsonl");
    fake.log_to(&path).expect("open log");
    post(
        &fake.url(),
        "/api/telegram/ingest?a=b",
        &[("X-API-Key", "k")],
        r#"{"messages":[]}"#,
    );
    get(&fake.url(), "/health");
    let text = std::fs::read_to_string(&path).expect("read log");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["path"], "/api/telegram/ingest");
    assert_eq!(lines[0]["query"]["a"], "b");
    assert_eq!(lines[0]["headers"]["x-api-key"], "k");
    assert_eq!(lines[0]["body"], json!({"messages": []}));
    assert_eq!(lines[1]["path"], "/health");
}

#[test]
fn one_post_is_refused_by_its_content_while_others_pass() {
    let fake = backend();
    fake.fail_when(
        "/api/user-alerts-trigger/update-checked",
        "alertId",
        json!("deleted"),
        500,
    );
    let statuses: Vec<u16> = ["alive", "deleted", "alive"]
        .iter()
        .map(|id| {
            let body = json!({"alertId": id, "lastCheckedValue": 1.0}).to_string();
            post(
                &fake.url(),
                "/api/user-alerts-trigger/update-checked",
                &[],
                &body,
            )
            .status
        })
        .collect();
    assert_eq!(statuses, vec![200, 500, 200]);
}

#[test]
fn stored_volume_alerts_are_listed_at_once_even_when_answered_late() {
    let fake = backend();
    fake.slow_acks(1.0, Duration::from_millis(800), Duration::from_millis(800));
    let url = fake.url();
    let sender = std::thread::spawn(move || {
        let started = Instant::now();
        let resp = post(
            &url,
            "/api/volume-alerts/ingest",
            &[],
            &volume_alert().to_string(),
        );
        (resp.status, started.elapsed())
    });
    // Listed by the read route before the answer went out.
    fake.wait_for_requests("/api/volume-alerts/ingest", 1, PATIENCE);
    let listed = get(&fake.url(), "/api/volume-alerts?tier=elite");
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["alerts"][0]["symbol"], "BTCUSDT");
    let (status, took) = sender.join().expect("sender");
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(800), "{took:?}");
}
