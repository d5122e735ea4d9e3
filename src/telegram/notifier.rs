//! Alert messages to a Telegram chat (`sendMessage`), off the caller's path.
//!
//! The volume-spike job hands each alert text to [`TelegramNotifier::send_alert`],
//! which only puts it on a bounded queue: a Telegram outage or flood limit
//! delays nothing but the Telegram message itself, never a backend post. One
//! sender task drains the queue, honours `retry_after`, retries transport
//! failures a few times, and drops (and logs) what Telegram refuses.

use std::time::Duration;

use tokio::sync::mpsc;

use super::bot_api::BotApi;
use super::TelegramError;
use crate::config::TelegramConfig;

/// Alerts waiting for Telegram; beyond this, new ones are dropped and logged
/// (a burst that large during an outage is stale by the time it would go).
const QUEUE: usize = 200;
/// Attempts per message for transport failures and 5xx answers.
const ATTEMPTS: u32 = 3;
/// Pause between those attempts.
const RETRY_PAUSE: Duration = Duration::from_secs(2);
/// Flood-limit waits honoured per message before giving up on it.
const MAX_FLOOD_WAITS: u32 = 5;

/// Sends alert texts to the configured chat. Cheap to clone; a disabled one
/// (no token or no chat id) accepts and ignores everything.
#[derive(Clone, Debug)]
pub struct TelegramNotifier {
    /// The queue to the sender task; `None` when disabled.
    queue: Option<mpsc::Sender<String>>,
}

impl TelegramNotifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> TelegramNotifier {
        TelegramNotifier { queue: None }
    }

    /// Enabled when both `TELEGRAM_BOT_TOKEN` and `TELEGRAM_ALERT_CHAT_ID`
    /// are set. Must be called inside a tokio runtime (it spawns the sender).
    pub fn from_config(config: &TelegramConfig) -> TelegramNotifier {
        match (&config.bot_token, &config.alert_chat_id) {
            (Some(token), Some(chat)) => {
                TelegramNotifier::start(BotApi::new(&config.api_url, token.clone()), chat.clone())
            }
            _ => TelegramNotifier::disabled(),
        }
    }

    /// Starts the sender task for `chat_id` on the current runtime.
    pub fn start(api: BotApi, chat_id: String) -> TelegramNotifier {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(sender(api, chat_id, rx));
        TelegramNotifier { queue: Some(tx) }
    }

    /// Whether messages go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues `text` for the alert chat and returns at once. A full queue
    /// drops the message with a warning rather than make the caller wait.
    pub async fn send_alert(&self, text: &str) {
        let Some(queue) = &self.queue else {
            return;
        };
        match queue.try_send(text.to_string()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("Telegram alert queue full; dropping the alert message: {text}")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("Telegram alert sender has stopped; dropping: {text}")
            }
        }
    }
}

/// Drains the queue until every notifier clone is gone.
async fn sender(api: BotApi, chat_id: String, mut rx: mpsc::Receiver<String>) {
    while let Some(text) = rx.recv().await {
        deliver(&api, &chat_id, &text).await;
    }
}

/// Sends one message, waiting out flood limits and retrying short outages.
async fn deliver(api: &BotApi, chat_id: &str, text: &str) {
    let mut failures = 0;
    let mut flood_waits = 0;
    loop {
        let (api2, chat, body) = (api.clone(), chat_id.to_string(), text.to_string());
        let result = tokio::task::spawn_blocking(move || api2.send_message(&chat, &body))
            .await
            .unwrap_or_else(|e| Err(TelegramError::Transport(format!("send task failed: {e}"))));
        match result {
            Ok(()) => {
                tracing::info!("alert sent to Telegram chat {chat_id}");
                return;
            }
            Err(TelegramError::RateLimited { retry_after }) if flood_waits < MAX_FLOOD_WAITS => {
                flood_waits += 1;
                tracing::warn!(
                    "Telegram flood limit on sendMessage; waiting {}s",
                    retry_after.as_secs()
                );
                tokio::time::sleep(retry_after).await;
            }
            Err(e @ (TelegramError::Transport(_) | TelegramError::Api { code: 500.., .. }))
                if failures + 1 < ATTEMPTS =>
            {
                failures += 1;
                tracing::warn!("Telegram sendMessage failed ({e}); retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(e) => {
                tracing::error!("Telegram alert message dropped: {e}");
                return;
            }
        }
    }
}
