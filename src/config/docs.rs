//! README's settings table and `packaging/volspike.env.example`, written
//! from the settings' declarations and checked against them: a setting
//! added, renamed or given another default fails this test until the two
//! files say the same. `UPDATE_SETTINGS_DOCS=1 cargo test --lib config::docs`
//! rewrites them from the declarations.

use std::path::{Path, PathBuf};

use super::settings::{self, Setting, Unset};
use super::template;

/// The line before README's generated table.
const BEGIN: &str = "<!-- settings table: generated from src/config/settings.rs, checked by `cargo test --lib config::docs` (UPDATE_SETTINGS_DOCS=1 rewrites it) -->";
/// The line after it.
const END: &str = "<!-- end of settings table -->";

/// One row per documented setting: its name, the older names also
/// accepted, its default (or what unset means) and its help line.
fn readme_table() -> String {
    let mut out = String::from("| setting | also accepted | default | what |\n|---|---|---|---|\n");
    for s in settings::ALL.iter().filter(|s| settings::is_documented(s)) {
        let also = s.names[1..]
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "| `{}` | {} | {} | {}{} |\n",
            s.name(),
            also,
            default_cell(s),
            s.help.replace('|', "\\|"),
            if s.secret { " (secret)" } else { "" }
        ));
    }
    out
}

/// The default column: the value, or what leaving it unset means.
fn default_cell(s: &Setting) -> String {
    match (s.unset, s.default) {
        (Unset::Default, Some(value)) => format!("`{value}`"),
        (Unset::Required, _) => "required unless `run --local`".to_string(),
        (Unset::Computed(how), _) => how.to_string(),
        (Unset::Off, _) | (Unset::Default, None) => "off".to_string(),
    }
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The block between [`BEGIN`] and [`END`] in `readme`, and where it sits.
fn table_span(readme: &str) -> Option<(usize, usize)> {
    let start = readme.find(BEGIN)? + BEGIN.len() + 1;
    let end = start + readme[start..].find(END)?;
    Some((start, end))
}

/// Compares a file's `found` text with the `wanted` one; rewrites the file
/// (`whole` is the new file) when asked to and says so (`true`), else fails
/// naming the first differing line.
fn check(path: &Path, found: &str, wanted: &str, whole: impl FnOnce() -> String) -> bool {
    if found == wanted {
        return false;
    }
    if std::env::var_os("UPDATE_SETTINGS_DOCS").is_some() {
        if let Err(e) = std::fs::write(path, whole()) {
            panic!("cannot rewrite {}: {e}", path.display());
        }
        return true;
    }
    let first = found
        .lines()
        .zip(wanted.lines())
        .find(|(f, w)| f != w)
        .map(|(f, w)| format!("found:  {f}\nwanted: {w}"))
        .unwrap_or_else(|| "one ends before the other".to_string());
    panic!(
        "{} does not list the declared settings (src/config/settings.rs); first difference:\n{first}\nrun UPDATE_SETTINGS_DOCS=1 cargo test --lib config::docs to rewrite it",
        path.display()
    );
}

#[test]
fn readme_lists_exactly_the_declared_settings_and_defaults() {
    let path = repo_file("README.md");
    let readme = std::fs::read_to_string(&path).unwrap_or_default();
    let Some((start, end)) = table_span(&readme) else {
        panic!("README.md has no line {BEGIN:?} followed by {END:?}");
    };
    let wanted = readme_table();
    let rewritten = check(&path, &readme[start..end], &wanted, || {
        format!("{}{wanted}{}", &readme[..start], &readme[end..])
    });
    if rewritten {
        return;
    }
    // Every declared, documented setting is a row, with its default.
    let table = &readme[start..end];
    for s in settings::ALL.iter().filter(|s| settings::is_documented(s)) {
        let row = format!("| `{}` |", s.name());
        assert!(table.contains(&row), "{} missing from README", s.name());
        if let Some(default) = s.default {
            assert!(
                table
                    .lines()
                    .any(|l| l.starts_with(&row) && l.contains(&format!("| `{default}` |"))),
                "README's default of {} is not {default}",
                s.name()
            );
        }
    }
    assert!(
        !table.contains("VOLSPIKE_WEDGE"),
        "a hidden test switch is documented"
    );
}

#[test]
fn the_packaged_env_example_is_the_template() {
    let path = repo_file("packaging/volspike.env.example");
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    let wanted = template::template(crate::service::paths::ENV_FILE);
    check(&path, &found, &wanted, || wanted.clone());
    assert!(
        found.contains("\nBACKEND_URL=\n"),
        "the required keys wait for a value"
    );
}

#[test]
fn the_table_has_one_row_per_documented_setting() {
    let table = readme_table();
    let rows = table.lines().count() - 2;
    let documented = settings::ALL
        .iter()
        .filter(|s| settings::is_documented(s))
        .count();
    assert_eq!(rows, documented);
    assert!(table.contains("| `VOLSPIKE_BINANCE_CONCURRENCY` |  | `12` |"));
    assert!(
        table.contains("| `BACKEND_URL` | `VOLSPIKE_API_URL` | required unless `run --local` |")
    );
    assert!(table.contains("| `VOLSPIKE_LIQUID_EXIT_USD` |  | half of VOLSPIKE_LIQUID_ENTER_USD |"));
}
