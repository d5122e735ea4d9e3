//! volume_spike: hourly quote-volume spikes over the whole universe, on the
//! 5-minute wall clock (jobs.md). The rules are in [`detect`].

pub mod detect;
