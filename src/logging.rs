//! Logging: journald's native protocol when stderr is the journal, plain text
//! to stderr otherwise.
//!
//! systemd sets `JOURNAL_STREAM=<dev>:<inode>` for a service whose stderr goes
//! to the journal; we compare it with stderr's own device and inode (a child
//! started from a service shell inherits the variable but not the stream).
//! Span fields are emitted as plain journal fields, so every event inside a
//! job's span carries `JOB=<name>` and `journalctl -u volspike JOB=open_interest`
//! works.

use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Where log events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// journald's native protocol, with structured fields.
    Journald,
    /// Human-readable text on stderr.
    Stderr,
}

/// Whether `JOURNAL_STREAM` names our stderr.
pub fn stderr_is_journal() -> bool {
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => meta.dev() == dev && meta.ino() == ino,
        Err(_) => false,
    }
}

/// Levels a filter directive may name.
const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a `VOLSPIKE_LOG` filter: comma-separated directives, each a level
/// (`debug`) or `target=level` (`volspike=debug,ureq=warn`). tracing also
/// reads a bare word as a target name, so `verbose` would be accepted and
/// silence every other target: here it is an error that names the levels.
pub fn check_filter(filter: &str) -> Result<(), String> {
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level.trim(),
            Some(_) => return Err(format!("`{directive}` names no target before `=`")),
            None => directive,
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "`{level}` is not a level: use one of {} or target=level",
                LEVELS.join(", ")
            ));
        }
    }
    EnvFilter::try_new(filter)
        .map(|_| ())
        .map_err(|e| format!("not a log filter: {e}"))
}

/// Installs the global subscriber with `filter` (validated by config).
pub fn init(filter: &str) -> Destination {
    let filter = EnvFilter::try_new(filter)
        .unwrap_or_else(|_| EnvFilter::new(crate::config::settings::LOG_FILTER.default));
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let mut priorities = tracing_journald::PriorityMappings::new();
                // journald's conventional meanings: info is 6, not "notice".
                priorities.info = tracing_journald::Priority::Informational;
                priorities.debug = tracing_journald::Priority::Debug;
                let layer = layer
                    .with_field_prefix(None)
                    .with_syslog_identifier("volspike".into())
                    .with_priority_mappings(priorities);
                if tracing_subscriber::registry()
                    .with(filter)
                    .with(layer)
                    .try_init()
                    .is_ok()
                {
                    return Destination::Journald;
                }
                return Destination::Stderr;
            }
            Err(e) => {
                eprintln!("volspike: journald socket unavailable ({e}); logging to stderr");
            }
        }
    }
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    Destination::Stderr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_that_would_silence_logging_are_refused() {
        for good in [
            "info",
            "debug",
            "WARN",
            "volspike=debug",
            "info,ureq=warn",
            "off",
        ] {
            assert_eq!(check_filter(good), Ok(()), "{good}");
        }
        for bad in ["verbose", "info,loud", "volspike=chatty", "=debug"] {
            let e = check_filter(bad).expect_err(bad);
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(check_filter("verbose")
            .expect_err("verbose")
            .contains("trace, debug, info, warn, error, off"));
    }
}
