//! Binance USDⓈ-M futures: the funding stream (WebSocket), its frame parser
//! and the funding cache every job reads.

pub mod cache;
pub mod frames;
pub mod stream;
