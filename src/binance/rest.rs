//! The Binance USDⓈ-M REST client every job shares.
//!
//! ureq is blocking, so each call runs on tokio's blocking pool
//! (`spawn_blocking`). Before that it takes one of `max_concurrency` slots
//! (a fair semaphore) and its request weight from the shared
//! [`WeightGovernor`]; after it, the response's `X-MBX-USED-WEIGHT-1M`,
//! status and `Retry-After` go back to the governor, so one 429 pauses every
//! endpoint for every job.
//!
//! Sweeps over many symbols: [`BinanceRest::for_each_symbol`] spawns one task
//! per symbol; the slots and the governor bound what actually runs, so
//! callers need no extra throttling.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::endpoint::Endpoint;
use super::error::BinanceError;
use super::governor::{weight_of, Permit, ResponseMeta, WeightGovernor};
use super::models::{
    ApiErrorBody, ExchangeInfo, Kline, OpenInterest, PremiumIndex, PriceTicker, SymbolInfo,
    Ticker24h,
};
use super::proxy::BinanceProxy;

/// Binance USDⓈ-M REST base.
pub const DEFAULT_BASE_URL: &str = crate::config::settings::BINANCE_FAPI_URL.default;
/// Default number of REST calls in flight at once.
pub const DEFAULT_MAX_CONCURRENCY: usize = crate::config::settings::BINANCE_CONCURRENCY.default;
/// Default timeout of one call (connect + answer + body).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest `Retry-After` taken at face value (Binance bans last up to 3 days).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);
/// How much of an unexpected body an error message quotes.
const BODY_SNIPPET: usize = 160;

/// Shared Binance REST client; clones share the agent, slots and governor.
#[derive(Clone, Debug)]
pub struct BinanceRest {
    /// Shared state.
    inner: Arc<Inner>,
    /// Whether this handle's calls yield to regular ones under the weight
    /// ceiling ([`BinanceRest::yielding`]).
    yielding: bool,
}

/// What clones share.
#[derive(Debug)]
struct Inner {
    /// ureq agent (connection pool, timeouts).
    agent: ureq::Agent,
    /// REST base without trailing slash, e.g. `https://fapi.binance.com`.
    base_url: String,
    /// The one weight governor.
    governor: Arc<WeightGovernor>,
    /// Concurrency slots; a slot is held until the blocking call ends, even
    /// if the caller gave up waiting, so the bound holds at the server.
    slots: Arc<Semaphore>,
    /// Number of slots.
    max_concurrency: usize,
    /// Body memory of all calls in flight, in KiB (see [`body`]).
    body_budget: Arc<Semaphore>,
    /// Per-call timeout.
    timeout: Duration,
}

/// The parts of a response the client uses, read on the blocking thread.
struct RawResponse {
    /// HTTP status.
    status: u16,
    /// `X-MBX-USED-WEIGHT-1M`.
    used_weight_1m: Option<u32>,
    /// `Retry-After` in seconds.
    retry_after: Option<Duration>,
    /// The body (decompressed).
    body: Vec<u8>,
}

/// Endpoint and symbol of a call, for errors.
#[derive(Clone)]
struct Call {
    /// Endpoint called.
    endpoint: Endpoint,
    /// Symbol asked for, if any.
    symbol: Option<String>,
}

impl BinanceRest {
    /// A client for `base_url` (e.g. [`DEFAULT_BASE_URL`], or a fake's
    /// `http://127.0.0.1:port` in tests) sharing `governor`.
    pub fn new(
        base_url: &str,
        governor: Arc<WeightGovernor>,
        max_concurrency: usize,
        timeout: Duration,
    ) -> Result<Self, BinanceError> {
        Self::with_proxy(base_url, governor, max_concurrency, timeout, None)
    }

    /// [`BinanceRest::new`] whose calls go through `proxy` (unless its
    /// `NO_PROXY` list names the host of `base_url`).
    pub fn with_proxy(
        base_url: &str,
        governor: Arc<WeightGovernor>,
        max_concurrency: usize,
        timeout: Duration,
        proxy: Option<&BinanceProxy>,
    ) -> Result<Self, BinanceError> {
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(BinanceError::Config(format!(
                "base URL {base_url:?} must start with http:// or https://"
            )));
        }
        if max_concurrency == 0 || timeout.is_zero() {
            return Err(BinanceError::Config(
                "max_concurrency and timeout must be greater than zero".to_owned(),
            ));
        }
        let ureq_proxy = match proxy {
            Some(p) => p.ureq(url_host(&base_url)).map_err(BinanceError::Config)?,
            None => None,
        };
        tracing::debug!(
            exchange_info_bytes = body::cap(Endpoint::ExchangeInfo, true),
            in_flight_bytes = body::MAX_IN_FLIGHT_BYTES,
            "Binance REST body limits"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                // One warm connection per concurrent sweep slot.
                agent: crate::net::agent_via(timeout, max_concurrency, ureq_proxy),
                base_url,
                governor,
                slots: Arc::new(Semaphore::new(max_concurrency)),
                max_concurrency,
                body_budget: Arc::new(Semaphore::new(body::budget_units())),
                timeout,
            }),
            yielding: false,
        })
    }

    /// A handle on the same client whose calls yield to regular ones: for a
    /// burst such as the volume sweep, which may spill into the next weight
    /// window rather than hold back an open-interest poll
    /// ([`WeightGovernor::acquire_yielding`]).
    pub fn yielding(&self) -> BinanceRest {
        BinanceRest {
            inner: Arc::clone(&self.inner),
            yielding: true,
        }
    }

    /// The shared governor (for status and interval planning).
    pub fn governor(&self) -> &Arc<WeightGovernor> {
        &self.inner.governor
    }

    /// The REST base in use.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// Calls allowed in flight at once.
    pub fn max_concurrency(&self) -> usize {
        self.inner.max_concurrency
    }

    /// `GET /fapi/v1/exchangeInfo` (weight 1).
    pub async fn exchange_info(&self) -> Result<ExchangeInfo, BinanceError> {
        self.get(Endpoint::ExchangeInfo, None, Vec::new()).await
    }

    /// The universe: USDT perpetuals that are trading (one `exchangeInfo`).
    pub async fn universe(&self) -> Result<Vec<SymbolInfo>, BinanceError> {
        Ok(self.exchange_info().await?.universe())
    }

    /// `GET /fapi/v1/ticker/24hr`, all symbols (weight 40).
    pub async fn tickers_24h(&self) -> Result<Vec<Ticker24h>, BinanceError> {
        self.get(Endpoint::Ticker24h, None, Vec::new()).await
    }

    /// `GET /fapi/v1/ticker/24hr?symbol=` (weight 1).
    pub async fn ticker_24h(&self, symbol: &str) -> Result<Ticker24h, BinanceError> {
        self.get(Endpoint::Ticker24h, Some(symbol), Vec::new())
            .await
    }

    /// `GET /fapi/v2/ticker/price`, all symbols (weight 2).
    pub async fn prices(&self) -> Result<Vec<PriceTicker>, BinanceError> {
        self.get(Endpoint::TickerPrice, None, Vec::new()).await
    }

    /// `GET /fapi/v2/ticker/price?symbol=` (weight 1).
    pub async fn price(&self, symbol: &str) -> Result<PriceTicker, BinanceError> {
        self.get(Endpoint::TickerPrice, Some(symbol), Vec::new())
            .await
    }

    /// `GET /fapi/v1/klines?symbol=&interval=&limit=` (weight 1/2/5/10 by limit).
    /// The last kline is the candle still open.
    pub async fn klines(
        &self,
        symbol: &str,
        interval: &str,
        limit: u32,
    ) -> Result<Vec<Kline>, BinanceError> {
        let params = vec![
            ("interval", interval.to_owned()),
            ("limit", limit.to_string()),
        ];
        self.get(Endpoint::Klines, Some(symbol), params).await
    }

    /// `GET /fapi/v1/openInterest?symbol=` (weight 1), in contracts.
    pub async fn open_interest(&self, symbol: &str) -> Result<OpenInterest, BinanceError> {
        self.get(Endpoint::OpenInterest, Some(symbol), Vec::new())
            .await
    }

    /// `GET /fapi/v1/premiumIndex?symbol=` (weight 1).
    pub async fn premium_index(&self, symbol: &str) -> Result<PremiumIndex, BinanceError> {
        self.get(Endpoint::PremiumIndex, Some(symbol), Vec::new())
            .await
    }

    /// `GET /fapi/v1/premiumIndex`, all symbols (weight 10).
    pub async fn premium_index_all(&self) -> Result<Vec<PremiumIndex>, BinanceError> {
        self.get(Endpoint::PremiumIndex, None, Vec::new()).await
    }

    /// Runs `f(client, symbol)` for every symbol concurrently and returns the
    /// results in input order. The client's slots and governor bound what
    /// reaches Binance, so spawning one task per symbol is fine. Dropping the
    /// returned future aborts the unfinished tasks.
    ///
    /// ```ignore
    /// let oi = rest.for_each_symbol(names, |rest, s| async move { rest.open_interest(&s).await }).await;
    /// ```
    pub async fn for_each_symbol<T, F, Fut, I, S>(
        &self,
        symbols: I,
        f: F,
    ) -> Vec<(String, Result<T, BinanceError>)>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
        F: Fn(BinanceRest, String) -> Fut,
        Fut: Future<Output = Result<T, BinanceError>> + Send + 'static,
        T: Send + 'static,
    {
        let names: Vec<String> = symbols.into_iter().map(Into::into).collect();
        let mut tasks = JoinSet::new();
        let mut position = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let handle = tasks.spawn(f(self.clone(), name.clone()));
            position.insert(handle.id(), i);
        }
        let mut results: Vec<Option<Result<T, BinanceError>>> =
            names.iter().map(|_| None).collect();
        while let Some(joined) = tasks.join_next_with_id().await {
            let (id, result) = match joined {
                Ok((id, result)) => (id, result),
                Err(e) => (e.id(), Err(task_error(None, &e))),
            };
            if let Some(slot) = position.get(&id).and_then(|&i| results.get_mut(i)) {
                *slot = Some(result);
            }
        }
        names
            .into_iter()
            .zip(results)
            .map(|(name, result)| {
                let result = result.unwrap_or_else(|| {
                    Err(BinanceError::Task {
                        symbol: Some(name.clone()),
                        detail: "no result".to_owned(),
                    })
                });
                let result = result.map_err(|e| with_task_symbol(e, &name));
                (name, result)
            })
            .collect()
    }

    /// One GET: slot, weight, blocking call, governor feedback, decode.
    async fn get<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        symbol: Option<&str>,
        mut params: Vec<(&'static str, String)>,
    ) -> Result<T, BinanceError> {
        let call = Call {
            endpoint,
            symbol: symbol.map(str::to_owned),
        };
        if let Some(s) = symbol {
            params.insert(0, ("symbol", s.to_owned()));
        }
        let borrowed: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let weight = weight_of(endpoint, &borrowed);
        let cap = body::cap(endpoint, symbol.is_none());
        let (slot, permit) = if self.yielding {
            // Weight first: a yielding call waiting for the next window must
            // not sit on a concurrency slot a regular call needs meanwhile.
            let permit = self.inner.governor.acquire_yielding(weight).await;
            (self.slot(&call).await?, permit)
        } else {
            let slot = self.slot(&call).await?;
            (slot, self.inner.governor.acquire(weight).await)
        };
        // Held until the body (and the value decoded from it) is done with.
        let _memory = Arc::clone(&self.inner.body_budget)
            .acquire_many_owned(body::units(cap))
            .await
            .map_err(|_| BinanceError::Task {
                symbol: call.symbol.clone(),
                detail: "REST client shut down".to_owned(),
            })?;
        let raw = self.fetch(&call, params, slot, cap).await?;
        self.interpret(&call, &permit, raw)
    }

    /// Waits for a concurrency slot.
    async fn slot(&self, call: &Call) -> Result<OwnedSemaphorePermit, BinanceError> {
        Arc::clone(&self.inner.slots)
            .acquire_owned()
            .await
            .map_err(|_| BinanceError::Task {
                symbol: call.symbol.clone(),
                detail: "REST client shut down".to_owned(),
            })
    }

    /// Runs the blocking HTTP call on the blocking pool; the slot is released
    /// when the call really ends.
    async fn fetch(
        &self,
        call: &Call,
        params: Vec<(&'static str, String)>,
        slot: OwnedSemaphorePermit,
        cap: usize,
    ) -> Result<RawResponse, BinanceError> {
        let agent = self.inner.agent.clone();
        let url = format!("{}{}", self.inner.base_url, call.endpoint.path());
        let joined = tokio::task::spawn_blocking(move || {
            let result = blocking_get(&agent, &url, &params, cap);
            drop(slot);
            result
        })
        .await;
        match joined {
            Ok(Ok(raw)) => Ok(raw),
            Ok(Err(e)) => Err(self.transport_error(call, e)),
            Err(e) => Err(BinanceError::Network {
                endpoint: call.endpoint,
                host: self.host().to_owned(),
                symbol: call.symbol.clone(),
                detail: format!("HTTP worker failed: {e}"),
            }),
        }
    }

    /// Reports the response to the governor and turns it into a value or an error.
    fn interpret<T: DeserializeOwned>(
        &self,
        call: &Call,
        permit: &Permit,
        raw: RawResponse,
    ) -> Result<T, BinanceError> {
        let api_error = serde_json::from_slice::<ApiErrorBody>(&raw.body).ok();
        let meta = ResponseMeta {
            status: raw.status,
            used_weight_1m: raw.used_weight_1m,
            retry_after: raw.retry_after,
            banned_until_ms: api_error.as_ref().and_then(|e| banned_until_ms(&e.msg)),
        };
        let pause = self.inner.governor.observe(permit, &meta);
        let (endpoint, symbol) = (call.endpoint, call.symbol.clone());
        match raw.status {
            200..=299 => serde_json::from_slice(&raw.body).map_err(|e| BinanceError::Decode {
                endpoint,
                symbol,
                detail: format!("{e}; body starts {}", snippet(&raw.body)),
            }),
            429 => Err(BinanceError::RateLimited {
                endpoint,
                symbol,
                retry_after: pause.unwrap_or_default(),
            }),
            418 => Err(BinanceError::Banned {
                endpoint,
                symbol,
                retry_after: pause.unwrap_or_default(),
                msg: api_error.map_or_else(|| snippet(&raw.body), |e| e.msg),
            }),
            code => {
                let msg = api_error
                    .as_ref()
                    .map_or_else(|| snippet(&raw.body), |e| e.msg.clone());
                Err(BinanceError::Status {
                    endpoint,
                    symbol,
                    code,
                    binance_code: api_error.as_ref().map(|e| e.code),
                    // A 451 says nothing useful itself; say what to do.
                    msg: if code == 451 {
                        format!("{}: {msg}", super::error::REGION_REFUSED)
                    } else {
                        msg
                    },
                })
            }
        }
    }

    /// The base URL's host and port (`fapi.binance.com`), for errors.
    fn host(&self) -> &str {
        let base = &self.inner.base_url;
        let rest = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }

    /// Maps a ureq failure (no HTTP answer) to Timeout or Network.
    fn transport_error(&self, call: &Call, e: ureq::Error) -> BinanceError {
        let timed_out = match &e {
            ureq::Error::Timeout(_) => true,
            ureq::Error::Io(io) => matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        };
        if timed_out {
            BinanceError::Timeout {
                endpoint: call.endpoint,
                host: self.host().to_owned(),
                symbol: call.symbol.clone(),
                after: self.inner.timeout,
            }
        } else {
            BinanceError::Network {
                endpoint: call.endpoint,
                host: self.host().to_owned(),
                symbol: call.symbol.clone(),
                detail: e.to_string(),
            }
        }
    }
}

/// The host of an `http(s)://host[:port]/…` URL (brackets kept off IPv6).
pub(crate) fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// The blocking part: request, headers, body (at most `cap` bytes, decompressed).
fn blocking_get(
    agent: &ureq::Agent,
    url: &str,
    params: &[(&'static str, String)],
    cap: usize,
) -> Result<RawResponse, ureq::Error> {
    let query = params.iter().map(|(k, v)| (*k, v.as_str()));
    let mut response = agent.get(url).query_pairs(query).call()?;
    let status = response.status().as_u16();
    let headers = response.headers();
    let used_weight_1m = header_str(headers, "x-mbx-used-weight-1m").and_then(|v| v.parse().ok());
    let retry_after = header_str(headers, "retry-after").and_then(parse_retry_after);
    let reader = response.body_mut().with_config().limit(cap as u64).reader();
    let body = body::read_capped(reader, cap)?;
    Ok(RawResponse {
        status,
        used_weight_1m,
        retry_after,
        body,
    })
}

/// A header's value as trimmed text.
fn header_str<'a>(headers: &'a ureq::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Binance and is ignored).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER))
}

/// The `<ms>` of Binance's "IP banned until <ms>" message (-1003).
fn banned_until_ms(msg: &str) -> Option<u64> {
    let rest = &msg[msg.find("until")? + "until".len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The start of a body for error messages, lossy UTF-8.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_SNIPPET)]);
    format!("{:?}", text.trim())
}

/// A sweep task that panicked or was aborted.
fn task_error(symbol: Option<String>, e: &tokio::task::JoinError) -> BinanceError {
    let detail = if e.is_panic() {
        "task panicked".to_owned()
    } else {
        "task cancelled".to_owned()
    };
    BinanceError::Task { symbol, detail }
}

/// Fills in the symbol of a task error (the join error does not know it).
fn with_task_symbol(e: BinanceError, name: &str) -> BinanceError {
    match e {
        BinanceError::Task {
            symbol: None,
            detail,
        } => BinanceError::Task {
            symbol: Some(name.to_owned()),
            detail,
        },
        other => other,
    }
}

mod body;
#[cfg(test)]
mod tests;

pub use body::{limits as body_limits, BodyLimits};
