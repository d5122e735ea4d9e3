//! The real binary's HTTP server against hostile clients, under systemd's
//! default descriptor limit (`ulimit -n 1024`) and a small task limit (a
//! pids cgroup of 64 tasks where this machine lets the test make one):
//! 2,000 slow or non-reading clients, endless header lines, HTTP/2
//! prefaces, bare-LF requests and non-UTF-8 paths. Figures are printed
//! (`--nocapture`); the assertions are generous bounds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{http_get, proc_status, wait_until, Running, TempDir};
use volspike_fakes::{FakeBinance, Market};

/// systemd's default soft `LimitNOFILE`.
const FD_LIMIT: u64 = 1024;
/// Tasks (threads) the server may have, when a pids cgroup is available.
const TASK_LIMIT: u64 = 64;
/// Every job switched off: a quiet process for memory measurements.
const NO_JOBS: &str =
    "funding_stream,funding_health,volume_spike,liquid_universe,open_interest,user_alerts,telegram";
const MIB: u64 = 1024;

/// Lets this test process open thousands of sockets. Only ever raises the
/// soft limit: the other modules' tests share this process.
fn raise_own_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_cur.max(limit.rlim_max.min(65_536));
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A pids cgroup holding the server, removed on drop.
struct TaskLimit {
    dir: PathBuf,
    procs: std::fs::File,
}

impl TaskLimit {
    /// A cgroup allowing [`TASK_LIMIT`] tasks, if this machine has a
    /// writable pids controller (v1 or v2).
    fn new(tag: &str) -> Option<TaskLimit> {
        for base in ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"] {
            let dir =
                PathBuf::from(base).join(format!("volspike-test-{tag}-{}", std::process::id()));
            if std::fs::create_dir(&dir).is_err() {
                continue;
            }
            let opened =
                std::fs::write(dir.join("pids.max"), TASK_LIMIT.to_string()).and_then(|()| {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(dir.join("cgroup.procs"))
                });
            match opened {
                Ok(procs) => return Some(TaskLimit { dir, procs }),
                Err(_) => {
                    let _ = std::fs::remove_dir(&dir);
                }
            }
        }
        None
    }
}

impl Drop for TaskLimit {
    fn drop(&mut self) {
        // The cgroup can go once its process has exited.
        let _ = wait_until(Duration::from_secs(5), || {
            std::fs::remove_dir(&self.dir).ok()
        });
    }
}

/// `volspike run` with `ulimit -n 1024` and, when available, the task limit.
fn start_limited(
    dir: &TempDir,
    args: &[&str],
    env: &[(&str, &str)],
    tasks: Option<&TaskLimit>,
) -> Running {
    start_with_fd_limit(dir, args, env, tasks, FD_LIMIT)
}

/// `volspike run --local` with every job off, `ulimit -n fd_limit` and no
/// task limit, its HTTP server up.
fn start_quiet(dir: &TempDir, fd_limit: u64) -> Running {
    let app = start_with_fd_limit(
        dir,
        &["--local"],
        &[("VOLSPIKE_DISABLED_JOBS", NO_JOBS)],
        None,
        fd_limit,
    );
    assert!(app.wait_http(), "log:\n{}", app.log_text());
    app
}

/// `volspike run` with `ulimit -n fd_limit` and, when available, the task limit.
fn start_with_fd_limit(
    dir: &TempDir,
    args: &[&str],
    env: &[(&str, &str)],
    tasks: Option<&TaskLimit>,
    fd_limit: u64,
) -> Running {
    let procs_fd = tasks.map(|t| t.procs.as_raw_fd());
    Running::start_with(dir, args, env, |cmd: &mut Command| {
        // SAFETY: between fork and exec only async-signal-safe calls are
        // made (setrlimit, write), on memory prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                let nofile = libc::rlimit {
                    rlim_cur: fd_limit,
                    rlim_max: fd_limit,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if let Some(fd) = procs_fd {
                    // "0": move the writing process (the child) into the cgroup.
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    })
}

/// A client that sends half a head and then nothing.
fn slow_client(addr: &SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect_timeout(addr, Duration::from_secs(2)).ok()?;
    stream.write_all(b"GET /health HTTP/1.1\r\nX-Slow: ").ok()?;
    Some(stream)
}

/// A client with a tiny receive buffer that asks for `/funding` (~100 KB)
/// three times and never reads.
fn non_reader(addr: &SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket.set_recv_buffer_size(4096).ok()?;
    socket
        .connect_timeout(&(*addr).into(), Duration::from_secs(2))
        .ok()?;
    let mut stream: TcpStream = socket.into();
    stream
        .write_all(&b"GET /funding HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3))
        .ok()?;
    Some(stream)
}

/// One `/health` on a fresh connection: how long it took and its status.
fn probe(addr: &SocketAddr) -> (Duration, u16) {
    let started = Instant::now();
    let status = (|| {
        let mut stream = TcpStream::connect_timeout(addr, Duration::from_secs(5)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).ok()?;
        let text = String::from_utf8_lossy(&reply);
        text.split_whitespace().nth(1)?.parse().ok()
    })()
    .unwrap_or(0);
    (started.elapsed(), status)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn health(addr: &str) -> serde_json::Value {
    http_get(addr, "/health")
        .ok()
        .and_then(|(_, body)| serde_json::from_str(&body).ok())
        .unwrap_or_default()
}

#[test]
fn two_thousand_slow_and_non_reading_clients_leave_health_answering() {
    raise_own_fd_limit();
    let fake = FakeBinance::start(Market::synthetic(600)).expect("fake binance");
    let dir = TempDir::new("hostile-2000");
    let tasks = TaskLimit::new("hostile");
    let (ws, rest) = (fake.ws_url(), fake.rest_url());
    let app = start_limited(
        &dir,
        &["--local", "--only", "funding_stream"],
        &[
            ("BINANCE_WS_URL", ws.as_str()),
            ("BINANCE_FAPI_URL", rest.as_str()),
        ],
        tasks.as_ref(),
    );
    let pid = app.child.id();
    let funding_len = wait_until(Duration::from_secs(60), || {
        let (status, body) = http_get(&app.addr, "/funding").ok()?;
        (status == 200 && body.len() > 50_000).then_some(body.len())
    })
    .unwrap_or_else(|| panic!("/funding never filled; log:\n{}", app.log_text()));
    let threads_before = proc_status(pid, "Threads");
    let addr: SocketAddr = app.addr.parse().expect("address");

    // 2,000 hostile connections, half silent, half not reading.
    let mut hostile: Vec<TcpStream> = (0..2000)
        .filter_map(|i| {
            if i % 2 == 0 {
                slow_client(&addr)
            } else {
                non_reader(&addr)
            }
        })
        .collect();
    let opened = hostile.len();

    // More keep coming while /health is measured.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut more = Vec::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                more.extend(if i % 2 == 0 {
                    slow_client(&addr)
                } else {
                    non_reader(&addr)
                });
                std::thread::sleep(Duration::from_millis(5));
            }
            more.len()
        })
    };
    let mut latencies = Vec::new();
    let mut statuses = Vec::new();
    let (mut max_rss, mut max_threads) = (0, 0);
    for _ in 0..200 {
        let (took, status) = probe(&addr);
        latencies.push(took);
        statuses.push(status);
        max_rss = max_rss.max(proc_status(pid, "VmRSS"));
        max_threads = max_threads.max(proc_status(pid, "Threads"));
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let churned = churn.join().unwrap_or(0);
    let during = health(&app.addr);
    latencies.sort();
    let (p50, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    eprintln!(
        "hostile: {opened} + {churned} connections; /health p50 {p50:?} p99 {p99:?} max {max:?}; \
         RSS max {max_rss} KiB, peak {} KiB; threads {threads_before} before, {max_threads} max; \
         task limit: {}; server: {}",
        proc_status(pid, "VmHWM"),
        if tasks.is_some() {
            "pids cgroup, 64"
        } else {
            "none available"
        },
        during["http"]
    );
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(failed.is_empty(), "some /health probes failed: {failed:?}");
    assert!(p99 < Duration::from_millis(500), "p99 {p99:?}");
    assert!(max_rss < 32 * MIB, "RSS {max_rss} KiB");
    assert!(
        max_threads <= threads_before + 2,
        "a thread per connection? {threads_before} → {max_threads}"
    );
    assert!(
        during["http"]["evicted"].as_u64().unwrap_or(0) > 0,
        "{during}"
    );
    assert!(
        during["http"]["openConnections"]
            .as_u64()
            .unwrap_or(u64::MAX)
            <= during["http"]["limits"]["maxConnections"]
                .as_u64()
                .unwrap_or(0)
                + 16,
        "{during}"
    );

    // They leave: the server serves normally and holds nothing for them.
    hostile.clear();
    let settled = wait_until(Duration::from_secs(30), || {
        let h = health(&app.addr);
        (h["http"]["openConnections"].as_u64()? <= 1).then_some(())
    });
    assert!(settled.is_some(), "{}", health(&app.addr));
    let (status, body) = http_get(&app.addr, "/funding").expect("/funding after");
    assert_eq!(status, 200);
    assert!(
        body.len() + 1000 > funding_len,
        "{} vs {funding_len}",
        body.len()
    );
    assert_eq!(
        http_get(&app.addr, "/health").expect("/health after").0,
        200
    );
    assert!(app.log_text().contains("HTTP limits"), "limits are logged");
}

/// Sends a head whose one header line is `total` bytes long; returns how
/// much the server took before closing, and its reply.
fn send_endless_header(addr: SocketAddr, total: usize) -> (usize, Vec<u8>) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return (0, Vec::new());
    };
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let _ = stream.write_all(b"GET /health HTTP/1.1\r\nX-Endless: ");
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        match stream.write(&chunk) {
            Ok(n) if n > 0 => sent += n,
            _ => break,
        }
    }
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    (sent, reply)
}

#[test]
fn endless_header_lines_cost_no_memory() {
    let dir = TempDir::new("hostile-header");
    let app = start_quiet(&dir, FD_LIMIT);
    let pid = app.child.id();
    for _ in 0..20 {
        let _ = http_get(&app.addr, "/health");
    }
    let peak_before = proc_status(pid, "VmHWM");
    let addr: SocketAddr = app.addr.parse().expect("address");

    // One connection streaming a 300 MB header line.
    let (sent, reply) = send_endless_header(addr, 300 * 1024 * 1024);
    let one = proc_status(pid, "VmHWM");
    // Then 20 connections × 4 MB at once.
    let many: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || send_endless_header(addr, 4 * 1024 * 1024).0))
        .collect();
    let sent_many: usize = many.into_iter().map(|t| t.join().unwrap_or(0)).sum();
    let peak_after = proc_status(pid, "VmHWM");
    eprintln!(
        "endless header: server took {sent} of 300 MB before closing; peak RSS {peak_before} → {one} KiB; \
         20 × 4 MB: took {sent_many} bytes, peak → {peak_after} KiB; reply {:?}",
        String::from_utf8_lossy(&reply[..reply.len().min(60)])
    );
    assert!(sent < 300 * 1024 * 1024, "the server read the whole line");
    assert!(
        peak_after - peak_before < MIB,
        "{peak_before} → {peak_after} KiB"
    );
    let json = health(&app.addr);
    assert!(
        json["http"]["rejectedHeads"].as_u64().unwrap_or(0) >= 1,
        "{json}"
    );
}

#[test]
fn odd_requests_are_answered_not_left_hanging() {
    let dir = TempDir::new("hostile-odd");
    let app = start_quiet(&dir, FD_LIMIT);
    let ask = |request: &[u8], wait: u64| -> String {
        let Ok(mut stream) = TcpStream::connect(&app.addr) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(wait)));
        let _ = stream.write_all(request);
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
        String::from_utf8_lossy(&reply).into_owned()
    };
    let cases: [(&[u8], &str); 5] = [
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 505 "),
        (
            b"GET /health HTTP/1.1\nConnection: close\n\n",
            "HTTP/1.1 200 ",
        ),
        (b"GET /fund\xffing HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "),
        (
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
            "HTTP/1.1 400 ",
        ),
        (b"GET /nowhere HTTP/1.0\r\n\r\n", "HTTP/1.0 404 "),
    ];
    for (request, expected) in cases {
        let started = Instant::now();
        let reply = ask(request, 5);
        assert!(
            reply.starts_with(expected),
            "{:?} → {reply:?}",
            String::from_utf8_lossy(request)
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "answered, not timed out"
        );
    }
    // A head that never ends is cut by the head timeout (10 s) with a 408.
    let started = Instant::now();
    let reply = ask(b"GET /health HTTP/1.1\r\nX-Slow: 1", 30);
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(health(&app.addr)["http"]["headTimeouts"], 1);
}

#[test]
fn out_of_descriptors_the_accept_loop_backs_off_and_goes_on() {
    raise_own_fd_limit();
    let dir = TempDir::new("hostile-emfile");
    // 24 descriptors: the connection cap (16 at least) plus what the process
    // already holds (16) runs out before the cap does: accept fails (EMFILE).
    let app = start_quiet(&dir, 24);
    let pid = app.child.id();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let addr: SocketAddr = app.addr.parse().expect("address");
    let hostile: Vec<TcpStream> = (0..200).filter_map(|_| slow_client(&addr)).collect();
    std::thread::sleep(Duration::from_secs(2));
    // Still accepting: /health gets through (an idle slot is evicted for it
    // once a descriptor is free), and the accept errors are counted.
    let started = Instant::now();
    let during = health(&app.addr);
    let took = started.elapsed();
    assert!(
        during["http"].is_object(),
        "/health while out of descriptors; log:\n{}",
        app.log_text()
    );
    drop(hostile);
    let after = wait_until(Duration::from_secs(30), || {
        let h = health(&app.addr);
        (h["http"]["openConnections"].as_u64()? <= 1).then_some(h)
    });
    eprintln!(
        "emfile: {fds} descriptors at start; /health during in {took:?}: {}; after: {:?}",
        during["http"],
        after.as_ref().map(|h| h["http"].clone())
    );
    let after = after.unwrap_or_else(|| panic!("never settled; log:\n{}", app.log_text()));
    assert!(
        after["http"]["acceptErrors"].as_u64().unwrap_or(0) > 0,
        "no accept failed, the test proved nothing: {}",
        after["http"]
    );
    assert_eq!(
        http_get(&app.addr, "/health").map(|(s, _)| s).ok(),
        Some(200)
    );
    let log = app.log_text();
    assert!(log.contains("HTTP accept failed; backing off"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
