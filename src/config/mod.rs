//! Configuration: read once at start from the environment and an env file,
//! typed and validated in one pass that collects every problem.
//!
//! - [`settings`]: every setting declared once (names, type, default, help);
//! - [`sources`]: the environment and the env file, and which wins;
//! - `reader`, `validate`: typed reading and [`Config::from_sources`];
//! - [`display`]: `check-config`'s listing; [`template`]: env files written;
//!   `docs`: README's settings table; [`legacy`]: the old scripts' names.

pub mod display;
pub mod envfile;
pub mod legacy;
pub mod settings;
pub mod sources;
pub mod template;

#[cfg(test)]
mod docs;
mod reader;
mod types;
mod validate;

pub use display::effective;
pub use sources::{Origin, Sources};
pub use types::{
    BackendConfig, BinanceConfig, Config, Effective, FundingConfig, JobThresholds, Mode,
    OpenInterestConfig, Report, Secret, TelegramConfig, UserAlertsConfig,
};

#[cfg(test)]
mod tests;
