//! Names the old scripts read that are not simply another name of one of
//! our settings: the old OI poller's thresholds (a fraction where we take a
//! percent), its switch for the funding WebSocket, and names with no
//! counterpart at all. Plain renames (same meaning, same unit) are extra
//! names in the settings table instead; see `docs/old-settings.md`.
//!
//! Every old name in use gets one line in `check-config` saying what
//! became of it, so an imported env file never changes behaviour silently.

use super::settings::{self, Setting};
use super::sources::{Origin, Sources};

/// An old name whose value is a fraction (0.03) of a setting we take in
/// percent (3).
#[derive(Debug)]
pub struct Fraction {
    /// The old poller's name.
    pub old: &'static str,
    /// The setting it feeds.
    pub setting: &'static Setting,
}

/// The old poller's thresholds, fractions of the open interest.
pub const FRACTIONS: [Fraction; 3] = [
    Fraction {
        old: "OI_SPIKE_THRESHOLD_PCT_5MIN",
        setting: &settings::OI_PCT_5M.setting,
    },
    Fraction {
        old: "OI_SPIKE_THRESHOLD_PCT_15MIN",
        setting: &settings::OI_PCT_15M.setting,
    },
    Fraction {
        old: "OI_SPIKE_THRESHOLD_PCT_60MIN",
        setting: &settings::OI_PCT_1H.setting,
    },
];

/// Old names with no setting of the same meaning, and why.
pub const IGNORED: [(&str, &str); 6] = [
    (
        "OI_LOOKBACK_WINDOW_5MIN",
        "lookbacks are fixed at 5 min / 15 min / 1 hour, the timeframes the backend knows",
    ),
    (
        "OI_LOOKBACK_WINDOW_15MIN",
        "lookbacks are fixed at 5 min / 15 min / 1 hour, the timeframes the backend knows",
    ),
    (
        "OI_LOOKBACK_WINDOW_60MIN",
        "lookbacks are fixed at 5 min / 15 min / 1 hour, the timeframes the backend knows",
    ),
    (
        "OI_MAX_REQ_PER_MIN",
        "Binance weight is shared by every job: VOLSPIKE_WEIGHT_CEILING_PCT and VOLSPIKE_OI_WEIGHT_SHARE_PCT",
    ),
    (
        "OI_MIN_INTERVAL_SEC",
        "the poll interval is VOLSPIKE_OI_POLL_SECS, stretched automatically when the weight budget is short",
    ),
    (
        "OI_MAX_INTERVAL_SEC",
        "the poll interval is VOLSPIKE_OI_POLL_SECS, stretched automatically when the weight budget is short",
    ),
];

/// The old poller's switch for reading the funding WebSocket daemon.
pub const WS_FUNDING_ENABLED: &str = "WS_FUNDING_ENABLED";

/// The old funding daemon's URL: the funding data now lives in-process.
const WS_FUNDING_API_URL: &str = "WS_FUNDING_API_URL";

/// The old name of the alert bot's token, also accepted for
/// [`settings::TELEGRAM_TOKEN`].
pub const OLD_ALERT_BOT_TOKEN: &str = "TELEGRAM_TOKEN";

/// Whether `name` is an old name handled here (not an unknown key).
pub fn is_known(name: &str) -> bool {
    FRACTIONS.iter().any(|f| f.old == name)
        || IGNORED.iter().any(|(old, _)| *old == name)
        || name == WS_FUNDING_ENABLED
        || name == WS_FUNDING_API_URL
}

/// The value of `name` in `sources` (environment first, then the file's
/// last assignment), empty values counting as unset.
pub fn lookup(sources: &Sources, name: &str) -> Option<(String, Origin)> {
    if let Some(v) = sources.env.get(name) {
        return (!v.trim().is_empty()).then(|| (v.trim().to_string(), Origin::Env(name.into())));
    }
    sources
        .file
        .iter()
        .rev()
        .find(|a| a.key == name)
        .filter(|a| !a.value.trim().is_empty())
        .map(|a| {
            (
                a.value.trim().to_string(),
                Origin::File(a.key.clone(), a.line),
            )
        })
}

/// The percent `setting` takes from its old fraction-valued name, when that
/// name is set: `Ok((percent text, origin, old value))`, or `Err` for a value
/// that is not a number.
pub fn old_percent(
    sources: &Sources,
    setting: &Setting,
) -> Option<Result<(String, Origin, String), String>> {
    let fraction = FRACTIONS
        .iter()
        .find(|f| f.setting.name() == setting.name())?;
    let (value, origin) = lookup(sources, fraction.old)?;
    Some(match value.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok((percent_text(x), origin, value)),
        _ => Err(format!(
            "{} ({origin}): `{value}` is not a number (the old poller's fraction, e.g. 0.03 for 3 %)",
            fraction.old
        )),
    })
}

/// What `WS_FUNDING_ENABLED` asks for: `Some(true)` the funding stream on
/// (always so here), `Some(false)` off, `None` unset; `Err` an unreadable value.
pub fn ws_funding_enabled(sources: &Sources) -> Result<Option<bool>, String> {
    let Some((value, origin)) = lookup(sources, WS_FUNDING_ENABLED) else {
        return Ok(None);
    };
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        _ => Err(format!(
            "{WS_FUNDING_ENABLED} ({origin}): `{value}` is neither true nor false"
        )),
    }
}

/// A fraction as a percent, without float noise (0.07 → `7`, not `7.000000000000001`).
fn percent_text(fraction: f64) -> String {
    format!("{}", (fraction * 100.0 * 1e9).round() / 1e9)
}

/// One `check-config` line for every old name in use: how it is honoured,
/// or why it is ignored. Renames in the settings table are included, so the
/// operator sees each imported name accounted for.
pub fn notes(sources: &Sources) -> Vec<String> {
    let mut notes = Vec::new();
    for f in &FRACTIONS {
        if let Some((value, _)) = lookup(sources, f.old) {
            if lookup(sources, f.setting.name()).is_some() {
                notes.push(format!(
                    "{}={value} (the old poller's name) is overridden by {}",
                    f.old,
                    f.setting.name()
                ));
            } else if let Ok(x) = value.parse::<f64>() {
                notes.push(format!(
                    "{}={value} (the old poller's fraction) is honoured as {}={}",
                    f.old,
                    f.setting.name(),
                    percent_text(x)
                ));
            }
        }
    }
    for setting in settings::old_poller_renames() {
        for old in setting.names.iter().filter(|n| n.starts_with("OI_")) {
            if lookup(sources, old).is_some() {
                notes.push(format!(
                    "{old} (the old poller's name) is honoured as {}",
                    setting.name()
                ));
            }
        }
    }
    for (old, why) in IGNORED {
        if lookup(sources, old).is_some() {
            notes.push(format!("{old} (the old poller's name) is ignored: {why}"));
        }
    }
    if lookup(sources, WS_FUNDING_API_URL).is_some() {
        notes.push(format!(
            "{WS_FUNDING_API_URL} is ignored: the funding data is read in-process from the funding_stream job"
        ));
    }
    match ws_funding_enabled(sources) {
        Ok(Some(true)) => notes.push(format!(
            "{WS_FUNDING_ENABLED}=true is honoured: the funding_stream job runs (it always does unless disabled)"
        )),
        Ok(Some(false)) => notes.push(format!(
            "{WS_FUNDING_ENABLED}=false is honoured as VOLSPIKE_DISABLED_JOBS=funding_stream: no funding WebSocket; the funding API answers 503, open_interest takes mark prices from REST ticker/price, and volume alerts carry no funding rate"
        )),
        Ok(None) | Err(_) => {}
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(file: &str) -> Sources {
        Sources::from_text(&[], file)
    }

    #[test]
    fn the_old_fraction_becomes_a_percent() {
        let s = sources("OI_SPIKE_THRESHOLD_PCT_15MIN=0.07\n");
        let found = old_percent(&s, &settings::OI_PCT_15M);
        let Some(Ok((percent, Origin::File(name, 1), old))) = found else {
            panic!("expected a value from the file: {found:?}");
        };
        assert_eq!(
            (percent.as_str(), name.as_str(), old.as_str()),
            ("7", "OI_SPIKE_THRESHOLD_PCT_15MIN", "0.07")
        );
        assert!(old_percent(&s, &settings::OI_PCT_5M).is_none());
        let bad = sources("OI_SPIKE_THRESHOLD_PCT_5MIN=three\n");
        assert!(matches!(
            old_percent(&bad, &settings::OI_PCT_5M),
            Some(Err(_))
        ));
    }

    #[test]
    fn every_old_name_in_use_is_accounted_for() {
        let s = sources(
            "OI_SPIKE_THRESHOLD_PCT_5MIN=0.03\nOI_ALERT_COOLDOWN_5MIN=300\nOI_LOOKBACK_WINDOW_5MIN=300\nWS_FUNDING_ENABLED=true\nWS_FUNDING_API_URL=http://localhost:8888/funding\n",
        );
        let notes = notes(&s);
        assert_eq!(notes.len(), 5, "{notes:#?}");
        assert!(notes[0].contains("honoured as VOLSPIKE_OI_PCT_5M=3"));
        assert!(notes[1].contains("OI_ALERT_COOLDOWN_5MIN"));
        assert!(notes[1].contains("VOLSPIKE_OI_COOLDOWN_5M_SECS"));
        assert!(notes[2].contains("ignored"));
        for name in [
            "OI_SPIKE_THRESHOLD_PCT_60MIN",
            "OI_MAX_REQ_PER_MIN",
            "WS_FUNDING_ENABLED",
        ] {
            assert!(is_known(name), "{name}");
        }
        assert!(!is_known("OI_SOMETHING_ELSE"));
        assert_eq!(
            ws_funding_enabled(&sources("WS_FUNDING_ENABLED=False\n")),
            Ok(Some(false))
        );
        assert!(ws_funding_enabled(&sources("WS_FUNDING_ENABLED=maybe\n")).is_err());
    }
}
