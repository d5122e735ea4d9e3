//! The self-update library: release names and versions, the manifest, the
//! trusted keys, digest and signature checks, the restart outside the
//! service's cgroup and the bookkeeping in `update.json`. Each module is a
//! leaf; the command that strings them together is
//! [`crate::cmd::self_update`].

pub mod artifact;
pub mod keys;
pub mod lock;
pub mod manifest;
pub mod record;
pub mod restart;
#[cfg(test)]
pub(crate) mod testkit;
pub mod verify;
