//! What self-update needs to know about this machine, read from the
//! environment and the installed env file.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;

use super::args::SelfUpdateArgs;
use crate::config::settings::{self, Setting};
use crate::config::Sources;
use crate::service::paths::{Layout, ENV_FILE, SERVICE};
use crate::service::ready::connectable;
use crate::update::keys::{self, KeySet};

/// Everything the update needs to know about this machine.
#[derive(Debug)]
pub struct Context {
    /// The installed binary and its `.previous`.
    pub layout: Layout,
    /// The systemd unit to restart.
    pub unit: String,
    /// Trusted public keys.
    pub keys: KeySet,
    /// The release manifest URL (`VOLSPIKE_UPDATE_URL`).
    pub update_url: Option<String>,
    /// Where `/health` answers (from `VOLSPIKE_HTTP_ADDR`).
    pub health: SocketAddr,
    /// The state directory (bookkeeping).
    pub state_dir: PathBuf,
    /// How long the new version has to become READY and healthy.
    pub start_timeout: Duration,
}

impl Context {
    /// Reads the environment and `/etc/volspike/volspike.env` (the
    /// environment wins, as for every command).
    pub(crate) fn load(args: &SelfUpdateArgs) -> anyhow::Result<Context> {
        let env_file = Path::new(ENV_FILE);
        // The env file is root's (0600): `--check` by another user goes on
        // with the environment alone rather than failing.
        let sources = match Sources::load(env_file.exists().then_some(env_file)) {
            Ok(sources) => sources,
            Err(why) => {
                complain!("warning: {why}; using the environment only");
                Sources::load(None).map_err(anyhow::Error::msg)?
            }
        };
        let http_addr = value(&sources, &settings::HTTP_ADDR).unwrap_or_default();
        let health = health_addr(&http_addr)?;
        let state_dir = PathBuf::from(
            value(&sources, &settings::STATE_DIR)
                .unwrap_or_else(|| settings::STATE_DIR.default.into()),
        );
        Ok(Context {
            layout: Layout::system(),
            unit: SERVICE.to_string(),
            keys: KeySet::load(Path::new(keys::KEYS_FILE)),
            update_url: value(&sources, &settings::UPDATE_URL),
            health,
            state_dir,
            start_timeout: Duration::from_secs(args.start_timeout.max(1)),
        })
    }
}

/// A setting's value as `run` would see it: environment first, then the env
/// file (last assignment wins), an empty value means unset, then the default.
fn value(sources: &Sources, setting: &Setting) -> Option<String> {
    sources.value(setting)
}

/// The address to ask for `/health`: the listen address, with a wildcard
/// address replaced by loopback.
fn health_addr(http_addr: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = http_addr.parse().map_err(|_| {
        anyhow!("VOLSPIKE_HTTP_ADDR: `{http_addr}` is not an address like 127.0.0.1:8080")
    })?;
    Ok(connectable(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_address_from_the_listen_address() {
        assert_eq!(
            health_addr("127.0.0.1:8080").ok(),
            Some("127.0.0.1:8080".parse().expect("addr"))
        );
        assert_eq!(
            health_addr("0.0.0.0:9000").ok(),
            Some("127.0.0.1:9000".parse().expect("addr"))
        );
        assert_eq!(
            health_addr("[::]:9000").ok(),
            Some("[::1]:9000".parse().expect("addr"))
        );
        assert!(health_addr("localhost").is_err());
    }

    #[test]
    fn settings_environment_wins_then_file_then_default() {
        let mut sources = Sources::default();
        assert_eq!(
            value(&sources, &settings::HTTP_ADDR).as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(value(&sources, &settings::UPDATE_URL), None);
        let (file, _) = crate::config::envfile::parse(
            "VOLSPIKE_UPDATE_URL=http://a/manifest.json\nVOLSPIKE_UPDATE_URL=http://b/manifest.json\n",
        );
        sources.file = file;
        assert_eq!(
            value(&sources, &settings::UPDATE_URL).as_deref(),
            Some("http://b/manifest.json")
        );
        sources.env.insert(
            "VOLSPIKE_UPDATE_URL".into(),
            "http://env/manifest.json".into(),
        );
        assert_eq!(
            value(&sources, &settings::UPDATE_URL).as_deref(),
            Some("http://env/manifest.json")
        );
    }
}
