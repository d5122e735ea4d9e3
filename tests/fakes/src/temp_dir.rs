//! A temporary directory for volspike's unit and integration tests alike,
//! so both name and clean up their directories the same way.

use std::path::{Path, PathBuf};

/// A temporary directory (tempfile's, under `$TMPDIR`) named after the
/// test that made it, removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A fresh empty directory whose name starts with `volspike-test-<tag>-`.
    pub fn new(tag: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("volspike-test-{tag}-"))
            .tempdir()
            .expect("creating a temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}
