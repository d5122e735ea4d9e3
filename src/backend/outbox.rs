//! [`Outbox`]: the handle jobs enqueue posts on. It fans a post out to each
//! target backend's durable [`Queue`], runs one delivery loop per backend,
//! and reports per-backend stats; in `--local` mode it logs instead.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::client::BackendClient;
use super::delivery::{self, BackoffPolicy};
use super::local::{LocalLog, Recorded};
use super::post::{Kind, Post, Target};
use super::queue::{Pushed, Queue, QueueStats};
use crate::clock::{iso, unix_ms};
use crate::config::{settings, BackendConfig};
use crate::shutdown::Shutdown;
use crate::state::StateDir;
use crate::systemd::liveness::Liveness;

/// Alerts kept in memory for the dashboard.
const RECENT_ALERTS: usize = 100;
/// A delivery loop beats at least every second when idle and once per
/// request otherwise (≤ 10 s request timeout): this leaves room for a slow
/// fsync on top.
const DELIVERY_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Tunables of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxSettings {
    /// Most pending posts per backend before shedding / refusing.
    pub capacity: usize,
    /// Retry backoff.
    pub backoff: BackoffPolicy,
    /// Most dead letters kept per backend; beyond it the oldest are
    /// deleted (a disk is an input with a limit too).
    pub dead_letters_max: usize,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            capacity: settings::OUTBOX_CAPACITY.default,
            backoff: BackoffPolicy::default(),
            dead_letters_max: settings::DEAD_LETTERS_MAX.default,
        }
    }
}

/// What [`Outbox::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// On disk for at least one target backend (the others already had it).
    Queued,
    /// Every target already has it pending or delivered within its window:
    /// nothing was written. The job may persist its state as if sent.
    Duplicate,
}

/// Why [`Outbox::enqueue`] failed; the job should NOT persist "sent" state,
/// so it decides again next tick (keyed posts then dedup per backend).
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// A backend's queue is full of alerts; the post was refused there.
    #[error("outbox of backend {backend} is full; refused {label}")]
    Full {
        /// The backend that refused.
        backend: &'static str,
        /// The refused post.
        label: String,
    },
    /// `Target::Backend` names no configured backend.
    #[error("no backend named {0:?} is configured")]
    UnknownBackend(String),
    /// The post could not be written to the state directory.
    #[error("cannot store {label}: {source}")]
    Io {
        /// The post.
        label: String,
        /// The file error.
        source: io::Error,
    },
}

/// One alert as the dashboard shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentAlert {
    /// When it was enqueued (ISO).
    pub at: String,
    /// What it is.
    pub kind: Kind,
    /// One-line description.
    pub label: String,
    /// The JSON body (without any key).
    pub body: Value,
}

/// Per-backend delivery state, for `/health` and the dashboard.
pub type DeliveryStats = QueueStats;

/// One configured backend: its queue, client and wake-up signal.
#[derive(Debug)]
struct Backend {
    /// Durable queue.
    queue: Arc<Queue>,
    /// HTTP client.
    client: BackendClient,
    /// Notified on enqueue so delivery starts at once.
    wake: Arc<Notify>,
    /// The kinds of post it receives; `None` is every kind.
    kinds: Option<Vec<Kind>>,
}

impl Backend {
    /// Whether this backend receives posts of `kind`.
    fn takes(&self, kind: Kind) -> bool {
        self.kinds.as_ref().is_none_or(|k| k.contains(&kind))
    }
}

/// Shared by every clone.
#[derive(Debug)]
struct Inner {
    /// Backends in configuration order (primary first); empty in local mode.
    backends: Vec<Backend>,
    /// `--local` sink.
    local: Option<LocalLog>,
    /// Retry policy for the delivery loops.
    backoff: BackoffPolicy,
    /// The last alerts enqueued, oldest first.
    recent: Mutex<VecDeque<RecentAlert>>,
    /// Posts accepted (queued for at least one backend, or logged in local
    /// mode; duplicates not counted) since start, by kind: `/metrics`.
    enqueued: Mutex<BTreeMap<&'static str, u64>>,
}

/// The durable outbox; cheap to clone, one per process.
#[derive(Debug, Clone)]
pub struct Outbox {
    /// Queues, clients and the local sink, shared by every clone.
    inner: Arc<Inner>,
}

impl Outbox {
    /// Opens one queue per backend under `state` and loads what a previous
    /// run left pending. Delivery starts with [`Outbox::start_delivery`].
    pub fn open(
        state: &StateDir,
        backends: &[BackendConfig],
        settings: OutboxSettings,
    ) -> io::Result<Outbox> {
        let now_ms = unix_ms(SystemTime::now());
        let backends = backends
            .iter()
            .map(|b| {
                Ok(Backend {
                    queue: Arc::new(
                        Queue::open(state.path(), b.name, settings.capacity, now_ms)?
                            .with_dead_letters_max(settings.dead_letters_max),
                    ),
                    client: BackendClient::new(b),
                    wake: Arc::new(Notify::new()),
                    kinds: b.kinds.clone(),
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Outbox::with(backends, None, settings.backoff))
    }

    /// The `run --local` outbox: nothing is posted; alerts go to the log and
    /// `alerts.jsonl` in `state`.
    pub fn local(state: &StateDir) -> Outbox {
        Outbox::with(
            Vec::new(),
            Some(LocalLog::new(state.path())),
            BackoffPolicy::default(),
        )
    }

    fn with(backends: Vec<Backend>, local: Option<LocalLog>, backoff: BackoffPolicy) -> Outbox {
        Outbox {
            inner: Arc::new(Inner {
                backends,
                local,
                backoff,
                recent: Mutex::new(VecDeque::new()),
                enqueued: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Starts one delivery loop per backend, each a critical loop named
    /// `delivery:<backend>`. They stop on `shutdown`, leaving what is
    /// undelivered on disk. Nothing to start in local mode.
    pub fn start_delivery(&self, liveness: &Liveness, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
        self.inner
            .backends
            .iter()
            .map(|b| {
                let name = b.queue.name();
                let heartbeat = liveness.register(heartbeat_name(name), DELIVERY_DEADLINE);
                let span = tracing::info_span!("delivery", JOB = "delivery", BACKEND = name);
                tokio::spawn(
                    delivery::run(
                        b.queue.clone(),
                        b.client.clone(),
                        self.inner.backoff,
                        b.wake.clone(),
                        heartbeat,
                        shutdown.clone(),
                    )
                    .instrument(span),
                )
            })
            .collect()
    }

    /// Stores `post` durably for every target backend, then returns; the
    /// delivery loops send it. Blocking file I/O runs on the blocking pool.
    pub async fn enqueue(&self, post: Post) -> Result<Enqueued, OutboxError> {
        let outbox = self.clone();
        let label = post.label.clone();
        tokio::task::spawn_blocking(move || outbox.enqueue_blocking(post))
            .await
            .unwrap_or_else(|e| {
                Err(OutboxError::Io {
                    label,
                    source: io::Error::other(e),
                })
            })
    }

    /// [`Outbox::enqueue`] for blocking contexts (threads, tests).
    pub fn enqueue_blocking(&self, post: Post) -> Result<Enqueued, OutboxError> {
        let now = SystemTime::now();
        let io_error = |source| OutboxError::Io {
            label: post.label.clone(),
            source,
        };
        if let Some(local) = &self.inner.local {
            return match local.record(&post, now).map_err(io_error)? {
                Recorded::Duplicate => Ok(Enqueued::Duplicate),
                Recorded::Logged => {
                    self.remember(&post, now);
                    Ok(Enqueued::Queued)
                }
            };
        }
        let targets: Vec<&Backend> = match &post.target {
            Target::All => self
                .inner
                .backends
                .iter()
                .filter(|b| b.takes(post.kind))
                .collect(),
            Target::Backend(name) => {
                let found: Vec<&Backend> = self
                    .inner
                    .backends
                    .iter()
                    .filter(|b| b.queue.name() == *name)
                    .collect();
                if found.is_empty() {
                    return Err(OutboxError::UnknownBackend(name.to_string()));
                }
                found
            }
        };
        let now_ms = unix_ms(now);
        let mut queued = false;
        let mut refused = None;
        // Every target is tried even after one refuses: one backend's
        // backlog never keeps a post from the other.
        for backend in targets {
            match backend.queue.push(&post, now_ms).map_err(io_error)? {
                Pushed::Queued(_) => {
                    queued = true;
                    backend.wake.notify_one();
                }
                Pushed::Duplicate => {}
                Pushed::Refused => refused = Some(backend.queue.name()),
            }
        }
        if queued {
            self.remember(&post, now);
        }
        match refused {
            Some(backend) => Err(OutboxError::Full {
                backend,
                label: post.label.clone(),
            }),
            None if queued => Ok(Enqueued::Queued),
            None => Ok(Enqueued::Duplicate),
        }
    }

    /// Counts an accepted post and keeps an alert for [`Outbox::recent`].
    fn remember(&self, post: &Post, now: SystemTime) {
        {
            let mut enqueued = match self.inner.enqueued.lock() {
                Ok(enqueued) => enqueued,
                Err(poisoned) => poisoned.into_inner(),
            };
            *enqueued.entry(post.kind.as_str()).or_insert(0) += 1;
        }
        if !post.kind.is_alert() {
            return;
        }
        let mut recent = match self.inner.recent.lock() {
            Ok(recent) => recent,
            Err(poisoned) => poisoned.into_inner(),
        };
        recent.push_back(RecentAlert {
            at: iso(now),
            kind: post.kind,
            label: post.label.clone(),
            body: post.body.clone(),
        });
        while recent.len() > RECENT_ALERTS {
            recent.pop_front();
        }
    }

    /// The last ~100 alerts enqueued (not duplicates), oldest first.
    pub fn recent(&self) -> Vec<RecentAlert> {
        match self.inner.recent.lock() {
            Ok(recent) => recent.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }

    /// Posts accepted since start by kind name (duplicates not counted);
    /// kinds never seen are absent.
    pub fn enqueued_by_kind(&self) -> BTreeMap<&'static str, u64> {
        match self.inner.enqueued.lock() {
            Ok(enqueued) => enqueued.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Configured backend names, primary first (empty in local mode): the
    /// user-alert job reads each one's active list and answers it there.
    pub fn backend_names(&self) -> Vec<&'static str> {
        self.inner.backends.iter().map(|b| b.queue.name()).collect()
    }

    /// The backends that receive posts of `kind` (configuration order).
    pub fn backends_taking(&self, kind: Kind) -> Vec<&'static str> {
        self.inner
            .backends
            .iter()
            .filter(|b| b.takes(kind))
            .map(|b| b.queue.name())
            .collect()
    }

    /// The HTTP client of backend `name`, for GET routes (OI snapshot,
    /// active user alerts, liquid universe). Run its calls in `spawn_blocking`.
    pub fn client(&self, name: &str) -> Option<BackendClient> {
        self.inner
            .backends
            .iter()
            .find(|b| b.queue.name() == name)
            .map(|b| b.client.clone())
    }

    /// Test hook: while `full`, every write of file content in the outbox
    /// fails as on a full disk (empty "in flight" marks and removals still
    /// work, as on a full tmpfs). Not used by the appliance itself.
    #[doc(hidden)]
    pub fn inject_disk_full(&self, full: bool) {
        for b in &self.inner.backends {
            b.queue.set_disk_full(full);
        }
    }

    /// Whether this is the `--local` outbox.
    pub fn is_local(&self) -> bool {
        self.inner.local.is_some()
    }

    /// Each backend's backlog and counters, by name.
    pub fn stats(&self) -> BTreeMap<&'static str, DeliveryStats> {
        let now_ms = unix_ms(SystemTime::now());
        self.inner
            .backends
            .iter()
            .map(|b| (b.queue.name(), b.queue.stats(now_ms)))
            .collect()
    }
}

/// `delivery:<backend>`: liveness names are `&'static str`. The two known
/// backends use literals; any other name is leaked once per process start.
fn heartbeat_name(backend: &'static str) -> &'static str {
    match backend {
        "primary" => "delivery:primary",
        "dev" => "delivery:dev",
        other => Box::leak(format!("delivery:{other}").into_boxed_str()),
    }
}
