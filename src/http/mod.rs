//! The appliance's one HTTP server: `/health`, the funding API, the
//! dashboard (`/`, `/api/dashboard`, `/watchlist.txt`) and `/metrics`.
//!
//! Handlers are plain functions from a request to a [`Reply`], so they are
//! unit-tested without sockets; [`router`] says which one answers a path;
//! [`server`] owns the sockets, the bounds on connections, heads, time and
//! memory, the handler threads and the liveness beat of the "http" critical
//! loop (its accept loop). The shared types are leaves ([`reply`],
//! [`context`]): handlers import them, never this file, so no child imports
//! its parent back.

pub mod context;
pub mod dashboard;
pub mod funding;
pub mod health;
pub mod metrics;
pub mod reply;
pub mod requests;
pub mod router;
pub mod server;

pub use context::HttpContext;
pub use reply::Reply;
pub use router::{route, MAX_URL};
pub use server::limits::MAX_QUEUED;
pub use server::HttpServer;
