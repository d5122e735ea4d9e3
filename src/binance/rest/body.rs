//! How much of a Binance answer is read, and how much of all answers at once.
//!
//! Each endpoint has a cap sized to its real answer with room to grow
//! (`exchangeInfo`, the largest, is about 1 MB for ~650 symbols); the cap
//! counts decompressed bytes (ureq's limit sits after its gzip decoder), so a
//! gzip bomb stops at the cap as an endless body does. A call reserves its
//! endpoint's cap from one shared budget before it starts and gives it back
//! when its body is dropped, so the bodies in memory at once never exceed
//! [`MAX_IN_FLIGHT_BYTES`], however many calls run. The buffer grows as
//! bytes arrive, never beyond the cap.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::super::endpoint::Endpoint;

/// Answers cut at their cap since start (every client in the process).
static CUT: AtomicU64 = AtomicU64::new(0);

/// The body limits and what they did, for `/health` and `/metrics`.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BodyLimits {
    /// The largest cap (`exchangeInfo`).
    pub largest_cap_bytes: usize,
    /// The cap of a one-symbol answer.
    pub one_symbol_cap_bytes: usize,
    /// Body bytes all calls in flight may hold at once.
    pub in_flight_bytes: usize,
    /// Answers cut at their cap (a call that failed) since start.
    pub cut_total: u64,
}

/// The limits in force and how many answers they cut.
pub fn limits() -> BodyLimits {
    BodyLimits {
        largest_cap_bytes: cap(Endpoint::ExchangeInfo, true),
        one_symbol_cap_bytes: cap(Endpoint::OpenInterest, false),
        in_flight_bytes: MAX_IN_FLIGHT_BYTES,
        cut_total: CUT.load(Ordering::Relaxed),
    }
}

/// Body bytes all calls may hold at once.
pub(crate) const MAX_IN_FLIGHT_BYTES: usize = 8 * 1024 * 1024;
/// Budget unit: the budget semaphore counts KiB.
const UNIT: usize = 1024;
/// Bytes asked of the body per read.
const CHUNK: usize = 64 * 1024;

/// The largest body read from `endpoint`; `all_symbols` when no `symbol`
/// parameter narrows the answer to one.
pub(crate) fn cap(endpoint: Endpoint, all_symbols: bool) -> usize {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    match (endpoint, all_symbols) {
        // ~1 MB today (~1.5 KB per symbol).
        (Endpoint::ExchangeInfo, _) => 4 * MIB,
        // ~300 KB for every symbol.
        (Endpoint::Ticker24h, true) => 2 * MIB,
        // ~180 KB for every symbol.
        (Endpoint::PremiumIndex, true) => MIB,
        // ~55 KB for every symbol.
        (Endpoint::TickerPrice, true) => 512 * KIB,
        // 1,500 candles (the most Binance sends) are ~210 KB.
        (Endpoint::Klines, _) => MIB,
        // One symbol's ticker, price, premium index or open interest: < 1 KB.
        (Endpoint::Ticker24h | Endpoint::PremiumIndex | Endpoint::TickerPrice, false)
        | (Endpoint::OpenInterest, _) => 64 * KIB,
    }
}

/// Budget units (KiB) a body of up to `cap` bytes reserves.
pub(crate) fn units(cap: usize) -> u32 {
    u32::try_from(cap.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// Budget units in all.
pub(crate) fn budget_units() -> usize {
    MAX_IN_FLIGHT_BYTES / UNIT
}

/// Reads all of `reader` (ureq's limit is set one byte past `cap`, so the
/// overflow is seen and counted here) into a buffer that grows with what
/// arrives and never beyond `cap`.
pub(crate) fn read_capped(mut reader: impl Read, cap: usize) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut chunk = vec![0u8; CHUNK.min(cap + 1)];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(body),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // ureq refuses a `Content-Length` over the limit before reading.
            Err(e) if is_over_limit(&e) => return Err(cut(cap, e)),
            Err(e) => return Err(e),
        };
        if body.len() + n > cap {
            return Err(cut(
                cap,
                std::io::Error::other(format!("body larger than {cap} bytes")),
            ));
        }
        if body.capacity() - body.len() < n {
            let target = (body.capacity() * 2)
                .max(CHUNK)
                .min(cap)
                .max(body.len() + n);
            body.reserve_exact(target - body.len());
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

/// Whether `e` is ureq's "body larger than the limit".
fn is_over_limit(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
        .is_some_and(|inner| matches!(inner, ureq::Error::BodyExceedsLimit(_)))
}

/// Counts and logs an answer cut at `cap`; returns `error` for the caller.
fn cut(cap: usize, error: std::io::Error) -> std::io::Error {
    CUT.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(cap, "Binance answer larger than its cap; call failed");
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cap_fits_in_the_budget_and_exchange_info_is_the_largest() {
        let all = [
            Endpoint::ExchangeInfo,
            Endpoint::Ticker24h,
            Endpoint::TickerPrice,
            Endpoint::Klines,
            Endpoint::OpenInterest,
            Endpoint::PremiumIndex,
        ];
        for endpoint in all {
            for every in [true, false] {
                let c = cap(endpoint, every);
                assert!(c <= cap(Endpoint::ExchangeInfo, false), "{endpoint}");
                assert!(c < MAX_IN_FLIGHT_BYTES, "{endpoint}");
                assert!(units(c) as usize <= budget_units());
            }
        }
        assert!(cap(Endpoint::Ticker24h, false) < cap(Endpoint::Ticker24h, true));
    }

    #[test]
    fn reading_stops_past_the_cap_without_growing_beyond_it() {
        let small = read_capped(&b"[1,2,3]"[..], 100).expect("fits");
        assert_eq!(small, b"[1,2,3]");
        let endless = std::io::repeat(b'0');
        let err = read_capped(endless, 200_000).expect_err("endless body");
        assert!(err.to_string().contains("larger than 200000"), "{err}");
        let exact = vec![7u8; 300_000];
        let read = read_capped(&exact[..], 300_000).expect("exactly the cap");
        assert_eq!(read.len(), 300_000);
        assert!(read.capacity() <= 300_000, "{}", read.capacity());
    }
}
