//! [`Post`]: one request for the outbox, built from a typed payload, with
//! its route, where the key goes, which backends get it, and its dedup key.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::Auth;
use super::payloads::{
    LiquidUniverseUpdate, OiAlert, OiSamples, TelegramChannel, TelegramIngest, TelegramMessage,
    UserAlertChecked, UserAlertTrigger, VolumeAlert, OI_ALERT_PATH, OI_SAMPLES_PATH,
    TELEGRAM_INGEST_PATH, UNIVERSE_UPDATE_PATH, USER_ALERT_CHECKED_PATH, USER_ALERT_TRIGGER_PATH,
    VOLUME_ALERT_PATH,
};
use super::ranges;

/// How long a delivered alert's key keeps suppressing repeats, unless the
/// post says otherwise (an OI alert uses its cooldown).
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(48 * 3600);

pub use super::kind::Kind;

/// Which backends receive a post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every configured backend, each through its own queue.
    All,
    /// Only the named backend (`primary`, `dev`): user-alert posts answer
    /// the backend whose active list they came from.
    Backend(&'static str),
}

/// The dedup identity of a post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Dedup {
    /// E.g. `volume:BTCUSDT:2025-12-03T14:00:00Z:SPIKE`.
    pub key: String,
    /// A post with the same key enqueued less than this before is a duplicate.
    pub window: Duration,
}

/// Why a post cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// The backend deletes every symbol missing from an update, so an empty
    /// one would wipe the universe.
    #[error("refusing to post an empty liquid universe: the backend would delete every symbol")]
    EmptyUniverse,
}

/// One request for the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    /// What it is.
    pub(crate) kind: Kind,
    /// Route, e.g. `/api/volume-alerts/ingest`.
    pub(crate) path: &'static str,
    /// JSON body, without any key.
    pub(crate) body: Value,
    /// Where the key goes at send time.
    pub(crate) auth: Auth,
    /// Which backends get it.
    pub(crate) target: Target,
    /// Dedup identity, for alerts.
    pub(crate) dedup: Option<Dedup>,
    /// "Latest state" identity: a newer post with the same value replaces
    /// a pending older one (only the newest universe or check is worth sending).
    pub(crate) coalesce: Option<String>,
    /// One line naming it in logs (`volume alert BTCUSDT SPIKE 2025-…`).
    pub(crate) label: String,
}

impl Post {
    /// A volume alert to every backend; never twice per (symbol, hour, alertType).
    pub fn volume_alert(alert: &VolumeAlert) -> Post {
        let alert_type = alert.alert_type.map_or("SPIKE", |t| t.as_str());
        let key = format!(
            "volume:{}:{}:{}",
            alert.symbol, alert.hour_timestamp, alert_type
        );
        Post {
            kind: Kind::VolumeAlert,
            path: VOLUME_ALERT_PATH,
            body: to_body(alert),
            auth: Auth::Header,
            target: Target::All,
            label: format!(
                "volume alert {} {} hour {} (ratio {:.2})",
                alert.symbol, alert_type, alert.hour_timestamp, alert.volume_ratio
            ),
            dedup: Some(Dedup {
                key,
                window: DEFAULT_DEDUP_WINDOW,
            }),
            coalesce: None,
        }
    }

    /// An OI alert to every backend; never twice per (symbol, timeframe,
    /// direction) within `cooldown` of the first one's enqueue (so a job that
    /// re-decides after a crash, seconds later, is still a duplicate).
    /// `pctChange`, `priceChange` and `fundingRate` are fitted to the
    /// backend's `numeric(10,6)` columns first (clamped / omitted, warned).
    pub fn oi_alert(alert: &OiAlert, cooldown: Duration) -> Post {
        let what = format!("OI alert {}", alert.symbol);
        let alert = &OiAlert {
            pct_change: ranges::clamp_numeric_10_6("pctChange", alert.pct_change, &what),
            price_change: ranges::fit_numeric_10_6("priceChange", alert.price_change, &what),
            funding_rate: ranges::fit_numeric_10_6("fundingRate", alert.funding_rate, &what),
            ..alert.clone()
        };
        let timeframe = alert.timeframe.as_str();
        let direction = alert.direction.as_str();
        Post {
            kind: Kind::OiAlert,
            path: OI_ALERT_PATH,
            body: to_body(alert),
            auth: Auth::Header,
            target: Target::All,
            label: format!(
                "OI alert {} {} {} ({:+.2}%) at {}",
                alert.symbol,
                timeframe,
                direction,
                alert.pct_change * 100.0,
                alert.timestamp
            ),
            dedup: Some(Dedup {
                key: format!("oi:{}:{}:{}", alert.symbol, timeframe, direction),
                window: cooldown,
            }),
            coalesce: None,
        }
    }

    /// One chunk (≤ 100) of OI samples to every backend; shed first when full.
    pub fn oi_samples(samples: &OiSamples) -> Post {
        Post {
            kind: Kind::OiSamples,
            path: OI_SAMPLES_PATH,
            body: to_body(samples),
            auth: Auth::Header,
            target: Target::All,
            label: format!(
                "OI samples ({} of {} symbols) at {}",
                samples.data.len(),
                samples.total_symbols,
                samples.timestamp
            ),
            dedup: None,
            coalesce: None,
        }
    }

    /// The whole liquid universe to every backend; refused when empty.
    pub fn universe(update: &LiquidUniverseUpdate) -> Result<Post, PostError> {
        if update.symbols.is_empty() {
            return Err(PostError::EmptyUniverse);
        }
        Ok(Post {
            kind: Kind::Universe,
            path: UNIVERSE_UPDATE_PATH,
            body: to_body(update),
            auth: Auth::Header,
            target: Target::All,
            label: format!(
                "liquid universe ({} symbols) at {}",
                update.symbols.len(),
                update.updated_at
            ),
            dedup: None,
            coalesce: Some("universe".to_string()),
        })
    }

    /// A crossed user alert to `backend` (the one whose list it came from);
    /// the key goes into the body at send time. Never twice per alert id:
    /// the backend makes the alert inactive after the first.
    pub fn user_alert_trigger(backend: &'static str, trigger: &UserAlertTrigger) -> Post {
        Post {
            kind: Kind::UserAlertTrigger,
            path: USER_ALERT_TRIGGER_PATH,
            body: to_body(trigger),
            auth: Auth::BodyField,
            target: Target::Backend(backend),
            label: format!(
                "user alert {} {} crossed {} ({} → {})",
                trigger.alert_id,
                trigger.symbol,
                if trigger.crossed_up { "up" } else { "down" },
                trigger.previous_value,
                trigger.current_value
            ),
            dedup: Some(Dedup {
                key: format!("user-alert-trigger:{}", trigger.alert_id),
                window: DEFAULT_DEDUP_WINDOW,
            }),
            coalesce: None,
        }
    }

    /// A checked, not crossed, user alert to `backend`.
    pub fn user_alert_checked(backend: &'static str, checked: &UserAlertChecked) -> Post {
        Post {
            kind: Kind::UserAlertChecked,
            path: USER_ALERT_CHECKED_PATH,
            body: to_body(checked),
            auth: Auth::BodyField,
            target: Target::Backend(backend),
            label: format!(
                "user alert {} checked ({})",
                checked.alert_id, checked.last_checked_value
            ),
            dedup: None,
            coalesce: Some(format!("user-alert-checked:{}", checked.alert_id)),
        }
    }

    /// One chunk (≤ 50) of a channel's messages to every backend (the
    /// backend upserts, so a resend is harmless: no dedup key).
    ///
    /// A private channel (no username) gets its id as `username`, and
    /// `views`/`forwards` are clamped to the backend's 4-byte columns.
    pub fn telegram(batch: &TelegramIngest) -> Post {
        let channel = ranges::channel_username(batch.channel.username.as_deref(), batch.channel.id);
        let what = format!("telegram {channel}");
        let batch = &TelegramIngest {
            channel: TelegramChannel {
                username: Some(channel.clone()),
                ..batch.channel.clone()
            },
            messages: batch
                .messages
                .iter()
                .map(|m| TelegramMessage {
                    views: ranges::clamp_int4("views", m.views, &what),
                    forwards: ranges::clamp_int4("forwards", m.forwards, &what),
                    ..m.clone()
                })
                .collect(),
        };
        Post {
            kind: Kind::Telegram,
            path: TELEGRAM_INGEST_PATH,
            body: to_body(batch),
            auth: Auth::Header,
            target: Target::All,
            label: format!(
                "telegram {} ({} messages, ids {}..{})",
                channel,
                batch.messages.len(),
                batch.messages.first().map_or(0, |m| m.id),
                batch.messages.last().map_or(0, |m| m.id)
            ),
            dedup: None,
            coalesce: None,
        }
    }

    /// What it is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Its dedup key, if any.
    pub fn dedup_key(&self) -> Option<&str> {
        self.dedup.as_ref().map(|d| d.key.as_str())
    }

    /// Its log label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The JSON body as it will be sent (without the key).
    pub fn body(&self) -> &Value {
        &self.body
    }
}

/// The JSON of a payload. These structs hold only strings, numbers, bools
/// and lists, so encoding cannot fail; were it to, the body is `null`, the
/// backend answers 400 and the post is dropped with a logged error.
fn to_body<T: Serialize>(payload: &T) -> Value {
    serde_json::to_value(payload).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encode a backend payload");
        Value::Null
    })
}

/// Builders shared by the backend module's unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::backend::payloads::VolumeAlertType;

    /// A minimal volume alert for `symbol` in `hour`.
    pub(crate) fn volume(symbol: &str, hour: &str, alert_type: VolumeAlertType) -> VolumeAlert {
        VolumeAlert {
            symbol: symbol.into(),
            asset: symbol.trim_end_matches("USDT").into(),
            current_volume: 9e6,
            previous_volume: 3e6,
            volume_ratio: 3.0,
            price: None,
            funding_rate: None,
            candle_direction: None,
            message: "m".into(),
            timestamp: hour.into(),
            detection_time: None,
            hour_timestamp: hour.into(),
            is_update: None,
            alert_type: Some(alert_type),
            price_change: None,
            oi_change: None,
        }
    }

    /// A volume alert post for `symbol` at a fixed hour.
    pub(crate) fn volume_post(symbol: &str, alert_type: VolumeAlertType) -> Post {
        Post::volume_alert(&volume(symbol, "2025-12-03T14:00:00Z", alert_type))
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::volume;
    use super::*;
    use crate::backend::payloads::{OiDirection, OiTimeframe, VolumeAlertType};

    #[test]
    fn kind_names_are_the_serialized_names() {
        for kind in Kind::ALL {
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::Value::from(kind.as_str()))
            );
        }
    }

    #[test]
    fn dedup_keys_name_symbol_hour_type_and_timeframe_direction() {
        let post = Post::volume_alert(&volume(
            "BTCUSDT",
            "2025-12-03T14:00:00Z",
            VolumeAlertType::Spike,
        ));
        assert_eq!(
            post.dedup_key(),
            Some("volume:BTCUSDT:2025-12-03T14:00:00Z:SPIKE")
        );
        assert_eq!(post.path, "/api/volume-alerts/ingest");
        assert_eq!(post.target, Target::All);

        let oi = OiAlert {
            symbol: "BTCUSDT".into(),
            direction: OiDirection::Up,
            baseline: 1.0,
            current: 1.1,
            pct_change: 0.1,
            abs_change: 0.1,
            timestamp: "t".into(),
            source: OiAlert::SOURCE.into(),
            timeframe: OiTimeframe::FiveMinutes,
            price_change: None,
            funding_rate: None,
        };
        let post = Post::oi_alert(&oi, Duration::from_secs(600));
        assert_eq!(post.dedup_key(), Some("oi:BTCUSDT:5 min:UP"));
        assert_eq!(
            post.dedup.as_ref().map(|d| d.window),
            Some(Duration::from_secs(600))
        );
    }

    #[test]
    fn an_empty_universe_is_refused() {
        let empty = LiquidUniverseUpdate {
            symbols: Vec::new(),
            updated_at: "t".into(),
        };
        assert_eq!(Post::universe(&empty), Err(PostError::EmptyUniverse));
    }

    #[test]
    fn user_alert_posts_target_one_backend_and_carry_no_key() {
        let post = Post::user_alert_checked(
            "dev",
            &UserAlertChecked {
                alert_id: "a".into(),
                last_checked_value: 1.0,
            },
        );
        assert_eq!(post.target, Target::Backend("dev"));
        assert_eq!(post.auth, Auth::BodyField);
        assert!(post.body.get("apiKey").is_none());
    }
}
