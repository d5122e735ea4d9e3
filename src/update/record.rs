//! Update bookkeeping in the state directory (`update.json`): the last
//! update attempt and a short history, so `status` and an operator can see
//! what changed, when, and how it ended, also after a rollback.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The file in the state directory.
pub const FILE: &str = "update.json";
/// History entries kept.
const KEEP: usize = 20;

/// One self-update attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateRecord {
    /// When it ended (RFC 3339, UTC).
    pub at: String,
    /// `update` or `rollback`.
    pub action: String,
    /// The manifest URL or the local artifact path (or the `.previous` binary).
    pub source: String,
    /// The version installed before.
    pub from: Option<String>,
    /// The version it tried to install.
    pub to: Option<String>,
    /// `updated`, `rolled-back`, `refused` or `failed`.
    pub outcome: String,
    /// Why it was refused, rolled back or failed.
    pub reason: Option<String>,
    /// Old left active → new READY, in milliseconds.
    pub downtime_ms: Option<u64>,
}

impl UpdateRecord {
    /// A record stamped now.
    pub fn now(action: &str, source: &str) -> UpdateRecord {
        UpdateRecord {
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            action: action.to_string(),
            source: source.to_string(),
            from: None,
            to: None,
            outcome: String::new(),
            reason: None,
            downtime_ms: None,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateLog {
    /// The most recent attempt.
    pub last: Option<UpdateRecord>,
    /// Earlier attempts, newest first, at most 20.
    pub history: Vec<UpdateRecord>,
}

impl UpdateLog {
    /// Adds `record` as the last attempt.
    pub fn push(&mut self, record: UpdateRecord) {
        if let Some(previous) = self.last.take() {
            self.history.insert(0, previous);
            self.history.truncate(KEEP);
        }
        self.last = Some(record);
    }
}

/// Appends `record` to `<state_dir>/update.json` (atomic write). Returns the
/// file written; an error is for the caller to warn about: bookkeeping must
/// not turn a good update into a failed one.
pub fn append(state_dir: &Path, record: UpdateRecord) -> Result<PathBuf, String> {
    let path = state_dir.join(FILE);
    let mut log = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => UpdateLog::default(),
    };
    log.push(record);
    let bytes = serde_json::to_vec_pretty(&log).map_err(|e| e.to_string())?;
    if !state_dir.is_dir() {
        return Err(format!("{} does not exist", state_dir.display()));
    }
    crate::state::write_atomic(&path, &bytes).map_err(|e| e.to_string())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::testkit::TempDir;

    #[test]
    fn keeps_the_last_and_a_bounded_history() {
        let dir = TempDir::new("record");
        for i in 0..25 {
            let mut r = UpdateRecord::now("update", "http://x/manifest.json");
            r.to = Some(format!("0.1.{i}"));
            r.outcome = "updated".into();
            append(dir.path(), r).expect("append");
        }
        let log: UpdateLog =
            serde_json::from_slice(&std::fs::read(dir.path().join(FILE)).expect("read"))
                .expect("json");
        assert_eq!(log.last.and_then(|r| r.to), Some("0.1.24".into()));
        assert_eq!(log.history.len(), 20);
        assert_eq!(log.history[0].to.as_deref(), Some("0.1.23"));
        assert!(append(
            &dir.path().join("missing"),
            UpdateRecord::now("update", "x")
        )
        .is_err());
    }
}
