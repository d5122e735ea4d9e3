//! `volspike outbox list|retry|drop`: the operator's view of the dead
//! letters (posts a backend refused for good), straight from the state
//! directory, so it works whether the service runs or not. A replay is a
//! move into the backend's `retry/` folder: the running delivery loop
//! queues it within seconds (or the next start does).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::dead_letters;
use crate::cli::{OutboxAction, OutboxArgs};

/// Default state directory of an installed appliance.
const DEFAULT_STATE_DIR: &str = "/var/lib/volspike";

/// Runs the command; returns the exit code (0 ok, 1 failure).
pub fn run(args: &OutboxArgs) -> i32 {
    let state = state_dir(args.state_dir.clone());
    let backends = match backends(&state, args.backend.as_deref()) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("volspike outbox: {e}");
            return 1;
        }
    };
    match &args.action {
        OutboxAction::List { json } => list(&backends, *json),
        OutboxAction::Retry { id } => {
            act(&backends, id, "queued again", dead_letters::request_retry)
        }
        OutboxAction::Drop { id } => act(&backends, id, "dropped", dead_letters::drop_letters),
    }
}

/// `--state-dir`, else the service's variables, else the default.
fn state_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        ["VOLSPIKE_STATE_DIR", "STATE_DIRECTORY"]
            .iter()
            .find_map(|name| std::env::var_os(name).filter(|v| !v.is_empty()))
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// `(name, outbox/<name>)` of the chosen backend, or of every backend found.
fn backends(state: &Path, only: Option<&str>) -> Result<Vec<(String, PathBuf)>, String> {
    let outbox = state.join("outbox");
    let entries =
        std::fs::read_dir(&outbox).map_err(|e| format!("cannot read {}: {e}", outbox.display()))?;
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| only.is_none_or(|o| o == name))
        .collect();
    found.sort();
    if found.is_empty() {
        return Err(match only {
            Some(name) => format!("no outbox for backend {name:?} in {}", outbox.display()),
            None => format!("no backend outbox in {}", outbox.display()),
        });
    }
    Ok(found)
}

fn list(backends: &[(String, PathBuf)], as_json: bool) -> i32 {
    let mut total = 0;
    for (name, dir) in backends {
        let letters = match dead_letters::list(dir) {
            Ok(letters) => letters,
            Err(e) => {
                eprintln!("volspike outbox: {name}: {e}");
                return 1;
            }
        };
        for (id, letter) in letters {
            total += 1;
            match (letter, as_json) {
                (Ok(l), true) => println!(
                    "{}",
                    json!({"backend": name, "id": id, "route": l.post.path, "label": l.post.label,
                           "reason": l.reason, "deadAtMs": l.dead_at_ms, "body": l.post.body})
                ),
                (Err(e), true) => {
                    println!("{}", json!({"backend": name, "id": id, "unreadable": e}))
                }
                (Ok(l), false) => println!(
                    "{name}\t{id}\t{}\t{}\t{}",
                    crate::clock::iso(crate::clock::from_unix_ms(l.dead_at_ms)),
                    l.post.label,
                    l.reason
                ),
                (Err(e), false) => println!("{name}\t{id}\tunreadable: {e}"),
            }
        }
    }
    if !as_json {
        eprintln!("{total} dead letters");
    }
    0
}

fn act(
    backends: &[(String, PathBuf)],
    selector: &str,
    done: &str,
    op: fn(&Path, &str) -> std::io::Result<Vec<String>>,
) -> i32 {
    let mut matched = 0;
    for (name, dir) in backends {
        match op(dir, selector) {
            Ok(ids) => {
                for id in &ids {
                    println!("{name}\t{id}\t{done}");
                }
                matched += ids.len();
            }
            // A single id lives in one backend: not finding it in another is normal.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && selector != "all" => {}
            Err(e) => {
                eprintln!("volspike outbox: {name}: {e}");
                return 1;
            }
        }
    }
    if matched == 0 && selector != "all" {
        eprintln!("volspike outbox: no dead letter {selector:?}");
        return 1;
    }
    0
}
