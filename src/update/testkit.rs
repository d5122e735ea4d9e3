//! Throwaway keys, signed artifacts and temporary directories for the
//! unit tests (no root needed).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use self_update::zipsign_api::SigningKey;

pub use crate::testkit::TempDir;

/// A deterministic throwaway key pair: (signing key, raw public key).
pub fn key_pair(seed: u8) -> (SigningKey, [u8; 32]) {
    let signing = SigningKey::from_bytes(&[seed; 32]);
    let public = signing.verifying_key().to_bytes();
    (signing, public)
}

/// Writes `dir/name`: a .tar.gz holding `volspike` (mode 0755) with
/// `binary` as its content, signed by `keys` (none: unsigned).
pub fn make_artifact(dir: &Path, name: &str, binary: &[u8], keys: &[SigningKey]) -> PathBuf {
    let mut gz = Vec::new();
    {
        let encoder = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::default());
        let mut tar = tar::Builder::new(encoder);
        let mut header = tar::Header::new_gnu();
        header.set_size(binary.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, "volspike", binary)
            .expect("tar append");
        tar.into_inner().expect("tar").finish().expect("gzip");
    }
    let path = dir.join(name);
    if keys.is_empty() {
        std::fs::write(&path, &gz).expect("write artifact");
    } else {
        let mut out = std::fs::File::create(&path).expect("create artifact");
        self_update::zipsign_api::sign::copy_and_sign_tar(
            &mut Cursor::new(gz),
            &mut out,
            keys,
            Some(name.as_bytes()),
        )
        .expect("sign");
    }
    path
}
