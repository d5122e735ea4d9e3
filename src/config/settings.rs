//! The table of every configuration key the appliance understands.
//!
//! One row per setting: the names accepted (the first is the one we document,
//! the others are the two older generations of names still found in operators'
//! env files), the default, and whether the value is a secret. `check-config`,
//! the env-file template and the unknown-key warnings all read this table, so
//! a new setting is added here once.

/// One configuration setting.
#[derive(Debug)]
pub struct Setting {
    /// Accepted names, preferred first.
    pub names: &'static [&'static str],
    /// Value used when no name is set; `None` means "off" or "required".
    pub default: Option<&'static str>,
    /// Secrets are printed as `****` and never logged.
    pub secret: bool,
    /// One line for `check-config` and the env template.
    pub help: &'static str,
}

impl Setting {
    /// The documented name.
    pub fn name(&self) -> &'static str {
        self.names[0]
    }
}

macro_rules! setting {
    ([$($name:literal),+], $default:expr, $secret:expr, $help:literal) => {
        Setting { names: &[$($name),+], default: $default, secret: $secret, help: $help }
    };
}

/// Primary backend base URL.
pub const BACKEND_URL: Setting = setting!(
    ["BACKEND_URL", "VOLSPIKE_API_URL"],
    None,
    false,
    "primary VolSpike backend base URL (required unless `run --local`)"
);
/// Primary backend API key.
pub const BACKEND_KEY: Setting = setting!(
    ["ALERT_INGEST_API_KEY", "VOLSPIKE_API_KEY"],
    None,
    true,
    "primary backend key (required unless `run --local`)"
);
/// Second (development) backend URL.
pub const DEV_BACKEND_URL: Setting = setting!(
    ["VOLSPIKE_API_URL_DEV"],
    None,
    false,
    "second backend base URL (optional, needs its key)"
);
/// Second backend key.
pub const DEV_BACKEND_KEY: Setting =
    setting!(["VOLSPIKE_API_KEY_DEV"], None, true, "second backend key");
/// Which kinds of post go to the second backend.
pub const DEV_BACKEND_KINDS: Setting = setting!(
    ["VOLSPIKE_DEV_BACKEND_KINDS"],
    Some("volume_alert"),
    false,
    "kinds of post the second backend receives, comma-separated (volume_alert, oi_alert, oi_samples, universe, user_alert_trigger, user_alert_checked, telegram) or `all`; user alerts are only checked on a backend that takes user_alert_trigger"
);
/// Telegram bot token.
pub const TELEGRAM_TOKEN: Setting = setting!(
    ["TELEGRAM_BOT_TOKEN", "TELEGRAM_TOKEN"],
    None,
    true,
    "Telegram bot token (optional)"
);
/// Telegram channels to ingest.
pub const TELEGRAM_CHANNELS: Setting = setting!(
    ["TELEGRAM_CHANNEL_IDS", "TELEGRAM_CHANNELS"],
    None,
    false,
    "channels to ingest, comma-separated usernames or numeric ids (optional)"
);
/// Telegram chat that receives alert messages.
pub const TELEGRAM_CHAT: Setting = setting!(
    ["TELEGRAM_ALERT_CHAT_ID", "CHAT_ID"],
    None,
    false,
    "chat id for alert messages (optional)"
);
/// Telegram Bot API base URL.
pub const TELEGRAM_API_URL: Setting = setting!(
    ["TELEGRAM_API_URL"],
    Some("https://api.telegram.org"),
    false,
    "Telegram Bot API base URL"
);
/// Telegram public preview base URL.
pub const TELEGRAM_PREVIEW_URL: Setting = setting!(
    ["TELEGRAM_PREVIEW_URL"],
    Some("https://t.me/s"),
    false,
    "public channel preview base URL"
);
/// Telegram channel → news category map.
pub const TELEGRAM_CATEGORIES: Setting = setting!(
    ["TELEGRAM_CATEGORIES"],
    Some("marketfeed=macro,watcherguru=crypto"),
    false,
    "news category per channel, channel=category pairs; other channels are `general`"
);
/// Binance futures REST base URL.
pub const BINANCE_FAPI_URL: Setting = setting!(
    ["BINANCE_FAPI_URL"],
    Some("https://fapi.binance.com"),
    false,
    "Binance USDⓈ-M REST base URL"
);
/// HTTP CONNECT proxy for every Binance call.
pub const BINANCE_PROXY: Setting = setting!(
    ["VOLSPIKE_BINANCE_PROXY"],
    None,
    true,
    "http://[user:password@]host:port of a CONNECT proxy for every Binance call, REST and WebSocket (Binance answers 451 to some regions, the US among them); default: HTTPS_PROXY / HTTP_PROXY, minus NO_PROXY hosts"
);
/// Binance futures WebSocket base URL.
pub const BINANCE_WS_URL: Setting = setting!(
    ["BINANCE_WS_URL"],
    Some("wss://fstream.binance.com/market"),
    false,
    "Binance USDⓈ-M WebSocket base URL (the /market route)"
);
/// Age after which funding data counts as stale (the funding API answers 503).
pub const FUNDING_STALE_SECS: Setting = setting!(
    ["VOLSPIKE_FUNDING_STALE_SECS"],
    Some("180"),
    false,
    "seconds after which funding data is stale: the funding API answers 503 (1-86400)"
);
/// Silence after which the WebSocket counts as dead and is reconnected.
pub const WS_SILENCE_SECS: Setting = setting!(
    ["VOLSPIKE_WS_SILENCE_SECS"],
    Some("30"),
    false,
    "seconds without a data message before the WebSocket is treated as dead and reconnected (1-600)"
);
/// Share of Binance's 2400/min weight limit the appliance may use. 40 %:
/// the minute holding a 600-symbol volume sweep, liquid_universe and two
/// open-interest polls of 200 symbols asks about 1,040 of the 960; the sweep
/// yields to the polls (its tail waits for the next minute), so no poll is
/// held (measured in tests/binance_budget.rs).
pub const WEIGHT_CEILING_PCT: Setting = setting!(
    ["VOLSPIKE_WEIGHT_CEILING_PCT"],
    Some("40"),
    false,
    "percent of Binance's 2400/min request weight the appliance may use (1-100)"
);
/// Concurrent Binance REST requests.
pub const BINANCE_CONCURRENCY: Setting = setting!(
    ["VOLSPIKE_BINANCE_CONCURRENCY"],
    Some("12"),
    false,
    "concurrent Binance REST requests (1-64)"
);
/// HTTP listen address.
pub const HTTP_ADDR: Setting = setting!(
    ["VOLSPIKE_HTTP_ADDR"],
    Some("127.0.0.1:8080"),
    false,
    "listen address of the funding API, /health and the dashboard"
);
/// State directory.
pub const STATE_DIR: Setting = setting!(
    ["VOLSPIKE_STATE_DIR", "STATE_DIRECTORY"],
    Some("/var/lib/volspike"),
    false,
    "state directory (systemd sets STATE_DIRECTORY)"
);
/// Release manifest URL.
pub const UPDATE_URL: Setting = setting!(
    ["VOLSPIKE_UPDATE_URL"],
    None,
    false,
    "release manifest URL for self-update (a manifest.json on any static host)"
);
/// Undelivered posts kept per backend.
pub const OUTBOX_CAPACITY: Setting = setting!(
    ["VOLSPIKE_OUTBOX_CAPACITY"],
    Some("20000"),
    false,
    "undelivered posts kept per backend; when full, OI samples are shed first (100-1000000)"
);
/// Dead letters kept per backend.
pub const DEAD_LETTERS_MAX: Setting = setting!(
    ["VOLSPIKE_DEAD_LETTERS_MAX"],
    Some("10000"),
    false,
    "dead letters kept per backend; beyond it the oldest are deleted with an error log (10-1000000)"
);
/// Jobs switched off.
pub const DISABLED_JOBS: Setting = setting!(
    ["VOLSPIKE_DISABLED_JOBS"],
    None,
    false,
    "jobs to switch off, comma-separated job names"
);
/// Log filter.
pub const LOG_FILTER: Setting = setting!(
    ["VOLSPIKE_LOG"],
    Some("info"),
    false,
    "log filter (error, warn, info, debug, or tracing's env-filter syntax)"
);
/// open_interest: seconds between polls of the liquid set.
pub const OI_POLL_SECS: Setting = setting!(
    ["VOLSPIKE_OI_POLL_SECS"],
    Some("30"),
    false,
    "open_interest: seconds between open-interest polls of the liquid set; stretched automatically when the weight budget is short (10-3600)"
);
/// open_interest: minimum |current − baseline| in contracts for an alert.
pub const OI_MIN_CONTRACTS: Setting = setting!(
    ["VOLSPIKE_OI_MIN_CONTRACTS", "OI_MIN_DELTA_CONTRACTS"],
    Some("5000"),
    false,
    "open_interest: an alert also needs |current - baseline| of at least this many contracts (0-1000000000)"
);
/// open_interest: 5-minute threshold, percent.
pub const OI_PCT_5M: Setting = setting!(
    ["VOLSPIKE_OI_PCT_5M"],
    Some("3"),
    false,
    "open_interest: percent change over 5 minutes that alerts (0.01-1000)"
);
/// open_interest: 15-minute threshold, percent.
pub const OI_PCT_15M: Setting = setting!(
    ["VOLSPIKE_OI_PCT_15M"],
    Some("5"),
    false,
    "open_interest: percent change over 15 minutes that alerts (0.01-1000)"
);
/// open_interest: 1-hour threshold, percent.
pub const OI_PCT_1H: Setting = setting!(
    ["VOLSPIKE_OI_PCT_1H"],
    Some("10"),
    false,
    "open_interest: percent change over 1 hour that alerts (0.01-1000)"
);
/// open_interest: 5-minute cooldown.
pub const OI_COOLDOWN_5M_SECS: Setting = setting!(
    ["VOLSPIKE_OI_COOLDOWN_5M_SECS", "OI_ALERT_COOLDOWN_5MIN"],
    Some("600"),
    false,
    "open_interest: seconds without a second 5-minute alert in the same direction per symbol (0-86400)"
);
/// open_interest: 15-minute cooldown.
pub const OI_COOLDOWN_15M_SECS: Setting = setting!(
    ["VOLSPIKE_OI_COOLDOWN_15M_SECS", "OI_ALERT_COOLDOWN_15MIN"],
    Some("900"),
    false,
    "open_interest: seconds without a second 15-minute alert in the same direction per symbol (0-86400)"
);
/// open_interest: 1-hour cooldown.
pub const OI_COOLDOWN_1H_SECS: Setting = setting!(
    ["VOLSPIKE_OI_COOLDOWN_1H_SECS", "OI_ALERT_COOLDOWN_60MIN"],
    Some("3600"),
    false,
    "open_interest: seconds without a second 1-hour alert in the same direction per symbol (0-86400)"
);
/// open_interest: share of the weight ceiling the poll may use.
pub const OI_WEIGHT_SHARE_PCT: Setting = setting!(
    ["VOLSPIKE_OI_WEIGHT_SHARE_PCT"],
    Some("50"),
    false,
    "open_interest: percent of the appliance's weight ceiling the poll may use before it is stretched (1-100)"
);
/// user_alerts: seconds between checks of pro/elite alerts.
pub const USER_ALERTS_FAST_SECS: Setting = setting!(
    ["VOLSPIKE_USER_ALERTS_FAST_SECS"],
    Some("30"),
    false,
    "user_alerts: seconds between checks of pro and elite alerts (10-3600)"
);
/// user_alerts: seconds between checks of free alerts.
pub const USER_ALERTS_FREE_SECS: Setting = setting!(
    ["VOLSPIKE_USER_ALERTS_FREE_SECS"],
    Some("300"),
    false,
    "user_alerts: free alerts are checked once per wall-clock window of this many seconds (10-86400)"
);
/// user_alerts: least time between two update-checked posts of one alert.
pub const USER_ALERTS_CHECKED_SECS: Setting = setting!(
    ["VOLSPIKE_USER_ALERTS_CHECKED_SECS"],
    Some("300"),
    false,
    "user_alerts: an uncrossed alert's lastCheckedValue is refreshed at most this often, unless it was null or sits on the threshold (0-86400)"
);
/// Hidden test switch: wedge one critical loop to prove the watchdog.
pub const WEDGE: Setting = setting!(["VOLSPIKE_WEDGE"], None, false, "");

/// volume_spike: minimum current/previous hourly quote-volume ratio.
pub const SPIKE_RATIO: Setting = setting!(
    ["VOLSPIKE_SPIKE_RATIO"],
    Some("3.0"),
    false,
    "volume_spike: minimum current/previous hourly quote-volume ratio"
);
/// volume_spike: minimum hourly quote volume.
pub const SPIKE_MIN_VOLUME: Setting = setting!(
    ["VOLSPIKE_SPIKE_MIN_VOLUME"],
    Some("3000000"),
    false,
    "volume_spike: minimum hourly quote volume in USDT"
);
/// volume_spike: where spikes are seen.
pub const VOLUME_SOURCE: Setting = setting!(
    ["VOLSPIKE_VOLUME_SOURCE"],
    Some("stream"),
    false,
    "volume_spike: `stream` (kline streams, within a second) or `sweep` (REST every 5 minutes)"
);
/// liquid_universe: enter threshold.
pub const LIQUID_ENTER_USD: Setting = setting!(
    ["VOLSPIKE_LIQUID_ENTER_USD"],
    Some("100000000"),
    false,
    "liquid_universe: a symbol enters above this 24h quote volume (USDT)"
);
/// liquid_universe: exit threshold.
pub const LIQUID_EXIT_USD: Setting = setting!(
    ["VOLSPIKE_LIQUID_EXIT_USD"],
    None,
    false,
    "liquid_universe: a liquid symbol stays while at or above this (default: half the enter threshold)"
);

/// Hidden test switch: shift the wall clock (see [`crate::clock::now`]).
pub const CLOCK_OFFSET: Setting = setting!(["VOLSPIKE_CLOCK_OFFSET_MS"], None, false, "");

/// funding_health: minimum symbol count.
pub const HEALTH_MIN_SYMBOLS: Setting = setting!(
    ["VOLSPIKE_HEALTH_MIN_SYMBOLS"],
    Some("500"),
    false,
    "funding_health: fewer symbols with funding than this is unhealthy"
);

/// Settings that also take the old OI poller's name for the same meaning
/// and unit (the `OI_*` names among their `names`).
pub const OLD_POLLER_RENAMES: &[&Setting] = &[
    &OI_MIN_CONTRACTS,
    &OI_COOLDOWN_5M_SECS,
    &OI_COOLDOWN_15M_SECS,
    &OI_COOLDOWN_1H_SECS,
];

/// Every setting, in the order `check-config` prints them.
pub const ALL: &[&Setting] = &[
    &BACKEND_URL,
    &BACKEND_KEY,
    &DEV_BACKEND_URL,
    &DEV_BACKEND_KEY,
    &DEV_BACKEND_KINDS,
    &TELEGRAM_TOKEN,
    &TELEGRAM_CHANNELS,
    &TELEGRAM_CHAT,
    &TELEGRAM_API_URL,
    &TELEGRAM_PREVIEW_URL,
    &TELEGRAM_CATEGORIES,
    &BINANCE_FAPI_URL,
    &BINANCE_WS_URL,
    &BINANCE_PROXY,
    &FUNDING_STALE_SECS,
    &WS_SILENCE_SECS,
    &WEIGHT_CEILING_PCT,
    &BINANCE_CONCURRENCY,
    &HTTP_ADDR,
    &STATE_DIR,
    &UPDATE_URL,
    &OUTBOX_CAPACITY,
    &DEAD_LETTERS_MAX,
    &SPIKE_RATIO,
    &SPIKE_MIN_VOLUME,
    &VOLUME_SOURCE,
    &LIQUID_ENTER_USD,
    &LIQUID_EXIT_USD,
    &HEALTH_MIN_SYMBOLS,
    &DISABLED_JOBS,
    &LOG_FILTER,
    &OI_POLL_SECS,
    &OI_MIN_CONTRACTS,
    &OI_PCT_5M,
    &OI_PCT_15M,
    &OI_PCT_1H,
    &OI_COOLDOWN_5M_SECS,
    &OI_COOLDOWN_15M_SECS,
    &OI_COOLDOWN_1H_SECS,
    &OI_WEIGHT_SHARE_PCT,
    &USER_ALERTS_FAST_SECS,
    &USER_ALERTS_FREE_SECS,
    &USER_ALERTS_CHECKED_SECS,
    &WEDGE,
    &CLOCK_OFFSET,
];

/// Whether a setting is meant for operators (hidden test switches have no help).
pub fn is_documented(setting: &Setting) -> bool {
    !setting.help.is_empty()
}

/// Finds the setting a name belongs to.
pub fn find(name: &str) -> Option<&'static Setting> {
    ALL.iter().copied().find(|s| s.names.contains(&name))
}

/// Prefixes of environment variables that look like ours: an unknown one is
/// probably a typo worth a warning. Other environment variables (PATH, HOME…)
/// are none of our business.
pub const OWN_PREFIXES: &[&str] = &["VOLSPIKE_", "BINANCE_", "TELEGRAM_", "BACKEND_", "ALERT_"];
