//! The request weight of each Binance call: pure, per the table in
//! `docs/binance.md`.

use crate::binance::endpoint::Endpoint;

/// Request weight of one call, per the table in `docs/binance.md`.
///
/// `params` are the query parameters; a `symbol` parameter makes the
/// all-symbol endpoints cheap, and `limit` sets the klines weight.
pub fn weight_of(endpoint: Endpoint, params: &[(&str, &str)]) -> u32 {
    let has_symbol = params.iter().any(|(k, _)| *k == "symbol");
    match endpoint {
        Endpoint::ExchangeInfo | Endpoint::OpenInterest => 1,
        Endpoint::Ticker24h => single_or_all(has_symbol, 40),
        Endpoint::TickerPrice => single_or_all(has_symbol, 2),
        Endpoint::PremiumIndex => single_or_all(has_symbol, 10),
        Endpoint::Klines => klines_weight(params),
    }
}

/// Weight 1 with `symbol`, `all` without.
fn single_or_all(has_symbol: bool, all: u32) -> u32 {
    if has_symbol {
        1
    } else {
        all
    }
}

/// Klines weight by `limit` (Binance's default limit is 500). An unparsable
/// limit is charged the maximum, erring on the safe side.
fn klines_weight(params: &[(&str, &str)]) -> u32 {
    let limit = match params.iter().find(|(k, _)| *k == "limit") {
        None => 500,
        Some((_, v)) => v.parse::<u32>().unwrap_or(u32::MAX),
    };
    match limit {
        0..=99 => 1,
        100..=499 => 2,
        500..=1000 => 5,
        _ => 10,
    }
}
