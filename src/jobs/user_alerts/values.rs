//! The current values a tick needs: from the funding cache when fresh,
//! else from Binance REST (one sweep per endpoint, concurrent, under the
//! shared governor); each unknown one carries its reason.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use super::active::AlertKind;
use super::sources::Sources;
use crate::clock::unix_ms;

/// The current values a tick needs, each `Err` with the reason it is unknown.
#[derive(Debug, Default)]
pub(super) struct Values {
    /// (kind, symbol) → value.
    pub(super) by_key: HashMap<(AlertKind, String), Result<f64, String>>,
}

impl Sources {
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
    pub(super) async fn values(&self, wanted: &BTreeSet<(AlertKind, String)>) -> Values {
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
}
