//! The telegram job and the alert notifier against a fake Telegram (Bot API
//! and preview pages) and a fake backend, through the real durable outbox.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use volspike::backend::{Outbox, OutboxSettings};
use volspike::config::{BackendConfig, Secret, TelegramConfig};
use volspike::jobs::telegram::{TelegramJob, STATE_FILE};
use volspike::jobs::volume_spike::rules::{message, AlertType};
use volspike::jobs::Job;
use volspike::shutdown::{self, ShutdownTrigger};
use volspike::state::StateDir;
use volspike::systemd::liveness::Liveness;
use volspike::telegram::bot_api::BotApi;
use volspike::telegram::notifier::TelegramNotifier;
use volspike_fakes::{FakeBackend, FakeTelegram};

use crate::common::{Running, TempDir};

const INGEST: &str = "/api/telegram/ingest";
const TOKEN: &str = "123456:test-token";
const PREVIEW_FIXTURE: &str = include_str!("fixtures/telegram/preview_marketfeed.html");

/// A fake backend and Telegram, a state directory and a delivering outbox.
struct Rig {
    backend: FakeBackend,
    telegram: FakeTelegram,
    dir: TempDir,
    outbox: Outbox,
    _stop: ShutdownTrigger,
}

impl Rig {
    fn new(tag: &str) -> Rig {
        let backend = FakeBackend::start().expect("fake backend");
        let telegram = FakeTelegram::start().expect("fake telegram");
        let dir = TempDir::new(tag);
        let state = StateDir::open(dir.path()).expect("state dir");
        let outbox = Outbox::open(
            &state,
            &[BackendConfig {
                name: "primary",
                url: backend.url(),
                key: Secret::new("k"),
                kinds: None,
            }],
            OutboxSettings::default(),
        )
        .expect("outbox");
        let (stop, shutdown) = shutdown::channel();
        outbox.start_delivery(&Liveness::new(None), shutdown);
        Rig {
            backend,
            telegram,
            dir,
            outbox,
            _stop: stop,
        }
    }

    fn config(&self, channels: &[&str], token: bool) -> TelegramConfig {
        TelegramConfig {
            bot_token: token.then(|| Secret::new(TOKEN)),
            ingest_with_bot: true,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            alert_chat_id: None,
            api_url: self.telegram.api_url(),
            preview_url: self.telegram.preview_url(),
            categories: BTreeMap::from([
                ("marketfeed".to_string(), "macro".to_string()),
                ("watcherguru".to_string(), "crypto".to_string()),
            ]),
        }
    }

    /// A job as `run` builds it (a fresh one is a restart).
    fn job(&self, channels: &[&str], token: bool) -> TelegramJob {
        let state = StateDir::open(self.dir.path()).expect("state dir");
        TelegramJob::new(&self.config(channels, token), self.outbox.clone(), state)
            .with_long_poll(Duration::ZERO)
    }

    /// The bodies of the first `n` ingest posts (waits for them), then checks
    /// that no more arrive.
    async fn ingests(&self, n: usize) -> Vec<Value> {
        let backend_wait = {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let found = self.backend.requests_to(INGEST);
                if found.len() >= n || Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.backend.requests_to(INGEST)
        };
        assert_eq!(backend_wait.len(), n, "ingest posts");
        backend_wait
            .into_iter()
            .map(|r| r.json.expect("JSON body"))
            .collect()
    }
}

fn marketfeed_chat() -> Value {
    json!({"id": -1001234567890i64, "type": "channel", "title": "Market Feed", "username": "marketfeed"})
}

fn ids(body: &Value) -> Vec<i64> {
    body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_api_posts_become_exact_ingest_payloads() {
    let rig = Rig::new("tg-bot");
    rig.telegram.expect_token(TOKEN);
    rig.telegram
        .add_chat(marketfeed_chat(), Some("administrator"));
    let chat = marketfeed_chat();
    rig.telegram.push_channel_post(json!({
        "message_id": 10, "date": 1_764_849_600, "chat": chat,
        "text": "CPI 2.9% https://bls.gov/cpi",
        "entities": [{"type": "url", "offset": 9, "length": 19}],
        "author_signature": "Ann",
    }));
    rig.telegram.push_channel_post(json!({
        "message_id": 11, "date": 1_764_849_660, "chat": chat,
        "photo": [{"file_id": "p1", "width": 90, "height": 60}],
        "caption": "Chart of the day",
        "caption_entities": [{"type": "text_link", "offset": 0, "length": 5, "url": "https://example.com/chart"}],
    }));
    rig.telegram.push_channel_post(json!({
        "message_id": 12, "date": 1_764_849_720, "chat": chat, "text": "Fed holds",
    }));
    // Another channel the bot administers but nobody configured.
    rig.telegram.push_channel_post(json!({
        "message_id": 1, "date": 1_764_849_700,
        "chat": {"id": -1009, "type": "channel", "title": "Other", "username": "other"},
        "text": "not ours",
    }));
    rig.telegram.push_edited_channel_post(json!({
        "message_id": 12, "date": 1_764_849_720, "edit_date": 1_764_849_780, "chat": chat,
        "text": "Fed holds rates at 4.25%",
    }));
    // Not a channel post: filtered by allowed_updates.
    rig.telegram.push_update(
        "message",
        json!({"message_id": 5, "date": 1, "chat": {"id": 42, "type": "private"}, "text": "hi"}),
    );

    let mut job = rig.job(&["@MarketFeed"], true);
    let summary = job.tick(SystemTime::now()).await.expect("tick");
    assert!(
        summary.starts_with("3 new message(s) from 1 channel(s)"),
        "{summary}"
    );

    let bodies = rig.ingests(1).await;
    assert_eq!(
        bodies[0],
        json!({
            "channel": {"id": -1001234567890i64, "username": "marketfeed", "title": "Market Feed", "category": "macro"},
            "messages": [
                {"id": 10, "text": "CPI 2.9% https://bls.gov/cpi", "date": "2025-12-04T12:00:00Z",
                 "sender_name": "Ann", "views": null, "forwards": null, "has_media": false,
                 "media_type": null, "links": ["https://bls.gov/cpi"]},
                {"id": 11, "text": "Chart of the day", "date": "2025-12-04T12:01:00Z",
                 "sender_name": null, "views": null, "forwards": null, "has_media": true,
                 "media_type": "photo", "links": ["https://example.com/chart"]},
                {"id": 12, "text": "Fed holds rates at 4.25%", "date": "2025-12-04T12:02:00Z",
                 "sender_name": null, "views": null, "forwards": null, "has_media": false,
                 "media_type": null, "links": []},
            ]
        })
    );
    let get_updates = rig.telegram.requests_for("getUpdates");
    assert_eq!(
        get_updates[0].param("offset"),
        None,
        "first run has no offset"
    );
    assert_eq!(
        get_updates[0].params["allowed_updates"],
        json!(["channel_post", "edited_channel_post"])
    );
    // The offset is persisted after the enqueue: last update id + 1 (the
    // private `message`, update 6, was never handed out).
    assert_eq!(job.state().update_offset, Some(6));
    let saved: Value =
        serde_json::from_slice(&std::fs::read(rig.dir.join(STATE_FILE)).expect("state file"))
            .expect("JSON");
    assert_eq!(saved["update_offset"], json!(6));
    assert_eq!(saved["last_seen"]["marketfeed"], json!(12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_persisted_offset() {
    let rig = Rig::new("tg-restart");
    rig.telegram
        .add_chat(marketfeed_chat(), Some("administrator"));
    let post = |id: i64| json!({"message_id": id, "date": 1_764_849_600 + id, "chat": marketfeed_chat(), "text": format!("post {id}")});
    for id in 1..=3 {
        rig.telegram.push_channel_post(post(id));
    }
    let mut job = rig.job(&["marketfeed"], true);
    job.tick(SystemTime::now()).await.expect("first tick");
    assert_eq!(ids(&rig.ingests(1).await[0]), [1, 2, 3]);
    // The process dies here: Telegram was never told offset 4, so it still
    // holds updates 1..3 and would hand them out again without our offset.
    drop(job);
    assert_eq!(rig.telegram.pending_updates().len(), 3);

    for id in 4..=5 {
        rig.telegram.push_channel_post(post(id));
    }
    let mut restarted = rig.job(&["marketfeed"], true);
    restarted
        .tick(SystemTime::now())
        .await
        .expect("tick after restart");
    let bodies = rig.ingests(2).await;
    assert_eq!(ids(&bodies[1]), [4, 5], "no duplicate, no gap");
    let last = rig.telegram.requests_for("getUpdates");
    assert_eq!(
        last.last().and_then(|r| r.param("offset")).as_deref(),
        Some("4")
    );

    // Nothing new: no post at all.
    restarted.tick(SystemTime::now()).await.expect("quiet tick");
    rig.ingests(2).await;
}

/// A preview page with posts `ids` of channel `name` (bare id 777).
fn page(name: &str, ids: &[i64]) -> String {
    let posts: String = ids
        .iter()
        .map(|id| {
            format!(
                r#"<div class="tgme_widget_message_wrap"><div class="tgme_widget_message js-widget_message" data-post="{name}/{id}" data-peer="c777_-1">
                <div class="tgme_widget_message_text js-message_text">post {id}</div>
                <span class="tgme_widget_message_views">1.5K</span>
                <time datetime="2025-12-04T12:00:{:02}+00:00">12:00</time></div></div>"#,
                id % 60
            )
        })
        .collect();
    format!(
        r#"<html><body><div class="tgme_channel_info"><div class="tgme_channel_info_header_title">Watcher Guru</div></div>
        <section class="tgme_channel_history">{posts}</section></body></html>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_pages_are_ingested_once_and_gaps_are_filled() {
    let rig = Rig::new("tg-preview");
    rig.telegram
        .set_preview_page("marketfeed", None, PREVIEW_FIXTURE);
    // No bot token: the preview is the only way in.
    let mut job = rig.job(&["marketfeed"], false);
    job.tick(SystemTime::now()).await.expect("tick");
    let bodies = rig.ingests(1).await;
    assert_eq!(
        bodies[0],
        json!({
            "channel": {"id": -1001234567890i64, "username": "marketfeed", "title": "Market Feed", "category": "macro"},
            "messages": [
                {"id": 121, "text": "🇺🇸 US CPI (YoY) Actual 2.9% & Expected 3.0%\nCore CPI \"cooler\" than expected — www.bls.gov/cpi #CPI",
                 "date": "2025-12-04T13:30:00Z", "sender_name": "Ann Analyst", "views": 5200, "forwards": null,
                 "has_media": false, "media_type": null, "links": ["https://www.bls.gov/cpi/"]},
                {"id": 122, "text": "Chart: 10Y yields vs DXY", "date": "2025-12-04T13:45:10Z",
                 "sender_name": null, "views": 842, "forwards": null, "has_media": true,
                 "media_type": "photo", "links": []},
                {"id": 123, "text": null, "date": "2025-12-04T14:00:00Z", "sender_name": null,
                 "views": 1300000, "forwards": null, "has_media": true, "media_type": "video", "links": []},
                {"id": 125, "text": "Minutes attached. Read more: federalreserve.gov",
                 "date": "2025-12-04T14:15:00Z", "sender_name": null, "views": 12000, "forwards": null,
                 "has_media": true, "media_type": "document",
                 "links": ["https://www.federalreserve.gov/monetarypolicy.htm", "https://www.reuters.com/markets/fed-minutes/"]},
            ]
        })
    );
    // Same page again: nothing new, nothing posted.
    job.tick(SystemTime::now()).await.expect("second tick");
    rig.ingests(1).await;

    // watcherguru: first run takes the page; later 60 posts arrive between
    // two ticks, more than one page shows, and `before=` fills the gap.
    rig.telegram
        .set_preview_page("watcherguru", None, page("watcherguru", &[1, 2]));
    let mut job = rig.job(&["watcherguru"], false);
    job.tick(SystemTime::now()).await.expect("tick");
    let first = rig.ingests(2).await;
    assert_eq!(ids(&first[1]), [1, 2]);
    assert_eq!(first[1]["channel"]["category"], "crypto");
    assert_eq!(first[1]["channel"]["id"], json!(-1_000_000_000_777i64));

    let latest: Vec<i64> = (43..=62).collect();
    let older: Vec<i64> = (23..=42).collect();
    let oldest: Vec<i64> = (1..=22).collect();
    rig.telegram
        .set_preview_page("watcherguru", None, page("watcherguru", &latest));
    rig.telegram
        .set_preview_page("watcherguru", Some(43), page("watcherguru", &older));
    rig.telegram
        .set_preview_page("watcherguru", Some(23), page("watcherguru", &oldest));
    let summary = job.tick(SystemTime::now()).await.expect("tick");
    assert!(summary.starts_with("60 new message(s)"), "{summary}");
    let bodies = rig.ingests(4).await;
    // Oldest first, in chunks of at most 50.
    assert_eq!(ids(&bodies[2]), (3..=52).collect::<Vec<_>>());
    assert_eq!(ids(&bodies[3]), (53..=62).collect::<Vec<_>>());
    assert_eq!(bodies[2]["messages"][0]["views"], json!(1500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_the_bot_cannot_read_go_through_the_preview() {
    let rig = Rig::new("tg-mixed");
    // The bot administers marketfeed; it is no member of watcherguru.
    rig.telegram
        .add_chat(marketfeed_chat(), Some("administrator"));
    rig.telegram.add_chat(
        json!({"id": -1000000000777i64, "type": "channel", "title": "Watcher Guru", "username": "WatcherGuru"}),
        None,
    );
    rig.telegram.push_channel_post(
        json!({"message_id": 1, "date": 1_764_849_600, "chat": marketfeed_chat(), "text": "bot"}),
    );
    rig.telegram
        .set_preview_page("watcherguru", None, page("watcherguru", &[5]));
    let mut job = rig.job(&["marketfeed", "watcherguru"], true);
    job.tick(SystemTime::now()).await.expect("tick");
    let bodies = rig.ingests(2).await;
    let mut by_channel: Vec<(String, Vec<i64>)> = bodies
        .iter()
        .map(|b| {
            (
                b["channel"]["username"].as_str().unwrap_or("").to_string(),
                ids(b),
            )
        })
        .collect();
    by_channel.sort();
    assert_eq!(
        by_channel,
        [
            ("marketfeed".to_string(), vec![1]),
            ("watcherguru".to_string(), vec![5])
        ]
    );
    assert_eq!(rig.telegram.requests_for("preview").len(), 1);
    assert_eq!(rig.telegram.requests_for("getUpdates").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_page_is_a_logged_error_not_a_panic() {
    let rig = Rig::new("tg-changed");
    rig.telegram.set_preview_page(
        "marketfeed",
        None,
        include_str!("fixtures/telegram/preview_changed.html"),
    );
    rig.telegram
        .set_preview_page("watcherguru", None, page("watcherguru", &[7]));
    let mut job = rig.job(&["marketfeed", "watcherguru"], false);
    let err = job
        .tick(SystemTime::now())
        .await
        .expect_err("the changed page fails the tick");
    let text = format!("{err:#}");
    assert!(
        text.contains("marketfeed") && text.contains("structure changed"),
        "{text}"
    );
    // The other channel still went through, and marketfeed advanced nothing.
    assert_eq!(ids(&rig.ingests(1).await[0]), [7]);
    assert_eq!(job.state().last_seen.get("marketfeed"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_limit_pauses_only_this_job() {
    let rig = Rig::new("tg-flood");
    rig.telegram
        .add_chat(marketfeed_chat(), Some("administrator"));
    rig.telegram.push_channel_post(
        json!({"message_id": 1, "date": 1_764_849_600, "chat": marketfeed_chat(), "text": "one"}),
    );
    let mut job = rig.job(&["marketfeed"], true);
    job.tick(SystemTime::now()).await.expect("tick");
    rig.ingests(1).await;

    rig.telegram.push_channel_post(
        json!({"message_id": 2, "date": 1_764_849_660, "chat": marketfeed_chat(), "text": "two"}),
    );
    rig.telegram.rate_limit_next(1, 30);
    let t0 = SystemTime::now();
    let started = Instant::now();
    let summary = job.tick(t0).await.expect("a flood limit is not a failure");
    // The tick does not sit out the 30 s: the scheduler and every other job
    // (and the outbox's delivery loops) go on at once.
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(summary.contains("flood limit"), "{summary}");
    assert_eq!(job.paused_until(), Some(t0 + Duration::from_secs(30)));

    let before = rig.telegram.requests().len();
    let summary = job
        .tick(t0 + Duration::from_secs(10))
        .await
        .expect("paused tick");
    assert!(summary.starts_with("paused"), "{summary}");
    assert_eq!(
        rig.telegram.requests().len(),
        before,
        "no Telegram call while paused"
    );

    // Meanwhile the outbox delivers other posts as usual.
    rig.outbox
        .enqueue(volspike::backend::Post::telegram(
            &volspike::backend::TelegramIngest {
                channel: volspike::backend::TelegramChannel {
                    id: -1,
                    username: None,
                    title: "x".into(),
                    category: "general".into(),
                },
                messages: vec![],
            },
        ))
        .await
        .expect("enqueue");
    rig.ingests(2).await;

    job.tick(t0 + Duration::from_secs(31))
        .await
        .expect("resumed");
    let bodies = rig.ingests(3).await;
    assert_eq!(ids(&bodies[2]), [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_sends_one_message_with_the_exact_text() {
    let telegram = FakeTelegram::start().expect("fake telegram");
    telegram.expect_token(TOKEN);
    let notifier = TelegramNotifier::start(
        BotApi::new(&telegram.api_url(), Secret::new(TOKEN)),
        "-1009876543210".into(),
    );
    let text = message(AlertType::Spike, "BTC", 150_000_000.0, 3.333);
    assert_eq!(
        text,
        "BTC hourly volume 150.00M (3.33× prev) — VOLUME SPIKE!"
    );
    notifier.clone().send_alert(&text).await;
    let sent = telegram.wait_for_sent(1, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_later = telegram.sent_messages();
    assert_eq!(sent_later.len(), 1, "exactly one sendMessage: {sent:?}");
    assert_eq!(sent_later[0].chat_id, "-1009876543210");
    assert_eq!(sent_later[0].text, text);
    assert_eq!(telegram.requests_for("sendMessage").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_never_makes_the_caller_wait() {
    let telegram = FakeTelegram::start().expect("fake telegram");
    let notifier = TelegramNotifier::start(
        BotApi::new(&telegram.api_url(), Secret::new(TOKEN)),
        "42".into(),
    );
    // A flood limit on the first try: the caller returns at once, the
    // message goes out after retry_after, once.
    telegram.rate_limit_next(1, 1);
    let started = Instant::now();
    notifier
        .send_alert("UPDATE: ETH hourly volume 12.34K (3.00× prev) — VOLUME SPIKE!")
        .await;
    assert!(started.elapsed() < Duration::from_millis(100));
    let sent = telegram.wait_for_sent(1, Duration::from_secs(10));
    assert_eq!(sent.len(), 1);
    assert_eq!(telegram.requests_for("sendMessage").len(), 2);

    // Telegram down: still no wait for the caller.
    telegram.shutdown();
    let started = Instant::now();
    for _ in 0..10 {
        notifier.send_alert("x").await;
    }
    assert!(started.elapsed() < Duration::from_millis(100));

    // Disabled without token or chat: accepts and drops.
    let off = TelegramNotifier::from_config(&TelegramConfig {
        bot_token: None,
        ingest_with_bot: true,
        channels: vec![],
        alert_chat_id: Some("42".into()),
        api_url: "http://127.0.0.1:9".into(),
        preview_url: "http://127.0.0.1:9/s".into(),
        categories: BTreeMap::new(),
    });
    assert!(!off.is_enabled());
    off.send_alert("x").await;
}

/// A fake backend expecting key "k" and a fake Telegram whose @marketfeed
/// preview page is the fixture.
fn marketfeed_fakes() -> (FakeBackend, FakeTelegram) {
    let backend = FakeBackend::start().expect("fake backend");
    backend.expect_api_key("k");
    let telegram = FakeTelegram::start().expect("fake telegram");
    telegram.set_preview_page("marketfeed", None, PREVIEW_FIXTURE);
    (backend, telegram)
}

/// `volspike run --only telegram` reading @marketfeed from `telegram` and
/// posting to `backend`, plus `env`.
fn run_telegram_job(
    dir: &TempDir,
    backend: &FakeBackend,
    telegram: &FakeTelegram,
    env: &[(&str, &str)],
) -> Running {
    let backend_url = backend.url();
    let (api_url, preview_url) = (telegram.api_url(), telegram.preview_url());
    let mut all = vec![
        ("BACKEND_URL", backend_url.as_str()),
        ("ALERT_INGEST_API_KEY", "k"),
        ("TELEGRAM_CHANNELS", "@marketfeed"),
        ("TELEGRAM_API_URL", api_url.as_str()),
        ("TELEGRAM_PREVIEW_URL", preview_url.as_str()),
    ];
    all.extend_from_slice(env);
    Running::start(dir, &["--only", "telegram"], &all)
}

#[test]
fn volspike_run_starts_the_job_when_channels_are_configured() {
    let (backend, telegram) = marketfeed_fakes();
    let dir = TempDir::new("tg-run");
    let mut running = run_telegram_job(&dir, &backend, &telegram, &[]);
    let posted = backend.wait_for_requests(INGEST, 1, Duration::from_secs(30));
    assert_eq!(posted.len(), 1, "log:\n{}", running.log_text());
    assert_eq!(posted[0].status, 200);
    assert_eq!(
        ids(posted[0].json.as_ref().expect("JSON")),
        [121, 122, 123, 125]
    );
    // The offsets are saved right after the enqueue, maybe after delivery.
    let state_file = dir.join("state").join(STATE_FILE);
    let last_seen = crate::common::wait_until(Duration::from_secs(10), || {
        let state: Value = serde_json::from_slice(&std::fs::read(&state_file).ok()?).ok()?;
        state["last_seen"]["marketfeed"].as_i64()
    });
    assert_eq!(last_seen, Some(125));
    running.terminate();
    assert!(running.wait_exit(Duration::from_secs(15)).is_some());
    let log = running.log_text();
    assert!(log.contains("4 new message(s) from 1 channel(s)"), "{log}");
}

#[test]
fn the_old_alert_bot_token_reads_channels_from_previews_only() {
    // An imported env file: TELEGRAM_TOKEN was the old alert bot, never a
    // channel reader. Channels come from the preview pages; the bot is not
    // asked for updates.
    let (backend, telegram) = marketfeed_fakes();
    let dir = TempDir::new("tg-old-token");
    let mut running = run_telegram_job(
        &dir,
        &backend,
        &telegram,
        &[("TELEGRAM_TOKEN", "123:old-alert-bot")],
    );
    let posted = backend.wait_for_requests(INGEST, 1, Duration::from_secs(30));
    assert_eq!(posted.len(), 1, "log:\n{}", running.log_text());
    running.terminate();
    assert!(running.wait_exit(Duration::from_secs(15)).is_some());
    let bot_calls: Vec<String> = telegram
        .requests()
        .into_iter()
        .filter(|r| !r.token.is_empty())
        .map(|r| r.method)
        .collect();
    assert!(
        bot_calls.is_empty(),
        "the alert bot was used: {bot_calls:?}"
    );
    assert!(!telegram.requests_for("preview").is_empty());
}
