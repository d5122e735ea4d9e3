//! Funding stream and API figures (a bench, not a test: it asserts nothing).
//!
//! `cargo bench --bench funding` prints:
//! - CPU time per `!markPrice@arr` message of 600 symbols: parse, merge,
//!   snapshot rebuild (in this process, many iterations);
//! - the real binary (`volspike run --local`) fed by the fake Binance
//!   WebSocket with 600 symbols: funding API requests/s and latency
//!   percentiles on loopback (keep-alive load generator), its CPU use while
//!   streaming, and its RSS (VmRSS, VmHWM).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use volspike::binance::cache::FundingCache;
use volspike::binance::frames::{self, Frame};
use volspike::clock::unix_ms;
use volspike_fakes::{FakeBinance, Market};

const SYMBOLS: usize = 600;
const LOAD_SECONDS: u64 = 5;
const CLIENT_THREADS: usize = 4;

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let mut rows: Vec<(String, String)> = Vec::new();
    micro(&mut rows);
    end_to_end(&mut rows);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("\nfunding bench ({SYMBOLS} symbols)");
    println!("{}", "-".repeat(width + 24));
    for (k, v) in &rows {
        println!("{k:width$}  {v}");
    }
}

/// A Binance-shaped `!markPrice@arr` frame of `n` symbols, new fields included.
fn mark_frame(n: usize, tick: u64) -> String {
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        let price = 1.0 + (i as f64) * 13.37 + (tick % 100) as f64 * 0.001;
        items.push(format!(
            r#"{{"e":"markPriceUpdate","E":{e},"s":"SYM{i:04}USDT","p":"{p:.8}","ap":"{p:.8}","i":"{ix:.8}","P":"{ix:.8}","r":"0.00010000","T":1795622400000,"st":1}}"#,
            e = 1_795_600_000_000u64 + tick,
            p = price,
            ix = price * 0.9998
        ));
    }
    format!(
        r#"{{"stream":"!markPrice@arr","data":[{}]}}"#,
        items.join(",")
    )
}

/// CPU seconds (user + system) of process `pid` ("self" for this one).
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Clock ticks are 100 per second on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn status_kb(pid: &str, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .map(|l| l[key.len()..].trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn micro(rows: &mut Vec<(String, String)>) {
    let frames_text: Vec<String> = (0..8).map(|t| mark_frame(SYMBOLS, t)).collect();
    rows.push((
        "markPrice@arr frame size".into(),
        format!("{} KB", frames_text[0].len() / 1024),
    ));
    let cache = FundingCache::new();
    let iterations = 2000;
    // Warm up.
    for text in &frames_text {
        if let Ok(Frame::Data { updates, .. }) = frames::parse(text) {
            cache.apply(&updates, unix_ms(SystemTime::now()));
        }
    }
    let (mut parse_t, mut apply_t, mut rebuild_t) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let cpu0 = cpu_seconds("self");
    let wall0 = Instant::now();
    for i in 0..iterations {
        let text = &frames_text[i % frames_text.len()];
        let t0 = Instant::now();
        let Ok(Frame::Data { updates, .. }) = frames::parse(text) else {
            panic!("bench frame must parse");
        };
        let t1 = Instant::now();
        let now = unix_ms(SystemTime::now());
        cache.apply(&updates, now);
        let t2 = Instant::now();
        cache.rebuild(now);
        let t3 = Instant::now();
        parse_t += t1 - t0;
        apply_t += t2 - t1;
        rebuild_t += t3 - t2;
    }
    let wall = wall0.elapsed();
    let cpu = cpu_seconds("self") - cpu0;
    let per = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6 / iterations as f64);
    rows.push(("per message: parse".into(), per(parse_t)));
    rows.push(("per message: merge into cache".into(), per(apply_t)));
    rows.push(("per message: snapshot rebuild".into(), per(rebuild_t)));
    rows.push(("per message: total (wall)".into(), per(wall)));
    rows.push((
        "per message: total (CPU, /proc)".into(),
        format!("{:.1} µs", cpu * 1e6 / iterations as f64),
    ));
    let snap = cache.snapshot(unix_ms(SystemTime::now()));
    rows.push((
        "/funding body size".into(),
        format!("{} KB", snap.all.len() / 1024),
    ));
}

/// The real binary, killed on drop.
struct App {
    child: Child,
    http: String,
    /// Its state directory, removed after the process has stopped.
    _dir: tempfile::TempDir,
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

fn start_app(fake: &FakeBinance) -> App {
    let dir = tempfile::Builder::new()
        .prefix("volspike-bench-")
        .tempdir()
        .expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_volspike"))
        .args(["run", "--local"])
        .env("BINANCE_WS_URL", fake.ws_url())
        .env("BINANCE_FAPI_URL", fake.rest_url())
        .env("VOLSPIKE_HTTP_ADDR", "127.0.0.1:0")
        .env("VOLSPIKE_STATE_DIR", dir.path())
        .env("VOLSPIKE_LOG", "warn,volspike::cmd::run=info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn volspike");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ready") {
                if let Some(i) = line.find("http=") {
                    let addr: String = line[i + 5..]
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                        .collect();
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let http = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("volspike logged ready");
    App {
        child,
        http,
        _dir: dir,
    }
}

/// A keep-alive HTTP/1.1 client.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: &str) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        Client {
            stream: BufReader::new(stream),
        }
    }

    /// Status and body length.
    fn get(&mut self, target: &str) -> Option<(u16, usize)> {
        self.stream
            .get_mut()
            .write_all(format!("GET {target} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
            .ok()?;
        let mut line = String::new();
        self.stream.read_line(&mut line).ok()?;
        let status = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).ok()?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().ok()?;
                }
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).ok()?;
        Some((status, length))
    }
}

/// Runs `CLIENT_THREADS` keep-alive clients for `LOAD_SECONDS` on targets
/// from `pick`; returns (requests/s, p50 µs, p99 µs, non-200 count).
fn load(addr: &str, pick: fn(usize) -> String) -> (f64, f64, f64, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..CLIENT_THREADS)
        .map(|t| {
            let addr = addr.to_string();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client = Client::connect(&addr);
                let mut lat = Vec::with_capacity(100_000);
                let mut bad = 0;
                let mut i = t * 7919;
                while !stop.load(Ordering::Relaxed) {
                    let target = pick(i);
                    i += 1;
                    let t0 = Instant::now();
                    match client.get(&target) {
                        Some((200, _)) => lat.push(t0.elapsed()),
                        Some(_) => bad += 1,
                        None => {
                            bad += 1;
                            client = Client::connect(&addr);
                        }
                    }
                }
                (lat, bad)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(LOAD_SECONDS));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut bad = 0;
    for t in threads {
        if let Ok((lat, b)) = t.join() {
            all.extend(lat);
            bad += b;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e6)
            .unwrap_or(f64::NAN)
    };
    (all.len() as f64 / secs, pct(0.50), pct(0.99), bad)
}

fn one_symbol(i: usize) -> String {
    // Mixed case on purpose: the lookup is case-insensitive.
    match i % 3 {
        0 => "/funding/btcusdt".into(),
        1 => format!("/funding/SYM{:04}USDT", i % 598 + 1),
        _ => "/funding/EthUsdt".into(),
    }
}

fn everything(_: usize) -> String {
    "/funding".into()
}

fn batch(_: usize) -> String {
    "/funding/batch?symbols=BTCUSDT,ETHUSDT,SYM0001USDT,SYM0100USDT,SYM0200USDT,NOPEUSDT".into()
}

fn end_to_end(rows: &mut Vec<(String, String)>) {
    // 598 synthetic perpetuals + BTC + ETH = 600, plus 5 filtered-out symbols.
    let fake = FakeBinance::start(Market::synthetic(SYMBOLS)).expect("fake binance");
    fake.ws_set_interval(Duration::from_secs(1));
    let app = start_app(&fake);
    let pid = app.child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut c = Client::connect(&app.http);
        if let Some((200, _)) = c.get("/funding/SYM0500USDT") {
            break;
        }
        assert!(Instant::now() < deadline, "stream never filled the cache");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Idle streaming cost: 1 markPrice + 1 ticker frame of 605 symbols a second.
    let cpu0 = cpu_seconds(&pid);
    std::thread::sleep(Duration::from_secs(10));
    let idle_cpu = (cpu_seconds(&pid) - cpu0) / 10.0;
    rows.push((
        "binary: CPU while streaming (2 frames/s)".into(),
        format!("{:.2} % of one core", idle_cpu * 100.0),
    ));
    rows.push((
        "binary: RSS streaming, before load".into(),
        status_kb(&pid, "VmRSS:"),
    ));
    for (name, pick) in [
        ("GET /funding/{symbol}", one_symbol as fn(usize) -> String),
        ("GET /funding/batch (6 names)", batch),
        ("GET /funding (605 symbols)", everything),
    ] {
        let (rps, p50, p99, bad) = load(&app.http, pick);
        rows.push((
            format!("{name}: requests/s ({CLIENT_THREADS} keep-alive clients)"),
            format!("{rps:.0}"),
        ));
        rows.push((
            format!("{name}: latency p50 / p99"),
            format!(
                "{p50:.0} µs / {p99:.0} µs{}",
                if bad > 0 {
                    format!(" ({bad} non-200)")
                } else {
                    String::new()
                }
            ),
        ));
    }
    rows.push((
        "binary: RSS after load (VmRSS)".into(),
        status_kb(&pid, "VmRSS:"),
    ));
    rows.push(("binary: peak RSS (VmHWM)".into(), status_kb(&pid, "VmHWM:")));
    rows.push(("binary: threads".into(), status_kb(&pid, "Threads:")));
    drop(app);
}
