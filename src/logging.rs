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

/// Installs the global subscriber with `filter` (validated by config).
pub fn init(filter: &str) -> Destination {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
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
