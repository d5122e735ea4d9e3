//! The active list's reading and the update-checked rule.

use std::time::Duration;

use super::*;
use crate::clock::from_unix_ms;
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

#[test]
fn update_checked_only_when_it_matters() {
    let t0 = from_unix_ms(1_764_928_800_000);
    let refresh = Duration::from_secs(300);
    let later = |s| t0 + Duration::from_secs(s);
    // No baseline yet: yes, unless one was just sent (not delivered yet).
    assert!(should_update(None, 1.0, 2.0, None, t0, refresh));
    assert!(!should_update(
        None,
        1.0,
        2.0,
        Some((t0, 1.1)),
        later(30),
        refresh
    ));
    assert!(should_update(
        None,
        1.0,
        2.0,
        Some((t0, 1.1)),
        later(300),
        refresh
    ));
    // Unchanged: never.
    assert!(!should_update(Some(1.0), 1.0, 2.0, None, t0, refresh));
    // Moved, never sent: yes; sent 30 s ago: no; 5 minutes ago: yes.
    assert!(should_update(Some(1.0), 1.5, 2.0, None, t0, refresh));
    assert!(!should_update(
        Some(1.0),
        1.5,
        2.0,
        Some((t0, 1.2)),
        later(30),
        refresh
    ));
    assert!(should_update(
        Some(1.0),
        1.5,
        2.0,
        Some((t0, 1.2)),
        later(300),
        refresh
    ));
    // Sitting on the threshold, then leaving it without crossing: at once.
    assert!(should_update(
        Some(2.0),
        2.5,
        2.0,
        Some((t0, 2.0)),
        later(30),
        refresh
    ));
    assert!(should_update(
        Some(2.0),
        1.5,
        2.0,
        Some((t0, 2.0)),
        later(30),
        refresh
    ));
}
