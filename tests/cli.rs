//! The command line as an operator meets it: `--help`, `version`,
//! `check-config`, refusing to run on bad configuration, honest stubs.

mod common;

use common::{volspike, write, TempDir};

fn output(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("running volspike");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_command_of_the_spec() {
    let (code, stdout, _) = output(volspike().arg("--help"));
    assert_eq!(code, 0);
    for command in [
        "run",
        "install",
        "uninstall",
        "self-update",
        "status",
        "check-config",
        "outbox",
        "version",
    ] {
        assert!(
            stdout.contains(&format!("  {command} ")),
            "--help lacks {command}:\n{stdout}"
        );
    }
    let (code, stdout, _) = output(volspike().args(["run", "--help"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("--only") && stdout.contains("--local"),
        "{stdout}"
    );
    let (_, stdout, _) = output(volspike().args(["self-update", "--help"]));
    for flag in ["--check", "--version", "--from", "--rollback", "--yes"] {
        assert!(
            stdout.contains(flag),
            "self-update --help lacks {flag}:\n{stdout}"
        );
    }
    let (_, stdout, _) = output(volspike().args(["install", "--help"]));
    for flag in ["--dry-run", "--env-file", "--keep-legacy"] {
        assert!(
            stdout.contains(flag),
            "install --help lacks {flag}:\n{stdout}"
        );
    }
}

#[test]
fn unknown_command_is_a_usage_error() {
    let (code, _, stderr) = output(volspike().arg("frobnicate"));
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn version_names_target_and_commit() {
    let (code, stdout, _) = output(volspike().arg("version"));
    assert_eq!(code, 0);
    assert!(stdout.starts_with("volspike 0."), "{stdout}");
    assert!(stdout.contains("linux"), "target triple missing: {stdout}");
    assert!(stdout.contains("commit "), "{stdout}");
}

const BAD_ENV: &str = "\
# an operator's env file with several mistakes
VOLSPIKE_API_URL=backend.example.com
VOLSPIKE_API_KEY=\"s3cret-key\"
export VOLSPIKE_WEIGHT_CEILING_PCT=half
BINANCE_WS_URL=ftp://fstream.binance.com
TELEGRAM_TOKEN='123:abc'
VOLSPIKE_HTTP_ADDR=localhost
OI_TRESHOLD=3
this line is broken
";

#[test]
fn check_config_lists_every_problem_and_exits_78() {
    let dir = TempDir::new("check-config");
    let env = dir.join("volspike.env");
    write(&env, BAD_ENV);
    let (code, stdout, _) = output(volspike().arg("check-config").arg("--env-file").arg(&env));
    assert_eq!(code, 78, "{stdout}");
    for needle in [
        "BACKEND_URL (env file VOLSPIKE_API_URL (line 2)): `backend.example.com` is not a URL",
        "VOLSPIKE_WEIGHT_CEILING_PCT: `half` is not a number",
        "BINANCE_WS_URL",
        "VOLSPIKE_HTTP_ADDR: `localhost`",
        "line 9: expected KEY=value",
        "unknown key OI_TRESHOLD",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}` in:\n{stdout}");
    }
    // Secrets are masked in the listing and never printed.
    assert!(
        !stdout.contains("s3cret-key") && !stdout.contains("123:abc"),
        "{stdout}"
    );
    // The column width follows the longest setting name; only the pairing matters.
    assert!(
        stdout.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("ALERT_INGEST_API_KEY") && words.next() == Some("****")
        }),
        "{stdout}"
    );
}

#[test]
fn check_config_reports_missing_required_keys() {
    let dir = TempDir::new("check-missing");
    let env = dir.join("empty.env");
    write(&env, "# nothing yet\n");
    let (code, stdout, _) = output(volspike().arg("check-config").arg("--env-file").arg(&env));
    assert_eq!(code, 78);
    assert!(stdout.contains("BACKEND_URL is required"), "{stdout}");
    assert!(
        stdout.contains("ALERT_INGEST_API_KEY is required"),
        "{stdout}"
    );
}

#[test]
fn check_config_accepts_a_good_file() {
    let dir = TempDir::new("check-good");
    let env = dir.join("good.env");
    write(
        &env,
        "BACKEND_URL=https://backend.example.com/\nALERT_INGEST_API_KEY=k\n",
    );
    let (code, stdout, _) = output(volspike().arg("check-config").arg("--env-file").arg(&env));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("configuration is valid"));
}

#[test]
fn run_refuses_a_bad_configuration_with_78() {
    let dir = TempDir::new("run-bad");
    let env = dir.join("volspike.env");
    write(&env, BAD_ENV);
    let (code, _, stderr) = output(
        volspike()
            .args(["run", "--env-file"])
            .arg(&env)
            .env("VOLSPIKE_STATE_DIR", dir.join("state")),
    );
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(stderr.contains("VOLSPIKE_WEIGHT_CEILING_PCT"), "{stderr}");
    assert!(!stderr.contains("s3cret-key"));
    assert!(
        !dir.join("state").exists(),
        "nothing touched before the config is valid"
    );
}

#[test]
fn run_rejects_unknown_jobs_in_only() {
    let dir = TempDir::new("run-only");
    let (code, _, stderr) = output(
        volspike()
            .args(["run", "--local", "--only", "volume_spikes"])
            .env("VOLSPIKE_STATE_DIR", dir.join("state")),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("unknown job `volume_spikes`"), "{stderr}");
}

#[test]
fn self_update_rollback_excludes_installing_something_else() {
    // --rollback puts the kept previous binary back; combined with an
    // artifact or a version it would be ambiguous: a usage error, nothing done.
    for extra in [
        &["--from", "x.tar.gz"][..],
        &["--version", "0.1.0"][..],
        &["--check"][..],
    ] {
        let (code, _, stderr) = output(volspike().args(["self-update", "--rollback"]).args(extra));
        assert_eq!(code, 2, "{extra:?}: {stderr}");
        assert!(stderr.contains("cannot be used with"), "{stderr}");
    }
}
