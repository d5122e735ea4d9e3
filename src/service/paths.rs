//! Every path and unit name of an installed appliance, in one place: install,
//! uninstall, self-update and status all read them from here.

use std::path::{Path, PathBuf};

/// Where the binary is installed.
pub const BINARY: &str = "/usr/local/bin/volspike";
/// The binary it replaced; `self-update --rollback` goes back to it.
pub const PREVIOUS_BINARY: &str = "/usr/local/bin/volspike.previous";
/// The configuration directory.
pub const ENV_DIR: &str = "/etc/volspike";
/// The env file the unit reads (and every command reads by default).
pub const ENV_FILE: &str = "/etc/volspike/volspike.env";
/// An env file replaced by `install --env-file` is kept here.
pub const PREVIOUS_ENV_FILE: &str = "/etc/volspike/volspike.env.previous";
/// The service's unit name.
pub const SERVICE: &str = "volspike.service";
/// The socket's unit name (it activates [`SERVICE`], the same name).
pub const SOCKET: &str = "volspike.socket";
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

    /// The installed binary ([`BINARY`]).
    pub fn binary(&self) -> PathBuf {
        self.path(BINARY)
    }

    /// The binary kept for rollback ([`PREVIOUS_BINARY`]).
    pub fn previous_binary(&self) -> PathBuf {
        self.path(PREVIOUS_BINARY)
    }

    /// The directory holding the binary: staging and the update lock live
    /// there, on the same file system, so renames are atomic.
    pub fn binary_dir(&self) -> PathBuf {
        let binary = self.binary();
        binary.parent().map(Path::to_path_buf).unwrap_or(binary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_under_the_root() {
        let layout = Layout::under(Path::new("/tmp/t"), 1000);
        assert_eq!(layout.binary(), Path::new("/tmp/t/usr/local/bin/volspike"));
        assert_eq!(
            layout.previous_binary(),
            Path::new("/tmp/t/usr/local/bin/volspike.previous")
        );
        assert_eq!(layout.binary_dir(), Path::new("/tmp/t/usr/local/bin"));
        assert_eq!(Layout::system().path(ENV_FILE), Path::new(ENV_FILE));
    }
}
