//! Checking an artifact before anything is replaced: its SHA-256 digest, its
//! zipsign (ed25519ph) signature against the trusted keys, and what the binary
//! inside says when asked for its `version`.
//!
//! The signature is the same format self_update's `signatures` feature checks
//! (zipsign, the artifact's file name as context); we call zipsign's verifier
//! through self_update's re-export directly so a refusal can say *why*
//! (unsigned vs. signed by an unknown key) and *which* key matched.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use self_update::zipsign_api;
use sha2::{Digest as _, Sha256};

use super::artifact::{self, VersionLine};
use super::keys::{KeySet, TrustedKey};
use crate::service::child::{wait_within, Finished, WaitError};

/// How long the new binary's `version` may take.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);
/// The binary's name inside the artifact.
pub const BINARY_IN_ARCHIVE: &str = "volspike";

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Parses a manifest digest `sha256:<64 hex>` into its lowercase hex.
pub fn parse_digest(digest: &str) -> Result<String, String> {
    let digest = digest.trim();
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest `{digest}` is not `sha256:<hex>`"))?;
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(format!(
            "digest `{digest}` uses {algorithm}; releases are published with sha256"
        ));
    }
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("digest `{digest}` is not 64 hex digits"));
    }
    Ok(hex.to_ascii_lowercase())
}

/// Reads a `<artifact>.sha256` sidecar (`sha256sum` output or a bare digest)
/// and returns the digest listed for `artifact_name`.
pub fn digest_from_sums(text: &str, artifact_name: &str) -> Result<String, String> {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let hex = parts.next().unwrap_or("");
        let name = parts.next().map(|n| n.trim_start_matches('*'));
        let name_matches = match name {
            None => true,
            Some(n) => Path::new(n).file_name().and_then(|f| f.to_str()) == Some(artifact_name),
        };
        if name_matches {
            return parse_digest(&format!("sha256:{hex}"));
        }
    }
    Err(format!("lists no digest for {artifact_name}"))
}

/// Refuses the artifact unless its SHA-256 is `expected_hex`; `origin` says
/// where the expectation came from (the manifest, a sidecar file).
pub fn check_digest(path: &Path, expected_hex: &str, origin: &str) -> Result<(), String> {
    let actual = sha256_file(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if actual != expected_hex.to_ascii_lowercase() {
        return Err(format!(
            "digest mismatch: {origin} says sha256:{expected_hex}, the artifact is sha256:{actual} (tampered with or corrupted in transit)"
        ));
    }
    Ok(())
}

/// Checks the artifact's zipsign signature; returns the key that matched.
///
/// The context is the artifact's file name, as `zipsign sign tar` uses by
/// default and self_update checks: a signed artifact renamed to another
/// version does not verify.
pub fn check_signature<'k>(path: &Path, keys: &'k KeySet) -> Result<&'k TrustedKey, String> {
    if keys.keys.is_empty() {
        return Err("no trusted key to check the signature with".to_string());
    }
    let context = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: file name is not UTF-8", path.display()))?
        .to_string();
    if !context.ends_with(".tar.gz") {
        return Err(format!(
            "{context}: only signed .tar.gz artifacts are accepted"
        ));
    }
    let verifying = zipsign_api::verify::collect_keys(keys.keys.iter().map(|k| Ok(k.key)))
        .map_err(|e| format!("trusted keys unusable: {e}"))?;
    let mut file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match zipsign_api::verify::verify_tar(&mut file, &verifying, Some(context.as_bytes())) {
        Ok(index) => keys
            .keys
            .get(index)
            .ok_or_else(|| "zipsign named a key we did not give it".to_string()),
        Err(e) => {
            let detail = e.to_string();
            if detail.contains("no matching key") {
                Err(format!(
                    "signature does not match any trusted key (checked {})",
                    keys.describe()
                ))
            } else {
                Err(format!(
                    "artifact is not signed: no readable zipsign signature in {context} ({detail}); sign it with `deploy.sh release`"
                ))
            }
        }
    }
}

/// Unpacks the binary from the artifact into `dir`; returns its path.
pub fn extract_binary(archive: &Path, dir: &Path) -> Result<PathBuf, String> {
    self_update::Extract::from_source(archive)
        .extract_file(dir, BINARY_IN_ARCHIVE)
        .map_err(|e| {
            format!(
                "cannot unpack `{BINARY_IN_ARCHIVE}` from {}: {e}",
                archive.display()
            )
        })?;
    let binary = dir.join(BINARY_IN_ARCHIVE);
    let meta = std::fs::symlink_metadata(&binary)
        .map_err(|e| format!("artifact holds no `{BINARY_IN_ARCHIVE}` file: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(format!(
            "`{BINARY_IN_ARCHIVE}` in the artifact is not a regular file"
        ));
    }
    Ok(binary)
}

/// Runs `binary version` (with a timeout) and parses what it prints.
pub fn run_version(binary: &Path) -> Result<VersionLine, String> {
    use std::os::unix::fs::PermissionsExt;
    // Tar may not carry the execute bit; the binary must run either way.
    let _ = std::fs::set_permissions(binary, std::fs::Permissions::from_mode(0o755));
    // A just-written file can be briefly "busy" (ETXTBSY) while another
    // thread's fork still holds the write descriptor: retry a few times.
    let mut attempt = 0;
    let mut child = loop {
        match Command::new(binary)
            .arg("version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => break child,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 10 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("`{} version` does not run: {e}", binary.display())),
        }
    };
    let Finished {
        status,
        stdout,
        stderr,
    } = wait_within(&mut child, VERSION_TIMEOUT).map_err(|e| match e {
        WaitError::TimedOut => format!(
            "`{} version` did not finish within {} s",
            binary.display(),
            VERSION_TIMEOUT.as_secs()
        ),
        WaitError::Wait(e) => format!("waiting for `{} version`: {e}", binary.display()),
    })?;
    if !status.success() {
        return Err(format!(
            "`{} version` failed ({status}): {}",
            binary.display(),
            first_line(&stderr, &stdout)
        ));
    }
    artifact::parse_version_line(&stdout).ok_or_else(|| {
        format!(
            "`{} version` printed `{}`, not a volspike version line",
            binary.display(),
            first_line(&stdout, &stderr)
        )
    })
}

/// Refuses a binary whose own version/target differ from what the artifact
/// (or the manifest) promised.
pub fn check_version_line(
    line: &VersionLine,
    expected_version: &str,
    our_target: &str,
) -> Result<(), String> {
    if line.target != our_target {
        return Err(format!(
            "wrong target: the binary is built for {}, this machine runs {our_target}",
            line.target
        ));
    }
    if artifact::compare(&line.version, expected_version) != Ok(std::cmp::Ordering::Equal) {
        return Err(format!(
            "the artifact is named {expected_version} but its binary says {}",
            line.version
        ));
    }
    Ok(())
}

fn first_line<'a>(a: &'a str, b: &'a str) -> &'a str {
    a.lines()
        .chain(b.lines())
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no output)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::testkit::{key_pair, make_artifact, TempDir};
    use std::fs;

    const SCRIPT: &[u8] =
        b"#!/bin/sh\necho 'volspike 9.9.9 (x86_64-unknown-linux-musl, commit test, built today)'\n";

    fn trusting(seeds: &[u8]) -> KeySet {
        let mut set = KeySet::default();
        for s in seeds {
            set.add(format!("test key {s}"), key_pair(*s).1);
        }
        set
    }

    #[test]
    fn digests() {
        let dir = TempDir::new("digest");
        let path = dir.path().join("x");
        fs::write(&path, b"hello").expect("write");
        let hex = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(sha256_file(&path).expect("hash"), hex);
        assert_eq!(
            parse_digest(&format!("SHA256:{}", hex.to_uppercase())),
            Ok(hex.to_string())
        );
        assert!(parse_digest("md5:abc").expect_err("md5").contains("md5"));
        assert!(parse_digest(hex).is_err());
        assert!(check_digest(&path, hex, "the manifest").is_ok());
        let err = check_digest(&path, &"0".repeat(64), "the manifest").expect_err("mismatch");
        assert!(
            err.starts_with("digest mismatch: the manifest says sha256:000"),
            "{err}"
        );
        assert_eq!(
            digest_from_sums(
                &format!("{hex}  dist/volspike-1.0.0-t.tar.gz\n"),
                "volspike-1.0.0-t.tar.gz"
            ),
            Ok(hex.to_string())
        );
        assert_eq!(
            digest_from_sums(&format!("{hex}\n"), "any"),
            Ok(hex.to_string())
        );
        assert!(digest_from_sums(&format!("{hex}  other.tar.gz\n"), "x.tar.gz").is_err());
    }

    #[test]
    fn signed_by_a_trusted_key_passes_and_names_the_key() {
        let dir = TempDir::new("sig-ok");
        let name = artifact::file_name("9.9.9", crate::version::TARGET);
        let path = make_artifact(dir.path(), &name, SCRIPT, &[key_pair(1).0]);
        let keys = trusting(&[7, 1]);
        assert_eq!(
            check_signature(&path, &keys).expect("verifies").origin,
            "test key 1"
        );
    }

    #[test]
    fn wrong_key_unsigned_and_tampered_are_refused_with_the_reason() {
        let dir = TempDir::new("sig-bad");
        let name = artifact::file_name("9.9.9", crate::version::TARGET);
        let keys = trusting(&[1, 2]);

        let other = make_artifact(dir.path(), &name, SCRIPT, &[key_pair(3).0]);
        let err = check_signature(&other, &keys).expect_err("other key");
        assert_eq!(
            err,
            "signature does not match any trusted key (checked 2 keys: test key 1, test key 2)"
        );

        let unsigned = make_artifact(dir.path(), &name, SCRIPT, &[]);
        let err = check_signature(&unsigned, &keys).expect_err("unsigned");
        assert!(err.starts_with("artifact is not signed"), "{err}");

        let signed = make_artifact(dir.path(), &name, SCRIPT, &[key_pair(1).0]);
        let mut bytes = fs::read(&signed).expect("read");
        let middle = bytes.len() / 3;
        bytes[middle] ^= 0x01;
        fs::write(&signed, &bytes).expect("write");
        assert!(
            check_signature(&signed, &keys).is_err(),
            "a flipped byte must not verify"
        );

        // The file name is the signature's context: a renamed artifact fails.
        let good = make_artifact(dir.path(), &name, SCRIPT, &[key_pair(1).0]);
        let renamed = dir
            .path()
            .join(artifact::file_name("9.9.10", crate::version::TARGET));
        fs::rename(&good, &renamed).expect("rename");
        assert!(check_signature(&renamed, &keys)
            .expect_err("renamed")
            .contains("does not match"));
    }

    #[test]
    fn extract_and_ask_the_binary_its_version() {
        let dir = TempDir::new("extract");
        let name = artifact::file_name("9.9.9", crate::version::TARGET);
        let path = make_artifact(dir.path(), &name, SCRIPT, &[key_pair(1).0]);
        let out = dir.path().join("out");
        fs::create_dir(&out).expect("mkdir");
        let binary = extract_binary(&path, &out).expect("extract");
        let line = run_version(&binary).expect("runs");
        assert_eq!(line.version, "9.9.9");
        assert!(check_version_line(&line, "9.9.9", "x86_64-unknown-linux-musl").is_ok());
        let err = check_version_line(&line, "9.9.8", "x86_64-unknown-linux-musl").expect_err("v");
        assert!(
            err.contains("named 9.9.8 but its binary says 9.9.9"),
            "{err}"
        );
        let err = check_version_line(&line, "9.9.9", "aarch64-unknown-linux-musl").expect_err("t");
        assert!(err.starts_with("wrong target"), "{err}");

        fs::write(&binary, b"#!/bin/sh\necho garbage\n").expect("write");
        assert!(run_version(&binary)
            .expect_err("garbage")
            .contains("not a volspike version line"));
        fs::write(&binary, b"#!/bin/sh\necho boom >&2; exit 3\n").expect("write");
        assert!(run_version(&binary).expect_err("fails").contains("boom"));
    }
}
