//! [`Config::from_sources`]: every setting read, typed and checked in one
//! pass, section by section, with every problem collected.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::legacy;
use super::reader::{parse_categories, split_list, Reader};
use super::settings::{self, Number};
use super::sources::{Origin, Sources};
use super::types::{
    BackendConfig, BinanceConfig, Config, FundingConfig, JobThresholds, Mode, OpenInterestConfig,
    Report, Secret, TelegramConfig, UserAlertsConfig,
};
use crate::backend::kind::Kind;

const HTTP_SCHEMES: &[&str] = &["https", "http"];

impl Config {
    /// Validates `sources` for `mode`: the config, plus warnings; or every problem.
    pub fn from_sources(sources: &Sources, mode: Mode) -> Result<(Config, Report), Report> {
        let mut r = Reader::new(sources);
        for e in &sources.file_errors {
            let file = sources
                .file_path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            r.problem(format!("{file}: {e}"));
        }
        unknown_keys(sources, &mut r.report);

        let backends = if mode.local {
            Vec::new()
        } else {
            backends(&mut r)
        };
        let telegram = telegram(&mut r);
        let outbox_capacity = r.number(&settings::OUTBOX_CAPACITY);
        let dead_letters_max = r.number(&settings::DEAD_LETTERS_MAX);
        let binance = binance(&mut r);
        let funding = FundingConfig {
            stale_after: secs(&mut r, &settings::FUNDING_STALE_SECS),
            silence: secs(&mut r, &settings::WS_SILENCE_SECS),
        };
        let open_interest = open_interest(&mut r);
        let user_alerts = user_alerts(&mut r);
        let thresholds = thresholds(&mut r);
        let http_addr = http_addr(&mut r);
        let state_dir = state_dir(&mut r, mode);
        let update_url = r.url(&settings::UPDATE_URL, HTTP_SCHEMES);
        let disabled_jobs = disabled_jobs(&mut r);
        let log_filter = r.text(&settings::LOG_FILTER);
        if let Err(why) = crate::logging::check_filter(&log_filter) {
            r.problem(format!("VOLSPIKE_LOG: `{log_filter}`: {why}"));
        }
        let wedge = r.optional(&settings::WEDGE);

        if !r.report.problems.is_empty() {
            return Err(r.report);
        }
        let Some(http_addr) = http_addr else {
            r.problem("internal: a defaulted setting had no value".into());
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

/// A number of seconds as a duration.
fn secs(r: &mut Reader<'_>, setting: &Number<u64>) -> Duration {
    Duration::from_secs(r.number(setting))
}

/// The primary backend (required) and the optional second one.
fn backends(r: &mut Reader<'_>) -> Vec<BackendConfig> {
    let mut backends = Vec::new();
    r.require(&settings::BACKEND_URL);
    r.require(&settings::BACKEND_KEY);
    let url = r.url(&settings::BACKEND_URL, HTTP_SCHEMES);
    let key = r.raw(&settings::BACKEND_KEY).map(|(k, _)| Secret::new(k));
    if let (Some(url), Some(key)) = (url, key) {
        backends.push(BackendConfig {
            name: "primary",
            url,
            key,
            kinds: None,
        });
    }
    let dev_url = r.url(&settings::DEV_BACKEND_URL, HTTP_SCHEMES);
    let dev_key = r
        .raw(&settings::DEV_BACKEND_KEY)
        .map(|(k, _)| Secret::new(k));
    let dev_kinds = dev_backend_kinds(r);
    match (dev_url, dev_key) {
        (Some(url), Some(key)) => backends.push(BackendConfig {
            name: "dev",
            url,
            key,
            kinds: dev_kinds,
        }),
        (None, None) => {}
        (Some(_), None) => {
            r.problem("VOLSPIKE_API_URL_DEV is set but VOLSPIKE_API_KEY_DEV is not".to_string())
        }
        (None, Some(_)) => {
            if r.raw(&settings::DEV_BACKEND_URL).is_none() {
                r.problem("VOLSPIKE_API_KEY_DEV is set but VOLSPIKE_API_URL_DEV is not".to_string())
            }
        }
    }
    backends
}

/// The kinds of post the second backend receives ([`settings::DEV_BACKEND_KINDS`]):
/// `None` for `all`; an unknown name is a problem and the default is kept.
fn dev_backend_kinds(r: &mut Reader<'_>) -> Option<Vec<Kind>> {
    let declared = || parse_kinds(settings::DEV_BACKEND_KINDS.default).unwrap_or_default();
    let Some((raw, origin)) = r.raw(&settings::DEV_BACKEND_KINDS) else {
        return declared();
    };
    match parse_kinds(&raw) {
        Ok(Some(kinds)) if kinds.is_empty() => declared(),
        Ok(kinds) => kinds,
        Err(word) => {
            r.problem(format!(
                "{origin}: unknown kind {word:?}; known: all, {}",
                Kind::ALL.map(|k| k.as_str()).join(", ")
            ));
            declared()
        }
    }
}

/// `all` → `None`; else the kinds named, without repeats; `Err` the first
/// unknown word.
fn parse_kinds(text: &str) -> Result<Option<Vec<Kind>>, String> {
    let mut kinds = Vec::new();
    for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if word.eq_ignore_ascii_case("all") {
            return Ok(None);
        }
        match Kind::ALL.iter().find(|k| k.as_str() == word) {
            Some(kind) if !kinds.contains(kind) => kinds.push(*kind),
            Some(_) => {}
            None => return Err(word.to_string()),
        }
    }
    Ok(Some(kinds))
}

/// Telegram: token, channels, alert chat, endpoints and categories.
fn telegram(r: &mut Reader<'_>) -> TelegramConfig {
    let bot_token = r.raw(&settings::TELEGRAM_TOKEN);
    let telegram = TelegramConfig {
        bot_token: bot_token.as_ref().map(|(t, _)| Secret::new(t.clone())),
        ingest_with_bot: bot_token.as_ref().is_some_and(|(_, origin)| {
            !matches!(origin, Origin::Env(n) | Origin::File(n, _) if n == legacy::OLD_ALERT_BOT_TOKEN)
        }),
        channels: r
            .optional(&settings::TELEGRAM_CHANNELS)
            .map(|v| split_list(&v))
            .unwrap_or_default(),
        alert_chat_id: r.optional(&settings::TELEGRAM_CHAT),
        api_url: r
            .url(&settings::TELEGRAM_API_URL, HTTP_SCHEMES)
            .unwrap_or_default(),
        preview_url: r
            .url(&settings::TELEGRAM_PREVIEW_URL, HTTP_SCHEMES)
            .unwrap_or_default(),
        categories: parse_categories(&r.text(&settings::TELEGRAM_CATEGORIES)).unwrap_or_else(
            |why| {
                r.problem(format!("TELEGRAM_CATEGORIES: {why}"));
                BTreeMap::new()
            },
        ),
    };
    if telegram.bot_token.is_some() && !telegram.ingest_with_bot && !telegram.channels.is_empty() {
        r.report.warnings.push(format!(
            "{} (the old alert bot's name) sends alert messages only{}; it does not read TELEGRAM_CHANNELS: those {} channel(s) are read from their public web previews (private channels cannot be read). To read channels through a bot (it must be a channel admin), set TELEGRAM_BOT_TOKEN",
            legacy::OLD_ALERT_BOT_TOKEN,
            if telegram.alert_chat_id.is_some() { " (to TELEGRAM_ALERT_CHAT_ID)" } else { ", and no TELEGRAM_ALERT_CHAT_ID/CHAT_ID is set" },
            telegram.channels.len()
        ));
    }
    telegram
}

/// Binance: endpoints, weight budget, concurrency and the proxy.
fn binance(r: &mut Reader<'_>) -> BinanceConfig {
    let mut binance = BinanceConfig {
        rest_url: r
            .url(&settings::BINANCE_FAPI_URL, HTTP_SCHEMES)
            .unwrap_or_default(),
        ws_url: r
            .url(&settings::BINANCE_WS_URL, &["wss", "ws"])
            .unwrap_or_default(),
        weight_ceiling_pct: r.number(&settings::WEIGHT_CEILING_PCT),
        concurrency: r.number(&settings::BINANCE_CONCURRENCY),
        proxy: None,
    };
    let explicit = r.raw(&settings::BINANCE_PROXY).map(|(v, _)| v);
    match crate::binance::proxy::BinanceProxy::resolve(
        explicit.as_deref(),
        &r.sources.env,
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
        Err(why) => r.problem(why),
    }
    if binance.ws_url.ends_with("fstream.binance.com")
        || binance.ws_url.contains("fstream.binance.com/stream")
    {
        r.report.warnings.push(format!(
            "BINANCE_WS_URL {} is Binance's legacy route, retired on 2026-04-23: it connects but sends no data; use wss://fstream.binance.com/market",
            binance.ws_url
        ));
    }
    binance
}

/// volume_spike, liquid_universe and funding_health thresholds.
fn thresholds(r: &mut Reader<'_>) -> JobThresholds {
    let liquid_enter = r.number(&settings::LIQUID_ENTER_USD);
    let exit_default = settings::liquid_exit_default(liquid_enter);
    JobThresholds {
        spike_ratio: r.number(&settings::SPIKE_RATIO),
        spike_min_volume: r.number(&settings::SPIKE_MIN_VOLUME),
        volume_from_stream: match r.text(&settings::VOLUME_SOURCE).as_str() {
            "stream" => true,
            "sweep" => false,
            other => {
                r.problem(format!(
                    "VOLSPIKE_VOLUME_SOURCE: `{other}` is not `stream` or `sweep`"
                ));
                true
            }
        },
        liquid_enter,
        liquid_exit: match r.raw(&settings::LIQUID_EXIT_USD) {
            Some(_) => r
                .number_in(&settings::LIQUID_EXIT_USD, (0.0, liquid_enter))
                .unwrap_or(exit_default),
            None => exit_default,
        },
        health_min_symbols: r.number(&settings::HEALTH_MIN_SYMBOLS),
    }
}

/// The listen address; a warning when it is reachable beyond this machine.
fn http_addr(r: &mut Reader<'_>) -> Option<SocketAddr> {
    let text = r.text(&settings::HTTP_ADDR);
    match text.parse::<SocketAddr>() {
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
            r.problem(format!(
                "VOLSPIKE_HTTP_ADDR: `{text}` is not an address like 127.0.0.1:8080"
            ));
            None
        }
    }
}

/// The state directory: set, else (with `--local`) under the user's home,
/// else the declared default; it must be absolute.
fn state_dir(r: &mut Reader<'_>, mode: Mode) -> PathBuf {
    let dir = match r.raw(&settings::STATE_DIR) {
        Some((dir, _)) => PathBuf::from(dir),
        // A newcomer's `run --local` is not root: keep state in their home.
        None if mode.local => local_state_dir(&r.sources.env),
        None => PathBuf::from(settings::STATE_DIR.default),
    };
    if !dir.is_absolute() {
        r.problem(format!(
            "VOLSPIKE_STATE_DIR: `{}` must be an absolute path",
            dir.display()
        ));
    }
    dir
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

/// Jobs switched off: the setting, plus the old `WS_FUNDING_ENABLED=false`.
fn disabled_jobs(r: &mut Reader<'_>) -> Vec<String> {
    let mut disabled = r
        .optional(&settings::DISABLED_JOBS)
        .map(|v| split_list(&v))
        .unwrap_or_default();
    match legacy::ws_funding_enabled(r.sources) {
        Ok(Some(false)) if !disabled.iter().any(|j| j == "funding_stream") => {
            disabled.push("funding_stream".to_string())
        }
        Ok(_) => {}
        Err(why) => r.problem(why),
    }
    for job in &disabled {
        if crate::jobs::registry::find(job).is_none() {
            r.problem(format!(
                "VOLSPIKE_DISABLED_JOBS: unknown job `{job}` (jobs: {})",
                crate::jobs::registry::names()
            ));
        }
    }
    disabled
}

/// The open_interest settings; a bad value is a problem and its default is kept.
pub(crate) fn open_interest(r: &mut Reader<'_>) -> OpenInterestConfig {
    OpenInterestConfig {
        poll: secs(r, &settings::OI_POLL_SECS),
        min_contracts: r.number(&settings::OI_MIN_CONTRACTS),
        thresholds: [
            percent(r, &settings::OI_PCT_5M),
            percent(r, &settings::OI_PCT_15M),
            percent(r, &settings::OI_PCT_1H),
        ],
        cooldowns: [
            secs(r, &settings::OI_COOLDOWN_5M_SECS),
            secs(r, &settings::OI_COOLDOWN_15M_SECS),
            secs(r, &settings::OI_COOLDOWN_1H_SECS),
        ],
        weight_share: f64::from(r.number(&settings::OI_WEIGHT_SHARE_PCT)) / 100.0,
    }
}

/// A percent setting as a fraction; when unset, the old poller's
/// fraction-valued name is read instead.
fn percent(r: &mut Reader<'_>, setting: &Number<f64>) -> f64 {
    let fallback = setting.default / 100.0;
    if r.raw(setting).is_none() {
        match legacy::old_percent(r.sources, setting) {
            Some(Ok((percent, origin, _))) => match percent.parse::<f64>() {
                Ok(p) if (setting.range.0..=setting.range.1).contains(&p) => return p / 100.0,
                _ => {
                    r.problem(format!(
                        "{} ({origin}): {percent} % is out of range ({} to {})",
                        setting.name(),
                        setting.range.0,
                        setting.range.1
                    ));
                    return fallback;
                }
            },
            Some(Err(why)) => {
                r.problem(why);
                return fallback;
            }
            None => {}
        }
    }
    r.number(setting) / 100.0
}

/// The user_alerts settings; a bad value is a problem and its default is kept.
pub(crate) fn user_alerts(r: &mut Reader<'_>) -> UserAlertsConfig {
    UserAlertsConfig {
        fast: secs(r, &settings::USER_ALERTS_FAST_SECS),
        free: secs(r, &settings::USER_ALERTS_FREE_SECS),
        checked_refresh: secs(r, &settings::USER_ALERTS_CHECKED_SECS),
    }
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

impl Default for OpenInterestConfig {
    /// Every open_interest setting at its declared default.
    fn default() -> Self {
        open_interest(&mut Reader::new(&Sources::default()))
    }
}

impl Default for UserAlertsConfig {
    /// Every user_alerts setting at its declared default.
    fn default() -> Self {
        user_alerts(&mut Reader::new(&Sources::default()))
    }
}
