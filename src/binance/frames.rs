//! Parsing of the funding stream's combined-stream frames
//! (`{"stream":"!markPrice@arr","data":[...]}`), once, at the edge.
//!
//! The parser is lenient per field and strict per item: an unknown field
//! (`ap`, `st`, `ps`…) is ignored, a field of an unexpected type (`"r":""`
//! on quarterlies, a number where a string was expected) reads as "unknown",
//! and an item without a usable symbol is skipped, so one odd contract never
//! costs the other 600 their update. Only a frame that is not JSON at all, or
//! not shaped like a combined-stream frame, is rejected as garbage.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde::Deserialize;

/// Longest symbol accepted; Binance's longest are about 20 characters.
const MAX_SYMBOL_LEN: usize = 32;

/// One symbol's update decoded from a frame, ready for the cache.
///
/// One struct for both events rather than one per event: the symbol and the
/// event time are read, checked and stored the same way for either, and the
/// cache finds the symbol's entry before it looks at what arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Symbol, as Binance spells it (upper case, checked by [`valid_symbol`]).
    pub symbol: String,
    /// Binance's event time in ms (`E`).
    pub event_time: Option<u64>,
    /// What the event carries.
    pub values: Values,
}

/// The event-specific part of an [`Update`].
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// From a `markPriceUpdate` event: the only source of mark prices.
    Mark(MarkValues),
    /// From a `24hrTicker` event: last price and 24 h quote volume.
    Ticker(TickerValues),
}

/// The funding part of one symbol (`markPriceUpdate`).
#[derive(Debug, Clone, PartialEq)]
pub struct MarkValues {
    /// Mark price (`p`); `None` when missing or unparsable.
    pub mark_price: Option<f64>,
    /// Index price (`i`).
    pub index_price: Option<f64>,
    /// Funding rate (`r`); `None` for quarterlies, which send `"r":""`.
    pub funding_rate: Option<f64>,
    /// Next funding time in ms (`T`); `None` for quarterlies, which send `"T":0`.
    pub next_funding_time: Option<u64>,
}

/// The ticker part of one symbol (`24hrTicker`).
#[derive(Debug, Clone, PartialEq)]
pub struct TickerValues {
    /// Last price (`c`). A ticker's `p` is the 24 h price *change* and is never read.
    pub last_price: Option<f64>,
    /// 24 h quote volume in the quote asset, USDT for the universe (`q`).
    pub quote_volume: Option<f64>,
    /// 24 h price change in percent (`P`: `-1.25` = −1.25 %).
    pub price_change_percent: Option<f64>,
}

/// What one text frame turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A combined-stream data frame; `skipped` items had no usable symbol or
    /// an event type we do not read.
    Data {
        /// The `stream` name, e.g. `!markPrice@arr`.
        stream: String,
        /// Decoded updates, in frame order.
        updates: Vec<Update>,
        /// Items ignored.
        skipped: usize,
    },
    /// Valid JSON without `data`, such as a subscription acknowledgement
    /// (`{"result":null,"id":1}`): not data, so it does not prove the link alive.
    Control,
}

/// A frame that could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable frame: {0}")]
pub struct GarbageFrame(pub String);

/// A JSON value read without insisting on its type: the one lenient visitor
/// behind both a field's value ([`Loose`], objects skipped) and an array item
/// ([`Lenient<RawItem>`], objects read as events).
#[derive(Debug, Clone, PartialEq)]
enum Lenient<'a, M> {
    /// A string (Binance's usual encoding of decimals).
    Str(Cow<'a, str>),
    /// A number.
    Num(f64),
    /// An unsigned integer (times), kept exact.
    Int(u64),
    /// An object, read as `M`.
    Map(M),
    /// `null`, a boolean or an array: unusable.
    Other,
}

/// A field's value: an object there is skipped unread.
type Loose<'a> = Lenient<'a, IgnoredAny>;

impl<M> Lenient<'_, M> {
    /// A finite decimal, or `None` (`""`, `"NaN"`, garbage).
    fn decimal(&self) -> Option<f64> {
        let v = match self {
            Lenient::Str(s) => s.trim().parse::<f64>().ok()?,
            Lenient::Num(n) => *n,
            Lenient::Int(n) => *n as f64,
            Lenient::Map(_) | Lenient::Other => return None,
        };
        v.is_finite().then_some(v)
    }

    /// A positive millisecond time; 0 (quarterlies' `"T":0`) means unknown.
    fn time_ms(&self) -> Option<u64> {
        let v = match self {
            Lenient::Int(n) => *n,
            Lenient::Num(n) if n.is_finite() && *n >= 0.0 => *n as u64,
            Lenient::Str(s) => s.trim().parse::<u64>().ok()?,
            _ => return None,
        };
        (v > 0).then_some(v)
    }

    fn text(&self) -> Option<&str> {
        match self {
            Lenient::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The object, if the value was one.
    fn into_map(self) -> Option<M> {
        match self {
            Lenient::Map(m) => Some(m),
            _ => None,
        }
    }
}

/// A field's decimal; `None` when absent or unusable.
fn field_decimal(field: &Option<Loose<'_>>) -> Option<f64> {
    field.as_ref().and_then(Loose::decimal)
}

/// A field's millisecond time; `None` when absent, unusable or 0.
fn field_time_ms(field: &Option<Loose<'_>>) -> Option<u64> {
    field.as_ref().and_then(Loose::time_ms)
}

/// A field's text; `None` when absent or not a string.
fn field_text<'f>(field: &'f Option<Loose<'_>>) -> Option<&'f str> {
    field.as_ref().and_then(Loose::text)
}

impl<'de: 'a, 'a, M: Deserialize<'de>> Deserialize<'de> for Lenient<'a, M> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LenientVisitor<M>(PhantomData<M>);
        impl<'de, M: Deserialize<'de>> Visitor<'de> for LenientVisitor<M> {
            type Value = Lenient<'de, M>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Lenient::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Lenient::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Lenient::Str(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Lenient::Int(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Lenient::Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Lenient::Num(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Lenient::Other)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Lenient::Other)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Ok(Lenient::Map(read_map(map)?))
            }
        }
        deserializer.deserialize_any(LenientVisitor(PhantomData))
    }
}

/// Reads the object behind `map` as a `T`.
fn read_map<'de, T: Deserialize<'de>, A: de::MapAccess<'de>>(map: A) -> Result<T, A::Error> {
    T::deserialize(de::value::MapAccessDeserializer::new(map))
}

/// One array item, every field optional and loosely typed. Field names are
/// case-sensitive: `p` (mark price or price change) and `P` differ.
#[derive(Debug, Deserialize)]
struct RawItem<'a> {
    #[serde(borrow, rename = "e")]
    event: Option<Loose<'a>>,
    #[serde(borrow, rename = "E")]
    event_time: Option<Loose<'a>>,
    #[serde(borrow, rename = "s")]
    symbol: Option<Loose<'a>>,
    #[serde(borrow, rename = "p")]
    p: Option<Loose<'a>>,
    /// Ticker: 24 h change in percent; mark price: estimated settle price.
    #[serde(borrow, rename = "P")]
    big_p: Option<Loose<'a>>,
    #[serde(borrow, rename = "i")]
    index: Option<Loose<'a>>,
    #[serde(borrow, rename = "r")]
    rate: Option<Loose<'a>>,
    #[serde(borrow, rename = "T")]
    next_funding: Option<Loose<'a>>,
    #[serde(borrow, rename = "c")]
    close: Option<Loose<'a>>,
    #[serde(borrow, rename = "q")]
    quote_volume: Option<Loose<'a>>,
}

/// `data` is an array for `@arr` streams, an object for single-symbol streams;
/// anything else is kept as "other" so the frame still reads.
#[derive(Debug)]
enum RawData<'a> {
    /// The array's items; `None` for an item that is not an object.
    Items(Vec<Option<RawItem<'a>>>),
    One(Box<RawItem<'a>>),
}

/// The combined-stream envelope.
#[derive(Debug, Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow)]
    stream: Option<Loose<'a>>,
    #[serde(borrow, default, deserialize_with = "raw_data")]
    data: Option<RawData<'a>>,
}

/// Reads `data` as an array of items (a non-object item reads as `None`) or
/// a single item.
fn raw_data<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RawData<'de>>, D::Error> {
    struct DataVisitor;
    impl<'de> Visitor<'de> for DataVisitor {
        type Value = Option<RawData<'de>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of events or one event")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(64).min(4096));
            while let Some(item) = seq.next_element::<Lenient<'de, RawItem<'de>>>()? {
                items.push(item.into_map());
            }
            Ok(Some(RawData::Items(items)))
        }
        fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Ok(Some(RawData::One(Box::new(read_map(map)?))))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(DataVisitor)
}

/// A symbol we can store and echo into JSON without escaping: upper-case
/// ASCII letters, digits, `_` and `-`.
pub fn valid_symbol(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SYMBOL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Decodes one item; `None` when it is not an event we read.
fn decode(item: &RawItem<'_>) -> Option<Update> {
    let symbol = field_text(&item.symbol)?;
    if !valid_symbol(symbol) {
        return None;
    }
    let values = match field_text(&item.event)? {
        "markPriceUpdate" => Values::Mark(MarkValues {
            mark_price: field_decimal(&item.p),
            index_price: field_decimal(&item.index),
            funding_rate: field_decimal(&item.rate),
            next_funding_time: field_time_ms(&item.next_funding),
        }),
        "24hrTicker" => Values::Ticker(TickerValues {
            // Never `p`: on a ticker it is the 24 h price change.
            last_price: field_decimal(&item.close),
            quote_volume: field_decimal(&item.quote_volume),
            price_change_percent: field_decimal(&item.big_p),
        }),
        _ => return None,
    };
    Some(Update {
        symbol: symbol.to_owned(),
        event_time: field_time_ms(&item.event_time),
        values,
    })
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Frame, GarbageFrame> {
    let raw: RawFrame<'_> = serde_json::from_str(text).map_err(|e| GarbageFrame(e.to_string()))?;
    let Some(data) = raw.data else {
        return Ok(Frame::Control);
    };
    let stream = field_text(&raw.stream).unwrap_or("").to_owned();
    let (updates, skipped) = match data {
        RawData::Items(items) => {
            let mut updates = Vec::with_capacity(items.len());
            let mut skipped = 0;
            for item in &items {
                match item.as_ref().and_then(decode) {
                    Some(u) => updates.push(u),
                    None => skipped += 1,
                }
            }
            (updates, skipped)
        }
        RawData::One(item) => match decode(&item) {
            Some(u) => (vec![u], 0),
            None => (Vec::new(), 1),
        },
    };
    Ok(Frame::Data {
        stream,
        updates,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/binance.md's `markPriceUpdate` sample, plus the fields added since.
    const MARK: &str = r#"{"stream":"!markPrice@arr","data":[{"e":"markPriceUpdate","E":1562305380000,"s":"BTCUSDT","p":"11185.87786614","i":"11784.62659091","P":"11784.25641265","r":"0.00038167","T":1562306400000,"ap":"11185.1","st":1,"ps":"BTCUSDT"}]}"#;
    /// docs/binance.md's `24hrTicker` sample.
    const TICKER: &str = r#"{"stream":"!ticker@arr","data":[{"e":"24hrTicker","E":123456789,"s":"BTCUSDT","p":"0.0015","P":"250.00","w":"0.0018","c":"0.0025","Q":"10","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18","O":0,"C":86400000,"F":0,"L":18150,"n":18151}]}"#;

    fn updates(text: &str) -> Vec<Update> {
        match parse(text).expect("parses") {
            Frame::Data { updates, .. } => updates,
            Frame::Control => panic!("expected data"),
        }
    }

    #[test]
    fn mark_price_sample_with_new_fields() {
        assert_eq!(
            updates(MARK),
            vec![Update {
                symbol: "BTCUSDT".into(),
                event_time: Some(1562305380000),
                values: Values::Mark(MarkValues {
                    mark_price: Some(11185.87786614),
                    index_price: Some(11784.62659091),
                    funding_rate: Some(0.00038167),
                    next_funding_time: Some(1562306400000),
                }),
            }]
        );
    }

    #[test]
    fn quarterly_empty_rate_and_zero_time_do_not_fail_the_frame() {
        let text = r#"{"stream":"!markPrice@arr","data":[
            {"e":"markPriceUpdate","E":1,"s":"BTCUSDT_260925","p":"70000.1","i":"69990","P":"0","r":"","T":0,"st":2},
            {"e":"markPriceUpdate","E":1,"s":"ETHUSDT","p":"3000.5","i":"3000","P":"0","r":"0.0001","T":1700000000000}]}"#;
        let u = updates(text);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].symbol, "BTCUSDT_260925");
        let Values::Mark(q) = &u[0].values else {
            panic!()
        };
        assert_eq!(q.mark_price, Some(70000.1));
        assert_eq!(q.funding_rate, None);
        assert_eq!(q.next_funding_time, None);
        let Values::Mark(e) = &u[1].values else {
            panic!()
        };
        assert_eq!(e.funding_rate, Some(0.0001));
    }

    #[test]
    fn ticker_p_is_never_a_price() {
        assert_eq!(
            updates(TICKER),
            vec![Update {
                symbol: "BTCUSDT".into(),
                event_time: Some(123456789),
                values: Values::Ticker(TickerValues {
                    last_price: Some(0.0025),
                    quote_volume: Some(18.0),
                    price_change_percent: Some(250.0),
                }),
            }]
        );
    }

    #[test]
    fn odd_items_are_skipped_not_the_frame() {
        let text = r#"{"stream":"!markPrice@arr","data":[7,null,{"e":"markPriceUpdate"},
            {"e":"markPriceUpdate","s":"bad symbol\""},{"e":"other","s":"X"},
            {"e":"markPriceUpdate","s":"SOLUSDT","p":"NaN","i":150,"r":null,"T":"1700000000000"}]}"#;
        match parse(text).expect("parses") {
            Frame::Data {
                updates, skipped, ..
            } => {
                assert_eq!(skipped, 5);
                assert_eq!(
                    updates,
                    vec![Update {
                        symbol: "SOLUSDT".into(),
                        event_time: None,
                        values: Values::Mark(MarkValues {
                            mark_price: None,
                            index_price: Some(150.0),
                            funding_rate: None,
                            next_funding_time: Some(1700000000000),
                        }),
                    }]
                );
            }
            Frame::Control => panic!("expected data"),
        }
    }

    #[test]
    fn garbage_and_control_frames() {
        for text in [
            "",
            "not json",
            "{\"stream\":",
            "[1,2",
            "\u{0}\u{1}",
            "{\"data\":\"x\"}",
        ] {
            assert!(parse(text).is_err(), "{text:?} should be garbage");
        }
        assert_eq!(parse(r#"{"result":null,"id":1}"#), Ok(Frame::Control));
        assert_eq!(parse("[1,2]").ok(), None);
    }
}
