//! The queue's tests: shedding, dedup, restart, renumbering, coalescing,
//! a full disk, in-flight marks and dead letters, each against a temp dir.

use super::load::parse_seq;
use super::*;
use crate::backend::dead_letters;
use crate::backend::payloads::{
    LiquidUniverseUpdate, OiSample, OiSamples, UniverseSymbol, VolumeAlertType,
};
use crate::backend::post::tests_support::volume_post;
use crate::state::write_atomic;

/// A dedup window in ms.
fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

fn temp_root(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "volspike-queue-{tag}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn samples(n: usize) -> Post {
    let chunk = OiSamples::chunks(
        vec![
            OiSample {
                symbol: format!("S{n}USDT"),
                open_interest: 1.0,
                open_interest_usd: None,
                mark_price: None,
            };
            1
        ],
        &format!("sample-{n}"),
        "realtime",
    );
    Post::oi_samples(&chunk[0])
}

fn universe() -> Post {
    Post::universe(&LiquidUniverseUpdate {
        symbols: vec![UniverseSymbol {
            symbol: "BTCUSDT".into(),
            quote_volume_24h: 1e9,
            entered_at: "t".into(),
            last_seen_at: "t".into(),
        }],
        updated_at: "t".into(),
    })
    .expect("non-empty")
}

fn labels(q: &Queue) -> Vec<String> {
    q.lock().pending.values().map(|p| p.label.clone()).collect()
}

const T0: u64 = 1_764_770_700_000;

#[test]
fn a_full_queue_sheds_the_oldest_samples_first_then_refuses_alerts() {
    let root = temp_root("shed");
    let q = Queue::open(&root, "primary", 4, T0).expect("open");
    let a1 = volume_post("AUSDT", VolumeAlertType::Spike);
    q.push(&samples(1), T0).expect("push");
    q.push(&a1, T0).expect("push");
    q.push(&samples(2), T0).expect("push");
    q.push(&universe(), T0).expect("push");
    // Full: the next alert pushes out the OLDEST sample.
    let a2 = volume_post("BUSDT", VolumeAlertType::Spike);
    assert!(matches!(q.push(&a2, T0), Ok(Pushed::Queued(_))));
    let now = labels(&q);
    assert!(!now.iter().any(|l| l.contains("sample-1")), "{now:?}");
    assert!(now.iter().any(|l| l.contains("sample-2")));
    // Then the other sample.
    let a3 = volume_post("CUSDT", VolumeAlertType::Spike);
    assert!(matches!(q.push(&a3, T0), Ok(Pushed::Queued(_))));
    assert!(!labels(&q).iter().any(|l| l.contains("sample")));
    // Only non-sheddable posts remain: the newest is refused, and a
    // sample cannot push out an alert either.
    let a4 = volume_post("DUSDT", VolumeAlertType::Spike);
    assert_eq!(q.push(&a4, T0).expect("push"), Pushed::Refused);
    assert_eq!(q.push(&samples(3), T0).expect("push"), Pushed::Refused);
    let stats = q.stats(T0);
    assert_eq!((stats.pending, stats.shed, stats.refused), (4, 2, 2));
    // Files on disk match memory: the shed posts are gone.
    let files = fs::read_dir(root.join("outbox/primary"))
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| parse_seq(&e.file_name().to_string_lossy(), "json").is_some())
        })
        .count();
    assert_eq!(files, 4);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn dedup_covers_pending_and_delivered_keys_until_their_window_ends() {
    let root = temp_root("dedup");
    let q = Queue::open(&root, "primary", 100, T0).expect("open");
    let alert = volume_post("BTCUSDT", VolumeAlertType::Spike);
    let Pushed::Queued(seq) = q.push(&alert, T0).expect("push") else {
        panic!("first push queues");
    };
    assert_eq!(q.push(&alert, T0 + 1).expect("push"), Pushed::Duplicate);
    // Another alert type for the same hour is a different alert.
    let update = volume_post("BTCUSDT", VolumeAlertType::FullUpdate);
    assert!(matches!(q.push(&update, T0), Ok(Pushed::Queued(_))));

    let stored = q.lock().pending.get(&seq).cloned().expect("pending");
    q.delivered(&stored, T0 + 5).expect("delivered");
    assert_eq!(q.push(&alert, T0 + 10).expect("push"), Pushed::Duplicate);

    // The ledger is persisted: a restart still knows the key.
    drop(q);
    let q = Queue::open(&root, "primary", 100, T0 + 20).expect("reopen");
    assert_eq!(q.push(&alert, T0 + 20).expect("push"), Pushed::Duplicate);
    // After the window (48 h) the key is forgotten.
    let later = T0 + ms(crate::backend::post::DEFAULT_DEDUP_WINDOW) + 1;
    assert!(matches!(q.push(&alert, later), Ok(Pushed::Queued(_))));
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn reopening_resends_in_order_and_skips_what_the_ledger_says_was_delivered() {
    let root = temp_root("reopen");
    let q = Queue::open(&root, "primary", 100, T0).expect("open");
    let first = volume_post("AUSDT", VolumeAlertType::Spike);
    let second = volume_post("BUSDT", VolumeAlertType::Spike);
    q.push(&first, T0).expect("push");
    q.push(&samples(1), T0).expect("push");
    q.push(&second, T0).expect("push");
    // "Crash" right after the ledger write of `first`, before its file
    // was removed: put the ledger in place by hand and keep the file.
    let key = first.dedup_key().expect("keyed").to_string();
    let ledger: BTreeMap<String, u64> = [(key, T0 + 1_000_000)].into();
    write_atomic(
        &root.join("outbox/primary/delivered.json"),
        &serde_json::to_vec(&ledger).expect("json"),
    )
    .expect("ledger");
    // And a temp file from an interrupted write.
    fs::write(
        root.join("outbox/primary/.0000000000000009.json.tmp.1"),
        b"{",
    )
    .expect("tmp");
    drop(q);

    let q = Queue::open(&root, "primary", 100, T0 + 10).expect("reopen");
    let order = labels(&q);
    assert_eq!(order.len(), 2, "{order:?}");
    assert!(order[0].contains("sample-1"));
    assert!(order[1].contains("BUSDT"));
    // New posts continue after the highest sequence seen.
    let Pushed::Queued(seq) = q.push(&samples(2), T0 + 10).expect("push") else {
        panic!("queued");
    };
    assert_eq!(seq, 4);
    assert!(!root
        .join("outbox/primary/.0000000000000009.json.tmp.1")
        .exists());
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn next_skips_posts_that_are_not_ready_and_keeps_order_otherwise() {
    let root = temp_root("lanes");
    let q = Queue::open(&root, "primary", 100, T0).expect("open");
    q.push(&samples(1), T0).expect("push");
    q.push(&volume_post("AUSDT", VolumeAlertType::Spike), T0)
        .expect("push");
    q.push(&samples(2), T0).expect("push");
    let (head, _) = q.next(|_| true).expect("head");
    assert!(head.label.contains("sample-1"));
    let (other, in_flight) = q
        .next(|p| p.path != "/api/market/open-interest/ingest")
        .expect("other route");
    assert!(other.label.contains("AUSDT"));
    assert!(!in_flight);
    let _ = fs::remove_dir_all(&root);
}

fn checked(id: &str, value: f64) -> Post {
    Post::user_alert_checked(
        "primary",
        &crate::backend::payloads::UserAlertChecked {
            alert_id: id.into(),
            last_checked_value: value,
        },
    )
}

fn files(root: &Path, ext: &str) -> usize {
    fs::read_dir(root.join("outbox/primary"))
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| parse_seq(&e.file_name().to_string_lossy(), ext).is_some())
        })
        .count()
}

#[test]
fn a_sequence_number_at_the_limit_is_renumbered_and_never_wraps_onto_a_pending_post() {
    let root = temp_root("wrap");
    let q = Queue::open(&root, "primary", 100, T0).expect("open");
    q.push(&volume_post("AUSDT", VolumeAlertType::Spike), T0)
        .expect("push");
    drop(q);
    // A stray post at the very last number (as in the field report).
    let mut last: Value = serde_json::from_slice(
        &fs::read(root.join("outbox/primary/0000000000000001.json")).expect("read"),
    )
    .expect("json");
    last["seq"] = Value::from(u64::MAX);
    last["label"] = Value::from("stray");
    last["key"] = Value::Null;
    fs::write(
        root.join(format!("outbox/primary/{}.json", u64::MAX)),
        serde_json::to_vec(&last).expect("json"),
    )
    .expect("write");
    let q = Queue::open(&root, "primary", 100, T0).expect("reopen");
    assert_eq!(labels(&q).len(), 2);
    let Pushed::Queued(seq) = q
        .push(&volume_post("BUSDT", VolumeAlertType::Spike), T0)
        .expect("push")
    else {
        panic!("queued");
    };
    assert_eq!(seq, 3, "renumbered 1, 2; the next is 3");
    let order = labels(&q);
    assert_eq!(order.len(), 3, "{order:?}");
    assert!(order[0].contains("AUSDT") && order[1] == "stray" && order[2].contains("BUSDT"));
    assert_eq!(files(&root, "json"), 3);
    // And were a number ever taken, the next free one is used.
    q.lock().next_seq = 2;
    let Pushed::Queued(seq) = q
        .push(&volume_post("CUSDT", VolumeAlertType::Spike), T0)
        .expect("push")
    else {
        panic!("queued");
    };
    assert_eq!(seq, 4);
    assert_eq!(labels(&q).len(), 4);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn latest_state_posts_are_coalesced_per_identity() {
    let root = temp_root("coalesce");
    let q = Queue::open(&root, "primary", 100, T0).expect("open");
    q.push(&universe(), T0).expect("push");
    q.push(&checked("a", 1.0), T0).expect("push");
    q.push(&checked("b", 1.0), T0).expect("push");
    q.push(&universe(), T0).expect("push");
    q.push(&checked("a", 2.0), T0).expect("push");
    q.push(&checked("a", 3.0), T0).expect("push");
    let order = labels(&q);
    assert_eq!(order.len(), 3, "{order:?}");
    assert!(order[0].contains("user alert b"));
    assert!(order[1].contains("liquid universe"));
    assert!(order[2].contains("user alert a checked (3)"));
    assert_eq!(q.stats(T0).coalesced, 3);
    assert_eq!(files(&root, "json"), 3);
    // One in flight is not replaced (its answer may still come): both stay.
    let (a, _) = q.next(|p| p.label.contains("user alert a")).expect("a");
    q.mark_in_flight(&a).expect("mark");
    q.push(&checked("a", 4.0), T0).expect("push");
    assert_eq!(labels(&q).len(), 4);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn a_full_disk_keeps_a_delivered_post_delivered_and_writes_later() {
    let root = temp_root("full");
    let q = Queue::open(&root, "primary", 100, T0).expect("open");
    let alert = volume_post("AUSDT", VolumeAlertType::Spike);
    q.push(&alert, T0).expect("push");
    q.push(&samples(1), T0).expect("push");
    q.set_disk_full(true);
    // Nothing new can be stored.
    assert!(q
        .push(&volume_post("BUSDT", VolumeAlertType::Spike), T0)
        .is_err());
    let (post, _) = q.next(|p| p.kind == Kind::VolumeAlert).expect("alert");
    // The empty mark still works, as on a full tmpfs.
    q.mark_in_flight(&post).expect("mark");
    assert!(q.delivered(&post, T0).is_err());
    // Not pending any more: never sent again; the error is visible.
    assert!(q.next(|p| p.kind == Kind::VolumeAlert).is_none());
    let stats = q.stats(T0);
    assert_eq!((stats.pending, stats.delivered), (1, 1));
    assert!(stats.disk_error.is_some());
    assert!(q.has_unwritten());
    assert_eq!(q.push(&alert, T0).expect("dedup"), Pushed::Duplicate);
    assert!(q.flush(T0).is_err());
    // A delivered post without a key needs no ledger: its file goes at
    // once (freeing space) while the alert's waits for its key.
    let (sample, _) = q.next(|_| true).expect("sample");
    assert_eq!(sample.kind, Kind::OiSamples);
    assert!(q.delivered(&sample, T0).is_err(), "the ledger still fails");
    assert_eq!(files(&root, "json"), 1, "only the alert's file is left");
    assert!(q.next(|_| true).is_none());
    // Space returns.
    q.set_disk_full(false);
    q.flush(T0).expect("flush");
    assert!(!q.has_unwritten());
    assert!(q.stats(T0).disk_error.is_none());
    assert_eq!((files(&root, "json"), files(&root, IN_FLIGHT_EXT)), (0, 0));
    // A refused enqueue shows too, and clears at the next write that works.
    q.set_disk_full(true);
    let other = volume_post("CUSDT", VolumeAlertType::Spike);
    assert!(q.push(&other, T0).is_err());
    assert!(q.stats(T0).disk_error.is_some());
    q.set_disk_full(false);
    q.push(&other, T0).expect("push");
    assert!(q.stats(T0).disk_error.is_none());
    drop(q);
    let q = Queue::open(&root, "primary", 100, T0).expect("reopen");
    assert_eq!(q.push(&alert, T0).expect("dedup"), Pushed::Duplicate);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn in_flight_marks_survive_a_restart_and_go_with_their_post() {
    let root = temp_root("inflight");
    let q = Queue::open(&root, "primary", 100, T0).expect("open");
    q.push(&volume_post("AUSDT", VolumeAlertType::Spike), T0)
        .expect("push");
    q.push(&volume_post("BUSDT", VolumeAlertType::Spike), T0)
        .expect("push");
    let (a, in_flight) = q.next(|_| true).expect("a");
    assert!(!in_flight);
    q.mark_in_flight(&a).expect("mark");
    drop(q);
    // A mark without its post is left over from a finished delivery.
    fs::File::create(root.join("outbox/primary/0000000000000042.inflight")).expect("mark");
    let q = Queue::open(&root, "primary", 100, T0).expect("reopen");
    let (a, in_flight) = q.next(|_| true).expect("a");
    assert!(in_flight && a.label.contains("AUSDT"));
    let (b, in_flight) = q.next(|p| p.seq != a.seq).expect("b");
    assert!(!in_flight && b.label.contains("BUSDT"));
    assert_eq!(files(&root, IN_FLIGHT_EXT), 1);
    q.clear_in_flight(&a);
    assert_eq!(files(&root, IN_FLIGHT_EXT), 0);
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn dead_letters_are_kept_counted_and_replayed() {
    let root = temp_root("dead");
    let q = Queue::open(&root, "primary", 100, T0).expect("open");
    let alert = volume_post("AUSDT", VolumeAlertType::Spike);
    q.push(&alert, T0).expect("push");
    let (post, _) = q.next(|_| true).expect("pending");
    q.dead_letter(&post, "HTTP 400: bad".into(), T0)
        .expect("dead");
    let stats = q.stats(T0);
    assert_eq!(
        (stats.pending, stats.dead_letters, stats.dropped),
        (0, 1, 1)
    );
    assert!(matches!(
        stats.condition(),
        DeliveryCondition::DeadLetters(_)
    ));
    let dir = root.join("outbox/primary");
    let listed = dead_letters::list(&dir).expect("list");
    assert_eq!(listed.len(), 1);
    let letter = listed[0].1.as_ref().expect("readable");
    assert_eq!(letter.reason, "HTTP 400: bad");
    assert_eq!(letter.post.label, post.label);
    // Replayed: queued again under a new number, dedup window restarted.
    dead_letters::request_retry(&dir, "all").expect("retry");
    q.adopt_retries(T0 + 1000);
    let stats = q.stats(T0 + 1000);
    assert_eq!((stats.pending, stats.dead_letters), (1, 0));
    assert_eq!(q.push(&alert, T0 + 1000).expect("push"), Pushed::Duplicate);
    // Dropped for good.
    let (post, _) = q.next(|_| true).expect("pending");
    q.dead_letter(&post, "HTTP 404".into(), T0).expect("dead");
    assert_eq!(
        dead_letters::drop_letters(&dir, "all").expect("drop").len(),
        1
    );
    q.adopt_retries(T0);
    assert_eq!(q.stats(T0).dead_letters, 0);
    assert!(dead_letters::drop_letters(&dir, "0000000000000099").is_err());
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn a_corrupt_file_is_moved_aside_not_fatal() {
    let root = temp_root("corrupt");
    let q = Queue::open(&root, "primary", 100, T0).expect("open");
    q.push(&samples(1), T0).expect("push");
    drop(q);
    fs::write(root.join("outbox/primary/0000000000000007.json"), b"{nope").expect("write");
    let q = Queue::open(&root, "primary", 100, T0).expect("reopen");
    assert_eq!(q.stats(T0).pending, 1);
    assert!(root
        .join("outbox/primary/0000000000000007.corrupt")
        .exists());
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn dead_letters_beyond_the_cap_delete_the_oldest_and_are_counted() {
    let root = temp_root("deadcap");
    let q = Queue::open(&root, "primary", 100, T0)
        .expect("open")
        .with_dead_letters_max(3);
    for (i, symbol) in ["AUSDT", "BUSDT", "CUSDT", "DUSDT", "EUSDT"]
        .iter()
        .enumerate()
    {
        q.push(&volume_post(symbol, VolumeAlertType::Spike), T0)
            .expect("push");
        let (post, _) = q.next(|_| true).expect("pending");
        q.dead_letter(&post, format!("HTTP 400: {i}"), T0)
            .expect("dead");
    }
    let stats = q.stats(T0);
    assert_eq!(
        (
            stats.dead_letters,
            stats.dropped,
            stats.dead_letters_deleted
        ),
        (3, 5, 2)
    );
    assert_eq!(stats.dead_letters_max, 3);
    let kept: Vec<String> = dead_letters::list(&root.join("outbox/primary"))
        .expect("list")
        .into_iter()
        .filter_map(|(_, letter)| letter.ok().map(|l| l.post.label))
        .collect();
    assert_eq!(kept.len(), 3);
    assert!(
        kept[0].contains("CUSDT") && kept[2].contains("EUSDT"),
        "the newest stay: {kept:?}"
    );
    match stats.condition() {
        DeliveryCondition::DeadLetters(why) => {
            assert!(
                why.contains("2 older ones deleted at the cap of 3"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A lower cap at the next start trims what the folder holds.
    drop(q);
    let q = Queue::open(&root, "primary", 100, T0)
        .expect("reopen")
        .with_dead_letters_max(1);
    let stats = q.stats(T0);
    assert_eq!((stats.dead_letters, stats.dead_letters_deleted), (1, 2));
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn delivered_posts_are_counted_by_kind_and_the_oldest_pending_time_is_kept() {
    let root = temp_root("bykind");
    let q = Queue::open(&root, "primary", 100, T0).expect("open");
    q.push(&volume_post("AUSDT", VolumeAlertType::Spike), T0)
        .expect("push");
    q.push(&volume_post("BUSDT", VolumeAlertType::Spike), T0 + 7_000)
        .expect("push");
    let stats = q.stats(T0 + 10_000);
    assert_eq!(stats.oldest_pending_enqueued_ms, Some(T0));
    assert_eq!(stats.oldest_pending_seconds, Some(10));
    assert!(stats.delivered_by_kind.is_empty());
    let (post, _) = q.next(|_| true).expect("pending");
    q.delivered(&post, T0 + 10_000).expect("delivered");
    let stats = q.stats(T0 + 10_000);
    assert_eq!(stats.delivered_by_kind.get("volume_alert"), Some(&1));
    assert_eq!(stats.oldest_pending_enqueued_ms, Some(T0 + 7_000));
    let _ = fs::remove_dir_all(&root);
}
