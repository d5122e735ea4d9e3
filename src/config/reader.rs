//! Reading settings from [`Sources`] into typed values, collecting every
//! problem instead of stopping at the first. A value that is unset reads as
//! the setting's declared default; a bad value is a problem, and the default
//! stands in for it so reading goes on (the configuration is refused anyway).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use super::display;
use super::settings::{Number, Setting, Text};
use super::sources::{Origin, Sources};
use super::types::Report;

/// Collects typed values and problems in one pass.
pub(crate) struct Reader<'a> {
    /// Where values are read from.
    pub(crate) sources: &'a Sources,
    /// Problems and warnings so far.
    pub(crate) report: Report,
}

impl<'a> Reader<'a> {
    /// A reader over `sources` with nothing reported yet.
    pub(crate) fn new(sources: &'a Sources) -> Reader<'a> {
        Reader {
            sources,
            report: Report::default(),
        }
    }

    /// Records a problem.
    pub(crate) fn problem(&mut self, why: String) {
        self.report.problems.push(why);
    }

    /// The value set under any of the setting's names, trimmed, with its
    /// origin; `None` when unset.
    pub(crate) fn raw(&self, setting: &Setting) -> Option<(String, Origin)> {
        match self.sources.lookup(setting) {
            // An empty assignment (`KEY=`) means "not set", as in the old scripts.
            Some((value, _)) if value.trim().is_empty() => None,
            Some((value, origin)) => Some((value.trim().to_string(), origin)),
            None => None,
        }
    }

    /// The value set, else the default (`None`: unset without a default).
    pub(crate) fn optional(&self, setting: &Setting) -> Option<String> {
        self.raw(setting)
            .map(|(v, _)| v)
            .or_else(|| setting.default.map(str::to_string))
    }

    /// The value set, else the typed default.
    pub(crate) fn text(&self, setting: &Text) -> String {
        self.raw(setting)
            .map_or_else(|| setting.default.to_string(), |(v, _)| v)
    }

    /// A URL with one of `schemes`, without a trailing slash; the default
    /// when unset; `None` when unset without a default, or bad (a problem).
    pub(crate) fn url(&mut self, setting: &Setting, schemes: &[&str]) -> Option<String> {
        let (value, origin) = match self.raw(setting) {
            Some(found) => found,
            None => (setting.default?.to_string(), Origin::Default),
        };
        match check_url(&value, schemes) {
            Ok(url) => Some(url),
            Err(why) => {
                self.problem(format!("{} ({origin}): {why}", setting.name()));
                None
            }
        }
    }

    /// A number in its declared range, else its typed default.
    pub(crate) fn number<T>(&mut self, setting: &Number<T>) -> T
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        self.number_in(setting, setting.range)
            .unwrap_or(setting.default)
    }

    /// A number in `range`; `None` when unset without a default, or bad (a
    /// problem).
    pub(crate) fn number_in<T>(&mut self, setting: &Setting, range: (T, T)) -> Option<T>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let value = self.optional(setting)?;
        match value.parse::<T>() {
            Ok(n) if n >= range.0 && n <= range.1 => Some(n),
            Ok(_) => {
                self.problem(format!(
                    "{}: {value} is out of range ({} to {})",
                    setting.name(),
                    range.0,
                    range.1
                ));
                None
            }
            Err(_) => {
                self.problem(format!("{}: `{value}` is not a number", setting.name()));
                None
            }
        }
    }

    /// Records a problem when a required setting is unset.
    pub(crate) fn require(&mut self, setting: &Setting) {
        if self.raw(setting).is_none() {
            self.problem(format!(
                "{} is required (also accepted: {}); set it in the env file or use `run --local`",
                setting.name(),
                setting.names[1..].join(", ")
            ));
        }
    }
}

/// Checks a URL's scheme and host and returns it without a trailing slash.
fn check_url(value: &str, schemes: &[&str]) -> Result<String, String> {
    // Messages quote the value: never with its credentials.
    let shown = display::mask_url_credentials(value);
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err(format!(
            "`{shown}` is not a URL (expected {}://…)",
            schemes[0]
        ));
    };
    if !schemes.contains(&scheme) {
        return Err(format!(
            "`{shown}` has scheme {scheme}, expected one of {}",
            schemes.join(", ")
        ));
    }
    if value.contains(char::is_whitespace) {
        return Err(format!(
            "`{shown}` contains a blank; systemd passes everything after `=` (a trailing ` #…` too): put comments on their own line"
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("`{shown}` has no valid host"));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// Splits a comma- or space-separated list, dropping a leading `@` of each item.
pub(crate) fn split_list(value: &str) -> Vec<String> {
    value
        .split([',', ' '])
        .map(|s| s.trim().trim_start_matches('@').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Parses `channel=category` pairs (comma- or space-separated); channel names
/// are case-insensitive, so they are kept lower-case, without a leading `@`.
pub(crate) fn parse_categories(value: &str) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for pair in value
        .split([',', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some((channel, category))
                if !channel.trim().trim_start_matches('@').is_empty()
                    && !category.trim().is_empty() =>
            {
                map.insert(
                    channel.trim().trim_start_matches('@').to_ascii_lowercase(),
                    category.trim().to_string(),
                );
            }
            _ => {
                return Err(format!(
                    "`{pair}` is not channel=category (e.g. marketfeed=macro)"
                ))
            }
        }
    }
    Ok(map)
}
