//! `/metrics` sections about Binance: the funding WebSocket and cache, the
//! request-weight governor, and the caps on answer bodies.

use std::time::SystemTime;

use super::encode::{Encoder, Kind};
use crate::clock::unix_ms;
use crate::http::context::HttpContext;
use crate::jobs::funding_stream::StreamState;

/// The funding WebSocket's state and counters, and the funding cache's age.
pub(super) fn websocket(e: &mut Encoder, ctx: &HttpContext, now: SystemTime) {
    let stream = &ctx.funding.stream;
    e.family(
        "volspike_websocket_state",
        Kind::Gauge,
        "1 for the funding WebSocket's current state.",
    );
    for (state, word) in [
        (StreamState::Disabled, "disabled"),
        (StreamState::Connecting, "connecting"),
        (StreamState::Connected, "connected"),
        (StreamState::Backoff, "backoff"),
        (StreamState::Stopped, "stopped"),
    ] {
        e.sample(
            "volspike_websocket_state",
            &[("state", word)],
            f64::from(u8::from(stream.state() == state)),
        );
    }
    let now_ms = unix_ms(now);
    let cache = &ctx.funding.cache;
    let updated_at = |age: std::time::Duration| {
        now_ms.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)) as f64 / 1000.0
    };
    // Points in time are absent (not zero) before there is one: zero would read 1970.
    #[rustfmt::skip]
    let families: [(&str, Kind, &str, Option<f64>); 8] = [
        ("volspike_websocket_messages_total", Kind::Counter, "Data frames received on the funding WebSocket.", Some(stream.messages_received() as f64)),
        ("volspike_websocket_garbage_frames_total", Kind::Counter, "Unreadable frames skipped.", Some(stream.garbage_frames() as f64)),
        ("volspike_websocket_reconnects_total", Kind::Counter, "Connection attempts after the first.", Some(stream.reconnect_attempts() as f64)),
        ("volspike_websocket_last_message_timestamp_seconds", Kind::Gauge, "When the last data frame arrived, seconds since the epoch.", stream.last_message_ms().map(|ms| ms as f64 / 1000.0)),
        ("volspike_funding_symbols", Kind::Gauge, "Symbols with funding data in the cache.", Some(cache.funding_len() as f64)),
        ("volspike_funding_oldest_update_timestamp_seconds", Kind::Gauge, "When the least recently updated symbol was last updated, seconds since the epoch.", cache.oldest_age(now).map(updated_at)),
        ("volspike_funding_evicted_symbols_total", Kind::Counter, "Symbols dropped from the funding cache: no longer listed by Binance (once silent past the stale limit) or silent for an hour.", Some(cache.evicted_total() as f64)),
        ("volspike_funding_newest_update_timestamp_seconds", Kind::Gauge, "When the most recently updated symbol was last updated, seconds since the epoch.", cache.newest_age(now).map(updated_at)),
    ];
    e.singles(families);
}

/// The weight governor: weight in use, ceiling, limit, waits, 429s, pauses.
pub(super) fn governor(e: &mut Encoder, ctx: &HttpContext) {
    let Some(status) = ctx.governor.as_ref().map(|g| g.status()) else {
        return;
    };
    #[rustfmt::skip]
    let families: [(&str, Kind, &str, f64); 9] = [
        ("volspike_binance_weight_used", Kind::Gauge, "Binance request weight counted in the current window (max of own count and X-MBX-USED-WEIGHT-1M).", f64::from(status.used_in_window)),
        ("volspike_binance_weight_ceiling", Kind::Gauge, "The weight this appliance allows itself per window.", f64::from(status.ceiling)),
        ("volspike_binance_weight_limit", Kind::Gauge, "Binance's weight limit per window.", f64::from(status.limit)),
        ("volspike_binance_weight_reserved", Kind::Gauge, "Weight per window reserved for open_interest's polls; the volume sweep leaves it free.", f64::from(status.reserved_per_window)),
        ("volspike_binance_weight_sweep_cap", Kind::Gauge, "Most weight the volume sweep may take per window; the rest of it waits for the next window.", f64::from(status.yielding_cap)),
        ("volspike_binance_weight_queued", Kind::Gauge, "Callers waiting for weight now.", status.queued as f64),
        ("volspike_binance_requests_total", Kind::Counter, "Binance REST requests granted weight.", status.requests_total as f64),
        ("volspike_binance_rate_limited_total", Kind::Counter, "429/418 answers from Binance.", status.rate_limited_total as f64),
        ("volspike_binance_pauses_total", Kind::Counter, "Pauses after a 429/418.", status.pauses_total as f64),
    ];
    e.singles(families);
}

/// The caps on Binance answer bodies and the answers cut at them.
pub(super) fn bodies(e: &mut Encoder) {
    let bodies = crate::binance::rest::body_limits();
    #[rustfmt::skip]
    let families: [(&str, Kind, &str, f64); 3] = [
        ("volspike_binance_body_cap_bytes", Kind::Gauge, "Largest Binance answer read (exchangeInfo's cap, counted after gzip).", bodies.largest_cap_bytes as f64),
        ("volspike_binance_body_in_flight_max_bytes", Kind::Gauge, "Binance answer bytes all calls in flight may hold at once.", bodies.in_flight_bytes as f64),
        ("volspike_binance_bodies_cut_total", Kind::Counter, "Binance answers cut at their cap (the call failed).", bodies.cut_total as f64),
    ];
    e.singles(families);
}
