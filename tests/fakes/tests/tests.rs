//! The fakes' own tests: one test binary (`cargo test -p volspike-fakes
//! --test fakes`), one module per fake, as in volspike's `tests/tests.rs`.
//! A test for a new fake, or a new failure mode, goes in its fake's module.

// A tiny std-only HTTP/1.1 client and a WebSocket client.
mod common;

// The fake VolSpike backend: recording, default answers, failures, auth.
mod backend;
// The fake Binance REST API: shapes, weights, failures, concurrency.
mod binance_rest;
// The fake Binance WebSocket: frames, legacy path, drop/stall/garbage, pings.
mod binance_ws;
// The `fake-binance` and `fake-backend` executables.
mod bins;
