//! The backend's active-alert list, read leniently: what an alert watches,
//! the user's plan, and each usable entry (the others become problems to
//! log, never a failure of the whole list). Pure.

use serde_json::Value;

/// The backend route listing active alerts.
pub const ACTIVE_PATH: &str = "/api/user-alerts-trigger/active";

/// What an alert watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// `PRICE_CROSS`: last price.
    Price,
    /// `FUNDING_CROSS`: funding rate as a decimal.
    Funding,
    /// `OI_CROSS`: open interest in USD.
    OpenInterest,
}

impl AlertKind {
    /// From the backend's `alertType`.
    pub fn parse(s: &str) -> Option<AlertKind> {
        match s {
            "PRICE_CROSS" => Some(AlertKind::Price),
            "FUNDING_CROSS" => Some(AlertKind::Funding),
            "OI_CROSS" => Some(AlertKind::OpenInterest),
            _ => None,
        }
    }
}

/// The user's plan, which sets how often their alerts are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Checked once per free window (5 minutes).
    Free,
    /// Checked every tick (30 s).
    Pro,
    /// Checked every tick (30 s).
    Elite,
}

impl Tier {
    /// From the backend's `userTier`; anything unknown is treated as free
    /// (the slower check: never more than the user paid for).
    pub fn parse(s: Option<&str>) -> Tier {
        match s {
            Some("pro") => Tier::Pro,
            Some("elite") => Tier::Elite,
            _ => Tier::Free,
        }
    }
}

/// One alert of the backend's active list.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlert {
    /// The alert id (`id`), echoed back as `alertId`.
    pub id: String,
    /// Binance symbol, upper-case.
    pub symbol: String,
    /// What it watches.
    pub kind: AlertKind,
    /// The threshold.
    pub threshold: f64,
    /// The value at the last check; `None` before the first.
    pub last_checked_value: Option<f64>,
    /// The user's plan.
    pub tier: Tier,
}

/// A number the backend may send as a JSON number or a numeric string
/// (decimal columns are often serialised as strings).
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|f: &f64| f.is_finite())
}

/// Parses the `active` answer. Entries that cannot be used are returned as
/// problems (to log), never a failure of the whole list.
pub fn parse_active(body: &Value) -> Result<(Vec<ActiveAlert>, Vec<String>), String> {
    let Some(list) = body.get("alerts").and_then(Value::as_array) else {
        return Err("answer has no `alerts` array".to_string());
    };
    let mut alerts = Vec::with_capacity(list.len());
    let mut problems = Vec::new();
    for (i, a) in list.iter().enumerate() {
        let id = match &a["id"] {
            Value::String(s) if !s.is_empty() => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => {
                problems.push(format!("alert #{i} has no id; skipped"));
                continue;
            }
        };
        let Some(symbol) = a["symbol"]
            .as_str()
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
        else {
            problems.push(format!("alert {id} has no symbol; skipped"));
            continue;
        };
        let Some(kind) = a["alertType"].as_str().and_then(AlertKind::parse) else {
            problems.push(format!(
                "alert {id} has an unknown alertType {}; skipped",
                a["alertType"]
            ));
            continue;
        };
        let Some(threshold) = number(&a["threshold"]) else {
            problems.push(format!(
                "alert {id} has no numeric threshold ({}); skipped",
                a["threshold"]
            ));
            continue;
        };
        let last_checked_value = match &a["lastCheckedValue"] {
            Value::Null => None,
            v => match number(v) {
                Some(n) => Some(n),
                None => {
                    problems.push(format!(
                        "alert {id} has an unusable lastCheckedValue ({v}); treated as null"
                    ));
                    None
                }
            },
        };
        alerts.push(ActiveAlert {
            id,
            symbol,
            kind,
            threshold,
            last_checked_value,
            tier: Tier::parse(a["userTier"].as_str()),
        });
    }
    Ok((alerts, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_active_list_is_parsed_leniently() {
        let body = json!({"alerts": [
            {"id": "a1", "userId": "u", "symbol": "btcusdt", "alertType": "PRICE_CROSS",
             "threshold": 65000, "lastCheckedValue": null, "lastCheckedAt": null,
             "deliveryMethod": "email", "userTier": "pro"},
            {"id": 7, "symbol": "ETHUSDT", "alertType": "FUNDING_CROSS",
             "threshold": "0.0001", "lastCheckedValue": "0.00005", "userTier": "vip"},
            {"id": "bad1", "symbol": "ETHUSDT", "alertType": "VOLUME_CROSS", "threshold": 1},
            {"id": "bad2", "symbol": "ETHUSDT", "alertType": "OI_CROSS", "threshold": null},
            {"symbol": "ETHUSDT", "alertType": "OI_CROSS", "threshold": 1}
        ]});
        let (alerts, problems) = parse_active(&body).expect("list");
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].symbol, "BTCUSDT");
        assert_eq!(alerts[0].tier, Tier::Pro);
        assert_eq!(alerts[0].last_checked_value, None);
        assert_eq!(alerts[1].id, "7");
        assert_eq!(alerts[1].threshold, 0.0001);
        assert_eq!(alerts[1].last_checked_value, Some(0.00005));
        assert_eq!(
            alerts[1].tier,
            Tier::Free,
            "unknown tiers get the slow check"
        );
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(parse_active(&json!({"error": "x"})).is_err());
    }
}
