//! Replacing the binary without ever writing into it.
//!
//! The new binary is written into a staging directory beside the installed
//! one (same file system, so `rename` is atomic), the installed binary is
//! hard-linked to `<binary>.previous`, and one `rename` puts the new one in
//! place: at every moment `/usr/local/bin/volspike` is a complete binary, and
//! the running process keeps its old inode. A failed update is undone by the
//! same kind of rename, and the `.previous` that existed before comes back too.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where the installed binary and its kept predecessor live.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The installed binary, e.g. `/usr/local/bin/volspike`.
    pub binary: PathBuf,
}

impl Layout {
    /// The layout around `binary`.
    pub fn new(binary: impl Into<PathBuf>) -> Layout {
        Layout {
            binary: binary.into(),
        }
    }

    /// `<binary>.previous`: the one before, kept for rollback.
    pub fn previous(&self) -> PathBuf {
        self.sibling(".previous")
    }

    /// The `.previous` of before this swap, held until the swap is committed.
    fn prior(&self) -> PathBuf {
        self.sibling(".previous.prior")
    }

    /// The directory holding the binary.
    pub fn dir(&self) -> &Path {
        self.binary.parent().unwrap_or(Path::new("/"))
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.binary.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.binary.with_file_name(name)
    }
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
        Staging::new_in(layout, layout.dir())
    }

    /// The same in `parent`: `--check` unpacks elsewhere (e.g. the temp
    /// directory) so that it needs no write access to the binary's directory.
    pub fn new_in(layout: &Layout, parent: &Path) -> io::Result<Staging> {
        let name = layout
            .binary
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
    let annotate = |what: &str, path: &Path, e: io::Error| {
        io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
    };
    // The new file must be complete on disk before its name is.
    fs::set_permissions(new_binary, fs::Permissions::from_mode(0o755))
        .map_err(|e| annotate("cannot chmod", new_binary, e))?;
    File::open(new_binary)
        .and_then(|f| f.sync_all())
        .map_err(|e| annotate("cannot sync", new_binary, e))?;

    let previous = layout.previous();
    let prior = layout.prior();
    let had_previous = previous.exists();
    if had_previous {
        fs::rename(&previous, &prior).map_err(|e| annotate("cannot move aside", &previous, e))?;
    }
    let had_binary = layout.binary.exists();
    let result = (|| {
        if had_binary {
            // A hard link, not a rename: the installed name never disappears.
            if let Err(e) = fs::hard_link(&layout.binary, &previous) {
                // Some file systems have no hard links: a copy does too.
                fs::copy(&layout.binary, &previous).map_err(|c| {
                    annotate(
                        "cannot keep",
                        &previous,
                        io::Error::new(c.kind(), format!("{c} (after link failed: {e})")),
                    )
                })?;
            }
        }
        fs::rename(new_binary, &layout.binary)
            .map_err(|e| annotate("cannot rename into", &layout.binary, e))?;
        sync_dir(layout.dir())
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
            fs::remove_file(self.layout.prior())?;
        }
        Ok(())
    }

    /// Puts the binary and `.previous` back exactly as before the swap.
    pub fn undo(self) -> io::Result<()> {
        let layout = &self.layout;
        if self.had_binary {
            // One rename: the old binary replaces the new one atomically.
            fs::rename(layout.previous(), &layout.binary).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot restore {} from {}: {e}",
                        layout.binary.display(),
                        layout.previous().display()
                    ),
                )
            })?;
        } else {
            fs::remove_file(&layout.binary)?;
        }
        if self.had_previous {
            fs::rename(layout.prior(), layout.previous())?;
        }
        sync_dir(layout.dir())
    }
}

/// Makes renames in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::testkit::TempDir;

    fn setup(tag: &str, previous: Option<&[u8]>) -> (TempDir, Layout) {
        let dir = TempDir::new(tag);
        let layout = Layout::new(dir.path().join("volspike"));
        fs::write(&layout.binary, b"old").expect("write");
        if let Some(p) = previous {
            fs::write(layout.previous(), p).expect("write");
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
        assert_eq!(fs::read(&layout.binary).expect("read"), b"new");
        assert_eq!(fs::read(layout.previous()).expect("read"), b"old");
        swapped.commit().expect("commit");
        assert!(!layout.prior().exists());
        let mode = fs::metadata(&layout.binary)
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
        assert_eq!(fs::read(&layout.binary).expect("read"), b"old");
        assert_eq!(fs::read(layout.previous()).expect("read"), b"older");
        assert!(!layout.prior().exists());
    }

    #[test]
    fn first_swap_without_previous() {
        let (_dir, layout) = setup("first", None);
        let (_staging, new) = stage(&layout, b"new");
        let swapped = swap_in(&layout, &new).expect("swap");
        swapped.undo().expect("undo");
        assert_eq!(fs::read(&layout.binary).expect("read"), b"old");
        assert!(!layout.previous().exists());
    }

    #[test]
    fn a_failed_swap_leaves_everything_in_place() {
        let (_dir, layout) = setup("fail", Some(b"older"));
        let missing = layout.dir().join("no-such-file");
        assert!(swap_in(&layout, &missing).is_err());
        assert_eq!(fs::read(&layout.binary).expect("read"), b"old");
        assert_eq!(fs::read(layout.previous()).expect("read"), b"older");
    }
}
