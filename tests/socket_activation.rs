//! Socket activation as systemd does it (`LISTEN_FDS=1`, fd 3, `LISTEN_PID`),
//! with the test in systemd's place: it holds the listening socket, passes it
//! to `volspike run`, and keeps it open while the process is replaced, so a
//! client that connects in between waits in the backlog and is answered by
//! the next process instead of being refused.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{bin, free_port, http_get, wait_until, TempDir};

/// Starts `volspike run --local` with `fd` as its fd 3 and the systemd
/// variables naming the process itself (a shell exports `LISTEN_PID=$$`,
/// then execs, so the pid is the one volspike runs as).
fn run_with_fd3(dir: &TempDir, log: &str, fd: RawFd, configured: &str) -> Child {
    let stderr = std::fs::File::create(dir.join(log)).expect("log file");
    let mut shell = Command::new("sh");
    shell
        .arg("-c")
        .arg("export LISTEN_PID=$$ LISTEN_FDS=1; exec \"$0\" run --local")
        .arg(bin())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("VOLSPIKE_HTTP_ADDR", configured)
        .env("VOLSPIKE_STATE_DIR", dir.join("state"))
        .env("BINANCE_FAPI_URL", "http://127.0.0.1:9")
        .env("BINANCE_WS_URL", "ws://127.0.0.1:9/market")
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
    common::signal(child.id(), "TERM");
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
    let mut app = common::Running::start(
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
