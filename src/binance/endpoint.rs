//! The Binance REST endpoints the appliance calls, named once so weights,
//! URLs, logs and errors all agree.

use std::fmt;

use serde::Serialize;

/// A Binance USDⓈ-M REST endpoint (public market data only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Endpoint {
    /// `GET /fapi/v1/exchangeInfo`.
    ExchangeInfo,
    /// `GET /fapi/v1/ticker/24hr`.
    Ticker24h,
    /// `GET /fapi/v2/ticker/price` (v1 is deprecated).
    TickerPrice,
    /// `GET /fapi/v1/klines`.
    Klines,
    /// `GET /fapi/v1/openInterest`.
    OpenInterest,
    /// `GET /fapi/v1/premiumIndex`.
    PremiumIndex,
}

impl Endpoint {
    /// The URL path below the REST base.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ExchangeInfo => "/fapi/v1/exchangeInfo",
            Endpoint::Ticker24h => "/fapi/v1/ticker/24hr",
            Endpoint::TickerPrice => "/fapi/v2/ticker/price",
            Endpoint::Klines => "/fapi/v1/klines",
            Endpoint::OpenInterest => "/fapi/v1/openInterest",
            Endpoint::PremiumIndex => "/fapi/v1/premiumIndex",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}
