//! Configuration: read once at start from the environment and an env file,
//! typed and validated in one pass that collects every problem.
//!
//! Precedence: the process environment wins over the env file (systemd's
//! `EnvironmentFile=` already puts the file into the environment; a value
//! exported by hand in a terminal is the one the operator means).

pub mod display;
pub mod envfile;
pub mod legacy;
pub mod settings;
pub mod template;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::Kind;
use settings::Setting;

/// Exit code for configuration errors (`EX_CONFIG`); the unit has
/// `RestartPreventExitStatus=78` so a bad env file does not restart-loop.
pub const EXIT_CONFIG: i32 = 78;

/// Where a value came from, for `check-config`'s listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The process environment, under this name.
    Env(String),
    /// The env file, under this name, at this line.
    File(String, usize),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(name) => write!(f, "environment {name}"),
            Origin::File(name, line) => write!(f, "env file {name} (line {line})"),
            Origin::Default => write!(f, "default"),
        }
    }
}

/// The raw inputs: environment variables and the env file's assignments.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The process environment (or a test's stand-in for it).
    pub env: BTreeMap<String, String>,
    /// Assignments read from the env file, in file order.
    pub file: Vec<envfile::Assignment>,
    /// The env file's path, for messages.
    pub file_path: Option<PathBuf>,
    /// Syntax errors in the env file.
    pub file_errors: Vec<envfile::SyntaxError>,
}

impl Sources {
    /// The real process environment, plus `env_file` when given.
    ///
    /// A missing file named explicitly is a problem; reading is not retried.
    pub fn load(env_file: Option<&Path>) -> Result<Sources, String> {
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        let mut sources = Sources {
            env,
            ..Sources::default()
        };
        if let Some(path) = env_file {
            let text = envfile::read_file(path)?;
            let (file, errors) = envfile::parse(&text);
            sources.file = file;
            sources.file_errors = errors;
            sources.file_path = Some(path.to_path_buf());
        }
        Ok(sources)
    }

    /// Sources from literal values: `env` pairs and an env file's `text`
    /// (for tests and tools that do not read the real environment).
    pub fn from_text(env: &[(&str, &str)], text: &str) -> Sources {
        let (file, file_errors) = envfile::parse(text);
        Sources {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            file,
            file_path: Some(PathBuf::from(crate::service::paths::ENV_FILE)),
            file_errors,
        }
    }

    /// Finds a setting under any of its names: environment first, then file.
    pub fn lookup(&self, setting: &Setting) -> Option<(String, Origin)> {
        for name in setting.names {
            if let Some(value) = self.env.get(*name) {
                return Some((value.clone(), Origin::Env((*name).to_string())));
            }
        }
        for name in setting.names {
            // The last assignment in a file wins, as with systemd.
            if let Some(a) = self.file.iter().rev().find(|a| a.key == *name) {
                return Some((a.value.clone(), Origin::File(a.key.clone(), a.line)));
            }
        }
        None
    }
}

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

/// open_interest thresholds and timing (docs/jobs.md defaults).
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

impl Default for OpenInterestConfig {
    fn default() -> Self {
        OpenInterestConfig {
            poll: Duration::from_secs(30),
            min_contracts: 5_000.0,
            thresholds: [0.03, 0.05, 0.10],
            cooldowns: [
                Duration::from_secs(600),
                Duration::from_secs(900),
                Duration::from_secs(3600),
            ],
            weight_share: 0.5,
        }
    }
}

/// user_alerts timing (docs/jobs.md defaults).
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

impl Default for UserAlertsConfig {
    fn default() -> Self {
        UserAlertsConfig {
            fast: Duration::from_secs(30),
            free: Duration::from_secs(300),
            checked_refresh: Duration::from_secs(300),
        }
    }
}

/// Thresholds of the alert jobs (docs/jobs.md defaults).
#[derive(Debug, Clone, Copy)]
pub struct JobThresholds {
    /// volume_spike: minimum ratio.
    pub spike_ratio: f64,
    /// volume_spike: minimum hourly quote volume.
    pub spike_min_volume: f64,
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

/// Collects typed values and problems in one pass.
struct Reader<'a> {
    sources: &'a Sources,
    report: Report,
}

impl Reader<'_> {
    fn raw(&self, setting: &Setting) -> Option<(String, Origin)> {
        match self.sources.lookup(setting) {
            // An empty assignment (`KEY=`) means "not set", as in the old scripts.
            Some((value, _)) if value.trim().is_empty() => None,
            Some((value, origin)) => Some((value.trim().to_string(), origin)),
            None => None,
        }
    }

    fn optional(&self, setting: &Setting) -> Option<String> {
        self.raw(setting)
            .map(|(v, _)| v)
            .or_else(|| setting.default.map(str::to_string))
    }

    fn url(&mut self, setting: &Setting, schemes: &[&str]) -> Option<String> {
        let (value, origin) = match self.raw(setting) {
            Some(found) => found,
            None => (setting.default?.to_string(), Origin::Default),
        };
        match check_url(&value, schemes) {
            Ok(url) => Some(url),
            Err(why) => {
                self.report
                    .problems
                    .push(format!("{} ({origin}): {why}", setting.name()));
                None
            }
        }
    }

    fn number<T: std::str::FromStr + PartialOrd + fmt::Display + Copy>(
        &mut self,
        setting: &Setting,
        range: (T, T),
    ) -> Option<T> {
        let value = self.optional(setting)?;
        match value.parse::<T>() {
            Ok(n) if n >= range.0 && n <= range.1 => Some(n),
            Ok(_) => {
                self.report.problems.push(format!(
                    "{}: {value} is out of range ({} to {})",
                    setting.name(),
                    range.0,
                    range.1
                ));
                None
            }
            Err(_) => {
                self.report
                    .problems
                    .push(format!("{}: `{value}` is not a number", setting.name()));
                None
            }
        }
    }

    fn require(&mut self, setting: &Setting) {
        if self.raw(setting).is_none() {
            self.report.problems.push(format!(
                "{} is required (also accepted: {}); set it in the env file or use `run --local`",
                setting.name(),
                setting.names[1..].join(", ")
            ));
        }
    }
}

/// Checks a URL's scheme and host and returns it without a trailing slash.
fn check_url(value: &str, schemes: &[&str]) -> Result<String, String> {
    // Messages quote the value: never with its credentials.
    let shown = display::mask_url_credentials(value);
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err(format!(
            "`{shown}` is not a URL (expected {}://…)",
            schemes[0]
        ));
    };
    if !schemes.contains(&scheme) {
        return Err(format!(
            "`{shown}` has scheme {scheme}, expected one of {}",
            schemes.join(", ")
        ));
    }
    if value.contains(char::is_whitespace) {
        return Err(format!(
            "`{shown}` contains a blank; systemd passes everything after `=` (a trailing ` #…` too): put comments on their own line"
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{shown}` has no valid host"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split([',', ' '])
        .map(|s| s.trim().trim_start_matches('@').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses `channel=category` pairs (comma- or space-separated); channel names
/// are case-insensitive, so they are kept lower-case, without a leading `@`.
fn parse_categories(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for pair in value
        .split([',', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some((channel, category))
                if !channel.trim().trim_start_matches('@').is_empty()
                    && !category.trim().is_empty() =>
            {
                map.insert(
                    channel.trim().trim_start_matches('@').to_ascii_lowercase(),
                    category.trim().to_string(),
                );
            }
            _ => {
                return Err(format!(
                    "`{pair}` is not channel=category (e.g. marketfeed=macro)"
                ))
            }
        }
    }
    Ok(map)
}

impl Config {
    /// Validates `sources` for `mode`: the config, plus warnings; or every problem.
    pub fn from_sources(sources: &Sources, mode: Mode) -> Result<(Config, Report), Report> {
        let mut r = Reader {
            sources,
            report: Report::default(),
        };
        for e in &sources.file_errors {
            let file = sources
                .file_path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            r.report.problems.push(format!("{file}: {e}"));
        }
        unknown_keys(sources, &mut r.report);

        let http_schemes = &["https", "http"];
        let mut backends = Vec::new();
        if !mode.local {
            r.require(&settings::BACKEND_URL);
            r.require(&settings::BACKEND_KEY);
            let url = r.url(&settings::BACKEND_URL, http_schemes);
            let key = r.raw(&settings::BACKEND_KEY).map(|(k, _)| Secret(k));
            if let (Some(url), Some(key)) = (url, key) {
                backends.push(BackendConfig {
                    name: "primary",
                    url,
                    key,
                    kinds: None,
                });
            }
            let dev_url = r.url(&settings::DEV_BACKEND_URL, http_schemes);
            let dev_key = r.raw(&settings::DEV_BACKEND_KEY).map(|(k, _)| Secret(k));
            let dev_kinds = dev_backend_kinds(&mut r);
            match (dev_url, dev_key) {
                (Some(url), Some(key)) => backends.push(BackendConfig {
                    name: "dev",
                    url,
                    key,
                    kinds: dev_kinds,
                }),
                (None, None) => {}
                (Some(_), None) => r.report.problems.push(
                    "VOLSPIKE_API_URL_DEV is set but VOLSPIKE_API_KEY_DEV is not".to_string(),
                ),
                (None, Some(_)) => {
                    if r.raw(&settings::DEV_BACKEND_URL).is_none() {
                        r.report.problems.push(
                            "VOLSPIKE_API_KEY_DEV is set but VOLSPIKE_API_URL_DEV is not"
                                .to_string(),
                        )
                    }
                }
            }
        }

        let bot_token = r.raw(&settings::TELEGRAM_TOKEN);
        let telegram = TelegramConfig {
            bot_token: bot_token.as_ref().map(|(t, _)| Secret(t.clone())),
            ingest_with_bot: bot_token.as_ref().is_some_and(|(_, origin)| {
                !matches!(origin, Origin::Env(n) | Origin::File(n, _) if n == legacy::OLD_ALERT_BOT_TOKEN)
            }),
            channels: r
                .optional(&settings::TELEGRAM_CHANNELS)
                .map(|v| split_list(&v))
                .unwrap_or_default(),
            alert_chat_id: r.optional(&settings::TELEGRAM_CHAT),
            api_url: r
                .url(&settings::TELEGRAM_API_URL, http_schemes)
                .unwrap_or_default(),
            preview_url: r
                .url(&settings::TELEGRAM_PREVIEW_URL, http_schemes)
                .unwrap_or_default(),
            categories: match r.optional(&settings::TELEGRAM_CATEGORIES) {
                Some(v) => parse_categories(&v).unwrap_or_else(|why| {
                    r.report
                        .problems
                        .push(format!("TELEGRAM_CATEGORIES: {why}"));
                    BTreeMap::new()
                }),
                None => BTreeMap::new(),
            },
        };
        if telegram.bot_token.is_some()
            && !telegram.ingest_with_bot
            && !telegram.channels.is_empty()
        {
            r.report.warnings.push(format!(
                "{} (the old alert bot's name) sends alert messages only{}; it does not read TELEGRAM_CHANNELS: those {} channel(s) are read from their public web previews (private channels cannot be read). To read channels through a bot (it must be a channel admin), set TELEGRAM_BOT_TOKEN",
                legacy::OLD_ALERT_BOT_TOKEN,
                if telegram.alert_chat_id.is_some() { " (to TELEGRAM_ALERT_CHAT_ID)" } else { ", and no TELEGRAM_ALERT_CHAT_ID/CHAT_ID is set" },
                telegram.channels.len()
            ));
        }
        let outbox_capacity = r
            .number(&settings::OUTBOX_CAPACITY, (100, 1_000_000))
            .unwrap_or(20_000);
        let dead_letters_max = r
            .number(&settings::DEAD_LETTERS_MAX, (10, 1_000_000))
            .unwrap_or(10_000);
        let mut binance = BinanceConfig {
            rest_url: r
                .url(&settings::BINANCE_FAPI_URL, http_schemes)
                .unwrap_or_default(),
            ws_url: r
                .url(&settings::BINANCE_WS_URL, &["wss", "ws"])
                .unwrap_or_default(),
            weight_ceiling_pct: r
                .number(&settings::WEIGHT_CEILING_PCT, (1, 100))
                .unwrap_or(40),
            concurrency: r
                .number(&settings::BINANCE_CONCURRENCY, (1, 64))
                .unwrap_or(8),
            proxy: None,
        };
        let explicit = r.raw(&settings::BINANCE_PROXY).map(|(v, _)| v);
        match crate::binance::proxy::BinanceProxy::resolve(
            explicit.as_deref(),
            &sources.env,
            &binance.rest_url,
        ) {
            Ok(Some(proxy)) => {
                // Said by check-config, since HTTPS_PROXY may come from an
                // environment the operator did not look at.
                r.report.warnings.push(format!(
                    "Binance REST and WebSocket go through the proxy {}{}",
                    proxy.shown(),
                    if proxy.applies_to(crate::binance::rest::url_host(&binance.rest_url)) {
                        ""
                    } else {
                        " (but NO_PROXY lists the REST host: reached directly)"
                    }
                ));
                binance.proxy = Some(proxy);
            }
            Ok(None) => {}
            Err(why) => r.report.problems.push(why),
        }
        if binance.ws_url.ends_with("fstream.binance.com")
            || binance.ws_url.contains("fstream.binance.com/stream")
        {
            r.report.warnings.push(format!(
                "BINANCE_WS_URL {} is Binance's legacy route, retired on 2026-04-23: it connects but sends no data; use wss://fstream.binance.com/market",
                binance.ws_url
            ));
        }

        let funding = FundingConfig {
            stale_after: Duration::from_secs(
                r.number(&settings::FUNDING_STALE_SECS, (1, 86_400))
                    .unwrap_or(180),
            ),
            silence: Duration::from_secs(
                r.number(&settings::WS_SILENCE_SECS, (1, 600)).unwrap_or(30),
            ),
        };

        let open_interest = open_interest_config(&mut r);
        let user_alerts = user_alerts_config(&mut r);
        let liquid_enter = r
            .number(&settings::LIQUID_ENTER_USD, (0.0, 1e13))
            .unwrap_or(1e8);
        let thresholds = JobThresholds {
            spike_ratio: r
                .number(&settings::SPIKE_RATIO, (1.0, 1000.0))
                .unwrap_or(3.0),
            spike_min_volume: r
                .number(&settings::SPIKE_MIN_VOLUME, (0.0, 1e13))
                .unwrap_or(3e6),
            liquid_enter,
            liquid_exit: match r.raw(&settings::LIQUID_EXIT_USD) {
                Some(_) => r
                    .number(&settings::LIQUID_EXIT_USD, (0.0, liquid_enter))
                    .unwrap_or(liquid_enter / 2.0),
                None => liquid_enter / 2.0,
            },
            health_min_symbols: r
                .number(&settings::HEALTH_MIN_SYMBOLS, (0, 100_000))
                .unwrap_or(500),
        };

        let http_addr = match r.optional(&settings::HTTP_ADDR) {
            Some(v) => match v.parse::<SocketAddr>() {
                Ok(addr) => {
                    if !addr.ip().is_loopback() {
                        r.report.warnings.push(format!(
                            "VOLSPIKE_HTTP_ADDR={addr} is reachable from {}: the dashboard, /health and /metrics have no login; prefer 127.0.0.1 and an SSH tunnel (ssh -L 8080:127.0.0.1:8080 droplet)",
                            if addr.ip().is_unspecified() { "every network the machine is on" } else { "beyond this machine" }
                        ));
                    }
                    Some(addr)
                }
                Err(_) => {
                    r.report.problems.push(format!(
                        "VOLSPIKE_HTTP_ADDR: `{v}` is not an address like 127.0.0.1:8080"
                    ));
                    None
                }
            },
            None => None,
        };
        let state_dir = match r.raw(&settings::STATE_DIR) {
            Some((dir, _)) => Some(PathBuf::from(dir)),
            // A newcomer's `run --local` is not root: keep state in their home.
            None if mode.local => Some(local_state_dir(&sources.env)),
            None => settings::STATE_DIR.default.map(PathBuf::from),
        };
        if let Some(dir) = &state_dir {
            if !dir.is_absolute() {
                r.report.problems.push(format!(
                    "VOLSPIKE_STATE_DIR: `{}` must be an absolute path",
                    dir.display()
                ));
            }
        }
        let update_url = r.url(&settings::UPDATE_URL, http_schemes);
        let mut disabled_jobs = r
            .optional(&settings::DISABLED_JOBS)
            .map(|v| split_list(&v))
            .unwrap_or_default();
        match legacy::ws_funding_enabled(sources) {
            Ok(Some(false)) if !disabled_jobs.iter().any(|j| j == "funding_stream") => {
                disabled_jobs.push("funding_stream".to_string())
            }
            Ok(_) => {}
            Err(why) => r.report.problems.push(why),
        }
        for job in &disabled_jobs {
            if crate::jobs::registry::find(job).is_none() {
                r.report.problems.push(format!(
                    "VOLSPIKE_DISABLED_JOBS: unknown job `{job}` (jobs: {})",
                    crate::jobs::registry::names()
                ));
            }
        }
        let log_filter = r
            .optional(&settings::LOG_FILTER)
            .unwrap_or_else(|| "info".into());
        if let Err(why) = crate::logging::check_filter(&log_filter) {
            r.report
                .problems
                .push(format!("VOLSPIKE_LOG: `{log_filter}`: {why}"));
        }
        let wedge = r.optional(&settings::WEDGE);

        if !r.report.problems.is_empty() {
            return Err(r.report);
        }
        let (Some(http_addr), Some(state_dir)) = (http_addr, state_dir) else {
            r.report
                .problems
                .push("internal: a defaulted setting had no value".into());
            return Err(r.report);
        };
        let config = Config {
            backends,
            local: mode.local,
            telegram,
            binance,
            funding,
            open_interest,
            user_alerts,
            thresholds,
            http_addr,
            state_dir,
            update_url,
            outbox_capacity,
            dead_letters_max,
            disabled_jobs,
            log_filter,
            wedge,
        };
        Ok((config, r.report))
    }
}

/// The open_interest settings; a bad value is a problem and its default is kept.
fn open_interest_config(r: &mut Reader<'_>) -> OpenInterestConfig {
    let d = OpenInterestConfig::default();
    let secs = |r: &mut Reader<'_>, s: &Setting, default: Duration, range: (u64, u64)| {
        r.number(s, range).map_or(default, Duration::from_secs)
    };
    let pct = |r: &mut Reader<'_>, s: &Setting, default: f64| {
        // The old poller's fraction-valued name, when ours is not set.
        if r.raw(s).is_none() {
            match legacy::old_percent(r.sources, s) {
                Some(Ok((percent, origin, _))) => match percent.parse::<f64>() {
                    Ok(p) if (0.01..=1000.0).contains(&p) => return p / 100.0,
                    _ => {
                        r.report.problems.push(format!(
                            "{} ({origin}): {percent} % is out of range (0.01 to 1000)",
                            s.name()
                        ));
                        return default;
                    }
                },
                Some(Err(why)) => {
                    r.report.problems.push(why);
                    return default;
                }
                None => {}
            }
        }
        r.number(s, (0.01, 1000.0)).map_or(default, |p| p / 100.0)
    };
    OpenInterestConfig {
        poll: secs(r, &settings::OI_POLL_SECS, d.poll, (10, 3600)),
        min_contracts: r
            .number(&settings::OI_MIN_CONTRACTS, (0.0, 1e9))
            .unwrap_or(d.min_contracts),
        thresholds: [
            pct(r, &settings::OI_PCT_5M, d.thresholds[0]),
            pct(r, &settings::OI_PCT_15M, d.thresholds[1]),
            pct(r, &settings::OI_PCT_1H, d.thresholds[2]),
        ],
        cooldowns: [
            secs(
                r,
                &settings::OI_COOLDOWN_5M_SECS,
                d.cooldowns[0],
                (0, 86_400),
            ),
            secs(
                r,
                &settings::OI_COOLDOWN_15M_SECS,
                d.cooldowns[1],
                (0, 86_400),
            ),
            secs(
                r,
                &settings::OI_COOLDOWN_1H_SECS,
                d.cooldowns[2],
                (0, 86_400),
            ),
        ],
        weight_share: r
            .number(&settings::OI_WEIGHT_SHARE_PCT, (1u32, 100))
            .map_or(d.weight_share, |p| f64::from(p) / 100.0),
    }
}

/// The user_alerts settings; a bad value is a problem and its default is kept.
fn user_alerts_config(r: &mut Reader<'_>) -> UserAlertsConfig {
    let d = UserAlertsConfig::default();
    let secs = |r: &mut Reader<'_>, s: &Setting, default: Duration, range: (u64, u64)| {
        r.number(s, range).map_or(default, Duration::from_secs)
    };
    UserAlertsConfig {
        fast: secs(r, &settings::USER_ALERTS_FAST_SECS, d.fast, (10, 3600)),
        free: secs(r, &settings::USER_ALERTS_FREE_SECS, d.free, (10, 86_400)),
        checked_refresh: secs(
            r,
            &settings::USER_ALERTS_CHECKED_SECS,
            d.checked_refresh,
            (0, 86_400),
        ),
    }
}

/// `$XDG_STATE_HOME/volspike`, else `$HOME/.local/state/volspike`, else a
/// directory under /tmp: where `run --local` keeps state when none is set.
fn local_state_dir(env: &BTreeMap<String, String>) -> PathBuf {
    if let Some(xdg) = env.get("XDG_STATE_HOME").filter(|v| v.starts_with('/')) {
        return Path::new(xdg).join("volspike");
    }
    if let Some(home) = env.get("HOME").filter(|v| v.starts_with('/')) {
        return Path::new(home).join(".local/state/volspike");
    }
    std::env::temp_dir().join("volspike")
}

/// The kinds of post the second backend receives ([`settings::DEV_BACKEND_KINDS`]):
/// `None` for `all`; an unknown name is a problem and the default is kept.
fn dev_backend_kinds(r: &mut Reader<'_>) -> Option<Vec<Kind>> {
    let default = vec![Kind::VolumeAlert];
    let Some((raw, name)) = r.raw(&settings::DEV_BACKEND_KINDS) else {
        return Some(default);
    };
    let mut kinds = Vec::new();
    for word in raw.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if word.eq_ignore_ascii_case("all") {
            return None;
        }
        match Kind::ALL.iter().find(|k| k.as_str() == word) {
            Some(kind) if !kinds.contains(kind) => kinds.push(*kind),
            Some(_) => {}
            None => {
                r.report.problems.push(format!(
                    "{name}: unknown kind {word:?}; known: all, {}",
                    Kind::ALL.map(|k| k.as_str()).join(", ")
                ));
                return Some(default);
            }
        }
    }
    if kinds.is_empty() {
        return Some(default);
    }
    Some(kinds)
}

/// Warns about keys that look like ours but are not in the table: usually a typo
/// that would otherwise silently leave a setting at its default.
fn unknown_keys(sources: &Sources, report: &mut Report) {
    report.warnings.extend(legacy::notes(sources));
    for a in &sources.file {
        if settings::find(&a.key).is_none() && !legacy::is_known(&a.key) {
            report.warnings.push(format!(
                "unknown key {} in env file (line {}): ignored",
                a.key, a.line
            ));
        }
    }
    for key in sources.env.keys() {
        let ours = settings::OWN_PREFIXES.iter().any(|p| key.starts_with(p));
        if ours && settings::find(key).is_none() {
            report.warnings.push(format!(
                "unknown variable {key} in the environment: ignored"
            ));
        }
    }
    for setting in settings::ALL {
        let set: Vec<_> = setting
            .names
            .iter()
            .filter(|n| sources.env.contains_key(**n) || sources.file.iter().any(|a| a.key == **n))
            .collect();
        if set.len() > 1 {
            report.warnings.push(format!(
                "{} are all set; using {}",
                set.iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" and "),
                set[0]
            ));
        }
    }
}

/// The effective value of every documented setting, secrets masked.
pub fn effective(sources: &Sources) -> Vec<Effective> {
    settings::ALL
        .iter()
        .filter(|s| settings::is_documented(s))
        .map(|s| {
            let found = sources
                .lookup(s)
                .filter(|(v, _)| !v.trim().is_empty())
                .map(|(v, o)| (v, Some(o)))
                .or_else(|| match legacy::old_percent(sources, s) {
                    Some(Ok((percent, origin, old))) => Some((
                        format!("{percent} (from the old fraction {old})"),
                        Some(origin),
                    )),
                    _ => None,
                })
                .or_else(|| s.default.map(|d| (d.to_string(), Some(Origin::Default))));
            match found {
                Some((value, origin)) => Effective {
                    name: s.name(),
                    shown: if s.secret {
                        "****".into()
                    } else {
                        display::mask_url_credentials(&value)
                    },
                    origin,
                },
                None => Effective {
                    name: s.name(),
                    shown: display::unset_meaning(s, sources),
                    origin: None,
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(env: &[(&str, &str)], file: &str) -> Sources {
        Sources::from_text(env, file)
    }

    #[test]
    fn old_generation_names_are_accepted() {
        let s = sources(
            &[],
            "VOLSPIKE_API_URL=https://b.example\nVOLSPIKE_API_KEY=k1\n",
        );
        let (config, _) = Config::from_sources(&s, Mode::default()).expect("valid");
        assert_eq!(config.backends.len(), 1);
        assert_eq!(config.backends[0].url, "https://b.example");
        assert_eq!(config.backends[0].key.expose(), "k1");
    }

    #[test]
    fn environment_wins_over_file() {
        let s = sources(
            &[("BACKEND_URL", "https://env.example/")],
            "BACKEND_URL=https://file.example\nALERT_INGEST_API_KEY=k\n",
        );
        let (config, _) = Config::from_sources(&s, Mode::default()).expect("valid");
        assert_eq!(config.backends[0].url, "https://env.example");
    }

    #[test]
    fn every_problem_is_listed() {
        let s = sources(
            &[],
            "VOLSPIKE_WEIGHT_CEILING_PCT=lots\nBINANCE_FAPI_URL=ftp://x\nVOLSPIKE_HTTP_ADDR=nowhere\nFOO_BAR=1\n",
        );
        let report = Config::from_sources(&s, Mode::default()).expect_err("invalid");
        let all = report.problems.join("\n");
        for needle in [
            "BACKEND_URL is required",
            "ALERT_INGEST_API_KEY is required",
            "VOLSPIKE_WEIGHT_CEILING_PCT",
            "BINANCE_FAPI_URL",
            "VOLSPIKE_HTTP_ADDR",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
        assert!(report.warnings.iter().any(|w| w.contains("FOO_BAR")));
    }

    #[test]
    fn local_mode_needs_no_backend() {
        let s = sources(&[("HOME", "/home/newcomer")], "");
        let (config, _) = Config::from_sources(&s, Mode { local: true }).expect("valid");
        assert!(config.backends.is_empty());
        assert_eq!(
            config.state_dir,
            PathBuf::from("/home/newcomer/.local/state/volspike")
        );
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.binance.ws_url, "wss://fstream.binance.com/market");
        assert_eq!(config.funding.stale_after, Duration::from_secs(180));
        assert_eq!(config.funding.silence, Duration::from_secs(30));
    }

    #[test]
    fn binding_beyond_loopback_warns() {
        let s = sources(&[], "VOLSPIKE_HTTP_ADDR=0.0.0.0:8080\n");
        let (_, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("0.0.0.0:8080") && w.contains("no login")),
            "{:?}",
            report.warnings
        );
        let s = sources(&[], "VOLSPIKE_HTTP_ADDR=127.0.0.1:8080\n");
        let (_, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn check_config_shows_systemd_values_defaults_and_masked_urls() {
        let s = sources(
            &[],
            "BACKEND_URL=http://u:KEY@backend.example # not a comment\nALERT_INGEST_API_KEY=k\n",
        );
        let listing = effective(&s);
        let shown = |name: &str| {
            listing
                .iter()
                .find(|e| e.name == name)
                .map(|e| e.shown.clone())
                .unwrap_or_else(|| panic!("{name} not listed"))
        };
        // systemd passes the whole line after `=`, ` #…` included.
        assert_eq!(
            shown("BACKEND_URL"),
            "http://u:****@backend.example # not a comment"
        );
        assert!(shown("VOLSPIKE_LIQUID_EXIT_USD").starts_with("50000000"));
        assert!(!listing.iter().any(|e| e.shown == "(not set)"));
        // The problem it causes quotes the URL masked too.
        let report = Config::from_sources(&s, Mode::default()).expect_err("a host with spaces");
        let text = format!("{:?}", report.problems);
        assert!(text.contains("u:****@") && !text.contains("KEY"), "{text}");
        assert!(text.contains("contains a blank"), "{text}");
    }

    #[test]
    fn secrets_are_masked() {
        let s = sources(
            &[],
            "ALERT_INGEST_API_KEY=supersecret\nBACKEND_URL=https://b\n",
        );
        let listing = effective(&s);
        let key = listing
            .iter()
            .find(|e| e.name == "ALERT_INGEST_API_KEY")
            .expect("listed");
        assert_eq!(key.shown, "****");
        let (config, _) = Config::from_sources(&s, Mode::default()).expect("valid");
        assert!(!format!("{config:?}").contains("supersecret"));
    }

    #[test]
    fn job_thresholds_default_to_jobs_md_and_are_validated() {
        let (config, _) =
            Config::from_sources(&sources(&[], ""), Mode { local: true }).expect("valid");
        assert_eq!(config.open_interest, OpenInterestConfig::default());
        assert_eq!(config.open_interest.poll, Duration::from_secs(30));
        assert_eq!(config.open_interest.min_contracts, 5_000.0);
        assert_eq!(config.open_interest.thresholds, [0.03, 0.05, 0.10]);
        assert_eq!(config.user_alerts.fast, Duration::from_secs(30));
        assert_eq!(config.user_alerts.free, Duration::from_secs(300));

        let s = sources(
            &[
                ("VOLSPIKE_OI_PCT_5M", "2.5"),
                ("VOLSPIKE_OI_MIN_CONTRACTS", "100"),
                ("VOLSPIKE_USER_ALERTS_FREE_SECS", "600"),
            ],
            "",
        );
        let (config, _) = Config::from_sources(&s, Mode { local: true }).expect("valid");
        assert!((config.open_interest.thresholds[0] - 0.025).abs() < 1e-12);
        assert_eq!(config.open_interest.min_contracts, 100.0);
        assert_eq!(config.user_alerts.free, Duration::from_secs(600));

        let s = sources(
            &[
                ("VOLSPIKE_OI_POLL_SECS", "1"),
                ("VOLSPIKE_OI_PCT_1H", "ten"),
                ("VOLSPIKE_USER_ALERTS_FAST_SECS", "0"),
            ],
            "",
        );
        let report = Config::from_sources(&s, Mode { local: true }).expect_err("invalid");
        let all = report.problems.join("\n");
        for needle in [
            "VOLSPIKE_OI_POLL_SECS",
            "VOLSPIKE_OI_PCT_1H",
            "VOLSPIKE_USER_ALERTS_FAST_SECS",
        ] {
            assert!(all.contains(needle), "missing {needle} in:\n{all}");
        }
    }

    #[test]
    fn telegram_categories_default_and_override() {
        let s = sources(&[], "");
        let (config, _) = Config::from_sources(&s, Mode { local: true }).expect("valid");
        assert_eq!(config.telegram.categories["marketfeed"], "macro");
        assert_eq!(config.telegram.categories["watcherguru"], "crypto");

        let s = sources(
            &[(
                "TELEGRAM_CATEGORIES",
                "@MarketFeed=crypto, whale_alert=onchain",
            )],
            "",
        );
        let (config, _) = Config::from_sources(&s, Mode { local: true }).expect("valid");
        assert_eq!(config.telegram.categories.len(), 2);
        assert_eq!(config.telegram.categories["marketfeed"], "crypto");
        assert_eq!(config.telegram.categories["whale_alert"], "onchain");

        let s = sources(&[("TELEGRAM_CATEGORIES", "marketfeed")], "");
        let report = Config::from_sources(&s, Mode { local: true }).expect_err("invalid");
        assert!(report
            .problems
            .iter()
            .any(|p| p.contains("TELEGRAM_CATEGORIES")));
    }

    #[test]
    fn the_old_pollers_names_are_honoured_and_said_so() {
        let s = sources(
            &[],
            "OI_SPIKE_THRESHOLD_PCT_5MIN=0.04\nOI_SPIKE_THRESHOLD_PCT_60MIN=0.12\nOI_ALERT_COOLDOWN_15MIN=1200\nOI_MIN_DELTA_CONTRACTS=1000\nOI_LOOKBACK_WINDOW_5MIN=300\nWS_FUNDING_ENABLED=true\n",
        );
        let (config, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
        let oi = &config.open_interest;
        assert!((oi.thresholds[0] - 0.04).abs() < 1e-12, "{oi:?}");
        assert!((oi.thresholds[1] - 0.05).abs() < 1e-12, "default kept");
        assert!((oi.thresholds[2] - 0.12).abs() < 1e-12, "{oi:?}");
        assert_eq!(oi.cooldowns[1], Duration::from_secs(1200));
        assert_eq!(oi.min_contracts, 1000.0);
        assert!(config.disabled_jobs.is_empty());
        let said = report.warnings.join("\n");
        for needle in [
            "OI_SPIKE_THRESHOLD_PCT_5MIN=0.04 (the old poller's fraction) is honoured as VOLSPIKE_OI_PCT_5M=4",
            "OI_ALERT_COOLDOWN_15MIN (the old poller's name) is honoured as VOLSPIKE_OI_COOLDOWN_15M_SECS",
            "OI_MIN_DELTA_CONTRACTS (the old poller's name) is honoured as VOLSPIKE_OI_MIN_CONTRACTS",
            "OI_LOOKBACK_WINDOW_5MIN (the old poller's name) is ignored",
            "WS_FUNDING_ENABLED=true is honoured",
        ] {
            assert!(said.contains(needle), "missing {needle:?} in:\n{said}");
        }
        assert!(!said.contains("unknown key"), "{said}");
        // check-config's listing shows the effective percent and its origin.
        let listing = effective(&s);
        let pct = listing
            .iter()
            .find(|e| e.name == "VOLSPIKE_OI_PCT_5M")
            .expect("listed");
        assert_eq!(pct.shown, "4 (from the old fraction 0.04)");
        assert!(
            matches!(&pct.origin, Some(Origin::File(n, 1)) if n == "OI_SPIKE_THRESHOLD_PCT_5MIN")
        );
        // Our own name wins over the old one.
        let both = sources(
            &[("VOLSPIKE_OI_PCT_5M", "2")],
            "OI_SPIKE_THRESHOLD_PCT_5MIN=0.04\n",
        );
        let (config, _) = Config::from_sources(&both, Mode { local: true }).expect("valid");
        assert!((config.open_interest.thresholds[0] - 0.02).abs() < 1e-12);
    }

    #[test]
    fn ws_funding_enabled_false_switches_the_funding_stream_off() {
        let s = sources(&[], "WS_FUNDING_ENABLED=false\n");
        let (config, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
        assert_eq!(config.disabled_jobs, ["funding_stream"]);
        assert!(report
            .warnings
            .iter()
            .any(|w| w.contains("honoured as VOLSPIKE_DISABLED_JOBS=funding_stream")));
        let bad = sources(&[], "WS_FUNDING_ENABLED=perhaps\n");
        assert!(Config::from_sources(&bad, Mode { local: true }).is_err());
    }

    #[test]
    fn the_old_alert_bot_token_never_reads_channels() {
        let s = sources(
            &[],
            "TELEGRAM_TOKEN=123:abc\nCHAT_ID=42\nTELEGRAM_CHANNELS=marketfeed,watcherguru\n",
        );
        let (config, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
        assert!(config.telegram.bot_token.is_some(), "still the alert bot");
        assert!(!config.telegram.ingest_with_bot);
        let said = report.warnings.join("\n");
        assert!(
            said.contains("TELEGRAM_TOKEN (the old alert bot's name) sends alert messages only (to TELEGRAM_ALERT_CHAT_ID); it does not read TELEGRAM_CHANNELS: those 2 channel(s) are read from their public web previews"),
            "{said}"
        );
        let s = sources(
            &[],
            "TELEGRAM_BOT_TOKEN=123:abc\nTELEGRAM_CHANNELS=marketfeed\n",
        );
        let (config, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
        assert!(config.telegram.ingest_with_bot);
        assert!(!report.warnings.iter().any(|w| w.contains("alert bot")));
    }

    #[test]
    fn the_second_backend_takes_volume_alerts_only_unless_widened() {
        let dev = "BACKEND_URL=https://p.example\nALERT_INGEST_API_KEY=k\nVOLSPIKE_API_URL_DEV=https://d.example\nVOLSPIKE_API_KEY_DEV=kd\n";
        let (config, _) =
            Config::from_sources(&Sources::from_text(&[], dev), Mode::default()).expect("valid");
        assert!(config.backends[0].takes(Kind::Universe));
        assert_eq!(config.backends[1].kinds, Some(vec![Kind::VolumeAlert]));
        for kind in Kind::ALL {
            assert_eq!(config.backends[1].takes(kind), kind == Kind::VolumeAlert);
        }
        let widened = format!("{dev}VOLSPIKE_DEV_BACKEND_KINDS=volume_alert, oi_alert\n");
        let (config, _) = Config::from_sources(&Sources::from_text(&[], &widened), Mode::default())
            .expect("valid");
        assert_eq!(
            config.backends[1].kinds,
            Some(vec![Kind::VolumeAlert, Kind::OiAlert])
        );
        let all = format!("{dev}VOLSPIKE_DEV_BACKEND_KINDS=all\n");
        let (config, _) =
            Config::from_sources(&Sources::from_text(&[], &all), Mode::default()).expect("valid");
        assert_eq!(config.backends[1].kinds, None);
        let typo = format!("{dev}VOLSPIKE_DEV_BACKEND_KINDS=volume\n");
        assert!(Config::from_sources(&Sources::from_text(&[], &typo), Mode::default()).is_err());
    }

    #[test]
    fn legacy_websocket_url_warns() {
        let s = sources(&[("BINANCE_WS_URL", "wss://fstream.binance.com")], "");
        let (_, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
        assert!(report.warnings.iter().any(|w| w.contains("legacy")));
    }
}
