//! `volspike run`: validate, open state, bind HTTP, start every loop, tell
//! systemd READY, keep STATUS current, stop cleanly on SIGTERM.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use crate::backend::{Outbox, OutboxSettings};
use crate::binance::stream::StreamSettings;
use crate::cmd::exit::ExitCode;
use crate::config::{Config, Mode, Sources};
use crate::http::server::first_data::{self, Waited};
use crate::http::{HttpContext, HttpServer};
use crate::jobs::build::{self, Built};
use crate::jobs::funding_stream::{self as stream, FundingStream};
use crate::jobs::registry::{self, Selection};
use crate::jobs::scheduler::{self, ScheduledJob};
use crate::jobs::services::Services;
use crate::jobs::status::StatusBoard;
use crate::shutdown;
use crate::state::StateDir;
use crate::systemd::liveness::{self, Liveness};
use crate::systemd::notify;

/// `volspike run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run only these jobs, comma-separated: funding_stream, funding_health,
    /// volume_spike, liquid_universe, open_interest, user_alerts, telegram.
    #[arg(long, value_delimiter = ',', value_name = "JOB,JOB")]
    pub only: Vec<String>,
    /// No backend needed: alerts go to the log, the state dir and the dashboard instead of being posted.
    #[arg(long)]
    pub local: bool,
    /// Read configuration from this env file too (the environment wins).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

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

/// Runs the command until SIGTERM: [`ExitCode::Ok`] after a clean stop,
/// [`ExitCode::Config`] or [`ExitCode::Usage`] before starting, and
/// [`ExitCode::Failure`] when it could not start or stopped on an error
/// (every outcome is logged, so nothing is left for `cli` to print).
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    // First, while this is the only thread: the socket systemd may pass.
    crate::systemd::listen_fds::take_from_env();
    let sources = match Sources::load(args.env_file.as_deref()) {
        Ok(sources) => sources,
        Err(problem) => {
            eprintln!("volspike: configuration error: {problem}");
            return Ok(ExitCode::Config);
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
            return Ok(ExitCode::Config);
        }
    };
    let destination = crate::logging::init(&config.log_filter);
    for w in &report.warnings {
        tracing::warn!("configuration: {w}");
    }
    if let Err(problem) = registry::check_only(&args.only) {
        tracing::error!("{problem}");
        eprintln!("volspike: {problem}");
        return Ok(ExitCode::Usage);
    }
    // One crypto provider for every TLS user (ureq, tungstenite, self_update).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let state = match StateDir::open(&config.state_dir) {
        Ok(state) => state,
        Err(e) => {
            tracing::error!("state directory unusable (VOLSPIKE_STATE_DIR): {e}");
            return Ok(ExitCode::Failure);
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
                return Ok(ExitCode::Failure);
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
            return Ok(ExitCode::Failure);
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
            return Ok(ExitCode::Config);
        }
    };
    let selection = Selection {
        disabled: &config.disabled_jobs,
        only: &args.only,
    };
    let Built {
        scheduled: jobs,
        funding_stream,
    } = match build::build(&config, &services, selection) {
        Ok(built) => built,
        Err(problem) => {
            tracing::error!("{problem}");
            eprintln!("volspike: {problem}");
            return Ok(ExitCode::Usage);
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
    match runtime.block_on(supervise(config, jobs, funding_stream, services)) {
        Ok(()) => Ok(ExitCode::Ok),
        Err(e) => {
            tracing::error!("{e:#}");
            Ok(ExitCode::Failure)
        }
    }
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
        let stream = FundingStream {
            settings,
            cache: services.funding.cache.clone(),
            status: services.funding.stream.clone(),
            board: board.clone(),
            heartbeat: liveness.register(stream::NAME, STREAM_DEADLINE),
            shutdown: shutdown.clone(),
        };
        Some(stream.spawn()?)
    } else {
        tracing::info!("funding stream disabled: the funding API will answer 503");
        None
    };

    let kline_threads = crate::jobs::volume_spike::runner::start(
        &services.volume_stream,
        &liveness,
        shutdown.clone(),
    )?;
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
                oi_change_omissions: services.oi_change_omissions.clone(),
                volume_stream: Some(services.volume_stream.clone()),
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
        for t in http_threads
            .into_iter()
            .chain(stream_thread)
            .chain(kline_threads)
        {
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
    use clap::{Args, Command};

    use super::RunArgs;
    use crate::jobs::registry::ALL;

    /// `--only`'s help names every registered job and nothing else.
    #[test]
    fn only_help_names_exactly_the_registered_jobs() {
        let command = RunArgs::augment_args(Command::new("run"));
        let help = command
            .get_arguments()
            .find(|a| a.get_id() == "only")
            .and_then(|a| a.get_help())
            .map(|h| h.to_string())
            .expect("--only has a help text");
        let listed = help
            .split_once(':')
            .map(|(_, names)| names.trim().trim_end_matches('.'))
            .expect("the help lists the jobs after a colon");
        let mut named: Vec<&str> = listed.split(',').map(str::trim).collect();
        named.sort();
        let mut registered: Vec<&str> = ALL.iter().map(|j| j.name).collect();
        registered.sort();
        assert_eq!(named, registered, "{help}");
    }
}
