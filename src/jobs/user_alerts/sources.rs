//! What the job posts to and reads from, handed in by `run` (or a test):
//! the outbox, Binance REST, the universe and the funding cache. A leaf, so
//! the value lookup ([`super::values`]) works on it without the job.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Outbox;
use crate::binance::cache::FundingCache;
use crate::binance::{BinanceRest, Universe};

/// What the job posts to and reads from, handed in by `run` (or a test).
pub struct Sources {
    /// Where triggers and update-checked go (to the backend the alert came from).
    pub outbox: Outbox,
    /// REST fallbacks and open interest.
    pub rest: BinanceRest,
    /// Binance's listing, to skip symbols it does not list as trading.
    pub universe: Arc<Universe>,
    /// Last prices, marks and funding rates from the stream.
    pub cache: FundingCache,
    /// Cache entries older than this are not used.
    pub stale_after: Duration,
}
