//! The command line as an operator meets it: `--help`, `version`,
//! `check-config`, refusing to run on bad configuration, honest stubs.

use crate::common::{volspike, write, TempDir};

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
    // --only names every job (the list in `--only x`'s error is the source).
    let (_, _, stderr) = output(volspike().args(["run", "--local", "--only", "x"]));
    let jobs = stderr
        .split("(jobs: ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no job list in: {stderr}"));
    for job in jobs.split(", ") {
        assert!(
            stdout.contains(job),
            "run --help does not name job {job}:\n{stdout}"
        );
    }
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
    // `--version` prints the same full line, not just the number.
    let (code, dashed, _) = output(volspike().arg("--version"));
    assert_eq!(code, 0);
    assert_eq!(dashed, stdout);
}

const BAD_ENV: &str = "\
# an operator's env file with several mistakes
VOLSPIKE_API_URL=backend.example.com
VOLSPIKE_API_KEY=\"s3cret-key\"
VOLSPIKE_WEIGHT_CEILING_PCT=half
BINANCE_WS_URL=ftp://fstream.binance.com
TELEGRAM_TOKEN='123:abc'
VOLSPIKE_HTTP_ADDR=localhost
OI_TRESHOLD=3
this line is broken
export VOLSPIKE_LOG=debug
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
        "line 9: `this line is broken` has no `=`: systemd ignores this line",
        "line 10: `export VOLSPIKE_LOG` is not a valid variable name",
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

/// What `check-config` prints for one env file: (exit code, stdout), or a
/// failure if it does not finish within a minute (a FIFO used to hang it).
fn check_config_within_a_minute(env: &std::path::Path) -> (i32, String) {
    let mut child = volspike()
        .arg("check-config")
        .arg("--env-file")
        .arg(env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running volspike");
    let finished = crate::common::wait_until(std::time::Duration::from_secs(60), || {
        child.try_wait().ok().flatten()
    });
    if finished.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("check-config on {} did not finish", env.display());
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_config_reads_the_file_as_systemd_does() {
    let dir = TempDir::new("check-systemd");
    let env = dir.join("volspike.env");
    write(
        &env,
        "BACKEND_URL=https://backend.example.com\nALERT_INGEST_API_KEY=k #not a comment\nVOLSPIKE_UPDATE_URL=http://u:TOKEN@releases.example/manifest.json\nVOLSPIKE_HTTP_ADDR=0.0.0.0:8080\n",
    );
    let (code, stdout) = check_config_within_a_minute(&env);
    assert_eq!(code, 0, "{stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} not listed:\n{stdout}"))
            .to_string()
    };
    assert!(
        line("VOLSPIKE_UPDATE_URL").contains("http://u:****@releases.example/manifest.json"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(":TOKEN@"),
        "a credential in a URL was printed:\n{stdout}"
    );
    assert!(
        line("VOLSPIKE_LIQUID_EXIT_USD").contains("50000000"),
        "the computed default is not shown:\n{stdout}"
    );
    assert!(!stdout.contains("(not set)\n"), "{stdout}");
    assert!(
        stdout.contains("0.0.0.0:8080 is reachable"),
        "no warning for 0.0.0.0:\n{stdout}"
    );
}

#[test]
fn check_config_refuses_files_systemd_cannot_read_without_hanging() {
    let dir = TempDir::new("check-odd-files");
    let bom = dir.join("bom.env");
    std::fs::write(&bom, b"\xEF\xBB\xBFBACKEND_URL=https://b.example\n").expect("write");
    let nul = dir.join("nul.env");
    std::fs::write(&nul, b"BACKEND_URL=https://b.example\nX=\x00\n").expect("write");
    let fifo = dir.join("fifo.env");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    for (path, needle) in [
        (bom.as_path(), "byte-order mark"),
        (nul.as_path(), "NUL byte on line 2"),
        (fifo.as_path(), "is a FIFO (named pipe), not a regular file"),
        (
            std::path::Path::new("/dev/zero"),
            "is a device, not a regular file",
        ),
    ] {
        let (code, stdout) = check_config_within_a_minute(path);
        assert_eq!(code, 78, "{}: {stdout}", path.display());
        assert!(
            stdout.contains(needle),
            "{}: no `{needle}` in:\n{stdout}",
            path.display()
        );
    }
}

#[test]
fn install_dry_run_judges_the_env_file_like_check_config() {
    let dir = TempDir::new("install-dry");
    let env = dir.join("volspike.env");
    write(&env, BAD_ENV);
    let (code, stdout, stderr) = output(
        volspike()
            .args(["install", "--dry-run", "--env-file"])
            .arg(&env),
    );
    assert_eq!(code, 78, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("VOLSPIKE_WEIGHT_CEILING_PCT: `half` is not a number"),
        "the dry run does not list the problems:\n{stdout}"
    );
    assert!(!stdout.contains("s3cret-key") && !stderr.contains("s3cret-key"));
}

#[test]
fn a_log_filter_that_would_silence_logging_is_a_problem() {
    let dir = TempDir::new("check-log");
    let env = dir.join("volspike.env");
    write(
        &env,
        "BACKEND_URL=https://backend.example.com\nALERT_INGEST_API_KEY=k\nVOLSPIKE_LOG=verbose\n",
    );
    let (code, stdout, _) = output(volspike().arg("check-config").arg("--env-file").arg(&env));
    assert_eq!(code, 78, "{stdout}");
    assert!(
        stdout.contains("VOLSPIKE_LOG: `verbose`: `verbose` is not a level"),
        "{stdout}"
    );
}

#[test]
fn the_packaged_env_example_reads_cleanly_and_points_nowhere_missing() {
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/volspike.env.example");
    let text = std::fs::read_to_string(&example).expect("packaging/volspike.env.example");
    // Every .md file it mentions is in the repository, under that path.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for word in text.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',') {
        if let Some(path) = word.strip_suffix(".md").map(|p| format!("{p}.md")) {
            assert!(
                root.join(&path).is_file(),
                "refers to {path}, not in the repository"
            );
        }
    }
    let (code, stdout, _) = output(
        volspike()
            .arg("check-config")
            .arg("--env-file")
            .arg(&example),
    );
    assert_eq!(code, 78, "{stdout}");
    // Only the two required keys are problems: every line reads as systemd reads it.
    assert!(stdout.contains("problems (2):"), "{stdout}");
    assert!(stdout.contains("BACKEND_URL is required"), "{stdout}");
}
