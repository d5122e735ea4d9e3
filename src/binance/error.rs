//! Errors of Binance REST calls. Every variant names the endpoint and, for
//! per-symbol calls, the symbol, so a log line alone says what failed.

use std::time::Duration;

use super::endpoint::Endpoint;

/// What the log and `/health` say when Binance answers HTTP 451: it refuses
/// requests from this machine's region (the United States among others).
pub const REGION_REFUSED: &str = "Binance refuses this region; set VOLSPIKE_BINANCE_PROXY";

/// Why a Binance REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum BinanceError {
    /// Connection refused/reset, DNS, TLS … (no HTTP answer).
    #[error("GET {endpoint}{} on {host}: network error: {detail}", for_symbol(.symbol))]
    Network {
        /// Endpoint called.
        endpoint: Endpoint,
        /// The host (and port) asked: a DNS or connect failure names it.
        host: String,
        /// Symbol asked for, if any.
        symbol: Option<String>,
        /// What the HTTP client said.
        detail: String,
    },
    /// No complete answer within the configured timeout.
    #[error("GET {endpoint}{} on {host}: no answer within {after:?}", for_symbol(.symbol))]
    Timeout {
        /// Endpoint called.
        endpoint: Endpoint,
        /// The host (and port) asked.
        host: String,
        /// Symbol asked for, if any.
        symbol: Option<String>,
        /// The timeout that expired.
        after: Duration,
    },
    /// A non-2xx answer other than 429/418, e.g. 400 `{"code":-1121,"msg":"Invalid symbol."}`.
    #[error("GET {endpoint}{}: HTTP {code} (Binance code {}): {msg}",
        for_symbol(.symbol), .binance_code.map_or_else(|| "none".to_owned(), |c| c.to_string()))]
    Status {
        /// Endpoint called.
        endpoint: Endpoint,
        /// Symbol asked for, if any.
        symbol: Option<String>,
        /// HTTP status.
        code: u16,
        /// Binance's `code` from the error body, if the body was Binance JSON.
        binance_code: Option<i64>,
        /// Binance's `msg`, or the start of the body.
        msg: String,
    },
    /// 429: the weight limit was hit; every REST call is paused.
    #[error("GET {endpoint}{}: rate limited (429); all REST calls paused for {retry_after:?}",
        for_symbol(.symbol))]
    RateLimited {
        /// Endpoint called.
        endpoint: Endpoint,
        /// Symbol asked for, if any.
        symbol: Option<String>,
        /// The pause the governor applied (from `Retry-After` or its own back-off).
        retry_after: Duration,
    },
    /// 418: the IP is banned; every REST call is paused.
    #[error("GET {endpoint}{}: IP banned (418); all REST calls paused for {retry_after:?}: {msg}",
        for_symbol(.symbol))]
    Banned {
        /// Endpoint called.
        endpoint: Endpoint,
        /// Symbol asked for, if any.
        symbol: Option<String>,
        /// The pause the governor applied.
        retry_after: Duration,
        /// Binance's message (it says until when).
        msg: String,
    },
    /// A 2xx answer that is not the expected JSON.
    #[error("GET {endpoint}{}: unexpected payload: {detail}", for_symbol(.symbol))]
    Decode {
        /// Endpoint called.
        endpoint: Endpoint,
        /// Symbol asked for, if any.
        symbol: Option<String>,
        /// The decoder's complaint and the start of the body.
        detail: String,
    },
    /// The client was built with unusable settings.
    #[error("Binance REST client configuration: {0}")]
    Config(String),
    /// A sweep task panicked or was cancelled.
    #[error("Binance sweep task{}: {detail}", for_symbol(.symbol))]
    Task {
        /// Symbol the task was working on.
        symbol: Option<String>,
        /// What happened.
        detail: String,
    },
}

impl BinanceError {
    /// The endpoint the error is about, if it is about a call.
    pub fn endpoint(&self) -> Option<Endpoint> {
        match self {
            Self::Network { endpoint, .. }
            | Self::Timeout { endpoint, .. }
            | Self::Status { endpoint, .. }
            | Self::RateLimited { endpoint, .. }
            | Self::Banned { endpoint, .. }
            | Self::Decode { endpoint, .. } => Some(*endpoint),
            Self::Config(_) | Self::Task { .. } => None,
        }
    }

    /// The symbol the error is about, if any.
    pub fn symbol(&self) -> Option<&str> {
        match self {
            Self::Network { symbol, .. }
            | Self::Timeout { symbol, .. }
            | Self::Status { symbol, .. }
            | Self::RateLimited { symbol, .. }
            | Self::Banned { symbol, .. }
            | Self::Decode { symbol, .. }
            | Self::Task { symbol, .. } => symbol.as_deref(),
            Self::Config(_) => None,
        }
    }

    /// True for 429/418: the whole REST side is paused, so a sweep can stop early.
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::Banned { .. })
    }
}

/// " (BTCUSDT)" for per-symbol calls, "" otherwise.
fn for_symbol(symbol: &Option<String>) -> String {
    symbol
        .as_deref()
        .map_or_else(String::new, |s| format!(" ({s})"))
}
