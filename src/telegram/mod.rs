//! Telegram: the Bot API client ([`bot_api`]), the public channel preview
//! parser ([`preview`]) and the alert notifier ([`notifier`]).
//!
//! Both ingestion sources produce the same [`Channel`] and [`Post`] values, so
//! the telegram job (`crate::jobs::telegram`) does not care which one read a
//! channel. Every HTTP call is blocking (ureq) and meant to run inside
//! `tokio::task::spawn_blocking`.

pub mod bot_api;
pub mod notifier;
pub mod preview;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Category of a channel that the map does not list.
pub const DEFAULT_CATEGORY: &str = "general";

/// Longest pause a `retry_after` may impose: a buggy or hostile answer must
/// not silence the job for days.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A channel as a source describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Bot API chat id, e.g. `-1001234567890`.
    pub id: i64,
    /// Public username without `@`; `None` for a private channel.
    pub username: Option<String>,
    /// Display title.
    pub title: String,
}

/// Kind of media a post carries: the backend's own enum, so a post maps
/// onto the ingest payload without a translation table.
pub use crate::backend::MediaType as Media;

/// One channel message, whichever source read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    /// Message id within the channel (grows with time).
    pub id: i64,
    /// Text, or the caption of a media post; `None` when there is none.
    pub text: Option<String>,
    /// When it was posted.
    pub date: SystemTime,
    /// The author's signature, when the channel shows signatures.
    pub sender_name: Option<String>,
    /// View count; the Bot API does not report it (`None`).
    pub views: Option<u64>,
    /// Forward count; neither source reports it today (`None`).
    pub forwards: Option<u64>,
    /// The media it carries, if any.
    pub media: Option<Media>,
    /// Links from entities (`url`, `text_link`) and link previews, first
    /// occurrence order, without duplicates.
    pub links: Vec<String>,
}

/// Why a Telegram call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TelegramError {
    /// A flood limit: nothing may be sent to Telegram before `retry_after`.
    #[error("Telegram flood limit: retry after {}s", retry_after.as_secs())]
    RateLimited {
        /// How long Telegram asked us to wait (capped at [`MAX_RETRY_AFTER`]).
        retry_after: Duration,
    },
    /// The Bot API answered `ok: false` (or the preview site a 4xx/5xx).
    #[error("Telegram answered {code}: {description}")]
    Api {
        /// `error_code` (the HTTP status).
        code: u16,
        /// Telegram's description.
        description: String,
    },
    /// No answer: DNS, connection, TLS, timeout, or an unreadable body.
    #[error("Telegram unreachable: {0}")]
    Transport(String),
    /// An answer we cannot read: not the JSON or HTML structure we know.
    #[error("unexpected Telegram answer: {0}")]
    Unexpected(String),
}

/// Channel → news category (docs/backend.md): `marketfeed` → `macro`,
/// `watcherguru` → `crypto`, anything else `general`, all configurable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryMap {
    /// Lower-case username (or numeric id as text) → category.
    map: BTreeMap<String, String>,
}

impl CategoryMap {
    /// A map from `TELEGRAM_CATEGORIES` (keys already lower-case).
    pub fn new(map: BTreeMap<String, String>) -> CategoryMap {
        CategoryMap { map }
    }

    /// The category of a channel: by username (case-insensitive), else by
    /// numeric id, else [`DEFAULT_CATEGORY`].
    pub fn category(&self, channel: &Channel) -> String {
        channel
            .username
            .as_deref()
            .and_then(|u| self.map.get(&u.to_ascii_lowercase()))
            .or_else(|| self.map.get(&channel.id.to_string()))
            .cloned()
            .unwrap_or_else(|| DEFAULT_CATEGORY.to_string())
    }
}

/// Appends `link` unless it is already there (order of first occurrence).
fn push_link(links: &mut Vec<String>, link: &str) {
    let link = link.trim();
    if !link.is_empty() && !links.iter().any(|l| l == link) {
        links.push(link.to_string());
    }
}

/// A short, token-free excerpt of a remote answer for logs and errors.
fn excerpt(text: &str, secret: Option<&str>) -> String {
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    match secret.filter(|s| !s.is_empty()) {
        Some(secret) => short.replace(secret, "****"),
        None => short,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A channel for tests (also used by the telegram job's rules tests).
    pub(crate) fn channel(id: i64, username: Option<&str>) -> Channel {
        Channel {
            id,
            username: username.map(str::to_string),
            title: "t".into(),
        }
    }

    #[test]
    fn category_map_defaults_and_overrides() {
        let map = CategoryMap::new(BTreeMap::from([
            ("marketfeed".to_string(), "macro".to_string()),
            ("watcherguru".to_string(), "crypto".to_string()),
            ("-1009".to_string(), "private".to_string()),
        ]));
        assert_eq!(map.category(&channel(-1001, Some("MarketFeed"))), "macro");
        assert_eq!(map.category(&channel(-1002, Some("watcherguru"))), "crypto");
        assert_eq!(map.category(&channel(-1003, Some("someone"))), "general");
        assert_eq!(map.category(&channel(-1009, None)), "private");
        assert_eq!(map.category(&channel(-1004, None)), "general");
    }

    #[test]
    fn links_are_deduplicated_in_order() {
        let mut links = Vec::new();
        for l in ["https://a", " https://b ", "https://a", ""] {
            push_link(&mut links, l);
        }
        assert_eq!(links, ["https://a", "https://b"]);
    }

    #[test]
    fn excerpts_hide_the_token() {
        assert_eq!(
            excerpt("bad url /bot123:abc/getUpdates", Some("123:abc")),
            "bad url /bot****/getUpdates"
        );
        assert_eq!(excerpt(&"x".repeat(400), None).chars().count(), 301);
    }
}
