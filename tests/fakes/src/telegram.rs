//! The fake Telegram: the few Bot API methods volspike calls and the public
//! channel preview pages (`/s/<channel>`), on one 127.0.0.1 port.
//!
//! Bot API (`api_url()` + `/bot<TOKEN>/<method>`), parameters from the query
//! string, a JSON body or a form body, answered like Telegram does
//! (`{"ok":true,"result":…}` or `{"ok":false,"error_code":…,"description":…}`):
//! * `getUpdates`: `offset` confirms (forgets) every update below it, as
//!   Telegram does, `allowed_updates` filters, `limit` (default 100) caps;
//!   `timeout` is accepted but the fake answers at once.
//! * `getMe`, `getChat` (numeric id or `@username`), `getChatMember` (the
//!   bot's status per chat, set with [`FakeTelegram::add_chat`]).
//! * `sendMessage`: recorded (see [`FakeTelegram::sent_messages`]).
//! * [`FakeTelegram::rate_limit_next`]: the next calls answer 429 with
//!   `parameters.retry_after`.
//!
//! Preview (`preview_url()` + `/<channel>`, i.e. `/s/<channel>`): the fixture
//! HTML set with [`FakeTelegram::set_preview_page`] (per `before=` value).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Map, Value};

use crate::http_server::{Handler, HttpRequest, HttpResponse, HttpServer};
use crate::http_util::{json_response, parse_query, percent_decode};
use crate::sync::lock;

/// The fake bot's user id (`getMe`).
pub const FAKE_BOT_ID: i64 = 7_000_000_001;

/// One request the fake Telegram answered.
#[derive(Debug, Clone, PartialEq)]
pub struct TelegramRequest {
    /// The Bot API method (`getUpdates`, `sendMessage`…), or `preview` for a
    /// `/s/<channel>` page.
    pub method: String,
    /// The token in the path (empty for preview pages).
    pub token: String,
    /// Path without the query string.
    pub path: String,
    /// Every parameter (query, JSON body or form body) as one JSON object;
    /// query and form values are strings.
    pub params: Value,
    /// The status answered.
    pub status: u16,
    /// When the request arrived.
    pub received_at: SystemTime,
}

impl TelegramRequest {
    /// Parameter `name` as text (numbers are written out).
    pub fn param(&self, name: &str) -> Option<String> {
        match self.params.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// One `sendMessage` call.
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// `chat_id` as sent (as text).
    pub chat_id: String,
    /// `text` as sent.
    pub text: String,
    /// Every parameter.
    pub params: Value,
}

/// A running fake Telegram. Dropping it closes the port and every connection.
///
/// Any token is accepted until [`FakeTelegram::expect_token`].
pub struct FakeTelegram {
    /// The bound address.
    addr: SocketAddr,
    /// Shared with the handler.
    state: Arc<TelegramState>,
    /// The server; `None` after [`FakeTelegram::shutdown`].
    server: Mutex<Option<HttpServer>>,
}

impl FakeTelegram {
    /// Starts on 127.0.0.1, ephemeral port.
    pub fn start() -> io::Result<FakeTelegram> {
        let state = Arc::new(TelegramState::default());
        let handler: Handler = {
            let state = Arc::clone(&state);
            Arc::new(move |req| Some(state.handle(req)))
        };
        let server = HttpServer::bind("127.0.0.1:0", handler)?;
        Ok(FakeTelegram {
            addr: server.local_addr(),
            state,
            server: Mutex::new(Some(server)),
        })
    }

    /// Bot API base URL, `http://127.0.0.1:PORT` (what `TELEGRAM_API_URL` takes).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Preview base URL, `http://127.0.0.1:PORT/s` (what `TELEGRAM_PREVIEW_URL` takes).
    pub fn preview_url(&self) -> String {
        format!("http://{}/s", self.addr)
    }

    /// From now on the token in the path must be `token`, else 401.
    pub fn expect_token(&self, token: &str) {
        *lock(&self.state.token) = Some(token.to_string());
    }

    /// Queues an update of `kind` (`channel_post`, `edited_channel_post`,
    /// `message`…) carrying `message`; returns its `update_id` (1, 2, …).
    pub fn push_update(&self, kind: &str, message: Value) -> i64 {
        let id = self.state.next_update.fetch_add(1, Ordering::SeqCst) + 1;
        let mut update = Map::new();
        update.insert("update_id".into(), json!(id));
        update.insert(kind.to_string(), message);
        lock(&self.state.updates).push(Value::Object(update));
        id
    }

    /// Queues a `channel_post` update.
    pub fn push_channel_post(&self, message: Value) -> i64 {
        self.push_update("channel_post", message)
    }

    /// Queues an `edited_channel_post` update.
    pub fn push_edited_channel_post(&self, message: Value) -> i64 {
        self.push_update("edited_channel_post", message)
    }

    /// The updates Telegram still holds (not yet confirmed by an `offset`).
    pub fn pending_updates(&self) -> Vec<Value> {
        lock(&self.state.updates).clone()
    }

    /// Makes `chat` (a Bot API Chat object with at least `id`) known to
    /// `getChat`, and the bot's `getChatMember` status in it (`administrator`,
    /// `left`…; `None` answers "member not found").
    pub fn add_chat(&self, chat: Value, bot_status: Option<&str>) {
        lock(&self.state.chats).push((chat, bot_status.map(str::to_string)));
    }

    /// The next `n` Bot API calls answer 429 with `retry_after` seconds.
    pub fn rate_limit_next(&self, n: usize, retry_after: u64) {
        *lock(&self.state.rate_limit) = (n, retry_after);
    }

    /// The next `n` preview page requests answer 429 with `Retry-After`.
    pub fn rate_limit_preview_next(&self, n: usize, retry_after: u64) {
        *lock(&self.state.preview_rate_limit) = (n, retry_after);
    }

    /// The next `n` `sendMessage` calls answer `status` (recorded, not sent).
    pub fn fail_send_next(&self, n: usize, status: u16) {
        *lock(&self.state.send_failures) = (n, u64::from(status));
    }

    /// Serves `html` at `/s/<channel>` (`before` `None`) or at
    /// `/s/<channel>?before=<id>`. Channel names are case-insensitive.
    pub fn set_preview_page(&self, channel: &str, before: Option<i64>, html: impl Into<String>) {
        lock(&self.state.pages).insert((channel.to_ascii_lowercase(), before), html.into());
    }

    /// Every `sendMessage` answered with success, in order.
    pub fn sent_messages(&self) -> Vec<SentMessage> {
        lock(&self.state.sent).clone()
    }

    /// Polls until at least `n` messages were sent or `timeout` passed.
    pub fn wait_for_sent(&self, n: usize, timeout: Duration) -> Vec<SentMessage> {
        let deadline = Instant::now() + timeout;
        loop {
            let sent = self.sent_messages();
            if sent.len() >= n || Instant::now() >= deadline {
                return sent;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<TelegramRequest> {
        lock(&self.state.requests).clone()
    }

    /// The requests for `method` (`getUpdates`, `preview`…).
    pub fn requests_for(&self, method: &str) -> Vec<TelegramRequest> {
        lock(&self.state.requests)
            .iter()
            .filter(|r| r.method == method)
            .cloned()
            .collect()
    }

    /// Closes the port and every connection (a Telegram outage).
    pub fn shutdown(&self) {
        if let Some(mut server) = lock(&self.server).take() {
            server.shutdown();
        }
    }
}

/// Shared state behind the handler.
#[derive(Default)]
struct TelegramState {
    /// The only token accepted, once set.
    token: Mutex<Option<String>>,
    /// Updates not yet confirmed by an offset, oldest first.
    updates: Mutex<Vec<Value>>,
    /// The last update id handed out.
    next_update: AtomicI64,
    /// Known chats and the bot's status in each.
    chats: Mutex<Vec<(Value, Option<String>)>>,
    /// (remaining, retry_after) of scripted Bot API 429s.
    rate_limit: Mutex<(usize, u64)>,
    /// (remaining, retry_after) of scripted preview 429s.
    preview_rate_limit: Mutex<(usize, u64)>,
    /// (remaining, status) of scripted `sendMessage` failures.
    send_failures: Mutex<(usize, u64)>,
    /// Preview pages by (lower-case channel, `before`).
    pages: Mutex<HashMap<(String, Option<i64>), String>>,
    /// Successful `sendMessage` calls.
    sent: Mutex<Vec<SentMessage>>,
    /// Every request answered.
    requests: Mutex<Vec<TelegramRequest>>,
}

/// Takes one from a scripted (remaining, value) counter.
fn take(counter: &Mutex<(usize, u64)>) -> Option<u64> {
    let mut c = lock(counter);
    if c.0 == 0 {
        return None;
    }
    c.0 -= 1;
    Some(c.1)
}

fn api_error(status: u16, description: &str) -> (u16, Value) {
    (
        status,
        json!({"ok": false, "error_code": status, "description": description}),
    )
}

fn ok(result: Value) -> (u16, Value) {
    (200, json!({"ok": true, "result": result}))
}

impl TelegramState {
    fn handle(&self, req: HttpRequest) -> HttpResponse {
        let params = params_of(&req);
        let (method, token, response) = if let Some(channel) = req.path.strip_prefix("/s/") {
            let channel = percent_decode(channel);
            (
                "preview".to_string(),
                String::new(),
                self.preview(&channel, &params),
            )
        } else if let Some((token, method)) = req
            .path
            .strip_prefix("/bot")
            .and_then(|rest| rest.split_once('/'))
        {
            let (status, body) = self.bot_api(token, method, &params);
            (
                method.to_string(),
                token.to_string(),
                json_response(status, &body),
            )
        } else {
            let (status, body) = api_error(404, "Not Found");
            (String::new(), String::new(), json_response(status, &body))
        };
        lock(&self.requests).push(TelegramRequest {
            method,
            token,
            path: req.path,
            params,
            status: response.status,
            received_at: req.received_at,
        });
        response
    }

    fn preview(&self, channel: &str, params: &Value) -> HttpResponse {
        if let Some(retry_after) = take(&self.preview_rate_limit) {
            return HttpResponse {
                stream: None,
                status: 429,
                headers: vec![("Retry-After".into(), retry_after.to_string())],
                body: b"Too Many Requests".to_vec(),
            };
        }
        let before = params
            .get("before")
            .and_then(Value::as_str)
            .and_then(|b| b.parse().ok());
        match lock(&self.pages).get(&(channel.to_ascii_lowercase(), before)) {
            Some(html) => HttpResponse {
                stream: None,
                status: 200,
                headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
                body: html.clone().into_bytes(),
            },
            None => HttpResponse {
                stream: None,
                status: 404,
                headers: vec![("Content-Type".into(), "text/html".into())],
                body: b"<html><body>Not found</body></html>".to_vec(),
            },
        }
    }

    fn bot_api(&self, token: &str, method: &str, params: &Value) -> (u16, Value) {
        if let Some(expected) = lock(&self.token).as_deref() {
            if token != expected {
                return api_error(401, "Unauthorized");
            }
        }
        if let Some(retry_after) = take(&self.rate_limit) {
            return (
                429,
                json!({"ok": false, "error_code": 429,
                       "description": format!("Too Many Requests: retry after {retry_after}"),
                       "parameters": {"retry_after": retry_after}}),
            );
        }
        let param = |name: &str| -> Option<String> {
            match params.get(name)? {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        };
        match method {
            "getMe" => ok(json!({"id": FAKE_BOT_ID, "is_bot": true,
                                 "first_name": "VolSpike", "username": "volspike_fake_bot"})),
            "getUpdates" => self.get_updates(params, &param),
            "getChat" => match self.find_chat(param("chat_id").as_deref()) {
                Some((chat, _)) => ok(chat),
                None => api_error(400, "Bad Request: chat not found"),
            },
            "getChatMember" => match self.find_chat(param("chat_id").as_deref()) {
                Some((_, Some(status))) => ok(json!({
                    "status": status,
                    "user": {"id": FAKE_BOT_ID, "is_bot": true, "first_name": "VolSpike"}
                })),
                Some((_, None)) => api_error(400, "Bad Request: member not found"),
                None => api_error(400, "Bad Request: chat not found"),
            },
            "sendMessage" => {
                let (Some(chat_id), Some(text)) = (param("chat_id"), param("text")) else {
                    return api_error(400, "Bad Request: chat_id and text are required");
                };
                if let Some(status) = take(&self.send_failures) {
                    return api_error(status as u16, "Injected failure");
                }
                let mut sent = lock(&self.sent);
                sent.push(SentMessage {
                    chat_id: chat_id.clone(),
                    text: text.clone(),
                    params: params.clone(),
                });
                ok(json!({"message_id": sent.len(), "date": 1_764_849_600,
                          "chat": {"id": chat_id, "type": "channel"}, "text": text}))
            }
            _ => api_error(404, "Not Found: method not found"),
        }
    }

    fn get_updates(&self, params: &Value, param: &dyn Fn(&str) -> Option<String>) -> (u16, Value) {
        let offset: Option<i64> = match param("offset").map(|o| o.parse()) {
            Some(Ok(o)) => Some(o),
            Some(Err(_)) => return api_error(400, "Bad Request: invalid offset"),
            None => None,
        };
        let limit: usize = param("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(100)
            .clamp(1, 100);
        // allowed_updates is a JSON array, sent as JSON or as JSON text.
        let allowed: Option<Vec<String>> = match params.get("allowed_updates") {
            Some(Value::Array(a)) => Some(
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect(),
            ),
            Some(Value::String(s)) => serde_json::from_str(s).ok(),
            _ => None,
        };
        let mut updates = lock(&self.updates);
        if let Some(offset) = offset.filter(|o| *o > 0) {
            // Telegram forgets every update below a positive offset.
            updates.retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
        }
        let result: Vec<Value> = updates
            .iter()
            .filter(|u| match &allowed {
                Some(kinds) if !kinds.is_empty() => kinds.iter().any(|k| u.get(k).is_some()),
                _ => true,
            })
            .take(limit)
            .cloned()
            .collect();
        ok(Value::Array(result))
    }

    fn find_chat(&self, chat_id: Option<&str>) -> Option<(Value, Option<String>)> {
        let chat_id = chat_id?;
        let chats = lock(&self.chats);
        chats
            .iter()
            .find(|(chat, _)| match chat_id.strip_prefix('@') {
                Some(name) => chat["username"]
                    .as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(name)),
                None => chat["id"]
                    .as_i64()
                    .is_some_and(|id| chat_id.parse() == Ok(id)),
            })
            .cloned()
    }
}

/// Every parameter of a request: query, then JSON or form body.
fn params_of(req: &HttpRequest) -> Value {
    let mut map = Map::new();
    for (name, value) in parse_query(&req.query) {
        map.insert(name, Value::String(value));
    }
    let content_type = req
        .headers
        .iter()
        .find(|(n, _)| n == "content-type")
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    if content_type.contains("application/json") {
        if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&req.body) {
            map.extend(body);
        }
    } else if content_type.contains("application/x-www-form-urlencoded") {
        for (name, value) in parse_query(&String::from_utf8_lossy(&req.body)) {
            map.insert(name, Value::String(value));
        }
    }
    Value::Object(map)
}
