//! `volspike run`: validate, open state, bind HTTP, start every loop, tell
//! systemd READY, keep STATUS current, stop cleanly on SIGTERM.

use std::time::{Duration, Instant, SystemTime};

use crate::binance::cache::FundingCache;
use crate::binance::stream::{self, StreamSettings, StreamStatus};
use crate::cli::RunArgs;
use crate::config::{Config, Mode, Sources, EXIT_CONFIG};
use crate::http::funding::FundingApi;
use crate::http::{HttpContext, HttpServer};
use crate::jobs::scheduler::{self, ScheduledJob};
use crate::jobs::status::StatusBoard;
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
/// HTTP worker threads: handlers are cheap (lookups in a prepared snapshot),
/// so a few suffice; more only help when clients read slowly.
const HTTP_WORKERS: usize = 4;
/// The funding stream's loop beats at least every second; this leaves room
/// for DNS, a 10 s connect and a 10 s handshake.
const STREAM_DEADLINE: Duration = Duration::from_secs(60);

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
    let selection = match select_jobs(&config, &args.only) {
        Ok(jobs) => jobs,
        Err(problem) => {
            tracing::error!("{problem}");
            eprintln!("volspike: {problem}");
            return 2;
        }
    };
    // One crypto provider for every TLS user (ureq, tungstenite, self_update).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let state = match StateDir::open(&config.state_dir) {
        Ok(state) => state,
        Err(e) => {
            tracing::error!("state directory unusable (VOLSPIKE_STATE_DIR): {e}");
            return 1;
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
    match runtime.block_on(supervise(config, selection)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    }
}

/// What `run` starts.
pub struct Selection {
    /// Scheduled jobs.
    pub scheduled: Vec<ScheduledJob>,
    /// Whether the funding stream (a continuous job with its own thread) runs.
    pub funding_stream: bool,
}

/// Whether job `name` is selected: not disabled, and named by `--only` when
/// `--only` is given.
fn selected(config: &Config, only: &[String], name: &str) -> bool {
    !config.disabled_jobs.iter().any(|d| d == name)
        && (only.is_empty() || only.iter().any(|o| o == name))
}

/// The jobs to run: those built for this configuration, minus disabled ones,
/// restricted by `--only`. A name that is not a job is a usage error.
fn select_jobs(config: &Config, only: &[String]) -> Result<Selection, String> {
    for name in only {
        if !crate::jobs::KNOWN.contains(&name.as_str()) {
            return Err(format!(
                "--only: unknown job `{name}` (jobs: {})",
                crate::jobs::KNOWN.join(", ")
            ));
        }
    }
    let available: Vec<ScheduledJob> = Vec::new();
    // Continuous jobs run on threads of their own, not in the scheduler.
    let continuous = [stream::NAME];
    for name in only {
        if !available.iter().any(|j| j.name() == name) && !continuous.contains(&name.as_str()) {
            return Err(format!(
                "--only: job `{name}` is not available in this version yet"
            ));
        }
    }
    Ok(Selection {
        funding_stream: selected(config, only, stream::NAME),
        scheduled: available
            .into_iter()
            .filter(|j| selected(config, only, j.name()))
            .collect(),
    })
}

/// Starts every loop, signals READY, and waits for SIGTERM or Ctrl-C.
async fn supervise(config: Config, selection: Selection) -> anyhow::Result<()> {
    let started = Instant::now();
    let liveness = Liveness::new(config.wedge.as_deref().map(liveness::parse_wedge));
    let board = StatusBoard::default();
    let (trigger, shutdown) = shutdown::channel();
    // One cache for the stream, the funding API and every job that needs prices.
    let funding = FundingApi {
        cache: FundingCache::new(),
        stream: StreamStatus::new(),
        stale_after: config.funding.stale_after,
    };
    let jobs = selection.scheduled;

    let http = HttpServer::bind(config.http_addr)?;
    let http_addr = http.local_addr();
    let http_threads = http.spawn(
        HttpContext {
            started,
            board: board.clone(),
            liveness: liveness.clone(),
            local: config.local,
            funding: funding.clone(),
        },
        liveness.register("http", LOOP_DEADLINE),
        shutdown.clone(),
        HTTP_WORKERS,
    );

    let stream_thread = if selection.funding_stream {
        let settings = StreamSettings::new(&config.binance.ws_url, config.funding.silence);
        Some(stream::spawn(
            settings,
            funding.cache.clone(),
            funding.stream.clone(),
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
    // HTTP workers notice shutdown within their poll interval, the stream
    // within its 1 s read tick plus the close handshake.
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
    fn the_funding_stream_is_selectable() {
        let on = |c: &Config, o: &[&str]| select_jobs(c, &only(o)).map(|s| s.funding_stream);
        let default = config(&[]);
        assert_eq!(on(&default, &[]), Ok(true));
        assert_eq!(on(&default, &["funding_stream"]), Ok(true));
        assert!(on(&default, &["volume_spike"]).is_err(), "not built yet");
        assert!(on(&default, &["nonsense"]).is_err());
        let disabled = config(&[("VOLSPIKE_DISABLED_JOBS", "funding_stream")]);
        assert_eq!(on(&disabled, &[]), Ok(false));
    }
}
