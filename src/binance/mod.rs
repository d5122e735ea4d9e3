//! Binance USDⓈ-M futures market data over REST: typed models, the shared
//! request-weight governor, the client and the universe cache.

mod endpoint;
pub mod governor;
pub mod models;

pub use endpoint::Endpoint;
pub use governor::{
    weight_of, GovernorConfig, GovernorStatus, Permit, ResponseMeta, WeightGovernor,
};
pub use models::{
    ExchangeInfo, Kline, OpenInterest, PremiumIndex, PriceTicker, RateLimit, SymbolInfo, Ticker24h,
};
