//! `volspike run`: validate, open state, bind HTTP, start every loop, tell
//! systemd READY, keep STATUS current, stop cleanly on SIGTERM.

use std::time::{Duration, Instant, SystemTime};

use crate::backend::{Outbox, OutboxSettings};
use crate::cli::RunArgs;
use crate::config::{Config, Mode, Sources, EXIT_CONFIG};
use crate::http::{HttpContext, HttpServer};
use crate::jobs::scheduler::{self, ScheduledJob};
use crate::jobs::status::StatusBoard;
use crate::jobs::telegram::TelegramJob;
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
const HTTP_WORKERS: usize = 2;

/// Runs the command; returns the exit code.
pub fn run(args: RunArgs) -> i32 {
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
    let jobs = match select_jobs(&config, &args.only, &outbox, &state) {
        Ok(jobs) => jobs,
        Err(problem) => {
            tracing::error!("{problem}");
            eprintln!("volspike: {problem}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return 1;
        }
    };
    tracing::info!(
        version = crate::version::VERSION,
        mode = if config.local { "local" } else { "backend" },
        logging = ?destination,
        state_dir = %state.path().display(),
        "starting {}",
        crate::version::line()
    );
    match runtime.block_on(supervise(config, jobs, outbox)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}

/// Jobs implemented in this version (the others in `jobs::KNOWN` are to come).
const IMPLEMENTED: &[&str] = &["telegram"];

/// Checks `--only` before anything is touched: a name that is not a job, or
/// not one this version has, is a usage error.
fn check_only(only: &[String]) -> Result<(), String> {
    for name in only {
        if !crate::jobs::KNOWN.contains(&name.as_str()) {
            return Err(format!(
                "--only: unknown job `{name}` (jobs: {})",
                crate::jobs::KNOWN.join(", ")
            ));
        }
        if !IMPLEMENTED.contains(&name.as_str()) {
            return Err(format!(
                "--only: job `{name}` is not available in this version yet"
            ));
        }
    }
    Ok(())
}

/// The jobs to run: those this configuration enables, minus disabled ones,
/// restricted by `--only`. Asking `--only` for a job the configuration does
/// not enable is a usage error.
fn select_jobs(
    config: &Config,
    only: &[String],
    outbox: &Outbox,
    state: &StateDir,
) -> Result<Vec<ScheduledJob>, String> {
    let mut available: Vec<ScheduledJob> = Vec::new();
    // telegram: on when channels are configured; `--local` logs the ingest
    // through the outbox's local mode instead of posting it.
    if !config.telegram.channels.is_empty() {
        available.push(ScheduledJob::new(TelegramJob::new(
            &config.telegram,
            outbox.clone(),
            state.clone(),
        )));
    }
    for name in only {
        if !available.iter().any(|j| j.name() == name) {
            return Err(format!(
                "--only: job `{name}` is not enabled by the configuration (see `volspike check-config`)"
            ));
        }
    }
    Ok(available
        .into_iter()
        .filter(|j| !config.disabled_jobs.iter().any(|d| d == j.name()))
        .filter(|j| only.is_empty() || only.iter().any(|o| o == j.name()))
        .collect())
}

/// Starts every loop, signals READY, and waits for SIGTERM or Ctrl-C.
async fn supervise(config: Config, jobs: Vec<ScheduledJob>, outbox: Outbox) -> anyhow::Result<()> {
    let started = Instant::now();
    let liveness = Liveness::new(config.wedge.as_deref().map(liveness::parse_wedge));
    let board = StatusBoard::default();
    let (trigger, shutdown) = shutdown::channel();

    let http = HttpServer::bind(config.http_addr)?;
    let http_addr = http.local_addr();
    let http_threads = http.spawn(
        HttpContext {
            started,
            board: board.clone(),
            liveness: liveness.clone(),
            local: config.local,
            outbox: Some(outbox.clone()),
        },
        liveness.register("http", LOOP_DEADLINE),
        shutdown.clone(),
        HTTP_WORKERS,
    );

    // One critical loop per backend; jobs get `outbox` clones as they arrive.
    let delivery = outbox.start_delivery(&liveness, shutdown.clone());

    let job_count = jobs.len();
    let scheduler = tokio::spawn(scheduler::run(
        jobs,
        board.clone(),
        liveness.register("scheduler", LOOP_DEADLINE),
        shutdown.clone(),
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

    notify::ready(&status_line(&board, &liveness));
    tracing::info!(http = %http_addr, jobs = job_count, "ready");

    wait_for_signal().await;
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
    // HTTP workers notice shutdown within their poll interval.
    let join = tokio::task::spawn_blocking(move || {
        for t in http_threads {
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
    let mut line = board.summary(SystemTime::now());
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
