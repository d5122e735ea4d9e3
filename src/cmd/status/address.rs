//! Where `volspike status` finds the running appliance: the HTTP address
//! the service listens on, read the way the service reads it
//! (`VOLSPIKE_HTTP_ADDR` in the environment, else in the env file, else the
//! default), so a plain `volspike status` on the droplet finds the unit's
//! server without flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use serde::Serialize;

use crate::config::{settings, Sources};
use crate::service::paths::ENV_FILE as DEFAULT_ENV_FILE;
use crate::service::ready::connectable;

/// The address to ask, and where it came from (for the output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Where to connect: a wildcard listen address becomes loopback.
    pub addr: SocketAddr,
    /// `environment VOLSPIKE_HTTP_ADDR`, `env file … (line n)` or `default`.
    pub origin: String,
}

/// Resolves the address. An env file named with `--env-file` must be
/// readable; the default one is used only when it is (as non-root it is
/// not: mode 0600), else the environment and the default decide.
pub fn resolve(env_file: Option<&Path>) -> anyhow::Result<Target> {
    // Why the default env file was skipped, when it exists: the operator
    // then knows a non-default address in it went unseen.
    let mut skipped = None;
    let file = match env_file {
        Some(path) => Some(path.to_path_buf()),
        None => {
            let default = PathBuf::from(DEFAULT_ENV_FILE);
            match std::fs::File::open(&default) {
                Ok(_) => Some(default),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    skipped = Some(format!("{DEFAULT_ENV_FILE} not read: {e}; try sudo"));
                    None
                }
            }
        }
    };
    let sources = Sources::load(file.as_deref()).map_err(anyhow::Error::msg)?;
    let mut target = from_sources(&sources)?;
    if let (Some(why), "default") = (skipped, target.origin.as_str()) {
        target.origin = format!("default; {why}");
    }
    Ok(target)
}

/// [`resolve`] on already loaded sources.
pub fn from_sources(sources: &Sources) -> anyhow::Result<Target> {
    let (text, origin) = match sources.lookup(&settings::HTTP_ADDR) {
        Some((value, origin)) => (value, origin.to_string()),
        None => (
            settings::HTTP_ADDR.default.to_string(),
            "default".to_string(),
        ),
    };
    let listen: SocketAddr = text.trim().parse().map_err(|_| {
        anyhow!("VOLSPIKE_HTTP_ADDR: `{text}` is not an address like 127.0.0.1:8080 ({origin})")
    })?;
    Ok(Target {
        addr: connectable(listen),
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(env: &[(&str, &str)], file: &str) -> Sources {
        Sources::from_text(env, file)
    }

    #[test]
    fn environment_then_file_then_default() {
        let t = from_sources(&sources(&[], "")).expect("default");
        assert_eq!(t.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(t.origin, "default");
        let t = from_sources(&sources(&[], "VOLSPIKE_HTTP_ADDR=127.0.0.1:9000\n")).expect("file");
        assert_eq!(t.addr.to_string(), "127.0.0.1:9000");
        let t = from_sources(&sources(
            &[("VOLSPIKE_HTTP_ADDR", "0.0.0.0:7000")],
            "VOLSPIKE_HTTP_ADDR=127.0.0.1:9000\n",
        ))
        .expect("env");
        assert_eq!(t.addr.to_string(), "127.0.0.1:7000");
        assert!(t.origin.contains("VOLSPIKE_HTTP_ADDR"));
        let t = from_sources(&sources(&[("VOLSPIKE_HTTP_ADDR", "[::]:7000")], "")).expect("v6");
        assert_eq!(t.addr.to_string(), "[::1]:7000");
        assert!(from_sources(&sources(&[("VOLSPIKE_HTTP_ADDR", "nowhere")], "")).is_err());
    }
}
