//! volspike: one static binary that watches Binance USDⓈ-M futures and
//! feeds the VolSpike backend, supervised by systemd.
//!
//! Start at [`cli`] (the commands) and [`run`] (how `volspike run` wires the
//! loops together); each folder is one concern.

pub mod alert_latency;
pub mod backend;
pub mod backoff;
pub mod binance;
pub mod check_config;
pub mod cli;
pub mod clock;
pub mod config;
pub mod http;
pub mod jobs;
pub mod logging;
pub mod net;
pub(crate) mod outage;
pub mod run;
pub mod service;
pub mod shutdown;
pub mod state;
pub mod status;
pub mod systemd;
pub mod telegram;
#[cfg(test)]
pub(crate) mod testkit;
pub mod update;
pub mod version;
