//! `fake-backend`: the fake VolSpike backend as a standalone process.
//!
//! ```text
//! fake-backend [--addr ADDR] [--log FILE]
//! ```
//! Prints `READY url=http://...` once listening, then serves until killed.
//! With `--log`, every request is appended to FILE as one JSON line
//! (method, path, query, headers, body, status, received_at_ms).

use std::io::Write;
use std::process::ExitCode;

use volspike_fakes::FakeBackend;

const USAGE: &str = "usage: fake-backend [--addr 127.0.0.1:PORT] [--log FILE]
  --addr  listen address (default 127.0.0.1:0)
  --log   append every request as a JSON line to FILE";

struct Args {
    addr: String,
    log: Option<String>,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        addr: "127.0.0.1:0".into(),
        log: None,
    };
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let value = args
            .next()
            .ok_or_else(|| format!("missing value for {flag}"))?;
        match flag.as_str() {
            "--addr" => parsed.addr = value,
            "--log" => parsed.log = Some(value),
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
                eprintln!("fake-backend: {why}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fake = match FakeBackend::start_on(&args.addr) {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("fake-backend: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.log {
        if let Err(e) = fake.log_to(path) {
            eprintln!("fake-backend: cannot open log {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut out = std::io::stdout();
    if writeln!(out, "READY url={}", fake.url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    loop {
        std::thread::park();
    }
}
