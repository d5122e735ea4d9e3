//! Before resending a post whose earlier attempt has no recorded answer
//! (the process died, or the request timed out, while it was in flight),
//! ask the backend whether it already has it, where the backend has a read
//! route for that kind of post. Volume alerts: `GET /api/volume-alerts?tier=elite`
//! lists the recent alerts; a match on symbol + hourTimestamp + alertType
//! means it arrived. Other kinds are resent (the backend upserts them, or
//! their dedup is the job's).

use serde_json::Value;

use super::client::{Auth, BackendClient, GetError};
use super::kind::Kind;
use super::queue::StoredPost;

/// The read route listing recent volume alerts.
pub(crate) const VOLUME_ALERTS_READ_PATH: &str = "/api/volume-alerts";

/// What the backend says about an in-flight post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recheck {
    /// It has the post: record it as delivered, do not send.
    Found,
    /// It does not list it, or this kind cannot be checked: send.
    Send,
    /// No answer (network, timeout): try again later, do not send yet.
    Unreachable(String),
}

/// Whether `kind` has a read route to check against.
pub(crate) fn checkable(kind: Kind) -> bool {
    kind == Kind::VolumeAlert
}

/// Asks the backend (blocking: run on the blocking pool).
pub(crate) fn recheck(client: &BackendClient, post: &StoredPost) -> Recheck {
    if !checkable(post.kind) {
        return Recheck::Send;
    }
    match client.get_json(VOLUME_ALERTS_READ_PATH, &[("tier", "elite")], Auth::Header) {
        Ok(answer) if lists_volume_alert(&answer, &post.body) => Recheck::Found,
        Ok(_) => Recheck::Send,
        Err(GetError::Network { detail, .. }) => Recheck::Unreachable(detail),
        // Any answer that is not the list cannot tell (even a 401: the read
        // route may want other credentials; a refused key shows on the
        // POST itself). Resending risks a duplicate, not resending risks a
        // loss; at-least-once wins.
        Err(e) => {
            tracing::warn!(error = %e, "cannot check whether {} arrived; resending it", post.label);
            Recheck::Send
        }
    }
}

/// Whether the answer of the read route (`{"alerts":[...]}`, `{"data":[...]}`
/// or a bare list) holds an alert with the same symbol, hour and type as
/// `sent` (a missing `alertType` counts as `SPIKE`, the backend's default).
pub(crate) fn lists_volume_alert(answer: &Value, sent: &Value) -> bool {
    let list = answer
        .get("alerts")
        .or_else(|| answer.get("data"))
        .unwrap_or(answer)
        .as_array();
    let Some(list) = list else {
        return false;
    };
    let alert_type = |v: &Value| {
        v.get("alertType")
            .and_then(Value::as_str)
            .unwrap_or("SPIKE")
            .to_string()
    };
    let same_instant = |a: Option<&Value>, b: Option<&Value>| match (
        a.and_then(Value::as_str),
        b.and_then(Value::as_str),
    ) {
        (Some(a), Some(b)) => instant(a).is_some() && instant(a) == instant(b),
        _ => false,
    };
    list.iter().any(|alert| {
        alert
            .get("symbol")
            .is_some_and(|s| Some(s) == sent.get("symbol"))
            && same_instant(alert.get("hourTimestamp"), sent.get("hourTimestamp"))
            && alert_type(alert) == alert_type(sent)
    })
}

/// An ISO timestamp down to the second (`2025-12-03T14:00:00Z` and the
/// backend's `2025-12-03T14:00:00.000Z` are the same hour).
fn instant(iso: &str) -> Option<&str> {
    iso.get(..19)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listed_alert_matches_on_symbol_hour_and_type() {
        let sent =
            json!({"symbol":"BTCUSDT","hourTimestamp":"2025-12-03T14:00:00Z","alertType":"SPIKE"});
        let answer = json!({"alerts":[
            {"symbol":"ETHUSDT","hourTimestamp":"2025-12-03T14:00:00.000Z","alertType":"SPIKE"},
            {"symbol":"BTCUSDT","hourTimestamp":"2025-12-03T14:00:00.000Z","alertType":"SPIKE"}]});
        assert!(lists_volume_alert(&answer, &sent));
        // Another type or hour is another alert.
        let update = json!({"symbol":"BTCUSDT","hourTimestamp":"2025-12-03T14:00:00Z","alertType":"HALF_UPDATE"});
        assert!(!lists_volume_alert(&answer, &update));
        let later =
            json!({"symbol":"BTCUSDT","hourTimestamp":"2025-12-03T15:00:00Z","alertType":"SPIKE"});
        assert!(!lists_volume_alert(&answer, &later));
        // A bare list, and a missing type meaning SPIKE.
        let bare = json!([{"symbol":"BTCUSDT","hourTimestamp":"2025-12-03T14:00:00Z"}]);
        assert!(lists_volume_alert(&bare, &sent));
        assert!(!lists_volume_alert(&json!({"error":"x"}), &sent));
    }
}
