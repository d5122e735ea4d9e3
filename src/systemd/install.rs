//! `volspike install`: make this machine run the appliance under systemd.
//!
//! Install first looks at the machine and computes a [`Plan`]: the list of
//! [`Action`]s that bring it to the installed state, each with a description.
//! An empty plan means "already installed, nothing to do" and nothing is
//! touched (no restart). `--dry-run` prints the plan and stops. Otherwise the
//! actions run in order, each printed as it happens; the first failure stops
//! the run with the step, the path and the cause.
//!
//! Planning only reads files (under a root prefix, so tests use a temporary
//! directory) and asks systemd about units through [`UnitQuery`]; applying is
//! the only part that writes or runs `systemctl`/`useradd`.
//!
//! Exit codes: 0 installed and READY; 1 failure (nothing after the failing
//! step was done); 78 installed but not started because the env file lacks
//! required settings (the service would exit 78 anyway).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cli::InstallArgs;
use crate::config::{envfile, settings, template, Config, Mode, Sources, EXIT_CONFIG};
use crate::systemd::systemctl::{self, Systemctl, UnitQuery, UnitState};
use crate::systemd::units::{self, UnitValues, LEGACY_UNITS, SERVICE, SOCKET};

/// Where the binary is installed.
pub const BINARY: &str = "/usr/local/bin/volspike";
/// The binary it replaced; `self-update --rollback` uses the same name.
pub const PREVIOUS_BINARY: &str = "/usr/local/bin/volspike.previous";
/// The configuration directory.
pub const ENV_DIR: &str = "/etc/volspike";
/// The env file the unit reads.
pub const ENV_FILE: &str = crate::check_config::DEFAULT_ENV_FILE;
/// An env file replaced by `--env-file` is kept here.
pub const PREVIOUS_ENV_FILE: &str = "/etc/volspike/volspike.env.previous";
/// The unit file.
pub const UNIT_FILE: &str = "/etc/systemd/system/volspike.service";
/// The socket unit file: systemd holds the HTTP listener across restarts.
pub const SOCKET_FILE: &str = "/etc/systemd/system/volspike.socket";
/// Drop-ins of the unit (operators' and tests' overrides).
pub const DROPIN_DIR: &str = "/etc/systemd/system/volspike.service.d";
/// The state directory (the unit's `StateDirectory=volspike`).
pub const STATE_DIR: &str = "/var/lib/volspike";
/// Copies of the legacy units' files.
pub const LEGACY_DIR: &str = "/var/lib/volspike/legacy-units";
/// The Python deployment's env file, imported when present.
pub const LEGACY_ENV_FILE: &str = "/home/trader/.volspike.env";
/// The system user (and group) the service runs as.
pub const USER: &str = "volspike";
/// How long to wait for READY=1 after (re)starting.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the installation lives: the real root, or a test's temporary root.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Prefix of every path (`/` on a real machine).
    pub root: PathBuf,
    /// Owner of root-owned files; 0 on a real machine, the test's own uid in tests.
    pub owner_uid: u32,
}

impl Layout {
    /// The real machine.
    pub fn system() -> Layout {
        Layout {
            root: PathBuf::from("/"),
            owner_uid: 0,
        }
    }

    /// A tree under `root` (tests).
    pub fn under(root: &Path, owner_uid: u32) -> Layout {
        Layout {
            root: root.to_path_buf(),
            owner_uid,
        }
    }

    /// The host path of an absolute path on the installed system.
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The binary to install (this process's own executable).
    pub source_binary: PathBuf,
    /// `--env-file F`: installed as the env file, replacing the current one.
    pub env_file: Option<PathBuf>,
    /// `--keep-legacy`: leave the Python deployment's units running.
    pub keep_legacy: bool,
    /// `--dry-run`: unreadable files are reported, not fatal.
    pub dry_run: bool,
}

/// Who should own a directory install creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// root (or the test's own uid).
    Root,
    /// The service user, looked up when the action runs (it may be created
    /// earlier in the same run).
    Service,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `useradd --system` the service user.
    CreateUser,
    /// Create a directory with a mode and owner.
    CreateDir {
        /// Path on the installed system.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Owner and group.
        owner: Owner,
    },
    /// Stop and disable a unit we replace, keeping copies of its files.
    RetireUnit {
        /// Unit name.
        unit: String,
        /// Units to stop: it and, for a timer, its running service.
        stop: Vec<String>,
        /// Whether it is enabled and must be disabled.
        disable: bool,
        /// Host paths to copy (source, destination); already-identical copies are omitted.
        copies: Vec<(PathBuf, PathBuf)>,
        /// Why, for the message ("legacy", "runs Python"…).
        why: String,
    },
    /// Copy the binary into place atomically.
    InstallBinary {
        /// The file to copy.
        source: PathBuf,
        /// Keep the replaced binary as [`PREVIOUS_BINARY`].
        keep_previous: bool,
    },
    /// Write a root-owned file atomically.
    WriteFile {
        /// Path on the installed system.
        path: String,
        /// The new contents.
        contents: String,
        /// Permission bits.
        mode: u32,
        /// Keep the replaced file under this path first.
        backup: Option<String>,
        /// Where the contents came from, for the message.
        what: String,
    },
    /// Set a file's mode to `mode` and its owner to root.
    FixPermissions {
        /// Path on the installed system.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// `systemctl daemon-reload`.
    DaemonReload,
    /// `systemctl enable volspike.socket volspike.service`.
    Enable,
    /// `systemctl restart volspike.service`, then wait for READY.
    Start {
        /// Why ("not running", "binary changed"…).
        why: String,
        /// Stop the service and (re)open volspike.socket first: it is not
        /// listening yet, or its address changed. Otherwise the socket is
        /// left open so the restart refuses no connection.
        reopen_socket: bool,
    },
    /// `systemctl stop` a unit (uninstall).
    Stop {
        /// Unit name.
        unit: String,
    },
    /// `systemctl disable` a unit (uninstall).
    Disable {
        /// Unit name.
        unit: String,
    },
    /// Remove a file (uninstall).
    RemoveFile {
        /// Path on the installed system.
        path: String,
    },
    /// Remove a directory and everything in it (uninstall --purge).
    RemoveDir {
        /// Path on the installed system.
        path: String,
    },
}

impl Action {
    /// What the step does, as printed in the progress and by `--dry-run`.
    pub fn describe(&self) -> String {
        match self {
            Action::CreateUser => format!("creating system user {USER} (no home, no login shell)"),
            Action::CreateDir { path, mode, owner } => {
                let who = match owner {
                    Owner::Root => "root:root".to_string(),
                    Owner::Service => format!("{USER}:{USER}"),
                };
                format!("creating {path} ({who}, mode {mode:04o})")
            }
            Action::RetireUnit {
                unit,
                stop,
                disable,
                copies,
                why,
            } => {
                let mut verbs = Vec::new();
                if !stop.is_empty() {
                    verbs.push("stopping");
                }
                if *disable {
                    verbs.push("disabling");
                }
                let mut text = if verbs.is_empty() {
                    format!("keeping a copy of {why} {unit}")
                } else {
                    format!("{} {why} {unit}", verbs.join(" and "))
                };
                if !copies.is_empty() {
                    text.push_str(&format!(" (unit file copied to {LEGACY_DIR}/)"));
                }
                text
            }
            Action::InstallBinary { keep_previous, .. } => {
                if *keep_previous {
                    format!(
                        "copying binary to {BINARY} (the replaced one kept as {PREVIOUS_BINARY})"
                    )
                } else {
                    format!("copying binary to {BINARY}")
                }
            }
            Action::WriteFile {
                path,
                mode,
                what,
                backup,
                ..
            } => {
                let mut text = format!("writing {path} (mode {mode:04o}, {what})");
                if let Some(b) = backup {
                    text.push_str(&format!("; the replaced one kept as {b}"));
                }
                text
            }
            Action::FixPermissions { path, mode } => {
                format!("setting {path} to root-owned, mode {mode:04o}")
            }
            Action::DaemonReload => "systemctl daemon-reload".to_string(),
            Action::Enable => format!("systemctl enable {SOCKET} {SERVICE} (start at boot)"),
            Action::Start { why, reopen_socket } => {
                if *reopen_socket {
                    format!("(re)opening {SOCKET}, (re)starting {SERVICE} ({why}) and waiting for READY")
                } else {
                    format!(
                        "(re)starting {SERVICE} ({why}; {SOCKET} stays open) and waiting for READY"
                    )
                }
            }
            Action::Stop { unit } => format!("systemctl stop {unit}"),
            Action::Disable { unit } => format!("systemctl disable {unit}"),
            Action::RemoveFile { path } => format!("removing {path}"),
            Action::RemoveDir { path } => format!("removing {path} and everything in it"),
        }
    }
}

/// What install found and intends to do.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The steps, in order.
    pub actions: Vec<Action>,
    /// Printed before the steps, loudly.
    pub warnings: Vec<String>,
    /// Printed before the steps (what was found, what is kept).
    pub notes: Vec<String>,
    /// Required settings the env file leaves empty.
    pub missing_keys: Vec<&'static str>,
    /// Other problems `check-config` would report.
    pub config_problems: Vec<String>,
    /// The dry run could not read the env file (or the old one to import),
    /// so the configuration was not judged.
    pub config_unknown: bool,
    /// The service's listen address, for the `/health` probe.
    pub http_addr: String,
    /// The service's state before the plan.
    pub service: UnitState,
}

impl Plan {
    /// Whether the env file is complete enough to start the service.
    pub fn config_ok(&self) -> bool {
        self.missing_keys.is_empty() && self.config_problems.is_empty()
    }
}

/// Reads a file; `Ok(None)` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Reads a text file; `Ok(None)` when it does not exist.
fn read_text(path: &Path) -> Result<Option<String>, String> {
    read_optional(path)?
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
        })
        .transpose()
}

/// The uid and gid of `name` in an `/etc/passwd` text.
pub fn lookup_user(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

fn service_user(layout: &Layout) -> Result<Option<(u32, u32)>, String> {
    let passwd = layout.path("/etc/passwd");
    Ok(read_text(&passwd)?.and_then(|text| lookup_user(&text, USER)))
}

/// The units whose state the plan needs: ours, the legacy ones, and the
/// services the legacy timers start.
fn queried_units() -> Vec<String> {
    let mut units = vec![SERVICE.to_string(), SOCKET.to_string()];
    for unit in LEGACY_UNITS {
        units.push(unit.to_string());
        if let Some(service) = units::timer_service(unit) {
            units.push(service);
        }
    }
    units
}

fn state_of<'a>(states: &'a [UnitState], unit: &str) -> Option<&'a UnitState> {
    states.iter().find(|s| s.id == unit)
}

/// Host path of a unit file systemd loaded (`FragmentPath`), when it is a
/// real file.
fn fragment(layout: &Layout, state: &UnitState) -> Option<PathBuf> {
    let path = state.fragment_path.as_str();
    if path.is_empty() || path == "/dev/null" {
        return None;
    }
    Some(layout.path(path))
}

/// (source, destination) when the copy under [`LEGACY_DIR`] is missing or differs.
fn copy_needed(layout: &Layout, source: &Path) -> Result<Option<(PathBuf, PathBuf)>, String> {
    let Some(name) = source.file_name() else {
        return Ok(None);
    };
    let Some(contents) = read_optional(source)? else {
        return Ok(None);
    };
    let destination = layout.path(LEGACY_DIR).join(name);
    match read_optional(&destination) {
        Ok(Some(existing)) if existing == contents => Ok(None),
        _ => Ok(Some((source.to_path_buf(), destination))),
    }
}

/// Looks at the machine and computes the plan.
pub fn plan(layout: &Layout, options: &Options, query: &dyn UnitQuery) -> Result<Plan, String> {
    let mut plan = Plan::default();
    let mut actions = Vec::new();

    let units_asked = queried_units();
    let states = match query.states(&units_asked) {
        Ok(states) => states,
        Err(e) if options.dry_run => {
            plan.warnings.push(format!(
                "cannot ask systemd about units ({e}); assuming none of them exist"
            ));
            units_asked
                .iter()
                .map(|u| UnitState::not_found(u))
                .collect()
        }
        Err(e) => return Err(e),
    };
    let service = state_of(&states, SERVICE)
        .cloned()
        .unwrap_or_else(|| UnitState::not_found(SERVICE));
    plan.service = service.clone();
    let socket = state_of(&states, SOCKET)
        .cloned()
        .unwrap_or_else(|| UnitState::not_found(SOCKET));

    // The user first: the state directory is created owned by it.
    if service_user(layout)?.is_none() {
        actions.push(Action::CreateUser);
    }
    // Created owned by the service user so systemd's StateDirectory= finds
    // the ownership right and never chowns it (with our root-owned copies of
    // legacy units inside) recursively.
    if !layout.path(STATE_DIR).exists() {
        actions.push(Action::CreateDir {
            path: STATE_DIR.into(),
            mode: 0o750,
            owner: Owner::Service,
        });
    }

    // A volspike.service that is not ours (the Python one) is replaced
    // whatever --keep-legacy says: the name is the same.
    let mut retire = Vec::new();
    let mut replacing_foreign = false;
    let own_unit_path = layout.path(UNIT_FILE);
    let current_unit_path = fragment(layout, &service).unwrap_or_else(|| own_unit_path.clone());
    if let Some(text) = read_text(&current_unit_path)? {
        if !units::is_ours(&text, BINARY) {
            replacing_foreign = true;
            let why = if units::runs_python(&text) {
                "the Python deployment's".to_string()
            } else {
                "a foreign".to_string()
            };
            plan.warnings.push(format!(
                "{} ({}) is not the appliance's: it is stopped, kept under {LEGACY_DIR}/ and replaced",
                SERVICE,
                current_unit_path.display()
            ));
            retire.push(Action::RetireUnit {
                unit: SERVICE.into(),
                stop: if service.is_running_or_starting() {
                    vec![SERVICE.to_string()]
                } else {
                    Vec::new()
                },
                disable: service.is_enabled(),
                copies: copy_needed(layout, &current_unit_path)?
                    .into_iter()
                    .collect(),
                why,
            });
        }
    }

    for unit in LEGACY_UNITS {
        let Some(state) = state_of(&states, unit).filter(|s| s.exists()) else {
            continue;
        };
        let companion = units::timer_service(unit)
            .and_then(|s| state_of(&states, &s).cloned())
            .filter(UnitState::exists);
        let stop: Vec<String> = std::iter::once(state)
            .chain(companion.as_ref())
            .filter(|s| s.is_running_or_starting())
            .map(|s| s.id.clone())
            .collect();
        let running = !stop.is_empty();
        if options.keep_legacy {
            if running || state.is_enabled() {
                plan.warnings.push(format!(
                    "--keep-legacy: {unit} stays {}; it and volspike will BOTH post every alert (duplicates)",
                    if running { "running" } else { "enabled" }
                ));
            }
            continue;
        }
        let mut copies = Vec::new();
        for s in std::iter::once(state).chain(companion.as_ref()) {
            if let Some(path) = fragment(layout, s) {
                copies.extend(copy_needed(layout, &path)?);
            }
        }
        if running || state.is_enabled() || !copies.is_empty() {
            retire.push(Action::RetireUnit {
                unit: unit.to_string(),
                stop,
                disable: state.is_enabled(),
                copies,
                why: "legacy".into(),
            });
        }
    }
    if !retire.is_empty() {
        if !layout.path(LEGACY_DIR).exists() {
            actions.push(Action::CreateDir {
                path: LEGACY_DIR.into(),
                mode: 0o700,
                owner: Owner::Root,
            });
        }
        actions.extend(retire);
    }

    // The binary.
    let source = fs::read(&options.source_binary).map_err(|e| {
        format!(
            "cannot read this program's binary {}: {e}",
            options.source_binary.display()
        )
    })?;
    let installed = read_optional(&layout.path(BINARY))?;
    let binary_changed = installed.as_deref() != Some(source.as_slice());
    if binary_changed {
        actions.push(Action::InstallBinary {
            source: options.source_binary.clone(),
            keep_previous: installed.is_some(),
        });
    }

    // The env file.
    let env_changed = plan_env(layout, options, &mut plan, &mut actions)?;

    // The unit.
    let rendered = units::render_service(&UnitValues {
        binary: BINARY,
        env_file: ENV_FILE,
        user: USER,
    })?;
    let service_changed = read_text(&own_unit_path)?.as_deref() != Some(rendered.as_str());
    if service_changed {
        actions.push(Action::WriteFile {
            path: UNIT_FILE.into(),
            contents: rendered,
            mode: 0o644,
            backup: None,
            what: "the hardened unit".into(),
        });
    }
    // The socket listens where the env file says; an unusable address is
    // already among the configuration problems, so nothing is started.
    let socket_changed = match units::render_socket(&plan.http_addr) {
        Ok(rendered) => {
            let changed =
                read_text(&layout.path(SOCKET_FILE))?.as_deref() != Some(rendered.as_str());
            if changed {
                actions.push(Action::WriteFile {
                    path: SOCKET_FILE.into(),
                    contents: rendered,
                    mode: 0o644,
                    backup: None,
                    what: format!("the HTTP listener on {}", plan.http_addr),
                });
            }
            changed
        }
        Err(e) => {
            if plan.config_problems.is_empty() {
                plan.config_problems.push(e);
            }
            false
        }
    };
    let unit_changed = service_changed || socket_changed;
    if unit_changed {
        actions.push(Action::DaemonReload);
    }
    if replacing_foreign || !service.is_enabled() || !socket.is_enabled() {
        actions.push(Action::Enable);
    }
    // A socket that is not listening (first install, or an upgrade from a
    // version that bound the port itself) or moves to another address is
    // opened with the service stopped; otherwise it stays open throughout.
    let reopen_socket = socket_changed || !socket.is_up();

    let why = if replacing_foreign {
        Some("replacing the Python service".to_string())
    } else if !service.exists() {
        Some("it is not installed yet".to_string())
    } else if !service.is_up() {
        Some(format!(
            "it is {}/{}",
            service.active_state, service.sub_state
        ))
    } else {
        let changed: Vec<&str> = [
            (binary_changed, "binary"),
            (unit_changed, "unit"),
            (env_changed, "env file"),
        ]
        .iter()
        .filter(|(c, _)| *c)
        .map(|(_, what)| *what)
        .collect();
        let mut reasons = Vec::new();
        if !changed.is_empty() {
            reasons.push(format!("{} changed", changed.join(", ")));
        }
        if reopen_socket {
            reasons.push(if socket.is_up() {
                format!("{SOCKET} moves to {}", plan.http_addr)
            } else {
                format!("{SOCKET} is not listening yet")
            });
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    };
    if let Some(why) = why {
        if plan.config_ok() {
            actions.push(Action::Start { why, reopen_socket });
        }
    }
    plan.actions = actions;
    Ok(plan)
}

/// Plans the env file; returns whether its contents change.
fn plan_env(
    layout: &Layout,
    options: &Options,
    plan: &mut Plan,
    actions: &mut Vec<Action>,
) -> Result<bool, String> {
    let env_path = layout.path(ENV_FILE);
    let tolerate = |e: String, plan: &mut Plan| -> Result<(), String> {
        if options.dry_run {
            plan.config_unknown = true;
            plan.warnings.push(format!(
                "{e}; run the dry run as root to see whether the env file would change"
            ));
            Ok(())
        } else {
            Err(e)
        }
    };
    let existing = match read_text(&env_path) {
        Ok(existing) => existing,
        Err(e) => {
            tolerate(e, plan)?;
            plan.http_addr = settings::HTTP_ADDR.default.unwrap_or_default().to_string();
            return Ok(false);
        }
    };
    if !layout.path(ENV_DIR).exists() {
        actions.push(Action::CreateDir {
            path: ENV_DIR.into(),
            mode: 0o750,
            owner: Owner::Root,
        });
    }
    let legacy_path = layout.path(LEGACY_ENV_FILE);
    let (desired, what, backup) = if let Some(path) = &options.env_file {
        if !path.exists() {
            return Err(format!("--env-file {}: no such file", path.display()));
        }
        // Regular files only, size-capped, no BOM or NUL: as check-config.
        let text = envfile::read_file(path).map_err(|e| format!("--env-file: {e}"))?;
        let (_, errors) = envfile::parse(&text);
        if !errors.is_empty() && !options.dry_run {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Err(format!(
                "--env-file {}: {} (systemd would ignore such lines)",
                path.display(),
                lines.join("; ")
            ));
        }
        let backup = existing
            .as_ref()
            .filter(|old| **old != text)
            .map(|_| PREVIOUS_ENV_FILE.to_string());
        (text, format!("from --env-file {}", path.display()), backup)
    } else {
        match read_text(&legacy_path) {
            Ok(Some(old)) => {
                // The old file was `source`d by a shell, not read by systemd.
                let (assignments, errors) = envfile::parse_sourced(&old);
                for e in &errors {
                    plan.warnings
                        .push(format!("{LEGACY_ENV_FILE} {e}: not imported"));
                }
                let merged = template::merge(existing.as_deref(), &assignments, LEGACY_ENV_FILE);
                if !merged.kept.is_empty() {
                    plan.notes.push(format!(
                        "{ENV_FILE} already sets {}; the values in {LEGACY_ENV_FILE} are not imported for them",
                        merged.kept.join(", ")
                    ));
                }
                let what = if merged.added.is_empty() {
                    "nothing to import".to_string()
                } else {
                    format!(
                        "importing {} from {LEGACY_ENV_FILE}",
                        merged.added.join(", ")
                    )
                };
                (merged.text, what, None)
            }
            Ok(None) => match &existing {
                Some(text) => (text.clone(), "kept as is".into(), None),
                None => (
                    template::template(ENV_FILE),
                    "commented template".into(),
                    None,
                ),
            },
            Err(e) => {
                tolerate(e, plan)?;
                match &existing {
                    Some(text) => (text.clone(), "kept as is".into(), None),
                    None => (
                        template::template(ENV_FILE),
                        "commented template".into(),
                        None,
                    ),
                }
            }
        }
    };

    check_env(&desired, plan);
    let changed = existing.as_deref() != Some(desired.as_str());
    if changed {
        actions.push(Action::WriteFile {
            path: ENV_FILE.into(),
            contents: desired,
            mode: 0o600,
            backup,
            what,
        });
    } else if let Ok(meta) = fs::metadata(&env_path) {
        if meta.permissions().mode() & 0o7777 != 0o600 || meta.uid() != layout.owner_uid {
            actions.push(Action::FixPermissions {
                path: ENV_FILE.into(),
                mode: 0o600,
            });
        }
    }
    Ok(changed)
}

/// Validates the env file's text the way the service will read it.
fn check_env(text: &str, plan: &mut Plan) {
    plan.missing_keys = template::missing_required(text);
    let (file, file_errors) = envfile::parse(text);
    let sources = Sources {
        file,
        file_errors,
        file_path: Some(PathBuf::from(ENV_FILE)),
        ..Sources::default()
    };
    let addr = sources
        .file
        .iter()
        .rev()
        .find(|a| a.key == settings::HTTP_ADDR.name() && !a.value.trim().is_empty())
        .map(|a| a.value.trim().to_string());
    plan.http_addr =
        addr.unwrap_or_else(|| settings::HTTP_ADDR.default.unwrap_or_default().to_string());
    if let Err(report) = Config::from_sources(&sources, Mode::default()) {
        // Missing required keys get their own message; list the rest.
        plan.config_problems = report
            .problems
            .into_iter()
            .filter(|p| {
                !plan
                    .missing_keys
                    .iter()
                    .any(|k| p.starts_with(&format!("{k} is required")))
            })
            .collect();
    }
}

/// The effective uid of this process (from `/proc/self/status`, so no libc
/// binding is needed).
pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_effective_uid(&status)
}

fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Creates `path` (if missing) with `mode` and owner.
fn create_dir(path: &Path, mode: u32, owner: (u32, u32)) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set mode of {}: {e}", path.display()))?;
    std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1))
        .map_err(|e| format!("cannot chown {}: {e}", path.display()))
}

/// Writes `bytes` to `path` through a temporary sibling created with `mode`
/// (a secret is never readable by others, not even for a moment), fsync,
/// rename, and fsync of the directory.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32, owner: u32) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| -> io::Result<()> {
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        // The umask may have removed bits from `mode`.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::fchown(&file, Some(owner), Some(owner))?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Copies the binary into place: new file beside the old one, fsync, the old
/// one hard-linked to the `.previous` name, then one rename. At no moment is
/// there no binary at [`BINARY`], and the running file is never written into.
fn install_binary(layout: &Layout, source: &Path, keep_previous: bool) -> Result<(), String> {
    let target = layout.path(BINARY);
    let bytes = fs::read(source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let tmp = target.with_file_name(format!(".volspike.new.{}", std::process::id()));
    write_file_atomic(&tmp, &bytes, 0o755, layout.owner_uid)?;
    if keep_previous && target.exists() {
        let previous = layout.path(PREVIOUS_BINARY);
        let staged = target.with_file_name(format!(".volspike.previous.{}", std::process::id()));
        let _ = fs::remove_file(&staged);
        let kept = fs::hard_link(&target, &staged)
            .or_else(|_| fs::copy(&target, &staged).map(|_| ()))
            .and_then(|_| fs::rename(&staged, &previous));
        if let Err(e) = kept {
            let _ = fs::remove_file(&staged);
            let _ = fs::remove_file(&tmp);
            return Err(format!(
                "cannot keep the current binary as {}: {e}",
                previous.display()
            ));
        }
    }
    fs::rename(&tmp, &target).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!(
            "cannot rename {} to {}: {e}",
            tmp.display(),
            target.display()
        )
    })?;
    if let Some(dir) = target.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Creates the system user with `useradd`, or Debian's `adduser` where
/// `useradd` is missing.
fn create_user() -> Result<(), String> {
    let useradd = Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            STATE_DIR,
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "volspike appliance",
            USER,
        ])
        .output();
    let out = match useradd {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Command::new("adduser")
            .args([
                "--system",
                "--group",
                "--no-create-home",
                "--home",
                STATE_DIR,
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ])
            .output()
            .map_err(|e| format!("cannot run useradd or adduser: {e}"))?,
        Err(e) => return Err(format!("cannot run useradd: {e}")),
        Ok(out) => out,
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "creating user {USER} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs one action. Actions that talk to systemd or create users only make
/// sense on the real root; tests apply the file actions only.
pub fn apply(layout: &Layout, action: &Action) -> Result<(), String> {
    let root_owner = (layout.owner_uid, layout.owner_uid);
    match action {
        Action::CreateUser => create_user(),
        Action::CreateDir { path, mode, owner } => {
            let ids = match owner {
                Owner::Root => root_owner,
                Owner::Service => service_user(layout)?
                    .ok_or_else(|| format!("user {USER} does not exist (not in /etc/passwd)"))?,
            };
            create_dir(&layout.path(path), *mode, ids)
        }
        Action::RetireUnit {
            unit,
            stop,
            disable,
            copies,
            ..
        } => {
            // Copies first: if stopping fails, the files are already safe.
            for (source, destination) in copies {
                let bytes = fs::read(source)
                    .map_err(|e| format!("cannot read {}: {e}", source.display()))?;
                write_file_atomic(destination, &bytes, 0o600, layout.owner_uid)?;
            }
            if !stop.is_empty() {
                let mut args = vec!["stop".to_string(), "--".to_string()];
                args.extend(stop.iter().cloned());
                systemctl::run(&args)?;
            }
            if *disable {
                systemctl::run(&["disable", "--", unit])?;
            }
            Ok(())
        }
        Action::InstallBinary {
            source,
            keep_previous,
        } => install_binary(layout, source, *keep_previous),
        Action::WriteFile {
            path,
            contents,
            mode,
            backup,
            ..
        } => {
            let target = layout.path(path);
            if let Some(dir) = target.parent() {
                fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            if let Some(backup) = backup {
                if let Some(old) = read_optional(&target)? {
                    write_file_atomic(&layout.path(backup), &old, 0o600, layout.owner_uid)?;
                }
            }
            write_file_atomic(&target, contents.as_bytes(), *mode, layout.owner_uid)
        }
        Action::FixPermissions { path, mode } => {
            let target = layout.path(path);
            std::os::unix::fs::chown(&target, Some(root_owner.0), Some(root_owner.1))
                .map_err(|e| format!("cannot chown {}: {e}", target.display()))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(*mode))
                .map_err(|e| format!("cannot set mode of {}: {e}", target.display()))
        }
        Action::DaemonReload => systemctl::run(&["daemon-reload"]),
        Action::Enable => systemctl::run(&["enable", "--", SOCKET, SERVICE]),
        Action::Start { reopen_socket, .. } => {
            if *reopen_socket {
                // The running service may still hold the address itself (a
                // version before socket activation): stop it first so the
                // socket can bind, then open the socket.
                systemctl::run(&["stop", "--", SERVICE])?;
                systemctl::run(&["restart", "--", SOCKET])?;
            }
            // --no-block: we wait ourselves, with our own timeout and messages.
            systemctl::run(&["restart", "--no-block", "--", SERVICE])
        }
        Action::Stop { unit } => systemctl::run(&["stop", "--", unit]),
        Action::Disable { unit } => systemctl::run(&["disable", "--", unit]),
        Action::RemoveFile { path } => {
            let target = layout.path(path);
            match fs::remove_file(&target) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("cannot remove {}: {e}", target.display())),
            }
        }
        Action::RemoveDir { path } => {
            let target = layout.path(path);
            match fs::remove_dir_all(&target) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(format!("cannot remove {}: {e}", target.display())),
            }
        }
    }
}

/// How waiting for READY ended.
#[derive(Debug)]
enum Readiness {
    /// active/running with a new invocation.
    Ready(Box<UnitState>),
    /// It failed or is in a restart loop; the message says how.
    Failed(String),
}

/// Judges one look at the service after a restart from invocation `before`;
/// `None` means "keep waiting". Only a new invocation counts either way: right
/// after `restart --no-block` the old, possibly failed, one is still shown.
fn judge(before: &str, state: &UnitState) -> Option<Readiness> {
    let new = !state.invocation_id.is_empty() && state.invocation_id != before;
    if !new {
        return None;
    }
    if state.is_up() {
        return Some(Readiness::Ready(Box::new(state.clone())));
    }
    let exit = state.exec_main_status.as_str();
    if exit == EXIT_CONFIG.to_string() && !state.is_up() && state.sub_state != "start" {
        return Some(Readiness::Failed(format!(
            "{SERVICE} exited with status 78: configuration error (see `volspike check-config`)"
        )));
    }
    if state.active_state == "failed" || state.sub_state == "auto-restart" {
        return Some(Readiness::Failed(format!(
            "{SERVICE} did not come up: {}/{} (result {}, exit status {exit})",
            state.active_state, state.sub_state, state.result
        )));
    }
    None
}

/// Polls the service until a new invocation is active/running (Type=notify:
/// only after READY=1), fails, or `timeout` passes.
fn wait_ready(before: &str, timeout: Duration) -> Readiness {
    let started = Instant::now();
    loop {
        let state = match Systemctl.state(SERVICE) {
            Ok(state) => state,
            Err(e) => return Readiness::Failed(e),
        };
        if let Some(verdict) = judge(before, &state) {
            return verdict;
        }
        if started.elapsed() >= timeout {
            return Readiness::Failed(format!(
                "{SERVICE} not READY after {} s: still {}/{}",
                timeout.as_secs(),
                state.active_state,
                state.sub_state
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `GET /health` on the service's listen address; the status line and body.
pub fn fetch_health(addr: &str) -> Result<String, String> {
    let mut target: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("VOLSPIKE_HTTP_ADDR `{addr}`: {e}"))?
        .next()
        .ok_or_else(|| format!("VOLSPIKE_HTTP_ADDR `{addr}` resolves to nothing"))?;
    // A wildcard listener is reached on loopback.
    if target.ip().is_unspecified() {
        target.set_ip(if target.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&target, timeout)
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    stream
        .write_all(
            format!("GET /health HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .map_err(|e| format!("cannot send to {target}: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(256 * 1024)
        .read_to_end(&mut response)
        .map_err(|e| format!("cannot read from {target}: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    Ok(format!("{status}\n{}", body.trim()))
}

/// Prints the plan's warnings and notes.
fn print_findings(plan: &Plan) {
    for w in &plan.warnings {
        println!("WARNING: {w}");
    }
    for n in &plan.notes {
        println!("note: {n}");
    }
}

/// Prints what to do when the env file is incomplete.
fn print_not_started(plan: &Plan) {
    println!();
    // A service already running keeps its old environment until restarted.
    let state = if plan.service.is_up() {
        format!("not restarted ({SERVICE} keeps running with its previous configuration)")
    } else {
        "not started".to_string()
    };
    if !plan.missing_keys.is_empty() {
        println!(
            "installed, but {state}: fill {} in {ENV_FILE}",
            plan.missing_keys.join(" and ")
        );
    } else {
        println!("installed, but {state}: {ENV_FILE} has problems");
    }
    for p in &plan.config_problems {
        println!("  - {p}");
    }
    println!("then run:");
    println!("  volspike check-config");
    println!("  systemctl restart volspike");
}

/// Prints `systemctl status` and `/health`.
fn print_status(plan: &Plan) {
    println!();
    print!("{}", systemctl::status_text(SERVICE, 5));
    match fetch_health(&plan.http_addr) {
        Ok(health) => {
            println!();
            println!("GET http://{}/health:", plan.http_addr);
            let shown: String = health.chars().take(1500).collect();
            println!("{shown}");
        }
        Err(e) => println!("\n/health not reachable: {e}"),
    }
}

/// Runs the command; returns the exit code.
pub fn run(args: InstallArgs) -> i32 {
    let euid = effective_uid();
    if !args.dry_run && euid != Some(0) {
        eprintln!("volspike install: install must run as root; try sudo volspike install (nothing was changed)");
        return 1;
    }
    // Without systemd as PID 1 every systemctl call would fail half-way.
    if !Path::new("/run/systemd/system").is_dir() {
        if args.dry_run {
            println!("WARNING: systemd is not running on this machine (no /run/systemd/system); install would refuse");
        } else {
            eprintln!("volspike install: systemd is not running on this machine (no /run/systemd/system); the appliance needs systemd as PID 1 (nothing was changed)");
            return 1;
        }
    }
    let options = Options {
        // /proc/self/exe reads this very program even if its file was
        // replaced or removed since it started.
        source_binary: PathBuf::from("/proc/self/exe"),
        env_file: args.env_file.clone(),
        keep_legacy: args.keep_legacy,
        dry_run: args.dry_run,
    };
    let layout = Layout::system();
    let plan = match plan(&layout, &options, &Systemctl) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("volspike install: {e} (nothing was changed)");
            // A bad --env-file is a configuration problem, as in check-config.
            return if e.starts_with("--env-file") {
                EXIT_CONFIG
            } else {
                1
            };
        }
    };
    print_findings(&plan);
    let total = plan.actions.len();

    if args.dry_run {
        if euid != Some(0) {
            println!(
                "dry run as uid {}: showing what `sudo volspike install` would do",
                euid.map(|u| u.to_string()).unwrap_or_else(|| "?".into())
            );
        }
        if total == 0 {
            println!("dry run: already installed, nothing to do");
        } else {
            println!("dry run: {total} action(s) would run; nothing was changed:");
            for (i, action) in plan.actions.iter().enumerate() {
                println!("[{}/{total}] {}", i + 1, action.describe());
            }
        }
        if !plan.config_ok() {
            println!(
                "dry run: the service would not be started: {ENV_FILE} lacks {}",
                if plan.missing_keys.is_empty() {
                    "valid settings".to_string()
                } else {
                    plan.missing_keys.join(", ")
                }
            );
            for p in &plan.config_problems {
                println!("  - {p}");
            }
            // Judged like check-config: a configuration that would not
            // start is EX_CONFIG, unless the file could not be read here.
            if !plan.config_unknown {
                return EXIT_CONFIG;
            }
        }
        return 0;
    }

    if total == 0 {
        if !plan.config_ok() {
            print_not_started(&plan);
            return EXIT_CONFIG;
        }
        println!("already installed, nothing to do");
        println!(
            "{SERVICE}: {}/{} (invocation {})",
            plan.service.active_state, plan.service.sub_state, plan.service.invocation_id
        );
        return 0;
    }

    let mut started = None;
    for (i, action) in plan.actions.iter().enumerate() {
        println!("[{}/{total}] {}", i + 1, action.describe());
        let invocation_before = match action {
            Action::Start { .. } => Systemctl
                .state(SERVICE)
                .map(|s| s.invocation_id)
                .unwrap_or_default(),
            _ => String::new(),
        };
        if let Err(e) = apply(&layout, action) {
            eprintln!(
                "volspike install: step {}/{total} failed: {e}; the steps after it were not run",
                i + 1
            );
            return 1;
        }
        if matches!(action, Action::Start { .. }) {
            started = Some(wait_ready(&invocation_before, READY_TIMEOUT));
        }
    }

    if !plan.config_ok() {
        print_not_started(&plan);
        return EXIT_CONFIG;
    }
    match started {
        Some(Readiness::Ready(state)) => {
            println!(
                "{SERVICE} is READY ({}/{}, invocation {})",
                state.active_state, state.sub_state, state.invocation_id
            );
            print_status(&plan);
            println!("\ninstalled; follow it with `journalctl -u volspike -f`, check it with `volspike check-config`");
            0
        }
        Some(Readiness::Failed(why)) => {
            eprintln!("volspike install: {why}");
            print!("{}", systemctl::status_text(SERVICE, 20));
            eprintln!("see: journalctl -u volspike -n 50; volspike check-config");
            1
        }
        None => {
            // Nothing needed a restart (e.g. only a legacy unit was retired).
            print_status(&plan);
            println!("\ninstalled");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A service manager that knows only the units it is given.
    struct FakeUnits(BTreeMap<String, UnitState>);

    impl UnitQuery for FakeUnits {
        fn states(&self, units: &[String]) -> Result<Vec<UnitState>, String> {
            Ok(units
                .iter()
                .map(|u| {
                    self.0
                        .get(u)
                        .cloned()
                        .unwrap_or_else(|| UnitState::not_found(u))
                })
                .collect())
        }
    }

    fn unit(id: &str, active: &str, enabled: &str, fragment: &str) -> UnitState {
        UnitState {
            id: id.into(),
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: if active == "active" {
                "running".into()
            } else {
                "dead".into()
            },
            unit_file_state: enabled.into(),
            fragment_path: fragment.into(),
            invocation_id: if active == "active" {
                "inv1".into()
            } else {
                String::new()
            },
            ..UnitState::default()
        }
    }

    /// A scratch root with a source binary, removed when dropped.
    struct Tree {
        /// The temporary root directory.
        root: PathBuf,
        /// Paths under `root`, owned by the test's own uid.
        layout: Layout,
        /// Install options reading `root/source-binary`.
        options: Options,
    }

    impl Tree {
        fn new(tag: &str) -> Tree {
            let root =
                std::env::temp_dir().join(format!("volspike-install-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(root.join("etc")).expect("mkdir");
            let source = root.join("source-binary");
            fs::write(&source, b"binary v1").expect("write");
            let uid = effective_uid().expect("uid");
            Tree {
                layout: Layout::under(&root, uid),
                options: Options {
                    source_binary: source,
                    env_file: None,
                    keep_legacy: false,
                    dry_run: false,
                },
                root,
            }
        }

        fn write(&self, path: &str, text: &str) {
            let p = self.layout.path(path);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, text).expect("write");
        }

        /// Applies the file actions, as if the systemd ones had succeeded.
        fn apply_files(&self, plan: &Plan) {
            for a in &plan.actions {
                match a {
                    Action::InstallBinary { .. }
                    | Action::WriteFile { .. }
                    | Action::FixPermissions { .. } => {
                        apply(&self.layout, a).expect("apply");
                    }
                    Action::CreateDir { path, mode, .. } => {
                        create_dir(
                            &self.layout.path(path),
                            *mode,
                            (self.layout.owner_uid, self.layout.owner_uid),
                        )
                        .expect("mkdir");
                    }
                    Action::RetireUnit { copies, .. } => {
                        for (s, d) in copies {
                            fs::copy(s, d).expect("copy");
                        }
                    }
                    Action::CreateUser => {
                        self.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\nvolspike:x:998:998::/var/lib/volspike:/usr/sbin/nologin\n");
                    }
                    _ => {}
                }
            }
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    fn kinds(plan: &Plan) -> Vec<&'static str> {
        plan.actions
            .iter()
            .map(|a| match a {
                Action::CreateUser => "user",
                Action::CreateDir { .. } => "mkdir",
                Action::RetireUnit { .. } => "retire",
                Action::InstallBinary { .. } => "binary",
                Action::WriteFile { path, .. } if path == ENV_FILE => "env",
                Action::WriteFile { path, .. } if path == SOCKET_FILE => "socket",
                Action::WriteFile { .. } => "unit",
                Action::FixPermissions { .. } => "chmod",
                Action::DaemonReload => "reload",
                Action::Enable => "enable",
                Action::Start { .. } => "start",
                _ => "other",
            })
            .collect()
    }

    fn installed_service() -> UnitState {
        unit(SERVICE, "active", "enabled", UNIT_FILE)
    }

    fn listening_socket() -> UnitState {
        unit(SOCKET, "active", "enabled", SOCKET_FILE)
    }

    #[test]
    fn fresh_machine_gets_everything_but_no_start_without_keys() {
        let t = Tree::new("fresh");
        t.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
        let plan = plan(&t.layout, &t.options, &FakeUnits(BTreeMap::new())).expect("plan");
        assert_eq!(
            kinds(&plan),
            vec!["user", "mkdir", "binary", "mkdir", "env", "unit", "socket", "reload", "enable"]
        );
        assert_eq!(
            plan.missing_keys,
            vec!["BACKEND_URL", "ALERT_INGEST_API_KEY"]
        );
        assert!(!plan.config_ok());
        t.apply_files(&plan);
        let env = t.layout.path(ENV_FILE);
        let meta = fs::metadata(&env).expect("env written");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert!(fs::read_to_string(&env)
            .expect("read")
            .contains("BACKEND_URL="));
    }

    #[test]
    fn second_run_with_nothing_changed_is_empty() {
        let t = Tree::new("again");
        t.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
        let env = t.root.join("given.env");
        fs::write(&env, "BACKEND_URL=http://127.0.0.1:9/\nALERT_INGEST_API_KEY=k\nVOLSPIKE_HTTP_ADDR=127.0.0.1:18080\n").expect("write");
        let options = Options {
            env_file: Some(env),
            ..t.options.clone()
        };
        let first = plan(&t.layout, &options, &FakeUnits(BTreeMap::new())).expect("plan");
        assert!(first.config_ok(), "{:?}", first.config_problems);
        assert_eq!(first.http_addr, "127.0.0.1:18080");
        assert_eq!(kinds(&first).last(), Some(&"start"));
        t.apply_files(&first);

        let running = FakeUnits(BTreeMap::from([
            (SERVICE.to_string(), installed_service()),
            (SOCKET.to_string(), listening_socket()),
        ]));
        let second = plan(&t.layout, &options, &running).expect("plan");
        assert!(second.actions.is_empty(), "{:?}", second.actions);

        // A new binary: copied (old one kept) and the service restarted once.
        fs::write(&t.options.source_binary, b"binary v2").expect("write");
        let third = plan(&t.layout, &options, &running).expect("plan");
        assert_eq!(kinds(&third), vec!["binary", "start"]);
        assert!(
            matches!(&third.actions[1], Action::Start { why, reopen_socket: false } if why == "binary changed")
        );
        t.apply_files(&third);
        assert_eq!(
            fs::read(t.layout.path(PREVIOUS_BINARY)).expect("previous"),
            b"binary v1"
        );
        assert_eq!(
            fs::read(t.layout.path(BINARY)).expect("binary"),
            b"binary v2"
        );
    }

    #[test]
    fn a_stopped_service_is_started_and_loose_env_permissions_are_fixed() {
        let t = Tree::new("stopped");
        t.write(
            "/etc/passwd",
            "volspike:x:998:998::/var/lib/volspike:/usr/sbin/nologin\n",
        );
        let first = plan(&t.layout, &t.options, &FakeUnits(BTreeMap::new())).expect("plan");
        t.apply_files(&first);
        t.write(
            ENV_FILE,
            "BACKEND_URL=https://b.example\nALERT_INGEST_API_KEY=k\n",
        );
        fs::set_permissions(t.layout.path(ENV_FILE), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let stopped = unit(SERVICE, "failed", "enabled", UNIT_FILE);
        let plan = plan(
            &t.layout,
            &t.options,
            &FakeUnits(BTreeMap::from([
                (SERVICE.to_string(), stopped),
                (SOCKET.to_string(), listening_socket()),
            ])),
        )
        .expect("plan");
        assert_eq!(kinds(&plan), vec!["chmod", "start"]);
        // The socket is listening: only the service is started.
        assert!(matches!(
            &plan.actions[1],
            Action::Start {
                reopen_socket: false,
                ..
            }
        ));
    }

    #[test]
    fn the_socket_is_opened_on_upgrade_and_moved_with_the_address() {
        let t = Tree::new("socket");
        t.write(
            "/etc/passwd",
            "volspike:x:998:998::/var/lib/volspike:/usr/sbin/nologin\n",
        );
        let env = t.root.join("given.env");
        let write_env = |port: u16| {
            fs::write(
                &env,
                format!("BACKEND_URL=http://127.0.0.1:9/\nALERT_INGEST_API_KEY=k\nVOLSPIKE_HTTP_ADDR=127.0.0.1:{port}\n"),
            )
            .expect("write")
        };
        write_env(18080);
        let options = Options {
            env_file: Some(env.clone()),
            ..t.options.clone()
        };
        let first = plan(&t.layout, &options, &FakeUnits(BTreeMap::new())).expect("plan");
        t.apply_files(&first);
        let socket_text = fs::read_to_string(t.layout.path(SOCKET_FILE)).expect("socket written");
        assert!(
            socket_text.contains("\nListenStream=127.0.0.1:18080\n"),
            "{socket_text}"
        );

        // An install from before socket activation: the service runs (and
        // holds the port itself), the socket unit is unknown to systemd.
        let pre_socket = FakeUnits(BTreeMap::from([(SERVICE.to_string(), installed_service())]));
        let upgrade = plan(&t.layout, &options, &pre_socket).expect("plan");
        assert_eq!(kinds(&upgrade), vec!["enable", "start"]);
        assert!(
            matches!(
                &upgrade.actions[1],
                Action::Start { why, reopen_socket: true } if why == "volspike.socket is not listening yet"
            ),
            "{:?}",
            upgrade.actions
        );

        // Both up; the address changes: the socket file is rewritten and
        // reopened (with the service stopped), on the new address.
        let running = FakeUnits(BTreeMap::from([
            (SERVICE.to_string(), installed_service()),
            (SOCKET.to_string(), listening_socket()),
        ]));
        write_env(18081);
        let moved = plan(&t.layout, &options, &running).expect("plan");
        assert_eq!(kinds(&moved), vec!["env", "socket", "reload", "start"]);
        assert!(
            matches!(
                moved.actions.last(),
                Some(Action::Start { why, reopen_socket: true })
                    if why == "unit, env file changed; volspike.socket moves to 127.0.0.1:18081"
            ),
            "{:?}",
            moved.actions
        );
        t.apply_files(&moved);
        let socket_text = fs::read_to_string(t.layout.path(SOCKET_FILE)).expect("socket");
        assert!(
            socket_text.contains("\nListenStream=127.0.0.1:18081\n"),
            "{socket_text}"
        );
    }

    #[test]
    fn legacy_units_are_retired_once_with_copies() {
        let t = Tree::new("legacy");
        t.write(
            "/etc/passwd",
            "volspike:x:998:998::/var/lib/volspike:/usr/sbin/nologin\n",
        );
        t.write(
            "/etc/systemd/system/binance-funding-ws.service",
            "[Service]\nExecStart=/usr/bin/python3 ws.py\n",
        );
        t.write(
            "/etc/systemd/system/oi-liquid-universe.timer",
            "[Timer]\nOnCalendar=hourly\n",
        );
        t.write(
            "/etc/systemd/system/oi-liquid-universe.service",
            "[Service]\nExecStart=/usr/bin/python3 oi.py\n",
        );
        t.write(
            UNIT_FILE,
            "[Service]\nExecStart=/home/trader/venv/bin/python -m volspike\n",
        );
        t.write(
            LEGACY_ENV_FILE,
            "export VOLSPIKE_API_URL=https://old.example\nexport VOLSPIKE_API_KEY=oldkey\n",
        );
        let units = FakeUnits(BTreeMap::from([
            (
                SERVICE.to_string(),
                unit(SERVICE, "active", "enabled", UNIT_FILE),
            ),
            (
                "binance-funding-ws.service".to_string(),
                unit(
                    "binance-funding-ws.service",
                    "active",
                    "enabled",
                    "/etc/systemd/system/binance-funding-ws.service",
                ),
            ),
            (
                "oi-liquid-universe.timer".to_string(),
                unit(
                    "oi-liquid-universe.timer",
                    "active",
                    "enabled",
                    "/etc/systemd/system/oi-liquid-universe.timer",
                ),
            ),
            (
                "oi-liquid-universe.service".to_string(),
                unit(
                    "oi-liquid-universe.service",
                    "inactive",
                    "static",
                    "/etc/systemd/system/oi-liquid-universe.service",
                ),
            ),
        ]));
        let first = plan(&t.layout, &t.options, &units).expect("plan");
        assert_eq!(
            kinds(&first),
            vec![
                "mkdir", "mkdir", "retire", "retire", "retire", "binary", "mkdir", "env", "unit",
                "socket", "reload", "enable", "start"
            ]
        );
        assert!(first.config_ok(), "imported keys: {:?}", first.missing_keys);
        let timer = first.actions.iter().find_map(|a| match a {
            Action::RetireUnit {
                unit,
                copies,
                stop,
                disable,
                ..
            } if unit == "oi-liquid-universe.timer" => Some((copies.len(), stop.clone(), *disable)),
            _ => None,
        });
        assert_eq!(
            timer,
            Some((2, vec!["oi-liquid-universe.timer".to_string()], true)),
            "timer and its service are copied; only the running one stopped"
        );
        t.apply_files(&first);
        assert!(t
            .layout
            .path("/var/lib/volspike/legacy-units/volspike.service")
            .exists());

        // After install: legacy units disabled and stopped, copies kept.
        let after = FakeUnits(BTreeMap::from([
            (SERVICE.to_string(), installed_service()),
            (SOCKET.to_string(), listening_socket()),
            (
                "binance-funding-ws.service".to_string(),
                unit(
                    "binance-funding-ws.service",
                    "inactive",
                    "disabled",
                    "/etc/systemd/system/binance-funding-ws.service",
                ),
            ),
            (
                "oi-liquid-universe.timer".to_string(),
                unit(
                    "oi-liquid-universe.timer",
                    "inactive",
                    "disabled",
                    "/etc/systemd/system/oi-liquid-universe.timer",
                ),
            ),
            (
                "oi-liquid-universe.service".to_string(),
                unit(
                    "oi-liquid-universe.service",
                    "inactive",
                    "static",
                    "/etc/systemd/system/oi-liquid-universe.service",
                ),
            ),
        ]));
        let second = plan(&t.layout, &t.options, &after).expect("plan");
        assert!(second.actions.is_empty(), "{:?}", second.actions);
    }

    #[test]
    fn keep_legacy_warns_and_leaves_them() {
        let t = Tree::new("keep");
        t.write(
            "/etc/passwd",
            "volspike:x:998:998::/var/lib/volspike:/usr/sbin/nologin\n",
        );
        t.write(
            "/etc/systemd/system/user-alert-checker.service",
            "[Service]\nExecStart=/usr/bin/python3 x.py\n",
        );
        let units = FakeUnits(BTreeMap::from([(
            "user-alert-checker.service".to_string(),
            unit(
                "user-alert-checker.service",
                "active",
                "enabled",
                "/etc/systemd/system/user-alert-checker.service",
            ),
        )]));
        let options = Options {
            keep_legacy: true,
            ..t.options.clone()
        };
        let plan = plan(&t.layout, &options, &units).expect("plan");
        assert!(!kinds(&plan).contains(&"retire"));
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.contains("user-alert-checker.service") && w.contains("BOTH")));
    }

    #[test]
    fn a_bad_env_file_argument_is_refused_naming_the_line() {
        let t = Tree::new("badenv");
        let env = t.root.join("bad.env");
        fs::write(&env, "BACKEND_URL=x\nthis is not an assignment\n").expect("write");
        let options = Options {
            env_file: Some(env.clone()),
            ..t.options.clone()
        };
        let err = plan(&t.layout, &options, &FakeUnits(BTreeMap::new())).expect_err("refused");
        assert!(err.contains("bad.env") && err.contains("line 2"), "{err}");
        let missing = Options {
            env_file: Some(t.root.join("nope.env")),
            ..t.options.clone()
        };
        let err = plan(&t.layout, &missing, &FakeUnits(BTreeMap::new())).expect_err("refused");
        assert!(err.contains("nope.env"), "{err}");
    }

    #[test]
    fn readiness_needs_a_new_invocation() {
        let mut s = unit(SERVICE, "failed", "enabled", UNIT_FILE);
        s.invocation_id = "old".into();
        // The old, failed invocation right after `restart --no-block`: wait.
        assert!(judge("old", &s).is_none());
        s.invocation_id = "new".into();
        s.active_state = "activating".into();
        s.sub_state = "start".into();
        assert!(judge("old", &s).is_none(), "starting: wait for READY");
        s.sub_state = "auto-restart".into();
        s.exec_main_status = "1".into();
        assert!(
            matches!(judge("old", &s), Some(Readiness::Failed(m)) if m.contains("did not come up"))
        );
        s.active_state = "failed".into();
        s.sub_state = "failed".into();
        s.exec_main_status = "78".into();
        assert!(matches!(judge("old", &s), Some(Readiness::Failed(m)) if m.contains("status 78")));
        let up = installed_service();
        assert!(matches!(judge("", &up), Some(Readiness::Ready(_))));
    }

    #[test]
    fn passwd_and_status_parsing() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nvolspike:x:997:995::/var/lib/volspike:/usr/sbin/nologin\n";
        assert_eq!(lookup_user(passwd, "volspike"), Some((997, 995)));
        assert_eq!(lookup_user(passwd, "volspik"), None);
        assert_eq!(
            parse_effective_uid("Name:\tx\nUid:\t1000\t0\t0\t0\n"),
            Some(0)
        );
    }

    #[test]
    fn write_file_atomic_sets_mode_and_leaves_no_temp() {
        let t = Tree::new("atomic");
        let path = t.root.join("etc/secret.env");
        write_file_atomic(&path, b"K=v\n", 0o600, t.layout.owner_uid).expect("write");
        assert_eq!(
            fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(t.root.join("etc"))
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let err = write_file_atomic(
            &t.root.join("missing/dir/f"),
            b"",
            0o600,
            t.layout.owner_uid,
        )
        .expect_err("no dir");
        assert!(err.contains("missing/dir/f"), "{err}");
    }
}
