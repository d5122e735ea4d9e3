//! Install's steps: each [`Action`] says what it does ([`Action::describe`],
//! printed in the progress and by `--dry-run`) and does it ([`apply`]).
//! Uninstall uses the same actions.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context};

use super::machine::{read_optional, service_user};
use crate::service::fs::{install_binary, write_atomic_as};
use crate::service::paths::{
    Layout, BINARY, LEGACY_DIR, PREVIOUS_BINARY, SERVICE, SOCKET, STATE_DIR, USER,
};
use crate::service::systemctl;

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

/// Writes a copy only root may read (old env files, legacy unit files).
fn write_secret(layout: &Layout, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    write_atomic_as(path, bytes, Some(0o600), Some(layout.owner_uid))?;
    Ok(())
}

/// Creates `path` (if missing) with `mode` and owner.
pub(super) fn create_dir(path: &Path, mode: u32, owner: (u32, u32)) -> anyhow::Result<()> {
    fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode of {}", path.display()))?;
    std::os::unix::fs::chown(path, Some(owner.0), Some(owner.1))
        .with_context(|| format!("cannot chown {}", path.display()))
}

/// Creates the system user with `useradd`, or Debian's `adduser` where
/// `useradd` is missing.
fn create_user() -> anyhow::Result<()> {
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
            .context("cannot run useradd or adduser")?,
        Err(e) => return Err(anyhow::Error::new(e).context("cannot run useradd")),
        Ok(out) => out,
    };
    if !out.status.success() {
        bail!(
            "creating user {USER} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs one action. Actions that talk to systemd or create users only make
/// sense on the real root; tests apply the file actions only.
pub fn apply(layout: &Layout, action: &Action) -> anyhow::Result<()> {
    let root_owner = (layout.owner_uid, layout.owner_uid);
    match action {
        Action::CreateUser => create_user(),
        Action::CreateDir { path, mode, owner } => {
            let ids = match owner {
                Owner::Root => root_owner,
                Owner::Service => service_user(layout)?
                    .ok_or_else(|| anyhow!("user {USER} does not exist (not in /etc/passwd)"))?,
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
                    .with_context(|| format!("cannot read {}", source.display()))?;
                write_secret(layout, destination, &bytes)?;
            }
            if !stop.is_empty() {
                let mut args = vec!["stop".to_string(), "--".to_string()];
                args.extend(stop.iter().cloned());
                systemctl_run(&args)?;
            }
            if *disable {
                systemctl_run(&["disable", "--", unit])?;
            }
            Ok(())
        }
        // `keep_previous` only words the description: the swap keeps the
        // installed binary, when there is one, as the previous one.
        Action::InstallBinary { source, .. } => {
            let bytes =
                fs::read(source).with_context(|| format!("cannot read {}", source.display()))?;
            Ok(install_binary(layout, &bytes)?)
        }
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
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            if let Some(backup) = backup {
                if let Some(old) = read_optional(&target)? {
                    write_secret(layout, &layout.path(backup), &old)?;
                }
            }
            Ok(write_atomic_as(
                &target,
                contents.as_bytes(),
                Some(*mode),
                Some(layout.owner_uid),
            )?)
        }
        Action::FixPermissions { path, mode } => {
            let target = layout.path(path);
            std::os::unix::fs::chown(&target, Some(root_owner.0), Some(root_owner.1))
                .with_context(|| format!("cannot chown {}", target.display()))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(*mode))
                .with_context(|| format!("cannot set mode of {}", target.display()))
        }
        Action::DaemonReload => systemctl_run(&["daemon-reload"]),
        Action::Enable => systemctl_run(&["enable", "--", SOCKET, SERVICE]),
        Action::Start { reopen_socket, .. } => {
            if *reopen_socket {
                // The running service may still hold the address itself (a
                // version before socket activation): stop it first so the
                // socket can bind, then open the socket.
                systemctl_run(&["stop", "--", SERVICE])?;
                systemctl_run(&["restart", "--", SOCKET])?;
            }
            // --no-block: we wait ourselves, with our own timeout and messages.
            systemctl_run(&["restart", "--no-block", "--", SERVICE])
        }
        Action::Stop { unit } => systemctl_run(&["stop", "--", unit]),
        Action::Disable { unit } => systemctl_run(&["disable", "--", unit]),
        Action::RemoveFile { path } => remove(&layout.path(path), |p| fs::remove_file(p)),
        Action::RemoveDir { path } => remove(&layout.path(path), |p| fs::remove_dir_all(p)),
    }
}

/// `systemctl ARGS`; its error says which command failed and how.
fn systemctl_run<S: AsRef<str>>(args: &[S]) -> anyhow::Result<()> {
    systemctl::run(args).map_err(anyhow::Error::msg)
}

/// Removes `target` with `how`; already gone is done too.
fn remove(target: &Path, how: fn(&Path) -> io::Result<()>) -> anyhow::Result<()> {
    match how(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot remove {}", target.display()))),
    }
}
