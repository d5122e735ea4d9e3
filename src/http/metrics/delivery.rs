//! `/metrics` section about what the jobs hand the outbox and what each
//! backend accepted: alerts and posts by type, backlog, retries, dead
//! letters, pauses.

use super::encode::{Encoder, Kind};
use crate::backend::Kind as PostKind;
use crate::http::context::HttpContext;

/// Alerts and posts enqueued by type, alerts delivered per backend, and
/// each backend's backlog and delivery counters.
pub(super) fn alerts_and_delivery(e: &mut Encoder, ctx: &HttpContext) {
    let enqueued = ctx
        .outbox
        .as_ref()
        .map(|o| o.enqueued_by_kind())
        .unwrap_or_default();
    let count = |kind: PostKind| enqueued.get(kind.as_str()).copied().unwrap_or(0) as f64;
    // Enqueued, not sent: whether a backend accepted them is
    // volspike_outbox_delivered_total, per backend.
    e.family(
        "volspike_alerts_enqueued_total",
        Kind::Counter,
        "Alerts accepted by the outbox (queued for the backends, or logged with --local), by type; duplicates not counted.",
    );
    for kind in PostKind::ALL.into_iter().filter(|k| k.is_alert()) {
        e.sample(
            "volspike_alerts_enqueued_total",
            &[("type", kind.as_str())],
            count(kind),
        );
    }
    let omitted = ctx.oi_change_omissions.totals();
    e.family(
        "volspike_volume_alerts_oi_change_omitted_total",
        Kind::Counter,
        "Volume alerts sent without oiChange: the hour-start lookup missed the tick's budget, or the backend's snapshot was too far from the hour start.",
    );
    for (reason, count) in [
        ("budget", omitted.past_budget),
        ("stale_snapshot", omitted.stale_snapshot),
    ] {
        e.sample(
            "volspike_volume_alerts_oi_change_omitted_total",
            &[("reason", reason)],
            count as f64,
        );
    }
    let stats = ctx.outbox.as_ref().map(|o| o.stats()).unwrap_or_default();
    // Counted where the outbox records the backend's 2xx: an alert sent to
    // two backends counts once on each.
    e.family(
        "volspike_alerts_delivered_total",
        Kind::Counter,
        "Alerts a backend accepted (2xx), by backend and type.",
    );
    for (backend, s) in &stats {
        for kind in PostKind::ALL.into_iter().filter(|k| k.is_alert()) {
            let delivered = s.delivered_by_kind.get(kind.as_str()).copied().unwrap_or(0);
            e.sample(
                "volspike_alerts_delivered_total",
                &[("backend", backend), ("type", kind.as_str())],
                delivered as f64,
            );
        }
    }
    e.family(
        "volspike_posts_enqueued_total",
        Kind::Counter,
        "Posts of every kind accepted by the outbox; duplicates not counted.",
    );
    for kind in PostKind::ALL {
        e.sample(
            "volspike_posts_enqueued_total",
            &[("kind", kind.as_str())],
            count(kind),
        );
    }
    type Pick = fn(&crate::backend::DeliveryStats) -> Option<f64>;
    // The oldest pending time is absent when nothing is pending: zero would read 1970.
    #[rustfmt::skip]
    let families: [(&str, Kind, &str, Pick); 13] = [
        ("volspike_outbox_pending", Kind::Gauge, "Posts waiting for delivery (the undelivered backlog), per backend.", |s| Some(s.pending as f64)),
        ("volspike_outbox_oldest_pending_timestamp_seconds", Kind::Gauge, "When the oldest undelivered post was enqueued, seconds since the epoch (absent when none), per backend.", |s| s.oldest_pending_enqueued_ms.map(|ms| ms as f64 / 1000.0)),
        ("volspike_outbox_delivered_total", Kind::Counter, "Posts the backend accepted.", |s| Some(s.delivered as f64)),
        ("volspike_outbox_retried_total", Kind::Counter, "Delivery attempts that failed and will be retried.", |s| Some(s.retried as f64)),
        ("volspike_outbox_dropped_total", Kind::Counter, "Posts set aside as dead letters (refused with a 4xx, or a 5xx repeated while others went through).", |s| Some(s.dropped as f64)),
        ("volspike_outbox_shed_total", Kind::Counter, "Open-interest sample batches shed because the queue was full.", |s| Some(s.shed as f64)),
        ("volspike_outbox_refused_total", Kind::Counter, "Posts refused because the queue was full of alerts.", |s| Some(s.refused as f64)),
        ("volspike_outbox_dead_letters", Kind::Gauge, "Refused posts kept in the dead-letter folder (volspike outbox list), per backend.", |s| Some(s.dead_letters as f64)),
        ("volspike_outbox_dead_letters_max", Kind::Gauge, "Most dead letters kept per backend (VOLSPIKE_DEAD_LETTERS_MAX); the oldest are deleted beyond it.", |s| Some(s.dead_letters_max as f64)),
        ("volspike_outbox_dead_letters_deleted_total", Kind::Counter, "Dead letters deleted because the folder was at its cap.", |s| Some(s.dead_letters_deleted as f64)),
        ("volspike_outbox_coalesced_total", Kind::Counter, "Latest-state posts (universe, update-checked) replaced by a newer one before sending.", |s| Some(s.coalesced as f64)),
        ("volspike_outbox_paused", Kind::Gauge, "1 while the backend rejects the API key (401/403) and delivery to it waits.", |s| Some(f64::from(u8::from(s.paused.is_some())))),
        ("volspike_outbox_disk_error", Kind::Gauge, "1 while the state directory refuses the outbox's writes.", |s| Some(f64::from(u8::from(s.disk_error.is_some())))),
    ];
    for (name, kind, help, pick) in families {
        e.family(name, kind, help);
        for (backend, s) in &stats {
            if let Some(v) = pick(s) {
                e.sample(name, &[("backend", backend)], v);
            }
        }
    }
}
