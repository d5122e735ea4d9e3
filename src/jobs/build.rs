//! Builds the selected jobs of [`crate::jobs::registry::ALL`] from the
//! configuration and the shared services: one arm per job, so a registered
//! job that nothing builds does not compile.

use crate::config::Config;
use crate::jobs::funding_health::FundingHealth;
use crate::jobs::funding_stream as stream;
use crate::jobs::liquid_universe::rules::Thresholds;
use crate::jobs::liquid_universe::LiquidUniverse;
use crate::jobs::open_interest::{self, OpenInterest};
use crate::jobs::registry::{JobId, Selection, ALL};
use crate::jobs::scheduler::ScheduledJob;
use crate::jobs::services::Services;
use crate::jobs::telegram::TelegramJob;
use crate::jobs::user_alerts::UserAlerts;
use crate::jobs::volume_spike::rules::Rules;
use crate::jobs::volume_spike::VolumeSpike;

/// What `volspike run` starts.
#[derive(Default)]
pub struct Built {
    /// The scheduled jobs.
    pub scheduled: Vec<ScheduledJob>,
    /// Whether the funding stream (a thread of its own) runs.
    pub funding_stream: bool,
}

/// The selected jobs, built. `Err` is a usage error: `--only` names a job
/// that cannot run with this configuration.
pub fn build(
    config: &Config,
    services: &Services,
    selection: Selection<'_>,
) -> Result<Built, String> {
    let mut built = Built::default();
    for spec in ALL.iter().filter(|spec| selection.wants(spec.name)) {
        match spec.id {
            JobId::FundingStream => built.funding_stream = true,
            // funding_health checks what the stream fills: no stream, no check.
            JobId::FundingHealth => {
                if selection.wants(stream::NAME) {
                    built.scheduled.push(ScheduledJob::new(FundingHealth::new(
                        services,
                        config.thresholds.health_min_symbols,
                    )));
                }
            }
            JobId::LiquidUniverse => {
                let thresholds = Thresholds {
                    enter: config.thresholds.liquid_enter,
                    exit: config.thresholds.liquid_exit,
                };
                built
                    .scheduled
                    .push(ScheduledJob::new(LiquidUniverse::new(services, thresholds)));
            }
            // telegram: on when channels are configured; `--local` logs the
            // ingest through the outbox's local mode instead of posting it.
            JobId::Telegram => {
                if config.telegram.channels.is_empty() {
                    if selection.is_explicit() {
                        return Err(
                            "--only telegram: no channels configured (TELEGRAM_CHANNEL_IDS)".into(),
                        );
                    }
                } else {
                    built.scheduled.push(ScheduledJob::new(TelegramJob::new(
                        &config.telegram,
                        services.outbox.clone(),
                        services.state.clone(),
                    )));
                }
            }
            JobId::VolumeSpike => {
                let rules = Rules {
                    min_ratio: config.thresholds.spike_ratio,
                    min_quote_volume: config.thresholds.spike_min_volume,
                };
                built
                    .scheduled
                    .push(ScheduledJob::new(VolumeSpike::new(services, rules)));
            }
            JobId::OpenInterest => {
                let settings = open_interest::Settings::from_config(
                    &config.open_interest,
                    config.funding.stale_after,
                );
                built
                    .scheduled
                    .push(ScheduledJob::new(OpenInterest::from_services(
                        services, settings,
                    )));
            }
            // User alerts live in the backends: nothing to check in --local.
            JobId::UserAlerts => {
                match UserAlerts::from_services(services, config.user_alerts.clone()) {
                    Some(job) => built.scheduled.push(ScheduledJob::new(job)),
                    None => {
                        tracing::info!("user_alerts not started: no backend configured (--local)")
                    }
                }
            }
        }
    }
    Ok(built)
}

/// The registered name of each built job is the job's own `NAME` (its log
/// field and `/health` key).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::registry::find;
    use crate::jobs::Job;

    #[test]
    fn registered_names_are_the_jobs_own() {
        let pairs = [
            (JobId::FundingStream, stream::NAME),
            (JobId::FundingHealth, FundingHealth::NAME),
            (JobId::VolumeSpike, VolumeSpike::NAME),
            (JobId::LiquidUniverse, LiquidUniverse::NAME),
            (JobId::OpenInterest, OpenInterest::NAME),
            (JobId::UserAlerts, UserAlerts::NAME),
            (JobId::Telegram, TelegramJob::NAME),
        ];
        assert_eq!(pairs.len(), ALL.len());
        for (id, name) in pairs {
            let spec = find(name).unwrap_or_else(|| panic!("{name} is not registered"));
            assert_eq!(spec.id, id, "{name}");
        }
    }
}
