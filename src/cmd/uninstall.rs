//! `volspike uninstall [--purge]`: reverse `install`.
//!
//! Stops and disables the service and its socket (`volspike.socket`, which
//! holds the HTTP listener), removes both units and daemon-reloads, and
//! removes the installed binary and the one kept for rollback. `--purge` also
//! removes the state directory (with the copies of legacy units), the env
//! file's directory and the unit's drop-ins.
//!
//! Kept on purpose:
//! - the binary at `/usr/local/bin/volspike` when it is the very program
//!   running this uninstall (without `--purge`): deleting it would leave the
//!   operator with no copy to reinstall from; the message says how to remove it;
//! - drop-ins in `volspike.service.d/` (without `--purge`): they are the
//!   operator's own overrides and apply again after a reinstall;
//! - the system user `volspike`: Debian never removes system users, because
//!   files they owned may remain (`userdel volspike` removes it by hand);
//! - the legacy units: they stay disabled; their files are where they were
//!   (except a Python `volspike.service`, whose copy is under
//!   /var/lib/volspike/legacy-units until `--purge`).
//!
//! Like install it computes a plan first, so a second run says
//! "not installed, nothing to do"; exit codes 0/1.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use clap::Args;

use crate::cmd::exit::ExitCode;
use crate::cmd::install::actions::{apply, Action};
use crate::service::fs::is_root;
use crate::service::paths::{
    Layout, BINARY, DROPIN_DIR, ENV_DIR, LEGACY_DIR, PREVIOUS_BINARY, SERVICE, SOCKET, SOCKET_FILE,
    STATE_DIR, UNIT_FILE, USER,
};
use crate::service::systemctl::{self, Systemctl, UnitQuery, UnitState};
use crate::systemd::units;

/// `volspike uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Also remove the state directory and the env file.
    #[arg(long)]
    pub purge: bool,
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--purge`: state, env file and drop-ins too.
    pub purge: bool,
    /// The program running this uninstall, resolved (to keep its only copy).
    pub running_binary: Option<PathBuf>,
}

/// The uninstall plan.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// The steps, in order.
    pub actions: Vec<Action>,
    /// What is kept and why, printed after the steps.
    pub notes: Vec<String>,
}

/// Computes the plan.
pub fn plan(layout: &Layout, options: &Options, query: &dyn UnitQuery) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    let states = query
        .states(&[SERVICE.to_string(), SOCKET.to_string()])
        .map_err(anyhow::Error::msg)?;
    let state = |unit: &str| {
        states
            .iter()
            .find(|s| s.id == unit)
            .cloned()
            .unwrap_or_else(|| UnitState::not_found(unit))
    };
    let service = state(SERVICE);
    let socket = state(SOCKET);
    let unit_path = layout.path(UNIT_FILE);
    let unit_text = match fs::read_to_string(&unit_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("cannot read {}", unit_path.display()))
            )
        }
    };
    let ours = unit_text
        .as_deref()
        .map(|t| units::is_ours(t, BINARY))
        .unwrap_or(true);
    if !ours {
        plan.notes.push(format!(
            "{UNIT_FILE} is not the appliance's unit (it does not run {BINARY}): left alone"
        ));
    } else {
        // The socket first: while it listens, a connection would start the
        // service again (stopping it also stops the service, which needs it).
        if socket.is_running_or_starting() || socket.active_state == "failed" {
            plan.actions.push(Action::Stop {
                unit: SOCKET.into(),
            });
        }
        // A failed unit is stopped too: that clears its restart loop.
        if service.is_running_or_starting() || service.active_state == "failed" {
            plan.actions.push(Action::Stop {
                unit: SERVICE.into(),
            });
        }
        for unit in [&socket, &service] {
            if unit.is_enabled() {
                plan.actions.push(Action::Disable {
                    unit: unit.id.clone(),
                });
            }
        }
        let mut files_changed = false;
        if layout.path(SOCKET_FILE).exists() {
            plan.actions.push(Action::RemoveFile {
                path: SOCKET_FILE.into(),
            });
            files_changed = true;
        }
        if unit_text.is_some() {
            plan.actions.push(Action::RemoveFile {
                path: UNIT_FILE.into(),
            });
            files_changed = true;
        }
        if layout.path(DROPIN_DIR).exists() {
            if options.purge {
                plan.actions.push(Action::RemoveDir {
                    path: DROPIN_DIR.into(),
                });
                files_changed = true;
            } else if files_changed {
                plan.notes.push(format!(
                    "kept your drop-ins in {DROPIN_DIR} (they apply again after a reinstall; --purge removes them)"
                ));
            }
        }
        // A stale "loaded" entry after the file is gone needs a reload too.
        if files_changed
            || (service.exists() && unit_text.is_none() && service.fragment_path == UNIT_FILE)
        {
            plan.actions.push(Action::DaemonReload);
        }
    }

    let binary = layout.path(BINARY);
    if binary.exists() {
        let running_it = options
            .running_binary
            .as_deref()
            .is_some_and(|running| same_file(running, &binary));
        if running_it && !options.purge {
            plan.notes.push(format!(
                "kept {BINARY}: it is the program running this uninstall and its only installed copy (remove it with `rm {BINARY}`, or use --purge)"
            ));
        } else {
            plan.actions.push(Action::RemoveFile {
                path: BINARY.into(),
            });
        }
    }
    if layout.path(PREVIOUS_BINARY).exists() {
        plan.actions.push(Action::RemoveFile {
            path: PREVIOUS_BINARY.into(),
        });
    }

    let legacy = layout.path(LEGACY_DIR);
    if options.purge {
        if legacy.exists() {
            let names: Vec<String> = fs::read_dir(&legacy)
                .map(|dir| {
                    dir.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            if !names.is_empty() {
                plan.notes.push(format!(
                    "removed the copies of legacy units kept in {LEGACY_DIR} ({}); the legacy units themselves stay disabled",
                    names.join(", ")
                ));
            }
        }
        for dir in [STATE_DIR, ENV_DIR] {
            if layout.path(dir).exists() {
                plan.actions.push(Action::RemoveDir { path: dir.into() });
            }
        }
        if !plan.actions.is_empty() {
            plan.notes.push(format!(
                "the system user {} is kept (remove it with `userdel {}`)",
                USER, USER
            ));
        }
    } else {
        let mut kept = Vec::new();
        for dir in [STATE_DIR, ENV_DIR] {
            if layout.path(dir).exists() {
                kept.push(dir);
            }
        }
        if !kept.is_empty() && !plan.actions.is_empty() {
            plan.notes.push(format!(
                "kept {} (configuration and state; --purge removes them)",
                kept.join(" and ")
            ));
        }
    }
    Ok(plan)
}

/// Whether two paths name the same file (same device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Runs the command: `Err` (exit 1) when it may not run or a step failed.
pub fn run(args: UninstallArgs) -> anyhow::Result<ExitCode> {
    if !is_root() {
        bail!("uninstall must run as root; try sudo volspike uninstall (nothing was changed)");
    }
    let layout = Layout::system();
    let options = Options {
        purge: args.purge,
        running_binary: std::env::current_exe().ok(),
    };
    let plan =
        plan(&layout, &options, &Systemctl).map_err(|e| anyhow!("{e:#} (nothing was changed)"))?;
    let total = plan.actions.len();
    if total == 0 {
        println!("volspike is not installed, nothing to do");
        for n in &plan.notes {
            println!("note: {n}");
        }
        return Ok(ExitCode::Ok);
    }
    for (i, action) in plan.actions.iter().enumerate() {
        println!("[{}/{total}] {}", i + 1, action.describe());
        if let Err(e) = apply(&layout, action) {
            return Err(anyhow!(
                "step {}/{total} failed: {e:#}; the steps after it were not run",
                i + 1
            ));
        }
    }
    // A unit that failed before leaves a "failed" entry; clear it quietly.
    let _ = systemctl::run(&["reset-failed", "--", SOCKET, SERVICE]);
    for n in &plan.notes {
        println!("note: {n}");
    }
    println!("uninstalled");
    Ok(ExitCode::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service manager that knows these units' states (others: not found).
    struct Known(Vec<UnitState>);

    impl UnitQuery for Known {
        fn states(&self, units: &[String]) -> Result<Vec<UnitState>, String> {
            Ok(units
                .iter()
                .map(|u| {
                    self.0
                        .iter()
                        .find(|s| &s.id == u)
                        .cloned()
                        .unwrap_or_else(|| UnitState::not_found(u))
                })
                .collect())
        }
    }

    fn tree(tag: &str) -> (PathBuf, Layout) {
        let root =
            std::env::temp_dir().join(format!("volspike-uninstall-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let layout = Layout::under(&root, 0);
        for (path, text) in [
            (BINARY, "bin"),
            (PREVIOUS_BINARY, "old"),
            (
                UNIT_FILE,
                "[Service]\nExecStart=/usr/local/bin/volspike run\n",
            ),
            (SOCKET_FILE, "[Socket]\nListenStream=127.0.0.1:8080\n"),
            ("/etc/volspike/volspike.env", "K=v\n"),
            ("/var/lib/volspike/legacy-units/x.service", "[Service]\n"),
            (
                "/etc/systemd/system/volspike.service.d/test.conf",
                "[Service]\n",
            ),
        ] {
            let p = layout.path(path);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, text).expect("write");
        }
        (root, layout)
    }

    /// The service running and its socket listening, both enabled.
    fn running() -> Known {
        Known(vec![
            UnitState {
                id: SERVICE.into(),
                load_state: "loaded".into(),
                active_state: "active".into(),
                sub_state: "running".into(),
                unit_file_state: "enabled".into(),
                fragment_path: UNIT_FILE.into(),
                ..UnitState::default()
            },
            UnitState {
                id: SOCKET.into(),
                load_state: "loaded".into(),
                active_state: "active".into(),
                sub_state: "listening".into(),
                unit_file_state: "enabled".into(),
                fragment_path: SOCKET_FILE.into(),
                ..UnitState::default()
            },
        ])
    }

    #[test]
    fn uninstall_keeps_config_and_state_purge_removes_them() {
        let (root, layout) = tree("plain");
        let options = Options {
            purge: false,
            running_binary: None,
        };
        let plan = plan(&layout, &options, &running()).expect("plan");
        let described: Vec<String> = plan.actions.iter().map(Action::describe).collect();
        assert_eq!(
            described,
            vec![
                "systemctl stop volspike.socket",
                "systemctl stop volspike.service",
                "systemctl disable volspike.socket",
                "systemctl disable volspike.service",
                "removing /etc/systemd/system/volspike.socket",
                "removing /etc/systemd/system/volspike.service",
                "systemctl daemon-reload",
                "removing /usr/local/bin/volspike",
                "removing /usr/local/bin/volspike.previous",
            ]
        );
        assert!(plan.notes.iter().any(|n| n.contains("drop-ins")));

        let purge = Options {
            purge: true,
            running_binary: None,
        };
        let plan2 = super::plan(&layout, &purge, &running()).expect("plan");
        assert!(plan2.actions.contains(&Action::RemoveDir {
            path: STATE_DIR.into()
        }));
        assert!(plan2.actions.contains(&Action::RemoveDir {
            path: ENV_DIR.into()
        }));
        assert!(plan2.actions.contains(&Action::RemoveDir {
            path: DROPIN_DIR.into()
        }));
        // Applying the file steps leaves nothing; a second plan is empty.
        for a in &plan2.actions {
            if matches!(a, Action::RemoveFile { .. } | Action::RemoveDir { .. }) {
                apply(&layout, a).expect("apply");
            }
        }
        let gone = Known(Vec::new());
        let again = super::plan(&layout, &purge, &gone).expect("plan");
        assert!(again.actions.is_empty(), "{:?}", again.actions);
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn the_running_binary_is_kept_and_a_foreign_unit_left_alone() {
        let (root, layout) = tree("running");
        fs::write(
            layout.path(UNIT_FILE),
            "[Service]\nExecStart=/usr/bin/python3 -m volspike\n",
        )
        .expect("write");
        let options = Options {
            purge: false,
            running_binary: Some(layout.path(BINARY)),
        };
        let plan = plan(&layout, &options, &running()).expect("plan");
        let described: Vec<String> = plan.actions.iter().map(Action::describe).collect();
        assert_eq!(described, vec!["removing /usr/local/bin/volspike.previous"]);
        assert!(plan.notes.iter().any(|n| n.contains("left alone")));
        assert!(plan
            .notes
            .iter()
            .any(|n| n.contains("kept /usr/local/bin/volspike")));
        let _ = fs::remove_dir_all(root);
    }
}
