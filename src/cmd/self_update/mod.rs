//! `volspike self-update`: replace the installed binary with a signed
//! release, restart the service, and put the old one back if the new one does
//! not come up healthy.
//!
//! The steps, each of which can refuse with the reason and leave the running
//! binary untouched until step 5:
//! 1. find the artifact: the newest release in the manifest at
//!    `VOLSPIKE_UPDATE_URL` (self_update's manifest backend), an explicit
//!    `--version`, or a local file (`--from`);
//! 2. check its name (version, target) and the version policy: only newer
//!    versions unless `--version` names the one wanted;
//! 3. download into a private staging directory beside the binary and check
//!    the SHA-256 digest (manifest or `<artifact>.sha256`) and the ed25519
//!    signature against the built-in keys plus `/etc/volspike/release-keys.pub`;
//! 4. unpack and run the new binary's `version`: it must say the same version
//!    and our target;
//! 5. swap by rename, keeping the old binary as `volspike.previous`;
//! 6. restart `volspike.service` from a transient unit (outside the service's
//!    cgroup) and wait for a new READY, `/health` 200 with the new version,
//!    and that it stays up; otherwise restore the old binary, restart, and
//!    exit 1 saying why.
//!
//! `--rollback` runs steps 4–6 with `volspike.previous` as the new binary.
//! Every attempt (except `--check`) is recorded in `<state dir>/update.json`.

pub mod artifact;
pub mod keys;
pub mod manifest;
pub mod record;
pub mod restart;
pub mod verify;

use std::fmt;
use std::fs;
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::SelfUpdateArgs;
use crate::config::settings::{self, Setting};
use crate::config::Sources;
use crate::version::TARGET;

use crate::service::fs::{self as service_fs, is_root, Staging};
use crate::service::paths::{Layout, BINARY, SERVICE};
use crate::service::ready::connectable;
use keys::KeySet;
use record::UpdateRecord;

/// Writes a line to stdout and ignores failures: an operator's ssh session
/// dropping mid-update must not panic the updater before it can roll back.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), "volspike self-update: {}", format_args!($($arg)*));
    }};
}
/// [`say!`] for stderr.
macro_rules! complain {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), "volspike self-update: {}", format_args!($($arg)*));
    }};
}

/// Why an update did not happen (or did not stick).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Refused before anything was replaced.
    Refused(String),
    /// The new version failed; the previous one was restored and runs.
    RolledBack(String),
    /// Something broke that we could not repair by ourselves.
    Failed(String),
}

impl Problem {
    /// The outcome recorded in update.json.
    fn outcome(&self) -> &'static str {
        match self {
            Problem::Refused(_) => "refused",
            Problem::RolledBack(_) => "rolled-back",
            Problem::Failed(_) => "failed",
        }
    }

    fn reason(&self) -> &str {
        match self {
            Problem::Refused(r) | Problem::RolledBack(r) | Problem::Failed(r) => r,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Refused(r) => write!(f, "refused: {r}; the installed binary is untouched"),
            Problem::RolledBack(r) => write!(f, "rolled back: {r}"),
            Problem::Failed(r) => write!(f, "failed: {r}"),
        }
    }
}

/// How an attempt ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Done {
    /// Installed and (if the service runs) restarted and healthy.
    Installed,
    /// Nothing to do, or `--check` reported: nothing recorded.
    NothingDone,
}

/// Everything the update needs to know about this machine.
#[derive(Debug)]
pub struct Context {
    /// The installed binary and its `.previous`.
    pub layout: Layout,
    /// The systemd unit to restart.
    pub unit: String,
    /// Trusted public keys.
    pub keys: KeySet,
    /// The release manifest URL (`VOLSPIKE_UPDATE_URL`).
    pub update_url: Option<String>,
    /// Where `/health` answers (from `VOLSPIKE_HTTP_ADDR`).
    pub health: SocketAddr,
    /// The state directory (bookkeeping).
    pub state_dir: PathBuf,
    /// How long the new version has to become READY and healthy.
    pub start_timeout: Duration,
}

impl Context {
    /// Reads the environment and `/etc/volspike/volspike.env` (the
    /// environment wins, as for every command).
    fn load(args: &SelfUpdateArgs) -> Result<Context, String> {
        let env_file = Path::new(crate::check_config::DEFAULT_ENV_FILE);
        // The env file is root's (0600): `--check` by another user goes on
        // with the environment alone rather than failing.
        let sources = match Sources::load(env_file.exists().then_some(env_file)) {
            Ok(sources) => sources,
            Err(why) => {
                complain!("warning: {why}; using the environment only");
                Sources::load(None)?
            }
        };
        let http_addr = value(&sources, &settings::HTTP_ADDR).unwrap_or_default();
        let health = health_addr(&http_addr)?;
        let state_dir = PathBuf::from(
            value(&sources, &settings::STATE_DIR).unwrap_or_else(|| "/var/lib/volspike".into()),
        );
        Ok(Context {
            layout: Layout::system(),
            unit: SERVICE.to_string(),
            keys: KeySet::load(Path::new(keys::KEYS_FILE)),
            update_url: value(&sources, &settings::UPDATE_URL),
            health,
            state_dir,
            start_timeout: Duration::from_secs(args.start_timeout.max(1)),
        })
    }
}

/// A setting's value as `run` would see it: environment first, then the env
/// file (last assignment wins), an empty value means unset, then the default.
fn value(sources: &Sources, setting: &Setting) -> Option<String> {
    let found = setting
        .names
        .iter()
        .find_map(|name| sources.env.get(*name).cloned())
        .or_else(|| {
            setting.names.iter().find_map(|name| {
                sources
                    .file
                    .iter()
                    .rev()
                    .find(|a| a.key == *name)
                    .map(|a| a.value.clone())
            })
        });
    match found {
        Some(v) if v.trim().is_empty() => setting.default.map(str::to_string),
        Some(v) => Some(v.trim().to_string()),
        None => setting.default.map(str::to_string),
    }
}

/// The address to ask for `/health`: the listen address, with a wildcard
/// address replaced by loopback.
fn health_addr(http_addr: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = http_addr.parse().map_err(|_| {
        format!("VOLSPIKE_HTTP_ADDR: `{http_addr}` is not an address like 127.0.0.1:8080")
    })?;
    Ok(connectable(addr))
}

/// Runs the command; returns the exit code.
pub fn run(args: SelfUpdateArgs) -> i32 {
    // One crypto provider for every TLS user (self_update's ureq agent).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ctx = match Context::load(&args) {
        Ok(ctx) => ctx,
        Err(why) => {
            complain!("configuration error: {why}");
            return crate::config::EXIT_CONFIG;
        }
    };
    for warning in &ctx.keys.warnings {
        complain!("warning: {warning}");
    }
    let changes_things = !args.check;
    if changes_things && !is_root() {
        complain!(
            "refused: replacing {} and restarting {} needs root (sudo volspike self-update …); nothing was changed",
            BINARY,
            SERVICE
        );
        return 1;
    }
    if changes_things && in_service_cgroup(&ctx.unit) {
        return relaunch_outside(&ctx, &args);
    }
    let _lock = if changes_things {
        match Lock::take(&ctx.layout) {
            Ok(lock) => Some(lock),
            Err(problem) => {
                complain!("{problem}");
                return 1;
            }
        }
    } else {
        None
    };
    let (action, source) = if args.rollback {
        (
            "rollback",
            ctx.layout.previous_binary().display().to_string(),
        )
    } else if let Some(from) = &args.from {
        ("update", from.display().to_string())
    } else {
        ("update", ctx.update_url.clone().unwrap_or_default())
    };
    let mut rec = UpdateRecord::now(action, &source);
    let result = if args.rollback {
        rollback(&ctx, &args, &mut rec)
    } else {
        update(&ctx, &args, &mut rec)
    };
    let code = match &result {
        Ok(_) => 0,
        Err(problem) => {
            complain!("{problem}");
            1
        }
    };
    let record_it = changes_things && result != Ok(Done::NothingDone);
    if record_it {
        rec.at = UpdateRecord::now(action, &source).at;
        match &result {
            Ok(_) => rec.outcome = "ok".into(),
            Err(problem) => {
                rec.outcome = problem.outcome().into();
                rec.reason = Some(problem.reason().to_string());
            }
        }
        if let Err(e) = record::append(&ctx.state_dir, rec) {
            complain!(
                "warning: could not record the attempt in {}/{}: {e}",
                ctx.state_dir.display(),
                record::FILE
            );
        }
    }
    code
}

/// Update from the manifest or from `--from`.
fn update(ctx: &Context, args: &SelfUpdateArgs, rec: &mut UpdateRecord) -> Result<Done, Problem> {
    let current = installed_version(&ctx.layout)?;
    rec.from = Some(current.version.clone());
    // Beside the binary (same file system for the rename; and /tmp may be
    // noexec). `--check` by a user who cannot write there uses the temp dir.
    let staging = match Staging::new(&ctx.layout) {
        Err(_) if args.check => Staging::new_in(&ctx.layout, &std::env::temp_dir()),
        other => other,
    }
    .map_err(|e| Problem::Failed(format!("cannot prepare the update: {e}")))?;

    // 1-2: which artifact, and may it be installed at all.
    let (artifact_path, version, digest) = match &args.from {
        Some(from) => {
            let name = from
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Problem::Refused(format!("{}: not a file name", from.display())))?;
            let parsed = artifact::parse_name(name, TARGET).map_err(Problem::Refused)?;
            rec.to = Some(parsed.version.clone());
            if parsed.target != TARGET {
                return Err(Problem::Refused(format!(
                    "wrong target: {name} is built for {}, this machine runs {TARGET}",
                    parsed.target
                )));
            }
            version_policy(&current.version, &parsed.version, args.version.as_deref())?;
            // Check the copy we will install, not a path someone else may
            // still be writing to.
            let staged = staging.path().join(name);
            fs::copy(from, &staged)
                .map_err(|e| Problem::Refused(format!("cannot read {}: {e}", from.display())))?;
            let sidecar = PathBuf::from(format!("{}.sha256", from.display()));
            let digest = match fs::read_to_string(&sidecar) {
                Ok(text) => Some((
                    verify::digest_from_sums(&text, name)
                        .map_err(|why| Problem::Refused(format!("{}: {why}", sidecar.display())))?,
                    sidecar.display().to_string(),
                )),
                Err(_) => None,
            };
            (staged, parsed.version, digest)
        }
        None => {
            let url = ctx.update_url.as_deref().ok_or_else(|| {
                Problem::Refused(format!(
                    "no release source: set VOLSPIKE_UPDATE_URL in {} or pass --from PATH",
                    crate::check_config::DEFAULT_ENV_FILE
                ))
            })?;
            let releases = manifest::fetch(url).map_err(Problem::Failed)?;
            let selected = match manifest::choose(
                &releases,
                &current.version,
                args.version.as_deref(),
                TARGET,
            )
            .map_err(Problem::Refused)?
            {
                manifest::Choice::UpToDate { newest } => {
                    say!(
                        "volspike {} is up to date (newest in {url}: {})",
                        current.version,
                        newest.as_deref().unwrap_or("no release")
                    );
                    return Ok(Done::NothingDone);
                }
                manifest::Choice::Install(selected) => selected,
            };
            rec.to = Some(selected.version.clone());
            version_policy(&current.version, &selected.version, args.version.as_deref())?;
            if args.check {
                say!(
                    "update available: {} -> {} ({}); run `volspike self-update` to install it",
                    current.version,
                    selected.version,
                    selected.url
                );
                return Ok(Done::NothingDone);
            }
            let staged = staging.path().join(&selected.asset_name);
            say!("downloading {}", selected.url);
            manifest::download(&selected.url, &staged).map_err(Problem::Failed)?;
            (
                staged,
                selected.version,
                Some((selected.sha256, format!("the manifest {url}"))),
            )
        }
    };

    // 3-4: digest, signature, and the binary's own word.
    let name = artifact_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let digest_note = match &digest {
        Some((hex, origin)) => {
            verify::check_digest(&artifact_path, hex, origin).map_err(Problem::Refused)?;
            format!("sha256 matches {origin}")
        }
        None => "no digest file beside it (signature checked)".to_string(),
    };
    let key = verify::check_signature(&artifact_path, &ctx.keys).map_err(Problem::Refused)?;
    let binary =
        verify::extract_binary(&artifact_path, staging.path()).map_err(Problem::Refused)?;
    let line = verify::run_version(&binary).map_err(Problem::Refused)?;
    verify::check_version_line(&line, &version, TARGET).map_err(Problem::Refused)?;
    say!(
        "verified {name}: {digest_note}; signed by {}; its binary runs and says {} ({}, commit {})",
        key.origin,
        line.version,
        line.target,
        line.commit
    );
    if args.check {
        say!(
            "would replace {} with {} (--check: nothing changed)",
            current.version,
            line.version
        );
        return Ok(Done::NothingDone);
    }
    confirm(
        args,
        &format!(
            "Replace volspike {} with {}?",
            current.version, line.version
        ),
    )?;

    // 5-6.
    activate(ctx, &binary, &current.version, &line.version, rec)?;
    Ok(Done::Installed)
}

/// `--rollback`: the kept previous binary becomes the installed one.
fn rollback(ctx: &Context, args: &SelfUpdateArgs, rec: &mut UpdateRecord) -> Result<Done, Problem> {
    let current = installed_version(&ctx.layout)?;
    rec.from = Some(current.version.clone());
    let previous = ctx.layout.previous_binary();
    if !previous.exists() {
        return Err(Problem::Refused(format!(
            "no previous binary at {}: nothing to roll back to",
            previous.display()
        )));
    }
    let staging = Staging::new(&ctx.layout)
        .map_err(|e| Problem::Failed(format!("cannot prepare the rollback: {e}")))?;
    let staged = staging.path().join(verify::BINARY_IN_ARCHIVE);
    fs::copy(&previous, &staged)
        .map_err(|e| Problem::Failed(format!("cannot copy {}: {e}", previous.display())))?;
    let line = verify::run_version(&staged).map_err(Problem::Refused)?;
    rec.to = Some(line.version.clone());
    if line.target != TARGET {
        return Err(Problem::Refused(format!(
            "wrong target: {} is built for {}, this machine runs {TARGET}",
            previous.display(),
            line.target
        )));
    }
    confirm(
        args,
        &format!(
            "Roll back volspike {} to {}?",
            current.version, line.version
        ),
    )?;
    activate(ctx, &staged, &current.version, &line.version, rec)?;
    Ok(Done::Installed)
}

/// Newer is fine; the same or older only when `--version` asks for exactly it.
fn version_policy(current: &str, candidate: &str, wanted: Option<&str>) -> Result<(), Problem> {
    use std::cmp::Ordering;
    if let Some(wanted) = wanted {
        if artifact::compare(candidate, wanted).map_err(Problem::Refused)? != Ordering::Equal {
            return Err(Problem::Refused(format!(
                "the artifact is version {candidate}, but --version asked for {}",
                artifact::normalize(wanted)
            )));
        }
        return Ok(());
    }
    match artifact::compare(candidate, current).map_err(Problem::Refused)? {
        Ordering::Greater => Ok(()),
        Ordering::Equal => Err(Problem::Refused(format!(
            "{candidate} is already installed; pass --version {candidate} to reinstall it"
        ))),
        Ordering::Less => Err(Problem::Refused(format!(
            "{candidate} is older than the installed {current}; pass --version {candidate} to go back on purpose"
        ))),
    }
}

/// Swap `new_binary` in, restart, wait; on failure restore and restart.
fn activate(
    ctx: &Context,
    new_binary: &Path,
    from: &str,
    to: &str,
    rec: &mut UpdateRecord,
) -> Result<(), Problem> {
    let before = restart::show(&ctx.unit)
        .map_err(|e| Problem::Refused(format!("cannot ask systemd about {}: {e}", ctx.unit)))?;
    // From here on, losing the terminal or a Ctrl-C must not stop us
    // between the swap and the verdict (new version healthy, or old back).
    ignore_interruptions();
    let swapped = service_fs::swap_in(&ctx.layout, new_binary)
        .map_err(|e| Problem::Failed(format!("cannot swap in the new binary: {e}")))?;
    say!(
        "{} is now {to}; {from} kept as {}",
        ctx.layout.binary().display(),
        ctx.layout.previous_binary().display()
    );
    if before.load_state != "loaded" || !before.is_running_or_starting() {
        if let Err(e) = swapped.commit() {
            complain!("warning: {e}");
        }
        say!(
            "{} is {}: not restarted (start it with `systemctl start {}`)",
            ctx.unit,
            if before.load_state == "loaded" {
                before.active_state.as_str()
            } else {
                "not installed"
            },
            ctx.unit
        );
        return Ok(());
    }
    let outcome = restart::restart_outside(&ctx.unit).and_then(|job| {
        say!(
            "restarting {} (transient unit {job}); waiting up to {} s for READY and /health (Ctrl-C is ignored until then)",
            ctx.unit,
            ctx.start_timeout.as_secs()
        );
        restart::wait_ready(
            &ctx.unit,
            &before.invocation_id,
            to,
            ctx.health,
            ctx.start_timeout,
        )
    });
    match outcome {
        Ok(ready) => {
            if let Err(e) = swapped.commit() {
                complain!("warning: {e}");
            }
            rec.downtime_ms = ready.downtime.map(|d| d.as_millis() as u64);
            say!(
                "volspike {to} is running (invocation {}): READY {:.2} s after the restart request, /health 200",
                ready.invocation,
                ready.ready_after.as_secs_f64()
            );
            match ready.downtime {
                Some(d) => say!(
                    "downtime {:.3} s (old stopping -> new READY, systemd timestamps)",
                    d.as_secs_f64()
                ),
                None => say!("downtime unknown (systemd gave no timestamps)"),
            }
            Ok(())
        }
        Err(why) => {
            complain!("{to} did not come up: {why}; restoring {from}");
            match restore(ctx, swapped, from) {
                Ok(()) => Err(Problem::RolledBack(format!(
                    "{to} did not come up healthy within {} s ({why}); {from} is back in {} and running, READY and healthy",
                    ctx.start_timeout.as_secs(),
                    ctx.layout.binary().display()
                ))),
                Err(e) => Err(Problem::Failed(format!(
                    "{to} did not come up ({why}), and restoring {from} failed too: {e}; check `systemctl status {}`",
                    ctx.unit
                ))),
            }
        }
    }
}

/// Undo the swap and bring the old binary back up.
fn restore(ctx: &Context, swapped: service_fs::Swapped, from: &str) -> Result<(), String> {
    swapped
        .undo()
        .map_err(|e| format!("cannot put the old binary back: {e}"))?;
    let before = restart::show(&ctx.unit)?;
    restart::restart_outside(&ctx.unit)?;
    restart::wait_ready(
        &ctx.unit,
        &before.invocation_id,
        from,
        ctx.health,
        ctx.start_timeout,
    )
    .map(|_| ())
}

/// The installed binary's own version.
fn installed_version(layout: &Layout) -> Result<artifact::VersionLine, Problem> {
    let binary = layout.binary();
    if !binary.exists() {
        return Err(Problem::Refused(format!(
            "volspike is not installed at {} (run `volspike install` first)",
            binary.display()
        )));
    }
    verify::run_version(&binary).map_err(|why| {
        Problem::Refused(format!(
            "cannot tell the installed version ({why}); reinstall with `volspike install`"
        ))
    })
}

/// Asks on a terminal unless `--yes`; without a terminal, refuses.
fn confirm(args: &SelfUpdateArgs, question: &str) -> Result<(), Problem> {
    if args.yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Problem::Refused(
            "not confirmed: stdin is not a terminal, pass --yes to update without a question"
                .to_string(),
        ));
    }
    let _ = write!(std::io::stdout(), "{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = stdin.lock().read_line(&mut answer);
    match answer.trim() {
        "y" | "Y" | "yes" | "YES" | "Yes" => Ok(()),
        _ => Err(Problem::Refused("not confirmed".to_string())),
    }
}

fn in_service_cgroup(unit: &str) -> bool {
    fs::read_to_string("/proc/self/cgroup")
        .map(|text| restart::inside_unit_cgroup(&text, unit))
        .unwrap_or(false)
}

/// The terminal going away (ssh dropped) sends SIGHUP, Ctrl-C SIGINT; the
/// update must finish or roll back regardless.
fn ignore_interruptions() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
}

/// Inside `volspike.service` the restart would kill us: run the same update
/// as a transient unit of its own and relay its exit status.
fn relaunch_outside(ctx: &Context, args: &SelfUpdateArgs) -> i32 {
    if !args.yes {
        complain!(
            "refused: running inside {}, so the update must continue as a transient unit, which cannot ask questions: pass --yes; nothing was changed",
            ctx.unit
        );
        return 1;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            complain!("failed: cannot find this binary to relaunch it: {e}; nothing was changed");
            return 1;
        }
    };
    let name = restart::transient_name("run");
    let mut cmd = std::process::Command::new("systemd-run");
    cmd.arg(format!("--unit={name}"))
        .arg("--description=volspike self-update (moved out of volspike.service)")
        .args(["--collect", "--wait", "--pipe", "--quiet"]);
    for var in [
        "VOLSPIKE_UPDATE_URL",
        "VOLSPIKE_HTTP_ADDR",
        "VOLSPIKE_STATE_DIR",
    ] {
        if let Ok(v) = std::env::var(var) {
            cmd.arg(format!("--setenv={var}={v}"));
        }
    }
    cmd.arg("--").arg(exe).arg("self-update").arg("--yes");
    cmd.arg(format!("--start-timeout={}", ctx.start_timeout.as_secs()));
    if args.rollback {
        cmd.arg("--rollback");
    }
    if let Some(v) = &args.version {
        cmd.arg(format!("--version={v}"));
    }
    if let Some(from) = &args.from {
        match fs::canonicalize(from) {
            Ok(abs) => {
                cmd.arg("--from").arg(abs);
            }
            Err(e) => {
                complain!(
                    "refused: cannot read {}: {e}; the installed binary is untouched",
                    from.display()
                );
                return 1;
            }
        }
    }
    say!(
        "running inside {}: continuing as transient unit {name} (log: journalctl -u {name})",
        ctx.unit
    );
    match cmd.status() {
        Ok(status) => status.code().unwrap_or(1),
        Err(e) => {
            complain!("failed: cannot run systemd-run: {e}; nothing was changed");
            1
        }
    }
}

/// One updater at a time: a lock file beside the binary holding our pid.
struct Lock {
    /// The lock file.
    path: PathBuf,
}

impl Lock {
    fn take(layout: &Layout) -> Result<Lock, Problem> {
        let path = layout.binary_dir().join(".volspike-update.lock");
        for _ in 0..2 {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let _ = writeln!(file, "{}", std::process::id());
                    return Ok(Lock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = fs::read_to_string(&path).unwrap_or_default();
                    let pid = holder.trim();
                    let alive = !pid.is_empty() && Path::new(&format!("/proc/{pid}")).exists();
                    if alive {
                        return Err(Problem::Refused(format!(
                            "another self-update is running (pid {pid}, lock {})",
                            path.display()
                        )));
                    }
                    // Left by an updater that was killed: take it over.
                    let _ = fs::remove_file(&path);
                }
                Err(e) => {
                    return Err(Problem::Failed(format!(
                        "cannot create the lock {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        Err(Problem::Failed(format!(
            "cannot take the lock {}",
            path.display()
        )))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Throwaway keys, signed artifacts and temporary directories for the
    //! unit tests (no root needed).

    use std::io::Cursor;
    use std::path::{Path, PathBuf};

    use self_update::zipsign_api::SigningKey;

    pub use crate::testkit::TempDir;

    /// A deterministic throwaway key pair: (signing key, raw public key).
    pub fn key_pair(seed: u8) -> (SigningKey, [u8; 32]) {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let public = signing.verifying_key().to_bytes();
        (signing, public)
    }

    /// Writes `dir/name`: a .tar.gz holding `volspike` (mode 0755) with
    /// `binary` as its content, signed by `keys` (none: unsigned).
    pub fn make_artifact(dir: &Path, name: &str, binary: &[u8], keys: &[SigningKey]) -> PathBuf {
        let mut gz = Vec::new();
        {
            let encoder = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::default());
            let mut tar = tar::Builder::new(encoder);
            let mut header = tar::Header::new_gnu();
            header.set_size(binary.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            tar.append_data(&mut header, "volspike", binary)
                .expect("tar append");
            tar.into_inner().expect("tar").finish().expect("gzip");
        }
        let path = dir.join(name);
        if keys.is_empty() {
            std::fs::write(&path, &gz).expect("write artifact");
        } else {
            let mut out = std::fs::File::create(&path).expect("create artifact");
            self_update::zipsign_api::sign::copy_and_sign_tar(
                &mut Cursor::new(gz),
                &mut out,
                keys,
                Some(name.as_bytes()),
            )
            .expect("sign");
        }
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_policy_refuses_older_and_same_without_version() {
        assert_eq!(version_policy("0.1.0", "0.1.1", None), Ok(()));
        let err = version_policy("0.1.1", "0.1.0", None).expect_err("older");
        assert_eq!(
            err.to_string(),
            "refused: 0.1.0 is older than the installed 0.1.1; pass --version 0.1.0 to go back on purpose; the installed binary is untouched"
        );
        assert!(version_policy("0.1.1", "0.1.1", None).is_err());
        assert_eq!(version_policy("0.1.1", "0.1.0", Some("v0.1.0")), Ok(()));
        assert_eq!(version_policy("0.1.1", "0.1.1", Some("0.1.1")), Ok(()));
        let err = version_policy("0.1.0", "0.1.2", Some("0.1.3")).expect_err("mismatch");
        assert!(err.to_string().contains("--version asked for 0.1.3"));
    }

    #[test]
    fn health_address_from_the_listen_address() {
        assert_eq!(
            health_addr("127.0.0.1:8080"),
            Ok("127.0.0.1:8080".parse().expect("addr"))
        );
        assert_eq!(
            health_addr("0.0.0.0:9000"),
            Ok("127.0.0.1:9000".parse().expect("addr"))
        );
        assert_eq!(
            health_addr("[::]:9000"),
            Ok("[::1]:9000".parse().expect("addr"))
        );
        assert!(health_addr("localhost").is_err());
    }

    #[test]
    fn settings_environment_wins_then_file_then_default() {
        let mut sources = Sources::default();
        assert_eq!(
            value(&sources, &settings::HTTP_ADDR).as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(value(&sources, &settings::UPDATE_URL), None);
        let (file, _) = crate::config::envfile::parse(
            "VOLSPIKE_UPDATE_URL=http://a/manifest.json\nVOLSPIKE_UPDATE_URL=http://b/manifest.json\n",
        );
        sources.file = file;
        assert_eq!(
            value(&sources, &settings::UPDATE_URL).as_deref(),
            Some("http://b/manifest.json")
        );
        sources.env.insert(
            "VOLSPIKE_UPDATE_URL".into(),
            "http://env/manifest.json".into(),
        );
        assert_eq!(
            value(&sources, &settings::UPDATE_URL).as_deref(),
            Some("http://env/manifest.json")
        );
    }

    #[test]
    fn problems_name_their_reason() {
        let p = Problem::RolledBack("0.1.2 did not come up".into());
        assert_eq!(p.outcome(), "rolled-back");
        assert_eq!(p.to_string(), "rolled back: 0.1.2 did not come up");
    }
}
