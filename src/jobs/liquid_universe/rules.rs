//! Which symbols are liquid: enter above the enter threshold of 24h quote
//! volume, stay while at or above the exit threshold (hysteresis, so a symbol
//! hovering around $100M does not flap in and out every five minutes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::settings;

/// Thresholds in USDT of 24h quote volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Strictly above this, a symbol enters.
    pub enter: f64,
    /// At or above this, a liquid symbol stays.
    pub exit: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        let enter = settings::LIQUID_ENTER_USD.default;
        Thresholds {
            enter,
            exit: settings::liquid_exit_default(enter),
        }
    }
}

/// One liquid symbol, as posted to the backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Latest 24h quote volume.
    pub quote_volume_24h: f64,
    /// When it entered the set, ms.
    pub entered_at_ms: u64,
    /// When it was last seen liquid, ms.
    pub last_seen_at_ms: u64,
}

/// Computes the new liquid set from a COMPLETE read of the universe's 24h
/// volumes (`volumes`: symbol → quote volume, universe symbols only).
pub fn select(
    previous: &BTreeMap<String, Member>,
    volumes: &BTreeMap<String, f64>,
    thresholds: Thresholds,
    now_ms: u64,
) -> BTreeMap<String, Member> {
    volumes
        .iter()
        .filter_map(|(symbol, &volume)| {
            let prior = previous.get(symbol);
            let liquid = match prior {
                Some(_) => volume >= thresholds.exit,
                None => volume > thresholds.enter,
            };
            liquid.then(|| {
                (
                    symbol.clone(),
                    Member {
                        quote_volume_24h: volume,
                        entered_at_ms: prior.map_or(now_ms, |m| m.entered_at_ms),
                        last_seen_at_ms: now_ms,
                    },
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volumes(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(s, v)| (s.to_string(), *v)).collect()
    }

    #[test]
    fn hysteresis_between_enter_and_exit() {
        let t = Thresholds::default();
        let first = select(
            &BTreeMap::new(),
            &volumes(&[("A", 150e6), ("B", 100e6), ("C", 80e6)]),
            t,
            1_000,
        );
        assert_eq!(
            first.keys().collect::<Vec<_>>(),
            vec!["A"],
            "B is not strictly above 100M"
        );
        // A falls to 60M: stays. C rises to 101M: enters.
        let second = select(
            &first,
            &volumes(&[("A", 60e6), ("B", 99e6), ("C", 101e6)]),
            t,
            2_000,
        );
        assert_eq!(second.keys().collect::<Vec<_>>(), vec!["A", "C"]);
        assert_eq!(second["A"].entered_at_ms, 1_000, "entry time kept");
        assert_eq!(second["A"].last_seen_at_ms, 2_000);
        // A below exit: leaves. A symbol that vanished from the read leaves too.
        let third = select(&second, &volumes(&[("A", 49e6)]), t, 3_000);
        assert!(third.is_empty());
    }
}
