//! `fake-binance`: the fake Binance as a standalone process, for shell-driven
//! tests and benchmarks.
//!
//! ```text
//! fake-binance [--rest ADDR] [--ws ADDR] [--symbols N] [--latency-ms MS] [--ws-interval-ms MS]
//! ```
//! Prints `READY rest=http://... ws=ws://.../market` once listening, then
//! serves until killed. `GET <rest>/__stats[?since=MS]` reports the requests
//! and weight it saw (total, per minute, per path), free of charge.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use volspike_fakes::{FakeBinance, Market};

const USAGE: &str = "usage: fake-binance [--rest 127.0.0.1:PORT] [--ws 127.0.0.1:PORT] \
[--symbols N] [--latency-ms MS] [--ws-interval-ms MS]
  --rest            REST listen address (default 127.0.0.1:0)
  --ws              WebSocket listen address (default 127.0.0.1:0)
  --symbols         number of synthetic USDT perpetuals (default 600; 5 filtered-out symbols are added)
  --latency-ms      delay before every REST answer (default 0)
  --ws-interval-ms  push interval of the array streams (default 1000)
GET <rest>/__stats[?since=UNIX_MS] reports requests and weight (total, per minute, per path).";

struct Args {
    rest: String,
    ws: String,
    symbols: usize,
    latency_ms: u64,
    ws_interval_ms: u64,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        rest: "127.0.0.1:0".into(),
        ws: "127.0.0.1:0".into(),
        symbols: 600,
        latency_ms: 0,
        ws_interval_ms: 1000,
    };
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("missing value for {flag}"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} needs a number, got {v:?}"))
        };
        match flag.as_str() {
            "--rest" => parsed.rest = value,
            "--ws" => parsed.ws = value,
            "--symbols" => parsed.symbols = number(&value)? as usize,
            "--latency-ms" => parsed.latency_ms = number(&value)?,
            "--ws-interval-ms" => parsed.ws_interval_ms = number(&value)?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("fake-binance: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeBinance::start_on(&args.rest, &args.ws, Market::synthetic(args.symbols)) {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-binance: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    fake.set_latency(Duration::from_millis(args.latency_ms));
    fake.ws_set_interval(Duration::from_millis(args.ws_interval_ms));
    let mut out = std::io::stdout();
    if writeln!(out, "READY rest={} ws={}", fake.rest_url(), fake.ws_url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    loop {
        std::thread::park();
    }
}
