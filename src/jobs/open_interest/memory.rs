//! What the job remembers per symbol (recent samples, alert state) and how
//! it survives a restart: [`STATE_FILE`], compact JSON, versioned; an
//! unreadable or other-version file means starting empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::rules::{AlertState, History, Sample};
use crate::state::StateDir;

/// The state file in the state directory.
pub const STATE_FILE: &str = "open_interest.json";
/// Version of [`STATE_FILE`]'s layout; another version is ignored (start empty).
const STATE_VERSION: u32 = 1;

/// One symbol's memory: its recent samples and its alert state.
#[derive(Debug, Clone, Default)]
pub(super) struct SymbolMemory {
    /// Samples of the last hour (and a little).
    pub(super) history: History,
    /// Transition state and cooldowns.
    pub(super) alerts: AlertState,
}

/// [`STATE_FILE`] on disk. Samples are `[ts_ms, contracts, mark|null]`
/// arrays and the JSON is not pretty-printed: ~200 symbols × ~120 samples
/// are rewritten every tick, so the file is kept small.
#[derive(Debug, Serialize, Deserialize)]
struct Persisted {
    /// Layout version ([`STATE_VERSION`]).
    version: u32,
    /// Symbol → memory.
    symbols: BTreeMap<String, PersistedSymbol>,
}

/// One symbol in [`Persisted`].
#[derive(Debug, Serialize, Deserialize)]
struct PersistedSymbol {
    /// Samples, oldest first: `(ts_ms, contracts, mark price)`.
    samples: Vec<(u64, f64, Option<f64>)>,
    /// Alert state, as [`super::detect`] keeps it.
    alerts: AlertState,
}

/// [`STATE_FILE`]'s bytes for `symbols`.
pub(super) fn encode(symbols: &BTreeMap<String, SymbolMemory>) -> serde_json::Result<Vec<u8>> {
    let persisted = Persisted {
        version: STATE_VERSION,
        symbols: symbols
            .iter()
            .map(|(symbol, m)| {
                (
                    symbol.clone(),
                    PersistedSymbol {
                        samples: m
                            .history
                            .samples
                            .iter()
                            .map(|s| (s.ts_ms, s.contracts, s.mark_price))
                            .collect(),
                        alerts: m.alerts.clone(),
                    },
                )
            })
            .collect(),
    };
    serde_json::to_vec(&persisted)
}

/// Reads [`STATE_FILE`]; anything unreadable is logged and ignored, since
/// losing an hour of history only delays alerts, while refusing to start
/// would stop every job.
pub(super) fn load(state: &StateDir) -> BTreeMap<String, SymbolMemory> {
    let persisted: Persisted = match state.load_json(STATE_FILE) {
        Ok(Some(p)) => p,
        Ok(None) => return BTreeMap::new(),
        Err(e) => {
            tracing::warn!(
                "open_interest state unreadable; starting without history or cooldowns: {e}"
            );
            return BTreeMap::new();
        }
    };
    if persisted.version != STATE_VERSION {
        tracing::warn!(
            version = persisted.version,
            "open_interest state has another layout; starting without history or cooldowns"
        );
        return BTreeMap::new();
    }
    persisted
        .symbols
        .into_iter()
        .map(|(symbol, p)| {
            let mut history = History::default();
            for (ts_ms, contracts, mark_price) in p.samples {
                history.samples.push_back(Sample {
                    ts_ms,
                    contracts,
                    mark_price,
                });
            }
            (
                symbol,
                SymbolMemory {
                    history,
                    alerts: p.alerts,
                },
            )
        })
        .collect()
}
