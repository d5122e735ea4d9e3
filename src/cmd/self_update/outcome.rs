//! How a self-update attempt ended: done, nothing to do, or a [`Problem`]
//! (refused, rolled back, failed) with its reason.

use std::fmt;

/// Why an update did not happen (or did not stick).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// Refused before anything was replaced.
    Refused(String),
    /// The new version failed; the previous one was restored and runs.
    RolledBack(String),
    /// Something broke that we could not repair by ourselves.
    Failed(String),
}

impl Problem {
    /// The outcome recorded in update.json.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Problem::Refused(_) => "refused",
            Problem::RolledBack(_) => "rolled-back",
            Problem::Failed(_) => "failed",
        }
    }

    /// The reason alone, as recorded in update.json.
    pub(crate) fn reason(&self) -> &str {
        match self {
            Problem::Refused(r) | Problem::RolledBack(r) | Problem::Failed(r) => r,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Refused(r) => write!(f, "refused: {r}; the installed binary is untouched"),
            Problem::RolledBack(r) => write!(f, "rolled back: {r}"),
            Problem::Failed(r) => write!(f, "failed: {r}"),
        }
    }
}

/// How an attempt ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Done {
    /// Installed and (if the service runs) restarted and healthy.
    Installed,
    /// Nothing to do, or `--check` reported: nothing recorded.
    NothingDone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_reason() {
        let p = Problem::RolledBack("0.1.2 did not come up".into());
        assert_eq!(p.outcome(), "rolled-back");
        assert_eq!(p.to_string(), "rolled back: 0.1.2 did not come up");
    }
}
