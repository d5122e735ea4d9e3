//! liquid_universe: every 5 minutes, the universe symbols above $100M of 24h
//! quote volume (with hysteresis), posted whole to the backend and handed to
//! open_interest in-process (docs/jobs.md). The selection is in [`rules`].
//!
//! 24 h volumes come from the stream's `!ticker@arr` cache when it holds a
//! recent ticker for every universe symbol (free), else from REST
//! `ticker/24hr` (weight 40), as docs/binance.md's budget asks.
//!
//! The backend deletes every symbol missing from a post, so nothing is
//! posted after a failed or partial Binance read: a failed `exchangeInfo` or
//! `ticker/24hr`, or a universe symbol without a ticker, fails the tick.

pub mod rules;
pub mod set;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use self::rules::{Member, Thresholds};
pub use self::set::LiquidSet;
use super::services::Services;
use super::{Job, Schedule};
use crate::backend::{Auth, BackendClient, LiquidUniverseUpdate, Outbox, Post, UniverseSymbol};
use crate::binance::cache::FundingCache;
use crate::binance::{BinanceRest, Universe};
use crate::clock::{from_unix_ms, iso, unix_ms};

/// The job.
pub struct LiquidUniverse {
    /// Binance REST: exchangeInfo and all 24h tickers.
    rest: BinanceRest,
    /// The universe cache, refreshed from the exchangeInfo this job reads.
    universe: Arc<Universe>,
    /// Where the set is posted.
    outbox: Outbox,
    /// The primary backend, read once at start to seed the set; `None` in `--local`.
    seed_from: Option<BackendClient>,
    /// Enter/exit thresholds.
    thresholds: Thresholds,
    /// The set shared with open_interest.
    liquid: LiquidSet,
    /// Whether the set was seeded (from the backend) or computed yet.
    seeded: bool,
    /// The stream's cache: 24 h volumes for free when it holds every symbol.
    funding: FundingCache,
}

impl LiquidUniverse {
    /// Builds the job from the shared clients; the set starts empty until
    /// seeded or computed.
    pub fn new(services: &Services, thresholds: Thresholds) -> LiquidUniverse {
        LiquidUniverse {
            rest: services.rest.clone(),
            universe: services.universe.clone(),
            outbox: services.outbox.clone(),
            seed_from: services.primary.clone(),
            thresholds,
            liquid: services.liquid.clone(),
            seeded: false,
            funding: services.funding.cache.clone(),
        }
    }

    /// Reads the backend's current set so hysteresis and entry times carry
    /// over a restart. A failure is logged: the first computation then starts fresh.
    async fn seed(&mut self) {
        self.seeded = true;
        let Some(client) = self.seed_from.clone() else {
            return;
        };
        let answer = tokio::task::spawn_blocking(move || {
            client.get_json(
                "/api/market/open-interest/liquid-universe",
                &[],
                Auth::Public,
            )
        })
        .await;
        let body = match answer {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => {
                tracing::warn!("cannot read the backend's liquid universe; starting fresh: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!("reading the backend's liquid universe failed: {e}");
                return;
            }
        };
        let seeded = parse_backend_set(&body);
        tracing::info!(symbols = seeded.len(), "liquid set seeded from the backend");
        self.liquid.set(seeded);
    }
}

/// A ticker older than this does not count as a complete stream read.
const STREAM_VOLUME_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// 24 h quote volumes of every symbol from the stream's cache, when it has a
/// recent ticker for each; `None` (use REST) when any one is missing, so a
/// partial stream never makes a partial universe.
pub fn stream_volumes(
    cache: &FundingCache,
    symbols: &[&str],
    now: SystemTime,
) -> Option<BTreeMap<String, f64>> {
    let now_ms = unix_ms(now);
    let max_age_ms = STREAM_VOLUME_MAX_AGE.as_millis() as u64;
    symbols
        .iter()
        .map(|symbol| {
            let data = cache.get(symbol)?;
            let fresh = data
                .ticker_updated_ms
                .is_some_and(|at| now_ms.saturating_sub(at) <= max_age_ms);
            let volume = data.quote_volume_24h.filter(|_| fresh)?;
            Some((symbol.to_string(), volume))
        })
        .collect()
}

impl LiquidUniverse {
    /// 24 h quote volumes of every symbol from REST `ticker/24hr` (weight
    /// 40); an error when the read fails or misses a symbol.
    async fn rest_volumes(&self, symbols: &[&str]) -> anyhow::Result<BTreeMap<String, f64>> {
        let tickers = self
            .rest
            .tickers_24h()
            .await
            .context("ticker/24hr failed; universe not posted")?;
        let by_symbol: BTreeMap<&str, f64> = tickers
            .iter()
            .map(|t| (t.symbol.as_str(), t.quote_volume))
            .collect();
        let mut volumes = BTreeMap::new();
        let mut missing = Vec::new();
        for symbol in symbols {
            match by_symbol.get(symbol) {
                Some(v) => {
                    volumes.insert(symbol.to_string(), *v);
                }
                None => missing.push(*symbol),
            }
        }
        if let Some(first) = missing.first() {
            anyhow::bail!(
                "partial ticker/24hr read: {} universe symbols missing (e.g. {first}); universe not posted",
                missing.len()
            );
        }
        Ok(volumes)
    }
}

/// The backend's GET body → members (entries with bad fields are skipped).
fn parse_backend_set(body: &serde_json::Value) -> BTreeMap<String, Member> {
    let parse_ms = |v: &serde_json::Value| {
        v.as_str()
            .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
            .map(unix_ms)
    };
    body["symbols"]
        .as_array()
        .map(|symbols| {
            symbols
                .iter()
                .filter_map(|s| {
                    let symbol = s["symbol"].as_str()?.to_string();
                    let volume = s["quoteVolume24h"].as_f64()?;
                    let entered = parse_ms(&s["enteredAt"]).unwrap_or(0);
                    let seen = parse_ms(&s["lastSeenAt"]).unwrap_or(entered);
                    Some((
                        symbol,
                        Member {
                            quote_volume_24h: volume,
                            entered_at_ms: entered,
                            last_seen_at_ms: seen,
                        },
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Job for LiquidUniverse {
    const NAME: &'static str = "liquid_universe";

    fn schedule(&self) -> Schedule {
        // At start and every 5 minutes after: open_interest polls the set
        // this computes, so it should not wait for a wall-clock boundary.
        Schedule::Every(Duration::from_secs(300))
    }

    async fn tick(&mut self, now: SystemTime) -> anyhow::Result<String> {
        if !self.seeded {
            self.seed().await;
        }
        let info = self
            .rest
            .exchange_info()
            .await
            .context("exchangeInfo failed; universe not posted")?;
        self.universe.update_from(&info).await;
        let universe = info.universe();
        if universe.is_empty() {
            anyhow::bail!("exchangeInfo listed no USDT perpetuals; universe not posted");
        }
        let symbols: Vec<&str> = universe.iter().map(|s| s.symbol.as_str()).collect();
        let (volumes, source) = match stream_volumes(&self.funding, &symbols, SystemTime::now()) {
            Some(volumes) => (volumes, "stream"),
            None => (self.rest_volumes(&symbols).await?, "ticker/24hr"),
        };
        let now_ms = unix_ms(now);
        let previous = self.liquid.get();
        let set = rules::select(&previous, &volumes, self.thresholds, now_ms);
        let entered = set.keys().filter(|s| !previous.contains_key(*s)).count();
        let left = previous.keys().filter(|s| !set.contains_key(*s)).count();
        let update = LiquidUniverseUpdate {
            symbols: set
                .iter()
                .map(|(symbol, m)| UniverseSymbol {
                    symbol: symbol.clone(),
                    quote_volume_24h: m.quote_volume_24h,
                    entered_at: iso(from_unix_ms(m.entered_at_ms)),
                    last_seen_at: iso(from_unix_ms(m.last_seen_at_ms)),
                })
                .collect(),
            updated_at: iso(now),
        };
        // Refuses an empty set: posting it would delete the backend's universe.
        let post = Post::universe(&update).context("no symbol is liquid; universe not posted")?;
        let count = set.len();
        self.liquid.set(set);
        self.outbox.enqueue(post).await?;
        Ok(format!(
            "{count} liquid of {} universe symbols (+{entered} −{left}; volumes from {source})",
            universe.len()
        ))
    }
}
