//! The installed service's facts, written once: its paths and unit names
//! ([`paths`]), what systemd says about it ([`systemctl`]), whether it is up
//! ([`ready`]) and how its files are written and its binary swapped ([`fs`]);
//! [`child`] waits for a helper process with a deadline.
//! install, uninstall, self-update and status all use these.

pub mod child;
pub mod fs;
pub mod paths;
pub mod ready;
pub mod systemctl;
