//! liquid_universe: every 5 minutes, the universe symbols above $100M of 24h
//! quote volume (with hysteresis), posted whole to the backend and handed to
//! open_interest in-process (jobs.md). The selection is in [`select`].

pub mod select;
