//! `/metrics` section of the volume job's kline streams (`stream` mode):
//! connections and streams against their caps, the SUBSCRIBE/UNSUBSCRIBE
//! messages and the pacing that holds them, reconnects, symbols in a gap
//! (swept over REST) and previous hours read over REST. Absent in `sweep`
//! mode, where no stream runs.

use std::time::SystemTime;

use super::encode::{Encoder, Kind};
use crate::binance::klines;
use crate::clock::unix_ms;
use crate::http::context::HttpContext;

/// The kline streams' families, when they run.
pub(super) fn streams(e: &mut Encoder, ctx: &HttpContext, now: SystemTime) {
    let Some(v) = ctx
        .volume_stream
        .as_ref()
        .and_then(|s| s.view(unix_ms(now)))
    else {
        return;
    };
    let messages = "volspike_kline_control_messages_total";
    e.family(
        messages,
        Kind::Counter,
        "SUBSCRIBE/UNSUBSCRIBE messages sent on the kline connections.",
    );
    e.sample(
        messages,
        &[("method", "SUBSCRIBE")],
        v.links.subscribe_messages as f64,
    );
    e.sample(
        messages,
        &[("method", "UNSUBSCRIBE")],
        v.links.unsubscribe_messages as f64,
    );
    #[rustfmt::skip]
    let families: [(&str, Kind, &str, f64); 10] = [
        ("volspike_kline_connections", Kind::Gauge, "Kline connections started (one per 1024 streams).", v.connections as f64),
        ("volspike_kline_connections_up", Kind::Gauge, "Kline connections up now.", v.connections_up as f64),
        ("volspike_kline_streams", Kind::Gauge, "<symbol>@kline_1h streams subscribed over all kline connections.", v.streams as f64),
        ("volspike_kline_streams_per_connection_max", Kind::Gauge, "Most streams one kline connection carries (Binance's cap).", klines::MAX_STREAMS_PER_CONNECTION as f64),
        ("volspike_kline_control_messages_per_second_max", Kind::Gauge, "Most control messages sent per second per kline connection (Binance allows 10).", klines::SEND_PER_SECOND as f64),
        ("volspike_kline_control_messages_paced_total", Kind::Counter, "Control messages held back by that pacing before they were sent.", v.links.paced_messages as f64),
        ("volspike_kline_reconnects_total", Kind::Counter, "Kline connection attempts after each connection's first (after a failure, close, silence or the 24 h replacement).", v.links.reconnects as f64),
        ("volspike_kline_updates_total", Kind::Counter, "Kline updates received.", v.updates as f64),
        ("volspike_kline_gap_symbols", Kind::Gauge, "Subscribed symbols without a kline update for the silence limit (or none yet): the next 5-minute slot sweeps them over REST.", v.gap_symbols as f64),
        ("volspike_kline_previous_volumes_read_total", Kind::Counter, "Previous hours' volumes read over REST (at start, after a gap, new listings).", v.previous_hours_read as f64),
    ];
    e.singles(families);
}
