//! A job's world for module-level tests: `Services` built the way `volspike
//! run` builds them, from a configuration pointing at the fakes, with the
//! outbox's delivery loop running. Tests construct a job from it and call
//! `tick(now)` with the time they choose.

use std::path::Path;
use std::time::SystemTime;

use volspike::backend::{Outbox, OutboxSettings};
use volspike::config::{Config, Mode, Sources};
use volspike::jobs::services::Services;
use volspike::shutdown::{self, ShutdownTrigger};
use volspike::state::StateDir;
use volspike::systemd::liveness::Liveness;
use volspike_fakes::{FakeBackend, FakeBinance};

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
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..Sources::default()
        };
        let (config, _) =
            Config::from_sources(&sources, Mode::default()).expect("valid test config");
        let state = StateDir::open(&config.state_dir).expect("state dir");
        let outbox =
            Outbox::open(&state, &config.backends, OutboxSettings::default()).expect("outbox");
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
}

impl Drop for JobRig {
    fn drop(&mut self) {
        self.trigger.trigger();
    }
}
