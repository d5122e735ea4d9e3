//! telegram's rules, pure so they are tested without Telegram or a backend:
//! where a channel is read from and for how long that holds, which Bot API
//! posts are new (the latest version of each, never one already sent),
//! whether an older preview page is needed to close a gap, what a flood
//! limit does to the tick, and the backend's message of a post. The job in
//! [`super`] makes the calls and hands their answers here.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use crate::backend::TelegramMessage;
use crate::clock::iso;
use crate::telegram::bot_api::ChannelPost;
use crate::telegram::{Channel, Post, TelegramError};

/// How often each channel's source (bot or preview) is checked again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(600);

/// Where a configured channel is read from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Route {
    /// Its posts reach the bot's `getUpdates`.
    Bot,
    /// Read from the preview page of this username.
    Preview(String),
    /// Neither: why, for the log.
    Unreadable(String),
}

/// A flood limit ends the tick at once; the job pauses for this long.
#[derive(Debug, PartialEq)]
pub(crate) struct Paused(pub(crate) Duration);

/// A flood limit becomes [`Paused`]; any other error is handed back.
pub(crate) fn flood(e: TelegramError) -> Result<TelegramError, Paused> {
    match e {
        TelegramError::RateLimited { retry_after } => Err(Paused(retry_after)),
        other => Ok(other),
    }
}

/// The route of channel `name` when the bot cannot read it: a username has
/// a public preview page; a numeric id has nothing else, so `why` is kept.
pub(crate) fn fallback_route(name: &str, why: String) -> Route {
    if name.parse::<i64>().is_err() {
        Route::Preview(name.to_string())
    } else {
        Route::Unreadable(why)
    }
}

/// The route of channel `name` once `getChat` answered: the bot reads what
/// it administers; otherwise the preview of its username, if it has one.
pub(crate) fn route_after_get_chat(name: &str, admin: bool, username: Option<String>) -> Route {
    match (admin, username) {
        (true, _) => Route::Bot,
        (false, Some(username)) => Route::Preview(username),
        (false, None) => fallback_route(
            name,
            "private channel and the bot is not its administrator".into(),
        ),
    }
}

/// Whether a route decided at `decided_at` still holds at `now`.
pub(crate) fn route_is_fresh(decided_at: SystemTime, now: SystemTime) -> bool {
    now.duration_since(decided_at).unwrap_or_default() < RESOLVE_EVERY
}

/// The time a route decided at `now` is stamped with: `now` when settled;
/// a decision forced by an outage is stamped as already expired, so it is
/// used for this tick only and made again on the next.
pub(crate) fn decided_at(now: SystemTime, settled: bool) -> SystemTime {
    if settled {
        now
    } else {
        now.checked_sub(RESOLVE_EVERY)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// The configured name a Bot API channel goes by (its numeric id or its
/// username, case-insensitive), if it is configured.
pub(crate) fn configured_name(channels: &[String], channel: &Channel) -> Option<String> {
    let id = channel.id.to_string();
    channels
        .iter()
        .find(|c| {
            **c == id
                || channel
                    .username
                    .as_deref()
                    .is_some_and(|u| u.eq_ignore_ascii_case(c))
        })
        .cloned()
}

/// One `getUpdates` batch's posts to send, per configured channel: the
/// latest version of each message (an edit in the same batch replaces the
/// text of the post it edits), without posts of unconfigured channels and
/// without new posts at or below the channel's last sent id (a replay after
/// a crash). Edits always go: they change a post already sent.
pub(crate) fn new_posts(
    posts: impl IntoIterator<Item = ChannelPost>,
    channels: &[String],
    last_seen: &BTreeMap<String, i64>,
) -> BTreeMap<String, (Channel, BTreeMap<i64, ChannelPost>)> {
    let mut batches: BTreeMap<String, (Channel, BTreeMap<i64, ChannelPost>)> = BTreeMap::new();
    for post in posts {
        let Some(name) = configured_name(channels, &post.channel) else {
            continue;
        };
        let last_seen = last_seen.get(&name).copied().unwrap_or(0);
        if !post.edited && post.post.id <= last_seen {
            continue; // already sent (a replay after a crash)
        }
        let entry = batches
            .entry(name)
            .or_insert_with(|| (post.channel.clone(), BTreeMap::new()));
        entry.0 = post.channel.clone();
        entry.1.insert(post.post.id, post);
    }
    batches
}

/// The `before` of the next, older preview page, when one is needed: only
/// to close a gap since the last sent id; a first run (`last_seen` 0) takes
/// what the page shows.
pub(crate) fn older_page_before(oldest_on_page: Option<i64>, last_seen: i64) -> Option<i64> {
    match oldest_on_page {
        Some(oldest) if last_seen > 0 && oldest > last_seen + 1 => Some(oldest),
        _ => None,
    }
}

/// The backend's message of a post.
pub(crate) fn message_of(post: &Post) -> TelegramMessage {
    TelegramMessage {
        id: post.id,
        text: post.text.clone(),
        date: iso(post.date),
        sender_name: post.sender_name.clone(),
        views: post.views,
        forwards: post.forwards,
        has_media: post.media.is_some(),
        media_type: post.media,
        links: post.links.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::from_unix_ms;
    use crate::telegram::tests::channel;

    fn post(channel: Channel, id: i64, text: &str, edited: bool) -> ChannelPost {
        ChannelPost {
            channel,
            post: Post {
                id,
                text: Some(text.into()),
                date: from_unix_ms(1_764_928_800_000),
                sender_name: None,
                views: None,
                forwards: None,
                media: None,
                links: vec![],
            },
            edited,
        }
    }

    #[test]
    fn a_flood_limit_pauses_other_errors_do_not() {
        let wait = Duration::from_secs(17);
        assert_eq!(
            flood(TelegramError::RateLimited { retry_after: wait }).err(),
            Some(Paused(wait))
        );
        let other = TelegramError::Transport("reset".into());
        assert_eq!(flood(other.clone()).ok(), Some(other));
    }

    #[test]
    fn routes_follow_admin_rights_and_usernames() {
        assert_eq!(route_after_get_chat("news", true, None), Route::Bot);
        assert_eq!(
            route_after_get_chat("news", false, Some("News".into())),
            Route::Preview("News".into())
        );
        assert_eq!(
            route_after_get_chat("news", false, None),
            Route::Preview("news".into()),
            "a username still has its preview page"
        );
        assert!(matches!(
            route_after_get_chat("-1001", false, None),
            Route::Unreadable(_)
        ));
        assert_eq!(
            fallback_route("-1001", "no token".into()),
            Route::Unreadable("no token".into())
        );
    }

    #[test]
    fn an_unsettled_route_is_asked_again_next_tick() {
        let now = from_unix_ms(1_764_928_800_000);
        assert!(route_is_fresh(
            decided_at(now, true),
            now + Duration::from_secs(30)
        ));
        assert!(!route_is_fresh(decided_at(now, true), now + RESOLVE_EVERY));
        assert!(!route_is_fresh(decided_at(now, false), now));
    }

    #[test]
    fn new_posts_keep_the_latest_edit_and_skip_replays() {
        let news = channel(-100, Some("News"));
        let channels = vec!["news".to_string(), "-200".to_string()];
        let last_seen = BTreeMap::from([("news".to_string(), 10)]);
        let batches = new_posts(
            vec![
                post(news.clone(), 9, "replayed", false),
                post(news.clone(), 8, "edited old post", true),
                post(news.clone(), 11, "first", false),
                post(news.clone(), 11, "first, edited", true),
                post(channel(-300, Some("other")), 12, "not configured", false),
                post(channel(-200, None), 1, "by id", false),
            ],
            &channels,
            &last_seen,
        );
        let texts = |name: &str| -> Vec<(i64, String)> {
            batches[name]
                .1
                .values()
                .map(|p| (p.post.id, p.post.text.clone().unwrap_or_default()))
                .collect()
        };
        assert_eq!(batches.len(), 2, "{batches:?}");
        assert_eq!(
            texts("news"),
            vec![(8, "edited old post".into()), (11, "first, edited".into())]
        );
        assert_eq!(texts("-200"), vec![(1, "by id".into())]);
    }

    #[test]
    fn older_preview_pages_only_close_a_gap() {
        assert_eq!(older_page_before(Some(30), 0), None, "first run");
        assert_eq!(older_page_before(Some(11), 10), None, "no gap");
        assert_eq!(older_page_before(Some(30), 10), Some(30));
        assert_eq!(older_page_before(None, 10), None, "empty page");
    }
}
