//! Scripted market changes ("tapes") replayed on a background thread.

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::market::{Candle, MarketHandle, SymbolState};

/// One change to apply to a symbol.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// New mark price, index price and funding rate (`None`: no funding, sent as `""`).
    Mark {
        /// Mark price.
        price: f64,
        /// Index price.
        index: f64,
        /// Funding rate as a decimal.
        funding: Option<f64>,
    },
    /// New last traded price. The 24 h open stays put, so the 24 h price
    /// change moves by the same amount.
    Last {
        /// Last price.
        price: f64,
    },
    /// New 24 h quote volume (USDT).
    QuoteVolume(f64),
    /// New open interest (contracts).
    OpenInterest(f64),
    /// New hourly candles, oldest first (replacing all previous ones).
    Candles(Vec<Candle>),
}

impl Change {
    /// Applies this change to `state`.
    pub fn apply(self, state: &mut SymbolState) {
        match self {
            Change::Mark {
                price,
                index,
                funding,
            } => {
                state.mark_price = price;
                state.index_price = index;
                state.funding_rate = funding;
            }
            Change::Last { price } => {
                state.price_change += price - state.last_price;
                state.last_price = price;
            }
            Change::QuoteVolume(volume) => state.quote_volume_24h = volume,
            Change::OpenInterest(contracts) => state.open_interest = contracts,
            Change::Candles(candles) => state.candles = candles,
        }
    }
}

/// A change scheduled `after` the start of [`MarketHandle::play`].
#[derive(Debug, Clone, PartialEq)]
pub struct TapeStep {
    /// Delay from the call to `play` until the change applies.
    pub after: Duration,
    /// Symbol to change (steps for unknown symbols are skipped).
    pub symbol: String,
    /// What changes.
    pub change: Change,
}

/// The thread replaying a tape.
#[derive(Debug)]
pub struct TapeHandle {
    thread: JoinHandle<usize>,
}

impl TapeHandle {
    /// Waits until every step was applied; returns how many steps found
    /// their symbol.
    pub fn join(self) -> usize {
        match self.thread.join() {
            Ok(applied) => applied,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// True once the last step was applied.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }
}

impl MarketHandle {
    /// Replays `tape` on a background thread: each step is applied at
    /// `after` since this call, in order of `after` (steps with the same
    /// delay keep their order).
    pub fn play(&self, mut tape: Vec<TapeStep>) -> TapeHandle {
        let start = Instant::now();
        tape.sort_by_key(|step| step.after);
        let market = self.clone();
        let thread = thread::spawn(move || {
            let mut applied = 0;
            for step in tape {
                let due = start + step.after;
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                let TapeStep { symbol, change, .. } = step;
                if market.update(&symbol, |state| change.apply(state)) {
                    applied += 1;
                }
            }
            applied
        });
        TapeHandle { thread }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::market::Market;

    #[test]
    fn plays_steps_in_order() {
        let market = MarketHandle::new(Market::synthetic(2));
        let step = |ms, change| TapeStep {
            after: Duration::from_millis(ms),
            symbol: "BTCUSDT".into(),
            change,
        };
        let before = market.get("BTCUSDT").map(|s| s.price_change);
        let handle = market.play(vec![
            step(30, Change::Last { price: 70_000.0 }),
            step(10, Change::Last { price: 66_000.0 }),
            step(20, Change::QuoteVolume(1.0)),
            step(
                20,
                Change::Mark {
                    price: 1.0,
                    index: 2.0,
                    funding: None,
                },
            ),
            TapeStep {
                after: Duration::ZERO,
                symbol: "NOPE".into(),
                change: Change::OpenInterest(1.0),
            },
        ]);
        assert_eq!(handle.join(), 4);
        let btc = market.get("BTCUSDT").expect("BTCUSDT");
        assert_eq!(btc.last_price, 70_000.0);
        assert_eq!(Some(btc.price_change), before.map(|c| c + 5_000.0));
        assert_eq!(btc.quote_volume_24h, 1.0);
        assert_eq!(
            (btc.mark_price, btc.index_price, btc.funding_rate),
            (1.0, 2.0, None)
        );
    }
}
