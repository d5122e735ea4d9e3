//! What handlers read: the appliance's shared state, handed to every
//! handler by the server. Imports only the state it holds, never a handler
//! or the router, so handlers can take it without an import circle.

use std::sync::Arc;
use std::time::Instant;

use super::funding::FundingApi;
use super::requests::RequestCounters;
use super::server::limits::HttpStats;
use crate::backend::Outbox;
use crate::binance::governor::WeightGovernor;
use crate::binance::Universe;
use crate::jobs::oi_change_omissions::OiChangeOmissionCounters;
use crate::jobs::status::StatusBoard;
use crate::jobs::volume_spike::live::VolumeStream;
use crate::systemd::liveness::Liveness;

/// What handlers read: the appliance's shared state.
#[derive(Debug, Clone)]
pub struct HttpContext {
    /// When the process started, for uptime.
    pub started: Instant,
    /// Every job's record.
    pub board: StatusBoard,
    /// Critical loops' liveness.
    pub liveness: Liveness,
    /// `run --local`: nothing is posted to a backend.
    pub local: bool,
    /// The outbox, for delivery stats; `None` in tests that do not need it.
    pub outbox: Option<Outbox>,
    /// The Binance weight governor, for its state; `None` in tests.
    pub governor: Option<Arc<WeightGovernor>>,
    /// The funding cache and stream counters.
    pub funding: FundingApi,
    /// The universe list, peeked (never fetched) by the dashboard to keep
    /// its table to USDT perpetuals; `None` in tests.
    pub universe: Option<Arc<Universe>>,
    /// Requests answered by route and status, for `/metrics`.
    pub requests: RequestCounters,
    /// The server's limits and what they did, for `/health` and `/metrics`.
    pub http: HttpStats,
    /// Volume alerts sent without `oiChange`, as the volume job counts them.
    pub oi_change_omissions: OiChangeOmissionCounters,
    /// volume_spike's kline streams, for `/metrics`; `None` in tests.
    pub volume_stream: Option<VolumeStream>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A context with nothing running: what handler tests start from.
    pub(crate) fn ctx() -> HttpContext {
        HttpContext {
            started: Instant::now(),
            board: StatusBoard::default(),
            liveness: Liveness::new(None),
            local: true,
            outbox: None,
            governor: None,
            funding: FundingApi::default(),
            universe: None,
            requests: RequestCounters::default(),
            http: HttpStats::default(),
            oi_change_omissions: OiChangeOmissionCounters::default(),
            volume_stream: None,
        }
    }
}
