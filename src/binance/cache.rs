//! The funding cache: the latest mark price, index price, funding rate, next
//! funding time, last price and 24 h quote volume of every symbol the stream
//! has seen, each part with the (local) time it was last updated.
//!
//! Frames are partial (only symbols that changed), so updates merge into the
//! cache and never replace it; a symbol that stops appearing keeps its last
//! values and ages, and its age is what makes it stale.
//!
//! The funding API serves from a prepared [`Snapshot`]: pre-serialised JSON
//! bytes for `/funding` and, per symbol, the bytes of its object up to (not
//! including) `ageSeconds`. A request is a lookup and a write, never a
//! re-serialisation of 600 symbols under the lock the stream writes through.
//!
//! Keeping `ageSeconds` honest: per-symbol answers (`/funding/{symbol}`,
//! `/funding/batch`) append `ageSeconds` at request time, so it is exact. The
//! all-symbols body carries ages as of its `generatedAt`; it is rebuilt after
//! applied frames (at most every [`REBUILD_MIN_GAP`]) and, when older than
//! [`REBUILD_MAX_AGE`], by the first reader that finds it so, so its ages
//! are never more than about a second behind, even when the stream is down.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use super::frames::{MarkValues, TickerValues, Update, Values};
use crate::clock::unix_ms;

/// The stream rebuilds the snapshot at most this often after frames.
pub const REBUILD_MIN_GAP: Duration = Duration::from_millis(250);
/// A snapshot older than this is rebuilt by the next reader.
pub const REBUILD_MAX_AGE: Duration = Duration::from_secs(1);

/// Everything known about one symbol. `None` means "never received" (or,
/// for funding rate and next funding time, "the contract has none").
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymbolData {
    /// Mark price, only ever from `markPriceUpdate`.
    pub mark_price: Option<f64>,
    /// Index price.
    pub index_price: Option<f64>,
    /// Funding rate as a decimal (0.0001 = 0.01 %); quarterlies have none.
    pub funding_rate: Option<f64>,
    /// Next funding time, ms since the epoch; quarterlies have none.
    pub next_funding_time: Option<u64>,
    /// Binance's event time of the last mark update, ms.
    pub mark_event_time: Option<u64>,
    /// Local receive time of the last mark update, ms: what ages and staleness use.
    pub mark_updated_ms: Option<u64>,
    /// Last traded price (ticker `c`).
    pub last_price: Option<f64>,
    /// 24 h quote volume (ticker `q`).
    pub quote_volume_24h: Option<f64>,
    /// 24 h price change in percent (ticker `P`).
    pub price_change_percent_24h: Option<f64>,
    /// Local receive time of the last ticker update, ms.
    pub ticker_updated_ms: Option<u64>,
    /// Open interest in USD (contracts × mark) from the open_interest job's
    /// latest sample; not part of the funding API.
    pub open_interest_usd: Option<f64>,
    /// When that sample was taken, ms.
    pub open_interest_ms: Option<u64>,
}

impl SymbolData {
    /// Whether the funding part (from `markPriceUpdate`) has arrived: only
    /// such symbols are served by the funding API.
    pub fn has_funding(&self) -> bool {
        self.mark_updated_ms.is_some()
    }

    /// Merges a mark update: fields present in the update win, absent or
    /// unparsable ones keep their last value. Funding rate and next funding
    /// time are taken as sent, since `None` there means "this contract has none".
    fn merge_mark(&mut self, u: &MarkValues, event_time: Option<u64>, now_ms: u64) {
        if u.mark_price.is_some() {
            self.mark_price = u.mark_price;
        }
        if u.index_price.is_some() {
            self.index_price = u.index_price;
        }
        self.funding_rate = u.funding_rate;
        self.next_funding_time = u.next_funding_time;
        if event_time.is_some() {
            self.mark_event_time = event_time;
        }
        self.mark_updated_ms = Some(now_ms);
    }

    fn merge_ticker(&mut self, u: &TickerValues, now_ms: u64) {
        if u.last_price.is_some() {
            self.last_price = u.last_price;
        }
        if u.quote_volume.is_some() {
            self.quote_volume_24h = u.quote_volume;
        }
        if u.price_change_percent.is_some() {
            self.price_change_percent_24h = u.price_change_percent;
        }
        self.ticker_updated_ms = Some(now_ms);
    }
}

/// One symbol's prepared funding object.
#[derive(Debug, Clone)]
pub struct PreparedEntry {
    /// `{"symbol":…,"updatedAt":S` — the object without `ageSeconds` and the
    /// closing brace, which [`PreparedEntry::write_with_age`] adds.
    /// `updatedAt` is epoch seconds with milliseconds (`1764928800.123`),
    /// the old funding API's float.
    pub prefix: Arc<[u8]>,
    /// Local time of the last mark update, ms.
    pub updated_ms: u64,
    /// Whether the contract has a funding rate: quarterlies do not, and the
    /// old `/funding/{symbol}` answered 404 for them.
    pub has_funding_rate: bool,
}

impl PreparedEntry {
    /// Seconds between the update and `now_ms`, millisecond precision.
    pub fn age_seconds(&self, now_ms: u64) -> f64 {
        age_seconds(self.updated_ms, now_ms)
    }

    /// Appends the complete object, `ageSeconds` computed for `now_ms`.
    pub fn write_with_age(&self, out: &mut Vec<u8>, now_ms: u64) {
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(b",\"ageSeconds\":");
        push_age(out, self.updated_ms, now_ms);
        out.push(b'}');
    }
}

/// The API's prepared view of the cache at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When it was built, ms.
    pub generated_ms: u64,
    /// The `/funding` body: `{"data":[…],"count":N,"generatedAt":ms}`.
    pub all: Arc<[u8]>,
    /// Per-symbol objects, by upper-case symbol.
    pub by_symbol: BTreeMap<String, PreparedEntry>,
    /// Oldest mark update among served symbols, ms.
    pub oldest_ms: Option<u64>,
    /// Newest mark update among served symbols, ms.
    pub newest_ms: Option<u64>,
}

/// Shared cache of every symbol; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FundingCache {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Symbol → data. A BTreeMap so snapshots come out sorted for free.
    data: RwLock<BTreeMap<String, SymbolData>>,
    /// The current prepared snapshot; swapped whole, read by cloning the Arc.
    snapshot: RwLock<Arc<Snapshot>>,
    /// Serialises rebuilds so concurrent readers do not all rebuild at once.
    rebuilding: Mutex<()>,
    /// Set when data changed since the last rebuild.
    dirty: AtomicBool,
    /// `generated_ms` of the current snapshot (0 before the first), readable
    /// without taking the snapshot lock.
    generated_ms: AtomicU64,
    /// Symbols evicted since start (delisted, or silent past the bound).
    evicted_total: AtomicU64,
}

fn age_seconds(updated_ms: u64, now_ms: u64) -> f64 {
    now_ms.saturating_sub(updated_ms) as f64 / 1000.0
}

/// Writes an age in seconds with millisecond precision (`12.345`), computed
/// on integers so no float formatting sits on the request path.
fn push_age(out: &mut Vec<u8>, updated_ms: u64, now_ms: u64) {
    let ms = now_ms.saturating_sub(updated_ms);
    let mut s = String::with_capacity(16);
    let _ = write!(s, "{}.{:03}", ms / 1000, ms % 1000);
    out.extend_from_slice(s.as_bytes());
}

/// Writes a JSON number or `null`.
fn push_opt_f64(out: &mut String, v: Option<f64>) {
    match v {
        // Display never uses an exponent and round-trips; the frame parser
        // admits only finite values.
        Some(v) if v.is_finite() => {
            let _ = write!(out, "{v}");
        }
        _ => out.push_str("null"),
    }
}

fn push_opt_u64(out: &mut String, v: Option<u64>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

/// The object prefix for one symbol (see [`PreparedEntry::prefix`]).
/// The symbol is written raw: the frame parser admits only `[A-Z0-9_-]`.
fn prefix(symbol: &str, d: &SymbolData, updated_ms: u64) -> String {
    let mut s = String::with_capacity(160);
    s.push_str("{\"symbol\":\"");
    s.push_str(symbol);
    s.push_str("\",\"markPrice\":");
    push_opt_f64(&mut s, d.mark_price);
    s.push_str(",\"fundingRate\":");
    push_opt_f64(&mut s, d.funding_rate);
    s.push_str(",\"nextFundingTime\":");
    push_opt_u64(&mut s, d.next_funding_time);
    s.push_str(",\"indexPrice\":");
    push_opt_f64(&mut s, d.index_price);
    s.push_str(",\"updatedAt\":");
    let _ = write!(s, "{}.{:03}", updated_ms / 1000, updated_ms % 1000);
    s
}

impl FundingCache {
    /// An empty cache.
    pub fn new() -> FundingCache {
        FundingCache::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, SymbolData>> {
        // A panic while holding the lock cannot leave a half-merged symbol
        // that matters more than losing every price: keep serving.
        self.inner
            .data
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Merges `updates` received at `now_ms`; returns how many were applied.
    pub fn apply(&self, updates: &[Update], now_ms: u64) -> usize {
        if updates.is_empty() {
            return 0;
        }
        let mut data = self
            .inner
            .data
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for u in updates {
            let entry = match data.get_mut(u.symbol.as_str()) {
                Some(entry) => entry,
                None => data.entry(u.symbol.clone()).or_default(),
            };
            match &u.values {
                Values::Mark(m) => entry.merge_mark(m, u.event_time, now_ms),
                Values::Ticker(t) => entry.merge_ticker(t, now_ms),
            }
        }
        self.inner.dirty.store(true, Ordering::Release);
        updates.len()
    }

    /// Records the open_interest job's latest sample of `symbol` (USD value,
    /// taken at `at_ms`) for the dashboard. Does not mark the funding
    /// snapshot dirty: the funding API does not carry open interest.
    pub fn set_open_interest(&self, symbol: &str, usd: f64, at_ms: u64) {
        let mut data = self
            .inner
            .data
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = data.get_mut(symbol) {
            entry.open_interest_usd = Some(usd);
            entry.open_interest_ms = Some(at_ms);
        }
    }

    /// Everything known about `symbol` (exact, upper-case).
    pub fn get(&self, symbol: &str) -> Option<SymbolData> {
        self.read().get(symbol).cloned()
    }

    /// Mark price of `symbol`, from `markPriceUpdate` only.
    pub fn mark_price(&self, symbol: &str) -> Option<f64> {
        self.read().get(symbol).and_then(|d| d.mark_price)
    }

    /// Funding rate of `symbol` (`None` for unknown symbols and quarterlies).
    pub fn funding_rate(&self, symbol: &str) -> Option<f64> {
        self.read().get(symbol).and_then(|d| d.funding_rate)
    }

    /// Last traded price of `symbol`.
    pub fn last_price(&self, symbol: &str) -> Option<f64> {
        self.read().get(symbol).and_then(|d| d.last_price)
    }

    /// A copy of every symbol's data, sorted by symbol.
    pub fn all(&self) -> Vec<(String, SymbolData)> {
        self.read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Symbols with any data (funding or ticker).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether nothing has arrived yet.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Symbols with funding data (what the funding API serves).
    pub fn funding_len(&self) -> usize {
        self.read().values().filter(|d| d.has_funding()).count()
    }

    /// Removes symbols that left Binance's listing or fell silent, and
    /// returns them: a symbol not in `listed` (when known) once it has had
    /// no update for `delisted_after`, and any symbol silent for
    /// `silent_after`. Without this a delisted or expired contract would sit
    /// in the cache forever, ageing, and keep funding_health failing.
    pub fn evict(
        &self,
        listed: Option<&BTreeSet<String>>,
        delisted_after: Duration,
        silent_after: Duration,
        now: SystemTime,
    ) -> Vec<String> {
        let now_ms = unix_ms(now);
        let quiet_for = |d: &SymbolData| {
            let last = d
                .mark_updated_ms
                .max(d.ticker_updated_ms)
                .unwrap_or_default();
            Duration::from_millis(now_ms.saturating_sub(last))
        };
        let mut data = self
            .inner
            .data
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let gone: Vec<String> = data
            .iter()
            .filter(|(symbol, d)| {
                let quiet = quiet_for(d);
                let unlisted = listed.is_some_and(|l| !l.contains(symbol.as_str()));
                quiet > silent_after || (unlisted && quiet > delisted_after)
            })
            .map(|(symbol, _)| symbol.clone())
            .collect();
        for symbol in &gone {
            data.remove(symbol);
        }
        drop(data);
        self.inner
            .evicted_total
            .fetch_add(gone.len() as u64, Ordering::Relaxed);
        if !gone.is_empty() {
            // Served no more from this instant, not from the next frame's rebuild.
            self.rebuild(now_ms);
        }
        gone
    }

    /// Symbols evicted since start ([`FundingCache::evict`]).
    pub fn evicted_total(&self) -> u64 {
        self.inner.evicted_total.load(Ordering::Relaxed)
    }

    /// Age of the least recently updated funding entry among `listed`
    /// symbols (every symbol when `None`) at `now`: a symbol Binance no
    /// longer lists is not a stale feed.
    pub fn oldest_listed_age(
        &self,
        listed: Option<&BTreeSet<String>>,
        now: SystemTime,
    ) -> Option<Duration> {
        let now_ms = unix_ms(now);
        self.read()
            .iter()
            .filter(|(symbol, _)| listed.is_none_or(|l| l.contains(symbol.as_str())))
            .filter_map(|(_, d)| d.mark_updated_ms)
            .min()
            .map(|ms| Duration::from_millis(now_ms.saturating_sub(ms)))
    }

    /// Age of the least recently updated funding entry at `now`.
    pub fn oldest_age(&self, now: SystemTime) -> Option<Duration> {
        self.oldest_listed_age(None, now)
    }

    /// Age of the most recently updated funding entry at `now`.
    pub fn newest_age(&self, now: SystemTime) -> Option<Duration> {
        let now_ms = unix_ms(now);
        self.read()
            .values()
            .filter_map(|d| d.mark_updated_ms)
            .max()
            .map(|ms| Duration::from_millis(now_ms.saturating_sub(ms)))
    }

    /// Rebuilds the snapshot now, as of `now_ms`.
    pub fn rebuild(&self, now_ms: u64) {
        let _one_at_a_time = self
            .inner
            .rebuilding
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.rebuild_locked(now_ms);
    }

    /// The rebuild itself; the caller holds `rebuilding`.
    fn rebuild_locked(&self, now_ms: u64) {
        self.inner.dirty.store(false, Ordering::Release);
        let snapshot = {
            let data = self.read();
            build_snapshot(&data, now_ms)
        };
        *self
            .inner
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(snapshot);
        self.inner.generated_ms.store(now_ms, Ordering::Release);
    }

    /// The stream's call after applying a frame: rebuilds when data changed
    /// and the last rebuild is at least [`REBUILD_MIN_GAP`] old, or when the
    /// snapshot is older than [`REBUILD_MAX_AGE`]. Returns whether it rebuilt.
    pub fn rebuild_if_due(&self, now_ms: u64) -> bool {
        let last = self.inner.generated_ms.load(Ordering::Acquire);
        let since = now_ms.saturating_sub(last);
        let dirty = self.inner.dirty.load(Ordering::Acquire);
        let due = (dirty && since >= REBUILD_MIN_GAP.as_millis() as u64)
            || since >= REBUILD_MAX_AGE.as_millis() as u64;
        if due {
            self.rebuild(now_ms);
        }
        due
    }

    /// The snapshot to serve at `now_ms`, rebuilt first when older than
    /// [`REBUILD_MAX_AGE`] (only one reader rebuilds; others serve the
    /// previous one meanwhile).
    pub fn snapshot(&self, now_ms: u64) -> Arc<Snapshot> {
        let last = self.inner.generated_ms.load(Ordering::Acquire);
        if now_ms.saturating_sub(last) >= REBUILD_MAX_AGE.as_millis() as u64 {
            // A poisoned or busy lock: serve the previous snapshot.
            if let Ok(_guard) = self.inner.rebuilding.try_lock() {
                self.rebuild_locked(now_ms);
            }
        }
        self.inner
            .snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Serialises every funding entry of `data` as of `now_ms`.
fn build_snapshot(data: &BTreeMap<String, SymbolData>, now_ms: u64) -> Snapshot {
    let mut by_symbol = BTreeMap::new();
    let mut all = Vec::with_capacity(64 + data.len() * 200);
    all.extend_from_slice(b"{\"data\":[");
    let mut count = 0usize;
    let (mut oldest, mut newest): (Option<u64>, Option<u64>) = (None, None);
    for (symbol, d) in data {
        let Some(updated_ms) = d.mark_updated_ms else {
            continue;
        };
        oldest = Some(oldest.map_or(updated_ms, |o| o.min(updated_ms)));
        newest = Some(newest.map_or(updated_ms, |n| n.max(updated_ms)));
        let entry = PreparedEntry {
            prefix: Arc::from(prefix(symbol, d, updated_ms).into_bytes()),
            updated_ms,
            has_funding_rate: d.funding_rate.is_some(),
        };
        if count > 0 {
            all.push(b',');
        }
        entry.write_with_age(&mut all, now_ms);
        count += 1;
        by_symbol.insert(symbol.clone(), entry);
    }
    let mut tail = String::with_capacity(48);
    let _ = write!(tail, "],\"count\":{count},\"generatedAt\":{now_ms}}}");
    all.extend_from_slice(tail.as_bytes());
    Snapshot {
        generated_ms: now_ms,
        all: all.into(),
        by_symbol,
        oldest_ms: oldest,
        newest_ms: newest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::frames::{self, Frame};

    fn apply_text(cache: &FundingCache, text: &str, now_ms: u64) {
        match frames::parse(text).expect("parses") {
            Frame::Data { updates, .. } => {
                cache.apply(&updates, now_ms);
            }
            Frame::Control => panic!("data expected"),
        }
    }

    const MARK: &str = r#"{"stream":"!markPrice@arr","data":[{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11185.87786614","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000,"ap":"1","st":1,"ps":"BTCUSDT"},{"e":"markPriceUpdate","E":1562305380000,"s":"ETHUSDT","p":"300.5","i":"300.1","P":"0","r":"-0.0001","T":1562306400000}]}"#;

    #[test]
    fn open_interest_is_kept_for_known_symbols_only() {
        let cache = FundingCache::new();
        apply_text(&cache, MARK, 1_000);
        cache.rebuild(1_000);
        cache.set_open_interest("BTCUSDT", 5e9, 2_000);
        cache.set_open_interest("NOPEUSDT", 1.0, 2_000);
        let btc = cache.get("BTCUSDT").expect("BTC");
        assert_eq!(btc.open_interest_usd, Some(5e9));
        assert_eq!(btc.open_interest_ms, Some(2_000));
        assert!(cache.get("NOPEUSDT").is_none());
        // The funding API's snapshot does not carry it: nothing to rebuild.
        assert!(!cache.inner.dirty.load(Ordering::Acquire));
    }

    #[test]
    fn partial_arrays_merge() {
        let cache = FundingCache::new();
        apply_text(&cache, MARK, 1_000);
        // A later frame with only ETH, and a ticker for BTC.
        apply_text(
            &cache,
            r#"{"stream":"!markPrice@arr","data":[{"e":"markPriceUpdate","E":2,"s":"ETHUSDT","p":"301","i":"300.9","r":"0.0002","T":1562335200000}]}"#,
            2_000,
        );
        apply_text(
            &cache,
            r#"{"stream":"!ticker@arr","data":[{"e":"24hrTicker","E":3,"s":"BTCUSDT","p":"-50.5","P":"-0.451","c":"11190.1","q":"123456789.5"}]}"#,
            3_000,
        );
        assert_eq!(cache.len(), 2);
        let btc = cache.get("BTCUSDT").expect("BTC kept");
        assert_eq!(
            btc.mark_price,
            Some(11185.87786614),
            "ticker p is not a price"
        );
        assert_eq!(btc.last_price, Some(11190.1));
        assert_eq!(btc.quote_volume_24h, Some(123456789.5));
        assert_eq!(btc.price_change_percent_24h, Some(-0.451));
        // A mark's `P` (estimated settle price) is not a 24 h change.
        assert_eq!(
            cache
                .get("ETHUSDT")
                .and_then(|e| e.price_change_percent_24h),
            None
        );
        assert_eq!(btc.mark_updated_ms, Some(1_000));
        assert_eq!(btc.ticker_updated_ms, Some(3_000));
        assert_eq!(cache.mark_price("ETHUSDT"), Some(301.0));
        assert_eq!(cache.funding_rate("ETHUSDT"), Some(0.0002));
        assert_eq!(cache.last_price("ETHUSDT"), None);
        let now = crate::clock::from_unix_ms(10_000);
        assert_eq!(cache.oldest_age(now), Some(Duration::from_secs(9)));
        assert_eq!(cache.newest_age(now), Some(Duration::from_secs(8)));
    }

    #[test]
    fn ticker_only_symbols_are_not_served() {
        let cache = FundingCache::new();
        apply_text(
            &cache,
            r#"{"stream":"!ticker@arr","data":[{"e":"24hrTicker","s":"NEWUSDT","c":"1.5","q":"10"}]}"#,
            1_000,
        );
        cache.rebuild(1_000);
        let snap = cache.snapshot(1_000);
        assert!(snap.by_symbol.is_empty());
        assert_eq!(cache.funding_len(), 0);
        assert_eq!(cache.last_price("NEWUSDT"), Some(1.5));
    }

    #[test]
    fn snapshot_bytes_are_valid_json_with_honest_ages() {
        let cache = FundingCache::new();
        apply_text(&cache, MARK, 1_000);
        apply_text(
            &cache,
            r#"{"stream":"!markPrice@arr","data":[{"e":"markPriceUpdate","s":"BTCUSDT_260925","p":"70000","i":"69990","r":"","T":0}]}"#,
            1_500,
        );
        cache.rebuild(4_250);
        let snap = cache.snapshot(4_250);
        let all: serde_json::Value = serde_json::from_slice(&snap.all).expect("json");
        assert_eq!(all["count"], 3);
        assert_eq!(all["generatedAt"], 4_250);
        let btc = &all["data"][0];
        assert_eq!(btc["symbol"], "BTCUSDT");
        assert_eq!(btc["markPrice"], 11185.87786614);
        assert_eq!(btc["indexPrice"], 11784.62659091);
        assert_eq!(btc["fundingRate"], 0.00038167);
        assert_eq!(btc["nextFundingTime"], 1562306400000u64);
        assert_eq!(btc["updatedAt"], 1.0, "epoch seconds, as the old API");
        assert_eq!(btc["ageSeconds"], 3.25);
        let quarterly = &all["data"][1];
        assert_eq!(quarterly["symbol"], "BTCUSDT_260925");
        assert!(quarterly["fundingRate"].is_null());
        assert!(quarterly["nextFundingTime"].is_null());
        let mut one = Vec::new();
        snap.by_symbol["ETHUSDT"].write_with_age(&mut one, 61_001);
        let eth: serde_json::Value = serde_json::from_slice(&one).expect("json");
        assert_eq!(eth["ageSeconds"], 60.001);
        assert_eq!(eth["fundingRate"], -0.0001);
        assert_eq!(snap.oldest_ms, Some(1_000));
        assert_eq!(snap.newest_ms, Some(1_500));
    }

    #[test]
    fn delisted_and_silent_symbols_are_evicted_and_not_judged() {
        let cache = FundingCache::new();
        apply_text(&cache, MARK, 1_000);
        apply_text(
            &cache,
            r#"{"stream":"!markPrice@arr","data":[{"e":"markPriceUpdate","s":"BTCUSDT_260925","p":"70000","i":"69990","r":"","T":0}]}"#,
            1_000,
        );
        // BTCUSDT_260925 expires: Binance stops listing and streaming it.
        // Ten minutes later only the perpetuals are updated.
        apply_text(
            &cache,
            r#"{"stream":"!markPrice@arr","data":[
                {"e":"markPriceUpdate","s":"BTCUSDT","p":"1","i":"1","r":"0.0001","T":1},
                {"e":"markPriceUpdate","s":"ETHUSDT","p":"1","i":"1","r":"0.0001","T":1}]}"#,
            600_000,
        );
        let now = crate::clock::from_unix_ms(601_000);
        let listed: BTreeSet<String> = ["BTCUSDT", "ETHUSDT"].map(String::from).into();
        assert_eq!(
            cache.oldest_age(now),
            Some(Duration::from_secs(600)),
            "the expired contract is the oldest entry"
        );
        assert_eq!(
            cache.oldest_listed_age(Some(&listed), now),
            Some(Duration::from_secs(1)),
            "staleness is judged on listed symbols"
        );
        let minute = Duration::from_secs(60);
        let hour = Duration::from_secs(3600);
        // Unlisted but still updated recently: kept (it may be settling).
        assert!(cache.evict(Some(&listed), hour, hour, now).is_empty());
        assert_eq!(
            cache.evict(Some(&listed), minute, hour, now),
            ["BTCUSDT_260925"]
        );
        assert!(cache.get("BTCUSDT_260925").is_none());
        assert_eq!(cache.evicted_total(), 1);
        assert_eq!(cache.funding_len(), 2);
        // Without a listing, silence past the bound evicts too.
        let later = crate::clock::from_unix_ms(600_000 + 3_601_000);
        assert_eq!(cache.evict(None, minute, hour, later).len(), 2);
        assert!(cache.is_empty());
    }

    #[test]
    fn stale_snapshots_are_rebuilt_by_readers() {
        let cache = FundingCache::new();
        apply_text(&cache, MARK, 1_000);
        assert!(cache.rebuild_if_due(1_000));
        assert!(!cache.rebuild_if_due(1_100), "clean and fresh: no rebuild");
        apply_text(&cache, MARK, 1_150);
        assert!(
            !cache.rebuild_if_due(1_200),
            "dirty but within the minimum gap"
        );
        assert!(cache.rebuild_if_due(1_300));
        let snap = cache.snapshot(5_000);
        assert_eq!(
            snap.generated_ms, 5_000,
            "a reader rebuilt the old snapshot"
        );
    }
}
