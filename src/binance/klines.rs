//! The kline streams (`<symbol>@kline_1h` on the `/market` route,
//! docs/binance.md "kline"): the pure parts, unit-tested without sockets.
//!
//! - [`parse_event`] reads one combined-stream frame into a [`KlineEvent`];
//! - [`plan`] spreads the universe over connections (at most
//!   [`MAX_STREAMS_PER_CONNECTION`] each) and says what to SUBSCRIBE and
//!   UNSUBSCRIBE on each one when the universe changes;
//! - [`control_messages`] turns one connection's changes into batched
//!   SUBSCRIBE/UNSUBSCRIBE texts (many streams per message);
//! - [`SendPacer`] keeps what we send under Binance's per-connection message
//!   limit.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Binance's limit of streams on one connection.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;
/// Streams named in one SUBSCRIBE/UNSUBSCRIBE: 200 names are ~4 KB, so the
/// whole 600-symbol universe subscribes in 3 messages.
pub const STREAMS_PER_MESSAGE: usize = 200;
/// Messages we send per second and connection. Binance allows 10 and counts
/// pongs too, so half is left for them.
pub const SEND_PER_SECOND: usize = 5;
/// The interval of the candles read.
pub const INTERVAL: &str = "1h";

/// The stream name of one symbol's hourly candles (`btcusdt@kline_1h`).
pub fn stream_name(symbol: &str) -> String {
    format!("{}@kline_{INTERVAL}", symbol.to_ascii_lowercase())
}

/// One kline update: the candle as it stands at event time `E`.
#[derive(Debug, Clone, PartialEq)]
pub struct KlineEvent {
    /// Binance's event time (`E`), ms: where detection latency starts.
    pub event_time_ms: u64,
    /// Symbol, upper case (`s`).
    pub symbol: String,
    /// Candle open time (`k.t`), ms: identifies the hour.
    pub open_time_ms: u64,
    /// Candle close time (`k.T`), ms.
    pub close_time_ms: u64,
    /// Open price (`k.o`).
    pub open: f64,
    /// Last price (`k.c`).
    pub close: f64,
    /// Quote volume so far, USDT (`k.q`).
    pub quote_volume: f64,
    /// Whether the candle has closed (`k.x`): its volume is final.
    pub closed: bool,
}

/// Why a frame was not a kline event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotKline {
    /// Valid JSON without `data` (a SUBSCRIBE acknowledgement): not data.
    #[error("control frame")]
    Control,
    /// Not JSON, or a kline without a usable field.
    #[error("unreadable kline frame: {0}")]
    Garbage(String),
}

#[derive(Deserialize)]
struct Envelope {
    data: Option<RawEvent>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "E")]
    event_time: u64,
    s: String,
    k: RawKline,
}

#[derive(Deserialize)]
struct RawKline {
    t: u64,
    #[serde(rename = "T")]
    close_time: u64,
    o: String,
    c: String,
    q: String,
    x: bool,
}

fn decimal(field: &str, text: &str) -> Result<f64, NotKline> {
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| NotKline::Garbage(format!("{field} is not a number: {text:?}")))
}

/// Reads one combined-stream frame (`{"stream":"btcusdt@kline_1h","data":{...}}`).
pub fn parse_event(text: &str) -> Result<KlineEvent, NotKline> {
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| NotKline::Garbage(e.to_string()))?;
    let Some(raw) = envelope.data else {
        return Err(NotKline::Control);
    };
    if raw.s.is_empty() || raw.s.len() > 32 {
        return Err(NotKline::Garbage(format!("unusable symbol {:?}", raw.s)));
    }
    Ok(KlineEvent {
        event_time_ms: raw.event_time,
        symbol: raw.s,
        open_time_ms: raw.k.t,
        close_time_ms: raw.k.close_time,
        open: decimal("k.o", &raw.k.o)?,
        close: decimal("k.c", &raw.k.c)?,
        quote_volume: decimal("k.q", &raw.k.q)?,
        closed: raw.k.x,
    })
}

/// What one connection must change to carry its share of the universe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionPlan {
    /// Symbols to subscribe (new listings, or the first fill).
    pub subscribe: Vec<String>,
    /// Symbols to unsubscribe (delisted).
    pub unsubscribe: Vec<String>,
}

/// Spreads `desired` over connections that carry `assigned` now.
///
/// A symbol stays on the connection it is on (no churn); delisted symbols
/// are unsubscribed where they are; new symbols fill the connections with
/// room in order, and open new connections (plans past `assigned.len()`)
/// only when every one is full.
pub fn plan(assigned: &[BTreeSet<String>], desired: &BTreeSet<String>) -> Vec<ConnectionPlan> {
    let mut plans: Vec<ConnectionPlan> = assigned
        .iter()
        .map(|carried| ConnectionPlan {
            subscribe: Vec::new(),
            unsubscribe: carried.difference(desired).cloned().collect(),
        })
        .collect();
    let mut counts: Vec<usize> = assigned
        .iter()
        .zip(&plans)
        .map(|(carried, p)| carried.len() - p.unsubscribe.len())
        .collect();
    let carried_now: BTreeSet<&String> = assigned.iter().flatten().collect();
    let mut slot = 0;
    for symbol in desired.iter().filter(|s| !carried_now.contains(s)) {
        while slot < counts.len() && counts[slot] >= MAX_STREAMS_PER_CONNECTION {
            slot += 1;
        }
        if slot == counts.len() {
            counts.push(0);
            plans.push(ConnectionPlan::default());
        }
        plans[slot].subscribe.push(symbol.clone());
        counts[slot] += 1;
    }
    plans
}

/// The SUBSCRIBE/UNSUBSCRIBE texts for one connection's plan, at most
/// [`STREAMS_PER_MESSAGE`] streams each; ids count up from `first_id`.
pub fn control_messages(plan: &ConnectionPlan, first_id: u64) -> Vec<String> {
    let mut id = first_id;
    let mut out = Vec::new();
    for (method, symbols) in [
        ("UNSUBSCRIBE", &plan.unsubscribe),
        ("SUBSCRIBE", &plan.subscribe),
    ] {
        for chunk in symbols.chunks(STREAMS_PER_MESSAGE) {
            let params: Vec<String> = chunk.iter().map(|s| stream_name(s)).collect();
            out.push(
                serde_json::json!({ "method": method, "params": params, "id": id }).to_string(),
            );
            id += 1;
        }
    }
    out
}

/// Keeps sent messages at most `per_second` in any one-second window.
#[derive(Debug, Clone)]
pub struct SendPacer {
    /// The limit per sliding second.
    per_second: usize,
    /// When the messages of the last second were sent.
    sent: VecDeque<Instant>,
}

impl SendPacer {
    /// A pacer allowing `per_second` messages (at least 1).
    pub fn new(per_second: usize) -> SendPacer {
        SendPacer {
            per_second: per_second.max(1),
            sent: VecDeque::new(),
        }
    }

    /// How long to wait at `now` before the next message may go.
    pub fn wait_before_next(&mut self, now: Instant) -> Duration {
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            self.sent.pop_front();
        }
        match self.sent.front() {
            Some(oldest) if self.sent.len() >= self.per_second => {
                Duration::from_secs(1).saturating_sub(now.duration_since(*oldest))
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a message sent at `now`.
    pub fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: &str = r#"{"stream":"btcusdt@kline_1h","data":{"e":"kline","E":1764770712345,"s":"BTCUSDT","k":{"t":1764770400000,"T":1764773999999,
"s":"BTCUSDT","i":"1h","f":1,"L":2,"o":"65000.1","c":"65100.0","h":"65200.0",
"l":"64900.0","v":"1234.5","n":100,"x":false,"q":"80321456.7","V":"600.1",
"Q":"39012345.6","B":"0"}}}"#;

    #[test]
    fn reads_the_documented_event() {
        let event = parse_event(FRAME).expect("the docs' example");
        assert_eq!(
            event,
            KlineEvent {
                event_time_ms: 1_764_770_712_345,
                symbol: "BTCUSDT".into(),
                open_time_ms: 1_764_770_400_000,
                close_time_ms: 1_764_773_999_999,
                open: 65000.1,
                close: 65100.0,
                quote_volume: 80_321_456.7,
                closed: false,
            }
        );
    }

    #[test]
    fn acknowledgements_and_garbage_are_told_apart() {
        assert_eq!(
            parse_event(r#"{"result":null,"id":1}"#),
            Err(NotKline::Control)
        );
        assert!(matches!(parse_event("not json"), Err(NotKline::Garbage(_))));
        let bad_volume = FRAME.replace("\"q\":\"80321456.7\"", "\"q\":\"\"");
        assert!(matches!(
            parse_event(&bad_volume),
            Err(NotKline::Garbage(e)) if e.contains("k.q")
        ));
    }

    fn symbols(range: std::ops::Range<usize>) -> BTreeSet<String> {
        range.map(|i| format!("S{i:04}USDT")).collect()
    }

    #[test]
    fn a_large_universe_spreads_over_full_connections() {
        let plans = plan(&[], &symbols(0..1500));
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].subscribe.len(), MAX_STREAMS_PER_CONNECTION);
        assert_eq!(plans[1].subscribe.len(), 1500 - MAX_STREAMS_PER_CONNECTION);
        let messages = control_messages(&plans[0], 1);
        // 1024 streams in batches of 200: 6 messages, ids 1..=6.
        assert_eq!(messages.len(), 6);
        assert!(messages[0]
            .starts_with(r#"{"id":1,"method":"SUBSCRIBE","params":["s0000usdt@kline_1h""#));
        assert!(messages[5].contains(r#""id":6"#));
    }

    #[test]
    fn universe_changes_touch_only_what_changed() {
        let carried = vec![symbols(0..1024), symbols(1024..1100)];
        let mut desired = symbols(1..1100); // S0000 delisted
        desired.insert("NEWUSDT".into());
        desired.insert("ZNEWUSDT".into());
        let plans = plan(&carried, &desired);
        assert_eq!(plans.len(), 2, "room freed on the first connection");
        assert_eq!(plans[0].unsubscribe, vec!["S0000USDT".to_string()]);
        // One freed slot on the first connection, the rest on the second.
        assert_eq!(plans[0].subscribe, vec!["NEWUSDT".to_string()]);
        assert_eq!(plans[1].subscribe, vec!["ZNEWUSDT".to_string()]);
        let messages = control_messages(&plans[0], 7);
        assert_eq!(
            messages,
            vec![
                r#"{"id":7,"method":"UNSUBSCRIBE","params":["s0000usdt@kline_1h"]}"#.to_string(),
                r#"{"id":8,"method":"SUBSCRIBE","params":["newusdt@kline_1h"]}"#.to_string(),
            ]
        );
        assert!(plan(&carried, &symbols(0..1100))
            .iter()
            .all(|p| p.subscribe.is_empty() && p.unsubscribe.is_empty()));
    }

    #[test]
    fn the_pacer_never_lets_more_than_the_limit_into_a_second() {
        let start = Instant::now();
        let mut pacer = SendPacer::new(SEND_PER_SECOND);
        let mut now = start;
        let mut sent = Vec::new();
        for _ in 0..12 {
            now += pacer.wait_before_next(now);
            pacer.record(now);
            sent.push(now);
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..]
                .iter()
                .filter(|u| u.duration_since(*t) < Duration::from_secs(1))
                .count();
            assert!(in_window <= SEND_PER_SECOND, "{in_window} in one second");
        }
        // 12 messages at 5/s: the last goes out 2 s after the first.
        assert_eq!(sent[11].duration_since(start), Duration::from_secs(2));
    }
}
