//! Counts of HTTP requests by route template and status, for `/metrics`.
//!
//! Labels are route *templates* (`/funding/{symbol}`), never raw paths: a
//! client asking for a thousand different symbols (or garbage) must not
//! create a thousand time series. [`route_template`] maps every path onto a
//! short fixed list, so the label cardinality is bounded by
//! `templates × statuses` (a dozen statuses at most).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Every route template the server knows, plus `other` for the rest.
pub const TEMPLATES: &[&str] = &[
    "/",
    "/api/dashboard",
    "/watchlist.txt",
    "/metrics",
    "/health",
    "/funding",
    "/funding/health",
    "/funding/batch",
    "/funding/{symbol}",
    "other",
];

/// The template label for a request target (path and optional query).
pub fn route_template(url: &str) -> &'static str {
    let path = url.split_once('?').map_or(url, |(path, _)| path);
    match path {
        "/" | "/index.html" => "/",
        "/api/dashboard" => "/api/dashboard",
        "/watchlist.txt" => "/watchlist.txt",
        "/metrics" => "/metrics",
        "/health" => "/health",
        _ => match path.trim_end_matches('/') {
            "/funding" => "/funding",
            "/funding/health" => "/funding/health",
            "/funding/batch" => "/funding/batch",
            p if p
                .strip_prefix("/funding/")
                .is_some_and(|s| !s.is_empty() && !s.contains('/')) =>
            {
                "/funding/{symbol}"
            }
            _ => "other",
        },
    }
}

/// Requests answered, by (route template, status); cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RequestCounters {
    /// The counts. A std mutex: held for one map update, never across I/O.
    counts: Arc<Mutex<BTreeMap<(&'static str, u16), u64>>>,
}

impl RequestCounters {
    /// Counts one answered request.
    pub fn record(&self, template: &'static str, status: u16) {
        let mut counts = match self.counts.lock() {
            Ok(counts) => counts,
            Err(poisoned) => poisoned.into_inner(),
        };
        *counts.entry((template, status)).or_insert(0) += 1;
    }

    /// A copy of every count, ordered by template then status.
    pub fn snapshot(&self) -> BTreeMap<(&'static str, u16), u64> {
        match self.counts.lock() {
            Ok(counts) => counts.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_onto_a_bounded_set_of_templates() {
        assert_eq!(route_template("/"), "/");
        assert_eq!(route_template("/?x=1"), "/");
        assert_eq!(route_template("/funding"), "/funding");
        assert_eq!(route_template("/funding/"), "/funding");
        assert_eq!(route_template("/funding/BTCUSDT"), "/funding/{symbol}");
        assert_eq!(route_template("/funding/ethusdt?a=b"), "/funding/{symbol}");
        assert_eq!(route_template("/funding/batch?symbols=A"), "/funding/batch");
        assert_eq!(route_template("/funding/health"), "/funding/health");
        assert_eq!(route_template("/funding/a/b"), "other");
        assert_eq!(route_template("/etc/passwd"), "other");
        assert_eq!(route_template("/metrics"), "/metrics");
        for path in ["/", "/x", "/funding/X", "/health", "/api/dashboard"] {
            assert!(TEMPLATES.contains(&route_template(path)), "{path}");
        }
    }

    #[test]
    fn counts_by_template_and_status() {
        let counters = RequestCounters::default();
        counters.record("/health", 200);
        counters.record("/health", 200);
        counters.record("/health", 503);
        let snap = counters.snapshot();
        assert_eq!(snap[&("/health", 200)], 2);
        assert_eq!(snap[&("/health", 503)], 1);
    }
}
