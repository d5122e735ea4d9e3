//! Everything systemd sees of the appliance: readiness and status
//! notifications, the watchdog fed by the liveness of critical loops, and
//! the unit files (`install` and `uninstall` themselves are in [`crate::cmd`]).

pub mod listen_fds;
pub mod liveness;
pub mod notify;
pub mod units;
