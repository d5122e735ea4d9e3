//! Every configuration key the appliance understands, declared once.
//!
//! One entry per setting: the names accepted (the first is the one we
//! document, the others are the two older generations of names still found
//! in operators' env files), its type and default (or what leaving it unset
//! means), its accepted range for numbers, whether it is a secret, and one
//! line of help. Validation (`Config::from_sources`), `check-config`, the
//! env-file template, `packaging/volspike.env.example` and README's settings
//! table all read these entries; a test (`config::docs`) fails when the two
//! files drift from them.
//!
//! The entries are written through the [`declare!`] macro rather than as a
//! plain `const` slice because a slice holds one type: the macro gives each
//! setting its own typed constant (`BINANCE_CONCURRENCY.default` is a
//! `usize`, so code outside `config` reads a default without parsing or
//! repeating it) and, from the same lines, the [`ALL`] registry in
//! declaration order, so a setting cannot be declared and forgotten there.

use std::fmt;

/// What leaving a setting unset means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unset {
    /// Its declared default applies.
    Default,
    /// The feature it configures is off.
    Off,
    /// The service refuses to start (exit 78) unless `run --local`.
    Required,
    /// A value computed from other settings, described here.
    Computed(&'static str),
}

/// One configuration setting, untyped: what env files, `check-config`, the
/// template and the docs need.
#[derive(Debug)]
pub struct Setting {
    /// Accepted names, preferred first.
    pub names: &'static [&'static str],
    /// The default as an env file writes it; `None` when [`Setting::unset`]
    /// is not [`Unset::Default`].
    pub default: Option<&'static str>,
    /// What leaving it unset means.
    pub unset: Unset,
    /// Secrets are printed as `****` and never logged.
    pub secret: bool,
    /// One line for `check-config`, the env template and README; empty for
    /// hidden test switches.
    pub help: &'static str,
}

impl Setting {
    /// The documented name.
    pub const fn name(&self) -> &'static str {
        self.names[0]
    }

    /// Whether the service refuses to start without it.
    pub fn is_required(&self) -> bool {
        self.unset == Unset::Required
    }
}

/// A text setting with a default (URLs, addresses, paths, lists).
#[derive(Debug)]
pub struct Text {
    /// Names, help and the default as text.
    pub setting: Setting,
    /// The default.
    pub default: &'static str,
}

/// A number setting: its typed default and the inclusive range accepted.
#[derive(Debug)]
pub struct Number<T: 'static> {
    /// Names, help and the default as text.
    pub setting: Setting,
    /// The default, typed.
    pub default: T,
    /// Smallest and largest value accepted.
    pub range: (T, T),
}

impl std::ops::Deref for Text {
    type Target = Setting;
    fn deref(&self) -> &Setting {
        &self.setting
    }
}

impl<T> std::ops::Deref for Number<T> {
    type Target = Setting;
    fn deref(&self) -> &Setting {
        &self.setting
    }
}

impl<T: fmt::Display> Number<T> {
    /// `lo-hi`, as the help lines write a range.
    pub fn range_text(&self) -> String {
        format!("{}-{}", self.range.0, self.range.1)
    }
}

/// Declares each setting as a typed constant and lists them all in [`ALL`].
/// An entry is `NAME: kind(...) "help line";`, the help line doubling as
/// the constant's doc (more doc lines may precede the entry):
///
/// - `number<T>([names], default, lo..=hi)`: a [`Number<T>`]; the default's
///   text is the literal as written;
/// - `text([names], "default")`: a [`Text`];
/// - `plain([names], Off | Required | Computed("how"), secret?)`: a
///   [`Setting`] without a default, saying what unset means.
macro_rules! declare {
    ($($(#[doc = $doc:literal])* $id:ident: $kind:ident $(<$ty:ty>)? ($($spec:tt)*) $help:literal;)*) => {
        $(
            #[doc = $help]
            $(#[doc = $doc])*
            #[allow(clippy::unnecessary_cast)]
            pub const $id: declare!(@type $kind $($ty)?) = declare!(@value $kind ($($spec)*) $help);
        )*
        /// Every setting, in the order `check-config`, the template and the
        /// docs list them.
        pub const ALL: &[&Setting] = &[$(declare!(@ref $kind $id)),*];
    };
    (@type number $ty:ty) => { Number<$ty> };
    (@type text) => { Text };
    (@type plain) => { Setting };
    (@ref plain $id:ident) => { &$id };
    (@ref $kind:ident $id:ident) => { &$id.setting };
    (@secret) => { false };
    (@secret secret) => { true };
    (@value number ([$($name:literal),+], $default:literal, $lo:literal ..= $hi:literal) $help:literal) => {
        Number {
            setting: declare!(@defaulted [$($name),+], stringify!($default), $help),
            default: $default as _,
            range: ($lo as _, $hi as _),
        }
    };
    (@value text ([$($name:literal),+], $default:literal) $help:literal) => {
        Text {
            setting: declare!(@defaulted [$($name),+], $default, $help),
            default: $default,
        }
    };
    // The `Setting` of a number or text: unset means its default.
    (@defaulted [$($name:literal),+], $default_text:expr, $help:literal) => {
        Setting {
            names: &[$($name),+],
            default: Some($default_text),
            unset: Unset::Default,
            secret: false,
            help: $help,
        }
    };
    (@value plain ([$($name:literal),+], $unset:ident $(($note:literal))? $(, $secret:ident)?) $help:literal) => {
        Setting {
            names: &[$($name),+],
            default: None,
            unset: Unset::$unset $(($note))?,
            secret: declare!(@secret $($secret)?),
            help: $help,
        }
    };
}

declare! {
    BACKEND_URL: plain(["BACKEND_URL", "VOLSPIKE_API_URL"], Required)
        "primary VolSpike backend base URL (required unless `run --local`)";
    BACKEND_KEY: plain(["ALERT_INGEST_API_KEY", "VOLSPIKE_API_KEY"], Required, secret)
        "primary backend key (required unless `run --local`)";
    DEV_BACKEND_URL: plain(["VOLSPIKE_API_URL_DEV"], Off)
        "second backend base URL (optional, needs its key)";
    DEV_BACKEND_KEY: plain(["VOLSPIKE_API_KEY_DEV"], Off, secret)
        "second backend key";
    DEV_BACKEND_KINDS: text(["VOLSPIKE_DEV_BACKEND_KINDS"], "volume_alert")
        "kinds of post the second backend receives, comma-separated (volume_alert, oi_alert, oi_samples, universe, user_alert_trigger, user_alert_checked, telegram) or `all`; user alerts are only checked on a backend that takes user_alert_trigger";
    TELEGRAM_TOKEN: plain(["TELEGRAM_BOT_TOKEN", "TELEGRAM_TOKEN"], Off, secret)
        "Telegram bot token (optional)";
    TELEGRAM_CHANNELS: plain(["TELEGRAM_CHANNEL_IDS", "TELEGRAM_CHANNELS"], Off)
        "channels to ingest, comma-separated usernames or numeric ids (optional)";
    TELEGRAM_CHAT: plain(["TELEGRAM_ALERT_CHAT_ID", "CHAT_ID"], Off)
        "chat id for alert messages (optional)";
    TELEGRAM_API_URL: text(["TELEGRAM_API_URL"], "https://api.telegram.org")
        "Telegram Bot API base URL";
    TELEGRAM_PREVIEW_URL: text(["TELEGRAM_PREVIEW_URL"], "https://t.me/s")
        "public channel preview base URL";
    TELEGRAM_CATEGORIES: text(["TELEGRAM_CATEGORIES"], "marketfeed=macro,watcherguru=crypto")
        "news category per channel, channel=category pairs; other channels are `general`";
    BINANCE_FAPI_URL: text(["BINANCE_FAPI_URL"], "https://fapi.binance.com")
        "Binance USDⓈ-M REST base URL";
    BINANCE_WS_URL: text(["BINANCE_WS_URL"], "wss://fstream.binance.com/market")
        "Binance USDⓈ-M WebSocket base URL (the /market route)";
    BINANCE_PROXY: plain(["VOLSPIKE_BINANCE_PROXY"], Off, secret)
        "http://[user:password@]host:port of a CONNECT proxy for every Binance call, REST and WebSocket (Binance answers 451 to some regions, the US among them); default: HTTPS_PROXY / HTTP_PROXY, minus NO_PROXY hosts";
    FUNDING_STALE_SECS: number<u64>(["VOLSPIKE_FUNDING_STALE_SECS"], 180, 1..=86_400)
        "seconds after which funding data is stale: the funding API answers 503 (1-86400)";
    WS_SILENCE_SECS: number<u64>(["VOLSPIKE_WS_SILENCE_SECS"], 30, 1..=600)
        "seconds without a data message before the WebSocket is treated as dead and reconnected (1-600)";
    /// Share of Binance's 2400/min weight limit the appliance may use. 40 %:
    /// the minute holding a 600-symbol volume sweep, liquid_universe and two
    /// open-interest polls of 200 symbols asks about 1,040 of the 960; the sweep
    /// yields to the polls (its tail waits for the next minute), so no poll is
    /// held (measured in tests/binance_budget.rs).
    WEIGHT_CEILING_PCT: number<u32>(["VOLSPIKE_WEIGHT_CEILING_PCT"], 40, 1..=100)
        "percent of Binance's 2400/min request weight the appliance may use (1-100)";
    /// Concurrent Binance REST requests. 12 slots: 600 klines at 50 ms take
    /// ~2.6 s instead of ~3.9 s with 8 (loadtest/run.sh); the weight per minute
    /// does not depend on it.
    BINANCE_CONCURRENCY: number<usize>(["VOLSPIKE_BINANCE_CONCURRENCY"], 12, 1..=64)
        "concurrent Binance REST requests (1-64)";
    HTTP_ADDR: text(["VOLSPIKE_HTTP_ADDR"], "127.0.0.1:8080")
        "listen address of the funding API, /health and the dashboard";
    STATE_DIR: text(["VOLSPIKE_STATE_DIR", "STATE_DIRECTORY"], "/var/lib/volspike")
        "state directory (systemd sets STATE_DIRECTORY); `run --local` without it uses ~/.local/state/volspike";
    UPDATE_URL: plain(["VOLSPIKE_UPDATE_URL"], Off)
        "release manifest URL for self-update (a manifest.json on any static host)";
    OUTBOX_CAPACITY: number<usize>(["VOLSPIKE_OUTBOX_CAPACITY"], 20000, 100..=1_000_000)
        "undelivered posts kept per backend; when full, OI samples are shed first (100-1000000)";
    DEAD_LETTERS_MAX: number<usize>(["VOLSPIKE_DEAD_LETTERS_MAX"], 10000, 10..=1_000_000)
        "dead letters kept per backend; beyond it the oldest are deleted with an error log (10-1000000)";
    SPIKE_RATIO: number<f64>(["VOLSPIKE_SPIKE_RATIO"], 3.0, 1.0..=1000.0)
        "volume_spike: minimum current/previous hourly quote-volume ratio";
    SPIKE_MIN_VOLUME: number<f64>(["VOLSPIKE_SPIKE_MIN_VOLUME"], 3000000, 0.0..=1e13)
        "volume_spike: minimum hourly quote volume in USDT";
    VOLUME_SOURCE: text(["VOLSPIKE_VOLUME_SOURCE"], "stream")
        "volume_spike: `stream` (kline streams, within a second; REST only for symbols in a stream gap) or `sweep` (every symbol over REST every 5 minutes)";
    LIQUID_ENTER_USD: number<f64>(["VOLSPIKE_LIQUID_ENTER_USD"], 100000000, 0.0..=1e13)
        "liquid_universe: a symbol enters above this 24h quote volume (USDT)";
    LIQUID_EXIT_USD: plain(["VOLSPIKE_LIQUID_EXIT_USD"], Computed("half of VOLSPIKE_LIQUID_ENTER_USD"))
        "liquid_universe: a liquid symbol stays while at or above this (default: half the enter threshold)";
    HEALTH_MIN_SYMBOLS: number<usize>(["VOLSPIKE_HEALTH_MIN_SYMBOLS"], 500, 0..=100_000)
        "funding_health: fewer symbols with funding than this is unhealthy";
    DISABLED_JOBS: plain(["VOLSPIKE_DISABLED_JOBS"], Off)
        "jobs to switch off, comma-separated job names";
    LOG_FILTER: text(["VOLSPIKE_LOG"], "info")
        "log filter (error, warn, info, debug, or tracing's env-filter syntax)";
    OI_POLL_SECS: number<u64>(["VOLSPIKE_OI_POLL_SECS"], 30, 10..=3600)
        "open_interest: seconds between open-interest polls of the liquid set; stretched automatically when the weight budget is short (10-3600)";
    OI_MIN_CONTRACTS: number<f64>(["VOLSPIKE_OI_MIN_CONTRACTS", "OI_MIN_DELTA_CONTRACTS"], 5000, 0.0..=1e9)
        "open_interest: an alert also needs |current - baseline| of at least this many contracts (0-1000000000)";
    OI_PCT_5M: number<f64>(["VOLSPIKE_OI_PCT_5M"], 3, 0.01..=1000.0)
        "open_interest: percent change over 5 minutes that alerts (0.01-1000)";
    OI_PCT_15M: number<f64>(["VOLSPIKE_OI_PCT_15M"], 5, 0.01..=1000.0)
        "open_interest: percent change over 15 minutes that alerts (0.01-1000)";
    OI_PCT_1H: number<f64>(["VOLSPIKE_OI_PCT_1H"], 10, 0.01..=1000.0)
        "open_interest: percent change over 1 hour that alerts (0.01-1000)";
    OI_COOLDOWN_5M_SECS: number<u64>(["VOLSPIKE_OI_COOLDOWN_5M_SECS", "OI_ALERT_COOLDOWN_5MIN"], 600, 0..=86_400)
        "open_interest: seconds without a second 5-minute alert in the same direction per symbol (0-86400)";
    OI_COOLDOWN_15M_SECS: number<u64>(["VOLSPIKE_OI_COOLDOWN_15M_SECS", "OI_ALERT_COOLDOWN_15MIN"], 900, 0..=86_400)
        "open_interest: seconds without a second 15-minute alert in the same direction per symbol (0-86400)";
    OI_COOLDOWN_1H_SECS: number<u64>(["VOLSPIKE_OI_COOLDOWN_1H_SECS", "OI_ALERT_COOLDOWN_60MIN"], 3600, 0..=86_400)
        "open_interest: seconds without a second 1-hour alert in the same direction per symbol (0-86400)";
    OI_WEIGHT_SHARE_PCT: number<u32>(["VOLSPIKE_OI_WEIGHT_SHARE_PCT"], 50, 1..=100)
        "open_interest: percent of the appliance's weight ceiling the poll may use before it is stretched (1-100)";
    USER_ALERTS_FAST_SECS: number<u64>(["VOLSPIKE_USER_ALERTS_FAST_SECS"], 30, 10..=3600)
        "user_alerts: seconds between checks of pro and elite alerts (10-3600)";
    USER_ALERTS_FREE_SECS: number<u64>(["VOLSPIKE_USER_ALERTS_FREE_SECS"], 300, 10..=86_400)
        "user_alerts: free alerts are checked once per wall-clock window of this many seconds (10-86400)";
    USER_ALERTS_CHECKED_SECS: number<u64>(["VOLSPIKE_USER_ALERTS_CHECKED_SECS"], 300, 0..=86_400)
        "user_alerts: an uncrossed alert's lastCheckedValue is refreshed at most this often, unless it was null or sits on the threshold (0-86400)";
    /// Hidden test switch: wedge one critical loop to prove the watchdog.
    WEDGE: plain(["VOLSPIKE_WEDGE"], Off)
        "";
    /// Hidden test switch: shift the wall clock (see [`crate::clock::now`]).
    CLOCK_OFFSET: plain(["VOLSPIKE_CLOCK_OFFSET_MS"], Off)
        "";
}

/// The default of [`LIQUID_EXIT_USD`] for an enter threshold: half of it.
pub fn liquid_exit_default(enter: f64) -> f64 {
    enter / 2.0
}

/// Whether a setting is meant for operators (hidden test switches have no help).
pub fn is_documented(setting: &Setting) -> bool {
    !setting.help.is_empty()
}

/// The settings without which the service refuses to start.
pub fn required() -> impl Iterator<Item = &'static Setting> {
    ALL.iter().copied().filter(|s| s.is_required())
}

/// Finds the setting a name belongs to.
pub fn find(name: &str) -> Option<&'static Setting> {
    ALL.iter().copied().find(|s| s.names.contains(&name))
}

/// Settings that also take the old OI poller's name for the same meaning
/// and unit (an `OI_*` name among their `names`).
pub fn old_poller_renames() -> impl Iterator<Item = &'static Setting> {
    ALL.iter()
        .copied()
        .filter(|s| s.names[1..].iter().any(|n| n.starts_with("OI_")))
}

/// Prefixes of environment variables that look like ours: an unknown one is
/// probably a typo worth a warning. Other environment variables (PATH, HOME…)
/// are none of our business.
pub const OWN_PREFIXES: &[&str] = &["VOLSPIKE_", "BINANCE_", "TELEGRAM_", "BACKEND_", "ALERT_"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_across_settings() {
        let mut seen = std::collections::BTreeSet::new();
        for s in ALL {
            for n in s.names {
                assert!(seen.insert(*n), "{n} declared twice");
            }
        }
    }

    #[test]
    fn defaults_read_back_as_their_typed_value_within_range() {
        fn check<T: std::str::FromStr + PartialOrd + fmt::Debug>(n: &Number<T>) {
            let text = n.setting.default.unwrap_or_default();
            let parsed: Option<T> = text.parse().ok();
            assert_eq!(parsed.as_ref(), Some(&n.default), "{}", n.name());
            assert!(
                n.range.0 <= n.default && n.default <= n.range.1,
                "{}",
                n.name()
            );
        }
        check(&BINANCE_CONCURRENCY);
        check(&WEIGHT_CEILING_PCT);
        check(&SPIKE_RATIO);
        check(&SPIKE_MIN_VOLUME);
        check(&LIQUID_ENTER_USD);
        check(&OI_PCT_5M);
        check(&OI_COOLDOWN_1H_SECS);
        check(&OUTBOX_CAPACITY);
        assert_eq!(BINANCE_CONCURRENCY.default, 12);
        assert_eq!(SPIKE_RATIO.setting.default, Some("3.0"));
    }

    #[test]
    fn a_default_exists_exactly_when_unset_means_default() {
        for s in ALL {
            assert_eq!(
                s.default.is_some(),
                s.unset == Unset::Default,
                "{}",
                s.name()
            );
            assert!(!(s.secret && s.default.is_some()), "{}", s.name());
        }
        let required: Vec<_> = required().map(Setting::name).collect();
        assert_eq!(required, ["BACKEND_URL", "ALERT_INGEST_API_KEY"]);
        let renames: Vec<_> = old_poller_renames().map(Setting::name).collect();
        assert_eq!(renames.len(), 4, "{renames:?}");
    }

    #[test]
    fn ranges_in_help_lines_are_the_declared_ones() {
        for (help, range) in [
            (WEIGHT_CEILING_PCT.help, WEIGHT_CEILING_PCT.range_text()),
            (BINANCE_CONCURRENCY.help, BINANCE_CONCURRENCY.range_text()),
            (FUNDING_STALE_SECS.help, FUNDING_STALE_SECS.range_text()),
            (WS_SILENCE_SECS.help, WS_SILENCE_SECS.range_text()),
            (OUTBOX_CAPACITY.help, OUTBOX_CAPACITY.range_text()),
            (DEAD_LETTERS_MAX.help, DEAD_LETTERS_MAX.range_text()),
            (OI_POLL_SECS.help, OI_POLL_SECS.range_text()),
            (OI_COOLDOWN_5M_SECS.help, OI_COOLDOWN_5M_SECS.range_text()),
            (OI_WEIGHT_SHARE_PCT.help, OI_WEIGHT_SHARE_PCT.range_text()),
            (
                USER_ALERTS_FAST_SECS.help,
                USER_ALERTS_FAST_SECS.range_text(),
            ),
            (
                USER_ALERTS_FREE_SECS.help,
                USER_ALERTS_FREE_SECS.range_text(),
            ),
            (
                USER_ALERTS_CHECKED_SECS.help,
                USER_ALERTS_CHECKED_SECS.range_text(),
            ),
        ] {
            assert!(help.contains(&format!("({range})")), "{help} vs {range}");
        }
    }
}
