//! The universe cache: USDT perpetuals that are trading, from `exchangeInfo`.
//!
//! Refreshed on access when older than a maximum age (default 1 h). A failed
//! refresh keeps serving the last good list (with a warning) and is retried
//! no sooner than [`RETRY_FAILED_AFTER`] (or the max age, if shorter), so a
//! Binance outage does not turn every access into another failing call.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::endpoint::Endpoint;
use super::error::BinanceError;
use super::models::{ExchangeInfo, SymbolInfo};
use super::rest::BinanceRest;

/// Default maximum age of the cached list.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// Wait between attempts after a failed refresh (capped at the max age).
pub const RETRY_FAILED_AFTER: Duration = Duration::from_secs(60);

/// Shared, lazily refreshed list of universe symbols.
#[derive(Debug)]
pub struct Universe {
    /// Client used for `exchangeInfo`.
    rest: BinanceRest,
    /// Refresh when the list is older than this.
    max_age: Duration,
    /// The cache. A tokio mutex, held across the refresh, so concurrent
    /// callers share one `exchangeInfo` call instead of each making one.
    state: Mutex<Cache>,
    /// The last good list again, behind a std lock never held across I/O:
    /// readers that must not wait for a refresh in progress (the dashboard
    /// on an HTTP worker thread) read it with [`Universe::peek`].
    latest: std::sync::RwLock<Option<Arc<Vec<SymbolInfo>>>>,
    /// Every symbol Binance lists as trading, whatever its contract type
    /// (quarterlies, TradFi perpetuals, USDC-quoted), from the same
    /// `exchangeInfo`: what the funding cache keeps and user alerts may watch.
    listed: std::sync::RwLock<Option<Arc<BTreeSet<String>>>>,
}

/// What the cache holds.
#[derive(Debug, Default)]
struct Cache {
    /// Last good list and when it was fetched.
    list: Option<(Arc<Vec<SymbolInfo>>, Instant)>,
    /// After a failure: no new attempt before this.
    retry_at: Option<Instant>,
}

impl Universe {
    /// A cache refreshed through `rest` when older than `max_age`.
    pub fn new(rest: BinanceRest, max_age: Duration) -> Self {
        Self {
            rest,
            max_age,
            state: Mutex::new(Cache::default()),
            latest: std::sync::RwLock::new(None),
            listed: std::sync::RwLock::new(None),
        }
    }

    /// The universe, refreshed first if stale. Errors only when there has
    /// never been a good list.
    pub async fn symbols(&self) -> Result<Arc<Vec<SymbolInfo>>, BinanceError> {
        let mut cache = self.state.lock().await;
        let now = Instant::now();
        if let Some(list) = self.fresh(&cache, now) {
            return Ok(list);
        }
        match self.fetch().await {
            Ok(list) => Ok(self.store(&mut cache, list)),
            Err(e) => self.on_failure(&mut cache, e),
        }
    }

    /// Just the symbol names, e.g. for a sweep.
    pub async fn symbol_names(&self) -> Result<Vec<String>, BinanceError> {
        Ok(self
            .symbols()
            .await?
            .iter()
            .map(|s| s.symbol.clone())
            .collect())
    }

    /// Replaces the list with one from an `exchangeInfo` fetched elsewhere
    /// (liquid_universe fetches it every 5 minutes anyway). An empty universe
    /// is ignored, as in a refresh.
    pub async fn update_from(&self, info: &ExchangeInfo) {
        self.store_listed(info);
        let list = info.universe();
        if list.is_empty() {
            tracing::warn!(target: "binance", "exchangeInfo without USDT perpetuals ignored");
            return;
        }
        let mut cache = self.state.lock().await;
        self.store(&mut cache, list);
    }

    /// The last good list without waiting and without a refresh: `None`
    /// until a job fetched one. Never spends Binance weight.
    pub fn peek(&self) -> Option<Arc<Vec<SymbolInfo>>> {
        match self.latest.read() {
            Ok(latest) => latest.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Every symbol trading on Binance (any contract type) as of the last
    /// good `exchangeInfo`; `None` before one. Never spends Binance weight.
    pub fn listed(&self) -> Option<Arc<BTreeSet<String>>> {
        match self.listed.read() {
            Ok(listed) => listed.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Records the trading symbols of `info` (an answer without any is
    /// ignored, as a broken one).
    fn store_listed(&self, info: &ExchangeInfo) {
        let set: BTreeSet<String> = info
            .symbols
            .iter()
            .filter(|s| s.status == "TRADING")
            .map(|s| s.symbol.clone())
            .collect();
        if set.is_empty() {
            return;
        }
        let set = Some(Arc::new(set));
        match self.listed.write() {
            Ok(mut listed) => *listed = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
    }

    /// Age of the cached list, if there is one.
    pub async fn age(&self) -> Option<Duration> {
        let cache = self.state.lock().await;
        cache.list.as_ref().map(|(_, at)| at.elapsed())
    }

    /// The cached list if it may be served without a refresh attempt now.
    fn fresh(&self, cache: &Cache, now: Instant) -> Option<Arc<Vec<SymbolInfo>>> {
        let (list, fetched) = cache.list.as_ref()?;
        let young = now.saturating_duration_since(*fetched) < self.max_age;
        let backing_off = cache.retry_at.is_some_and(|r| now < r);
        (young || backing_off).then(|| Arc::clone(list))
    }

    /// One `exchangeInfo`, filtered; an empty universe counts as a failure
    /// (Binance always lists hundreds; empty means a broken answer).
    async fn fetch(&self) -> Result<Vec<SymbolInfo>, BinanceError> {
        let info = self.rest.exchange_info().await?;
        self.store_listed(&info);
        let list = info.universe();
        if list.is_empty() {
            return Err(BinanceError::Decode {
                endpoint: Endpoint::ExchangeInfo,
                symbol: None,
                detail: "no USDT perpetual in TRADING status".to_owned(),
            });
        }
        Ok(list)
    }

    /// Stores a good list.
    fn store(&self, cache: &mut Cache, list: Vec<SymbolInfo>) -> Arc<Vec<SymbolInfo>> {
        tracing::debug!(target: "binance", symbols = list.len(), "universe refreshed");
        let list = Arc::new(list);
        cache.list = Some((Arc::clone(&list), Instant::now()));
        cache.retry_at = None;
        match self.latest.write() {
            Ok(mut latest) => *latest = Some(Arc::clone(&list)),
            Err(poisoned) => *poisoned.into_inner() = Some(Arc::clone(&list)),
        }
        list
    }

    /// Keeps the last good list after a failed refresh, or reports the error.
    fn on_failure(
        &self,
        cache: &mut Cache,
        e: BinanceError,
    ) -> Result<Arc<Vec<SymbolInfo>>, BinanceError> {
        cache.retry_at = Some(Instant::now() + RETRY_FAILED_AFTER.min(self.max_age));
        match &cache.list {
            Some((list, fetched)) => {
                tracing::warn!(
                    target: "binance",
                    error = %e,
                    age_s = fetched.elapsed().as_secs(),
                    "universe refresh failed; serving the last good list"
                );
                Ok(Arc::clone(list))
            }
            None => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
