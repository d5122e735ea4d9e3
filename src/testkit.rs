//! Test helpers every module's unit tests may use (a leaf: it imports no
//! other module of the crate, so no test helper makes an import circle).

use volspike_fakes::{Reply, ScriptedServer};

/// The temporary directory the integration tests use too.
pub use volspike_fakes::TempDir;

/// The fakes' [`ScriptedServer`] on 127.0.0.1, answering with
/// `script(url, n)` (`n` counts requests from 0).
pub fn serve(script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> ScriptedServer {
    ScriptedServer::start(script).expect("scripted server on 127.0.0.1")
}
