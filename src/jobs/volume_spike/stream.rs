//! The stream-driven side of volume_spike, pure: what the kline stream has
//! shown of each symbol's hours, the spike rule of [`rules`] applied to
//! every update of the open hour (the update is the "current candle"), and
//! which symbols the stream cannot answer for (never seen, silent, or no
//! closed previous hour), so a 5-minute slot sweeps only those over REST.
//!
//! No I/O: the caller feeds events and the ledger's answer, and posts.
//! The rules (ledger minute, which slot reads what) are in
//! docs/jobs.md "From the kline streams".

use std::collections::BTreeMap;

use super::rules::{self, AlertType, Candle, Rules};
use crate::binance::klines::KlineEvent;

const HOUR_MS: u64 = 3_600_000;
/// Closed hours kept per symbol: the hh:00 check needs the two last ones.
const CLOSED_KEPT: usize = 3;

/// What the stream showed of one symbol.
#[derive(Debug, Clone, Default)]
struct Tape {
    /// Closed hours by open time (from `k.x` events or REST): final volumes.
    closed: BTreeMap<u64, Candle>,
    /// The open hour as of the last update.
    open: Option<Candle>,
    /// Local time of the last update, ms: silence is measured from it.
    last_update_ms: u64,
}

impl Tape {
    /// Keeps a closed hour, forgetting the oldest past [`CLOSED_KEPT`].
    fn keep_closed(&mut self, candle: Candle) {
        self.closed.insert(candle.open_time_ms, candle);
        while self.closed.len() > CLOSED_KEPT {
            self.closed.pop_first();
        }
    }

    /// Whether the stream has been silent for `silence_ms` at `now_ms`.
    fn silent(&self, now_ms: u64, silence_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_update_ms) >= silence_ms
    }
}

/// A spike seen on the stream, to be checked against the ledger and posted.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    /// Symbol.
    pub symbol: String,
    /// The hour as of the update that crossed.
    pub current: Candle,
    /// The closed hour before it.
    pub previous: Candle,
    /// Binance's event time of that update, ms: where latency starts.
    pub event_time_ms: u64,
}

/// Every symbol's tape and the thresholds.
#[derive(Debug, Clone)]
pub struct StreamDetector {
    /// Thresholds, shared with the sweep.
    rules: Rules,
    /// Symbol → tape.
    tapes: BTreeMap<String, Tape>,
}

fn candle_of(event: &KlineEvent) -> Candle {
    Candle {
        open_time_ms: event.open_time_ms,
        close_time_ms: event.close_time_ms,
        open: event.open,
        close: event.close,
        quote_volume: event.quote_volume,
    }
}

/// The start of the hour holding `ms`.
pub fn hour_of(ms: u64) -> u64 {
    ms - ms % HOUR_MS
}

/// The minute recorded in the ledger for a spike the stream saw at `now_ms`:
/// the 5-minute slot the sweep would have seen it at (14:17 → 20, 14:21 →
/// 25), so HALF and FULL updates follow the same rule in both modes. A
/// spike after :55 counts as :55 (the hour is over before the next slot,
/// and a FULL_UPDATE minutes later would repeat it).
pub fn stream_alert_minute(now_ms: u64) -> u32 {
    let into_hour = now_ms % HOUR_MS;
    let slot = into_hour.div_ceil(300_000) * 5;
    (slot as u32).clamp(5, 55)
}

impl StreamDetector {
    /// An empty detector.
    pub fn new(rules: Rules) -> StreamDetector {
        StreamDetector {
            rules,
            tapes: BTreeMap::new(),
        }
    }

    /// Takes one update received at local `now_ms`; returns a crossing when
    /// the spike rule holds and `alerted(symbol, hour)` says the ledger has
    /// none for that hour yet.
    ///
    /// A closed candle (`k.x`) is checked too (the last trades of an hour
    /// may cross) and then kept as the previous hour of the next one.
    pub fn on_event(
        &mut self,
        event: &KlineEvent,
        now_ms: u64,
        alerted: impl Fn(&str, u64) -> bool,
    ) -> Option<Crossing> {
        // Looked up before inserting: the symbol is copied once per
        // symbol, not on every update.
        if !self.tapes.contains_key(&event.symbol) {
            self.tapes.insert(event.symbol.clone(), Tape::default());
        }
        let tape = self.tapes.get_mut(&event.symbol)?;
        tape.last_update_ms = now_ms;
        let current = candle_of(event);
        if event.closed {
            tape.keep_closed(current);
            if tape
                .open
                .is_some_and(|o| o.open_time_ms <= current.open_time_ms)
            {
                tape.open = None;
            }
        } else if tape
            .open
            .is_none_or(|o| o.open_time_ms <= current.open_time_ms)
        {
            tape.open = Some(current);
        }
        let previous = *tape
            .closed
            .get(&current.open_time_ms.checked_sub(HOUR_MS)?)?;
        // The rule is plain arithmetic; the ledger look-up builds a key and
        // takes a lock, so it is asked only for the rare update that crosses.
        if rules::decide(&current, &previous, 5, None, &self.rules) != Some(AlertType::Spike)
            || alerted(&event.symbol, current.open_time_ms)
        {
            return None;
        }
        Some(Crossing {
            symbol: event.symbol.clone(),
            current,
            previous,
            event_time_ms: event.event_time_ms,
        })
    }

    /// Records a closed hour read over REST (at start or after a gap).
    pub fn seed_closed(&mut self, symbol: &str, candle: Candle) {
        self.tapes
            .entry(symbol.to_string())
            .or_default()
            .keep_closed(candle);
    }

    /// Of `symbols`, those whose closed previous hour (for the hour holding
    /// `now_ms`) is unknown: they need a REST read before the stream can
    /// decide for them.
    pub fn missing_previous<'a>(
        &self,
        symbols: impl IntoIterator<Item = &'a String>,
        now_ms: u64,
    ) -> Vec<String> {
        let previous_hour = hour_of(now_ms).saturating_sub(HOUR_MS);
        symbols
            .into_iter()
            .filter(|s| {
                self.tapes
                    .get(*s)
                    .is_none_or(|t| !t.closed.contains_key(&previous_hour))
            })
            .cloned()
            .collect()
    }

    /// The (current, previous) candles for the slot at `now_ms`, `minute`
    /// past the hour, as [`rules::select`] would pick them from REST: at
    /// hh:00 the two last closed hours, otherwise the open hour and the one
    /// before. `None` when the stream cannot answer: the symbol was silent
    /// for `silence_ms` or more, or a candle is missing. Such symbols are
    /// swept over REST for this slot.
    pub fn slot_candles(
        &self,
        symbol: &str,
        now_ms: u64,
        minute: u32,
        silence_ms: u64,
    ) -> Option<(Candle, Candle)> {
        let tape = self.tapes.get(symbol)?;
        if tape.silent(now_ms, silence_ms) {
            return None;
        }
        let hour = hour_of(now_ms);
        if minute == 0 {
            let current = tape.closed.get(&hour.checked_sub(HOUR_MS)?)?;
            let previous = tape.closed.get(&hour.checked_sub(2 * HOUR_MS)?)?;
            Some((*current, *previous))
        } else {
            let current = tape.open.filter(|o| o.open_time_ms == hour)?;
            let previous = tape.closed.get(&hour.checked_sub(HOUR_MS)?)?;
            Some((current, *previous))
        }
    }

    /// How many of `symbols` are in a gap at `now_ms`: never updated, or
    /// silent for `silence_ms` or more (as [`Self::slot_candles`] sees it).
    pub fn silent_count<'a>(
        &self,
        symbols: impl IntoIterator<Item = &'a String>,
        now_ms: u64,
        silence_ms: u64,
    ) -> usize {
        symbols
            .into_iter()
            .filter(|s| {
                self.tapes
                    .get(*s)
                    .is_none_or(|t| t.silent(now_ms, silence_ms))
            })
            .count()
    }

    /// Marks `symbols` silent (their connection went down): slots sweep
    /// them over REST until their next update.
    pub fn mark_silent<'a>(&mut self, symbols: impl IntoIterator<Item = &'a String>) {
        for symbol in symbols {
            if let Some(tape) = self.tapes.get_mut(symbol) {
                tape.last_update_ms = 0;
            }
        }
    }

    /// Forgets symbols no longer in the universe.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.tapes.retain(|symbol, _| keep(symbol));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H14: u64 = 1_764_770_400_000; // 2025-12-03T14:00:00Z

    fn event(symbol: &str, hour: u64, volume: f64, closed: bool, at: u64) -> KlineEvent {
        KlineEvent {
            event_time_ms: at,
            symbol: symbol.into(),
            open_time_ms: hour,
            close_time_ms: hour + HOUR_MS - 1,
            open: 100.0,
            close: 101.0,
            quote_volume: volume,
            closed,
        }
    }

    fn never(_: &str, _: u64) -> bool {
        false
    }

    #[test]
    fn a_crossing_fires_on_the_update_that_crosses_and_only_there() {
        let mut d = StreamDetector::new(Rules::default());
        // The 13:00 hour closes at 10 M on the stream.
        assert_eq!(
            d.on_event(&event("XUSDT", H14 - HOUR_MS, 10e6, true, H14), H14, never),
            None
        );
        let t = H14 + 5 * 60_000;
        assert_eq!(
            d.on_event(&event("XUSDT", H14, 29.9e6, false, t), t, never),
            None
        );
        let crossing = d
            .on_event(&event("XUSDT", H14, 30e6, false, t + 250), t + 260, never)
            .expect("3.0× and 30 M");
        assert_eq!(crossing.current.quote_volume, 30e6);
        assert_eq!(crossing.previous.quote_volume, 10e6);
        assert_eq!(crossing.event_time_ms, t + 250);
        // Once the ledger has it, later updates are quiet.
        let ledger = |s: &str, h: u64| s == "XUSDT" && h == H14;
        assert_eq!(
            d.on_event(&event("XUSDT", H14, 31e6, false, t + 500), t + 510, ledger),
            None
        );
    }

    #[test]
    fn quiet_tapes_and_small_volumes_never_fire() {
        let mut d = StreamDetector::new(Rules::default());
        d.seed_closed(
            "QUSDT",
            Candle {
                open_time_ms: H14 - HOUR_MS,
                close_time_ms: H14 - 1,
                open: 1.0,
                close: 1.0,
                quote_volume: 0.5e6,
            },
        );
        for i in 0..14_400u64 {
            // An hour at 4 updates a second, growing to 2.9× / 1.45 M.
            let volume = 1.45e6 * (i as f64 / 14_400.0);
            let at = H14 + i * 250;
            assert_eq!(
                d.on_event(&event("QUSDT", H14, volume, false, at), at, never),
                None
            );
        }
    }

    #[test]
    fn without_the_previous_hour_the_stream_waits_for_rest() {
        let mut d = StreamDetector::new(Rules::default());
        let t = H14 + 60_000;
        assert_eq!(
            d.on_event(&event("NUSDT", H14, 90e6, false, t), t, never),
            None
        );
        let universe = vec!["NUSDT".to_string()];
        assert_eq!(d.missing_previous(&universe, t), universe);
        d.seed_closed(
            "NUSDT",
            Candle {
                open_time_ms: H14 - HOUR_MS,
                close_time_ms: H14 - 1,
                open: 1.0,
                close: 1.0,
                quote_volume: 20e6,
            },
        );
        assert!(d.missing_previous(&universe, t).is_empty());
        assert!(d
            .on_event(&event("NUSDT", H14, 90e6, false, t + 250), t + 250, never)
            .is_some());
    }

    #[test]
    fn slots_read_the_stream_and_fall_back_when_it_is_silent() {
        let mut d = StreamDetector::new(Rules::default());
        let silence = 30_000;
        d.on_event(
            &event("AUSDT", H14 - 2 * HOUR_MS, 5e6, true, H14 - HOUR_MS),
            H14 - HOUR_MS,
            never,
        );
        d.on_event(&event("AUSDT", H14 - HOUR_MS, 10e6, true, H14), H14, never);
        let t30 = H14 + 30 * 60_000;
        d.on_event(
            &event("AUSDT", H14, 40e6, false, t30 - 100),
            t30 - 100,
            never,
        );
        let (current, previous) = d.slot_candles("AUSDT", t30, 30, silence).expect("fresh");
        assert_eq!((current.quote_volume, previous.quote_volume), (40e6, 10e6));
        // Silent for the silence limit: the slot sweeps it over REST.
        assert_eq!(d.slot_candles("AUSDT", t30 + silence, 35, silence), None);
        assert_eq!(
            d.slot_candles("BUSDT", t30, 30, silence),
            None,
            "never seen"
        );
        let both = ["AUSDT".to_string(), "BUSDT".to_string()];
        assert_eq!(d.silent_count(&both, t30, silence), 1, "BUSDT never seen");
        assert_eq!(d.silent_count(&both, t30 + silence, silence), 2);
        // At 15:00 the closed 14:00 hour against 13:00.
        let h15 = H14 + HOUR_MS;
        d.on_event(&event("AUSDT", H14, 45e6, true, h15 + 20), h15 + 30, never);
        let (current, previous) = d
            .slot_candles("AUSDT", h15 + 40, 0, silence)
            .expect("closed");
        assert_eq!((current.quote_volume, previous.quote_volume), (45e6, 10e6));
        // Before the closed event arrived, hh:00 cannot be answered.
        let mut late = StreamDetector::new(Rules::default());
        late.on_event(
            &event("AUSDT", H14, 45e6, false, h15 - 100),
            h15 - 100,
            never,
        );
        assert_eq!(late.slot_candles("AUSDT", h15 + 10, 0, silence), None);
    }

    #[test]
    fn the_stream_records_the_slot_the_sweep_would_have_seen() {
        let at = |m: u64, s: u64| H14 + m * 60_000 + s * 1000;
        assert_eq!(stream_alert_minute(at(17, 0)), 20);
        assert_eq!(stream_alert_minute(at(20, 0)), 20);
        assert_eq!(stream_alert_minute(at(20, 1)), 25);
        assert_eq!(stream_alert_minute(at(0, 3)), 5);
        assert_eq!(stream_alert_minute(at(57, 0)), 55);
        // 14:17 → HALF at :30; 14:21 → none; 14:57 → no FULL at 15:00.
        let rules = Rules::default();
        let c = Candle {
            open_time_ms: H14,
            close_time_ms: H14 + HOUR_MS - 1,
            open: 1.0,
            close: 1.0,
            quote_volume: 1.0,
        };
        assert_eq!(
            rules::decide(&c, &c, 30, Some(stream_alert_minute(at(17, 0))), &rules),
            Some(AlertType::HalfUpdate)
        );
        assert_eq!(
            rules::decide(&c, &c, 30, Some(stream_alert_minute(at(21, 0))), &rules),
            None
        );
        assert_eq!(
            rules::decide(&c, &c, 0, Some(stream_alert_minute(at(57, 0))), &rules),
            None
        );
    }
}
