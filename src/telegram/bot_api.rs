//! The Telegram Bot API client (blocking, ureq) and the mapping of channel
//! posts to [`Post`]s.
//!
//! Every method is `POST {base}/bot{token}/{method}` with a JSON body; the
//! answer is `{"ok":true,"result":…}` or `{"ok":false,"error_code":…,
//! "description":…,"parameters":{"retry_after":…}}`. The token is part of the
//! URL, so every error text is scrubbed of it before it can reach a log.

use std::time::{Duration, SystemTime};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{excerpt, push_link, Channel, Media, Post, TelegramError, MAX_RETRY_AFTER};
use crate::config::Secret;

/// Time for a call that is not a long poll.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest answer read (100 updates with long texts stay far below this).
const MAX_ANSWER_BYTES: u64 = 8 * 1024 * 1024;
/// The update kinds the job asks for: posts and their edits, nothing else.
pub const CHANNEL_UPDATES: &[&str] = &["channel_post", "edited_channel_post"];

/// A Bot API client for one bot.
#[derive(Clone)]
pub struct BotApi {
    /// Base URL without a trailing slash (`https://api.telegram.org`).
    base: String,
    /// The bot's token.
    token: Secret,
    /// Connection pool and default timeouts.
    agent: ureq::Agent,
}

impl std::fmt::Debug for BotApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotApi")
            .field("base", &self.base)
            .field("token", &self.token)
            .finish()
    }
}

/// One update of `getUpdates`, with the part the job reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// Its id; the next `offset` is the highest id + 1.
    pub update_id: i64,
    /// The channel post it carries, if it is a (possibly edited) post.
    pub post: Option<ChannelPost>,
}

/// A channel post from an update.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelPost {
    /// The channel it was posted in.
    pub channel: Channel,
    /// The post.
    pub post: Post,
    /// Whether it came as `edited_channel_post` (replaces an earlier text).
    pub edited: bool,
}

/// The Bot API `Chat` fields the job needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    /// Chat id.
    pub id: i64,
    /// `channel`, `supergroup`, `group`, `private`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Title of a channel or group.
    #[serde(default)]
    pub title: Option<String>,
    /// Public username.
    #[serde(default)]
    pub username: Option<String>,
}

/// A message entity (a link, a mention, bold text…).
#[derive(Debug, Clone, Deserialize)]
struct Entity {
    /// `url`, `text_link`, `bold`…
    #[serde(rename = "type")]
    kind: String,
    /// Start in UTF-16 code units.
    offset: usize,
    /// Length in UTF-16 code units.
    length: usize,
    /// Target of a `text_link`.
    #[serde(default)]
    url: Option<String>,
}

/// `link_preview_options` of a message.
#[derive(Debug, Clone, Deserialize)]
struct LinkPreview {
    /// The previewed URL, when it is not the first link of the text.
    #[serde(default)]
    url: Option<String>,
}

/// The Bot API `Message` fields the job reads; media only by presence.
#[derive(Debug, Clone, Deserialize)]
struct Message {
    /// Id within the chat.
    message_id: i64,
    /// Unix seconds.
    date: i64,
    /// The chat it belongs to.
    chat: Chat,
    /// Text of a text message.
    #[serde(default)]
    text: Option<String>,
    /// Caption of a media message.
    #[serde(default)]
    caption: Option<String>,
    /// Entities of `text`.
    #[serde(default)]
    entities: Vec<Entity>,
    /// Entities of `caption`.
    #[serde(default)]
    caption_entities: Vec<Entity>,
    /// Signature of the post's author, in channels that sign posts.
    #[serde(default)]
    author_signature: Option<String>,
    /// The link preview shown under the text.
    #[serde(default)]
    link_preview_options: Option<LinkPreview>,
    /// A photo (sizes).
    #[serde(default)]
    photo: Option<IgnoredAny>,
    /// A video.
    #[serde(default)]
    video: Option<IgnoredAny>,
    /// A round video note.
    #[serde(default)]
    video_note: Option<IgnoredAny>,
    /// A GIF-like animation (Telegram also fills `document`).
    #[serde(default)]
    animation: Option<IgnoredAny>,
    /// A file.
    #[serde(default)]
    document: Option<IgnoredAny>,
    /// A music file.
    #[serde(default)]
    audio: Option<IgnoredAny>,
    /// A voice note.
    #[serde(default)]
    voice: Option<IgnoredAny>,
    /// A sticker.
    #[serde(default)]
    sticker: Option<IgnoredAny>,
}

/// A `getChatMember` answer (only the status matters).
#[derive(Debug, Deserialize)]
struct ChatMember {
    /// `creator`, `administrator`, `member`, `restricted`, `left`, `kicked`.
    status: String,
}

/// A `getMe` answer (only the id matters).
#[derive(Debug, Deserialize)]
struct User {
    /// The bot's user id.
    id: i64,
}

impl BotApi {
    /// A client for the bot with `token` at `base_url` (`TELEGRAM_API_URL`).
    pub fn new(base_url: &str, token: Secret) -> BotApi {
        BotApi {
            base: base_url.trim_end_matches('/').to_string(),
            token,
            agent: crate::net::agent(REQUEST_TIMEOUT, 2),
        }
    }

    /// `getUpdates` from `offset` (confirming everything below it), waiting
    /// up to `long_poll` for the first one; only `allowed` kinds.
    ///
    /// An update whose message we cannot read is returned without a post (its
    /// id still counts for the offset), so one odd update cannot wedge the
    /// queue.
    pub fn get_updates(
        &self,
        offset: Option<i64>,
        long_poll: Duration,
        allowed: &[&str],
    ) -> Result<Vec<Update>, TelegramError> {
        let mut params = json!({
            "timeout": long_poll.as_secs(),
            "allowed_updates": allowed,
            "limit": 100,
        });
        if let Some(offset) = offset {
            params["offset"] = json!(offset);
        }
        let raw: Vec<Value> = self.call("getUpdates", &params, REQUEST_TIMEOUT + long_poll)?;
        let mut updates = Vec::with_capacity(raw.len());
        for value in raw {
            let Some(update_id) = value.get("update_id").and_then(Value::as_i64) else {
                return Err(TelegramError::Unexpected(
                    "getUpdates: an update without update_id".into(),
                ));
            };
            let (message, edited) =
                match (value.get("channel_post"), value.get("edited_channel_post")) {
                    (Some(m), _) => (Some(m), false),
                    (None, Some(m)) => (Some(m), true),
                    (None, None) => (None, false),
                };
            let post = match message.map(Message::deserialize) {
                Some(Ok(message)) => Some(ChannelPost {
                    channel: channel_of(&message.chat),
                    post: post_of(&message),
                    edited,
                }),
                Some(Err(e)) => {
                    tracing::warn!(update_id, "skipping a channel post we cannot read: {e}");
                    None
                }
                None => None,
            };
            updates.push(Update { update_id, post });
        }
        Ok(updates)
    }

    /// The bot's own user id (`getMe`).
    pub fn me(&self) -> Result<i64, TelegramError> {
        let user: User = self.call("getMe", &json!({}), REQUEST_TIMEOUT)?;
        Ok(user.id)
    }

    /// `getChat` for `chat` (a numeric id or a username, with or without `@`).
    pub fn get_chat(&self, chat: &str) -> Result<Chat, TelegramError> {
        self.call(
            "getChat",
            &json!({ "chat_id": chat_param(chat) }),
            REQUEST_TIMEOUT,
        )
    }

    /// Whether user `user_id` (the bot) is an administrator (or the creator)
    /// of `chat`: only then do its posts reach `getUpdates`. A "not a member"
    /// answer is `Ok(false)`; flood limits and outages are errors.
    pub fn is_admin(&self, chat: &str, user_id: i64) -> Result<bool, TelegramError> {
        let params = json!({ "chat_id": chat_param(chat), "user_id": user_id });
        match self.call::<ChatMember>("getChatMember", &params, REQUEST_TIMEOUT) {
            Ok(member) => Ok(matches!(
                member.status.as_str(),
                "administrator" | "creator"
            )),
            Err(TelegramError::Api {
                code: 400 | 403, ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `sendMessage` of plain `text` (no parse mode, so `*` and `_` in an
    /// alert are shown as written) to `chat_id`.
    pub fn send_message(&self, chat_id: &str, text: &str) -> Result<(), TelegramError> {
        let params = json!({
            "chat_id": chat_param(chat_id),
            "text": text,
            "disable_web_page_preview": true,
        });
        self.call::<IgnoredAny>("sendMessage", &params, REQUEST_TIMEOUT)
            .map(|_| ())
    }

    /// One method call; the `result` on success.
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        params: &Value,
        timeout: Duration,
    ) -> Result<T, TelegramError> {
        let url = format!("{}/bot{}/{method}", self.base, self.token.expose());
        let secret = Some(self.token.expose());
        let body = serde_json::to_vec(params)
            .map_err(|e| TelegramError::Unexpected(format!("cannot encode {method}: {e}")))?;
        let request = self
            .agent
            .post(&url)
            .header("Content-Type", "application/json")
            .config()
            .timeout_global(Some(timeout))
            .build();
        let mut response = request
            .send(&body[..])
            .map_err(|e| TelegramError::Transport(excerpt(&format!("{method}: {e}"), secret)))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_vec()
            .map_err(|e| TelegramError::Transport(excerpt(&format!("{method}: {e}"), secret)))?;
        decode(method, status, &bytes, secret)
    }
}

/// Decodes a Bot API answer: `result` when `ok`, else the error it describes.
fn decode<T: DeserializeOwned>(
    method: &str,
    status: u16,
    bytes: &[u8],
    secret: Option<&str>,
) -> Result<T, TelegramError> {
    /// The envelope of every Bot API answer.
    #[derive(Deserialize)]
    struct Envelope {
        /// Success flag.
        ok: bool,
        /// The answer on success.
        #[serde(default)]
        result: Option<Value>,
        /// The HTTP status on failure.
        #[serde(default)]
        error_code: Option<u16>,
        /// Human description on failure.
        #[serde(default)]
        description: Option<String>,
        /// `retry_after` (429) and `migrate_to_chat_id`.
        #[serde(default)]
        parameters: Option<Value>,
    }
    let text = String::from_utf8_lossy(bytes);
    let envelope: Envelope = match serde_json::from_slice(bytes) {
        Ok(envelope) => envelope,
        Err(_) if status == 429 => {
            // A proxy's 429 without Telegram's body: wait a minute.
            return Err(TelegramError::RateLimited {
                retry_after: Duration::from_secs(60),
            });
        }
        Err(e) => {
            return Err(if status >= 400 {
                TelegramError::Api {
                    code: status,
                    description: excerpt(&text, secret),
                }
            } else {
                TelegramError::Unexpected(format!("{method}: not JSON ({e})"))
            })
        }
    };
    if !envelope.ok {
        let code = envelope.error_code.unwrap_or(status);
        let retry_after = envelope
            .parameters
            .as_ref()
            .and_then(|p| p.get("retry_after"))
            .and_then(Value::as_u64);
        if code == 429 || retry_after.is_some() {
            return Err(TelegramError::RateLimited {
                retry_after: Duration::from_secs(retry_after.unwrap_or(60)).min(MAX_RETRY_AFTER),
            });
        }
        return Err(TelegramError::Api {
            code,
            description: excerpt(
                &format!("{method}: {}", envelope.description.unwrap_or_default()),
                secret,
            ),
        });
    }
    let result = envelope.result.unwrap_or(Value::Null);
    T::deserialize(result).map_err(|e| TelegramError::Unexpected(format!("{method}: {e}")))
}

/// `chat_id` as Telegram wants it: a number, or `@username`.
fn chat_param(chat: &str) -> Value {
    match chat.parse::<i64>() {
        Ok(id) => json!(id),
        Err(_) => json!(format!("@{}", chat.trim_start_matches('@'))),
    }
}

/// The [`Channel`] of a Bot API chat.
pub fn channel_of(chat: &Chat) -> Channel {
    Channel {
        id: chat.id,
        username: chat.username.clone(),
        title: chat
            .title
            .clone()
            .or_else(|| chat.username.clone())
            .unwrap_or_else(|| chat.id.to_string()),
    }
}

/// The [`Post`] of a Bot API message: text or caption, media kind, links of
/// `url` and `text_link` entities and of the link preview. The Bot API does
/// not report views or forwards.
fn post_of(message: &Message) -> Post {
    let (text, entities) = match (&message.text, &message.caption) {
        (Some(text), _) => (Some(text.clone()), &message.entities),
        (None, Some(caption)) => (Some(caption.clone()), &message.caption_entities),
        (None, None) => (None, &message.entities),
    };
    let mut links = Vec::new();
    for entity in entities {
        match entity.kind.as_str() {
            "url" => {
                if let Some(link) = text
                    .as_deref()
                    .and_then(|t| utf16_slice(t, entity.offset, entity.length))
                {
                    push_link(&mut links, &link);
                }
            }
            "text_link" => {
                if let Some(url) = &entity.url {
                    push_link(&mut links, url);
                }
            }
            _ => {}
        }
    }
    if let Some(url) = message
        .link_preview_options
        .as_ref()
        .and_then(|p| p.url.as_deref())
    {
        push_link(&mut links, url);
    }
    // Telegram sends `document` beside `animation` for a GIF: check the more
    // specific kinds first.
    let media = if message.photo.is_some() {
        Some(Media::Photo)
    } else if message.animation.is_some() {
        Some(Media::Animation)
    } else if message.video.is_some() || message.video_note.is_some() {
        Some(Media::Video)
    } else if message.sticker.is_some() {
        Some(Media::Sticker)
    } else if message.voice.is_some() {
        Some(Media::Voice)
    } else if message.audio.is_some() {
        Some(Media::Audio)
    } else if message.document.is_some() {
        Some(Media::Document)
    } else {
        None
    };
    Post {
        id: message.message_id,
        text: text.filter(|t| !t.is_empty()),
        date: SystemTime::UNIX_EPOCH + Duration::from_secs(message.date.max(0) as u64),
        sender_name: message.author_signature.clone(),
        views: None,
        forwards: None,
        media,
        links,
    }
}

/// The part of `text` at `offset`, `length` in UTF-16 code units (how
/// Telegram counts entity positions); `None` when out of range.
fn utf16_slice(text: &str, offset: usize, length: usize) -> Option<String> {
    let units: Vec<u16> = text.encode_utf16().collect();
    let end = offset.checked_add(length)?;
    String::from_utf16(units.get(offset..end)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::iso;

    fn message(value: Value) -> Message {
        Message::deserialize(value).expect("a valid message")
    }

    fn chat() -> Value {
        json!({"id": -1001234567890i64, "type": "channel", "title": "Market Feed", "username": "marketfeed"})
    }

    #[test]
    fn text_post_with_url_entities() {
        // "📈" is two UTF-16 units: entity offsets count those, not bytes or chars.
        let m = message(json!({
            "message_id": 10, "date": 1_764_849_600, "chat": chat(),
            "text": "📈 CPI out: https://bls.gov/cpi and more",
            "entities": [
                {"type": "bold", "offset": 0, "length": 2},
                {"type": "url", "offset": 12, "length": 19},
            ],
            "author_signature": "Ann",
        }));
        let post = post_of(&m);
        assert_eq!(post.id, 10);
        assert_eq!(iso(post.date), "2025-12-04T12:00:00Z");
        assert_eq!(
            post.text.as_deref(),
            Some("📈 CPI out: https://bls.gov/cpi and more")
        );
        assert_eq!(post.links, ["https://bls.gov/cpi"]);
        assert_eq!(post.sender_name.as_deref(), Some("Ann"));
        assert_eq!(post.media, None);
        assert_eq!((post.views, post.forwards), (None, None));
        assert_eq!(channel_of(&m.chat).username.as_deref(), Some("marketfeed"));
    }

    #[test]
    fn photo_with_caption_and_text_link() {
        let m = message(json!({
            "message_id": 11, "date": 1_764_849_660, "chat": chat(),
            "photo": [{"file_id": "a", "width": 90, "height": 90}],
            "caption": "Chart of the day",
            "caption_entities": [{"type": "text_link", "offset": 0, "length": 5, "url": "https://example.com/chart"}],
            "link_preview_options": {"url": "https://example.com/chart"},
        }));
        let post = post_of(&m);
        assert_eq!(post.text.as_deref(), Some("Chart of the day"));
        assert_eq!(post.media, Some(Media::Photo));
        assert_eq!(post.links, ["https://example.com/chart"]);
    }

    #[test]
    fn gif_is_an_animation_not_a_document() {
        let m = message(json!({
            "message_id": 12, "date": 1, "chat": chat(),
            "animation": {"file_id": "g"}, "document": {"file_id": "g"},
        }));
        let post = post_of(&m);
        assert_eq!(post.media, Some(Media::Animation));
        assert_eq!(post.text, None);
    }

    #[test]
    fn out_of_range_entity_is_ignored() {
        assert_eq!(utf16_slice("abc", 2, 5), None);
        assert_eq!(utf16_slice("a😀b", 1, 2).as_deref(), Some("😀"));
    }

    #[test]
    fn flood_limit_is_decoded() {
        let body = br#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#;
        let err = decode::<Value>("getUpdates", 429, body, None).expect_err("429");
        assert_eq!(
            err,
            TelegramError::RateLimited {
                retry_after: Duration::from_secs(7)
            }
        );
        let err =
            decode::<Value>("getUpdates", 429, b"<html>slow down</html>", None).expect_err("429");
        assert!(matches!(err, TelegramError::RateLimited { .. }));
    }

    #[test]
    fn api_errors_hide_the_token() {
        let body = br#"{"ok":false,"error_code":401,"description":"Unauthorized for 123:abc"}"#;
        let err = decode::<Value>("getMe", 401, body, Some("123:abc")).expect_err("401");
        assert_eq!(
            err.to_string(),
            "Telegram answered 401: getMe: Unauthorized for ****"
        );
    }

    #[test]
    fn chat_ids_and_usernames() {
        assert_eq!(chat_param("-1001234"), json!(-1001234));
        assert_eq!(chat_param("marketfeed"), json!("@marketfeed"));
        assert_eq!(chat_param("@marketfeed"), json!("@marketfeed"));
    }
}
