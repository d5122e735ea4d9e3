//! Every job the appliance runs, registered once: its name (the `JOB` log
//! field, its key in `/health`, what `--only` and `VOLSPIKE_DISABLED_JOBS`
//! accept) and whether its failure is critical. `volspike run` builds each
//! one from the configuration and the shared services (`jobs::build`, one
//! arm per [`JobId`], so a job registered here and never built does not
//! compile); the README, `docs/health.md`, `docs/jobs.md`, `deploy.sh` and
//! `run --help` name exactly these jobs (checked by tests).
//!
//! The list is a leaf: it imports nothing, so the configuration (which checks
//! `VOLSPIKE_DISABLED_JOBS`) and `/health` read it without importing the jobs.

/// Which job an entry of [`ALL`] is (the builder matches on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobId {
    /// The funding WebSocket: a thread of its own, not a scheduled job.
    FundingStream,
    /// Checks what the stream fills.
    FundingHealth,
    /// Hourly quote-volume spikes.
    VolumeSpike,
    /// The set of liquid symbols open_interest polls.
    LiquidUniverse,
    /// Open-interest samples and alerts.
    OpenInterest,
    /// Users' price / funding / OI cross alerts.
    UserAlerts,
    /// Telegram channel news.
    Telegram,
}

/// What a job's failure means for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Importance {
    /// The appliance exists for it: its failure makes `/health` 503 `critical`.
    Critical,
    /// A failed tick makes `/health` 200 `degraded`; it is retried.
    Optional,
}

/// One registered job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSpec {
    /// Which job.
    pub id: JobId,
    /// Its name everywhere (log, `/health`, `--only`, `VOLSPIKE_DISABLED_JOBS`).
    pub name: &'static str,
    /// Critical or optional.
    pub importance: Importance,
}

/// Every job, in the order messages list them.
pub const ALL: &[JobSpec] = &[
    JobSpec {
        id: JobId::FundingStream,
        name: "funding_stream",
        // It feeds the funding API, which the backend reads.
        importance: Importance::Critical,
    },
    JobSpec {
        id: JobId::FundingHealth,
        name: "funding_health",
        importance: Importance::Optional,
    },
    JobSpec {
        id: JobId::VolumeSpike,
        name: "volume_spike",
        importance: Importance::Optional,
    },
    JobSpec {
        id: JobId::LiquidUniverse,
        name: "liquid_universe",
        importance: Importance::Optional,
    },
    JobSpec {
        id: JobId::OpenInterest,
        name: "open_interest",
        importance: Importance::Optional,
    },
    JobSpec {
        id: JobId::UserAlerts,
        name: "user_alerts",
        importance: Importance::Optional,
    },
    JobSpec {
        id: JobId::Telegram,
        name: "telegram",
        importance: Importance::Optional,
    },
];

/// The registered job called `name`.
pub fn find(name: &str) -> Option<&'static JobSpec> {
    ALL.iter().find(|j| j.name == name)
}

/// Whether `name` is a registered job whose failure is critical.
pub fn is_critical(name: &str) -> bool {
    find(name).is_some_and(|j| j.importance == Importance::Critical)
}

/// Every name, comma-separated (for messages that list the jobs).
pub fn names() -> String {
    ALL.iter().map(|j| j.name).collect::<Vec<_>>().join(", ")
}

/// The jobs that run: not disabled (`VOLSPIKE_DISABLED_JOBS`), and named by
/// `--only` when it is given.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    /// `VOLSPIKE_DISABLED_JOBS`.
    pub disabled: &'a [String],
    /// `--only` (empty: every job).
    pub only: &'a [String],
}

impl Selection<'_> {
    /// Whether job `name` runs.
    pub fn wants(&self, name: &str) -> bool {
        !self.disabled.iter().any(|d| d == name)
            && (self.only.is_empty() || self.only.iter().any(|o| o == name))
    }

    /// Whether `--only` names jobs explicitly.
    pub fn is_explicit(&self) -> bool {
        !self.only.is_empty()
    }
}

/// `--only` names must be jobs: a typo is a usage error, not a silent no-op.
pub fn check_only(only: &[String]) -> Result<(), String> {
    match only.iter().find(|name| find(name).is_none()) {
        Some(name) => Err(format!("--only: unknown job `{name}` (jobs: {})", names())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn registered() -> Vec<&'static str> {
        let mut names: Vec<&str> = ALL.iter().map(|j| j.name).collect();
        names.sort();
        names
    }

    #[test]
    fn names_and_ids_are_unique() {
        let mut names = registered();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for (i, a) in ALL.iter().enumerate() {
            assert!(ALL[i + 1..].iter().all(|b| b.id != a.id), "{a:?} twice");
        }
    }

    #[test]
    fn only_the_funding_stream_is_critical() {
        assert!(is_critical("funding_stream"));
        assert!(!is_critical("volume_spike"));
        assert!(!is_critical("nonsense"));
    }

    #[test]
    fn jobs_are_selected_by_only_and_disabled() {
        let none: Vec<String> = Vec::new();
        let all = Selection {
            disabled: &none,
            only: &none,
        };
        assert!(all.wants("funding_stream"));
        assert!(!all.is_explicit());
        let only = strings(&["funding_stream"]);
        let picked = Selection {
            disabled: &none,
            only: &only,
        };
        assert!(picked.wants("funding_stream"));
        assert!(!picked.wants("liquid_universe"));
        assert!(picked.is_explicit());
        let disabled = strings(&["funding_stream"]);
        let off = Selection {
            disabled: &disabled,
            only: &only,
        };
        assert!(!off.wants("funding_stream"));
    }

    #[test]
    fn only_accepts_registered_names() {
        assert!(check_only(&strings(&["funding_stream", "liquid_universe"])).is_ok());
        assert!(check_only(&strings(&["open_interest", "user_alerts", "telegram"])).is_ok());
        let err = check_only(&strings(&["volume_spikes"])).expect_err("typo");
        assert_eq!(
            err,
            "--only: unknown job `volume_spikes` (jobs: funding_stream, funding_health, volume_spike, liquid_universe, open_interest, user_alerts, telegram)"
        );
    }

    /// The backticked first cells of the README's "What it runs" table.
    fn readme_jobs(readme: &str) -> Vec<&str> {
        let section = readme
            .split("\n## What it runs")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap_or_default();
        let mut names: Vec<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|cell| cell.split('`').next())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_readme_names_exactly_the_registered_jobs() {
        let readme = include_str!("../../README.md");
        assert_eq!(readme_jobs(readme), registered());
    }

    #[test]
    fn deploy_sh_accepts_exactly_the_registered_jobs() {
        let script = include_str!("../../deploy.sh");
        let line = script
            .lines()
            .find_map(|l| l.strip_prefix("jobs_known=\""))
            .expect("deploy.sh has jobs_known=");
        let mut names: Vec<&str> = line.trim_end_matches('"').split(' ').collect();
        names.sort();
        assert_eq!(names, registered());
    }

    /// tests/droplet/{update,socket}.test.sh read the names from this file's
    /// `name: "…",` lines: they must stay one per line, in that form.
    #[test]
    fn the_droplet_scripts_can_read_the_names_from_this_file() {
        let source = include_str!("registry.rs");
        let mut scraped: Vec<&str> = source
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("name: \""))
            .filter_map(|rest| rest.strip_suffix("\","))
            .collect();
        scraped.sort();
        assert_eq!(scraped, registered());
    }

    #[test]
    fn the_jobs_doc_has_a_section_per_registered_job() {
        let doc = include_str!("../../docs/jobs.md");
        for job in ALL {
            let heading = format!("\n## {}\n", job.name);
            assert!(
                doc.contains(&heading),
                "docs/jobs.md has no `## {}`",
                job.name
            );
        }
    }

    #[test]
    fn the_health_doc_lists_the_optional_jobs() {
        let doc = include_str!("../../docs/health.md");
        let optional = doc
            .split("\n## Optional")
            .nth(1)
            .and_then(|rest| rest.split("): its last").next())
            .and_then(|rest| rest.split("every other job (").nth(1))
            .expect("docs/health.md lists the optional jobs");
        let mut named: Vec<&str> = optional
            .split(',')
            .map(|n| n.trim().trim_matches('`'))
            .collect();
        named.sort();
        let mut expected: Vec<&str> = ALL
            .iter()
            .filter(|j| j.importance == Importance::Optional)
            .map(|j| j.name)
            .collect();
        expected.sort();
        assert_eq!(named, expected);
    }
}
