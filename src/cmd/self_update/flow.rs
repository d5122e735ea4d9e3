//! The update and the rollback, step by step (numbers as in the
//! [module documentation](super)): pick and check the artifact, verify it,
//! ask, then [`activate`] it.

use std::fs;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use super::activate::activate;
use super::args::SelfUpdateArgs;
use super::context::Context;
use super::outcome::{Done, Problem};
use crate::service::fs::Staging;
use crate::service::paths::Layout;
use crate::update::record::UpdateRecord;
use crate::update::{artifact, manifest, verify};
use crate::version::TARGET;

/// Update from the manifest or from `--from`.
pub(crate) fn update(
    ctx: &Context,
    args: &SelfUpdateArgs,
    rec: &mut UpdateRecord,
) -> Result<Done, Problem> {
    let current = installed_version(&ctx.layout, rec)?;
    // Beside the binary (same file system for the rename; and /tmp may be
    // noexec). `--check` by a user who cannot write there uses the temp dir.
    let staging = match Staging::new(&ctx.layout) {
        Err(_) if args.check => Staging::new_in(&ctx.layout, &std::env::temp_dir()),
        other => other,
    }
    .map_err(|e| Problem::Failed(format!("cannot prepare the update: {e}")))?;

    // 1-2: which artifact, and may it be installed at all.
    let (artifact_path, version, digest) = match &args.from {
        Some(from) => {
            let name = from
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Problem::Refused(format!("{}: not a file name", from.display())))?;
            let parsed = artifact::parse_name(name, TARGET).map_err(Problem::Refused)?;
            rec.to = Some(parsed.version.clone());
            if parsed.target != TARGET {
                return Err(Problem::Refused(format!(
                    "wrong target: {name} is built for {}, this machine runs {TARGET}",
                    parsed.target
                )));
            }
            version_policy(&current.version, &parsed.version, args.version.as_deref())?;
            // Check the copy we will install, not a path someone else may
            // still be writing to.
            let staged = staging.path().join(name);
            fs::copy(from, &staged)
                .map_err(|e| Problem::Refused(format!("cannot read {}: {e}", from.display())))?;
            let sidecar = PathBuf::from(format!("{}.sha256", from.display()));
            let digest = match fs::read_to_string(&sidecar) {
                Ok(text) => Some((
                    verify::digest_from_sums(&text, name)
                        .map_err(|why| Problem::Refused(format!("{}: {why}", sidecar.display())))?,
                    sidecar.display().to_string(),
                )),
                Err(_) => None,
            };
            (staged, parsed.version, digest)
        }
        None => {
            let url = ctx.update_url.as_deref().ok_or_else(|| {
                Problem::Refused(format!(
                    "no release source: set VOLSPIKE_UPDATE_URL in {} or pass --from PATH",
                    crate::service::paths::ENV_FILE
                ))
            })?;
            let releases = manifest::fetch(url).map_err(Problem::Failed)?;
            let selected = match manifest::choose(
                &releases,
                &current.version,
                args.version.as_deref(),
                TARGET,
            )
            .map_err(Problem::Refused)?
            {
                manifest::Choice::UpToDate { newest } => {
                    say!(
                        "volspike {} is up to date (newest in {url}: {})",
                        current.version,
                        newest.as_deref().unwrap_or("no release")
                    );
                    return Ok(Done::NothingDone);
                }
                manifest::Choice::Install(selected) => selected,
            };
            rec.to = Some(selected.version.clone());
            version_policy(&current.version, &selected.version, args.version.as_deref())?;
            if args.check {
                say!(
                    "update available: {} -> {} ({}); run `volspike self-update` to install it",
                    current.version,
                    selected.version,
                    selected.url
                );
                return Ok(Done::NothingDone);
            }
            let staged = staging.path().join(&selected.asset_name);
            say!("downloading {}", selected.url);
            manifest::download(&selected.url, &staged).map_err(Problem::Failed)?;
            (
                staged,
                selected.version,
                Some((selected.sha256, format!("the manifest {url}"))),
            )
        }
    };

    // 3-4: digest, signature, and the binary's own word.
    let name = artifact_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let digest_note = match &digest {
        Some((hex, origin)) => {
            verify::check_digest(&artifact_path, hex, origin).map_err(Problem::Refused)?;
            format!("sha256 matches {origin}")
        }
        None => "no digest file beside it (signature checked)".to_string(),
    };
    let key = verify::check_signature(&artifact_path, &ctx.keys).map_err(Problem::Refused)?;
    let binary =
        verify::extract_binary(&artifact_path, staging.path()).map_err(Problem::Refused)?;
    let line = verify::run_version(&binary).map_err(Problem::Refused)?;
    verify::check_version_line(&line, &version, TARGET).map_err(Problem::Refused)?;
    say!(
        "verified {name}: {digest_note}; signed by {}; its binary runs and says {} ({}, commit {})",
        key.origin,
        line.version,
        line.target,
        line.commit
    );
    if args.check {
        say!(
            "would replace {} with {} (--check: nothing changed)",
            current.version,
            line.version
        );
        return Ok(Done::NothingDone);
    }
    confirm(
        args,
        &format!(
            "Replace volspike {} with {}?",
            current.version, line.version
        ),
    )?;

    // 5-6.
    activate(ctx, &binary, &current.version, &line.version, rec)?;
    Ok(Done::Installed)
}

/// `--rollback`: the kept previous binary becomes the installed one.
pub(crate) fn rollback(
    ctx: &Context,
    args: &SelfUpdateArgs,
    rec: &mut UpdateRecord,
) -> Result<Done, Problem> {
    let current = installed_version(&ctx.layout, rec)?;
    let previous = ctx.layout.previous_binary();
    if !previous.exists() {
        return Err(Problem::Refused(format!(
            "no previous binary at {}: nothing to roll back to",
            previous.display()
        )));
    }
    let staging = Staging::new(&ctx.layout)
        .map_err(|e| Problem::Failed(format!("cannot prepare the rollback: {e}")))?;
    let staged = staging.path().join(verify::BINARY_IN_ARCHIVE);
    fs::copy(&previous, &staged)
        .map_err(|e| Problem::Failed(format!("cannot copy {}: {e}", previous.display())))?;
    let line = verify::run_version(&staged).map_err(Problem::Refused)?;
    rec.to = Some(line.version.clone());
    if line.target != TARGET {
        return Err(Problem::Refused(format!(
            "wrong target: {} is built for {}, this machine runs {TARGET}",
            previous.display(),
            line.target
        )));
    }
    confirm(
        args,
        &format!(
            "Roll back volspike {} to {}?",
            current.version, line.version
        ),
    )?;
    activate(ctx, &staged, &current.version, &line.version, rec)?;
    Ok(Done::Installed)
}

/// Newer is fine; the same or older only when `--version` asks for exactly it.
fn version_policy(current: &str, candidate: &str, wanted: Option<&str>) -> Result<(), Problem> {
    use std::cmp::Ordering;
    if let Some(wanted) = wanted {
        if artifact::compare(candidate, wanted).map_err(Problem::Refused)? != Ordering::Equal {
            return Err(Problem::Refused(format!(
                "the artifact is version {candidate}, but --version asked for {}",
                artifact::normalize(wanted)
            )));
        }
        return Ok(());
    }
    match artifact::compare(candidate, current).map_err(Problem::Refused)? {
        Ordering::Greater => Ok(()),
        Ordering::Equal => Err(Problem::Refused(format!(
            "{candidate} is already installed; pass --version {candidate} to reinstall it"
        ))),
        Ordering::Less => Err(Problem::Refused(format!(
            "{candidate} is older than the installed {current}; pass --version {candidate} to go back on purpose"
        ))),
    }
}

/// The installed binary's own version, recorded as the attempt's `from`.
fn installed_version(
    layout: &Layout,
    rec: &mut UpdateRecord,
) -> Result<artifact::VersionLine, Problem> {
    let binary = layout.binary();
    if !binary.exists() {
        return Err(Problem::Refused(format!(
            "volspike is not installed at {} (run `volspike install` first)",
            binary.display()
        )));
    }
    let line = verify::run_version(&binary).map_err(|why| {
        Problem::Refused(format!(
            "cannot tell the installed version ({why}); reinstall with `volspike install`"
        ))
    })?;
    rec.from = Some(line.version.clone());
    Ok(line)
}

/// Asks on a terminal unless `--yes`; without a terminal, refuses.
fn confirm(args: &SelfUpdateArgs, question: &str) -> Result<(), Problem> {
    if args.yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Problem::Refused(
            "not confirmed: stdin is not a terminal, pass --yes to update without a question"
                .to_string(),
        ));
    }
    let _ = write!(std::io::stdout(), "{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = stdin.lock().read_line(&mut answer);
    match answer.trim() {
        "y" | "Y" | "yes" | "YES" | "Yes" => Ok(()),
        _ => Err(Problem::Refused("not confirmed".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_policy_refuses_older_and_same_without_version() {
        assert_eq!(version_policy("0.1.0", "0.1.1", None), Ok(()));
        let err = version_policy("0.1.1", "0.1.0", None).expect_err("older");
        assert_eq!(
            err.to_string(),
            "refused: 0.1.0 is older than the installed 0.1.1; pass --version 0.1.0 to go back on purpose; the installed binary is untouched"
        );
        assert!(version_policy("0.1.1", "0.1.1", None).is_err());
        assert_eq!(version_policy("0.1.1", "0.1.0", Some("v0.1.0")), Ok(()));
        assert_eq!(version_policy("0.1.1", "0.1.1", Some("0.1.1")), Ok(()));
        let err = version_policy("0.1.0", "0.1.2", Some("0.1.3")).expect_err("mismatch");
        assert!(err.to_string().contains("--version asked for 0.1.3"));
    }
}
