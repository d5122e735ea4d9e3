//! `volspike run`: validate, open state, bind HTTP, start every loop, tell
//! systemd READY, keep STATUS current, stop cleanly on SIGTERM.

use std::time::{Duration, Instant};

use crate::backend::{Outbox, OutboxSettings};
use crate::binance::stream::{self, StreamSettings};
use crate::cli::RunArgs;
use crate::config::{Config, Mode, Sources, EXIT_CONFIG};
use crate::http::server::first_data::{self, Waited};
use crate::http::{HttpContext, HttpServer};
use crate::jobs::funding_health::FundingHealth;
use crate::jobs::liquid_universe::select::Thresholds;
use crate::jobs::liquid_universe::LiquidUniverse;
use crate::jobs::open_interest::{self, OpenInterest};
use crate::jobs::scheduler::{self, ScheduledJob};
use crate::jobs::services::Services;
use crate::jobs::status::StatusBoard;
use crate::jobs::telegram::TelegramJob;
use crate::jobs::user_alerts::UserAlerts;
use crate::jobs::volume_spike::detect::Rules;
use crate::jobs::volume_spike::VolumeSpike;
use crate::jobs::Job;
use crate::shutdown;
use crate::state::StateDir;
use crate::systemd::liveness::{self, Liveness};
use crate::systemd::notify;

/// A critical loop that has not beaten for this long is wedged.
const LOOP_DEADLINE: Duration = Duration::from_secs(10);
/// How often the STATUS= line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// Everything must have stopped this long after SIGTERM (TimeoutStopSec is 15).
const STOP_BUDGET: Duration = Duration::from_secs(10);
/// HTTP worker threads.
const HTTP_WORKERS: usize = 4;
/// Async worker threads at most (one per core below that): with the
/// blocking pool and the HTTP threads, the unit's `TasksMax=128` is never
/// reached, so a thread is never refused.
const MAX_ASYNC_WORKERS: usize = 8;
/// Blocking threads at most (Binance calls, file I/O); calls beyond wait.
const MAX_BLOCKING_THREADS: usize = 64;

/// One async worker per core, at most [`MAX_ASYNC_WORKERS`].
fn async_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, MAX_ASYNC_WORKERS)
}
/// The WebSocket reader beats at least every second while connected or
/// backing off; a minute without a beat means its thread is stuck.
const STREAM_DEADLINE: Duration = Duration::from_secs(60);

/// Runs the command; returns the exit code.
pub fn run(args: RunArgs) -> i32 {
    // First, while this is the only thread: the socket systemd may pass.
    crate::systemd::listen_fds::take_from_env();
    let sources = match Sources::load(args.env_file.as_deref()) {
        Ok(sources) => sources,
        Err(problem) => {
            eprintln!("volspike: configuration error: {problem}");
            return EXIT_CONFIG;
        }
    };
    let (config, report) = match Config::from_sources(&sources, Mode { local: args.local }) {
        Ok(ok) => ok,
        Err(report) => {
            eprintln!(
                "volspike: refusing to start, {} configuration problem(s):",
                report.problems.len()
            );
            for p in &report.problems {
                eprintln!("  - {p}");
            }
            eprintln!("run `volspike check-config` for the full listing");
            return EXIT_CONFIG;
        }
    };
    let destination = crate::logging::init(&config.log_filter);
    for w in &report.warnings {
        tracing::warn!("configuration: {w}");
    }
    if let Err(problem) = check_only(&args.only) {
        tracing::error!("{problem}");
        eprintln!("volspike: {problem}");
        return 2;
    }
    // One crypto provider for every TLS user (ureq, tungstenite, self_update).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let state = match StateDir::open(&config.state_dir) {
        Ok(state) => state,
        Err(e) => {
            tracing::error!("state directory unusable (VOLSPIKE_STATE_DIR): {e}");
            return 1;
        }
    };
    // After the state directory, before READY: what a previous run left
    // undelivered is loaded now and resent as soon as delivery starts.
    let outbox = if config.local {
        Outbox::local(&state)
    } else {
        let settings = OutboxSettings {
            capacity: config.outbox_capacity,
            dead_letters_max: config.dead_letters_max,
            ..OutboxSettings::default()
        };
        match Outbox::open(&state, &config.backends, settings) {
            Ok(outbox) => outbox,
            Err(e) => {
                tracing::error!("outbox unusable in the state directory: {e}");
                return 1;
            }
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(async_workers())
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    // Clients that start background tasks (the Telegram notifier) are built
    // inside the runtime.
    let _runtime_context = runtime.enter();
    tracing::info!(
        async_workers = async_workers(),
        max_blocking_threads = MAX_BLOCKING_THREADS,
        "async runtime started"
    );
    let services = match Services::build(&config, state, outbox) {
        Ok(services) => services,
        Err(e) => {
            tracing::error!("{e:#}");
            return EXIT_CONFIG;
        }
    };
    let jobs = match build_jobs(&config, &services, &args.only) {
        Ok(jobs) => jobs,
        Err(problem) => {
            tracing::error!("{problem}");
            eprintln!("volspike: {problem}");
            return 2;
        }
    };
    tracing::info!(
        version = crate::version::VERSION,
        mode = if config.local { "local" } else { "backend" },
        logging = ?destination,
        state_dir = %services.state.path().display(),
        "starting {}",
        crate::version::line()
    );
    let funding_stream = wanted(&config, &args.only, stream::NAME);
    match runtime.block_on(supervise(config, jobs, funding_stream, services)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}

/// Jobs this version can run (the others of [`crate::jobs::KNOWN`] are
/// still to come).
const AVAILABLE: &[&str] = &[
    "funding_health",
    "funding_stream",
    "liquid_universe",
    "open_interest",
    "telegram",
    "user_alerts",
    "volume_spike",
];

/// `--only` names must be jobs; a typo is a usage error, not a silent no-op.
fn check_only(only: &[String]) -> Result<(), String> {
    for name in only {
        if !crate::jobs::KNOWN.contains(&name.as_str()) {
            return Err(format!(
                "--only: unknown job `{name}` (jobs: {})",
                crate::jobs::KNOWN.join(", ")
            ));
        }
        if !AVAILABLE.contains(&name.as_str()) {
            return Err(format!(
                "--only: job `{name}` is not available in this version yet"
            ));
        }
    }
    Ok(())
}

/// Whether job `name` runs: not disabled, and named by `--only` when given.
fn wanted(config: &Config, only: &[String], name: &str) -> bool {
    !config.disabled_jobs.iter().any(|d| d == name)
        && (only.is_empty() || only.iter().any(|o| o == name))
}

/// The jobs to run: every available job that is not disabled by
/// `VOLSPIKE_DISABLED_JOBS` and, with `--only`, named there.
fn build_jobs(
    config: &Config,
    services: &Services,
    only: &[String],
) -> Result<Vec<ScheduledJob>, String> {
    let wanted = |name: &str| {
        !config.disabled_jobs.iter().any(|d| d == name)
            && (only.is_empty() || only.iter().any(|o| o == name))
    };
    let mut jobs = Vec::new();
    // funding_health checks what the stream fills: no stream, no check.
    if wanted(FundingHealth::NAME) && wanted(stream::NAME) {
        jobs.push(ScheduledJob::new(FundingHealth::new(
            services,
            config.thresholds.health_min_symbols,
        )));
    }
    if wanted(LiquidUniverse::NAME) {
        let thresholds = Thresholds {
            enter: config.thresholds.liquid_enter,
            exit: config.thresholds.liquid_exit,
        };
        jobs.push(ScheduledJob::new(LiquidUniverse::new(services, thresholds)));
    }
    // telegram: on when channels are configured; `--local` logs the ingest
    // through the outbox's local mode instead of posting it.
    if wanted(TelegramJob::NAME) {
        if config.telegram.channels.is_empty() {
            if !only.is_empty() {
                return Err(
                    "--only telegram: no channels configured (TELEGRAM_CHANNEL_IDS)".into(),
                );
            }
        } else {
            jobs.push(ScheduledJob::new(TelegramJob::new(
                &config.telegram,
                services.outbox.clone(),
                services.state.clone(),
            )));
        }
    }
    if wanted(VolumeSpike::NAME) {
        let rules = Rules {
            min_ratio: config.thresholds.spike_ratio,
            min_quote_volume: config.thresholds.spike_min_volume,
        };
        jobs.push(ScheduledJob::new(VolumeSpike::new(services, rules)));
    }
    if wanted(OpenInterest::NAME) {
        let settings =
            open_interest::Settings::from_config(&config.open_interest, config.funding.stale_after);
        jobs.push(ScheduledJob::new(OpenInterest::from_services(
            services, settings,
        )));
    }
    if wanted(UserAlerts::NAME) {
        // User alerts live in the backends: nothing to check in --local.
        match UserAlerts::from_services(services, config.user_alerts.clone()) {
            Some(job) => jobs.push(ScheduledJob::new(job)),
            None => tracing::info!("user_alerts not started: no backend configured (--local)"),
        }
    }
    Ok(jobs)
}

/// Starts every loop, signals READY, and waits for SIGTERM or Ctrl-C.
async fn supervise(
    config: Config,
    jobs: Vec<ScheduledJob>,
    funding_stream: bool,
    services: Services,
) -> anyhow::Result<()> {
    let outbox = services.outbox.clone();
    let started = Instant::now();
    let liveness = Liveness::new(config.wedge.as_deref().map(liveness::parse_wedge));
    let board = StatusBoard::default();
    let (trigger, shutdown) = shutdown::channel();
    // Listening for SIGTERM from here on: a stop that comes while start
    // waits for the first funding data is a clean stop, not a kill.
    let mut signalled = tokio::spawn(wait_for_signal());

    let mut http = HttpServer::bind(config.http_addr, HTTP_WORKERS)?;
    let first_data_wait = first_data::bound(http.from_systemd(), funding_stream);
    http.set_first_data_wait(first_data_wait);
    let http_addr = http.local_addr();
    let http_stats = http.stats();
    // One critical loop per backend; jobs get `outbox` clones as they arrive.
    let delivery = outbox.start_delivery(&liveness, shutdown.clone());

    let stream_thread = if funding_stream {
        let settings = StreamSettings::new(&config.binance.ws_url, config.funding.silence)
            .with_proxy(config.binance.proxy.clone());
        Some(stream::spawn(
            settings,
            services.funding.cache.clone(),
            services.funding.stream.clone(),
            board.clone(),
            liveness.register(stream::NAME, STREAM_DEADLINE),
            shutdown.clone(),
        )?)
    } else {
        tracing::info!("funding stream disabled: the funding API will answer 503");
        None
    };

    let job_count = jobs.len() + usize::from(stream_thread.is_some());
    let scheduler = tokio::spawn(scheduler::run(
        jobs,
        board.clone(),
        liveness.register("scheduler", LOOP_DEADLINE),
        shutdown.clone(),
        scheduler::Retry::DEFAULT,
    ));

    if let Some(timeout) = sd_notify::watchdog_enabled() {
        tracing::info!(timeout_ms = timeout.as_millis() as u64, "systemd watchdog enabled; pinging at half the timeout while every critical loop is alive");
        tokio::spawn(liveness::watchdog_task(
            liveness.clone(),
            timeout / 2,
            shutdown.clone(),
        ));
    }
    tokio::spawn(status_task(
        board.clone(),
        liveness.clone(),
        shutdown.clone(),
    ));

    // Under socket activation, accept (and say READY) once the funding
    // cache has data, at most first_data::FIRST_DATA_WAIT: meanwhile
    // clients wait in volspike.socket's backlog instead of getting 503 "no
    // funding data yet" (see first_data).
    if !first_data_wait.is_zero() {
        tracing::info!(
            bound_ms = first_data_wait.as_millis() as u64,
            "waiting for the first funding data before accepting; connections wait in volspike.socket's backlog"
        );
    }
    let waited = first_data::wait(&services.funding.cache, first_data_wait, async {
        let _ = (&mut signalled).await;
    })
    .await;
    match waited {
        Waited::NotAsked => {}
        Waited::Data(after) => tracing::info!(
            after_ms = after.as_millis() as u64,
            "first funding data; accepting"
        ),
        Waited::TimedOut => tracing::warn!(
            bound_ms = first_data_wait.as_millis() as u64,
            "no funding data yet; accepting anyway (the funding API answers 503 until the stream delivers)"
        ),
        Waited::Cancelled => tracing::info!("stop signal before serving"),
    }
    let http_threads = if waited == Waited::Cancelled {
        // Never accepted: what waits in the backlog is the next process's.
        drop(http);
        Vec::new()
    } else {
        let threads = http.spawn(
            HttpContext {
                started,
                board: board.clone(),
                liveness: liveness.clone(),
                local: config.local,
                outbox: Some(outbox.clone()),
                governor: Some(services.governor.clone()),
                funding: services.funding.clone(),
                universe: Some(services.universe.clone()),
                requests: Default::default(),
                http: http_stats,
            },
            liveness.register("http", LOOP_DEADLINE),
            shutdown.clone(),
        )?;
        notify::ready(&status_line(&board, &liveness));
        tracing::info!(
            http = %http_addr,
            jobs = job_count,
            "ready; dashboard at {}",
            crate::http::dashboard::url(http_addr)
        );
        let _ = signalled.await;
        threads
    };
    tracing::info!("stopping");
    notify::stopping();
    trigger.trigger();

    let deadline = tokio::time::Instant::now() + STOP_BUDGET;
    if tokio::time::timeout_at(deadline, scheduler).await.is_err() {
        tracing::warn!("scheduler did not stop in time");
    }
    // Delivery stops sending; whatever is undelivered stays on disk.
    for task in delivery {
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            tracing::warn!("a delivery loop did not stop in time; its posts stay on disk");
        }
    }
    // The stream notices shutdown within a second; HTTP drains its
    // connections within drain::DRAIN_LIMIT (3 s).
    let join = tokio::task::spawn_blocking(move || {
        for t in http_threads.into_iter().chain(stream_thread) {
            let _ = t.join();
        }
    });
    let _ = tokio::time::timeout_at(deadline, join).await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The one-line summary systemd shows in `systemctl status`.
fn status_line(board: &StatusBoard, liveness: &Liveness) -> String {
    let stalled = liveness.stalled();
    let mut line = board.summary(crate::clock::now());
    if !stalled.is_empty() {
        line.push_str(&format!("; stalled: {}", stalled.join(", ")));
    }
    line
}

/// Keeps STATUS= current.
async fn status_task(board: StatusBoard, liveness: Liveness, mut shutdown: shutdown::Shutdown) {
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(STATUS_EVERY) => {}
        }
        let line = status_line(&board, &liveness);
        if line != last {
            notify::status(&line);
            last = line;
        }
    }
}

/// Completes on SIGTERM (systemd stop) or SIGINT (Ctrl-C in a terminal).
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot install signal handlers; stopping only on Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(env: &[(&str, &str)]) -> Config {
        let sources = Sources {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Sources::default()
        };
        match Config::from_sources(&sources, Mode { local: true }) {
            Ok((config, _)) => config,
            Err(report) => panic!("test config invalid: {:?}", report.problems),
        }
    }

    fn only(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn jobs_are_selected_by_only_and_disabled() {
        let default = config(&[]);
        assert!(wanted(&default, &[], "funding_stream"));
        assert!(wanted(
            &default,
            &only(&["funding_stream"]),
            "funding_stream"
        ));
        assert!(!wanted(
            &default,
            &only(&["liquid_universe"]),
            "funding_stream"
        ));
        let disabled = config(&[("VOLSPIKE_DISABLED_JOBS", "funding_stream")]);
        assert!(!wanted(&disabled, &[], "funding_stream"));
        assert!(check_only(&only(&["funding_stream", "liquid_universe"])).is_ok());
        assert!(check_only(&only(&["open_interest", "user_alerts"])).is_ok());
        assert!(check_only(&only(&["nonsense"])).is_err());
    }
}
