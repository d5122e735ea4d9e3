//! A minimal Chrome DevTools Protocol client for the dashboard test: enough
//! to emulate a phone-sized viewport (headless Chromium will not make a
//! window narrower than 500 px, so `--window-size=390,…` is not a phone),
//! click and type in the page, read values and take screenshots.
//!
//! Chromium is started with `--remote-debugging-port=0` and prints the
//! browser's WebSocket address on stderr; one page target is created and
//! attached in flat mode, and every command then carries its session id.

use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::WebSocket;

/// How long one command (or Chromium's start) may take on a busy machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// A headless Chromium with one attached page.
pub struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
}

impl Browser {
    /// Starts `chromium` with a fresh profile under `profile` and attaches
    /// to a blank page.
    pub fn start(chromium: &Path, profile: &Path, common_flags: &[&str]) -> Browser {
        let err_file = profile.with_extension("cdp-stderr");
        let child = Command::new(chromium)
            .args(common_flags)
            .arg("--remote-debugging-port=0")
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err_file).expect("chromium stderr file"))
            .spawn()
            .expect("starting chromium");
        let deadline = Instant::now() + PATIENCE;
        let url = loop {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(&err_file) {
                let _ = f.read_to_string(&mut text);
            }
            if let Some(url) = text
                .lines()
                .find_map(|l| l.strip_prefix("DevTools listening on "))
            {
                break url.trim().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "chromium printed no DevTools address; stderr:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let host = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .expect("a ws:// DevTools address")
            .to_string();
        let stream = TcpStream::connect(&host).expect("connecting to DevTools");
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        let (ws, _) =
            tungstenite::client::client(url.as_str(), stream).expect("DevTools handshake");
        let mut browser = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"]
            .as_str()
            .expect("a target id")
            .to_string();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser
    }

    /// Sends one command (to the page once attached) and returns its result;
    /// events in between are skipped; a protocol error fails the test.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.ws
            .send(tungstenite::Message::text(message.to_string()))
            .expect("sending to DevTools");
        loop {
            let reply = self.ws.read().expect("reading from DevTools");
            let Ok(text) = reply.to_text() else { continue };
            let Ok(value) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if value["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(error) = value.get("error") {
                panic!("{method} failed: {error}");
            }
            return value["result"].clone();
        }
    }

    /// Makes the page's viewport `width`×`height` CSS pixels, as a phone.
    pub fn emulate_phone(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 2, "mobile": true }),
        );
    }

    /// Makes the page see `prefers-color-scheme: scheme` (`dark`/`light`).
    pub fn emulate_color_scheme(&mut self, scheme: &str) {
        self.call(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        );
    }

    /// Opens `url`.
    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// The value of JavaScript `expression` in the page.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{expression} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is `true`; false after [`PATIENCE`].
    pub fn wait_for(&mut self, expression: &str) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.eval(expression) == Value::Bool(true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// A PNG of the whole page (beyond the viewport's height too).
    pub fn screenshot(&mut self) -> Vec<u8> {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        base64_decode(shot["data"].as_str().expect("screenshot data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (with padding) to bytes; DevTools sends screenshots so.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        let count = chunk.len() * 6 / 8;
        for i in 0..count {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}
