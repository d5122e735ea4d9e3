//! What install and its actions read of the machine: files that may not
//! exist yet, and the service user in `/etc/passwd`.

use std::fs;
use std::io;
use std::path::Path;

use anyhow::anyhow;

use crate::service::paths::{Layout, USER};

/// Reads a file; `Ok(None)` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot read {}", path.display()))),
    }
}

/// Reads a text file; `Ok(None)` when it does not exist.
pub(crate) fn read_text(path: &Path) -> anyhow::Result<Option<String>> {
    read_optional(path)?
        .map(|bytes| {
            String::from_utf8(bytes).map_err(|_| anyhow!("{} is not UTF-8 text", path.display()))
        })
        .transpose()
}

/// The uid and gid of `name` in an `/etc/passwd` text.
pub fn lookup_user(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// The service user's uid and gid, when it exists on the machine.
pub(crate) fn service_user(layout: &Layout) -> anyhow::Result<Option<(u32, u32)>> {
    let passwd = layout.path("/etc/passwd");
    Ok(read_text(&passwd)?.and_then(|text| lookup_user(&text, USER)))
}
