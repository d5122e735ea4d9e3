//! Test rig for volspike: a fake Binance USDⓈ-M futures exchange (REST and
//! WebSocket) and a fake VolSpike backend.
//!
//! Both fakes bind to `127.0.0.1` only, on an ephemeral port unless told
//! otherwise, run on plain std threads (no async runtime), and never panic on
//! what a client sends: a malformed request is answered with `400`.
//!
//! * [`FakeBinance`] serves the REST routes and the combined-stream WebSocket
//!   described in `docs/binance.md`, from a mutable [`Market`] model.
//! * [`FakeBackend`] records every request to the backend routes of
//!   `docs/backend.md` and answers them with the documented defaults.
//! * [`FakeTelegram`] answers the Bot API methods volspike calls and serves
//!   public channel preview pages from fixture HTML.
//! * [`FakeProxy`] is an HTTP CONNECT proxy that records every tunnel.
//! * [`ScriptedServer`] answers each request from the test's closure, for
//!   client tests that need exact replies request by request.
//! * [`TempDir`] is the temporary directory volspike's unit and integration
//!   tests share.

mod backend;
mod binance;
mod http_server;
mod http_util;
mod proxy;
mod scripted;
mod sync;
mod tcp_server;
mod telegram;
mod temp_dir;

pub use backend::{BackendRequest, FakeBackend};
pub use binance::market::{
    Candle, Market, MarketHandle, SymbolState, FILTERED_OUT_SYMBOLS, HOUR_MS,
};
pub use binance::tape::{Change, TapeHandle, TapeStep};
pub use binance::{FakeBinance, HostileBody, RestRequest, DEFAULT_WEIGHT_LIMIT, STATS_PATH};
pub use proxy::FakeProxy;
pub use scripted::{Hit, Reply, ScriptedServer};
pub use telegram::{FakeTelegram, SentMessage, TelegramRequest, FAKE_BOT_ID};
pub use temp_dir::TempDir;
