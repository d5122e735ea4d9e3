//! The JSON bodies the appliance POSTs to the backend, field for field as
//! `docs/backend.md` writes them (the live backend validates names and types).
//!
//! Timestamps are strings in the backend's format: build them with
//! [`crate::clock::iso`] (`YYYY-MM-DDTHH:MM:SSZ`; `+00:00` is refused by
//! `volume-alerts`). Optional numbers the spec says to omit when unknown are
//! `Option`s skipped when `None`; fields the spec says may be `null` are
//! `Option`s serialised as `null`.

use serde::Serialize;

/// At most this many open-interest samples per request (docs/backend.md).
pub const OI_SAMPLES_PER_REQUEST: usize = 100;
/// At most this many Telegram messages per request (docs/backend.md).
pub const TELEGRAM_MESSAGES_PER_REQUEST: usize = 50;

/// Route of [`VolumeAlert`].
pub const VOLUME_ALERT_PATH: &str = "/api/volume-alerts/ingest";
/// Route of [`OiSamples`].
pub const OI_SAMPLES_PATH: &str = "/api/market/open-interest/ingest";
/// Route of [`OiAlert`].
pub const OI_ALERT_PATH: &str = "/api/open-interest-alerts/ingest";
/// Route of [`LiquidUniverseUpdate`].
pub const UNIVERSE_UPDATE_PATH: &str = "/api/market/open-interest/liquid-universe/update";
/// Route of [`UserAlertTrigger`].
pub const USER_ALERT_TRIGGER_PATH: &str = "/api/user-alerts-trigger/trigger";
/// Route of [`UserAlertChecked`].
pub const USER_ALERT_CHECKED_PATH: &str = "/api/user-alerts-trigger/update-checked";
/// Route of [`TelegramIngest`].
pub const TELEGRAM_INGEST_PATH: &str = "/api/telegram/ingest";

/// Direction of the current hourly candle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CandleDirection {
    /// Close above open.
    Bullish,
    /// Close at or below open.
    Bearish,
}

/// Which volume alert of an hour this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VolumeAlertType {
    /// The first alert for (symbol, hour).
    Spike,
    /// The :30 update of an early spike.
    HalfUpdate,
    /// The update at the close of the hour.
    FullUpdate,
}

impl VolumeAlertType {
    /// The wire name (`SPIKE`, `HALF_UPDATE`, `FULL_UPDATE`), for dedup keys.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeAlertType::Spike => "SPIKE",
            VolumeAlertType::HalfUpdate => "HALF_UPDATE",
            VolumeAlertType::FullUpdate => "FULL_UPDATE",
        }
    }
}

/// `POST /api/volume-alerts/ingest`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeAlert {
    /// Binance symbol, e.g. `BTCUSDT`.
    pub symbol: String,
    /// Base asset, e.g. `BTC`.
    pub asset: String,
    /// Quote (USDT) volume of the current hour.
    pub current_volume: f64,
    /// Quote (USDT) volume of the previous hour.
    pub previous_volume: f64,
    /// `current / previous` (0 when previous is 0).
    pub volume_ratio: f64,
    /// Close of the current candle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Funding rate as a decimal (0.0001 = 0.01%).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub funding_rate: Option<f64>,
    /// Candle direction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candle_direction: Option<CandleDirection>,
    /// Human message, e.g. `BTC hourly volume 150.00M (3.33× prev) — VOLUME SPIKE!`.
    pub message: String,
    /// When the alert was made (ISO).
    pub timestamp: String,
    /// When the spike was detected (ISO).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detection_time: Option<String>,
    /// Start of the hour the alert is about (ISO).
    pub hour_timestamp: String,
    /// Whether this is an update of an earlier alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_update: Option<bool>,
    /// Which alert of the hour; `SPIKE` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_type: Option<VolumeAlertType>,
    /// `(close − open) / open` as a fraction; omitted when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_change: Option<f64>,
    /// OI change since the hour start as a fraction; omitted when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oi_change: Option<f64>,
}

/// One open-interest sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OiSample {
    /// Binance symbol.
    pub symbol: String,
    /// Open interest in contracts.
    pub open_interest: f64,
    /// Contracts × mark price; omitted when the mark price is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_interest_usd: Option<f64>,
    /// Mark price used for the USD value; omitted when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark_price: Option<f64>,
}

/// `POST /api/market/open-interest/ingest`: at most 100 samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OiSamples {
    /// The samples of this request (≤ [`OI_SAMPLES_PER_REQUEST`]).
    pub data: Vec<OiSample>,
    /// When the poll was made (ISO).
    pub timestamp: String,
    /// Symbols polled in the whole round (every chunk carries the same total).
    pub total_symbols: usize,
    /// `realtime` for the poller.
    pub source: String,
}

impl OiSamples {
    /// `source` of the realtime poller.
    pub const REALTIME: &'static str = "realtime";

    /// Splits one poll round into requests of ≤ 100 samples, each carrying
    /// the round's timestamp and total; no request when there is no sample
    /// (the backend answers 400 to an empty `data`).
    pub fn chunks(samples: Vec<OiSample>, timestamp: &str, source: &str) -> Vec<OiSamples> {
        let total_symbols = samples.len();
        chunked(samples, OI_SAMPLES_PER_REQUEST)
            .into_iter()
            .map(|data| OiSamples {
                data,
                timestamp: timestamp.to_string(),
                total_symbols,
                source: source.to_string(),
            })
            .collect()
    }
}

/// Direction of an open-interest move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum OiDirection {
    /// Open interest rose.
    Up,
    /// Open interest fell.
    Down,
}

impl OiDirection {
    /// The wire name, for dedup keys.
    pub fn as_str(self) -> &'static str {
        match self {
            OiDirection::Up => "UP",
            OiDirection::Down => "DOWN",
        }
    }
}

/// Timeframe of an open-interest alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum OiTimeframe {
    /// `5 min`.
    #[serde(rename = "5 min")]
    FiveMinutes,
    /// `15 min`.
    #[serde(rename = "15 min")]
    FifteenMinutes,
    /// `1 hour`.
    #[serde(rename = "1 hour")]
    OneHour,
}

impl OiTimeframe {
    /// The wire name, for dedup keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OiTimeframe::FiveMinutes => "5 min",
            OiTimeframe::FifteenMinutes => "15 min",
            OiTimeframe::OneHour => "1 hour",
        }
    }
}

/// `POST /api/open-interest-alerts/ingest`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OiAlert {
    /// Binance symbol.
    pub symbol: String,
    /// Up or down.
    pub direction: OiDirection,
    /// Open interest at the lookback instant, in contracts.
    pub baseline: f64,
    /// Open interest now, in contracts.
    pub current: f64,
    /// `(current − baseline) / baseline` as a fraction.
    pub pct_change: f64,
    /// `current − baseline`, in contracts.
    pub abs_change: f64,
    /// When the alert was made (ISO).
    pub timestamp: String,
    /// `oi_realtime_poller` ([`OiAlert::SOURCE`]).
    pub source: String,
    /// The lookback window.
    pub timeframe: OiTimeframe,
    /// Mark price change over the same two instants, as a fraction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_change: Option<f64>,
    /// Funding rate as a decimal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub funding_rate: Option<f64>,
}

impl OiAlert {
    /// `source` the old poller sent and the backend expects.
    pub const SOURCE: &'static str = "oi_realtime_poller";
}

/// One symbol of the liquid universe.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UniverseSymbol {
    /// Binance symbol.
    pub symbol: String,
    /// 24 h quote volume in USDT.
    #[serde(rename = "quoteVolume24h")]
    pub quote_volume_24h: f64,
    /// When it entered the universe (ISO).
    pub entered_at: String,
    /// When it was last seen liquid (ISO).
    pub last_seen_at: String,
}

/// `POST /api/market/open-interest/liquid-universe/update`.
///
/// The backend deletes every symbol missing from it, so
/// [`super::Post::universe`] refuses an empty one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiquidUniverseUpdate {
    /// The complete liquid set.
    pub symbols: Vec<UniverseSymbol>,
    /// When the set was computed (ISO).
    pub updated_at: String,
}

/// `POST /api/user-alerts-trigger/trigger`; `apiKey` is added at send time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAlertTrigger {
    /// The alert's id from the active list.
    pub alert_id: String,
    /// Binance symbol.
    pub symbol: String,
    /// Value now (price, funding decimal, or OI in USD).
    pub current_value: f64,
    /// Value at the previous check.
    pub previous_value: f64,
    /// Crossed upwards (else downwards).
    pub crossed_up: bool,
}

/// `POST /api/user-alerts-trigger/update-checked`; `apiKey` is added at send time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAlertChecked {
    /// The alert's id from the active list.
    pub alert_id: String,
    /// Value now.
    pub last_checked_value: f64,
}

/// The channel of a Telegram batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelegramChannel {
    /// Numeric channel id (e.g. `-1001234567890`).
    pub id: i64,
    /// Public username without `@`; `null` for a channel without one.
    pub username: Option<String>,
    /// Channel title.
    pub title: String,
    /// `macro`, `crypto` or `general`.
    pub category: String,
}

/// Media kind of a Telegram message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    /// A photo.
    Photo,
    /// A video.
    Video,
    /// A document.
    Document,
    /// An audio file.
    Audio,
    /// A voice note.
    Voice,
    /// A sticker.
    Sticker,
    /// A GIF-like animation.
    Animation,
}

/// One Telegram message (snake_case on the wire, as docs/backend.md writes it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelegramMessage {
    /// Message id within the channel.
    pub id: i64,
    /// Text or caption; `null` when there is none.
    pub text: Option<String>,
    /// When it was posted (ISO).
    pub date: String,
    /// Author signature; `null` when unknown.
    pub sender_name: Option<String>,
    /// View count; `null` when unknown.
    pub views: Option<u64>,
    /// Forward count; `null` when unknown.
    pub forwards: Option<u64>,
    /// Whether it carries media.
    pub has_media: bool,
    /// The media kind; `null` without media.
    pub media_type: Option<MediaType>,
    /// Links found in entities and previews.
    pub links: Vec<String>,
}

/// `POST /api/telegram/ingest`: one channel, at most 50 messages.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TelegramIngest {
    /// The channel.
    pub channel: TelegramChannel,
    /// Messages, oldest first (≤ [`TELEGRAM_MESSAGES_PER_REQUEST`]).
    pub messages: Vec<TelegramMessage>,
}

impl TelegramIngest {
    /// Splits a channel's new messages into requests of ≤ 50, keeping order.
    pub fn chunks(channel: TelegramChannel, messages: Vec<TelegramMessage>) -> Vec<TelegramIngest> {
        chunked(messages, TELEGRAM_MESSAGES_PER_REQUEST)
            .into_iter()
            .map(|messages| TelegramIngest {
                channel: channel.clone(),
                messages,
            })
            .collect()
    }
}

/// Splits `items` into consecutive runs of at most `size`; none when empty.
fn chunked<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    let mut iter = items.into_iter().peekable();
    while iter.peek().is_some() {
        out.push(iter.by_ref().take(size.max(1)).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn to_json<T: Serialize>(v: &T) -> Value {
        serde_json::to_value(v).expect("payloads serialise")
    }

    #[test]
    fn volume_alert_matches_the_spec_example() {
        let alert = VolumeAlert {
            symbol: "BTCUSDT".into(),
            asset: "BTC".into(),
            current_volume: 150000000.0,
            previous_volume: 45000000.0,
            volume_ratio: 3.33,
            price: Some(65000.5),
            funding_rate: Some(0.0001),
            candle_direction: Some(CandleDirection::Bullish),
            message: "BTC hourly volume 150.00M (3.33× prev) — VOLUME SPIKE!".into(),
            timestamp: "2025-12-03T14:05:00Z".into(),
            detection_time: Some("2025-12-03T14:05:00Z".into()),
            hour_timestamp: "2025-12-03T14:00:00Z".into(),
            is_update: Some(false),
            alert_type: Some(VolumeAlertType::Spike),
            price_change: Some(0.025),
            oi_change: Some(0.015),
        };
        let spec = json!({ "symbol": "BTCUSDT", "asset": "BTC",
          "currentVolume": 150000000.0, "previousVolume": 45000000.0, "volumeRatio": 3.33,
          "price": 65000.5, "fundingRate": 0.0001, "candleDirection": "bullish",
          "message": "BTC hourly volume 150.00M (3.33× prev) — VOLUME SPIKE!",
          "timestamp": "2025-12-03T14:05:00Z", "detectionTime": "2025-12-03T14:05:00Z",
          "hourTimestamp": "2025-12-03T14:00:00Z", "isUpdate": false, "alertType": "SPIKE",
          "priceChange": 0.025, "oiChange": 0.015 });
        assert_eq!(to_json(&alert), spec);
    }

    #[test]
    fn unknown_changes_are_omitted_not_null() {
        let alert = VolumeAlert {
            symbol: "ETHUSDT".into(),
            asset: "ETH".into(),
            current_volume: 9e6,
            previous_volume: 3e6,
            volume_ratio: 3.0,
            price: None,
            funding_rate: None,
            candle_direction: Some(CandleDirection::Bearish),
            message: "m".into(),
            timestamp: "2025-12-03T14:35:00Z".into(),
            detection_time: None,
            hour_timestamp: "2025-12-03T14:00:00Z".into(),
            is_update: Some(true),
            alert_type: Some(VolumeAlertType::HalfUpdate),
            price_change: None,
            oi_change: None,
        };
        let v = to_json(&alert);
        let obj = v.as_object().expect("object");
        for absent in [
            "priceChange",
            "oiChange",
            "price",
            "fundingRate",
            "detectionTime",
        ] {
            assert!(!obj.contains_key(absent), "{absent} must be omitted");
        }
        assert_eq!(v["alertType"], "HALF_UPDATE");
        assert_eq!(v["candleDirection"], "bearish");
        assert_eq!(to_json(&VolumeAlertType::FullUpdate), json!("FULL_UPDATE"));
    }

    #[test]
    fn oi_samples_match_the_spec_example_and_chunk_by_100() {
        let sample = OiSample {
            symbol: "BTCUSDT".into(),
            open_interest: 81234.5,
            open_interest_usd: Some(5.3e9),
            mark_price: Some(65000.5),
        };
        let one = OiSamples::chunks(vec![sample.clone()], "2025-12-05T10:00:00Z", "realtime");
        assert_eq!(one.len(), 1);
        let mut spec = json!({"data":[{"symbol":"BTCUSDT","openInterest":81234.5,"openInterestUsd":5.3e9,"markPrice":65000.5}],
            "timestamp":"2025-12-05T10:00:00Z","totalSymbols":100,"source":"realtime"});
        spec["totalSymbols"] = json!(1);
        assert_eq!(to_json(&one[0]), spec);

        let many = OiSamples::chunks(vec![sample; 250], "t", OiSamples::REALTIME);
        let sizes: Vec<usize> = many.iter().map(|c| c.data.len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        assert!(many.iter().all(|c| c.total_symbols == 250));
        assert!(OiSamples::chunks(Vec::new(), "t", "realtime").is_empty());
    }

    #[test]
    fn oi_alert_matches_the_spec_example() {
        let alert = OiAlert {
            symbol: "BTCUSDT".into(),
            direction: OiDirection::Up,
            baseline: 100000.0,
            current: 105000.0,
            pct_change: 0.05,
            abs_change: 5000.0,
            timestamp: "2025-12-05T10:00:00Z".into(),
            source: OiAlert::SOURCE.into(),
            timeframe: OiTimeframe::FiveMinutes,
            price_change: Some(0.02),
            funding_rate: Some(0.0001),
        };
        let spec = json!({"symbol":"BTCUSDT","direction":"UP","baseline":100000.0,"current":105000.0,
            "pctChange":0.05,"absChange":5000.0,"timestamp":"2025-12-05T10:00:00Z",
            "source":"oi_realtime_poller","timeframe":"5 min","priceChange":0.02,"fundingRate":0.0001});
        assert_eq!(to_json(&alert), spec);
        assert_eq!(to_json(&OiTimeframe::FifteenMinutes), json!("15 min"));
        assert_eq!(to_json(&OiTimeframe::OneHour), json!("1 hour"));
        assert_eq!(to_json(&OiDirection::Down), json!("DOWN"));
    }

    #[test]
    fn universe_update_field_names() {
        let update = LiquidUniverseUpdate {
            symbols: vec![UniverseSymbol {
                symbol: "BTCUSDT".into(),
                quote_volume_24h: 1.2e10,
                entered_at: "2025-12-01T00:00:00Z".into(),
                last_seen_at: "2025-12-05T10:00:00Z".into(),
            }],
            updated_at: "2025-12-05T10:00:00Z".into(),
        };
        assert_eq!(
            to_json(&update),
            json!({"symbols":[{"symbol":"BTCUSDT","quoteVolume24h":1.2e10,
                "enteredAt":"2025-12-01T00:00:00Z","lastSeenAt":"2025-12-05T10:00:00Z"}],
                "updatedAt":"2025-12-05T10:00:00Z"})
        );
    }

    #[test]
    fn user_alert_bodies_field_names() {
        let trigger = UserAlertTrigger {
            alert_id: "a1".into(),
            symbol: "BTCUSDT".into(),
            current_value: 65001.0,
            previous_value: 64999.0,
            crossed_up: true,
        };
        assert_eq!(
            to_json(&trigger),
            json!({"alertId":"a1","symbol":"BTCUSDT","currentValue":65001.0,
                "previousValue":64999.0,"crossedUp":true})
        );
        let checked = UserAlertChecked {
            alert_id: "a1".into(),
            last_checked_value: 0.0001,
        };
        assert_eq!(
            to_json(&checked),
            json!({"alertId":"a1","lastCheckedValue":0.0001})
        );
    }

    #[test]
    fn telegram_matches_the_spec_example_with_nulls_and_chunks_by_50() {
        let channel = TelegramChannel {
            id: -1001234567890,
            username: Some("marketfeed".into()),
            title: "Market Feed".into(),
            category: "macro".into(),
        };
        let message = TelegramMessage {
            id: 12345,
            text: Some("...".into()),
            date: "2025-12-04T12:00:00Z".into(),
            sender_name: None,
            views: Some(5000),
            forwards: Some(100),
            has_media: true,
            media_type: Some(MediaType::Photo),
            links: vec!["https://...".into()],
        };
        let batch = TelegramIngest::chunks(channel.clone(), vec![message.clone()]);
        let spec = json!({"channel":{"id":-1001234567890i64,"username":"marketfeed","title":"Market Feed","category":"macro"},
            "messages":[{"id":12345,"text":"...","date":"2025-12-04T12:00:00Z","sender_name":null,
                         "views":5000,"forwards":100,"has_media":true,"media_type":"photo","links":["https://..."]}]});
        assert_eq!(to_json(&batch[0]), spec);

        // The nullable fields are sent as null, never omitted.
        let bare = TelegramMessage {
            text: None,
            views: None,
            forwards: None,
            has_media: false,
            media_type: None,
            ..message.clone()
        };
        let v = to_json(&bare);
        for field in ["text", "sender_name", "views", "forwards", "media_type"] {
            assert_eq!(v.get(field), Some(&Value::Null), "{field}");
        }

        let many = TelegramIngest::chunks(channel, vec![message; 120]);
        let sizes: Vec<usize> = many.iter().map(|c| c.messages.len()).collect();
        assert_eq!(sizes, vec![50, 50, 20]);
    }
}
