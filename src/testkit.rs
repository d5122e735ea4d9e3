//! Test helpers every module's unit tests may use (a leaf: it imports no
//! other module of the crate, so no test helper makes an import circle).

use std::path::Path;

use volspike_fakes::{Reply, ScriptedServer};

/// A temporary directory (tempfile's, under `$TMPDIR`), removed when dropped.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A fresh, empty directory whose name starts with `volspike-test-<tag>-`.
    pub fn new(tag: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("volspike-test-{tag}-"))
            .tempdir()
            .expect("temp dir");
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// The fakes' [`ScriptedServer`] on 127.0.0.1, answering with
/// `script(url, n)` (`n` counts requests from 0).
pub fn serve(script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> ScriptedServer {
    ScriptedServer::start(script).expect("scripted server on 127.0.0.1")
}
