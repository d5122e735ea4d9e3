//! user_alerts: users' price, funding and open-interest cross alerts, checked
//! every 30 s for pro/elite and every 5 minutes for free (docs/jobs.md). The rule
//! is in [`cross`].
//!
//! One tick, for every configured backend (each has its own users):
//! 1. `GET /api/user-alerts-trigger/active?apiKey=K`;
//! 2. keep pro/elite alerts, and free ones when a free check is due (the
//!    first tick in each wall-clock window of `free` length, 5 minutes by
//!    default, so free alerts are checked once per window);
//! 3. the current value of every (kind, symbol) needed, once for all
//!    backends: PRICE_CROSS the last price (cache, else REST `ticker/price`),
//!    FUNDING_CROSS the funding rate (cache, else REST `premiumIndex`),
//!    OI_CROSS REST `openInterest` × price (cached mark, else cached last,
//!    else REST `ticker/price`) in USD;
//! 4. `prev = lastCheckedValue`: crossed → `trigger` to that backend (dedup by
//!    alert id: the backend makes it inactive); else maybe `update-checked`.
//!
//! # Not flooding the outbox with update-checked
//! An update-checked is not an alert, yet the old checker sent one for every
//! alert every 30 s. Here one is sent only when
//! * `lastCheckedValue` is null: without a baseline the alert can never cross;
//! * the value is on another side of the threshold (below / on / above) than
//!   `lastCheckedValue` without having crossed (it left or reached the
//!   threshold exactly): the next cross is decided against the new side;
//! * or the value changed and this alert got no update-checked for
//!   `checked_refresh` (5 minutes by default), so the backend's figure stays
//!   roughly current.
//!
//! Skipping the others loses no cross: while no update is sent, every value
//! seen since `lastCheckedValue` was on its side of the threshold (else it
//! would have triggered), so `prev < thr <= cur` gives the same answer. The
//! `previousValue` of a trigger is then the backend's `lastCheckedValue`,
//! which may be up to `checked_refresh` old. Steady state: about one
//! update-checked per alert per 5 minutes instead of ten; after a restart
//! the first tick refreshes every moved alert once.

pub mod cross;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use self::cross::{crossed, Cross};
use super::services::Services;
use super::{Job, Schedule};
use crate::backend::{Auth, BackendClient, Kind, Outbox, Post, UserAlertChecked, UserAlertTrigger};
use crate::binance::cache::FundingCache;
use crate::binance::{BinanceRest, Universe};
use crate::clock::{floor, unix_ms};
use crate::config::UserAlertsConfig;

/// Unknown symbols remembered as warned before the memory is reset.
const MAX_WARNED: usize = 10_000;

/// The backend route listing active alerts.
pub const ACTIVE_PATH: &str = "/api/user-alerts-trigger/active";

/// What an alert watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// `PRICE_CROSS`: last price.
    Price,
    /// `FUNDING_CROSS`: funding rate as a decimal.
    Funding,
    /// `OI_CROSS`: open interest in USD.
    OpenInterest,
}

impl AlertKind {
    /// From the backend's `alertType`.
    pub fn parse(s: &str) -> Option<AlertKind> {
        match s {
            "PRICE_CROSS" => Some(AlertKind::Price),
            "FUNDING_CROSS" => Some(AlertKind::Funding),
            "OI_CROSS" => Some(AlertKind::OpenInterest),
            _ => None,
        }
    }
}

/// The user's plan, which sets how often their alerts are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Checked once per free window (5 minutes).
    Free,
    /// Checked every tick (30 s).
    Pro,
    /// Checked every tick (30 s).
    Elite,
}

impl Tier {
    /// From the backend's `userTier`; anything unknown is treated as free
    /// (the slower check: never more than the user paid for).
    pub fn parse(s: Option<&str>) -> Tier {
        match s {
            Some("pro") => Tier::Pro,
            Some("elite") => Tier::Elite,
            _ => Tier::Free,
        }
    }
}

/// One alert of the backend's active list.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlert {
    /// The alert id (`id`), echoed back as `alertId`.
    pub id: String,
    /// Binance symbol, upper-case.
    pub symbol: String,
    /// What it watches.
    pub kind: AlertKind,
    /// The threshold.
    pub threshold: f64,
    /// The value at the last check; `None` before the first.
    pub last_checked_value: Option<f64>,
    /// The user's plan.
    pub tier: Tier,
}

/// A number the backend may send as a JSON number or a numeric string
/// (decimal columns are often serialised as strings).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

/// Parses the `active` answer. Entries that cannot be used are returned as
/// problems (to log), never a failure of the whole list.
pub fn parse_active(body: &Value) -> Result<(Vec<ActiveAlert>, Vec<String>), String> {
    let Some(list) = body.get("alerts").and_then(Value::as_array) else {
        return Err("answer has no `alerts` array".to_string());
    };
    let mut alerts = Vec::with_capacity(list.len());
    let mut problems = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let id = match &a["id"] {
            Value::String(s) if !s.is_empty() => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                problems.push(format!("alert #{i} has no id; skipped"));
                continue;
            }
        };
        let Some(symbol) = a["symbol"]
            .as_str()
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
        else {
            problems.push(format!("alert {id} has no symbol; skipped"));
            continue;
        };
        let Some(kind) = a["alertType"].as_str().and_then(AlertKind::parse) else {
            problems.push(format!(
                "alert {id} has an unknown alertType {}; skipped",
                a["alertType"]
            ));
            continue;
        };
        let Some(threshold) = number(&a["threshold"]) else {
            problems.push(format!(
                "alert {id} has no numeric threshold ({}); skipped",
                a["threshold"]
            ));
            continue;
        };
        let last_checked_value = match &a["lastCheckedValue"] {
            Value::Null => None,
            v => match number(v) {
                Some(n) => Some(n),
                None => {
                    problems.push(format!(
                        "alert {id} has an unusable lastCheckedValue ({v}); treated as null"
                    ));
                    None
                }
            },
        };
        alerts.push(ActiveAlert {
            id,
            symbol,
            kind,
            threshold,
            last_checked_value,
            tier: Tier::parse(a["userTier"].as_str()),
        });
    }
    Ok((alerts, problems))
}

/// Where a value sits relative to a threshold.
fn side(value: f64, threshold: f64) -> std::cmp::Ordering {
    value
        .partial_cmp(&threshold)
        .unwrap_or(std::cmp::Ordering::Equal)
}

/// Whether an uncrossed alert gets an update-checked (see the module docs).
/// `last_sent` is the last update-checked this process enqueued for the
/// alert (when, and the value), which the backend may not show yet.
pub fn should_update(
    previous: Option<f64>,
    current: f64,
    threshold: f64,
    last_sent: Option<(SystemTime, f64)>,
    now: SystemTime,
    refresh: Duration,
) -> bool {
    let recent =
        last_sent.filter(|(at, _)| now.duration_since(*at).is_ok_and(|since| since < refresh));
    // Told the backend a value on the same side a moment ago: its view is
    // (or will be, once delivered) good enough; do not repeat it every tick.
    if recent.is_some_and(|(_, sent)| side(sent, threshold) == side(current, threshold)) {
        return false;
    }
    let Some(previous) = previous else {
        return true;
    };
    if side(previous, threshold) != side(current, threshold) {
        return true;
    }
    previous != current && recent.is_none()
}

/// Per-backend counts for the summary.
#[derive(Debug, Default)]
struct Tally {
    /// Alerts in the active list.
    listed: usize,
    /// Free alerts not due this tick.
    free_waiting: usize,
    /// Triggers enqueued.
    triggered: usize,
    /// update-checked enqueued.
    checked: usize,
    /// Checked, nothing sent (value unchanged or refreshed recently).
    quiet: usize,
    /// Skipped: unknown symbol, no value, outbox refusal.
    skipped: usize,
    /// Of those, skipped for want of a current value.
    no_value: usize,
    /// The first such alert and why, for the one log line.
    first_no_value: Option<String>,
}

/// The current values a tick needs, each `Err` with the reason it is unknown.
#[derive(Debug, Default)]
struct Values {
    /// (kind, symbol) → value.
    by_key: HashMap<(AlertKind, String), Result<f64, String>>,
}

/// The job.
pub struct UserAlerts {
    /// Each backend's name and client (the active lists are per backend).
    backends: Vec<(&'static str, BackendClient)>,
    /// Where triggers and update-checked go (to the backend the alert came from).
    outbox: Outbox,
    /// REST fallbacks and open interest.
    rest: BinanceRest,
    /// Binance's listing, to skip symbols it does not list as trading.
    universe: Arc<Universe>,
    /// Last prices, marks and funding rates from the stream.
    cache: FundingCache,
    /// Cache entries older than this are not used.
    stale_after: Duration,
    /// Timing.
    settings: UserAlertsConfig,
    /// When free alerts were last checked (a tick's due time).
    last_free: Option<SystemTime>,
    /// (backend, alert id) → when its last update-checked was enqueued, and its value.
    checked_at: HashMap<(&'static str, String), (SystemTime, f64)>,
    /// (backend, alert id) of alerts triggered while still listed: not
    /// checked again until the backend drops them from its active list.
    triggered: HashSet<(&'static str, String)>,
    /// Unknown symbols already warned about.
    warned_unknown: HashSet<String>,
}

impl UserAlerts {
    /// Builds the job for every backend of `outbox`; `None` when there is
    /// none (`--local`): user alerts live in the backend.
    pub fn new(
        outbox: Outbox,
        rest: BinanceRest,
        universe: Arc<Universe>,
        cache: FundingCache,
        stale_after: Duration,
        settings: UserAlertsConfig,
    ) -> Option<UserAlerts> {
        // Only backends that take user-alert triggers are checked: the old
        // deployment never polled the second backend's alerts.
        let backends: Vec<(&'static str, BackendClient)> = outbox
            .backends_taking(Kind::UserAlertTrigger)
            .into_iter()
            .filter_map(|name| outbox.client(name).map(|c| (name, c)))
            .collect();
        if backends.is_empty() {
            return None;
        }
        Some(UserAlerts {
            backends,
            outbox,
            rest,
            universe,
            cache,
            stale_after,
            settings,
            last_free: None,
            checked_at: HashMap::new(),
            triggered: HashSet::new(),
            warned_unknown: HashSet::new(),
        })
    }

    /// [`UserAlerts::new`] from the shared services of `volspike run`.
    pub fn from_services(services: &Services, settings: UserAlertsConfig) -> Option<UserAlerts> {
        UserAlerts::new(
            services.outbox.clone(),
            services.rest.clone(),
            services.universe.clone(),
            services.funding.cache.clone(),
            services.funding.stale_after,
            settings,
        )
    }

    /// Whether free alerts are checked at `now`: the first tick of each
    /// wall-clock window of the free period (and the first tick after start).
    pub fn free_due(&self, now: SystemTime) -> bool {
        self.last_free
            .is_none_or(|last| floor(last, self.settings.free) != floor(now, self.settings.free))
    }

    /// The active list of one backend.
    async fn fetch(&self, client: &BackendClient) -> Result<Vec<ActiveAlert>, String> {
        let client = client.clone();
        let body = tokio::task::spawn_blocking(move || {
            client.get_json(ACTIVE_PATH, &[], Auth::QueryParam)
        })
        .await
        .map_err(|e| format!("request task failed: {e}"))?
        .map_err(|e| e.to_string())?;
        let (alerts, problems) = parse_active(&body)?;
        for p in problems {
            tracing::warn!("user alert: {p}");
        }
        Ok(alerts)
    }

    /// `v` when the cache entry was updated within `stale_after` of now.
    fn fresh(&self, v: Option<f64>, updated_ms: Option<u64>, wall_now_ms: u64) -> Option<f64> {
        let updated = updated_ms?;
        (wall_now_ms.saturating_sub(updated) <= self.stale_after.as_millis() as u64)
            .then_some(v)
            .flatten()
            .filter(|x| x.is_finite())
    }

    /// Every value `wanted` needs: from the cache when fresh, else from REST
    /// (one sweep per endpoint, concurrent, under the shared governor).
    async fn values(&self, wanted: &BTreeSet<(AlertKind, String)>) -> Values {
        let wall_now_ms = unix_ms(SystemTime::now());
        let mut values = Values::default();
        // Cached price for OI: mark first (what OI samples use), else last.
        let mut price_for_oi: HashMap<String, f64> = HashMap::new();
        let mut rest_price: BTreeSet<String> = BTreeSet::new();
        let mut rest_funding: BTreeSet<String> = BTreeSet::new();
        let mut rest_oi: BTreeSet<String> = BTreeSet::new();
        for (kind, symbol) in wanted {
            let data = self.cache.get(symbol);
            let last = data
                .as_ref()
                .and_then(|d| self.fresh(d.last_price, d.ticker_updated_ms, wall_now_ms));
            let mark = data
                .as_ref()
                .and_then(|d| self.fresh(d.mark_price, d.mark_updated_ms, wall_now_ms));
            match kind {
                AlertKind::Price => match last {
                    Some(p) => {
                        values.by_key.insert((*kind, symbol.clone()), Ok(p));
                    }
                    None => {
                        rest_price.insert(symbol.clone());
                    }
                },
                AlertKind::Funding => {
                    let rate = data
                        .as_ref()
                        .and_then(|d| self.fresh(d.funding_rate, d.mark_updated_ms, wall_now_ms));
                    match rate {
                        Some(r) => {
                            values.by_key.insert((*kind, symbol.clone()), Ok(r));
                        }
                        None => {
                            rest_funding.insert(symbol.clone());
                        }
                    }
                }
                AlertKind::OpenInterest => {
                    rest_oi.insert(symbol.clone());
                    match mark.or(last) {
                        Some(p) => {
                            price_for_oi.insert(symbol.clone(), p);
                        }
                        None => {
                            rest_price.insert(symbol.clone());
                        }
                    }
                }
            }
        }
        let (prices, funding, oi) = tokio::join!(
            self.rest.for_each_symbol(rest_price, |rest, s| async move {
                rest.price(&s).await.map(|p| p.price)
            }),
            self.rest
                .for_each_symbol(rest_funding, |rest, s| async move {
                    rest.premium_index(&s).await.map(|p| p.last_funding_rate)
                }),
            self.rest.for_each_symbol(rest_oi, |rest, s| async move {
                rest.open_interest(&s).await.map(|o| o.contracts)
            }),
        );
        let mut rest_prices: HashMap<String, Result<f64, String>> = HashMap::new();
        for (symbol, result) in prices {
            rest_prices.insert(symbol, result.map_err(|e| e.to_string()));
        }
        for (symbol, result) in funding {
            let value = match result {
                Ok(Some(r)) if r.is_finite() => Ok(r),
                Ok(_) => Err(format!("{symbol} has no funding rate")),
                Err(e) => Err(e.to_string()),
            };
            values.by_key.insert((AlertKind::Funding, symbol), value);
        }
        for (symbol, result) in oi {
            let price = match price_for_oi.get(&symbol) {
                Some(p) => Ok(*p),
                None => rest_prices
                    .get(&symbol)
                    .cloned()
                    .unwrap_or_else(|| Err(format!("no price for {symbol}"))),
            };
            let value = match (result, price) {
                (Ok(contracts), Ok(price)) => Ok(contracts * price),
                (Err(e), _) => Err(e.to_string()),
                (_, Err(e)) => Err(e),
            };
            values
                .by_key
                .insert((AlertKind::OpenInterest, symbol), value);
        }
        for (kind, symbol) in wanted {
            if *kind == AlertKind::Price {
                if let Some(price) = rest_prices.get(symbol) {
                    values
                        .by_key
                        .insert((AlertKind::Price, symbol.clone()), price.clone());
                }
            }
        }
        values
    }

    /// Decides and enqueues one backend's due alerts.
    async fn decide(
        &mut self,
        backend: &'static str,
        alerts: &[ActiveAlert],
        values: &Values,
        now: SystemTime,
        tally: &mut Tally,
    ) {
        for alert in alerts {
            let key = (backend, alert.id.clone());
            if self.triggered.contains(&key) {
                tally.quiet += 1;
                continue;
            }
            let current = match values.by_key.get(&(alert.kind, alert.symbol.clone())) {
                Some(Ok(v)) => *v,
                Some(Err(e)) => {
                    // One line per tick, not one per alert: with Binance
                    // down, hundreds of alerts share the same cause.
                    tally.skipped += 1;
                    tally.no_value += 1;
                    tally.first_no_value.get_or_insert_with(|| {
                        format!("alert {} ({}): {e}", alert.id, alert.symbol)
                    });
                    continue;
                }
                None => {
                    // Not looked up: the symbol is not in the universe.
                    tally.skipped += 1;
                    continue;
                }
            };
            let previous = alert.last_checked_value;
            match (crossed(previous, current, alert.threshold), previous) {
                (Some(cross), Some(previous)) => {
                    let trigger = UserAlertTrigger {
                        alert_id: alert.id.clone(),
                        symbol: alert.symbol.clone(),
                        current_value: current,
                        previous_value: previous,
                        crossed_up: cross == Cross::Up,
                    };
                    match self
                        .outbox
                        .enqueue(Post::user_alert_trigger(backend, &trigger))
                        .await
                    {
                        Ok(_) => {
                            tally.triggered += 1;
                            self.triggered.insert(key);
                        }
                        Err(e) => {
                            tracing::error!(
                                "user alert trigger not enqueued; decided again next tick: {e}"
                            );
                            tally.skipped += 1;
                        }
                    }
                }
                _ => {
                    let last_sent = self.checked_at.get(&key).copied();
                    let refresh = self.settings.checked_refresh;
                    if !should_update(previous, current, alert.threshold, last_sent, now, refresh) {
                        tally.quiet += 1;
                        continue;
                    }
                    let checked = UserAlertChecked {
                        alert_id: alert.id.clone(),
                        last_checked_value: current,
                    };
                    match self
                        .outbox
                        .enqueue(Post::user_alert_checked(backend, &checked))
                        .await
                    {
                        Ok(_) => {
                            tally.checked += 1;
                            self.checked_at.insert(key, (now, current));
                        }
                        Err(e) => {
                            tracing::warn!("update-checked not enqueued: {e}");
                            tally.skipped += 1;
                        }
                    }
                }
            }
        }
    }
}

impl Job for UserAlerts {
    const NAME: &'static str = "user_alerts";

    fn schedule(&self) -> Schedule {
        Schedule::Every(self.settings.fast)
    }

    async fn tick(&mut self, now: SystemTime) -> anyhow::Result<String> {
        let free_due = self.free_due(now);
        // 1. Every backend's list; one failing never stops the other.
        let mut lists: Vec<(&'static str, Vec<ActiveAlert>, Tally)> = Vec::new();
        let mut failures = Vec::new();
        for (name, client) in &self.backends {
            match self.fetch(client).await {
                Ok(alerts) => {
                    let mut tally = Tally {
                        listed: alerts.len(),
                        ..Tally::default()
                    };
                    // Forget alerts the backend no longer lists.
                    let ids: HashSet<&str> = alerts.iter().map(|a| a.id.as_str()).collect();
                    self.checked_at
                        .retain(|(b, id), _| b != name || ids.contains(id.as_str()));
                    self.triggered
                        .retain(|(b, id)| b != name || ids.contains(id.as_str()));
                    let due: Vec<ActiveAlert> = alerts
                        .into_iter()
                        .filter(|a| free_due || a.tier != Tier::Free)
                        .collect();
                    tally.free_waiting = tally.listed - due.len();
                    lists.push((name, due, tally));
                }
                Err(e) => {
                    tracing::warn!("{name}: cannot read active user alerts: {e}");
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
        if lists.is_empty() {
            anyhow::bail!(
                "no active user-alert list could be read: {}",
                failures.join("; ")
            );
        }
        if free_due {
            self.last_free = Some(now);
        }

        // 2. Symbols Binance lists as trading, whatever the contract type (a
        //    TradFi perpetual such as XAUUSDT too, as the old checker read any
        //    symbol over REST); unknown ones are skipped with a warning.
        let listed: Option<HashSet<String>> = match self.universe.symbols().await {
            Ok(list) => Some(match self.universe.listed() {
                Some(listed) => listed.iter().cloned().collect(),
                None => list.iter().map(|s| s.symbol.clone()).collect(),
            }),
            Err(e) => {
                tracing::warn!("universe unavailable; checking every user alert's symbol against Binance directly: {e}");
                None
            }
        };
        let mut wanted: BTreeSet<(AlertKind, String)> = BTreeSet::new();
        let mut unknown: BTreeMap<String, usize> = BTreeMap::new();
        for (_, alerts, _) in &lists {
            for a in alerts {
                if listed.as_ref().is_none_or(|l| l.contains(&a.symbol)) {
                    wanted.insert((a.kind, a.symbol.clone()));
                } else {
                    *unknown.entry(a.symbol.clone()).or_default() += 1;
                }
            }
        }
        for (symbol, n) in &unknown {
            // Warned once per symbol per run: a user's typo would otherwise
            // repeat every 30 s for as long as the alert exists.
            if self.warned_unknown.insert(symbol.clone()) {
                tracing::warn!(
                    symbol = %symbol,
                    "{n} user alert(s) skipped: Binance lists no trading {symbol} (warned once)"
                );
            }
        }
        if self.warned_unknown.len() > MAX_WARNED {
            self.warned_unknown.clear();
        }

        // 3. Values once for all backends, then decisions per backend.
        let values = self.values(&wanted).await;
        let mut parts = Vec::new();
        for (name, alerts, mut tally) in lists {
            self.decide(name, &alerts, &values, now, &mut tally).await;
            if let Some(first) = &tally.first_no_value {
                tracing::warn!(
                    "{name}: {} user alert(s) not checked for want of a current value (first: {first})",
                    tally.no_value
                );
            }
            parts.push(format!(
                "{name}: {} active ({} free not due), {} triggered, {} update-checked, {} unchanged, {} skipped",
                tally.listed, tally.free_waiting, tally.triggered, tally.checked, tally.quiet, tally.skipped
            ));
        }
        parts.extend(
            failures
                .into_iter()
                .map(|f| format!("{f} (list unreadable)")),
        );
        Ok(parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::from_unix_ms;
    use serde_json::json;

    #[test]
    fn the_active_list_is_parsed_leniently() {
        let body = json!({"alerts": [
            {"id": "a1", "userId": "u", "symbol": "btcusdt", "alertType": "PRICE_CROSS",
             "threshold": 65000, "lastCheckedValue": null, "lastCheckedAt": null,
             "deliveryMethod": "email", "userTier": "pro"},
            {"id": 7, "symbol": "ETHUSDT", "alertType": "FUNDING_CROSS",
             "threshold": "0.0001", "lastCheckedValue": "0.00005", "userTier": "vip"},
            {"id": "bad1", "symbol": "ETHUSDT", "alertType": "VOLUME_CROSS", "threshold": 1},
            {"id": "bad2", "symbol": "ETHUSDT", "alertType": "OI_CROSS", "threshold": null},
            {"symbol": "ETHUSDT", "alertType": "OI_CROSS", "threshold": 1}
        ]});
        let (alerts, problems) = parse_active(&body).expect("list");
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].symbol, "BTCUSDT");
        assert_eq!(alerts[0].tier, Tier::Pro);
        assert_eq!(alerts[0].last_checked_value, None);
        assert_eq!(alerts[1].id, "7");
        assert_eq!(alerts[1].threshold, 0.0001);
        assert_eq!(alerts[1].last_checked_value, Some(0.00005));
        assert_eq!(
            alerts[1].tier,
            Tier::Free,
            "unknown tiers get the slow check"
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(parse_active(&json!({"error": "x"})).is_err());
    }

    #[test]
    fn update_checked_only_when_it_matters() {
        let t0 = from_unix_ms(1_764_928_800_000);
        let refresh = Duration::from_secs(300);
        let later = |s| t0 + Duration::from_secs(s);
        // No baseline yet: yes, unless one was just sent (not delivered yet).
        assert!(should_update(None, 1.0, 2.0, None, t0, refresh));
        assert!(!should_update(
            None,
            1.0,
            2.0,
            Some((t0, 1.1)),
            later(30),
            refresh
        ));
        assert!(should_update(
            None,
            1.0,
            2.0,
            Some((t0, 1.1)),
            later(300),
            refresh
        ));
        // Unchanged: never.
        assert!(!should_update(Some(1.0), 1.0, 2.0, None, t0, refresh));
        // Moved, never sent: yes; sent 30 s ago: no; 5 minutes ago: yes.
        assert!(should_update(Some(1.0), 1.5, 2.0, None, t0, refresh));
        assert!(!should_update(
            Some(1.0),
            1.5,
            2.0,
            Some((t0, 1.2)),
            later(30),
            refresh
        ));
        assert!(should_update(
            Some(1.0),
            1.5,
            2.0,
            Some((t0, 1.2)),
            later(300),
            refresh
        ));
        // Sitting on the threshold, then leaving it without crossing: at once.
        assert!(should_update(
            Some(2.0),
            2.5,
            2.0,
            Some((t0, 2.0)),
            later(30),
            refresh
        ));
        assert!(should_update(
            Some(2.0),
            1.5,
            2.0,
            Some((t0, 2.0)),
            later(30),
            refresh
        ));
    }
}
