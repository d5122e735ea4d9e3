//! The release source: a `manifest.json` (self_update's manifest backend,
//! schema 1) on any static file host, and the choice of which release to
//! install from it.

use std::path::Path;
use std::time::Duration;

use self_update::update::{Release, ReleaseSource};

use super::artifact;

/// Timeout of the manifest fetch and of each artifact download request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);
/// No volspike artifact is anywhere near this; a bigger body is refused.
const MAX_ARTIFACT_BYTES: u64 = 200 * 1024 * 1024;

/// One installable artifact picked from the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    /// The release version.
    pub version: String,
    /// The artifact file name, `volspike-<version>-<target>.tar.gz`.
    pub asset_name: String,
    /// Where to download it (relative URLs already resolved).
    pub url: String,
    /// The manifest's SHA-256 for it, lowercase hex.
    pub sha256: String,
}

/// What the manifest offers relative to the running version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Nothing newer (the newest listed version, if any).
    UpToDate {
        /// The newest version the manifest lists.
        newest: Option<String>,
    },
    /// This artifact should be installed.
    Install(Selected),
}

/// Fetches and parses the manifest at `url` with self_update's manifest backend.
pub fn fetch(url: &str) -> Result<Vec<Release>, String> {
    let mut source = self_update::backends::manifest::ManifestSource::new(url);
    source.timeout(HTTP_TIMEOUT);
    source
        .get_releases()
        .map_err(|e| format!("cannot read the release manifest {url}: {e}"))
}

/// Picks the release to install: `wanted` exactly when given (older allowed:
/// the operator asked for it), else the newest one newer than `current`.
/// Only an artifact named for `target` is accepted, and it must carry a digest.
pub fn choose(
    releases: &[Release],
    current: &str,
    wanted: Option<&str>,
    target: &str,
) -> Result<Choice, String> {
    let release = match wanted {
        Some(wanted) => {
            let wanted = artifact::normalize(wanted);
            releases
                .iter()
                .find(|r| artifact::compare(r.version(), wanted) == Ok(std::cmp::Ordering::Equal))
                .ok_or_else(|| {
                    let listed: Vec<&str> = releases.iter().map(|r| r.version()).collect();
                    format!(
                        "version {wanted} is not in the manifest (it lists: {})",
                        if listed.is_empty() {
                            "nothing".to_string()
                        } else {
                            listed.join(", ")
                        }
                    )
                })?
        }
        None => {
            let mut newest: Option<&Release> = None;
            for r in releases {
                let newer = match newest {
                    None => true,
                    Some(n) => {
                        artifact::compare(r.version(), n.version())
                            == Ok(std::cmp::Ordering::Greater)
                    }
                };
                if newer {
                    newest = Some(r);
                }
            }
            match newest {
                Some(r)
                    if artifact::compare(r.version(), current)
                        == Ok(std::cmp::Ordering::Greater) =>
                {
                    r
                }
                other => {
                    return Ok(Choice::UpToDate {
                        newest: other.map(|r| r.version().to_string()),
                    })
                }
            }
        }
    };
    let asset_name = artifact::file_name(release.version(), target);
    let asset = release
        .assets()
        .iter()
        .find(|a| a.name() == asset_name)
        .ok_or_else(|| {
            let names: Vec<&str> = release.assets().iter().map(|a| a.name()).collect();
            format!(
                "release {} has no artifact for {target} (expected {asset_name}; it has: {})",
                release.version(),
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )
        })?;
    let digest = asset.digest().ok_or_else(|| {
        format!("the manifest lists no digest for {asset_name}; unverifiable artifacts are not installed")
    })?;
    let sha256 = super::verify::parse_digest(digest)
        .map_err(|why| format!("the manifest's digest for {asset_name}: {why}"))?;
    Ok(Choice::Install(Selected {
        version: release.version().to_string(),
        asset_name,
        url: asset.download_url().to_string(),
        sha256,
    }))
}

/// Downloads `url` to `dest` (created; the caller's staging directory).
pub fn download(url: &str, dest: &Path) -> Result<(), String> {
    let file = std::fs::File::create(dest)
        .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut download = self_update::Download::from_url(url);
    download
        .show_download_progress(false)
        .timeout(HTTP_TIMEOUT)
        .max_download_size(MAX_ARTIFACT_BYTES);
    download
        .download_to(&file)
        .map_err(|e| format!("cannot download {url}: {e}"))?;
    file.sync_all()
        .map_err(|e| format!("cannot write {}: {e}", dest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use self_update::backends::manifest::parse_manifest;

    const T: &str = "x86_64-unknown-linux-musl";
    const URL: &str = "http://127.0.0.1:9/releases/manifest.json";

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn manifest() -> String {
        serde_json::json!({
            "schema": 1,
            "releases": [
                {"version": "0.1.0", "assets": [
                    {"name": format!("volspike-0.1.0-{T}.tar.gz"), "url": format!("volspike-0.1.0-{T}.tar.gz"), "digest": digest('a')}
                ]},
                {"version": "0.1.10", "date": "2026-11-25T00:00:00Z", "assets": [
                    {"name": format!("volspike-0.1.10-{T}.tar.gz"), "url": format!("https://cdn.example/volspike-0.1.10-{T}.tar.gz"), "digest": digest('b')},
                    {"name": "volspike-0.1.10-aarch64-unknown-linux-musl.tar.gz", "url": "x", "digest": digest('c')}
                ]},
                {"version": "0.1.9", "assets": [
                    {"name": format!("volspike-0.1.9-{T}.tar.gz"), "url": "v/0.1.9.tgz"}
                ]},
                {"version": "0.2.0", "assets": [
                    {"name": "volspike-0.2.0-aarch64-unknown-linux-musl.tar.gz", "url": "y", "digest": digest('d')}
                ]},
                {"version": "nightly", "assets": []}
            ],
            "future_field": true
        })
        .to_string()
    }

    #[test]
    fn the_manifest_format_is_self_updates() {
        let releases = parse_manifest(&manifest(), URL).expect("parses");
        // The non-semver entry is skipped, the rest are kept.
        assert_eq!(releases.len(), 4);
        assert!(parse_manifest(r#"{"schema": 2, "releases": []}"#, URL).is_err());
        assert!(parse_manifest(r#"{"releases": []}"#, URL).is_err());
    }

    #[test]
    fn newest_release_for_our_target_with_its_digest() {
        let releases = parse_manifest(&manifest(), URL).expect("parses");
        // 0.2.0 exists only for aarch64: the newest for us is 0.1.10, and
        // semver order puts it above 0.1.9 although the text sorts lower.
        let choice = choose(&releases[..3], "0.1.0", None, T).expect("choice");
        assert_eq!(
            choice,
            Choice::Install(Selected {
                version: "0.1.10".into(),
                asset_name: format!("volspike-0.1.10-{T}.tar.gz"),
                url: format!("https://cdn.example/volspike-0.1.10-{T}.tar.gz"),
                sha256: "b".repeat(64),
            })
        );
        let err = choose(&releases, "0.1.0", None, T).expect_err("0.2.0 has no musl x86_64");
        assert!(
            err.contains("release 0.2.0 has no artifact for x86_64-unknown-linux-musl"),
            "{err}"
        );
    }

    #[test]
    fn each_target_picks_its_own_artifact_from_one_release() {
        let releases = parse_manifest(&manifest(), URL).expect("parses");
        // 0.1.10 lists both targets, as `deploy.sh release` writes it.
        let pick = |target: &str| match choose(&releases[..3], "0.1.0", None, target) {
            Ok(Choice::Install(s)) => (s.asset_name, s.sha256),
            other => panic!("{target}: {other:?}"),
        };
        assert_eq!(
            pick(T),
            (format!("volspike-0.1.10-{T}.tar.gz"), "b".repeat(64))
        );
        assert_eq!(
            pick("aarch64-unknown-linux-musl"),
            (
                "volspike-0.1.10-aarch64-unknown-linux-musl.tar.gz".to_string(),
                "c".repeat(64)
            )
        );
    }

    #[test]
    fn up_to_date_and_explicit_versions() {
        let releases = parse_manifest(&manifest(), URL).expect("parses");
        assert_eq!(
            choose(&releases[..3], "0.1.10", None, T),
            Ok(Choice::UpToDate {
                newest: Some("0.1.10".into())
            })
        );
        assert_eq!(
            choose(&releases[..3], "0.3.0", None, T),
            Ok(Choice::UpToDate {
                newest: Some("0.1.10".into())
            })
        );
        // An explicit older version is allowed (the operator asked for it),
        // and a relative URL resolves against the manifest's directory.
        match choose(&releases, "0.1.10", Some("v0.1.0"), T) {
            Ok(Choice::Install(s)) => {
                assert_eq!(s.version, "0.1.0");
                assert_eq!(
                    s.url,
                    format!("http://127.0.0.1:9/releases/volspike-0.1.0-{T}.tar.gz")
                );
            }
            other => panic!("{other:?}"),
        }
        let err = choose(&releases, "0.1.0", Some("0.1.9"), T).expect_err("no digest");
        assert!(err.contains("lists no digest"), "{err}");
        let err = choose(&releases, "0.1.0", Some("0.5.0"), T).expect_err("absent");
        assert!(
            err.contains("0.5.0 is not in the manifest (it lists: 0.1.0, 0.1.10, 0.1.9, 0.2.0)"),
            "{err}"
        );
    }
}
