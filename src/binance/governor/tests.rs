//! Governor tests on tokio's paused clock: time only moves when every task
//! waits, so the assertions hold however busy the machine is.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::*;
use crate::binance::endpoint::Endpoint;

/// A governor with a short window and a small ceiling.
fn governor(window_ms: u64, ceiling: u32) -> Arc<WeightGovernor> {
    let mut config =
        GovernorConfig::with_fraction(2 * ceiling, 0.5, Duration::from_millis(window_ms));
    config.ceiling = ceiling;
    config.max_backoff = Duration::from_secs(5);
    config.ban_backoff = Duration::from_secs(10);
    Arc::new(WeightGovernor::new(config))
}

/// A 429/418 answer without headers.
fn limited(status: u16) -> ResponseMeta {
    ResponseMeta {
        status,
        ..ResponseMeta::default()
    }
}

#[test]
fn weights_follow_the_binance_table() {
    use Endpoint::*;
    let sym = [("symbol", "BTCUSDT")];
    assert_eq!(weight_of(Ticker24h, &sym), 1);
    assert_eq!(weight_of(Ticker24h, &[]), 40);
    assert_eq!(weight_of(TickerPrice, &sym), 1);
    assert_eq!(weight_of(TickerPrice, &[]), 2);
    assert_eq!(weight_of(PremiumIndex, &sym), 1);
    assert_eq!(weight_of(PremiumIndex, &[]), 10);
    assert_eq!(weight_of(ExchangeInfo, &[]), 1);
    assert_eq!(weight_of(OpenInterest, &sym), 1);
    let klines = |limit: &'static str| weight_of(Klines, &[("symbol", "X"), ("limit", limit)]);
    assert_eq!(
        [
            klines("1"),
            klines("3"),
            klines("99"),
            klines("100"),
            klines("499")
        ],
        [1, 1, 1, 2, 2]
    );
    assert_eq!(
        [
            klines("500"),
            klines("1000"),
            klines("1001"),
            klines("1500")
        ],
        [5, 5, 10, 10]
    );
    assert_eq!(weight_of(Klines, &sym), 5, "Binance's default limit is 500");
    assert_eq!(
        klines("lots"),
        10,
        "unparsable limit is charged the maximum"
    );
}

#[test]
fn budget_planning() {
    let g = WeightGovernor::default();
    assert_eq!(g.config().ceiling, 1200);
    assert!(g.can_fit_per_minute(1200));
    assert!(!g.can_fit_per_minute(1201));
    assert_eq!(g.min_interval_for(800, 0.5), Duration::from_secs(80));
    assert_eq!(g.min_interval_for(400, 1.0), Duration::from_secs(20));
    assert_eq!(g.min_interval_for(0, 0.5), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn never_more_than_the_ceiling_per_window_under_load() {
    let g = governor(1000, 10);
    let mut tasks = JoinSet::new();
    for i in 0..60u32 {
        let g = Arc::clone(&g);
        tasks.spawn(async move { g.acquire(1 + i % 3).await });
    }
    let mut per_window: BTreeMap<u64, u32> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let permit = joined.expect("acquire task");
        // The window a permit was charged to is the window it was granted in.
        assert_eq!(permit.window_index(), g.window_index(permit.granted_at()));
        *per_window.entry(permit.window_index()).or_default() += permit.weight();
    }
    assert!(per_window.values().all(|&w| w <= 10), "{per_window:?}");
    assert_eq!(per_window.values().sum::<u32>(), 120);
    assert!(per_window.len() >= 12, "{per_window:?}");
    let status = g.status();
    assert_eq!((status.requests_total, status.queued), (60, 0));
}

#[tokio::test(start_paused = true)]
async fn queues_until_the_next_window_instead_of_rejecting() {
    let g = governor(1000, 10);
    let first = g.acquire(10).await;
    let boundary = g.next_boundary(first.granted_at());
    let waiter = tokio::spawn({
        let g = Arc::clone(&g);
        async move { g.acquire(3).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished());
    assert_eq!(g.status().queued, 1);
    assert_eq!(g.status().used_in_window, 10);
    let second = waiter.await.expect("waiter");
    assert!(second.granted_at() >= boundary);
    assert_eq!(second.window_index(), first.window_index() + 1);
    assert_eq!(g.status().queued, 0);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_nothing_charged() {
    let g = governor(1000, 10);
    let full = g.acquire(10).await;
    let half_way = (g.next_boundary(full.granted_at()) - full.granted_at()) / 2;
    let gave_up = tokio::time::timeout(half_way, g.acquire(5)).await;
    assert!(gave_up.is_err());
    let status = g.status();
    assert_eq!((status.queued, status.own_used_in_window), (0, 10));
}

#[tokio::test(start_paused = true)]
async fn the_server_figure_counts_when_higher() {
    let g = governor(1000, 10);
    let p = g.acquire(1).await;
    let meta = ResponseMeta {
        status: 200,
        used_weight_1m: Some(9),
        ..ResponseMeta::default()
    };
    assert_eq!(g.observe(&p, &meta), None);
    assert_eq!(g.status().used_in_window, 9);
    let boundary = g.next_boundary(Instant::now());
    let fits = g.acquire(1).await;
    assert_eq!(fits.window_index(), p.window_index());
    let waits = g.acquire(2).await;
    assert!(waits.granted_at() >= boundary);
}

#[tokio::test(start_paused = true)]
async fn a_call_heavier_than_the_ceiling_goes_alone_in_a_fresh_window() {
    let g = governor(1000, 10);
    let heavy = g.acquire(40).await;
    let next = g.acquire(1).await;
    assert!(next.window_index() > heavy.window_index());
}

#[tokio::test(start_paused = true)]
async fn retry_after_pauses_every_caller_for_at_least_that_long() {
    let g = governor(1000, 100);
    let p = g.acquire(1).await;
    let t0 = Instant::now();
    let meta = ResponseMeta {
        status: 429,
        retry_after: Some(Duration::from_secs(3)),
        ..ResponseMeta::default()
    };
    assert_eq!(g.observe(&p, &meta), Some(Duration::from_secs(3)));
    assert!(g.status().paused_until.is_some());
    let mut tasks = JoinSet::new();
    for _ in 0..5 {
        let g = Arc::clone(&g);
        tasks.spawn(async move { g.acquire(1).await });
    }
    while let Some(joined) = tasks.join_next().await {
        let permit = joined.expect("acquire task");
        assert!(permit.granted_at() >= t0 + Duration::from_secs(3));
    }
    let status = g.status();
    assert_eq!((status.pauses_total, status.rate_limited_total), (1, 1));
    assert_eq!(status.paused_until, None);
}

#[tokio::test(start_paused = true)]
async fn without_retry_after_back_off_to_the_boundary_then_double() {
    let g = governor(1000, 100);
    let mut expected_extra = [0u64, 1000, 3000].into_iter();
    for _ in 0..3 {
        let p = g.acquire(1).await;
        let now = Instant::now();
        let to_boundary = g.next_boundary(now) - now;
        let pause = g.observe(&p, &limited(429)).expect("paused");
        let extra = Duration::from_millis(expected_extra.next().unwrap_or_default());
        assert_eq!(pause, to_boundary + extra);
        let after = g.acquire(1).await;
        assert!(after.granted_at() >= now + pause);
        // A normal answer would reset the doubling; this permit just goes unused.
    }
    // Fourth strike: to the boundary + 7 windows, capped at max_backoff (5 s).
    let p = g.acquire(1).await;
    let pause = g.observe(&p, &limited(429)).expect("paused");
    assert_eq!(pause, Duration::from_secs(5));
    assert_eq!(g.status().pauses_total, 4);
}

#[tokio::test(start_paused = true)]
async fn a_normal_answer_resets_the_doubling() {
    let g = governor(1000, 100);
    let p = g.acquire(1).await;
    g.observe(&p, &limited(429));
    let ok = g.acquire(1).await;
    assert_eq!(g.observe(&ok, &limited(200)), None);
    let p = g.acquire(1).await;
    let now = Instant::now();
    let pause = g.observe(&p, &limited(429)).expect("paused");
    assert_eq!(pause, g.next_boundary(now) - now);
}

#[tokio::test(start_paused = true)]
async fn requests_already_in_flight_do_not_escalate() {
    let g = governor(1000, 100);
    let in_flight: Vec<Permit> = vec![g.acquire(1).await, g.acquire(1).await, g.acquire(1).await];
    let now = Instant::now();
    let to_boundary = g.next_boundary(now) - now;
    for p in &in_flight {
        assert_eq!(g.observe(p, &limited(429)), Some(to_boundary));
    }
    let status = g.status();
    assert_eq!((status.pauses_total, status.rate_limited_total), (1, 3));
    // And their late successes do not reset the count either.
    assert_eq!(g.lock().strikes, 1);
}

#[tokio::test(start_paused = true)]
async fn a_ban_without_header_pauses_at_least_the_ban_minimum() {
    let g = governor(1000, 100);
    let p = g.acquire(1).await;
    let pause = g.observe(&p, &limited(418)).expect("paused");
    assert_eq!(pause, Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn a_ban_until_a_time_is_honoured() {
    let g = governor(1000, 100);
    let p = g.acquire(1).await;
    let until = g.unix_ms(Instant::now()) + 30_000;
    let meta = ResponseMeta {
        status: 418,
        banned_until_ms: Some(until),
        ..ResponseMeta::default()
    };
    assert_eq!(g.observe(&p, &meta), Some(Duration::from_secs(30)));
    let t0 = Instant::now();
    let next = g.acquire(1).await;
    assert!(next.granted_at() >= t0 + Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_later_shorter_retry_after_does_not_shorten_the_pause() {
    let g = governor(1000, 100);
    let a = g.acquire(1).await;
    let b = g.acquire(1).await;
    let long = ResponseMeta {
        status: 429,
        retry_after: Some(Duration::from_secs(4)),
        ..ResponseMeta::default()
    };
    let short = ResponseMeta {
        retry_after: Some(Duration::from_secs(1)),
        ..long.clone()
    };
    let t0 = Instant::now();
    g.observe(&a, &long);
    assert_eq!(g.observe(&b, &short), Some(Duration::from_secs(4)));
    assert!(g.acquire(1).await.granted_at() >= t0 + Duration::from_secs(4));
}

#[test]
fn status_serializes_for_health() {
    let g = WeightGovernor::default();
    let json = serde_json::to_value(g.status()).expect("serializes");
    assert_eq!(json["ceiling"], 1200);
    assert_eq!(json["limit"], 2400);
    assert_eq!(json["used_in_window"], 0);
    assert!(json["paused_until"].is_null());
}

#[tokio::test(start_paused = true)]
async fn a_yielding_burst_leaves_the_reservation_to_regular_callers() {
    let g = governor(60_000, 960);
    g.reserve(400);
    // 960 − 400 reserved − 96 headroom.
    assert_eq!(g.yielding_cap(), 464);
    let mut burst = JoinSet::new();
    for _ in 0..600 {
        let g = Arc::clone(&g);
        burst.spawn(async move { g.acquire_yielding(1).await.window_index() });
    }
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    let status = g.status();
    assert_eq!(status.yielding_used_in_window, 464);
    assert_eq!(status.reserved_per_window, 400);
    // A regular caller is not held behind the waiting burst.
    let regular = g.acquire(400).await;
    let first = regular.window_index();
    let mut windows = BTreeMap::new();
    while let Some(w) = burst.join_next().await {
        *windows.entry(w.expect("task")).or_insert(0) += 1;
    }
    assert_eq!(windows.get(&first), Some(&464));
    assert_eq!(windows.get(&(first + 1)), Some(&136));
    // A reservation larger than the ceiling slows a burst but never stops it.
    g.reserve(5_000);
    assert_eq!(g.yielding_cap(), 240);
}
