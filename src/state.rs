//! The state directory and crash-safe writes into it.
//!
//! Jobs persist small JSON documents (dedup, cooldowns, offsets, the outbox).
//! A write must never leave a half-written file behind after a crash or a
//! power cut, so every write goes to a temporary file in the same directory,
//! is fsync'd, renamed over the target, and the directory is fsync'd too.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The appliance's state directory, checked to be usable.
#[derive(Debug, Clone)]
pub struct StateDir {
    /// Absolute path of the directory.
    root: PathBuf,
}

impl StateDir {
    /// Creates the directory when missing and proves it is writable.
    pub fn open(root: &Path) -> io::Result<StateDir> {
        fs::create_dir_all(root).map_err(|e| annotate(e, "cannot create", root))?;
        let dir = StateDir {
            root: root.to_path_buf(),
        };
        // A read-only or foreign-owned directory is found now, before READY,
        // not at the first alert.
        dir.write_atomic(".writable", b"ok\n")
            .map_err(|e| annotate(e, "cannot write in", root))?;
        Ok(dir)
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The path of `name` inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Replaces `name` with `bytes` atomically and durably.
    pub fn write_atomic(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        write_atomic(&self.file(name), bytes)
    }

    /// Serialises `value` as JSON into `name`, atomically.
    pub fn save_json<T: Serialize>(&self, name: &str, value: &T) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        self.write_atomic(name, &bytes)
    }

    /// Reads `name` as JSON; `Ok(None)` when the file does not exist.
    ///
    /// A corrupt file is an error naming the file: the caller decides whether
    /// to start empty, and the operator sees why in the log.
    pub fn load_json<T: DeserializeOwned>(&self, name: &str) -> io::Result<Option<T>> {
        let path = self.file(name);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(annotate(e, "cannot read", &path)),
        }
    }
}

/// The one atomic write (temp file, fsync, rename, fsync of the directory).
pub use crate::service::fs::write_atomic;

fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TempDir;

    #[test]
    fn json_round_trip_and_missing_file() {
        let tmp = TempDir::new("state-json");
        let root = tmp.path().to_path_buf();
        let dir = StateDir::open(&root).expect("open");
        assert_eq!(dir.load_json::<Vec<u32>>("x.json").expect("load"), None);
        dir.save_json("x.json", &vec![1, 2, 3]).expect("save");
        assert_eq!(
            dir.load_json::<Vec<u32>>("x.json").expect("load"),
            Some(vec![1, 2, 3])
        );
        // No temporary file is left behind.
        let leftovers: Vec<_> = fs::read_dir(&root)
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it() {
        let tmp = TempDir::new("state-corrupt");
        let root = tmp.path().to_path_buf();
        let dir = StateDir::open(&root).expect("open");
        fs::write(dir.file("bad.json"), b"{not json").expect("write");
        let err = dir.load_json::<Vec<u32>>("bad.json").expect_err("corrupt");
        assert!(err.to_string().contains("bad.json"));
    }
}
