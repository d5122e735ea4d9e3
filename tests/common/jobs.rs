//! A job's world for module-level tests: `Services` built the way `volspike
//! run` builds them, from a configuration pointing at the fakes, with the
//! outbox's delivery loop running. Tests construct a job from it and call
//! `tick(now)` with the time they choose.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use volspike::backend::{BackoffPolicy, Outbox, OutboxSettings};
use volspike::binance::cache::FundingCache;
use volspike::binance::frames::{MarkValues, Update, Values};
use volspike::clock::{from_unix_ms, unix_ms};
use volspike::config::{Config, Mode, Sources};
use volspike::jobs::services::Services;
use volspike::shutdown::{self, ShutdownTrigger};
use volspike::state::StateDir;
use volspike::systemd::liveness::Liveness;
use volspike_fakes::{FakeBackend, FakeBinance};

/// 2025-12-05T10:00:00Z, on a 5-minute boundary: the first tick of the
/// tests that drive time themselves.
pub const T0_MS: u64 = 1_764_928_800_000;

/// `secs` seconds after [`T0_MS`].
pub fn at(secs: u64) -> SystemTime {
    from_unix_ms(T0_MS + secs * 1000)
}

/// Puts `symbol`'s mark price and funding rate into `cache`, as the stream
/// would (next funding an hour after [`T0_MS`]).
pub fn mark(cache: &FundingCache, symbol: &str, price: f64, funding: f64) {
    let now = unix_ms(SystemTime::now());
    cache.apply(
        &[Update {
            symbol: symbol.to_string(),
            event_time: Some(now),
            values: Values::Mark(MarkValues {
                mark_price: Some(price),
                index_price: Some(price),
                funding_rate: Some(funding),
                next_funding_time: Some(T0_MS + 3_600_000),
            }),
        }],
        now,
    );
}

/// Outbox settings that retry within milliseconds, for tests that wait for
/// delivery.
pub fn fast_outbox() -> OutboxSettings {
    OutboxSettings {
        capacity: 1000,
        backoff: BackoffPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        ..OutboxSettings::default()
    }
}

/// The runtime, the shared services and the delivery loop's stop switch.
pub struct JobRig {
    /// Runs ticks and the delivery loop.
    pub runtime: tokio::runtime::Runtime,
    /// What jobs are built from.
    pub services: Services,
    /// Stops the delivery loop on drop.
    trigger: ShutdownTrigger,
}

impl JobRig {
    /// Services for Binance at `binance` and one backend (key `test-key`) at
    /// `backend`, with state in `state`.
    pub fn new(binance: &FakeBinance, backend: &FakeBackend, state: &Path) -> JobRig {
        JobRig::with_env(binance, backend, state, &[], OutboxSettings::default())
    }

    /// Like [`JobRig::new`], with `extra` settings on top (a later entry wins:
    /// `ALERT_INGEST_API_KEY`, `VOLSPIKE_WEIGHT_CEILING_PCT`, a second
    /// backend as `VOLSPIKE_API_URL_DEV` / `VOLSPIKE_API_KEY_DEV`, ...) and
    /// the outbox opened with `outbox`.
    pub fn with_env(
        binance: &FakeBinance,
        backend: &FakeBackend,
        state: &Path,
        extra: &[(&str, String)],
        outbox: OutboxSettings,
    ) -> JobRig {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let env = [
            ("BACKEND_URL", backend.url()),
            ("ALERT_INGEST_API_KEY", "test-key".to_string()),
            ("BINANCE_FAPI_URL", binance.rest_url()),
            ("VOLSPIKE_STATE_DIR", state.display().to_string()),
        ];
        let sources = Sources {
            env: env
                .into_iter()
                .chain(extra.iter().cloned())
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            ..Sources::default()
        };
        let (config, _) =
            Config::from_sources(&sources, Mode::default()).expect("valid test config");
        let state = StateDir::open(&config.state_dir).expect("state dir");
        let outbox = Outbox::open(&state, &config.backends, outbox).expect("outbox");
        let (trigger, shutdown) = shutdown::channel();
        let context = runtime.enter();
        outbox.start_delivery(&Liveness::new(None), shutdown);
        let services = Services::build(&config, state, outbox).expect("services");
        drop(context);
        JobRig {
            runtime,
            services,
            trigger,
        }
    }

    /// Runs one tick of `job` at `now`.
    pub fn tick<J: volspike::jobs::Job>(
        &self,
        job: &mut J,
        now: SystemTime,
    ) -> anyhow::Result<String> {
        self.runtime.block_on(job.tick(now))
    }

    /// Waits (30 s at most, else panics) until everything enqueued so far
    /// was delivered to every backend.
    pub fn drained(&self) {
        let outbox = &self.services.outbox;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let pending: usize = outbox.stats().values().map(|s| s.pending).sum();
            if pending == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "outbox never drained: {:?}",
                outbox.stats()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for JobRig {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}
