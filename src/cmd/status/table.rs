//! `volspike status` as text for a person: the unit, the appliance, then a
//! table of jobs and one line each for the WebSocket, backlog, Binance
//! weight, stalled loops and every problem `/health` lists. Reads the `/health` JSON loosely (a missing
//! field prints `-`), so a `status` of one version can read another's server.

use std::fmt::Write;
use std::time::SystemTime;

use serde_json::Value;

use super::report::{Report, Verdict};

/// Longest summary or error shown in the jobs table; the JSON has it whole.
const DETAIL_WIDTH: usize = 100;

/// The whole text, as of `now` (for "ago" and "in"). Every string that
/// came from `/health` or the probe is made printable first: a hostile or
/// broken upstream must not reach the operator's terminal with escape
/// sequences.
pub fn render(report: &Report, now: SystemTime) -> String {
    let health = report.health.as_ref().map(scrub);
    let problem = report.problem.as_deref().map(printable);
    let mut out = String::new();
    let verdict = match report.verdict {
        Verdict::Healthy => "healthy",
        Verdict::Degraded => "DEGRADED",
        Verdict::NotRunning => "NOT RUNNING",
    };
    let _ = writeln!(out, "volspike: {verdict}");
    let _ = writeln!(out, "  unit     {}", report.unit.describe());
    let _ = writeln!(
        out,
        "  address  {} ({})",
        report.target.addr, report.target.origin
    );
    if let Some(problem) = &problem {
        let _ = writeln!(out, "  problem  {problem}");
    }
    let Some(health) = &health else {
        return out;
    };
    let _ = writeln!(
        out,
        "  health   {} (HTTP {}), version {}, up {}, {} mode",
        text(&health["status"]),
        report.http_status.map_or("-".into(), |s| s.to_string()),
        text(&health["version"]),
        health["uptimeSeconds"].as_f64().map_or("-".into(), span),
        text(&health["mode"]),
    );
    out.push('\n');
    jobs(&mut out, health, now);
    out.push('\n');
    let _ = writeln!(out, "WEBSOCKET  {}", websocket(&health["websocket"], now));
    let _ = writeln!(out, "BACKLOG    {}", backlog(health));
    let _ = writeln!(out, "WEIGHT     {}", weight(&health["binance"]));
    let stalled: Vec<&str> = health["loops"]
        .as_array()
        .map(|loops| {
            loops
                .iter()
                .filter(|l| l["alive"] == Value::Bool(false))
                .filter_map(|l| l["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    if !stalled.is_empty() {
        let _ = writeln!(out, "STALLED    {}", stalled.join(", "));
    }
    for problem in health["problems"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "PROBLEM    {} {}: {}",
            text(&problem["severity"]),
            text(&problem["component"]),
            clip(&text(&problem["reason"]), DETAIL_WIDTH)
        );
    }
    out
}

/// The jobs table, columns padded to their widest cell.
fn jobs(out: &mut String, health: &Value, now: SystemTime) {
    let header = [
        "JOB",
        "STATE",
        "LAST RUN",
        "RESULT",
        "NEXT RUN",
        "SUMMARY / ERROR",
    ];
    let mut rows: Vec<[String; 6]> = Vec::new();
    if let Some(jobs) = health["jobs"].as_object() {
        for (name, job) in jobs {
            let detail = if job["lastResult"] == "error" {
                &job["lastError"]
            } else {
                &job["lastSummary"]
            };
            rows.push([
                name.clone(),
                text(&job["state"]),
                when(&job["lastRun"], now),
                text(&job["lastResult"]),
                when(&job["nextRun"], now),
                clip(&text(detail), DETAIL_WIDTH),
            ]);
        }
    }
    if rows.is_empty() {
        out.push_str("no jobs reported\n");
        return;
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: &[&str]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                l.push_str(cell);
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(out, &header);
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(out, &cells);
    }
}

fn websocket(ws: &Value, now: SystemTime) -> String {
    if ws.is_null() {
        return "-".into();
    }
    let mut line = text(&ws["state"]);
    if ws["connectedSince"].is_string() {
        line.push_str(&format!(" since {}", when(&ws["connectedSince"], now)));
    }
    line.push_str(&format!(
        ", last message {}, {} messages, {} reconnects",
        when(&ws["lastMessageAt"], now),
        text(&ws["messagesReceived"]),
        text(&ws["reconnectAttempts"]),
    ));
    if let Some(e) = ws["lastError"].as_str() {
        line.push_str(&format!("; last error: {}", clip(e, DETAIL_WIDTH)));
    }
    line
}

fn backlog(health: &Value) -> String {
    let Some(backends) = health["delivery"].as_object().filter(|b| !b.is_empty()) else {
        return if health["mode"] == "local" {
            "none: --local mode logs alerts instead of posting".into()
        } else {
            "no backend reported".into()
        };
    };
    backends
        .iter()
        .map(|(name, s)| {
            let mut part = format!("{name}: {} pending", text(&s["pending"]));
            if let Some(age) = s["oldestPendingSeconds"].as_f64() {
                part.push_str(&format!(" (oldest {})", span(age)));
            }
            part.push_str(&format!(
                ", {} delivered, {} retried, {} dropped",
                text(&s["delivered"]),
                text(&s["retried"]),
                text(&s["dropped"])
            ));
            // What holds delivery back, when anything does.
            if s["deadLetters"].as_u64().is_some_and(|n| n > 0) {
                part.push_str(&format!(
                    ", {} dead letters (volspike outbox list)",
                    text(&s["deadLetters"])
                ));
            }
            for field in ["paused", "diskError"] {
                if let Some(why) = s[field].as_str() {
                    part.push_str(&format!(
                        ", {}: {why}",
                        if field == "paused" { "PAUSED" } else { "DISK" }
                    ));
                }
            }
            part
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The governor's status (serialized snake_case, as `/health` has it).
fn weight(b: &Value) -> String {
    if b.is_null() {
        return "-".into();
    }
    let paused = match b["paused_until"].as_u64() {
        Some(ms) => format!(
            "paused until {}",
            crate::clock::iso(crate::clock::from_unix_ms(ms))
        ),
        None => "not paused".into(),
    };
    format!(
        "{} of {} in use (Binance limit {}), {} waiting, {paused}",
        text(&b["used_in_window"]),
        text(&b["ceiling"]),
        text(&b["limit"]),
        text(&b["queued"]),
    )
}

/// `s` with every control character (C0, DEL, C1: escape sequences,
/// carriage returns, newlines) and every bidirectional override replaced by
/// `?`, so it prints as itself on one line.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// A copy of `v` with every string and object key made [`printable`].
fn scrub(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(printable(s)),
        Value::Array(items) => Value::Array(items.iter().map(scrub).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (printable(k), scrub(v))).collect())
        }
        other => other.clone(),
    }
}

/// A JSON scalar as text; `-` for null or missing.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An ISO time as "12 s ago" / "in 3 min"; `-` when absent, the text
/// itself when it does not parse.
fn when(v: &Value, now: SystemTime) -> String {
    let Some(iso) = v.as_str() else {
        return "-".into();
    };
    let Ok(t) = humantime::parse_rfc3339_weak(iso) else {
        return iso.to_string();
    };
    match now.duration_since(t) {
        Ok(ago) => format!("{} ago", span(ago.as_secs_f64())),
        Err(ahead) => format!("in {}", span(ahead.duration().as_secs_f64())),
    }
}

/// Seconds as `3 d 4 h`, `2 h 5 min`, `4 min 3 s`, `12 s`.
fn span(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {} s", s % 60)
    } else {
        format!("{s} s")
    }
}

/// At most `width` characters, with `…` when cut.
fn clip(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::status::address::Target;
    use crate::cmd::status::unit::UnitState;
    use std::time::Duration;

    /// A degraded report (HTTP 503, unit not installed, default address).
    fn degraded(health: serde_json::Value, problem: Option<String>) -> Report {
        Report {
            verdict: Verdict::Degraded,
            unit: UnitState::NotInstalled,
            target: Target {
                addr: "127.0.0.1:8080".parse().expect("addr"),
                origin: "default".into(),
            },
            http_status: Some(503),
            health: Some(health),
            problem,
        }
    }

    #[test]
    fn renders_jobs_websocket_backlog_and_weight() {
        let now = crate::clock::from_unix_ms(1_764_771_000_000); // 2025-12-03T14:10:00Z
        let health = serde_json::json!({
            "status": "degraded", "version": "0.1.0", "uptimeSeconds": 3725, "mode": "backend",
            "jobs": {
                "funding_stream": {"state": "ok", "lastRun": "2025-12-03T14:09:48Z",
                    "lastResult": "ok", "lastSummary": "connected; 600 symbols", "nextRun": null},
                "liquid_universe": {"state": "failing", "lastRun": "2025-12-03T14:05:00Z",
                    "lastResult": "error", "lastError": "exchangeInfo failed",
                    "nextRun": "2025-12-03T14:15:00Z"}
            },
            "loops": [{"name": "scheduler", "alive": false}, {"name": "http", "alive": true}],
            "problems": [{"component": "loop:scheduler", "severity": "critical",
                "reason": "no progress for 12 s (deadline 10 s)"}],
            "delivery": {"primary": {"pending": 3, "oldestPendingSeconds": 75,
                "delivered": 10, "retried": 2, "dropped": 0},
                "dev": {"pending": 1, "delivered": 0, "retried": 4, "dropped": 1, "deadLetters": 1,
                    "paused": "backend rejects the API key (HTTP 401 on /api/x)", "diskError": null}},
            "binance": {"used_in_window": 40, "ceiling": 1920, "limit": 2400, "queued": 0,
                "paused_until": null},
            "websocket": {"state": "connected", "connectedSince": "2025-12-03T13:10:00Z",
                "lastMessageAt": "2025-12-03T14:09:59Z", "messagesReceived": 1234,
                "reconnectAttempts": 1, "lastError": null}
        });
        let report = degraded(health, None);
        let text = render(&report, now);
        assert!(text.starts_with("volspike: DEGRADED\n"), "{text}");
        assert!(
            text.contains(
                "health   degraded (HTTP 503), version 0.1.0, up 1 h 2 min, backend mode"
            ),
            "{text}"
        );
        let table = "JOB              STATE    LAST RUN       RESULT  NEXT RUN      SUMMARY / ERROR\n\
                     funding_stream   ok       12 s ago       ok      -             connected; 600 symbols\n\
                     liquid_universe  failing  5 min 0 s ago  error   in 5 min 0 s  exchangeInfo failed\n";
        assert!(text.contains(table), "{text}");
        assert!(text.contains("WEBSOCKET  connected since 1 h 0 min ago, last message 1 s ago, 1234 messages, 1 reconnects\n"), "{text}");
        assert!(text.contains("BACKLOG    dev: 1 pending, 0 delivered, 4 retried, 1 dropped, 1 dead letters (volspike outbox list), PAUSED: backend rejects the API key (HTTP 401 on /api/x); primary: 3 pending (oldest 1 min 15 s), 10 delivered, 2 retried, 0 dropped\n"), "{text}");
        assert!(
            text.contains(
                "WEIGHT     40 of 1920 in use (Binance limit 2400), 0 waiting, not paused\n"
            ),
            "{text}"
        );
        assert!(text.contains("STALLED    scheduler\n"), "{text}");
        assert!(
            text.contains(
                "PROBLEM    critical loop:scheduler: no progress for 12 s (deadline 10 s)\n"
            ),
            "{text}"
        );
        assert_eq!(span(Duration::from_secs(90_000).as_secs_f64()), "1 d 1 h");
        assert_eq!(clip("abcdef", 4), "abc…");
    }

    #[test]
    fn strings_from_health_cannot_reach_the_terminal_raw() {
        assert_eq!(
            printable("ok\u{1b}[2J\u{1b}]0;pwned\u{7}\r\nx"),
            "ok?[2J?]0;pwned???x"
        );
        assert_eq!(printable("a\u{9b}31mb\u{202E}c"), "a?31mb?c");
        assert_eq!(printable("BTCUSDT · 0.05 %"), "BTCUSDT · 0.05 %");
        let report = degraded(
            serde_json::json!({
                "status": "degraded\u{1b}[31m",
                "version": "1\u{1b}]8;;http://evil\u{7}",
                "jobs": { "evil\u{1b}[2J": { "state": "error", "lastError": "boom\u{1b}[1A\r" } },
                "websocket": { "state": "connected", "lastError": "\u{1b}c" },
                "loops": [ { "name": "x\u{1b}[K", "alive": false } ]
            }),
            Some("bad\u{1b}[0m".into()),
        );
        let text = render(&report, SystemTime::now());
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("degraded?[31m"), "{text}");
        assert!(text.contains("evil?[2J"), "{text}");
        assert!(text.contains("bad?[0m"), "{text}");
    }
}
