//! One connection: read a head within its deadline and size limits, hand it
//! to a handler thread, write the reply within its deadline, repeat while
//! the client keeps the connection alive.
//!
//! At shutdown a connection serves at most the request in progress or one
//! that arrives within the grace, answers it with `Connection: close` and
//! closes (see [`super::drain`]).
//!
//! Everything here is async on the server's own runtime thread, so a slow or
//! silent client costs a small task and at most [`MAX_HEAD`](super::limits::MAX_HEAD)
//! bytes of buffer, never a thread.

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::drain;
use super::head::{self, Head, Parsed, Rejection};
use super::idle::IdleSet;
use super::limits::{Event, HttpLimits, HttpStats, OpenGuard};
use crate::http::reply::Reply;
use crate::http::requests::{self, RequestCounters};
use crate::shutdown::Shutdown;

/// Bytes asked of the socket per read while a head arrives.
const READ_CHUNK: usize = 2048;
/// Capacity a kept-alive connection's buffer shrinks back to between requests.
const KEEP_BUFFER: usize = 4096;

/// A request handed to a handler thread, with where its reply goes.
pub(crate) struct Job {
    /// The request method.
    pub method: String,
    /// The request target.
    pub target: String,
    /// Receives the reply.
    pub reply: oneshot::Sender<Reply>,
}

/// What every connection task shares.
pub(crate) struct Shared {
    /// The limits in force.
    pub limits: HttpLimits,
    /// Counters for `/health` and `/metrics`.
    pub stats: HttpStats,
    /// Connections waiting for a head (evictable at the cap).
    pub idle: IdleSet,
    /// The handler threads' bounded queue.
    pub jobs: SyncSender<Job>,
    /// Requests by route and status.
    pub requests: RequestCounters,
    /// Rate-limits the "server busy" warning.
    pub busy_log: super::rate_log::RateLimitedLog,
    /// Fires when the process stops: connections drain.
    pub stop: Shutdown,
}

/// How reading a head ended.
enum HeadOutcome {
    /// A head, and the bytes of the buffer it used.
    Head(Head, usize),
    /// Refused by the parser: answer its status, then close.
    Rejected(Rejection),
    /// The client closed (or reset) the connection.
    Closed,
    /// The head did not arrive within the head timeout.
    TimedOut,
    /// Pushed out by a newer connection at the cap.
    Evicted,
    /// Shutting down, and no (whole) request came within the drain grace.
    Drained,
}

/// Serves connection `id` until it closes, times out or is evicted.
pub(crate) async fn serve(mut stream: TcpStream, id: u64, shared: Arc<Shared>, _open: OpenGuard) {
    let mut buf: Vec<u8> = Vec::new();
    let mut stop = shared.stop.clone();
    loop {
        let evicted = shared.idle.enter(id);
        let outcome = read_head(&mut stream, &mut buf, &shared, evicted, &mut stop).await;
        shared.idle.leave(id);
        let (head, used) = match outcome {
            HeadOutcome::Head(head, used) => (head, used),
            HeadOutcome::Rejected(rejection) => {
                shared.stats.count(Event::RejectedHead);
                let reply = Reply::error(
                    rejection.status(),
                    &rejection.message(&shared.limits.head()),
                );
                shared.requests.record("other", reply.status);
                let _ = write_reply(&mut stream, &reply, (1, 1), false, true, &shared).await;
                return;
            }
            HeadOutcome::TimedOut => {
                shared.stats.count(Event::HeadTimeout);
                // Best effort: a client that sent part of a head may read this.
                if !buf.is_empty() {
                    let reply = Reply::error(408, "request head not received in time");
                    let _ = write_reply(&mut stream, &reply, (1, 1), false, true, &shared).await;
                }
                return;
            }
            HeadOutcome::Closed | HeadOutcome::Evicted => return,
            HeadOutcome::Drained => {
                // Our FIN first, so the client sees a clean close.
                let _ = stream.shutdown().await;
                return;
            }
        };
        buf.drain(..used);
        buf.shrink_to(KEEP_BUFFER);
        let reply = handle(&shared, &head).await;
        shared
            .requests
            .record(requests::route_template(&head.target), reply.status);
        // Stopping: this is the connection's last answer, and says so.
        let close = !head.keep_alive || stop.is_triggered();
        let head_only = head.method == "HEAD";
        // A client that does not read its reply waits on us like one that
        // sends no head: evictable too, or non-readers could fill the cap.
        let evicted = shared.idle.enter(id);
        let written = tokio::select! {
            written = write_reply(&mut stream, &reply, head.version, head_only, close, &shared) => written.is_ok(),
            _ = evicted => {
                shared.stats.count(Event::Evicted);
                false
            }
        };
        shared.idle.leave(id);
        if !written || close {
            if written && stop.is_triggered() {
                drain::linger(&mut stream).await;
            }
            return;
        }
    }
}

/// Reads into `buf` until it holds a whole head, a limit is passed, the
/// deadline passes, the client leaves or `evicted` fires. Once `stop` fires
/// the deadline shrinks to the drain grace: a request already on its way
/// is still read (and answered), an idle connection then ends.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    shared: &Shared,
    mut evicted: oneshot::Receiver<()>,
    stop: &mut Shutdown,
) -> HeadOutcome {
    let limits = shared.limits.head();
    let mut deadline = tokio::time::Instant::now() + super::limits::HEAD_TIMEOUT;
    let mut draining = stop.is_triggered();
    if draining {
        deadline = deadline.min(tokio::time::Instant::now() + drain::DRAIN_GRACE);
    }
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        match head::parse(buf, &limits) {
            Parsed::Complete(head, used) => return HeadOutcome::Head(head, used),
            Parsed::Rejected(rejection) => return HeadOutcome::Rejected(rejection),
            Parsed::Incomplete => {}
        }
        tokio::select! {
            read = tokio::time::timeout_at(deadline, stream.read(&mut chunk)) => match read {
                Err(_) if draining => return HeadOutcome::Drained,
                Err(_) => return HeadOutcome::TimedOut,
                Ok(Ok(0)) | Ok(Err(_)) => return HeadOutcome::Closed,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            },
            _ = &mut evicted => {
                shared.stats.count(Event::Evicted);
                return HeadOutcome::Evicted;
            }
            _ = stop.wait(), if !draining => {
                draining = true;
                deadline = deadline.min(tokio::time::Instant::now() + drain::DRAIN_GRACE);
            }
        }
    }
}

/// Runs the route on a handler thread; a full queue is a 503 at once.
async fn handle(shared: &Shared, head: &Head) -> Reply {
    let (tx, rx) = oneshot::channel();
    let job = Job {
        method: head.method.clone(),
        target: head.target.clone(),
        reply: tx,
    };
    match shared.jobs.try_send(job) {
        Ok(()) => rx
            .await
            .unwrap_or_else(|_| Reply::error(503, "shutting down")),
        Err(TrySendError::Full(_)) => {
            shared.busy_log.warn(|shed| {
                tracing::warn!(
                    shed,
                    queued = shared.limits.max_queued,
                    "HTTP overloaded: answering 503 to requests beyond the queue"
                )
            });
            Reply::error(503, "server busy")
        }
        Err(TrySendError::Disconnected(_)) => Reply::error(503, "shutting down"),
    }
}

/// Writes `reply` within the write timeout. An error means the connection
/// is done (client gone or too slow to read).
async fn write_reply(
    stream: &mut TcpStream,
    reply: &Reply,
    version: (u8, u8),
    head_only: bool,
    close: bool,
    shared: &Shared,
) -> std::io::Result<()> {
    let head = super::reply_head::reply_head(reply, version, close);
    let started = Instant::now();
    let write = async {
        stream.write_all(&head).await?;
        if !head_only {
            stream.write_all(&reply.body).await?;
        }
        if close {
            stream.shutdown().await?;
        }
        Ok::<(), std::io::Error>(())
    };
    match tokio::time::timeout(super::limits::WRITE_TIMEOUT, write).await {
        Ok(result) => result,
        Err(_) => {
            shared.stats.count(Event::WriteTimeout);
            tracing::debug!(
                after_ms = started.elapsed().as_millis() as u64,
                "HTTP client did not read its reply in time; connection closed"
            );
            Err(std::io::ErrorKind::TimedOut.into())
        }
    }
}
