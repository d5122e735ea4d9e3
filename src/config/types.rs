//! The configuration's types: what [`Config::from_sources`] builds and the
//! rest of the program reads. A leaf: the modules that read, check and show
//! settings all use these, and none of these use them back.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::sources::Origin;
use crate::backend::kind::Kind;

/// A secret string that never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret (tests and callers outside configuration parsing).
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// One VolSpike backend to post to.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// `primary` or `dev`: names the queue and appears in logs.
    pub name: &'static str,
    /// Base URL without a trailing slash.
    pub url: String,
    /// Sent as `X-API-Key` (or `apiKey` on the user-alert routes).
    pub key: Secret,
    /// The kinds of post this backend receives; `None` is every kind. The
    /// second backend defaults to volume alerts only, the old deployment's
    /// scope (a universe post would overwrite its universe, user alerts would
    /// fire for its users).
    pub kinds: Option<Vec<Kind>>,
}

impl BackendConfig {
    /// Whether this backend receives posts of `kind`.
    pub fn takes(&self, kind: Kind) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&kind))
    }
}

/// Telegram settings; every part is optional.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    /// Bot API token.
    pub bot_token: Option<Secret>,
    /// Whether channels are read through the bot (`getUpdates`). Not when
    /// the token came only under the old alert bot's name `TELEGRAM_TOKEN`:
    /// that bot sent alert messages and never read channels, so its
    /// channels are read from their public previews instead.
    pub ingest_with_bot: bool,
    /// Channels to ingest (usernames without `@`, or numeric ids).
    pub channels: Vec<String>,
    /// Chat that receives alert messages.
    pub alert_chat_id: Option<String>,
    /// Bot API base URL.
    pub api_url: String,
    /// Public preview base URL.
    pub preview_url: String,
    /// Channel (lower-case username or numeric id) → news category; channels
    /// not listed are `general`.
    pub categories: BTreeMap<String, String>,
}

/// Binance connection settings.
#[derive(Debug, Clone)]
pub struct BinanceConfig {
    /// REST base URL.
    pub rest_url: String,
    /// WebSocket base URL (the `/market` route).
    pub ws_url: String,
    /// Percent of the 2400/min weight limit we may use.
    pub weight_ceiling_pct: u32,
    /// Concurrent REST requests.
    pub concurrency: usize,
    /// HTTP CONNECT proxy for every Binance call (REST and WebSocket), from
    /// `VOLSPIKE_BINANCE_PROXY` or the conventional `HTTPS_PROXY`/`HTTP_PROXY`.
    pub proxy: Option<crate::binance::proxy::BinanceProxy>,
}

/// Funding stream and funding API settings.
#[derive(Debug, Clone)]
pub struct FundingConfig {
    /// Data older than this is stale: the funding API answers 503.
    pub stale_after: Duration,
    /// A connection without a data message for this long is dead.
    pub silence: Duration,
}

/// open_interest thresholds and timing.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenInterestConfig {
    /// Time between polls, before any stretching for the weight budget.
    pub poll: Duration,
    /// Minimum |current − baseline| in contracts for any alert.
    pub min_contracts: f64,
    /// Thresholds as fractions (0.03 = 3%) for `5 min`, `15 min`, `1 hour`.
    pub thresholds: [f64; 3],
    /// Cooldowns per (symbol, direction) for `5 min`, `15 min`, `1 hour`.
    pub cooldowns: [Duration; 3],
    /// Fraction (0..=1) of the governor's ceiling the poll may use.
    pub weight_share: f64,
}

/// user_alerts timing.
#[derive(Debug, Clone, PartialEq)]
pub struct UserAlertsConfig {
    /// Time between checks of pro/elite alerts (the job's tick).
    pub fast: Duration,
    /// Free alerts are checked once per wall-clock window of this length.
    pub free: Duration,
    /// Least time between two update-checked posts for one alert whose value
    /// moved without crossing (see the job's docs).
    pub checked_refresh: Duration,
}

/// Thresholds of the alert jobs.
#[derive(Debug, Clone, Copy)]
pub struct JobThresholds {
    /// volume_spike: minimum ratio.
    pub spike_ratio: f64,
    /// volume_spike: minimum hourly quote volume.
    pub spike_min_volume: f64,
    /// volume_spike: from the kline streams (`stream`) or the REST sweep.
    pub volume_from_stream: bool,
    /// liquid_universe: enter above this 24h quote volume.
    pub liquid_enter: f64,
    /// liquid_universe: stay while at or above this.
    pub liquid_exit: f64,
    /// funding_health: minimum symbols with funding.
    pub health_min_symbols: usize,
}

/// The validated configuration every command works from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Backends to post to; empty in `--local` mode.
    pub backends: Vec<BackendConfig>,
    /// `run --local`: nothing is posted, alerts go to the log and state dir.
    pub local: bool,
    /// Telegram settings.
    pub telegram: TelegramConfig,
    /// Binance settings.
    pub binance: BinanceConfig,
    /// Funding stream and API settings.
    pub funding: FundingConfig,
    /// open_interest settings.
    pub open_interest: OpenInterestConfig,
    /// user_alerts settings.
    pub user_alerts: UserAlertsConfig,
    /// Alert job thresholds.
    pub thresholds: JobThresholds,
    /// HTTP listen address.
    pub http_addr: SocketAddr,
    /// State directory.
    pub state_dir: PathBuf,
    /// Release manifest URL, when configured.
    pub update_url: Option<String>,
    /// Undelivered posts kept per backend before shedding.
    pub outbox_capacity: usize,
    /// Dead letters kept per backend before the oldest are deleted.
    pub dead_letters_max: usize,
    /// Job names switched off by configuration.
    pub disabled_jobs: Vec<String>,
    /// tracing env-filter directive.
    pub log_filter: String,
    /// Test switch: the critical loop to wedge on purpose.
    pub wedge: Option<String>,
}

/// Everything wrong (problems) or suspicious (warnings) in a configuration.
#[derive(Debug, Default)]
pub struct Report {
    /// Each makes the configuration unusable.
    pub problems: Vec<String>,
    /// Worth reading, but the appliance can run.
    pub warnings: Vec<String>,
}

/// One line of `check-config`'s listing: the effective value of a setting.
#[derive(Debug)]
pub struct Effective {
    /// Documented name.
    pub name: &'static str,
    /// The value (credentials in URLs masked), `****` for secrets, or
    /// what leaving it unset means (a computed default, off, required).
    pub shown: String,
    /// Where it came from; `None` when not set.
    pub origin: Option<Origin>,
}

/// What validation needs to know about the command.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    /// `run --local`: backends are not required.
    pub local: bool,
}
