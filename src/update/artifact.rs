//! Names and versions: what an artifact is called, what a binary says about
//! itself, and which of two versions is newer.
//!
//! An artifact is `volspike-<version>-<target>.tar.gz`. The name is checked
//! before anything is downloaded or unpacked, and the binary inside must say
//! the same version and target when asked (`volspike version`), so a renamed
//! file cannot pass for another release.

use std::cmp::Ordering;

/// Every artifact's name starts with this.
const PREFIX: &str = "volspike-";
/// Every artifact is a gzipped tar (the only kind zipsign signs that
/// self_update unpacks for us).
const SUFFIX: &str = ".tar.gz";

/// The artifact file name for `version` built for `target`.
pub fn file_name(version: &str, target: &str) -> String {
    format!("{PREFIX}{version}-{target}{SUFFIX}")
}

/// What an artifact's file name says it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactName {
    /// The release version, e.g. `0.1.1` (semver, may carry a pre-release).
    pub version: String,
    /// The target triple, e.g. `x86_64-unknown-linux-musl`.
    pub target: String,
}

/// Parses `volspike-<version>-<target>.tar.gz`.
///
/// Versions may contain `-` (pre-releases) and targets always do, so the
/// split is anchored on `our_target` when the name ends with it; otherwise the
/// last four `-`-separated parts are taken as the target (every triple we
/// build has four) so the refusal can name the foreign target.
pub fn parse_name(name: &str, our_target: &str) -> Result<ArtifactName, String> {
    let expected = format!("expected {}", file_name("<version>", "<target>"));
    let inner = name
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .ok_or_else(|| format!("`{name}` is not a volspike artifact name ({expected})"))?;
    let (version, target) = match inner.strip_suffix(&format!("-{our_target}")) {
        Some(version) => (version.to_string(), our_target.to_string()),
        None => {
            let parts: Vec<&str> = inner.split('-').collect();
            if parts.len() < 5 {
                return Err(format!("`{name}` names no target triple ({expected})"));
            }
            let split = parts.len() - 4;
            (parts[..split].join("-"), parts[split..].join("-"))
        }
    };
    if semver_ok(&version).is_err() {
        return Err(format!(
            "`{name}`: `{version}` is not a version like 1.2.3 ({expected})"
        ));
    }
    Ok(ArtifactName { version, target })
}

/// What `volspike version` prints, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionLine {
    /// The version, e.g. `0.1.0`.
    pub version: String,
    /// The target triple the binary was built for.
    pub target: String,
    /// The commit it was built from (`unknown` outside a checkout).
    pub commit: String,
}

/// Parses `volspike 0.1.0 (x86_64-unknown-linux-musl, commit abc, built 2026-11-25)`
/// (the format of [`crate::version::line`]); `None` for anything else.
pub fn parse_version_line(output: &str) -> Option<VersionLine> {
    let line = output.lines().find(|l| l.starts_with("volspike "))?;
    let rest = line.strip_prefix("volspike ")?;
    let (version, details) = rest.split_once(" (")?;
    let details = details.trim_end().strip_suffix(')')?;
    let mut fields = details.split(", ");
    let target = fields.next()?.trim().to_string();
    let commit = fields
        .find_map(|f| f.strip_prefix("commit "))
        .unwrap_or("unknown")
        .to_string();
    let version = version.trim().to_string();
    if version.is_empty() || target.is_empty() {
        return None;
    }
    Some(VersionLine {
        version,
        target,
        commit,
    })
}

/// An operator may type `v0.1.1`; releases are listed as `0.1.1`.
pub fn normalize(version: &str) -> &str {
    let v = version.trim();
    v.strip_prefix('v').unwrap_or(v)
}

/// Semver order of `a` and `b`; an unparseable version is an error naming it.
pub fn compare(a: &str, b: &str) -> Result<Ordering, String> {
    semver_ok(a)?;
    semver_ok(b)?;
    self_update::version::cmp_versions(normalize(a), normalize(b))
        .map_err(|e| format!("cannot compare versions {a} and {b}: {e}"))
}

/// Checks that `v` is a semver version (self_update's parser decides).
fn semver_ok(v: &str) -> Result<(), String> {
    self_update::version::cmp_versions(normalize(v), normalize(v))
        .map(|_| ())
        .map_err(|_| format!("`{v}` is not a version like 1.2.3"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MUSL: &str = "x86_64-unknown-linux-musl";

    #[test]
    fn names_round_trip_including_pre_releases() {
        for v in ["0.1.0", "1.20.3", "0.2.0-rc.1", "0.2.0-beta-2"] {
            let name = file_name(v, MUSL);
            assert_eq!(
                parse_name(&name, MUSL),
                Ok(ArtifactName {
                    version: v.to_string(),
                    target: MUSL.to_string()
                })
            );
        }
    }

    #[test]
    fn a_foreign_target_is_named() {
        let parsed =
            parse_name("volspike-0.1.1-aarch64-unknown-linux-musl.tar.gz", MUSL).expect("parses");
        assert_eq!(parsed.version, "0.1.1");
        assert_eq!(parsed.target, "aarch64-unknown-linux-musl");
    }

    #[test]
    fn other_names_are_refused_with_the_expected_form() {
        for bad in [
            "volspike.tar.gz",
            "volspike-0.1.1-x86_64-unknown-linux-musl.zip",
            "other-0.1.1-x86_64-unknown-linux-musl.tar.gz",
            "volspike-0.1.1.tar.gz",
            "volspike-latest-x86_64-unknown-linux-musl.tar.gz",
        ] {
            let err = parse_name(bad, MUSL).expect_err(bad);
            assert!(
                err.contains("expected volspike-<version>-<target>.tar.gz"),
                "{err}"
            );
        }
    }

    #[test]
    fn version_line_is_what_version_prints() {
        let ours = crate::version::line();
        let parsed = parse_version_line(&ours).expect("our own line parses");
        assert_eq!(parsed.version, crate::version::VERSION);
        assert_eq!(parsed.target, crate::version::TARGET);
        assert_eq!(parsed.commit, crate::version::COMMIT);
        assert_eq!(
            parse_version_line(
                "volspike 0.2.0 (aarch64-unknown-linux-musl, commit abc, built 2026-01-01)\n"
            ),
            Some(VersionLine {
                version: "0.2.0".into(),
                target: "aarch64-unknown-linux-musl".into(),
                commit: "abc".into()
            })
        );
        assert_eq!(parse_version_line("Segmentation fault"), None);
        assert_eq!(parse_version_line("volspike 0.2.0"), None);
    }

    #[test]
    fn versions_compare_by_semver_not_by_text() {
        assert_eq!(compare("0.1.10", "0.1.9"), Ok(Ordering::Greater));
        assert_eq!(compare("v0.1.1", "0.1.1"), Ok(Ordering::Equal));
        assert_eq!(compare("0.2.0-rc.1", "0.2.0"), Ok(Ordering::Less));
        assert_eq!(compare("0.1.0", "0.1.1"), Ok(Ordering::Less));
        assert!(compare("banana", "0.1.0").is_err());
    }
}
