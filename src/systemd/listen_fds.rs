//! The HTTP listener handed over by systemd (socket activation), or one we
//! bind ourselves when run by hand.
//!
//! Under `volspike.socket` systemd owns the listening socket and passes it
//! to every start of the service as fd 3 (`LISTEN_FDS=1`, `LISTEN_PID`, the
//! `sd_listen_fds(3)` protocol). Because systemd keeps it open while the
//! service restarts or swaps binaries, clients connecting in that window
//! wait in the socket's backlog instead of being refused.
//!
//! The environment is read and cleared once, at the start of `run` before
//! any thread exists ([`take_from_env`]), so the variables do not leak into
//! child processes and clearing them cannot race another thread reading the
//! environment. [`http_listener`] later turns what was taken into the
//! listener, or binds the configured address when nothing was passed.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, RawFd};
use std::sync::Mutex;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// What `run` found in its environment at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Passed {
    /// No socket from systemd (run by hand, or a unit without a socket).
    Nothing,
    /// One listening socket, the descriptor to adopt.
    Socket(RawFd),
    /// The environment is malformed or passes a number of sockets we do
    /// not expect; why.
    Invalid(String),
}

/// Taken at start, adopted by [`http_listener`] (at most once).
static TAKEN: Mutex<Option<Passed>> = Mutex::new(None);

/// Judges `LISTEN_PID`/`LISTEN_FDS` (pure: the values and our pid are
/// arguments). Like `sd_listen_fds`, variables meant for another process
/// (our parent, when it exec'd us without clearing them) mean "nothing".
pub(crate) fn judge(listen_pid: Option<&str>, listen_fds: Option<&str>, our_pid: u32) -> Passed {
    let (Some(pid), Some(fds)) = (listen_pid, listen_fds) else {
        return Passed::Nothing;
    };
    match pid.trim().parse::<u32>() {
        Ok(pid) if pid == our_pid => {}
        Ok(_) => return Passed::Nothing,
        Err(_) => return Passed::Invalid(format!("LISTEN_PID={pid:?} is not a process id")),
    }
    match fds.trim().parse::<u32>() {
        Ok(0) => Passed::Nothing,
        Ok(1) => Passed::Socket(LISTEN_FDS_START),
        Ok(n) => Passed::Invalid(format!(
            "systemd passed {n} sockets (LISTEN_FDS={n}); volspike.socket must hold exactly one ListenStream="
        )),
        Err(_) => Passed::Invalid(format!("LISTEN_FDS={fds:?} is not a number")),
    }
}

/// Reads and clears `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`, and
/// marks a passed descriptor close-on-exec (what `sd_listen_fds(1)` does).
///
/// Call at the start of `run`, before any thread is spawned: clearing the
/// environment is only sound while no other thread may read it.
pub(crate) fn take_from_env() {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let passed = judge(pid.as_deref(), fds.as_deref(), std::process::id());
    // SAFETY: `run` calls this before it starts the runtime or any thread
    // (see the doc comment), so nothing reads the environment concurrently.
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    if let Passed::Socket(fd) = passed {
        // SAFETY: fcntl on a descriptor number only reads/sets its flags; a
        // closed descriptor fails with EBADF, reported when it is adopted.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    if let Ok(mut taken) = TAKEN.lock() {
        *taken = Some(passed);
    }
}

/// The HTTP listener: the socket systemd passed (then `true`), or `addr`
/// bound here (`false`).
///
/// A passed descriptor that is not a listening TCP socket is an error (the
/// socket unit was edited into something else), not a silent fallback: a
/// fallback would bind the address systemd already holds and fail anyway.
pub(crate) fn http_listener(addr: SocketAddr) -> anyhow::Result<(TcpListener, bool)> {
    let passed = TAKEN
        .lock()
        .ok()
        .and_then(|mut taken| taken.take())
        .unwrap_or(Passed::Nothing);
    match passed {
        Passed::Nothing => TcpListener::bind(addr)
            .map(|listener| (listener, false))
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (VOLSPIKE_HTTP_ADDR): {e}")),
        Passed::Invalid(why) => Err(anyhow::anyhow!("socket activation: {why}")),
        Passed::Socket(fd) => adopt(fd, addr).map(|listener| (listener, true)),
    }
}

/// Takes ownership of `fd` after checking it is a listening TCP socket.
fn adopt(fd: RawFd, configured: SocketAddr) -> anyhow::Result<TcpListener> {
    if !is_listening_stream(fd) {
        anyhow::bail!(
            "socket activation: fd {fd} from systemd is not a listening stream socket (check volspike.socket: one ListenStream=)"
        );
    }
    // SAFETY: systemd passed this descriptor to us alone (LISTEN_PID is our
    // pid), `take_from_env` handed it out once, and it is a socket.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let bound = listener.local_addr().map_err(|e| {
        anyhow::anyhow!("socket activation: fd {fd} from systemd is not a TCP socket: {e}")
    })?;
    if bound != configured {
        tracing::warn!(
            socket = %bound,
            configured = %configured,
            "serving HTTP on the address volspike.socket holds, not VOLSPIKE_HTTP_ADDR; run `volspike install` again to move the socket"
        );
    }
    tracing::info!(http = %bound, "HTTP listener from systemd (volspike.socket): connections wait in its backlog across restarts");
    Ok(listener)
}

/// Whether `fd` is an open stream socket in the listening state.
fn is_listening_stream(fd: RawFd) -> bool {
    let option = |name: libc::c_int| -> Option<libc::c_int> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `value`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                name,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(value)
    };
    option(libc::SO_TYPE) == Some(libc::SOCK_STREAM) && option(libc::SO_ACCEPTCONN) == Some(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn one_socket_for_us_is_fd_3() {
        assert_eq!(judge(Some("42"), Some("1"), 42), Passed::Socket(3));
    }

    #[test]
    fn nothing_passed_or_passed_to_another_process_means_bind() {
        assert_eq!(judge(None, None, 42), Passed::Nothing);
        assert_eq!(judge(Some("42"), None, 42), Passed::Nothing);
        assert_eq!(judge(None, Some("1"), 42), Passed::Nothing);
        // Meant for our parent, which exec'd us without clearing them.
        assert_eq!(judge(Some("41"), Some("1"), 42), Passed::Nothing);
        assert_eq!(judge(Some("42"), Some("0"), 42), Passed::Nothing);
    }

    #[test]
    fn malformed_or_several_sockets_are_errors() {
        for (pid, fds) in [("x", "1"), ("42", "one"), ("42", "2")] {
            match judge(Some(pid), Some(fds), 42) {
                Passed::Invalid(why) => assert!(why.contains("LISTEN_"), "{why}"),
                other => panic!("{pid}/{fds}: {other:?}"),
            }
        }
    }

    #[test]
    fn only_a_listening_stream_socket_is_adopted() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        assert!(is_listening_stream(listener.as_raw_fd()));
        let addr = listener.local_addr().expect("addr");
        let connected = std::net::TcpStream::connect(addr).expect("connect");
        assert!(!is_listening_stream(connected.as_raw_fd()));
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
        assert!(!is_listening_stream(udp.as_raw_fd()));
        let file = std::fs::File::open("/dev/null").expect("/dev/null");
        assert!(!is_listening_stream(file.as_raw_fd()));
    }
}
