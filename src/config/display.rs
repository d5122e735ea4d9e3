//! How `check-config` shows values: credentials inside URLs masked, and a
//! setting left unset shown with what it means (its computed default, off,
//! or required) instead of a bare "(not set)".

use super::legacy;
use super::settings::{self, Setting, Unset};
use super::sources::{Origin, Sources};
use super::types::Effective;

/// The effective value of every documented setting, secrets masked.
pub fn effective(sources: &Sources) -> Vec<Effective> {
    settings::ALL
        .iter()
        .filter(|s| settings::is_documented(s))
        .map(|s| {
            let found = sources
                .lookup(s)
                .filter(|(v, _)| !v.trim().is_empty())
                .map(|(v, o)| (v, Some(o)))
                .or_else(|| match legacy::old_percent(sources, s) {
                    Some(Ok((percent, origin, old))) => Some((
                        format!("{percent} (from the old fraction {old})"),
                        Some(origin),
                    )),
                    _ => None,
                })
                .or_else(|| s.default.map(|d| (d.to_string(), Some(Origin::Default))));
            match found {
                Some((value, origin)) => Effective {
                    name: s.name(),
                    shown: if s.secret {
                        "****".into()
                    } else {
                        mask_url_credentials(&value)
                    },
                    origin,
                },
                None => Effective {
                    name: s.name(),
                    shown: unset_meaning(s, sources),
                    origin: None,
                },
            }
        })
        .collect()
}

/// `scheme://user:secret@host/…` → `scheme://user:****@host/…`; a lone
/// `scheme://token@host` → `scheme://****@host`. Anything else unchanged.
pub fn mask_url_credentials(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some(at) = authority.rfind('@') else {
        return value.to_string();
    };
    let (userinfo, host) = (&authority[..at], &authority[at + 1..]);
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:****"),
        None => "****".to_string(),
    };
    format!("{scheme}://{masked}@{host}{tail}")
}

/// What an unset `setting` means, given the other `sources`: a computed
/// default (`VOLSPIKE_LIQUID_EXIT_USD` is half the enter threshold),
/// "required", or "off".
pub fn unset_meaning(setting: &Setting, sources: &Sources) -> String {
    match setting.unset {
        Unset::Computed(how) if setting.names == settings::LIQUID_EXIT_USD.names => {
            let enter = sources
                .lookup(&settings::LIQUID_ENTER_USD)
                .and_then(|(v, _)| v.trim().parse::<f64>().ok())
                .unwrap_or(settings::LIQUID_ENTER_USD.default);
            format!("{} ({how})", settings::liquid_exit_default(enter))
        }
        Unset::Computed(how) => format!("(not set: {how})"),
        Unset::Required => "(not set: required unless `run --local`)".to_string(),
        Unset::Off | Unset::Default => "(not set: off)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_masked() {
        assert_eq!(
            mask_url_credentials("http://u:KEY@host:8080/path?q=1"),
            "http://u:****@host:8080/path?q=1"
        );
        assert_eq!(
            mask_url_credentials("https://TOKEN@host/"),
            "https://****@host/"
        );
        assert_eq!(
            mask_url_credentials("https://host/a@b"),
            "https://host/a@b",
            "an @ in the path is not userinfo"
        );
        assert_eq!(mask_url_credentials("plain"), "plain");
    }

    #[test]
    fn unset_settings_say_what_they_mean() {
        let s = Sources::from_text(&[], "VOLSPIKE_LIQUID_ENTER_USD=300000000\n");
        assert_eq!(
            unset_meaning(&settings::LIQUID_EXIT_USD, &s),
            "150000000 (half of VOLSPIKE_LIQUID_ENTER_USD)"
        );
        let s = Sources::from_text(&[], "");
        assert!(unset_meaning(&settings::LIQUID_EXIT_USD, &s).starts_with("50000000 "));
        assert!(unset_meaning(&settings::BACKEND_URL, &s).contains("required"));
        assert_eq!(
            unset_meaning(&settings::TELEGRAM_TOKEN, &s),
            "(not set: off)"
        );
    }
}
