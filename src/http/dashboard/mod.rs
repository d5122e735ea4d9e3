//! The dashboard (was the Streamlit app on :8501), on the appliance's own
//! HTTP server:
//!
//! - `GET /` → one self-contained page (HTML, CSS and a little JS in
//!   `page.html`, compiled into the binary; nothing from a CDN, which the
//!   droplet may not reach). The page polls `/api/dashboard` every few
//!   seconds and redraws in place.
//! - `GET /api/dashboard` → the market table (see [`market`]), the
//!   appliance's `/health` view, build info and the last alerts.
//! - `GET /watchlist.txt` → the TradingView watchlist of the table's symbols.

pub mod market;

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use serde::Serialize;

use super::context::HttpContext;
use super::health::{self, HealthBody};
use super::reply::Reply;
use crate::backend::RecentAlert;
use crate::binance::frames::valid_symbol;
use crate::clock::{iso, unix_ms};

/// The page, as compiled in.
const PAGE: &str = include_str!("page.html");
/// Alerts the page lists (newest first).
pub const ALERTS_SHOWN: usize = 20;

/// Build facts for the page header.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Build {
    /// Crate version.
    pub version: &'static str,
    /// Git commit.
    pub commit: &'static str,
    /// Target triple.
    pub target: &'static str,
    /// Build date.
    pub built: &'static str,
}

/// The `/api/dashboard` body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardBody {
    /// When this was built (ISO): the page measures "ago" against it, not
    /// against the phone's clock.
    pub generated_at: String,
    /// What is running.
    pub build: Build,
    /// The table.
    pub market: market::MarketView,
    /// The `/health` view: jobs, loops, WebSocket, backlog, weight.
    pub appliance: HealthBody,
    /// The last alerts sent, newest first.
    pub alerts: Vec<AlertView>,
}

/// One recent alert as the page lists it, with links to its chart.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    /// When it was enqueued (ISO).
    pub at: String,
    /// What it is (`volume_alert`, `oi_alert`, …).
    pub kind: String,
    /// One-line description.
    pub label: String,
    /// The alert's symbol, when it names a valid one.
    pub symbol: Option<String>,
    /// TradingView chart of the perpetual.
    pub tradingview_url: Option<String>,
    /// Binance futures trading page.
    pub binance_url: Option<String>,
}

impl AlertView {
    /// The view of `alert`. Links are only built from a symbol that passes
    /// the stream's symbol check (upper-case letters, digits, `_`, `-`), so
    /// nothing from a body reaches a URL unvetted.
    pub fn of(alert: &RecentAlert) -> AlertView {
        let symbol = alert
            .body
            .get("symbol")
            .and_then(|s| s.as_str())
            .filter(|s| valid_symbol(s))
            .map(str::to_string);
        AlertView {
            at: alert.at.clone(),
            kind: alert.kind.as_str().to_string(),
            label: alert.label.clone(),
            tradingview_url: symbol
                .as_ref()
                .map(|s| format!("https://www.tradingview.com/chart/?symbol=BINANCE%3A{s}.P")),
            binance_url: symbol
                .as_ref()
                .map(|s| format!("https://www.binance.com/en/futures/{s}")),
            symbol,
        }
    }
}

/// `GET /`.
pub fn page() -> Reply {
    // One shared copy: every request then clones an Arc, not 20 KB.
    static BODY: OnceLock<Arc<[u8]>> = OnceLock::new();
    Reply {
        status: 200,
        content_type: "text/html; charset=utf-8",
        body: BODY.get_or_init(|| PAGE.as_bytes().into()).clone(),
    }
}

/// The dashboard's address for a person to open, from the listen address:
/// a wildcard address (`0.0.0.0`, `[::]`) is reachable on loopback.
pub fn url(listen: std::net::SocketAddr) -> String {
    format!("http://{}/", crate::service::ready::connectable(listen))
}

/// The market table as of `now`.
pub fn market_view(ctx: &HttpContext, now: SystemTime) -> market::MarketView {
    let universe: Option<BTreeSet<String>> = ctx
        .universe
        .as_ref()
        .and_then(|u| u.peek())
        .map(|list| list.iter().map(|s| s.symbol.clone()).collect());
    market::view(
        &ctx.funding.cache.all(),
        universe.as_ref(),
        unix_ms(now),
        ctx.funding.stale_after.as_millis() as u64,
    )
}

/// `GET /api/dashboard`.
pub fn api(ctx: &HttpContext, now: SystemTime) -> Reply {
    let (appliance, _) = health::body(ctx, now);
    let mut alerts = ctx
        .outbox
        .as_ref()
        .map(|outbox| outbox.recent())
        .unwrap_or_default();
    alerts.reverse();
    alerts.truncate(ALERTS_SHOWN);
    let alerts = alerts.iter().map(AlertView::of).collect();
    let body = DashboardBody {
        generated_at: iso(now),
        build: Build {
            version: crate::version::VERSION,
            commit: crate::version::COMMIT,
            target: crate::version::TARGET,
            built: crate::version::BUILD_DATE,
        },
        market: market_view(ctx, now),
        appliance,
        alerts,
    };
    Reply::json(200, &body)
}

/// `GET /watchlist.txt`: the page's download link (`download` attribute
/// names the file, so no Content-Disposition header is needed).
pub fn watchlist(ctx: &HttpContext, now: SystemTime) -> Reply {
    let text = market::watchlist(&market_view(ctx, now).rows);
    Reply {
        status: 200,
        content_type: "text/plain; charset=utf-8",
        body: text.into_bytes().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::frames::{MarkValues, TickerValues, Update, Values};

    #[test]
    fn the_page_is_self_contained() {
        let reply = page();
        assert_eq!(reply.status, 200);
        let html = std::str::from_utf8(&reply.body).expect("utf-8");
        assert!(html.contains("/api/dashboard"));
        assert!(html.contains("/watchlist.txt"));
        // Nothing from elsewhere: no absolute URL in src/href, no imports.
        for needle in ["src=\"http", "href=\"http", "@import", "//cdn", "url(http"] {
            assert!(!html.contains(needle), "page loads {needle}");
        }
        assert!(html.contains("name=\"viewport\""), "readable on a phone");
    }

    #[test]
    fn dashboard_url_for_people() {
        let url = |a: &str| super::url(a.parse().expect("addr"));
        assert_eq!(url("127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/");
        assert_eq!(url("10.0.0.5:80"), "http://10.0.0.5:80/");
    }

    #[test]
    fn alerts_link_to_their_chart_only_with_a_valid_symbol() {
        let alert = |symbol: &str| RecentAlert {
            at: "2026-01-01T00:00:00Z".into(),
            kind: crate::backend::Kind::VolumeAlert,
            label: "x".into(),
            body: serde_json::json!({ "symbol": symbol }),
        };
        let view = AlertView::of(&alert("BTCUSDT"));
        assert_eq!(view.symbol.as_deref(), Some("BTCUSDT"));
        assert_eq!(
            view.tradingview_url.as_deref(),
            Some("https://www.tradingview.com/chart/?symbol=BINANCE%3ABTCUSDT.P")
        );
        assert_eq!(
            view.binance_url.as_deref(),
            Some("https://www.binance.com/en/futures/BTCUSDT")
        );
        let view = AlertView::of(&alert("javascript:alert(1)"));
        assert_eq!(view.symbol, None);
        assert_eq!(view.tradingview_url, None);
    }

    #[test]
    fn api_and_watchlist_from_the_cache() {
        let ctx = crate::http::context::tests::ctx();
        let now = SystemTime::now();
        let now_ms = unix_ms(now);
        let updates: Vec<Update> = [("AAAUSDT", 2e8, 0.0005), ("BBBUSDT", 3e8, -0.0005)]
            .iter()
            .flat_map(|(s, v, r)| {
                [
                    Update {
                        symbol: s.to_string(),
                        event_time: None,
                        values: Values::Mark(MarkValues {
                            mark_price: Some(1.0),
                            index_price: None,
                            funding_rate: Some(*r),
                            next_funding_time: None,
                        }),
                    },
                    Update {
                        symbol: s.to_string(),
                        event_time: None,
                        values: Values::Ticker(TickerValues {
                            last_price: Some(1.0),
                            quote_volume: Some(*v),
                            price_change_percent: None,
                        }),
                    },
                ]
            })
            .collect();
        ctx.funding.cache.apply(&updates, now_ms);
        let reply = api(&ctx, now);
        let json: serde_json::Value = serde_json::from_slice(&reply.body).expect("json");
        assert_eq!(json["market"]["rows"][0]["symbol"], "BBBUSDT");
        assert_eq!(json["market"]["rows"][0]["tone"], "negative");
        assert_eq!(json["market"]["rows"][1]["fundingText"], "+0.050%");
        assert_eq!(json["appliance"]["version"], crate::version::VERSION);
        assert_eq!(json["build"]["commit"], crate::version::COMMIT);
        let reply = watchlist(&ctx, now);
        assert_eq!(
            std::str::from_utf8(&reply.body).ok(),
            Some("BINANCE:BBBUSDT.P\nBINANCE:AAAUSDT.P\n")
        );
    }
}
