//! The outbox against the fake backend: exact requests, outages, retries,
//! rejections, two backends, restarts and dedup.
//!
//! No timing assertions: every wait polls a condition with a generous
//! deadline, and backoff is shortened so outages resolve quickly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use volspike::backend::{
    BackoffPolicy, CandleDirection, DeliveryStats, Enqueued, Kind, LiquidUniverseUpdate, OiSample,
    OiSamples, Outbox, OutboxError, OutboxSettings, Post, UniverseSymbol, UserAlertTrigger,
    VolumeAlert, VolumeAlertType, OI_SAMPLES_PATH, UNIVERSE_UPDATE_PATH, USER_ALERT_TRIGGER_PATH,
    VOLUME_ALERT_PATH,
};
use volspike::config::{BackendConfig, Secret};
use volspike::shutdown::{self, ShutdownTrigger};
use volspike::state::StateDir;
use volspike::systemd::liveness::Liveness;
use volspike_fakes::FakeBackend;

/// Long enough for a loaded 2-core machine; only reached on failure.
const PATIENCE: Duration = Duration::from_secs(30);

fn settings() -> OutboxSettings {
    OutboxSettings {
        capacity: 1000,
        backoff: BackoffPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
    }
}

fn backend(name: &'static str, fake: &FakeBackend, key: &str) -> BackendConfig {
    BackendConfig {
        name,
        url: fake.url(),
        key: Secret::new(key),
        kinds: None,
    }
}

fn alert(symbol: &str) -> VolumeAlert {
    VolumeAlert {
        symbol: symbol.into(),
        asset: symbol.trim_end_matches("USDT").into(),
        current_volume: 150000000.0,
        previous_volume: 45000000.0,
        volume_ratio: 3.33,
        price: Some(65000.5),
        funding_rate: Some(0.0001),
        candle_direction: Some(CandleDirection::Bullish),
        message: format!("{symbol} hourly volume 150.00M (3.33× prev) — VOLUME SPIKE!"),
        timestamp: "2025-12-03T14:05:00Z".into(),
        detection_time: Some("2025-12-03T14:05:00Z".into()),
        hour_timestamp: "2025-12-03T14:00:00Z".into(),
        is_update: Some(false),
        alert_type: Some(VolumeAlertType::Spike),
        price_change: Some(0.025),
        oi_change: None,
    }
}

/// An outbox with running delivery loops on its own runtime.
struct Rig {
    /// Runs the delivery loops.
    runtime: tokio::runtime::Runtime,
    /// The state directory (kept across restarts).
    dir: PathBuf,
    /// Stops the loops.
    trigger: ShutdownTrigger,
    /// The loops.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The outbox under test.
    outbox: Outbox,
}

impl Rig {
    fn start(tag: &str, backends: &[BackendConfig]) -> Rig {
        let dir = std::env::temp_dir().join(format!(
            "volspike-outbox-it-{tag}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        Rig::start_in(dir, backends)
    }

    fn start_in(dir: PathBuf, backends: &[BackendConfig]) -> Rig {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let state = StateDir::open(&dir).expect("state dir");
        let outbox = Outbox::open(&state, backends, settings()).expect("outbox");
        let (trigger, shutdown) = shutdown::channel();
        let liveness = Liveness::new(None);
        let tasks = {
            let _guard = runtime.enter();
            outbox.start_delivery(&liveness, shutdown)
        };
        Rig {
            runtime,
            dir,
            trigger,
            tasks,
            outbox,
        }
    }

    /// Graceful stop: loops end, files stay. Returns the directory.
    fn stop(self) -> PathBuf {
        self.trigger.trigger();
        for task in self.tasks {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(PATIENCE, task).await });
        }
        self.dir
    }

    /// A crash: the runtime is torn down without telling the loops, and
    /// nothing in memory is flushed. Returns the directory.
    fn crash(self) -> PathBuf {
        self.runtime.shutdown_background();
        self.dir
    }

    /// Stops and removes the state directory.
    fn finish(self) {
        let _ = std::fs::remove_dir_all(self.stop());
    }

    fn stats(&self, backend: &str) -> DeliveryStats {
        self.outbox
            .stats()
            .get(backend)
            .cloned()
            .expect("backend stats")
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&Rig) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn drained(&self, backend: &str) {
        self.wait_for(&format!("{backend} to drain"), |r| {
            r.stats(backend).pending == 0
        });
    }
}

fn symbols(requests: &[volspike_fakes::BackendRequest]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.json.as_ref()?.get("symbol")?.as_str().map(String::from))
        .collect()
}

#[test]
fn a_post_arrives_with_exact_path_headers_and_body() {
    let fake = FakeBackend::start().expect("fake");
    fake.expect_api_key("k-primary");
    let rig = Rig::start("exact", &[backend("primary", &fake, "k-primary")]);
    let alert = alert("BTCUSDT");
    assert_eq!(
        rig.outbox
            .enqueue_blocking(Post::volume_alert(&alert))
            .expect("enqueue"),
        Enqueued::Queued
    );
    let got = fake.wait_for_requests(VOLUME_ALERT_PATH, 1, PATIENCE);
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.status, 200);
    assert_eq!(req.header("x-api-key"), Some("k-primary"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    let expected = json!({ "symbol": "BTCUSDT", "asset": "BTC",
        "currentVolume": 150000000.0, "previousVolume": 45000000.0, "volumeRatio": 3.33,
        "price": 65000.5, "fundingRate": 0.0001, "candleDirection": "bullish",
        "message": "BTCUSDT hourly volume 150.00M (3.33× prev) — VOLUME SPIKE!",
        "timestamp": "2025-12-03T14:05:00Z", "detectionTime": "2025-12-03T14:05:00Z",
        "hourTimestamp": "2025-12-03T14:00:00Z", "isUpdate": false, "alertType": "SPIKE",
        "priceChange": 0.025 });
    assert_eq!(req.json.as_ref(), Some(&expected));
    rig.drained("primary");
    assert_eq!(rig.stats("primary").delivered, 1);
    assert_eq!(rig.outbox.recent().len(), 1);
    // The same client serves the GET routes.
    assert_eq!(rig.outbox.backend_names(), ["primary"]);
    let client = rig.outbox.client("primary").expect("client");
    let snapshot = client
        .get_json(
            "/api/market/open-interest/snapshot",
            &[("symbol", "BTCUSDT"), ("ts", "2025-12-03T14:00:00Z")],
            volspike::backend::Auth::Header,
        )
        .expect("snapshot");
    assert_eq!(snapshot["found"], false);
    let get = fake.requests_to("/api/market/open-interest/snapshot");
    assert_eq!(get[0].header("x-api-key"), Some("k-primary"));
    assert_eq!(get[0].query_param("ts"), Some("2025-12-03T14:00:00Z"));
    rig.finish();
}

#[test]
fn user_alert_keys_go_in_the_body_at_send_time_and_never_to_disk() {
    let fake = FakeBackend::start().expect("fake");
    fake.expect_api_key("k-user");
    fake.set_down(true);
    let rig = Rig::start("userkey", &[backend("primary", &fake, "k-user")]);
    let trigger = UserAlertTrigger {
        alert_id: "alert-1".into(),
        symbol: "ETHUSDT".into(),
        current_value: 3001.0,
        previous_value: 2999.0,
        crossed_up: true,
    };
    rig.outbox
        .enqueue_blocking(Post::user_alert_trigger("primary", &trigger))
        .expect("enqueue");
    // While pending, the stored post holds no key.
    let stored: Vec<String> = std::fs::read_dir(rig.dir.join("outbox/primary"))
        .expect("dir")
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    assert!(!stored.is_empty());
    assert!(stored.iter().all(|text| !text.contains("k-user")));
    fake.set_down(false);
    let got = fake.wait_for_requests(USER_ALERT_TRIGGER_PATH, 1, PATIENCE);
    assert_eq!(got[0].status, 200);
    let body = got[0].json.clone().expect("json");
    assert_eq!(body["apiKey"], "k-user");
    assert_eq!(body["alertId"], "alert-1");
    assert_eq!(body["crossedUp"], true);
    // The GET of the active list carries the key as `apiKey` in the query.
    let client = rig.outbox.client("primary").expect("client");
    let active = client
        .get_json(
            "/api/user-alerts-trigger/active",
            &[],
            volspike::backend::Auth::QueryParam,
        )
        .expect("active alerts");
    assert!(active["alerts"].is_array());
    let get = fake.requests_to("/api/user-alerts-trigger/active");
    assert_eq!(get[0].query_param("apiKey"), Some("k-user"));
    assert_eq!(get[0].header("x-api-key"), None);
    // A target that is not configured is an error, not a silent drop.
    let err = rig
        .outbox
        .enqueue_blocking(Post::user_alert_trigger("dev", &trigger))
        .expect_err("no dev backend");
    assert!(matches!(err, OutboxError::UnknownBackend(_)));
    rig.finish();
}

#[test]
fn an_outage_delays_posts_which_then_arrive_once_each_in_order() {
    let fake = FakeBackend::start().expect("fake");
    fake.set_down(true);
    let rig = Rig::start("outage", &[backend("primary", &fake, "k")]);
    let names: Vec<String> = (0..6).map(|i| format!("S{i}USDT")).collect();
    for name in &names {
        rig.outbox
            .enqueue_blocking(Post::volume_alert(&alert(name)))
            .expect("enqueue");
    }
    // Let several attempts fail before the backend comes back.
    rig.wait_for("failed attempts", |r| r.stats("primary").retried >= 3);
    assert_eq!(rig.stats("primary").pending, 6);
    fake.set_down(false);
    rig.drained("primary");
    let got = fake.requests_to(VOLUME_ALERT_PATH);
    assert_eq!(symbols(&got), names);
    assert_eq!(got.len(), 6, "each post exactly once");
    rig.finish();
}

#[test]
fn server_errors_are_retried_until_accepted() {
    let fake = FakeBackend::start().expect("fake");
    fake.fail_next(3, 500);
    let rig = Rig::start("500", &[backend("primary", &fake, "k")]);
    rig.outbox
        .enqueue_blocking(Post::volume_alert(&alert("BTCUSDT")))
        .expect("enqueue");
    rig.drained("primary");
    let statuses: Vec<u16> = fake
        .requests_to(VOLUME_ALERT_PATH)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![500, 500, 500, 200]);
    let stats = rig.stats("primary");
    assert_eq!((stats.retried, stats.delivered, stats.dropped), (3, 1, 0));
    rig.finish();
}

#[test]
fn too_many_requests_is_retried() {
    let fake = FakeBackend::start().expect("fake");
    fake.fail_next(1, 429);
    let rig = Rig::start("429", &[backend("primary", &fake, "k")]);
    rig.outbox
        .enqueue_blocking(Post::volume_alert(&alert("BTCUSDT")))
        .expect("enqueue");
    rig.drained("primary");
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200]);
    rig.finish();
}

#[test]
fn a_bad_request_is_dropped_not_retried_and_the_queue_moves_on() {
    let fake = FakeBackend::start().expect("fake");
    fake.fail_next(1, 400);
    let rig = Rig::start("400", &[backend("primary", &fake, "k")]);
    rig.outbox
        .enqueue_blocking(Post::volume_alert(&alert("BADUSDT")))
        .expect("enqueue");
    rig.outbox
        .enqueue_blocking(Post::volume_alert(&alert("GOODUSDT")))
        .expect("enqueue");
    rig.drained("primary");
    let got = fake.requests_to(VOLUME_ALERT_PATH);
    let seen: Vec<(String, u16)> = got
        .iter()
        .map(|r| {
            let symbol = r
                .json
                .as_ref()
                .and_then(|j| j["symbol"].as_str())
                .unwrap_or("")
                .to_string();
            (symbol, r.status)
        })
        .collect();
    assert_eq!(
        seen,
        vec![("BADUSDT".to_string(), 400), ("GOODUSDT".to_string(), 200)]
    );
    let stats = rig.stats("primary");
    assert_eq!((stats.dropped, stats.delivered, stats.retried), (1, 1, 0));
    assert!(stats
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("400")));
    rig.finish();
}

#[test]
fn unauthorized_is_a_4xx_and_dropped() {
    let fake = FakeBackend::start().expect("fake");
    fake.expect_api_key("right");
    let rig = Rig::start("401", &[backend("primary", &fake, "wrong")]);
    rig.outbox
        .enqueue_blocking(Post::volume_alert(&alert("BTCUSDT")))
        .expect("enqueue");
    rig.drained("primary");
    let got = fake.requests_to(VOLUME_ALERT_PATH);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status, 401);
    assert_eq!(rig.stats("primary").dropped, 1);
    rig.finish();
}

#[test]
fn a_second_backend_scoped_to_volume_alerts_gets_nothing_else() {
    // The old deployment's scope for dev: volume alerts only (a universe
    // post would overwrite dev's universe).
    let primary = FakeBackend::start().expect("fake");
    let dev = FakeBackend::start().expect("fake");
    let rig = Rig::start(
        "scoped",
        &[
            backend("primary", &primary, "kp"),
            BackendConfig {
                kinds: Some(vec![Kind::VolumeAlert]),
                ..backend("dev", &dev, "kd")
            },
        ],
    );
    let samples = OiSamples::chunks(
        vec![OiSample {
            symbol: "AUSDT".into(),
            open_interest: 1.0,
            open_interest_usd: None,
            mark_price: None,
        }],
        "2025-12-05T10:00:00Z",
        OiSamples::REALTIME,
    );
    let universe = LiquidUniverseUpdate {
        symbols: vec![UniverseSymbol {
            symbol: "AUSDT".into(),
            quote_volume_24h: 2e8,
            entered_at: "2025-12-05T10:00:00Z".into(),
            last_seen_at: "2025-12-05T10:00:00Z".into(),
        }],
        updated_at: "2025-12-05T10:00:00Z".into(),
    };
    for post in [
        Post::oi_samples(&samples[0]),
        Post::universe(&universe).expect("a universe"),
        Post::volume_alert(&alert("AUSDT")),
    ] {
        rig.outbox.enqueue_blocking(post).expect("enqueue");
    }
    rig.drained("primary");
    rig.drained("dev");
    assert_eq!(primary.requests().len(), 3);
    let dev_paths: Vec<String> = dev.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(dev_paths, [VOLUME_ALERT_PATH]);
    assert!(primary.requests_to(UNIVERSE_UPDATE_PATH).len() == 1);
    assert_eq!(
        rig.outbox.backends_taking(Kind::UserAlertTrigger),
        ["primary"],
        "user alerts are checked on the primary only"
    );
    rig.finish();
}

#[test]
fn one_backend_down_never_delays_the_other() {
    let primary = FakeBackend::start().expect("fake");
    let dev = FakeBackend::start().expect("fake");
    primary.set_down(true);
    let rig = Rig::start(
        "dual",
        &[
            backend("primary", &primary, "kp"),
            backend("dev", &dev, "kd"),
        ],
    );
    for name in ["AUSDT", "BUSDT", "CUSDT"] {
        rig.outbox
            .enqueue_blocking(Post::volume_alert(&alert(name)))
            .expect("enqueue");
    }
    rig.drained("dev");
    assert_eq!(
        symbols(&dev.requests_to(VOLUME_ALERT_PATH)),
        ["AUSDT", "BUSDT", "CUSDT"]
    );
    assert!(dev
        .requests()
        .iter()
        .all(|r| r.header("x-api-key") == Some("kd")));
    // Primary still holds all three, and gets them once it is back.
    assert_eq!(rig.stats("primary").pending, 3);
    primary.set_down(false);
    rig.drained("primary");
    assert_eq!(
        symbols(&primary.requests_to(VOLUME_ALERT_PATH)),
        ["AUSDT", "BUSDT", "CUSDT"]
    );
    rig.finish();
}

#[test]
fn a_route_answering_5xx_does_not_hold_back_other_routes() {
    let fake = FakeBackend::start().expect("fake");
    fake.set_json(
        "POST",
        OI_SAMPLES_PATH,
        503,
        json!({"error": "database busy"}),
    );
    let rig = Rig::start("lanes", &[backend("primary", &fake, "k")]);
    let samples = volspike::backend::OiSamples::chunks(
        vec![volspike::backend::OiSample {
            symbol: "BTCUSDT".into(),
            open_interest: 1.0,
            open_interest_usd: None,
            mark_price: None,
        }],
        "2025-12-05T10:00:00Z",
        "realtime",
    );
    rig.outbox
        .enqueue_blocking(Post::oi_samples(&samples[0]))
        .expect("enqueue");
    rig.outbox
        .enqueue_blocking(Post::volume_alert(&alert("BTCUSDT")))
        .expect("enqueue");
    let got = fake.wait_for_requests(VOLUME_ALERT_PATH, 1, PATIENCE);
    assert_eq!(got[0].status, 200);
    // The samples are still pending, retried, not dropped.
    rig.wait_for("sample retries", |r| r.stats("primary").retried >= 2);
    assert_eq!(rig.stats("primary").pending, 1);
    assert_eq!(rig.stats("primary").dropped, 0);
    fake.set_json("POST", OI_SAMPLES_PATH, 200, json!({"success": true}));
    rig.drained("primary");
    rig.finish();
}

#[test]
fn a_restart_resends_pending_posts_exactly_once() {
    let fake = FakeBackend::start().expect("fake");
    fake.set_down(true);
    let backends = [backend("primary", &fake, "k")];
    let rig = Rig::start("restart", &backends);
    for name in ["AUSDT", "BUSDT", "CUSDT"] {
        rig.outbox
            .enqueue_blocking(Post::volume_alert(&alert(name)))
            .expect("enqueue");
    }
    let dir = rig.stop();

    fake.set_down(false);
    let rig = Rig::start_in(dir, &backends);
    assert_eq!(rig.stats("primary").pending, 3);
    rig.drained("primary");
    // A second restart finds nothing to resend.
    let dir = rig.stop();
    let rig = Rig::start_in(dir, &backends);
    assert_eq!(rig.stats("primary").pending, 0);
    // And the delivered keys still suppress a job that re-decides after the crash.
    assert_eq!(
        rig.outbox
            .enqueue_blocking(Post::volume_alert(&alert("AUSDT")))
            .expect("enqueue"),
        Enqueued::Duplicate
    );
    std::thread::sleep(Duration::from_millis(300));
    let got = fake.requests_to(VOLUME_ALERT_PATH);
    assert_eq!(symbols(&got), ["AUSDT", "BUSDT", "CUSDT"]);
    rig.finish();
}

#[test]
fn a_crash_without_any_flush_loses_nothing() {
    let fake = FakeBackend::start().expect("fake");
    fake.set_down(true);
    let backends = [backend("primary", &fake, "k")];
    let rig = Rig::start("crash", &backends);
    for name in ["AUSDT", "BUSDT"] {
        rig.outbox
            .enqueue_blocking(Post::volume_alert(&alert(name)))
            .expect("enqueue");
    }
    rig.wait_for("a failed attempt", |r| r.stats("primary").retried >= 1);
    // Torn down mid-flight: no graceful stop, no in-memory state written.
    let dir = rig.crash();

    fake.set_down(false);
    let rig = Rig::start_in(dir, &backends);
    rig.drained("primary");
    assert_eq!(
        symbols(&fake.requests_to(VOLUME_ALERT_PATH)),
        ["AUSDT", "BUSDT"]
    );
    rig.finish();
}

#[test]
fn the_same_dedup_key_twice_is_posted_once() {
    let fake = FakeBackend::start().expect("fake");
    let rig = Rig::start("dedup", &[backend("primary", &fake, "k")]);
    let post = Post::volume_alert(&alert("BTCUSDT"));
    assert_eq!(
        rig.outbox.enqueue_blocking(post.clone()).expect("enqueue"),
        Enqueued::Queued
    );
    assert_eq!(
        rig.outbox.enqueue_blocking(post.clone()).expect("enqueue"),
        Enqueued::Duplicate
    );
    rig.drained("primary");
    // After delivery the ledger still knows it.
    assert_eq!(
        rig.outbox.enqueue_blocking(post).expect("enqueue"),
        Enqueued::Duplicate
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fake.requests_to(VOLUME_ALERT_PATH).len(), 1);
    assert_eq!(rig.outbox.recent().len(), 1);
    // Duplicates are not counted as sent.
    assert_eq!(rig.outbox.enqueued_by_kind().get("volume_alert"), Some(&1));
    rig.finish();
}

#[test]
fn local_mode_writes_alerts_jsonl_and_posts_nothing() {
    let dir = std::env::temp_dir().join(format!(
        "volspike-outbox-it-local-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let state = StateDir::open(&dir).expect("state");
    let outbox = Outbox::local(&state);
    assert!(outbox.is_local());
    outbox
        .enqueue_blocking(Post::volume_alert(&alert("BTCUSDT")))
        .expect("enqueue");
    let text = std::fs::read_to_string(dir.join(volspike::backend::ALERTS_FILE)).expect("file");
    let line: Value = serde_json::from_str(text.trim()).expect("one json line");
    assert_eq!(line["body"]["symbol"], "BTCUSDT");
    assert_eq!(outbox.recent().len(), 1);
    assert!(outbox.stats().is_empty());
    assert_eq!(outbox.enqueued_by_kind().get("volume_alert"), Some(&1));
    let _ = std::fs::remove_dir_all(&dir);
}
