//! The kinds of post: a leaf module, so configuration (which backend takes
//! which kind) names them without importing the backend client.

use serde::{Deserialize, Serialize};

/// What a post is; decides shedding, logging and local-mode handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A volume spike alert or update.
    VolumeAlert,
    /// An open-interest alert.
    OiAlert,
    /// A batch of open-interest samples (the only kind shed when full).
    OiSamples,
    /// The whole liquid universe.
    Universe,
    /// A user alert crossed.
    UserAlertTrigger,
    /// A user alert checked, not crossed.
    UserAlertChecked,
    /// A batch of Telegram messages.
    Telegram,
}

impl Kind {
    /// Every kind, for metrics that list each one (even at zero).
    pub const ALL: [Kind; 7] = [
        Kind::VolumeAlert,
        Kind::OiAlert,
        Kind::OiSamples,
        Kind::Universe,
        Kind::UserAlertTrigger,
        Kind::UserAlertChecked,
        Kind::Telegram,
    ];

    /// The snake_case name, as serialized: a metrics label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::VolumeAlert => "volume_alert",
            Kind::OiAlert => "oi_alert",
            Kind::OiSamples => "oi_samples",
            Kind::Universe => "universe",
            Kind::UserAlertTrigger => "user_alert_trigger",
            Kind::UserAlertChecked => "user_alert_checked",
            Kind::Telegram => "telegram",
        }
    }

    /// Alerts are logged at INFO, kept in `recent()`, and never shed.
    pub fn is_alert(self) -> bool {
        matches!(
            self,
            Kind::VolumeAlert | Kind::OiAlert | Kind::UserAlertTrigger
        )
    }

    /// Samples are superseded every 30 s: the first to go when a queue is full.
    pub fn is_sheddable(self) -> bool {
        self == Kind::OiSamples
    }
}
