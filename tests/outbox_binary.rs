//! The real binary picks up what a previous process left in the outbox,
//! delivers it, and after `kill -9` and a restart does not send it again.
//!
//! Until a job produces alerts, the "previous process" is the library
//! writing the outbox directly (exactly the files a killed `run` leaves).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use volspike::backend::{Outbox, OutboxSettings, Post, VolumeAlert, VOLUME_ALERT_PATH};
use volspike::config::{BackendConfig, Secret};
use volspike::state::StateDir;
use volspike_fakes::FakeBackend;

use crate::common::TempDir;

const PATIENCE: Duration = Duration::from_secs(30);

fn alert(symbol: &str) -> VolumeAlert {
    VolumeAlert {
        symbol: symbol.into(),
        asset: symbol.trim_end_matches("USDT").into(),
        current_volume: 9e6,
        previous_volume: 3e6,
        volume_ratio: 3.0,
        price: None,
        funding_rate: None,
        candle_direction: None,
        message: format!("{symbol} spike"),
        timestamp: "2025-12-03T14:05:00Z".into(),
        detection_time: None,
        hour_timestamp: "2025-12-03T14:00:00Z".into(),
        is_update: None,
        alert_type: None,
        price_change: None,
        oi_change: None,
    }
}

/// A `volspike run` child killed on drop, so a failing assertion never
/// leaves it running.
struct Killed(Child);

impl Killed {
    /// `kill -9` and reap.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `volspike run`; returns the child and its HTTP address.
fn spawn_run(state: &std::path::Path, backend_url: &str) -> (Killed, String) {
    let http = format!("127.0.0.1:{}", crate::common::free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_volspike"))
        .arg("run")
        .env_clear()
        .env("BACKEND_URL", backend_url)
        .env("ALERT_INGEST_API_KEY", "k-bin")
        .env("VOLSPIKE_STATE_DIR", state)
        .env("VOLSPIKE_HTTP_ADDR", &http)
        // Never real Binance from a test.
        .env("BINANCE_FAPI_URL", "http://127.0.0.1:9")
        .env("BINANCE_WS_URL", "ws://127.0.0.1:9/market")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn volspike run");
    (Killed(child), http)
}

/// Polls `/health` until it shows the primary backend's delivery stats
/// (the binary is up and its delivery loop has loaded the outbox).
fn wait_for_health(http: &str) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        // Any status: /health is 503 while a job cannot reach Binance.
        let answer = crate::common::http_get(http, "/health")
            .ok()
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok());
        if let Some(body) = answer.filter(|b| b["delivery"]["primary"].is_object()) {
            return body;
        }
        assert!(Instant::now() < deadline, "volspike never answered /health");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Queues a volume alert for each of `symbols` in the state at `dir`, to
/// `fake` as backend "primary" (key "k-bin"), as a previous process would
/// have left them; the outbox is closed again before this returns.
fn queue_before_start<S: AsRef<str>>(
    dir: &std::path::Path,
    fake: &FakeBackend,
    symbols: impl IntoIterator<Item = S>,
) {
    let state = StateDir::open(dir).expect("state");
    let backends = [BackendConfig {
        name: "primary",
        url: fake.url(),
        key: Secret::new("k-bin"),
        kinds: None,
    }];
    let outbox = Outbox::open(&state, &backends, OutboxSettings::default()).expect("outbox");
    for symbol in symbols {
        outbox
            .enqueue_blocking(Post::volume_alert(&alert(symbol.as_ref())))
            .expect("enqueue");
    }
}

fn pending_files(state: &std::path::Path) -> usize {
    std::fs::read_dir(state.join("outbox/primary"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.ends_with(".json")
                        && name.bytes().next().is_some_and(|b| b.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn the_binary_resends_what_was_left_and_not_again_after_kill_9() {
    let fake = FakeBackend::start().expect("fake");
    fake.expect_api_key("k-bin");
    let tmp = TempDir::new("outbox-bin");
    let dir = tmp.path().to_path_buf();
    // A previous process queued two alerts and died before sending them.
    queue_before_start(&dir, &fake, ["AUSDT", "BUSDT"]);
    assert_eq!(pending_files(&dir), 2);

    let (mut child, _) = spawn_run(&dir, &fake.url());
    let got = fake.wait_for_requests(VOLUME_ALERT_PATH, 2, PATIENCE);
    assert_eq!(got.len(), 2);
    assert!(got
        .iter()
        .all(|r| r.status == 200 && r.header("x-api-key") == Some("k-bin")));
    let deadline = Instant::now() + PATIENCE;
    while pending_files(&dir) > 0 {
        assert!(Instant::now() < deadline, "outbox files not removed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill();

    // A restart finds nothing to resend.
    let (mut child, http) = spawn_run(&dir, &fake.url());
    let health = wait_for_health(&http);
    assert_eq!(health["delivery"]["primary"]["pending"], 0);
    // Give a (wrong) resend every chance to show up before counting.
    std::thread::sleep(Duration::from_millis(500));
    child.kill();
    assert_eq!(fake.requests_to(VOLUME_ALERT_PATH).len(), 2);
}

#[test]
fn kill_9_in_a_loop_with_late_acknowledgements_delivers_every_alert_exactly_once() {
    let fake = FakeBackend::start().expect("fake");
    fake.expect_api_key("k-bin");
    // 40 % of the answers come 0.3–2.5 s after the alert is stored.
    fake.slow_acks(0.4, Duration::from_millis(300), Duration::from_millis(2500));
    let tmp = TempDir::new("outbox-kill9");
    let dir = tmp.path().to_path_buf();
    let symbols: Vec<String> = (0..150).map(|i| format!("K{i}USDT")).collect();
    queue_before_start(&dir, &fake, &symbols);
    let mut kills = 0;
    while kills < 50 && pending_files(&dir) > 0 {
        let (mut child, _) = spawn_run(&dir, &fake.url());
        std::thread::sleep(Duration::from_millis(fastrand::u64(300..1500)));
        child.kill();
        kills += 1;
    }
    // The last run is left alone until the outbox is empty.
    let (mut child, _) = spawn_run(&dir, &fake.url());
    let deadline = Instant::now() + Duration::from_secs(120);
    while pending_files(&dir) > 0 {
        assert!(Instant::now() < deadline, "outbox never emptied");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Give a wrong resend every chance to show.
    std::thread::sleep(Duration::from_millis(500));
    child.kill();
    let stored = fake
        .requests_to(VOLUME_ALERT_PATH)
        .into_iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.json?["symbol"].as_str().map(String::from))
        .collect::<Vec<_>>();
    let mut counts = std::collections::BTreeMap::new();
    for symbol in &stored {
        *counts.entry(symbol.clone()).or_insert(0) += 1;
    }
    let duplicates: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let checks = fake.requests_to("/api/volume-alerts").len();
    println!(
        "figure: {kills} x kill -9, {} alerts, {} stored by the backend, {} duplicates, {checks} read-route checks",
        symbols.len(),
        stored.len(),
        duplicates.len()
    );
    assert!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    assert_eq!(counts.len(), symbols.len(), "every alert delivered");
}

/// Runs `volspike outbox <args> --state-dir <state>`; returns (exit code, stdout).
fn outbox_cmd(state: &std::path::Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_volspike"))
        .arg("outbox")
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .env_clear()
        .output()
        .expect("run volspike outbox");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn outbox_list_retry_and_drop_manage_the_dead_letters_a_running_service_replays() {
    let fake = FakeBackend::start().expect("fake");
    fake.expect_api_key("k-bin");
    // The backend refuses both alerts for now.
    fake.set_json(
        "POST",
        VOLUME_ALERT_PATH,
        422,
        serde_json::json!({"error": "nope"}),
    );
    let tmp = TempDir::new("outbox-dead");
    let dir = tmp.path().to_path_buf();
    // Queued by a previous process.
    queue_before_start(&dir, &fake, ["AUSDT", "BUSDT"]);
    let (mut child, http) = spawn_run(&dir, &fake.url());
    fake.wait_for_requests(VOLUME_ALERT_PATH, 2, PATIENCE);
    let deadline = Instant::now() + PATIENCE;
    let health = loop {
        let health = wait_for_health(&http);
        if health["delivery"]["primary"]["deadLetters"] == 2 {
            break health;
        }
        assert!(Instant::now() < deadline, "{health}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Named, but delivery works: dead letters alone do not fail /health.
    assert!(health["delivery"]["primary"]["paused"].is_null());
    assert!(health["deliveryProblems"][0]
        .as_str()
        .is_some_and(|p| p.contains("2 dead letters")));

    let (code, listed) = outbox_cmd(&dir, &["list"]);
    assert_eq!(code, 0);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains("AUSDT") && listed.contains("HTTP 422"),
        "{listed}"
    );
    let (_, json_lines) = outbox_cmd(&dir, &["list", "--json"]);
    let first: serde_json::Value =
        serde_json::from_str(json_lines.lines().next().unwrap_or("")).expect("json line");
    let id = first["id"].as_str().expect("id").to_string();
    assert_eq!(first["backend"], "primary");

    // The backend is fixed: replay one; the running service sends it.
    fake.set_json(
        "POST",
        VOLUME_ALERT_PATH,
        200,
        serde_json::json!({"success": true}),
    );
    let (code, out) = outbox_cmd(&dir, &["retry", &id]);
    assert_eq!(code, 0, "{out}");
    let delivered = fake.wait_for_requests(VOLUME_ALERT_PATH, 3, PATIENCE);
    assert_eq!(delivered.len(), 3);
    assert_eq!(delivered[2].status, 200);
    // Drop the other; an unknown id is an error.
    let (code, out) = outbox_cmd(&dir, &["drop", "all"]);
    assert_eq!((code, out.lines().count()), (0, 1), "{out}");
    let (code, _) = outbox_cmd(&dir, &["drop", "0000000000000099"]);
    assert_eq!(code, 1);
    let (_, listed) = outbox_cmd(&dir, &["list"]);
    assert!(listed.is_empty(), "{listed}");
    child.kill();
}

/// Unmounts the tmpfs on drop (its mount point, a [`TempDir`], goes after).
struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The field report's setup on a real filesystem: the state directory on a
/// 256 KiB tmpfs that fills up. Needs root (mount), so it is run by hand:
/// `cargo test --test integration outbox_binary:: -- --ignored --nocapture`.
#[test]
#[ignore = "needs root to mount a tmpfs"]
fn a_real_full_tmpfs_never_turns_into_a_resend_loop() {
    let mount_point = TempDir::new("tmpfs");
    let mount = mount_point.path().to_path_buf();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(&mount)
        .status()
        .expect("mount");
    assert!(mounted.success(), "mount a tmpfs (root needed)");
    let tmpfs = Tmpfs(mount);
    let dir = tmpfs.0.join("state");
    let fake = FakeBackend::start().expect("fake");
    fake.expect_api_key("k-bin");
    fake.set_down(true);
    let symbols: Vec<String> = (0..20).map(|i| format!("T{i}USDT")).collect();
    queue_before_start(&dir, &fake, &symbols);
    let (mut child, http) = spawn_run(&dir, &fake.url());
    wait_for_health(&http);
    // Fill the filesystem to the last byte.
    let filler = tmpfs.0.join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
    }
    fake.set_down(false);
    let got = fake.wait_for_requests(VOLUME_ALERT_PATH, 20, PATIENCE);
    std::thread::sleep(Duration::from_secs(5));
    let posts = fake.requests_to(VOLUME_ALERT_PATH);
    let health = wait_for_health(&http);
    let mut per_alert = std::collections::BTreeMap::new();
    for r in &posts {
        if let Some(s) = r.json.as_ref().and_then(|j| j["symbol"].as_str()) {
            *per_alert.entry(s.to_string()).or_insert(0) += 1;
        }
    }
    let most = per_alert.values().copied().max().unwrap_or(0);
    println!(
        "figure: 256 KiB tmpfs full: {} POSTs for {} alerts in 5 s after the last, at most {most} of one; diskError = {}",
        posts.len(),
        symbols.len(),
        health["delivery"]["primary"]["diskError"]
    );
    assert!(got.len() >= 20 || !health["delivery"]["primary"]["diskError"].is_null());
    assert!(most <= 3, "{per_alert:?}");
    // Space returns.
    std::fs::remove_file(&filler).expect("free space");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let health = wait_for_health(&http);
        if pending_files(&dir) == 0 && health["delivery"]["primary"]["diskError"].is_null() {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {health}");
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill();
    let delivered: std::collections::BTreeSet<String> = fake
        .requests_to(VOLUME_ALERT_PATH)
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| r.json.as_ref()?["symbol"].as_str().map(String::from))
        .collect();
    assert_eq!(delivered.len(), 20);
}
