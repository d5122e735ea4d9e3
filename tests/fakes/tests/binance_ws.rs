//! The fake Binance WebSocket: frames, legacy path, drop/stall/garbage, pings.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::{eventually, next_frame, ws_connect, ws_read, Got, Ws, PATIENCE};
use serde_json::Value;
use tungstenite::{Bytes, Message};
use volspike_fakes::{FakeBinance, Market};

const BOTH: &str = "/stream?streams=!markPrice@arr/!ticker@arr";

fn fake() -> FakeBinance {
    let fake = FakeBinance::start(Market::synthetic(4)).expect("start fake binance");
    fake.ws_set_interval(Duration::from_millis(100));
    fake
}

fn connect(url: &str) -> Ws {
    ws_connect(url, Duration::from_millis(100)).expect("ws connect")
}

fn find<'a>(data: &'a Value, symbol: &str) -> &'a Value {
    data.as_array()
        .and_then(|a| a.iter().find(|o| o["s"] == symbol))
        .unwrap_or_else(|| panic!("{symbol} missing in {data}"))
}

fn is_decimal_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.parse::<f64>().is_ok())
}

#[test]
fn pushes_both_requested_streams_with_binance_shapes() {
    let fake = fake();
    let mut ws = connect(&format!("{}{BOTH}", fake.ws_url()));
    let mut mark = None;
    let mut ticker = None;
    let deadline = Instant::now() + PATIENCE;
    while (mark.is_none() || ticker.is_none()) && Instant::now() < deadline {
        let (stream, data) = next_frame(&mut ws);
        match stream.as_str() {
            "!markPrice@arr" => mark = Some(data),
            "!ticker@arr" => ticker = Some(data),
            other => panic!("unexpected stream {other}"),
        }
    }
    let (mark, ticker) = (
        mark.expect("markPrice frame"),
        ticker.expect("ticker frame"),
    );
    assert_eq!(mark.as_array().map(Vec::len), Some(9));

    let btc = find(&mark, "BTCUSDT");
    assert_eq!(btc["e"], "markPriceUpdate");
    for f in ["p", "i", "P", "r", "ap"] {
        assert!(is_decimal_string(&btc[f]), "{f}: {btc}");
    }
    assert!(btc["E"].is_i64() && btc["T"].as_i64().is_some_and(|t| t > 0));
    assert_eq!(btc["st"], 1);
    let quarterly = find(&mark, "BTCUSDT_261225");
    assert_eq!(quarterly["r"], "");
    assert_eq!(quarterly["T"], 0);

    let eth = find(&ticker, "ETHUSDT");
    assert_eq!(eth["e"], "24hrTicker");
    assert_eq!(eth.as_object().map(|o| o.len()), Some(18));
    for f in ["p", "P", "w", "c", "Q", "o", "h", "l", "v", "q"] {
        assert!(is_decimal_string(&eth[f]), "{f}: {eth}");
    }
    for f in ["E", "O", "C", "F", "L", "n"] {
        assert!(eth[f].is_i64(), "{f}: {eth}");
    }
    // p is the 24 h change: last − open.
    let num = |f: &str| {
        eth[f]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    assert!((num("c") - num("o") - num("p")).abs() < 1e-6);

    // Market changes reach the next frame.
    fake.market().update("BTCUSDT", |s| s.mark_price = 1234.5);
    assert!(eventually(|| {
        let (stream, data) = next_frame(&mut ws);
        stream == "!markPrice@arr" && find(&data, "BTCUSDT")["p"] == "1234.50000000"
    }));
    assert_eq!(fake.ws_connections(), 1);
    assert_eq!(fake.ws_total_connections(), 1);
}

#[test]
fn sends_only_the_requested_streams() {
    let fake = fake();
    let mut ws = connect(&format!("{}/stream?streams=!ticker@arr", fake.ws_url()));
    let streams: HashSet<String> = (0..5).map(|_| next_frame(&mut ws).0).collect();
    assert_eq!(streams, HashSet::from(["!ticker@arr".to_string()]));

    let mut ws = connect(&format!(
        "{}/stream?streams=%21markPrice%40arr%401s",
        fake.ws_url()
    ));
    let streams: HashSet<String> = (0..5).map(|_| next_frame(&mut ws).0).collect();
    assert_eq!(streams, HashSet::from(["!markPrice@arr@1s".to_string()]));
}

#[test]
fn legacy_path_connects_but_stays_silent() {
    let fake = fake();
    let mut ws = connect(&format!("{}{BOTH}", fake.ws_legacy_url()));
    assert!(eventually(|| fake.ws_connections() == 1));
    // A ping gets no pong either: nothing at all comes back.
    ws.send(Message::Ping(Bytes::from_static(b"hi")))
        .expect("send ping");
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        match ws_read(&mut ws) {
            Got::Nothing => {}
            other => panic!("legacy URL must send nothing, got {other:?}"),
        }
    }

    // Before the cut-over the legacy path served data.
    fake.ws_legacy_silent(false);
    let mut old = connect(&format!("{}{BOTH}", fake.ws_legacy_url()));
    let _ = next_frame(&mut old);
}

#[test]
fn unknown_path_is_rejected() {
    let fake = fake();
    let host = fake.ws_legacy_url();
    assert!(ws_connect(
        &format!("{host}/nope?streams=!ticker@arr"),
        Duration::from_millis(100)
    )
    .is_err());
}

#[test]
fn drop_all_closes_without_close_frame() {
    let fake = fake();
    let url = format!("{}{BOTH}", fake.ws_url());
    let mut clients = vec![connect(&url), connect(&url)];
    assert!(eventually(|| fake.ws_connections() == 2));
    for ws in &mut clients {
        let _ = next_frame(ws);
    }
    fake.ws_drop_all();
    assert_eq!(fake.ws_connections(), 0);
    for ws in &mut clients {
        let deadline = Instant::now() + PATIENCE;
        let ended = loop {
            match ws_read(ws) {
                Got::Closed(why) => break why,
                Got::Msg(Message::Close(frame)) => panic!("got a close frame {frame:?}"),
                Got::Msg(_) | Got::Nothing => {
                    assert!(Instant::now() < deadline, "socket not dropped")
                }
            }
        };
        assert!(!ended.is_empty());
    }
    assert_eq!(fake.ws_total_connections(), 2);
    // Reconnecting works.
    let mut again = connect(&url);
    let _ = next_frame(&mut again);
    assert_eq!(fake.ws_total_connections(), 3);
}

#[test]
fn stall_keeps_the_socket_open_but_sends_nothing() {
    let fake = fake();
    let mut ws = connect(&format!("{}{BOTH}", fake.ws_url()));
    let _ = next_frame(&mut ws);
    fake.ws_set_stalled(true);
    // Drain frames already in flight.
    let drain_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < drain_until {
        if let Got::Closed(why) = ws_read(&mut ws) {
            panic!("closed while stalled: {why}");
        }
    }
    fake.ws_send_ping(b"during-stall");
    let quiet_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < quiet_until {
        match ws_read(&mut ws) {
            Got::Nothing => {}
            other => panic!("stalled socket sent {other:?}"),
        }
    }
    assert_eq!(fake.ws_connections(), 1);
    fake.ws_set_stalled(false);
    let _ = next_frame(&mut ws);
}

#[test]
fn garbage_frames_arrive() {
    let fake = fake();
    let mut ws = connect(&format!("{}{BOTH}", fake.ws_url()));
    let _ = next_frame(&mut ws);
    fake.ws_send_garbage();
    let (mut bad_text, mut binary) = (false, false);
    let deadline = Instant::now() + PATIENCE;
    while !(bad_text && binary) && Instant::now() < deadline {
        match ws_read(&mut ws) {
            Got::Msg(Message::Text(t)) => {
                bad_text |= serde_json::from_str::<Value>(t.as_str()).is_err()
            }
            Got::Msg(Message::Binary(_)) => binary = true,
            Got::Closed(why) => panic!("closed: {why}"),
            _ => {}
        }
    }
    assert!(
        bad_text && binary,
        "invalid JSON text: {bad_text}, binary: {binary}"
    );
    // The stream goes on afterwards.
    let _ = next_frame(&mut ws);
}

#[test]
fn server_pings_are_recorded_and_client_pings_answered() {
    let fake = fake();
    let mut ws = connect(&format!("{}{BOTH}", fake.ws_url()));
    let _ = next_frame(&mut ws);
    fake.ws_send_ping(b"from-server");
    // tungstenite answers pings while reading.
    assert!(eventually(|| {
        let _ = ws_read(&mut ws);
        fake.ws_pongs().contains(&b"from-server".to_vec())
    }));

    ws.send(Message::Ping(Bytes::from_static(b"from-client")))
        .expect("send ping");
    let deadline = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < deadline, "no pong for the client ping");
        if let Got::Msg(Message::Pong(p)) = ws_read(&mut ws) {
            assert_eq!(p.as_ref(), b"from-client");
            break;
        }
    }
}

#[test]
fn client_close_frees_the_connection() {
    let fake = fake();
    let mut ws = connect(&format!("{}{BOTH}", fake.ws_url()));
    let _ = next_frame(&mut ws);
    ws.close(None).expect("close");
    // Finish the closing handshake.
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if let Got::Closed(_) = ws_read(&mut ws) {
            break;
        }
    }
    assert!(eventually(|| fake.ws_connections() == 0));
}
