//! One updater at a time: a lock file beside the binary holding the
//! updater's pid; one left by an updater that was killed is taken over.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::service::paths::Layout;

/// One updater at a time: a lock file beside the binary holding our pid.
pub struct Lock {
    /// The lock file.
    path: PathBuf,
}

/// Why the lock was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockError {
    /// Another updater that is still alive holds it.
    Held(String),
    /// The lock file could not be created.
    Failed(String),
}

impl Lock {
    /// Takes the lock beside `layout`'s binary; it is released on drop.
    pub fn take(layout: &Layout) -> Result<Lock, LockError> {
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
                        return Err(LockError::Held(format!(
                            "another self-update is running (pid {pid}, lock {})",
                            path.display()
                        )));
                    }
                    // Left by an updater that was killed: take it over.
                    let _ = fs::remove_file(&path);
                }
                Err(e) => {
                    return Err(LockError::Failed(format!(
                        "cannot create the lock {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        Err(LockError::Failed(format!(
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
