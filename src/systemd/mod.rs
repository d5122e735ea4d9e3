//! Everything systemd sees of the appliance: readiness and status
//! notifications, and the watchdog fed by the liveness of critical loops.

pub mod liveness;
pub mod notify;
