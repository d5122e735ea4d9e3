//! open_interest: polls open interest of the liquid set every 30 s, posts
//! samples and alerts on 5 min / 15 min / 1 hour moves (jobs.md). The rules
//! are in [`detect`].

pub mod detect;
