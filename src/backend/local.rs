//! `run --local`: no backend. Alerts are logged at INFO and appended as one
//! JSON line each to `alerts.jsonl` in the state directory (rotated to
//! `alerts.jsonl.1` past a size cap); samples, universe and Telegram posts
//! are only a DEBUG line. Dedup works as with backends, in memory.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{json, Value};

use super::post::Post;
use crate::clock::{iso, unix_ms};

/// File name of the alert log inside the state directory.
pub const ALERTS_FILE: &str = "alerts.jsonl";
/// The alert log is rotated once it would grow past this.
const MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Most dedup keys remembered (oldest forgotten first).
const MAX_KEYS: usize = 10_000;

/// What [`LocalLog::record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Logged (and written, for an alert).
    Logged,
    /// A repeat within its dedup window: ignored.
    Duplicate,
}

/// The local-mode sink.
#[derive(Debug)]
pub(crate) struct LocalLog {
    /// `alerts.jsonl` in the state directory.
    path: PathBuf,
    /// Rotation cap in bytes.
    max_bytes: u64,
    /// Dedup keys seen: key → suppressed until (unix ms), with insertion order
    /// for bounding. Also serialises appends to the file.
    seen: Mutex<(HashMap<String, u64>, VecDeque<String>)>,
}

impl LocalLog {
    /// A sink writing into `state_dir`.
    pub fn new(state_dir: &std::path::Path) -> LocalLog {
        LocalLog {
            path: state_dir.join(ALERTS_FILE),
            max_bytes: MAX_BYTES,
            seen: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Logs `post`; alerts also go to the file.
    pub fn record(&self, post: &Post, now: SystemTime) -> io::Result<Recorded> {
        let now_ms = unix_ms(now);
        let mut seen = match self.seen.lock() {
            Ok(seen) => seen,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(dedup) = &post.dedup {
            if seen.0.get(&dedup.key).is_some_and(|&until| until > now_ms) {
                return Ok(Recorded::Duplicate);
            }
            let until = now_ms.saturating_add(dedup.window.as_millis() as u64);
            if seen.0.insert(dedup.key.clone(), until).is_none() {
                seen.1.push_back(dedup.key.clone());
            }
            while seen.1.len() > MAX_KEYS {
                if let Some(old) = seen.1.pop_front() {
                    seen.0.remove(&old);
                }
            }
        }
        if !post.kind.is_alert() {
            tracing::debug!(route = post.path, "local mode, not posted: {}", post.label);
            return Ok(Recorded::Logged);
        }
        let field = |name: &str| post.body.get(name).cloned().unwrap_or(Value::Null);
        tracing::info!(
            symbol = %field("symbol"),
            message = %field("message"),
            kind = ?post.kind,
            "alert (local mode, not posted): {}",
            post.label
        );
        let line = json!({
            "at": iso(now),
            "kind": post.kind,
            "route": post.path,
            "label": post.label,
            "body": post.body,
        });
        self.append(&line)?;
        Ok(Recorded::Logged)
    }

    /// Appends one line, rotating first when the file would pass the cap.
    fn append(&self, line: &Value) -> io::Result<()> {
        let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        let size = fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if size > 0 && size + bytes.len() as u64 > self.max_bytes {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            fs::rename(&self.path, PathBuf::from(rotated))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(&bytes)?;
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::payloads::VolumeAlertType;
    use crate::backend::post::tests_support::volume_post;
    use crate::testkit::TempDir;

    #[test]
    fn alerts_are_appended_once_and_rotated() {
        let tmp = TempDir::new("local");
        let dir = tmp.path().to_path_buf();
        let mut log = LocalLog::new(&dir);
        let now = SystemTime::now();
        let a = volume_post("BTCUSDT", VolumeAlertType::Spike);
        assert_eq!(log.record(&a, now).expect("record"), Recorded::Logged);
        assert_eq!(log.record(&a, now).expect("record"), Recorded::Duplicate);
        let text = fs::read_to_string(dir.join(ALERTS_FILE)).expect("read");
        assert_eq!(text.lines().count(), 1);
        let line: Value = serde_json::from_str(text.trim()).expect("json line");
        assert_eq!(line["body"]["symbol"], "BTCUSDT");
        assert_eq!(line["kind"], "volume_alert");

        log.max_bytes = 10;
        let b = volume_post("ETHUSDT", VolumeAlertType::Spike);
        log.record(&b, now).expect("record");
        let current = fs::read_to_string(dir.join(ALERTS_FILE)).expect("read");
        assert!(current.contains("ETHUSDT") && !current.contains("BTCUSDT"));
        let old = fs::read_to_string(dir.join("alerts.jsonl.1")).expect("rotated");
        assert!(old.contains("BTCUSDT"));
    }
}
