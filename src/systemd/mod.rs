//! Everything systemd sees of the appliance: readiness and status
//! notifications, the watchdog fed by the liveness of critical loops, and
//! installing/uninstalling the service.

pub mod install;
pub mod listen_fds;
pub mod liveness;
pub mod notify;
pub mod uninstall;
pub mod units;
