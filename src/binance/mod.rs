//! Binance USDⓈ-M futures market data: over REST (typed models, the shared
//! request-weight governor, the client and the universe cache) and over the
//! WebSocket (the funding stream, its frame parser and the funding cache
//! every job reads).
//!
//! Wiring (one of each per process):
//! ```ignore
//! let governor = Arc::new(WeightGovernor::new(GovernorConfig::default()));
//! let rest = BinanceRest::new(DEFAULT_BASE_URL, governor, DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT)?;
//! let universe = Universe::new(rest.clone(), universe::DEFAULT_MAX_AGE);
//! ```

pub mod cache;
mod endpoint;
mod error;
pub mod frames;
pub mod governor;
pub mod kline_link;
pub mod klines;
pub mod models;
pub mod proxy;
pub mod rest;
pub mod stream;
pub mod universe;

pub use endpoint::Endpoint;
pub use error::{BinanceError, REGION_REFUSED};
pub use governor::{
    weight_of, GovernorConfig, GovernorStatus, Permit, ResponseMeta, WeightGovernor,
};
pub use models::{
    ExchangeInfo, Kline, OpenInterest, PremiumIndex, PriceTicker, RateLimit, SymbolInfo, Ticker24h,
};
pub use rest::{BinanceRest, DEFAULT_BASE_URL, DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT};
pub use universe::Universe;
