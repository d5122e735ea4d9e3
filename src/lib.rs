//! volspike: one static binary that watches Binance USDⓈ-M futures and
//! feeds the VolSpike backend, supervised by systemd.
//!
//! Start at [`cli`] (the command line), [`cmd`] (one module per command) and
//! [`cmd::run`] (how `volspike run` wires the loops together); each folder is one concern.

pub mod alert_latency;
pub mod backend;
pub mod backoff;
pub mod binance;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod http;
pub mod jobs;
pub mod logging;
pub mod net;
pub(crate) mod outage;
pub mod service;
pub mod shutdown;
pub mod state;
pub mod systemd;
pub mod telegram;
#[cfg(test)]
pub(crate) mod testkit;
pub mod update;
pub mod version;
