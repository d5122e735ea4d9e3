//! `volspike outbox list|retry|drop`: the operator's view of the dead
//! letters (posts a backend refused for good), straight from the state
//! directory, so it works whether the service runs or not. A replay is a
//! move into the backend's `retry/` folder: the running delivery loop
//! queues it within seconds (or the next start does).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::backend::dead_letters;
use crate::cmd::exit::ExitCode;
use crate::config::settings;

/// `volspike outbox`.
#[derive(Debug, Args)]
pub struct OutboxArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: OutboxAction,
    /// State directory (default: $VOLSPIKE_STATE_DIR, else $STATE_DIRECTORY, else /var/lib/volspike).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Only this backend (primary, dev); default: every backend with an outbox.
    #[arg(long, global = true, value_name = "NAME")]
    pub backend: Option<String>,
}

/// `volspike outbox <action>`.
#[derive(Debug, Subcommand)]
pub enum OutboxAction {
    /// List the dead letters and why each was refused.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Queue dead letters again (an ID from `list`, or `all`); a running service picks them up within seconds.
    Retry {
        /// Dead-letter ID, or `all`.
        id: String,
    },
    /// Delete dead letters for good (an ID from `list`, or `all`).
    Drop {
        /// Dead-letter ID, or `all`.
        id: String,
    },
}

/// Runs the command: `Ok` when done, `Err` (exit 1) with the reason.
pub fn run(args: &OutboxArgs) -> anyhow::Result<ExitCode> {
    let state = state_dir(args.state_dir.clone());
    let backends = backends(&state, args.backend.as_deref())?;
    match &args.action {
        OutboxAction::List { json } => list(&backends, *json)?,
        OutboxAction::Retry { id } => {
            act(&backends, id, "queued again", dead_letters::request_retry)?
        }
        OutboxAction::Drop { id } => act(&backends, id, "dropped", dead_letters::drop_letters)?,
    }
    Ok(ExitCode::Ok)
}

/// `--state-dir`, else the service's variables, else the default.
fn state_dir(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        settings::STATE_DIR
            .names
            .iter()
            .find_map(|name| std::env::var_os(name).filter(|v| !v.is_empty()))
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(settings::STATE_DIR.default))
}

/// `(name, outbox/<name>)` of the chosen backend, or of every backend found.
fn backends(state: &Path, only: Option<&str>) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let outbox = state.join("outbox");
    let entries =
        std::fs::read_dir(&outbox).with_context(|| format!("cannot read {}", outbox.display()))?;
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| only.is_none_or(|o| o == name))
        .collect();
    found.sort();
    if found.is_empty() {
        match only {
            Some(name) => bail!("no outbox for backend {name:?} in {}", outbox.display()),
            None => bail!("no backend outbox in {}", outbox.display()),
        }
    }
    Ok(found)
}

/// Prints every dead letter of `backends` (a table, or JSON lines).
fn list(backends: &[(String, PathBuf)], as_json: bool) -> anyhow::Result<()> {
    let mut total = 0;
    for (name, dir) in backends {
        let letters = dead_letters::list(dir).with_context(|| name.clone())?;
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
    Ok(())
}

/// Applies `op` (retry or drop) to the letters `selector` names in every
/// backend and prints each one as `done`.
fn act(
    backends: &[(String, PathBuf)],
    selector: &str,
    done: &str,
    op: fn(&Path, &str) -> std::io::Result<Vec<String>>,
) -> anyhow::Result<()> {
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
            Err(e) => return Err(anyhow::Error::new(e).context(name.clone())),
        }
    }
    if matched == 0 && selector != "all" {
        bail!("no dead letter {selector:?}");
    }
    Ok(())
}
