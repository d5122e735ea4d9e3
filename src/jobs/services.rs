//! The shared clients and state every job is built from, made once by
//! `volspike run` (and by tests, from a [`Config`] pointing at fakes).
//! Each job's constructor takes what it needs from here.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Outbox;
use crate::binance::cache::FundingCache;
use crate::binance::governor::{GovernorConfig, WeightGovernor, BINANCE_WEIGHT_LIMIT};
use crate::binance::{BinanceRest, Universe};
use crate::config::Config;
use crate::http::funding::FundingApi;
use crate::jobs::funding_stream::StreamStatus;
use crate::jobs::liquid_universe::set::LiquidSet;
use crate::jobs::oi_change_omissions::OiChangeOmissionCounters;
use crate::state::StateDir;
use crate::telegram::notifier::TelegramNotifier;

/// The shared clients and state every job is built from.
pub struct Services {
    /// The primary backend's client for GET routes; `None` in `--local`.
    pub primary: Option<crate::backend::BackendClient>,
    /// The state directory.
    pub state: StateDir,
    /// Where posts go (or the local log).
    pub outbox: Outbox,
    /// The one weight governor for every Binance REST call.
    pub governor: Arc<WeightGovernor>,
    /// Binance REST client (bounded concurrency, governed).
    pub rest: BinanceRest,
    /// The USDT-perpetual universe, refreshed at least hourly.
    pub universe: Arc<Universe>,
    /// The liquid set, written by liquid_universe, read by open_interest.
    pub liquid: LiquidSet,
    /// The funding cache (fed by the stream) and the stream's counters.
    pub funding: FundingApi,
    /// Volume alerts to a Telegram chat, when a bot token and chat id are set.
    pub notifier: TelegramNotifier,
    /// volume_spike's kline streams (`VOLSPIKE_VOLUME_SOURCE=stream`).
    pub volume_stream: crate::jobs::volume_spike::live::VolumeStream,
    /// Volume alerts sent without `oiChange`: added by volume_spike, read by `/metrics`.
    pub oi_change_omissions: OiChangeOmissionCounters,
}

impl Services {
    /// Builds the shared clients from a validated configuration.
    ///
    /// Must be called inside a tokio runtime: the Telegram notifier starts
    /// its sender task here.
    pub fn build(config: &Config, state: StateDir, outbox: Outbox) -> anyhow::Result<Services> {
        let governor = Arc::new(WeightGovernor::new(GovernorConfig::with_fraction(
            BINANCE_WEIGHT_LIMIT,
            f64::from(config.binance.weight_ceiling_pct) / 100.0,
            Duration::from_secs(60),
        )));
        let rest = BinanceRest::with_proxy(
            &config.binance.rest_url,
            governor.clone(),
            config.binance.concurrency,
            crate::binance::rest::DEFAULT_TIMEOUT,
            config.binance.proxy.as_ref(),
        )
        .map_err(|e| anyhow::anyhow!("BINANCE_FAPI_URL: {e}"))?;
        let universe = Arc::new(Universe::new(
            rest.clone(),
            crate::binance::universe::DEFAULT_MAX_AGE,
        ));
        Ok(Services {
            primary: outbox.client("primary"),
            state,
            outbox,
            governor,
            rest,
            universe,
            liquid: LiquidSet::default(),
            funding: FundingApi {
                cache: FundingCache::new(),
                stream: StreamStatus::new(),
                stale_after: config.funding.stale_after,
            },
            notifier: TelegramNotifier::from_config(&config.telegram),
            volume_stream: crate::jobs::volume_spike::live::VolumeStream::from_config(config),
            oi_change_omissions: OiChangeOmissionCounters::default(),
        })
    }
}
