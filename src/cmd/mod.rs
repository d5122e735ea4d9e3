//! Every command of `volspike`, one module each. A command owns its clap
//! `Args` and a `run(args) -> anyhow::Result<ExitCode>`; [`crate::cli`]
//! only assembles them. An `Err` is a failure (exit 1) that `cli` prints
//! as `volspike <command>: <error with its context>`; every other outcome
//! is an [`exit::ExitCode`] the command chose (and explained) itself.

pub mod check_config;
pub mod exit;
pub mod install;
pub mod outbox;
pub mod run;
pub mod self_update;
pub mod status;
pub mod uninstall;
