//! Socket activation as systemd does it (`LISTEN_FDS=1`, fd 3, `LISTEN_PID`),
//! with the test in systemd's place: it holds the listening socket, passes it
//! to `volspike run`, and keeps it open while the process is replaced, so a
//! client that connects in between waits in the backlog and is answered by
//! the next process instead of being refused, and a client on a kept-alive
//! connection loses no request when the process is replaced under it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{bin, free_port, http_get, wait_until, TempDir};

/// Starts `volspike run --local` with `fd` as its fd 3 and the systemd
/// variables naming the process itself (a shell exports `LISTEN_PID=$$`,
/// then execs, so the pid is the one volspike runs as).
fn run_with_fd3(dir: &TempDir, log: &str, fd: RawFd, configured: &str) -> Child {
    let nowhere = [
        ("BINANCE_FAPI_URL", "http://127.0.0.1:9"),
        ("BINANCE_WS_URL", "ws://127.0.0.1:9/market"),
    ];
    run_with_fd3_and(dir, log, fd, configured, &nowhere, &[])
}

/// [`run_with_fd3`] with `env` added and `args` after `run --local`.
fn run_with_fd3_and(
    dir: &TempDir,
    log: &str,
    fd: RawFd,
    configured: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> Child {
    let stderr = std::fs::File::create(dir.join(log)).expect("log file");
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg("export LISTEN_PID=$$ LISTEN_FDS=1; bin=$0; exec \"$bin\" run --local \"$@\"")
        .arg(bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("VOLSPIKE_HTTP_ADDR", configured)
        .env("VOLSPIKE_STATE_DIR", dir.join("state"))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: only dup2 and fcntl, which are async-signal-safe, run between
    // fork and exec.
    unsafe {
        shell.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec set: clear it instead.
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    shell.spawn().expect("starting volspike run with fd 3")
}

fn stop(child: &mut Child) {
    crate::common::signal(child.id(), "TERM");
    let exited = wait_until(Duration::from_secs(20), || child.try_wait().ok().flatten());
    assert!(exited.is_some(), "volspike did not stop on SIGTERM");
}

fn log_of(dir: &TempDir, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

#[test]
fn the_passed_socket_is_served_and_a_client_waits_across_a_restart() {
    let dir = TempDir::new("socket-activation");
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("addr").to_string();
    // VOLSPIKE_HTTP_ADDR names another port: the passed socket wins, loudly.
    let configured = format!("127.0.0.1:{}", free_port());

    let mut first = run_with_fd3(&dir, "first.log", held.as_raw_fd(), &configured);
    // Any answer proves the socket was adopted (/health may still say 503
    // while the loops start: no Binance here).
    let health = wait_until(Duration::from_secs(60), || http_get(&addr, "/health").ok());
    let (status, _) = health.unwrap_or_else(|| {
        panic!(
            "no /health on the passed socket: {}",
            log_of(&dir, "first.log")
        )
    });
    assert!(status == 200 || status == 503, "/health answered {status}");
    assert!(
        TcpStream::connect(&configured).is_err(),
        "it bound VOLSPIKE_HTTP_ADDR too"
    );
    let log = log_of(&dir, "first.log");
    assert!(log.contains("HTTP listener from systemd"), "{log}");
    assert!(log.contains("not VOLSPIKE_HTTP_ADDR"), "{log}");

    stop(&mut first);
    // Nobody serves now, but the socket is still open (we hold it, as
    // systemd does): the connection is accepted by the kernel and waits.
    let mut waiting = TcpStream::connect(&addr).expect("connect while no process serves");
    waiting
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        waiting,
        "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request while no process serves");

    let mut second = run_with_fd3(&dir, "second.log", held.as_raw_fd(), &configured);
    let mut reply = String::new();
    let read = waiting.read_to_string(&mut reply);
    stop(&mut second);
    read.unwrap_or_else(|e| panic!("no answer: {e}; {}", log_of(&dir, "second.log")));
    assert!(
        reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.1 503"),
        "the waiting client got {reply:?}"
    );
    assert!(
        reply.contains("\"version\""),
        "not a /health answer: {reply:?}"
    );
}

#[test]
fn variables_meant_for_another_process_are_ignored_and_it_binds_itself() {
    let dir = TempDir::new("socket-other-pid");
    // LISTEN_PID of another process: what a parent that exec'd us without
    // clearing the variables leaves behind.
    let mut app = crate::common::Running::start(
        &dir,
        &["--local"],
        &[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")],
    );
    assert!(app.wait_http(), "no /health: {}", app.log_text());
    assert!(!app.log_text().contains("HTTP listener from systemd"));
    app.terminate();
    assert!(app.wait_exit(Duration::from_secs(20)).is_some());
}

#[test]
fn a_passed_descriptor_that_is_not_a_listening_socket_is_refused() {
    let dir = TempDir::new("socket-not-listening");
    let file = std::fs::File::open("/dev/null").expect("/dev/null");
    let configured = format!("127.0.0.1:{}", free_port());
    let mut child = run_with_fd3(&dir, "run.log", file.as_raw_fd(), &configured);
    let status = wait_until(Duration::from_secs(30), || child.try_wait().ok().flatten())
        .expect("volspike did not exit");
    assert_eq!(status.code(), Some(1), "{}", log_of(&dir, "run.log"));
    let log = log_of(&dir, "run.log");
    assert!(
        log.contains("fd 3 from systemd is not a listening stream socket"),
        "{log}"
    );
}

/// What one load client saw.
#[derive(Debug, Default)]
struct Tally {
    /// 200 answers.
    ok: u64,
    /// 503 "no funding data yet" answers.
    not_ready: u64,
    /// Any other answer.
    other: u64,
    /// Requests that got no answer (connect, write or read failed, or the
    /// connection closed before a whole answer): what must stay 0.
    failed: u64,
    /// Answers that said `Connection: close` on a connection we asked to
    /// keep alive: the old process's last answer on that connection.
    closed_by_server: u64,
    /// The first failures, for the assertion message.
    failures: Vec<String>,
}

/// One answer on a kept-alive connection: status, body, whether the server
/// closes after it.
fn read_answer(reader: &mut BufReader<TcpStream>) -> std::io::Result<(u16, String, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::Error::other("closed before an answer"));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let (mut length, mut close) = (0usize, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::other("closed inside the head"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(std::io::Error::other)?;
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned(), close))
}

/// Asks `path` on `addr` until `stop`: on one kept-alive connection (a new
/// one only after the server says `Connection: close`), or with
/// `Connection: close` on a new connection per request.
fn load_client(addr: String, path: &'static str, keep_alive: bool, stop: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let header = if keep_alive { "keep-alive" } else { "close" };
    while !stop.load(Ordering::Relaxed) {
        let answer = (|| {
            if conn.is_none() {
                let stream = TcpStream::connect(&addr)?;
                // Generous: the swap (stop, start, first funding data) is
                // spent waiting in the backlog.
                stream.set_read_timeout(Some(Duration::from_secs(30)))?;
                conn = Some(BufReader::new(stream));
            }
            let reader = conn
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no connection"))?;
            write!(
                reader.get_mut(),
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: {header}\r\n\r\n"
            )?;
            read_answer(reader)
        })();
        match answer {
            Ok((status, body, close)) => {
                match status {
                    200 => tally.ok += 1,
                    503 if body.contains("no funding data yet") => tally.not_ready += 1,
                    _ => tally.other += 1,
                }
                if close || !keep_alive {
                    tally.closed_by_server += u64::from(close && keep_alive);
                    conn = None;
                }
            }
            Err(e) => {
                tally.failed += 1;
                if tally.failures.len() < 5 {
                    tally.failures.push(e.to_string());
                }
                conn = None;
            }
        }
    }
    tally
}

#[test]
fn keep_alive_and_new_connections_lose_no_request_across_a_swap() {
    let dir = TempDir::new("socket-swap-load");
    let fake = crate::common::market::fake_binance();
    let (rest, ws) = (fake.rest_url(), fake.ws_url());
    let env = [
        ("BINANCE_FAPI_URL", rest.as_str()),
        ("BINANCE_WS_URL", ws.as_str()),
    ];
    let args = ["--only", "funding_stream"];
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("addr").to_string();
    let configured = addr.clone();
    const PATH: &str = "/funding/AAAUSDT";

    let mut first = run_with_fd3_and(
        &dir,
        "first.log",
        held.as_raw_fd(),
        &configured,
        &env,
        &args,
    );
    let served = wait_until(Duration::from_secs(60), || {
        http_get(&addr, PATH)
            .ok()
            .filter(|(status, _)| *status == 200)
    });
    assert!(
        served.is_some(),
        "no 200 from {PATH}: {}",
        log_of(&dir, "first.log")
    );

    // Four kept-alive clients and two opening a connection per request,
    // all asking without a pause, like wrk and curl loops.
    let stop_load = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (addr, stop_load) = (addr.clone(), stop_load.clone());
            std::thread::spawn(move || load_client(addr, PATH, i < 4, stop_load))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let swap = Instant::now();
    stop(&mut first);
    let mut second = run_with_fd3_and(
        &dir,
        "second.log",
        held.as_raw_fd(),
        &configured,
        &env,
        &args,
    );
    // The first process has exited: a 200 now comes from the second.
    let serving = wait_until(Duration::from_secs(60), || {
        http_get(&addr, PATH)
            .ok()
            .filter(|(status, _)| *status == 200)
    });
    let swapped_in = swap.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    stop_load.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = clients
        .into_iter()
        .map(|c| c.join().expect("load client panicked"))
        .collect();
    stop(&mut second);
    assert!(
        serving.is_some(),
        "second process never ready: {}",
        log_of(&dir, "second.log")
    );

    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let (ok, not_ready, other, failed) = (
        sum(|t| t.ok),
        sum(|t| t.not_ready),
        sum(|t| t.other),
        sum(|t| t.failed),
    );
    eprintln!(
        "swap in {swapped_in:?}: ok={ok} not_ready={not_ready} other={other} failed={failed} closed_by_server={}",
        sum(|t| t.closed_by_server)
    );
    let first_log = log_of(&dir, "first.log");
    assert_eq!(
        failed,
        0,
        "requests lost across the swap: {:?}\nfirst: {first_log}",
        tallies
            .iter()
            .flat_map(|t| t.failures.clone())
            .collect::<Vec<_>>()
    );
    assert_eq!(other, 0, "unexpected answers: {tallies:?}");
    // The second process accepted only once its funding cache had data
    // (bounded at 5 s; the fake Binance is local), so nobody was told
    // "no funding data yet".
    let second_log = log_of(&dir, "second.log");
    assert!(
        second_log.contains("first funding data; accepting"),
        "{second_log}"
    );
    assert_eq!(
        not_ready, 0,
        "503 not-ready answers after the swap: {tallies:?}"
    );
    assert!(ok > 0, "{tallies:?}");
    // Every kept-alive client was told to close by the old process rather
    // than cut, and the old process said it drained.
    for t in &tallies[..4] {
        assert!(
            t.closed_by_server >= 1,
            "a kept-alive client was not told to close: {t:?}"
        );
    }
    assert!(
        first_log.contains("HTTP connections drained"),
        "{first_log}"
    );
}
