//! volspike's integration tests: one test binary (`cargo test --test
//! integration`) holding one module per subject, linked once instead of once
//! per file. Run one module with `cargo test --test integration outbox::`,
//! one test by (part of) its name as usual.
//!
//! Every test shares this process with the others, two at a time (cargo's
//! default on this 2-core machine): no test may set an environment variable,
//! change the working directory or take a fixed port. Settings reach the
//! binary under test through its command's environment (`common::volspike()`
//! starts from an empty one), ports come from `common::free_port()` or the
//! fakes' port 0, directories from `common::TempDir` (never a name of their
//! own: every module shares one process id). The one process-wide change is
//! `hostile_clients` raising the soft descriptor limit to the hard one for
//! its 2,000 sockets: it only goes up, and the binaries other tests start
//! inherit it harmlessly (the descriptor limits a test depends on are set in
//! the child, `pre_exec`).
//!
//! Where a new test goes: in the module below whose subject it tests; a new
//! subject gets a new file here, declared in the group it belongs to.

// Helpers every module may use: the binary under test, temp dirs, free
// ports, a little HTTP; `common::jobs` (a job built in-process against the
// fakes), `common::market` (the appliance fed by the fake market),
// `common::cdp` (headless Chromium).
mod common;

// The command line as an operator meets it: `--help`, `check-config`,
// `status`, deploy.sh, and the first minutes of `run --local`.
mod cli;
mod deploy_sh;
mod first_run;
mod status;

// Running under systemd without systemd: sd_notify and the watchdog,
// socket activation.
mod socket_activation;
mod supervision;

// The HTTP server and what it serves: hostile clients, `/metrics`, the
// dashboard in a real browser.
mod dashboard;
mod hostile_clients;
mod metrics;

// Binance as the appliance sees it: the weight budget, the proxy, hostile
// answers, the funding WebSocket in the real binary, the kline streams.
mod binance_budget;
mod binance_proxy;
mod funding_stream;
mod hostile_binance;
mod kline_stream;

// One job each, built in-process with time driven by the test (files
// ending in `_binary` run the same job in the real binary).
mod funding_health;
mod liquid_universe;
mod open_interest;
mod telegram;
mod user_alerts;
mod volume_spike;
mod volume_spike_binary;
mod volume_stream_binary;

// Durable delivery to the backend: the outbox in-process, and across
// `kill -9` in the real binary.
mod outbox;
mod outbox_binary;
