//! user_alerts: users' price, funding and open-interest cross alerts, checked
//! every 30 s for pro/elite and every 5 minutes for free (jobs.md). The rule
//! is in [`cross`].

pub mod cross;
