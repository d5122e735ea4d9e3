//! Writing env files: the commented template `install` leaves on a fresh
//! droplet, and the merge that imports an old env file without ever
//! overwriting a value the operator already has.
//!
//! Everything here is text in, text out; `install` decides where it goes.

use super::envfile::{self, Assignment};
use super::settings::{self, Setting};

/// The commented template: every documented setting with its help and
/// default. Optional settings are commented out (their default applies);
/// required ones are empty assignments waiting for a value.
/// `packaging/volspike.env.example` is this text for the default path.
pub fn template(env_file: &str) -> String {
    let required: Vec<_> = settings::required().map(Setting::name).collect();
    let mut out = format!(
        "# {env_file}: configuration of volspike (KEY=value lines).\n\
         # Read by systemd (EnvironmentFile= in volspike.service) and by commands run\n\
         # by hand (`volspike check-config`, `volspike status`). Keep it mode 0600\n\
         # root:root: it holds secrets. Written by `volspike install` (which imports an\n\
         # old env file when it finds one); `volspike check-config` validates it and\n\
         # exits 78 listing every problem. Secrets are never printed or logged.\n\
         #\n\
         # Fill in {}, then run\n\
         #   volspike check-config && systemctl restart volspike\n\
         #\n\
         # Lines starting with # are comments; a commented setting uses its default.\n\
         # A # anywhere else is part of the value (systemd reads X=foo #bar as\n\
         # \"foo #bar\"), so keep comments on their own lines. Quotes are optional:\n\
         # '...' keeps everything as written. Older names (\"also accepted\") work\n\
         # too; set each setting only once. The old OI poller's names (fractions such\n\
         # as OI_SPIKE_THRESHOLD_PCT_5MIN=0.03, WS_FUNDING_ENABLED) are honoured:\n\
         # check-config says how.\n",
        required.join(" and ")
    );
    for setting in settings::ALL.iter().copied() {
        if !settings::is_documented(setting) {
            continue;
        }
        out.push('\n');
        out.push_str(&format!("# {}\n", setting.help));
        if setting.names.len() > 1 {
            out.push_str(&format!(
                "# (also accepted: {})\n",
                setting.names[1..].join(", ")
            ));
        }
        if setting.is_required() {
            out.push_str(&format!("{}=\n", setting.name()));
        } else {
            out.push_str(&format!(
                "#{}={}\n",
                setting.name(),
                setting.default.map(quote).unwrap_or_default()
            ));
        }
    }
    out
}

/// Writes a value so that both systemd's `EnvironmentFile=` and our own
/// parser read it back unchanged: bare when plain, else single-quoted
/// (nothing inside is special), else double-quoted with `\` and `"` escaped.
pub fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@,+=%".contains(c));
    if plain || value.is_empty() {
        value.to_string()
    } else if !value.contains('\'') {
        format!("'{value}'")
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Whether two variable names are the same setting (`BACKEND_URL` and
/// `VOLSPIKE_API_URL` are), or the same unknown key.
fn same_setting(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (settings::find(a), settings::find(b)) {
        (Some(x), Some(y)) => std::ptr::eq(x, y),
        _ => false,
    }
}

/// The result of importing one env file into another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The new file's text.
    pub text: String,
    /// Keys taken from the imported file (added or filling an empty value).
    pub added: Vec<String>,
    /// Imported keys ignored because the existing file already has another
    /// value for them (possibly under another accepted name).
    pub kept: Vec<String>,
}

/// Imports `import` (read from `source`) into `existing`.
///
/// The operator's existing file is kept line for line: a key it already sets
/// to a non-empty value (under any accepted name) is never touched; an empty
/// assignment (`KEY=`, as the template leaves required keys) is filled in
/// place; other keys are appended. Without an existing file the result is a
/// header plus the imported assignments, rewritten in a form systemd reads
/// (old files were `source`d by shells and may say `export KEY=...`).
pub fn merge(existing: Option<&str>, import: &[Assignment], source: &str) -> Merge {
    let mut lines: Vec<String> = match existing {
        Some(text) => text.lines().map(str::to_string).collect(),
        None => vec![format!(
            "# volspike configuration, imported from {source} by `volspike install`.\n\
             # Edit, then: volspike check-config && systemctl restart volspike"
        )],
    };
    let current = existing
        .map(envfile::parse)
        .map(|(a, _)| a)
        .unwrap_or_default();
    let mut added = Vec::new();
    let mut kept = Vec::new();
    let mut appended = Vec::new();
    // The last assignment of a key wins in systemd, so import that one.
    let mut seen: Vec<&str> = Vec::new();
    for a in import.iter().rev() {
        if seen.iter().any(|k| same_setting(k, &a.key)) {
            continue;
        }
        seen.push(&a.key);
        let operator_value = current
            .iter()
            .rev()
            .find(|c| same_setting(&c.key, &a.key) && !c.value.trim().is_empty());
        if let Some(c) = operator_value {
            // Reported only when the two files disagree: a rerun of install
            // after a successful import has nothing to say.
            if c.value.trim() != a.value.trim() {
                kept.push(a.key.clone());
            }
            continue;
        }
        if a.value.trim().is_empty() {
            continue;
        }
        let line = format!("{}={}", a.key, quote(&a.value));
        // An empty assignment of the same setting is filled where it stands.
        let empty_at = current
            .iter()
            .rev()
            .find(|c| same_setting(&c.key, &a.key) && c.value.trim().is_empty())
            .map(|c| c.line - 1)
            .filter(|&i| existing.is_some() && i < lines.len());
        match empty_at {
            Some(i) => lines[i] = line,
            None => appended.push(line),
        }
        added.push(a.key.clone());
    }
    added.reverse();
    kept.reverse();
    appended.reverse();
    if !appended.is_empty() {
        if existing.is_some() {
            lines.push(String::new());
            lines.push(format!("# imported from {source} by `volspike install`"));
        }
        lines.extend(appended);
    }
    let mut text = lines.join("\n");
    text.push('\n');
    Merge { text, added, kept }
}

/// The required settings that `text` leaves unset or empty, by documented name.
pub fn missing_required(text: &str) -> Vec<&'static str> {
    let (assignments, _) = envfile::parse(text);
    settings::required()
        .filter(|setting| {
            !assignments
                .iter()
                .any(|a| setting.names.contains(&a.key.as_str()) && !a.value.trim().is_empty())
        })
        .map(|s| s.name())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Assignment> {
        let (a, errors) = envfile::parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        a
    }

    fn value<'a>(a: &'a [Assignment], key: &str) -> Option<&'a str> {
        a.iter()
            .rev()
            .find(|x| x.key == key)
            .map(|x| x.value.as_str())
    }

    #[test]
    fn template_lists_every_documented_setting_and_parses() {
        let t = template("/etc/volspike/volspike.env");
        for s in settings::ALL.iter().filter(|s| settings::is_documented(s)) {
            assert!(t.contains(s.name()), "{} missing", s.name());
            assert!(t.contains(s.help), "help of {} missing", s.name());
        }
        assert!(
            !t.contains("VOLSPIKE_WEDGE"),
            "hidden test switch documented"
        );
        assert!(t.contains("#VOLSPIKE_HTTP_ADDR=127.0.0.1:8080"));
        let assignments = parse(&t);
        let keys: Vec<_> = assignments.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, vec!["BACKEND_URL", "ALERT_INGEST_API_KEY"]);
        assert_eq!(
            missing_required(&t),
            vec!["BACKEND_URL", "ALERT_INGEST_API_KEY"]
        );
    }

    #[test]
    fn quoted_values_read_back_unchanged() {
        for v in [
            "plain",
            "",
            "two words",
            "it's",
            "a#b",
            "x \"y\" \\z",
            "$HOME",
            "a #b",
        ] {
            let text = format!("K={}\n", quote(v));
            assert_eq!(value(&parse(&text), "K"), Some(v), "{text}");
        }
    }

    #[test]
    fn import_into_nothing_rewrites_exports() {
        let (old, errors) = envfile::parse_sourced(
            "export VOLSPIKE_API_URL=https://api.example\nexport VOLSPIKE_API_KEY='k 1'\nDEBUG=1\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let m = merge(None, &old, "/home/trader/.volspike.env");
        let new = parse(&m.text);
        assert_eq!(value(&new, "VOLSPIKE_API_URL"), Some("https://api.example"));
        assert_eq!(value(&new, "VOLSPIKE_API_KEY"), Some("k 1"));
        assert_eq!(
            m.added,
            vec!["VOLSPIKE_API_URL", "VOLSPIKE_API_KEY", "DEBUG"]
        );
        assert!(!m.text.contains("export"));
        assert!(missing_required(&m.text).is_empty());
    }

    #[test]
    fn operator_values_are_never_overwritten() {
        let existing = "# mine\nBACKEND_URL=https://mine.example\nALERT_INGEST_API_KEY=\nVOLSPIKE_HTTP_ADDR=127.0.0.1:9000\n";
        let old = parse("VOLSPIKE_API_URL=https://old.example\nVOLSPIKE_API_KEY=oldkey\nVOLSPIKE_HTTP_ADDR=0.0.0.0:8080\nTELEGRAM_TOKEN=t\n");
        let m = merge(Some(existing), &old, "/home/trader/.volspike.env");
        let new = parse(&m.text);
        // Same setting under the old name: the operator's value stays.
        assert_eq!(value(&new, "BACKEND_URL"), Some("https://mine.example"));
        assert_eq!(value(&new, "VOLSPIKE_API_URL"), None);
        assert_eq!(value(&new, "VOLSPIKE_HTTP_ADDR"), Some("127.0.0.1:9000"));
        // The empty required key is filled in place, not appended.
        assert_eq!(value(&new, "ALERT_INGEST_API_KEY"), None);
        assert_eq!(value(&new, "VOLSPIKE_API_KEY"), Some("oldkey"));
        assert!(m
            .text
            .lines()
            .nth(2)
            .is_some_and(|l| l == "VOLSPIKE_API_KEY=oldkey"));
        // A missing key is appended.
        assert_eq!(value(&new, "TELEGRAM_TOKEN"), Some("t"));
        assert!(m.text.starts_with("# mine\n"));
        assert_eq!(m.added, vec!["VOLSPIKE_API_KEY", "TELEGRAM_TOKEN"]);
        assert_eq!(m.kept, vec!["VOLSPIKE_API_URL", "VOLSPIKE_HTTP_ADDR"]);
    }

    #[test]
    fn merging_twice_changes_nothing() {
        let old = parse("VOLSPIKE_API_URL=https://old.example\nVOLSPIKE_API_KEY=k\n");
        let first = merge(Some(&template("/e")), &old, "/old");
        let second = merge(Some(&first.text), &old, "/old");
        assert_eq!(first.text, second.text);
        assert!(second.added.is_empty());
        assert!(
            second.kept.is_empty(),
            "same values are not reported as kept"
        );
    }
}
