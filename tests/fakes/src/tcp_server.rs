//! A TCP accept loop with a registry of open connections.
//!
//! Both the HTTP servers and the WebSocket server sit on top of this: it owns
//! the listener, hands every accepted socket to a handler on its own thread,
//! and can close every registered socket at once (TCP shutdown, no goodbye at
//! the protocol level), which is how the fakes model an outage.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::sync::lock;

/// Handler run on a fresh thread for every accepted socket.
pub(crate) type ConnHandler = Arc<dyn Fn(TcpStream, Arc<Connections>) + Send + Sync>;

/// Registry of the sockets a server currently considers open.
#[derive(Default)]
pub(crate) struct Connections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, TcpStream>>,
}

impl Connections {
    /// Registers `stream`; the connection counts as open until the returned
    /// guard is dropped or [`Connections::shutdown_all`] runs.
    pub(crate) fn register(self: &Arc<Self>, stream: &TcpStream) -> io::Result<ConnGuard> {
        let clone = stream.try_clone()?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.open).insert(id, clone);
        Ok(ConnGuard {
            id,
            conns: Arc::clone(self),
        })
    }

    /// Number of registered (open) connections.
    pub(crate) fn len(&self) -> usize {
        lock(&self.open).len()
    }

    /// Shuts down every registered socket in both directions and forgets it.
    ///
    /// Threads blocked on these sockets wake up with EOF or an error; threads
    /// polling [`ConnGuard::is_open`] see `false`.
    pub(crate) fn shutdown_all(&self) {
        let open: Vec<TcpStream> = lock(&self.open).drain().map(|(_, s)| s).collect();
        for stream in open {
            // The peer may already be gone; nothing to do about it.
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Membership of one connection in a [`Connections`] registry.
pub(crate) struct ConnGuard {
    id: u64,
    conns: Arc<Connections>,
}

impl ConnGuard {
    /// False once the connection was dropped through
    /// [`Connections::shutdown_all`]: the owner must stop using the socket.
    pub(crate) fn is_open(&self) -> bool {
        lock(&self.conns.open).contains_key(&self.id)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        lock(&self.conns.open).remove(&self.id);
    }
}

/// A listening socket whose accept loop runs on a background thread.
pub(crate) struct TcpServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<Connections>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    /// Binds `addr` and starts accepting; each socket goes to `handler` on a
    /// new thread.
    pub(crate) fn bind(addr: &str, handler: ConnHandler) -> io::Result<TcpServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Connections::default());
        let thread = {
            let stop = Arc::clone(&stop);
            let conns = Arc::clone(&conns);
            thread::Builder::new()
                .name(format!("accept-{addr}"))
                .spawn(move || accept_loop(listener, stop, conns, handler))?
        };
        Ok(TcpServer {
            addr,
            stop,
            conns,
            thread: Some(thread),
        })
    }

    /// The address actually bound (with the real port when bound to port 0).
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The registry of open connections.
    pub(crate) fn connections(&self) -> &Arc<Connections> {
        &self.conns
    }

    /// Stops accepting, closes the listener (the port then refuses
    /// connections) and shuts down every registered connection.
    ///
    /// Returns once the listening socket is closed.
    pub(crate) fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wake the blocking accept(); the loop sees the flag and returns,
            // dropping the listener.
            if let Ok(wake) = TcpStream::connect(self.addr) {
                let _ = wake.shutdown(Shutdown::Both);
            }
            let _ = thread.join();
        }
        self.conns.shutdown_all();
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    conns: Arc<Connections>,
    handler: ConnHandler,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // Transient accept errors (EMFILE, ECONNABORTED): keep serving.
            continue;
        };
        let handler = Arc::clone(&handler);
        let conns = Arc::clone(&conns);
        let spawned = thread::Builder::new()
            .name("fake-conn".into())
            .spawn(move || handler(stream, conns));
        // Out of threads: the socket is dropped (closed), like an overloaded server.
        drop(spawned);
    }
}
