//! The dead-letter folder of one backend: posts the backend refused for
//! good (a 4xx other than 401/403/429), or that kept failing with 5xx while
//! other posts went through. They are kept on disk for the operator, who
//! lists, replays or drops them with `volspike outbox list|retry|drop`.
//!
//! ```text
//! outbox/<backend>/dead/<id>.json    one refused post and why
//! outbox/<backend>/retry/<id>.json   asked to be replayed; the running
//!                                    delivery loop (or the next start) queues it again
//! ```
//! File operations only; no network.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::queue::StoredPost;
use crate::state::write_atomic;

/// Folder of dead letters inside a backend's outbox directory.
pub(crate) const DEAD_DIR: &str = "dead";
/// Folder of dead letters waiting to be queued again.
pub(crate) const RETRY_DIR: &str = "retry";

/// One refused post as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeadLetter {
    /// The post as it was queued.
    pub post: StoredPost,
    /// Why it was set aside (status and answer, or the repeated 5xx).
    pub reason: String,
    /// When it was set aside, unix ms.
    pub dead_at_ms: u64,
}

/// `outbox/<backend>/dead`.
pub(crate) fn dead_dir(queue_dir: &Path) -> PathBuf {
    queue_dir.join(DEAD_DIR)
}

/// `outbox/<backend>/retry`.
pub(crate) fn retry_dir(queue_dir: &Path) -> PathBuf {
    queue_dir.join(RETRY_DIR)
}

/// Stores `letter` under the post's sequence number (a suffix keeps an
/// older letter with the same number, e.g. after a renumbering).
pub(crate) fn store(queue_dir: &Path, letter: &DeadLetter) -> io::Result<String> {
    let dir = dead_dir(queue_dir);
    fs::create_dir_all(&dir)?;
    let mut id = format!("{:016}", letter.post.seq);
    if dir.join(format!("{id}.json")).exists() {
        id = format!("{id}-{}", letter.dead_at_ms);
    }
    let bytes = serde_json::to_vec_pretty(letter).map_err(io::Error::other)?;
    write_atomic(&dir.join(format!("{id}.json")), &bytes)?;
    Ok(id)
}

/// The ids (file stems) of the JSON files in `dir`, sorted; none when absent.
fn ids(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut ids = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if let Some(id) = name.strip_suffix(".json") {
            ids.push(id.to_string());
        }
    }
    ids.sort();
    Ok(ids)
}

/// How many dead letters are kept (0 when the folder cannot be read).
pub(crate) fn count(queue_dir: &Path) -> usize {
    ids(&dead_dir(queue_dir)).map_or(0, |ids| ids.len())
}

/// Deletes the oldest dead letters (lowest sequence numbers) until at most
/// `keep` remain; returns the ids deleted.
pub(crate) fn delete_oldest(queue_dir: &Path, keep: usize) -> io::Result<Vec<String>> {
    let all = ids(&dead_dir(queue_dir))?;
    let excess = all.len().saturating_sub(keep);
    let mut deleted = Vec::with_capacity(excess);
    for id in all.into_iter().take(excess) {
        match fs::remove_file(dead_dir(queue_dir).join(format!("{id}.json"))) {
            Ok(()) => deleted.push(id),
            // Dropped by the operator meanwhile: gone all the same.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

/// Every dead letter with its id, oldest first; unreadable files are
/// reported as an error text in place of the letter.
pub(crate) fn list(queue_dir: &Path) -> io::Result<Vec<(String, Result<DeadLetter, String>)>> {
    let dir = dead_dir(queue_dir);
    Ok(ids(&dir)?
        .into_iter()
        .map(|id| {
            let letter = fs::read(dir.join(format!("{id}.json")))
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()));
            (id, letter)
        })
        .collect())
}

/// Which letters an id selector names: `all`, or one id.
fn selected(queue_dir: &Path, selector: &str) -> io::Result<Vec<String>> {
    let all = ids(&dead_dir(queue_dir))?;
    if selector == "all" {
        return Ok(all);
    }
    if all.iter().any(|id| id == selector) {
        Ok(vec![selector.to_string()])
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "no dead letter {selector:?} in {}",
                dead_dir(queue_dir).display()
            ),
        ))
    }
}

/// Moves the selected letters to the retry folder; returns their ids.
pub(crate) fn request_retry(queue_dir: &Path, selector: &str) -> io::Result<Vec<String>> {
    let chosen = selected(queue_dir, selector)?;
    let retry = retry_dir(queue_dir);
    fs::create_dir_all(&retry)?;
    for id in &chosen {
        fs::rename(
            dead_dir(queue_dir).join(format!("{id}.json")),
            retry.join(format!("{id}.json")),
        )?;
    }
    Ok(chosen)
}

/// Deletes the selected letters; returns their ids.
pub(crate) fn drop_letters(queue_dir: &Path, selector: &str) -> io::Result<Vec<String>> {
    let chosen = selected(queue_dir, selector)?;
    for id in &chosen {
        fs::remove_file(dead_dir(queue_dir).join(format!("{id}.json")))?;
    }
    Ok(chosen)
}

/// The letters waiting in the retry folder, each with its file (removed by
/// the caller once the post is queued again). Unreadable ones are moved
/// back to the dead folder with a log line.
pub(crate) fn retries(queue_dir: &Path) -> Vec<(PathBuf, DeadLetter)> {
    let dir = retry_dir(queue_dir);
    let Ok(found) = ids(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for id in found {
        let path = dir.join(format!("{id}.json"));
        match fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<DeadLetter>(&b).map_err(|e| e.to_string()))
        {
            Ok(letter) => out.push((path, letter)),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "unreadable dead letter in the retry folder; moved back");
                let _ = fs::rename(&path, dead_dir(queue_dir).join(format!("{id}.json")));
            }
        }
    }
    out
}
