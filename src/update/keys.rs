//! The public keys a release must be signed with.
//!
//! The project's release keys are built into the binary (so a compromised
//! file host cannot swap them), and root may add more in
//! `/etc/volspike/release-keys.pub`: for a key rotation, a private build, or a
//! test rig signing its own artifacts. That file is honoured only when root
//! owns it and nobody else can write it: otherwise any local user able to
//! write it could make the updater trust their own binaries.
//!
//! Key formats (both are what `zipsign gen-key` produces or derives):
//! - raw: one or more 32-byte ed25519 public keys back to back
//!   (`cat a.pub b.pub > release-keys.pub`);
//! - text: one key per line as 64 hex digits (`xxd -p -c32 a.pub`), `#`
//!   comments and blank lines allowed.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use self_update::zipsign_api::{VerifyingKey, PUBLIC_KEY_LENGTH};

/// The optional root-owned file of extra trusted keys.
pub const KEYS_FILE: &str = "/etc/volspike/release-keys.pub";

/// The project's release keys, compiled in. Rotation: sign releases with the
/// old and the new key for a while (zipsign stores several signatures), ship
/// a binary that embeds the new key, then drop the old one.
const BUILT_IN: &[(&str, [u8; PUBLIC_KEY_LENGTH])] = &[(
    "built-in volspike-release-1",
    *include_bytes!("../../packaging/release-keys/volspike-release-1.pub"),
)];

/// One key the updater trusts, with where it came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// `built-in volspike-release-1` or `/etc/volspike/release-keys.pub #2`.
    pub origin: String,
    /// The raw ed25519 public key.
    pub key: [u8; PUBLIC_KEY_LENGTH],
}

/// The trusted keys and what was said while loading them.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// Every usable key, built-in ones first.
    pub keys: Vec<TrustedKey>,
    /// Why a keys file or a key in it was ignored.
    pub warnings: Vec<String>,
}

impl KeySet {
    /// The built-in keys plus those of `keys_file` when it passes the checks.
    pub fn load(keys_file: &Path) -> KeySet {
        let mut set = KeySet::built_in();
        match read_keys_file(keys_file) {
            Ok(None) => {}
            Ok(Some(keys)) => {
                for (i, key) in keys.into_iter().enumerate() {
                    set.add(format!("{} #{}", keys_file.display(), i + 1), key);
                }
            }
            Err(why) => set.warnings.push(why),
        }
        set
    }

    /// Only the keys compiled into this binary.
    pub fn built_in() -> KeySet {
        let mut set = KeySet::default();
        for (origin, key) in BUILT_IN {
            set.add((*origin).to_string(), *key);
        }
        set
    }

    /// Adds `key` unless it is not a valid ed25519 point (then warns).
    pub fn add(&mut self, origin: String, key: [u8; PUBLIC_KEY_LENGTH]) {
        if VerifyingKey::from_bytes(&key).is_err() {
            self.warnings
                .push(format!("ignoring {origin}: not a valid ed25519 public key"));
            return;
        }
        if self.keys.iter().any(|k| k.key == key) {
            return;
        }
        self.keys.push(TrustedKey { origin, key });
    }

    /// `2 keys: built-in volspike-release-1, /etc/volspike/release-keys.pub #1`.
    pub fn describe(&self) -> String {
        let origins: Vec<&str> = self.keys.iter().map(|k| k.origin.as_str()).collect();
        format!(
            "{} key{}: {}",
            self.keys.len(),
            if self.keys.len() == 1 { "" } else { "s" },
            origins.join(", ")
        )
    }
}

/// Reads the keys file: `Ok(None)` when it does not exist, `Err(warning)`
/// when it exists but is not trustworthy or not readable as keys.
pub fn read_keys_file(path: &Path) -> Result<Option<Vec<[u8; PUBLIC_KEY_LENGTH]>>, String> {
    // symlink_metadata: a symlink's own owner says nothing about its target,
    // and following it would let whoever controls the link choose the file.
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("ignoring {}: {e}", path.display())),
    };
    if !meta.file_type().is_file() {
        return Err(format!(
            "ignoring {}: not a regular file (a symlink or directory is not trusted)",
            path.display()
        ));
    }
    check_owner_and_mode(meta.uid(), meta.mode())
        .map_err(|why| format!("ignoring {}: {why}", path.display()))?;
    let bytes = fs::read(path).map_err(|e| format!("ignoring {}: {e}", path.display()))?;
    parse_keys(&bytes)
        .map(Some)
        .map_err(|why| format!("ignoring {}: {why}", path.display()))
}

/// The trust rule for the keys file: owned by root, not writable by group or
/// others.
pub fn check_owner_and_mode(uid: u32, mode: u32) -> Result<(), String> {
    if uid != 0 {
        return Err(format!(
            "owned by uid {uid}, must be owned by root (chown root:root)"
        ));
    }
    if mode & 0o022 != 0 {
        return Err(format!(
            "mode {:04o} lets group or others write it (chmod 644)",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Parses raw concatenated keys or hex text lines (see the module docs).
pub fn parse_keys(bytes: &[u8]) -> Result<Vec<[u8; PUBLIC_KEY_LENGTH]>, String> {
    let is_text = bytes
        .iter()
        .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    let keys = if is_text {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            keys.push(parse_hex_key(line).ok_or_else(|| {
                format!(
                    "line {}: expected 64 hex digits (one ed25519 public key)",
                    n + 1
                )
            })?);
        }
        keys
    } else {
        if bytes.len() % PUBLIC_KEY_LENGTH != 0 {
            return Err(format!(
                "{} bytes is not a whole number of {PUBLIC_KEY_LENGTH}-byte raw keys",
                bytes.len()
            ));
        }
        bytes
            .chunks_exact(PUBLIC_KEY_LENGTH)
            .map(|c| {
                let mut key = [0u8; PUBLIC_KEY_LENGTH];
                key.copy_from_slice(c);
                key
            })
            .collect()
    };
    if keys.is_empty() {
        return Err("holds no key".to_string());
    }
    Ok(keys)
}

fn parse_hex_key(s: &str) -> Option<[u8; PUBLIC_KEY_LENGTH]> {
    if s.len() != PUBLIC_KEY_LENGTH * 2 || !s.is_ascii() {
        return None;
    }
    let mut key = [0u8; PUBLIC_KEY_LENGTH];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::testkit::{key_pair, TempDir};

    #[test]
    fn the_built_in_key_is_a_valid_key() {
        let set = KeySet::built_in();
        assert_eq!(set.keys.len(), BUILT_IN.len());
        assert!(set.warnings.is_empty(), "{:?}", set.warnings);
        assert!(set.describe().starts_with("1 key: built-in"));
    }

    #[test]
    fn owner_and_mode_rules() {
        assert!(check_owner_and_mode(0, 0o100644).is_ok());
        assert!(check_owner_and_mode(0, 0o100600).is_ok());
        assert!(check_owner_and_mode(0, 0o100444).is_ok());
        let err = check_owner_and_mode(1000, 0o100644).expect_err("non-root owner");
        assert!(err.contains("uid 1000") && err.contains("root"), "{err}");
        let err = check_owner_and_mode(0, 0o100664).expect_err("group-writable");
        assert!(err.contains("0664"), "{err}");
        assert!(check_owner_and_mode(0, 0o100646).is_err());
    }

    #[test]
    fn raw_and_hex_formats() {
        let (_, a) = key_pair(1);
        let (_, b) = key_pair(2);
        let mut raw = a.to_vec();
        raw.extend_from_slice(&b);
        assert_eq!(parse_keys(&raw), Ok(vec![a, b]));
        let hex: String = a.iter().map(|x| format!("{x:02x}")).collect();
        let text = format!("# test key\n\n{hex}  # the first\n");
        assert_eq!(parse_keys(text.as_bytes()), Ok(vec![a]));
        assert!(parse_keys(&raw[..40]).is_err());
        assert!(parse_keys(b"# nothing\n").is_err());
        let err = parse_keys(b"abcd\n").expect_err("short hex");
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn keys_file_is_read_only_when_trustworthy() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("keys");
        let path = dir.path().join("release-keys.pub");
        // Missing: nothing, no warning.
        assert_eq!(read_keys_file(&path), Ok(None));
        let (_, public) = key_pair(3);
        fs::write(&path, public).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
        let err = read_keys_file(&path).expect_err("world-writable");
        assert!(err.contains("ignoring") && err.contains("write"), "{err}");
        let set = KeySet::load(&path);
        assert_eq!(
            set.keys.len(),
            BUILT_IN.len(),
            "untrusted file adds nothing"
        );
        assert_eq!(set.warnings.len(), 1);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        // The owner rule needs root to observe with a real file; without root
        // the file is ours, not root's, and must be ignored.
        let is_root = fs::metadata(dir.path())
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let set = KeySet::load(&path);
        if is_root {
            assert_eq!(set.keys.len(), BUILT_IN.len() + 1, "{:?}", set.warnings);
            assert!(set.describe().contains("release-keys.pub #1"));
        } else {
            assert_eq!(set.keys.len(), BUILT_IN.len());
            assert!(set.warnings[0].contains("must be owned by root"));
        }
        // A symlink is not followed.
        let link = dir.path().join("link.pub");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        assert!(read_keys_file(&link)
            .expect_err("symlink")
            .contains("symlink"));
    }

    #[test]
    fn an_invalid_point_is_ignored_with_a_warning() {
        let mut set = KeySet::default();
        // Not every 32-byte string is a curve point; this one is not.
        let mut bad = [0u8; PUBLIC_KEY_LENGTH];
        bad[0] = 2;
        bad[31] = 0x80;
        set.add("test".into(), bad);
        if set.keys.is_empty() {
            assert_eq!(set.warnings.len(), 1);
        }
        // Duplicates collapse.
        let (_, k) = key_pair(4);
        set.add("one".into(), k);
        set.add("two".into(), k);
        assert_eq!(set.keys.iter().filter(|t| t.key == k).count(), 1);
    }
}
