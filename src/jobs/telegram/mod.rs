//! telegram: channel news to `/api/telegram/ingest` every 30 s (docs/jobs.md).
//!
//! Each configured channel (username or numeric id) is read from one of two
//! sources, chosen at start and re-checked every [`RESOLVE_EVERY`]:
//! * the Bot API (`getUpdates`, `channel_post` / `edited_channel_post`) when a
//!   bot token is set and the bot is an administrator of the channel (only
//!   then do its posts reach the bot);
//! * otherwise the public web preview (`t.me/s/<username>`), for public
//!   channels the bot cannot read.
//!
//! New messages (id above the channel's last sent id; for the Bot API also
//! every edit) go oldest first, in chunks of ≤ 50, through the durable outbox.
//!
//! # No loss, no duplicate
//! Telegram forgets updates below the `offset` of the next `getUpdates`, and a
//! preview page only shows recent posts, so the order is:
//! 1. read (updates from the persisted offset; preview pages);
//! 2. enqueue every chunk to the outbox (fsync'd before `enqueue` returns);
//! 3. persist the new offset and last-sent ids (atomic write, fsync'd);
//! 4. only the next `getUpdates` (with that offset) lets Telegram forget.
//!
//! A crash between 2 and 3 reads the same messages again after the restart
//! and enqueues them again: a resend, which the backend upserts by (channel,
//! message id). A crash before 2 loses nothing, since the offset was not
//! advanced. A failed enqueue stops the tick before 3 for the same reason.
//!
//! # Flood limits
//! A 429 `retry_after` from either source pauses this job only (its ticks
//! return at once until the time has passed); nothing else waits for it.

pub mod rules;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::{Deserialize, Serialize};

pub use self::rules::RESOLVE_EVERY;
use self::rules::{
    decided_at, fallback_route, flood, message_of, new_posts, older_page_before,
    route_after_get_chat, route_is_fresh, Paused, Route,
};
use super::{Job, Schedule};
use crate::backend::{Outbox, Post as OutboxPost, TelegramChannel, TelegramIngest};
use crate::clock::iso;
use crate::config::TelegramConfig;
use crate::state::StateDir;
use crate::telegram::bot_api::{BotApi, CHANNEL_UPDATES};
use crate::telegram::preview::{self, PreviewClient};
use crate::telegram::{CategoryMap, Channel, Post, TelegramError};

/// How often the job runs.
pub const INTERVAL: Duration = Duration::from_secs(30);
/// How long the first `getUpdates` of a tick waits for news. Short: a tick
/// must end well within shutdown's drain time, and a new tick comes in 30 s.
pub const LONG_POLL: Duration = Duration::from_secs(3);
/// `getUpdates` calls per tick at most (100 updates each): a backlog after
/// a long outage is worked off over a few ticks, not in one endless tick.
const MAX_UPDATE_ROUNDS: usize = 10;
/// Older preview pages fetched at most per channel and tick to close a gap
/// (about 20 posts each).
const MAX_PREVIEW_PAGES: usize = 5;
/// File of the persisted state inside the state directory.
pub const STATE_FILE: &str = "telegram.json";

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelegramState {
    /// The next `getUpdates` offset (last handled update id + 1).
    #[serde(default)]
    pub update_offset: Option<i64>,
    /// Per channel (its configured name, lower-case): the highest message id
    /// enqueued.
    #[serde(default)]
    pub last_seen: BTreeMap<String, i64>,
}

/// The telegram job.
pub struct TelegramJob {
    /// Bot API client, when a token is set.
    bot: Option<BotApi>,
    /// The bot's own user id (`getMe`), learnt once.
    bot_id: Option<i64>,
    /// Preview site client.
    preview: PreviewClient,
    /// Where ingest batches go.
    outbox: Outbox,
    /// Where [`TelegramState`] is kept.
    state_dir: StateDir,
    /// Channel → category.
    categories: CategoryMap,
    /// Configured channels, lower-case, without `@`.
    channels: Vec<String>,
    /// Persisted offsets.
    state: TelegramState,
    /// Each channel's source and when it was decided.
    routes: HashMap<String, (Route, SystemTime)>,
    /// Numeric channel ids learnt from `getChat`, for preview pages that do
    /// not carry one.
    known: HashMap<String, Channel>,
    /// No Telegram request before this (a flood limit).
    paused_until: Option<SystemTime>,
    /// Wait of the first `getUpdates` of a tick.
    long_poll: Duration,
}

/// What one tick did, for its summary line.
#[derive(Debug, Default)]
struct Tally {
    /// Messages enqueued.
    messages: usize,
    /// Channels that had news.
    channels: usize,
    /// Per-channel failures.
    errors: Vec<String>,
}

impl TelegramJob {
    /// A job for the configured channels, posting through `outbox` and
    /// keeping its offsets in `state_dir`. A corrupt state file is logged
    /// and replaced: re-reading recent messages only resends them.
    pub fn new(config: &TelegramConfig, outbox: Outbox, state_dir: StateDir) -> TelegramJob {
        let state = match state_dir.load_json::<TelegramState>(STATE_FILE) {
            Ok(state) => state.unwrap_or_default(),
            Err(e) => {
                tracing::error!(
                    JOB = "telegram",
                    "{e}; starting from Telegram's pending updates and the preview pages' recent posts (the backend upserts what is resent)"
                );
                TelegramState::default()
            }
        };
        TelegramJob {
            bot: config
                .bot_token
                .as_ref()
                .filter(|_| config.ingest_with_bot)
                .map(|token| BotApi::new(&config.api_url, token.clone())),
            bot_id: None,
            preview: PreviewClient::new(&config.preview_url),
            outbox,
            state_dir,
            categories: CategoryMap::new(config.categories.clone()),
            channels: config
                .channels
                .iter()
                .map(|c| c.trim_start_matches('@').to_ascii_lowercase())
                .collect(),
            state,
            routes: HashMap::new(),
            known: HashMap::new(),
            paused_until: None,
            long_poll: LONG_POLL,
        }
    }

    /// Sets the first `getUpdates` wait (tests use zero).
    pub fn with_long_poll(mut self, long_poll: Duration) -> TelegramJob {
        self.long_poll = long_poll;
        self
    }

    /// The persisted state as it stands.
    pub fn state(&self) -> &TelegramState {
        &self.state
    }

    /// Until when a flood limit pauses the job.
    pub fn paused_until(&self) -> Option<SystemTime> {
        self.paused_until
    }

    /// Decides each channel's source where not decided in the last
    /// [`RESOLVE_EVERY`].
    async fn resolve(&mut self, now: SystemTime) -> Result<(), Paused> {
        for name in self.channels.clone() {
            let fresh = self
                .routes
                .get(&name)
                .is_some_and(|(_, at)| route_is_fresh(*at, now));
            if fresh {
                continue;
            }
            let (route, settled) = self.route_of(&name).await?;
            match &route {
                Route::Unreadable(why) => tracing::error!("channel {name}: {why}"),
                route => tracing::debug!("channel {name}: read through {route:?}"),
            }
            self.routes.insert(name, (route, decided_at(now, settled)));
        }
        Ok(())
    }

    /// The source of channel `name`, and whether that is settled (`false`
    /// when Telegram could not be asked, so the question is asked again).
    async fn route_of(&mut self, name: &str) -> Result<(Route, bool), Paused> {
        let fallback = |why: String| fallback_route(name, why);
        let unsettled = |e: TelegramError, call: &str| {
            flood(e).map(|e| {
                let settled = !matches!(e, TelegramError::Transport(_));
                (fallback(format!("{call} failed: {e}")), settled)
            })
        };
        let Some(bot) = self.bot.clone() else {
            return Ok((
                fallback(
                    "a numeric channel id needs TELEGRAM_BOT_TOKEN and the bot as its admin".into(),
                ),
                true,
            ));
        };
        let bot_id = match self.bot_id {
            Some(id) => id,
            None => match blocking(bot.clone(), |b| b.me()).await {
                Ok(id) => *self.bot_id.insert(id),
                Err(e) => return unsettled(e, "getMe"),
            },
        };
        let chat = name.to_string();
        let result = blocking(bot, move |b| {
            let found = b.get_chat(&chat)?;
            let admin = b.is_admin(&chat, bot_id)?;
            Ok((found, admin))
        })
        .await;
        match result {
            Ok((chat, admin)) => {
                let channel = crate::telegram::bot_api::channel_of(&chat);
                let username = channel.username.clone();
                self.known.insert(name.to_string(), channel);
                Ok((route_after_get_chat(name, admin, username), true))
            }
            Err(e) => unsettled(e, "getChat"),
        }
    }

    /// Reads `getUpdates` from the persisted offset and enqueues the posts
    /// of configured channels; persists the offset after each round.
    async fn poll_updates(&mut self, tally: &mut Tally) -> Result<(), Paused> {
        let Some(bot) = self.bot.clone() else {
            return Ok(());
        };
        for round in 0..MAX_UPDATE_ROUNDS {
            let offset = self.state.update_offset;
            let wait = if round == 0 {
                self.long_poll
            } else {
                Duration::ZERO
            };
            let updates = match blocking(bot.clone(), move |b| {
                b.get_updates(offset, wait, CHANNEL_UPDATES)
            })
            .await
            {
                Ok(updates) => updates,
                Err(e) => {
                    let e = flood(e)?;
                    tally.errors.push(format!("getUpdates: {e}"));
                    return Ok(());
                }
            };
            let Some(last_id) = updates.iter().map(|u| u.update_id).max() else {
                return Ok(());
            };
            let full = updates.len() >= 100;

            let batches = new_posts(
                updates.into_iter().filter_map(|u| u.post),
                &self.channels,
                &self.state.last_seen,
            );
            for (name, (channel, posts)) in batches {
                let posts: Vec<Post> = posts.into_values().map(|p| p.post).collect();
                if let Err(e) = self.enqueue(&name, &channel, posts, tally).await {
                    // Offset not advanced: the same updates come again.
                    tally.errors.push(format!("{name}: {e:#}"));
                    return Ok(());
                }
            }
            self.state.update_offset = Some(last_id + 1);
            if let Err(e) = self.save() {
                tally.errors.push(format!("{e:#}"));
                return Ok(());
            }
            if !full {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reads `username`'s preview page(s) and enqueues what is new.
    async fn read_preview(
        &mut self,
        name: &str,
        username: &str,
        tally: &mut Tally,
    ) -> Result<(), Paused> {
        let last_seen = self.state.last_seen.get(name).copied().unwrap_or(0);
        let mut channel: Option<Channel> = None;
        let mut posts: BTreeMap<i64, Post> = BTreeMap::new();
        let mut before = None;
        for _ in 0..MAX_PREVIEW_PAGES {
            let client = self.preview.clone();
            let user = username.to_string();
            let page = match blocking(client, move |c| {
                let html = c.fetch(&user, before)?;
                preview::parse_page(&html)
            })
            .await
            {
                Ok(page) => page,
                Err(e) => {
                    let e = flood(e)?;
                    tally.errors.push(format!("{name}: {e}"));
                    return Ok(());
                }
            };
            channel = channel.or(page.channel);
            let oldest = page.posts.iter().map(|p| p.id).min();
            posts.extend(
                page.posts
                    .into_iter()
                    .filter(|p| p.id > last_seen)
                    .map(|p| (p.id, p)),
            );
            match older_page_before(oldest, last_seen) {
                Some(oldest) => before = Some(oldest),
                None => break,
            }
        }
        if posts.is_empty() {
            return Ok(());
        }
        let Some(channel) = channel.or_else(|| self.known.get(name).cloned()) else {
            tally.errors.push(format!(
                "{name}: the preview page carries no channel id (data-peer) and getChat did not give one"
            ));
            return Ok(());
        };
        if let Err(e) = self
            .enqueue(name, &channel, posts.into_values().collect(), tally)
            .await
        {
            tally.errors.push(format!("{name}: {e:#}"));
            return Ok(());
        }
        if let Err(e) = self.save() {
            tally.errors.push(format!("{e:#}"));
        }
        Ok(())
    }

    /// Enqueues `posts` (ascending ids) of `channel` in chunks of ≤ 50 and
    /// raises the channel's last-sent id in memory; the caller persists.
    async fn enqueue(
        &mut self,
        name: &str,
        channel: &Channel,
        posts: Vec<Post>,
        tally: &mut Tally,
    ) -> anyhow::Result<()> {
        if posts.is_empty() {
            return Ok(());
        }
        let highest = posts.iter().map(|p| p.id).max().unwrap_or(0);
        let count = posts.len();
        let payload_channel = TelegramChannel {
            id: channel.id,
            username: channel.username.clone(),
            title: channel.title.clone(),
            category: self.categories.category(channel),
        };
        let messages = posts.iter().map(message_of).collect();
        for batch in TelegramIngest::chunks(payload_channel, messages) {
            self.outbox
                .enqueue(OutboxPost::telegram(&batch))
                .await
                .with_context(|| format!("enqueueing channel {name}"))?;
        }
        let seen = self.state.last_seen.entry(name.to_string()).or_insert(0);
        *seen = (*seen).max(highest);
        tally.messages += count;
        tally.channels += 1;
        Ok(())
    }

    /// Writes the state file (atomic, fsync'd).
    fn save(&self) -> anyhow::Result<()> {
        self.state_dir
            .save_json(STATE_FILE, &self.state)
            .context("saving the Telegram offsets")
    }
}

impl Job for TelegramJob {
    const NAME: &'static str = "telegram";

    fn schedule(&self) -> Schedule {
        Schedule::Every(INTERVAL)
    }

    async fn tick(&mut self, now: SystemTime) -> anyhow::Result<String> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Ok(format!(
                    "paused by a Telegram flood limit until {}",
                    iso(until)
                ));
            }
            self.paused_until = None;
        }
        let mut tally = Tally::default();
        let outcome = async {
            self.resolve(now).await?;
            let routes: Vec<(String, Route)> = self
                .channels
                .iter()
                .filter_map(|c| self.routes.get(c).map(|(r, _)| (c.clone(), r.clone())))
                .collect();
            if routes.iter().any(|(_, r)| *r == Route::Bot) {
                self.poll_updates(&mut tally).await?;
            }
            for (name, route) in routes {
                match route {
                    Route::Preview(username) => {
                        self.read_preview(&name, &username, &mut tally).await?
                    }
                    Route::Unreadable(why) => tally.errors.push(format!("{name}: {why}")),
                    Route::Bot => {}
                }
            }
            Ok::<(), Paused>(())
        }
        .await;
        let mut summary = format!(
            "{} new message(s) from {} channel(s)",
            tally.messages, tally.channels
        );
        if let Err(Paused(retry_after)) = outcome {
            let until = now + retry_after;
            self.paused_until = Some(until);
            tracing::warn!(
                "Telegram flood limit: pausing the telegram job for {}s",
                retry_after.as_secs()
            );
            summary.push_str(&format!("; paused until {} (flood limit)", iso(until)));
        }
        if tally.errors.is_empty() {
            Ok(summary)
        } else {
            anyhow::bail!("{summary}; {}", tally.errors.join("; "))
        }
    }
}

/// Runs a blocking Telegram call on the blocking pool.
async fn blocking<C, T, F>(client: C, call: F) -> Result<T, TelegramError>
where
    C: Send + 'static,
    T: Send + 'static,
    F: FnOnce(&C) -> Result<T, TelegramError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || call(&client))
        .await
        .unwrap_or_else(|e| Err(TelegramError::Transport(format!("task failed: {e}"))))
}
