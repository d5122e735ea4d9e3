//! Files of the installed appliance: one atomic write, one binary swap and
//! one root check, used by install, self-update and the state directory.
//!
//! Replacing the binary never writes into it. The new binary is written into
//! a staging directory beside the installed one (same file system, so
//! `rename` is atomic), the installed binary is hard-linked to
//! `<binary>.previous`, and one `rename` puts the new one in place: at every
//! moment `/usr/local/bin/volspike` is a complete binary, and the running
//! process keeps its old inode. A failed update is undone by the same kind of
//! rename, and the `.previous` that existed before comes back too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::paths::Layout;

/// Writes `bytes` to `path` via a temporary sibling, fsync, rename and fsync
/// of the directory (so the new name survives a power cut).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_as(path, bytes, None, None)
}

/// [`write_atomic`] with the file's `mode` and owner set on the temporary
/// file before it gets its name: a secret is never readable by others, not
/// even for a moment.
pub fn write_atomic_as(
    path: &Path,
    bytes: &[u8],
    mode: Option<u32>,
    owner: Option<u32>,
) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| -> io::Result<()> {
        // A leftover of a killed run with the same pid is ours to replace.
        let _ = fs::remove_file(&tmp);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        if let Some(mode) = mode {
            options.mode(mode);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        if let Some(mode) = mode {
            // The umask may have removed bits from `mode`.
            file.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        if let Some(owner) = owner {
            std::os::unix::fs::fchown(&file, Some(owner), Some(owner))?;
        }
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| annotate("cannot write", path, e))
}

/// The effective uid of this process (from `/proc/self/status`, so no libc
/// binding is needed).
pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_effective_uid(&status)
}

/// The effective uid from `/proc/self/status` text (`Uid: real effective …`).
pub(crate) fn parse_effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// Installs `bytes` as the binary of `layout`: written beside it with mode
/// 0755, then [`swap_in`] (the installed one, if any, kept as `.previous`).
pub fn install_binary(layout: &Layout, bytes: &[u8]) -> io::Result<()> {
    let dir = layout.binary_dir();
    fs::create_dir_all(&dir).map_err(|e| annotate("cannot create", &dir, e))?;
    let staged = dir.join(format!(".volspike.new.{}", std::process::id()));
    write_atomic_as(&staged, bytes, Some(0o755), Some(layout.owner_uid))?;
    match swap_in(layout, &staged) {
        Ok(swapped) => swapped.commit(),
        Err(e) => {
            let _ = fs::remove_file(&staged);
            Err(e)
        }
    }
}

fn annotate(what: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// `<binary>.previous.prior`: the `.previous` of before a swap, held until
/// the swap is committed.
fn prior(layout: &Layout) -> PathBuf {
    let mut name = layout.previous_binary().into_os_string();
    name.push(".prior");
    PathBuf::from(name)
}

/// A private directory beside the binary for downloads and unpacking,
/// removed when dropped.
#[derive(Debug)]
pub struct Staging {
    /// The directory.
    dir: PathBuf,
}

impl Staging {
    /// Creates `.<name>-update.<pid>` in the binary's directory (mode 0700):
    /// the same file system, so the final rename is atomic.
    pub fn new(layout: &Layout) -> io::Result<Staging> {
        Staging::new_in(layout, &layout.binary_dir())
    }

    /// The same in `parent`: `--check` unpacks elsewhere (e.g. the temp
    /// directory) so that it needs no write access to the binary's directory.
    pub fn new_in(layout: &Layout, parent: &Path) -> io::Result<Staging> {
        let name = layout
            .binary()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "volspike".into());
        let dir = parent.join(format!(".{name}-update.{}", std::process::id()));
        // A leftover of a killed run with the same pid is ours to replace.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display()))
        })?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        Ok(Staging { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A swap that happened and is not yet committed or undone.
#[derive(Debug)]
#[must_use = "commit() or undo() the swap"]
pub struct Swapped {
    /// The layout swapped in.
    layout: Layout,
    /// Whether a binary was installed before (it is now `.previous`).
    had_binary: bool,
    /// Whether a `.previous` existed before (it is now `.previous.prior`).
    had_previous: bool,
}

/// Puts `new_binary` (in the same directory tree/file system) in place of the
/// installed binary, keeping the installed one as `.previous`.
pub fn swap_in(layout: &Layout, new_binary: &Path) -> io::Result<Swapped> {
    // The new file must be complete on disk before its name is.
    fs::set_permissions(new_binary, fs::Permissions::from_mode(0o755))
        .map_err(|e| annotate("cannot chmod", new_binary, e))?;
    File::open(new_binary)
        .and_then(|f| f.sync_all())
        .map_err(|e| annotate("cannot sync", new_binary, e))?;

    let binary = layout.binary();
    let previous = layout.previous_binary();
    let prior = prior(layout);
    let had_previous = previous.exists();
    if had_previous {
        fs::rename(&previous, &prior).map_err(|e| annotate("cannot move aside", &previous, e))?;
    }
    let had_binary = binary.exists();
    let result = (|| {
        if had_binary {
            // A hard link, not a rename: the installed name never disappears.
            if let Err(e) = fs::hard_link(&binary, &previous) {
                // Some file systems have no hard links: a copy does too.
                fs::copy(&binary, &previous).map_err(|c| {
                    annotate(
                        "cannot keep",
                        &previous,
                        io::Error::new(c.kind(), format!("{c} (after link failed: {e})")),
                    )
                })?;
            }
        }
        fs::rename(new_binary, &binary).map_err(|e| annotate("cannot rename into", &binary, e))?;
        sync_dir(&layout.binary_dir())
    })();
    if let Err(e) = result {
        // Put things back as they were: binary untouched, .previous restored.
        if had_binary {
            let _ = fs::remove_file(&previous);
        }
        if had_previous {
            let _ = fs::rename(&prior, &previous);
        }
        return Err(e);
    }
    Ok(Swapped {
        layout: layout.clone(),
        had_binary,
        had_previous,
    })
}

impl Swapped {
    /// The new binary stays: forget the `.previous` of before.
    pub fn commit(self) -> io::Result<()> {
        if self.had_previous {
            fs::remove_file(prior(&self.layout))?;
        }
        Ok(())
    }

    /// Puts the binary and `.previous` back exactly as before the swap.
    pub fn undo(self) -> io::Result<()> {
        let layout = &self.layout;
        if self.had_binary {
            // One rename: the old binary replaces the new one atomically.
            fs::rename(layout.previous_binary(), layout.binary()).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot restore {} from {}: {e}",
                        layout.binary().display(),
                        layout.previous_binary().display()
                    ),
                )
            })?;
        } else {
            fs::remove_file(layout.binary())?;
        }
        if self.had_previous {
            fs::rename(prior(layout), layout.previous_binary())?;
        }
        sync_dir(&layout.binary_dir())
    }
}

/// Makes renames in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TempDir;

    fn setup(tag: &str, previous: Option<&[u8]>) -> (TempDir, Layout) {
        let dir = TempDir::new(tag);
        let layout = Layout::under(dir.path(), 0);
        fs::create_dir_all(layout.binary_dir()).expect("mkdir");
        fs::write(layout.binary(), b"old").expect("write");
        if let Some(p) = previous {
            fs::write(layout.previous_binary(), p).expect("write");
        }
        (dir, layout)
    }

    fn stage(layout: &Layout, bytes: &[u8]) -> (Staging, PathBuf) {
        let staging = Staging::new(layout).expect("staging");
        let new = staging.path().join("volspike");
        fs::write(&new, bytes).expect("write");
        (staging, new)
    }

    #[test]
    fn swap_keeps_the_old_binary_as_previous() {
        let (_dir, layout) = setup("swap", Some(b"older"));
        let (staging, new) = stage(&layout, b"new");
        let swapped = swap_in(&layout, &new).expect("swap");
        assert_eq!(fs::read(layout.binary()).expect("read"), b"new");
        assert_eq!(fs::read(layout.previous_binary()).expect("read"), b"old");
        swapped.commit().expect("commit");
        assert!(!prior(&layout).exists());
        let mode = fs::metadata(layout.binary())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let staging_dir = staging.path().to_path_buf();
        drop(staging);
        assert!(!staging_dir.exists(), "staging is removed");
    }

    #[test]
    fn undo_restores_binary_and_previous_exactly() {
        let (_dir, layout) = setup("undo", Some(b"older"));
        let (_staging, new) = stage(&layout, b"broken");
        let swapped = swap_in(&layout, &new).expect("swap");
        swapped.undo().expect("undo");
        assert_eq!(fs::read(layout.binary()).expect("read"), b"old");
        assert_eq!(fs::read(layout.previous_binary()).expect("read"), b"older");
        assert!(!prior(&layout).exists());
    }

    #[test]
    fn first_swap_without_previous() {
        let (_dir, layout) = setup("first", None);
        let (_staging, new) = stage(&layout, b"new");
        let swapped = swap_in(&layout, &new).expect("swap");
        swapped.undo().expect("undo");
        assert_eq!(fs::read(layout.binary()).expect("read"), b"old");
        assert!(!layout.previous_binary().exists());
    }

    #[test]
    fn a_failed_swap_leaves_everything_in_place() {
        let (_dir, layout) = setup("fail", Some(b"older"));
        let missing = layout.binary_dir().join("no-such-file");
        assert!(swap_in(&layout, &missing).is_err());
        assert_eq!(fs::read(layout.binary()).expect("read"), b"old");
        assert_eq!(fs::read(layout.previous_binary()).expect("read"), b"older");
    }

    #[test]
    fn an_atomic_write_sets_the_mode_and_leaves_no_temp() {
        let dir = TempDir::new("atomic");
        let path = dir.path().join("secret.env");
        let uid = effective_uid().expect("uid");
        write_atomic_as(&path, b"K=v\n", Some(0o600), Some(uid)).expect("write");
        assert_eq!(
            fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let err = write_atomic(&dir.path().join("missing/dir/f"), b"").expect_err("no dir");
        assert!(err.to_string().contains("missing/dir/f"), "{err}");
    }

    #[test]
    fn the_effective_uid_is_the_second_field() {
        assert_eq!(
            parse_effective_uid("Name:\tx\nUid:\t1000\t0\t0\t0\n"),
            Some(0)
        );
    }

    #[test]
    fn install_binary_keeps_the_installed_one() {
        let dir = TempDir::new("install-binary");
        let layout = Layout::under(dir.path(), effective_uid().expect("uid"));
        install_binary(&layout, b"v1").expect("first");
        assert!(!layout.previous_binary().exists());
        install_binary(&layout, b"v2").expect("second");
        assert_eq!(fs::read(layout.binary()).expect("read"), b"v2");
        assert_eq!(fs::read(layout.previous_binary()).expect("read"), b"v1");
    }
}
