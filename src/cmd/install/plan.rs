//! Install's planner: looks at the machine (files under the layout's root,
//! units through [`UnitQuery`]) and computes the list of [`Action`]s that
//! bring it to the installed state. It only reads, so it is unit-tested on a
//! temporary tree with a fake service manager.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use super::actions::{Action, Owner};
use super::machine::{read_optional, read_text, service_user};
use crate::config::{envfile, settings, template, Config, Mode, Sources};
use crate::service::paths::{
    Layout, BINARY, ENV_DIR, ENV_FILE, LEGACY_DIR, LEGACY_ENV_FILE, PREVIOUS_ENV_FILE, SERVICE,
    SOCKET, SOCKET_FILE, STATE_DIR, UNIT_FILE, USER,
};
use crate::service::systemctl::{UnitQuery, UnitState};
use crate::systemd::units::{self, UnitValues, LEGACY_UNITS};

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

/// What install will do, and what it found on the way.
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
fn copy_needed(layout: &Layout, source: &Path) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
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

/// Adds writing a unit file (mode 0644) at `path` when its contents differ
/// from `rendered`; whether they did.
fn write_if_changed(
    layout: &Layout,
    actions: &mut Vec<Action>,
    path: &str,
    rendered: String,
    what: String,
) -> anyhow::Result<bool> {
    let changed = read_text(&layout.path(path))?.as_deref() != Some(rendered.as_str());
    if changed {
        actions.push(Action::WriteFile {
            path: path.into(),
            contents: rendered,
            mode: 0o644,
            backup: None,
            what,
        });
    }
    Ok(changed)
}

/// `--env-file` names a file install cannot use: a configuration error
/// (exit 78), as `check-config` would judge it.
#[derive(Debug)]
pub struct BadEnvFile(pub String);

impl std::fmt::Display for BadEnvFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadEnvFile {}

/// Looks at the machine and computes the plan.
pub fn plan(layout: &Layout, options: &Options, query: &dyn UnitQuery) -> anyhow::Result<Plan> {
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
        Err(e) => return Err(anyhow!(e)),
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
    let current_unit_path = fragment(layout, &service).unwrap_or_else(|| layout.path(UNIT_FILE));
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
    let source = fs::read(&options.source_binary).with_context(|| {
        format!(
            "cannot read this program's binary {}",
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
    })
    .map_err(anyhow::Error::msg)?;
    let service_changed = write_if_changed(
        layout,
        &mut actions,
        UNIT_FILE,
        rendered,
        "the hardened unit".into(),
    )?;
    // The socket listens where the env file says; an unusable address is
    // already among the configuration problems, so nothing is started.
    let socket_changed = match units::render_socket(&plan.http_addr) {
        Ok(rendered) => write_if_changed(
            layout,
            &mut actions,
            SOCKET_FILE,
            rendered,
            format!("the HTTP listener on {}", plan.http_addr),
        )?,
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
) -> anyhow::Result<bool> {
    let env_path = layout.path(ENV_FILE);
    let tolerate = |e: anyhow::Error, plan: &mut Plan| -> anyhow::Result<()> {
        if options.dry_run {
            plan.config_unknown = true;
            plan.warnings.push(format!(
                "{e:#}; run the dry run as root to see whether the env file would change"
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
            plan.http_addr = settings::HTTP_ADDR.default.to_string();
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
            return Err(BadEnvFile(format!("--env-file {}: no such file", path.display())).into());
        }
        // Regular files only, size-capped, no BOM or NUL: as check-config.
        let text = envfile::read_file(path).map_err(|e| BadEnvFile(format!("--env-file: {e}")))?;
        let (_, errors) = envfile::parse(&text);
        if !errors.is_empty() && !options.dry_run {
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Err(BadEnvFile(format!(
                "--env-file {}: {} (systemd would ignore such lines)",
                path.display(),
                lines.join("; ")
            ))
            .into());
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
    plan.http_addr = addr.unwrap_or_else(|| settings::HTTP_ADDR.default.to_string());
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
