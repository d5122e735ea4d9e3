//! user_alerts: users' price, funding and open-interest cross alerts, checked
//! every 30 s for pro/elite and every 5 minutes for free (docs/jobs.md). This
//! file does the I/O; the cross and when an update-checked is worth sending
//! are pure, in [`rules`]; the backend's active list is read in [`active`]
//! (wire parsing, kept apart from the rules it feeds); where the current
//! values come from is in `values.rs`.
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

pub mod active;
pub mod rules;
mod sources;
mod values;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

pub use self::active::{parse_active, ActiveAlert, AlertKind, Tier, ACTIVE_PATH};
use self::rules::{crossed, should_update, Cross};
pub use self::sources::Sources;
use self::values::Values;
use super::services::Services;
use super::{Job, Schedule};
use crate::backend::{Auth, BackendClient, Kind, Post, UserAlertChecked, UserAlertTrigger};
use crate::clock::floor;
use crate::config::UserAlertsConfig;

/// Unknown symbols remembered as warned before the memory is reset.
const MAX_WARNED: usize = 10_000;

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

/// The job.
pub struct UserAlerts {
    /// Each backend's name and client (the active lists are per backend).
    backends: Vec<(&'static str, BackendClient)>,
    /// Where it posts and reads, as handed in.
    sources: Sources,
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
    /// Builds the job for every backend of the outbox; `None` when there is
    /// none (`--local`): user alerts live in the backend.
    pub fn new(sources: Sources, settings: UserAlertsConfig) -> Option<UserAlerts> {
        let outbox = &sources.outbox;
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
            sources,
            settings,
            last_free: None,
            checked_at: HashMap::new(),
            triggered: HashSet::new(),
            warned_unknown: HashSet::new(),
        })
    }

    /// [`UserAlerts::new`] from the shared services of `volspike run`.
    pub fn from_services(services: &Services, settings: UserAlertsConfig) -> Option<UserAlerts> {
        let sources = Sources {
            outbox: services.outbox.clone(),
            rest: services.rest.clone(),
            universe: services.universe.clone(),
            cache: services.funding.cache.clone(),
            stale_after: services.funding.stale_after,
        };
        UserAlerts::new(sources, settings)
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
                        .sources
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
                        .sources
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
        let listed: Option<HashSet<String>> = match self.sources.universe.symbols().await {
            Ok(list) => Some(match self.sources.universe.listed() {
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
        let values = self.sources.values(&wanted).await;
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
