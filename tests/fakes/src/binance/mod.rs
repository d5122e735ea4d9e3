//! The fake Binance USDⓈ-M futures exchange: REST on one port, the
//! combined-stream WebSocket on another, both fed by one [`Market`].

pub(crate) mod json;
pub(crate) mod market;
pub(crate) mod rest;
pub(crate) mod tape;
pub(crate) mod ws;

use std::sync::Arc;
use std::time::Duration;

use market::{Market, MarketHandle};
use rest::RestState;
pub use rest::{HostileBody, RestRequest, DEFAULT_WEIGHT_LIMIT, STATS_PATH};
use ws::WsState;

use crate::http_server::{Handler, HttpResponse, HttpServer};
use crate::http_util::{json_response, parse_query, query_value};
use crate::tcp_server::{ConnHandler, TcpServer};

/// A running fake Binance. Dropping it stops both servers and closes every
/// connection.
///
/// REST (`rest_url()` + `/fapi/v1/...`):
/// `exchangeInfo`, `ticker/24hr`, `v2/ticker/price`, `klines` (interval `1h`
/// only), `openInterest`, `premiumIndex`, with Binance's request weights, the
/// `X-MBX-USED-WEIGHT-1M` header and a 429 once the minute's weight exceeds
/// the limit (2400 unless [`FakeBinance::set_weight_limit`]).
///
/// WebSocket (`ws_url()` + `/stream?streams=!markPrice@arr/!ticker@arr`):
/// pushes the requested array streams every interval (first frame at once).
/// The legacy path without `/market` connects but sends nothing.
///
/// Control (not Binance): `GET /__stats[?since=MS]` reports the requests,
/// weight per window and per path recorded since unix time `MS`; it is
/// neither charged nor recorded (benches read it from the `fake-binance` binary).
/// `GET /__spike?symbol=S` puts S's open hour at 4× its previous hour plus
/// 3 M and answers `{"injectedMs", "quoteVolume"}`; `GET /__spikes` lists
/// every injection with the event time of the first kline push carrying it.
pub struct FakeBinance {
    market: MarketHandle,
    rest: RestServer,
    ws: WsServer,
}

struct RestServer {
    state: Arc<RestState>,
    server: HttpServer,
}

struct WsServer {
    state: Arc<WsState>,
    server: TcpServer,
}

impl FakeBinance {
    /// Starts REST and WS servers on 127.0.0.1 ephemeral ports with `market`.
    pub fn start(market: Market) -> std::io::Result<FakeBinance> {
        FakeBinance::start_on("127.0.0.1:0", "127.0.0.1:0", market)
    }

    /// Starts the REST server on `rest_addr` and the WebSocket server on
    /// `ws_addr` (e.g. `127.0.0.1:0`).
    pub fn start_on(
        rest_addr: &str,
        ws_addr: &str,
        market: Market,
    ) -> std::io::Result<FakeBinance> {
        let market = MarketHandle::new(market);

        let ws_state = Arc::new(WsState::new(market.clone()));
        let rest_state = Arc::new(RestState::new(market.clone()));
        let handler: Handler = {
            let state = Arc::clone(&rest_state);
            let ws = Arc::clone(&ws_state);
            Arc::new(move |req| {
                Some(match req.path.as_str() {
                    SPIKE_PATH => spike_control(&ws, &req.query),
                    SPIKES_PATH => json_response(200, &ws.spike_marks()),
                    _ => state.handle(req),
                })
            })
        };
        let rest = RestServer {
            state: rest_state,
            server: HttpServer::bind(rest_addr, handler)?,
        };

        let conn_handler: ConnHandler = {
            let state = Arc::clone(&ws_state);
            Arc::new(move |stream, conns| state.serve(stream, &conns))
        };
        let ws = WsServer {
            state: ws_state,
            server: TcpServer::bind(ws_addr, conn_handler)?,
        };
        Ok(FakeBinance { market, rest, ws })
    }

    /// REST base URL, `http://127.0.0.1:PORT` (the client appends `/fapi/v1/...`).
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.rest.server.local_addr())
    }

    /// WebSocket base URL, `ws://127.0.0.1:PORT/market` (the client appends
    /// `/stream?streams=...`).
    pub fn ws_url(&self) -> String {
        format!("ws://{}/market", self.ws.server.local_addr())
    }

    /// WebSocket legacy base URL, `ws://127.0.0.1:PORT` (retired by Binance:
    /// connects, sends nothing while [`FakeBinance::ws_legacy_silent`] is on).
    pub fn ws_legacy_url(&self) -> String {
        format!("ws://{}", self.ws.server.local_addr())
    }

    /// The market served; changes show up in the next answer or frame.
    pub fn market(&self) -> MarketHandle {
        self.market.clone()
    }

    /// Delay added before every REST answer (default zero). Requests are
    /// served concurrently, so N parallel requests take about one delay.
    pub fn set_latency(&self, d: Duration) {
        self.rest.state.set_latency(d);
    }

    /// The next `n` REST requests answer `status` (429, 418, 500, ...) with
    /// body `{"code":-1003,"msg":...}` and, when given, a `Retry-After`
    /// header. Their weight is still charged. Replaces any earlier setting.
    pub fn fail_next(&self, n: usize, status: u16, retry_after_secs: Option<u64>) {
        self.rest.state.fail_next(n, status, retry_after_secs);
    }

    /// The next `n` requests to `path` (e.g. `/fapi/v1/ticker/24hr`) answer
    /// `status`; other paths are served normally. Replaces any earlier setting.
    pub fn fail_next_on(&self, path: &'static str, n: usize, status: u16) {
        self.rest.state.fail_next_on(path, n, status);
    }

    /// Every request to `path` (e.g. `/fapi/v1/exchangeInfo`) is answered
    /// 200 with `body` (huge, endless, gzip bomb) until set to `None`.
    pub fn serve_hostile(&self, path: &str, body: Option<HostileBody>) {
        self.rest.state.set_hostile(path, body);
    }

    /// Weight per wall-clock minute above which requests answer 429 with
    /// `Retry-After` (seconds to the next minute). Default 2400.
    pub fn set_weight_limit(&self, limit: u32) {
        self.rest.state.set_weight_limit(limit);
    }

    /// Shortens Binance's one-minute weight window (the `X-MBX-USED-WEIGHT-1M`
    /// count, the limit and `Retry-After`) so a test can simulate ten minutes
    /// of load in seconds. Windows stay aligned to multiples of `window` since
    /// the epoch, as minutes are.
    pub fn set_weight_window(&self, window: Duration) {
        self.rest.state.set_weight_window(window);
    }

    /// Every REST request received since start (or the last
    /// [`FakeBinance::clear_requests`]), in answer order.
    pub fn requests(&self) -> Vec<RestRequest> {
        self.rest.state.requests()
    }

    /// What [`STATS_PATH`] answers: totals, weight per window and per path of
    /// the recorded requests received at or after `since_ms` (unix ms).
    pub fn stats(&self, since_ms: i64) -> serde_json::Value {
        self.rest.state.stats(since_ms)
    }

    /// Sum of the weight of the recorded requests received in the last `window`.
    pub fn weight_in_window(&self, window: Duration) -> u32 {
        self.rest.state.weight_in_window(window)
    }

    /// Weight used in the current wall-clock minute, as the
    /// `X-MBX-USED-WEIGHT-1M` header reports it (not reset by `clear_requests`).
    pub fn weight_this_minute(&self) -> u32 {
        self.rest.state.weight_this_minute()
    }

    /// Forgets the recorded requests (the minute's weight counter stays, like
    /// on Binance).
    pub fn clear_requests(&self) {
        self.rest.state.clear_requests();
    }

    /// WebSocket connections currently open (after the handshake).
    pub fn ws_connections(&self) -> usize {
        self.ws.server.connections().len()
    }

    /// WebSocket connections accepted (handshake completed) since start.
    pub fn ws_total_connections(&self) -> usize {
        self.ws.state.total_connections()
    }

    /// Closes every open WebSocket abruptly: TCP shutdown, no close frame.
    pub fn ws_drop_all(&self) {
        self.ws.server.connections().shutdown_all();
    }

    /// While `stalled`, open sockets stay open but the server sends nothing,
    /// not even pings or pongs (it stops reading too).
    pub fn ws_set_stalled(&self, stalled: bool) {
        self.ws.state.set_stalled(stalled);
    }

    /// Sends one text frame of invalid JSON and one binary frame of junk on
    /// every live socket (a stalled socket sends them when it resumes).
    pub fn ws_send_garbage(&self) {
        self.ws.state.send_garbage();
    }

    /// How often the `!markPrice@arr` and `!ticker@arr` frames are pushed
    /// (default 1 s).
    pub fn ws_set_interval(&self, d: Duration) {
        self.ws.state.set_interval(d);
    }

    /// Sends a ping with `payload` (at most 125 bytes) on every live socket;
    /// the pongs received are in [`FakeBinance::ws_pongs`].
    pub fn ws_send_ping(&self, payload: &[u8]) {
        self.ws.state.send_ping(payload);
    }

    /// Payloads of the pongs received from clients, in arrival order.
    /// Pushes a closed-candle event (`k.x` true) for `symbol` on every
    /// connection subscribed to its kline stream (besides the one the fake
    /// sends by itself when the wall-clock hour turns).
    pub fn ws_send_closed_kline(&self, symbol: &str, candle: market::Candle) {
        self.ws.state.send_closed_kline(symbol, candle);
    }

    /// Sets `symbol`'s open-hour quote volume to `quote_volume` now and
    /// returns the instant (unix ms): the next kline push, within 250 ms,
    /// carries it. How a test puts one symbol across the spike threshold at
    /// a known time.
    pub fn set_open_hour_volume(&self, symbol: &str, quote_volume: f64) -> i64 {
        self.ws.state.set_open_hour_volume(symbol, quote_volume)
    }

    /// Shifts the WebSocket streams' clock (event times, the open hour) by
    /// `offset_ms`, as `VOLSPIKE_CLOCK_OFFSET_MS` shifts the appliance's.
    pub fn set_clock_offset_ms(&self, offset_ms: i64) {
        self.ws.state.set_clock_offset_ms(offset_ms);
    }

    /// Every SUBSCRIBE/UNSUBSCRIBE received on the WebSocket, in order.
    pub fn ws_subscriptions(&self) -> Vec<(String, Vec<String>)> {
        self.ws.state.subscriptions()
    }

    /// The most messages one client connection sent within one second.
    pub fn ws_peak_client_rate(&self) -> usize {
        self.ws.state.peak_client_rate()
    }

    pub fn ws_pongs(&self) -> Vec<Vec<u8>> {
        self.ws.state.pongs()
    }

    /// Models Binance's retired legacy URL (path `/stream` without
    /// `/market`). `true` (the default): such connections are accepted and
    /// get nothing at all, no data, no pong. `false`: the legacy path serves
    /// data like `/market`, as before the 2026-04-23 cut-over. Applies to
    /// connections opened afterwards.
    pub fn ws_legacy_silent(&self, silent: bool) {
        self.ws.state.set_legacy_silent(silent);
    }
}

/// Control route: inject a spike (see [`FakeBinance`]).
pub const SPIKE_PATH: &str = "/__spike";
/// Control route: the injected spikes and their first event times.
pub const SPIKES_PATH: &str = "/__spikes";

fn spike_control(ws: &WsState, query: &str) -> HttpResponse {
    let params = parse_query(query);
    let symbol = query_value(&params, "symbol").unwrap_or_default();
    match ws.spike(symbol) {
        Some((at, volume)) => json_response(
            200,
            &serde_json::json!({"injectedMs": at, "quoteVolume": volume}),
        ),
        None => json_response(404, &serde_json::json!({"error": "unknown symbol"})),
    }
}
