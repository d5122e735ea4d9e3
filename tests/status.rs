//! `volspike status` against the real binary: healthy (exit 0), degraded
//! (a wedged scheduler, exit 1), not running (exit 3), and a unit systemd
//! calls down while something answers (exit 3). systemd itself is played by
//! a `systemctl` script first on PATH, so the tests do not depend on the
//! machine having systemd (or not).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::common::market::{fake_binance, start_appliance};
use crate::common::{free_port, http_get, volspike, wait_until, TempDir};
use serde_json::Value;

/// A directory holding a `systemctl` that answers `show` with `active_state`.
fn fake_systemd(dir: &TempDir, name: &str, active_state: &str) -> String {
    let bin = dir.join(name);
    std::fs::create_dir_all(&bin).expect("fake systemd dir");
    let script = bin.join("systemctl");
    let sub = if active_state == "active" {
        "running"
    } else {
        "dead"
    };
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# Plays `systemctl show` for volspike status tests.\n\
             printf 'LoadState=loaded\\nActiveState={active_state}\\nSubState={sub}\\n\
             NRestarts=1\\nActiveEnterTimestamp=Wed 2026-05-06 10:00:00 UTC\\n'\n"
        ),
    )
    .expect("writing the fake systemctl");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the fake systemctl");
    path_with(&bin)
}

/// PATH with `dir` first.
fn path_with(dir: &Path) -> String {
    match std::env::var("PATH") {
        Ok(path) => format!("{}:{path}", dir.display()),
        Err(_) => dir.display().to_string(),
    }
}

/// Runs `volspike status <args>` with `addr` and `path`; exit code and stdout.
fn status(addr: &str, path: &str, args: &[&str]) -> (i32, String, String) {
    let out = volspike()
        .arg("status")
        .args(args)
        .env("PATH", path)
        .env("VOLSPIKE_HTTP_ADDR", addr)
        .output()
        .expect("running volspike status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn healthy_then_unit_down() {
    let dir = TempDir::new("status-healthy");
    let fake = fake_binance();
    let app = start_appliance(&dir, &fake, &[]);
    let healthy = wait_until(Duration::from_secs(60), || {
        let (code, _) = http_get(&app.addr, "/health").ok()?;
        (code == 200).then_some(())
    });
    assert!(healthy.is_some(), "never healthy; log:\n{}", app.log_text());
    let path = fake_systemd(&dir, "systemd-active", "active");

    let (code, out, err) = status(&app.addr, &path, &[]);
    assert_eq!(code, 0, "{out}{err}");
    for needle in [
        "volspike: healthy\n",
        "unit     active (running) since Wed 2026-05-06 10:00:00 UTC, 1 restart\n",
        &format!("address  {} (environment VOLSPIKE_HTTP_ADDR)", app.addr),
        &format!("version {}", env!("CARGO_PKG_VERSION")),
        "JOB ",
        "\nfunding_stream ",
        "WEBSOCKET  connected",
        "BACKLOG    none: --local mode",
        "WEIGHT     0 of ",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }

    let (code, out, err) = status(&app.addr, &path, &["--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["verdict"], "healthy");
    assert_eq!(json["unit"]["systemd"], "present");
    assert_eq!(json["unit"]["activeState"], "active");
    assert_eq!(json["httpStatus"], 200);
    assert_eq!(json["health"]["status"], "ok");
    assert!(
        json["health"]["jobs"]["funding_stream"].is_object(),
        "{out}"
    );

    // The address from an env file, as on the droplet.
    let env_file = dir.join("volspike.env");
    std::fs::write(&env_file, format!("VOLSPIKE_HTTP_ADDR={}\n", app.addr)).expect("env file");
    let out = volspike()
        .args(["status", "--env-file"])
        .arg(&env_file)
        .env("PATH", &path)
        .output()
        .expect("status --env-file");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("(env file VOLSPIKE_HTTP_ADDR (line 1))"),
        "{text}"
    );

    // systemd says the unit failed: whatever answers is not the service.
    let down = fake_systemd(&dir, "systemd-failed", "failed");
    let (code, out, _) = status(&app.addr, &down, &[]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("volspike: NOT RUNNING\n"), "{out}");
    assert!(out.contains("not the service"), "{out}");
}

#[test]
fn degraded_when_a_loop_is_wedged() {
    let dir = TempDir::new("status-degraded");
    let fake = fake_binance();
    let app = start_appliance(&dir, &fake, &[("VOLSPIKE_WEDGE", "scheduler@1")]);
    let degraded = wait_until(Duration::from_secs(60), || {
        let (code, _) = http_get(&app.addr, "/health").ok()?;
        (code == 503).then_some(())
    });
    assert!(
        degraded.is_some(),
        "the wedge never showed; log:\n{}",
        app.log_text()
    );
    let path = fake_systemd(&dir, "systemd-active", "active");
    let (code, out, err) = status(&app.addr, &path, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("volspike: DEGRADED\n"), "{out}");
    assert!(out.contains("health   critical (HTTP 503)"), "{out}");
    assert!(out.contains("STALLED    scheduler\n"), "{out}");
    assert!(out.contains("\nfunding_stream "), "{out}");

    let (code, out, _) = status(&app.addr, &path, &["--json"]);
    assert_eq!(code, 1, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["verdict"], "degraded");
    assert_eq!(json["httpStatus"], 503);
}

#[test]
fn not_running_and_bad_address() {
    let dir = TempDir::new("status-down");
    // No systemctl at all on PATH: reported, not an error.
    let empty = dir.join("empty-bin");
    std::fs::create_dir_all(&empty).expect("empty bin dir");
    let nobody = format!("127.0.0.1:{}", free_port());
    let (code, out, err) = status(&nobody, &empty.display().to_string(), &[]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.starts_with("volspike: NOT RUNNING\n"), "{out}");
    assert!(
        out.contains("unit     no systemd (cannot run systemctl"),
        "{out}"
    );
    assert!(
        out.contains(&format!("nothing listens on {nobody}")),
        "{out}"
    );

    let (code, out, _) = status(&nobody, &empty.display().to_string(), &["--json"]);
    assert_eq!(code, 3, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["verdict"], "notRunning");
    assert_eq!(json["unit"]["systemd"], "absent");
    assert!(json["health"].is_null());

    let (code, _, err) = status("nowhere", &empty.display().to_string(), &[]);
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("VOLSPIKE_HTTP_ADDR"), "{err}");
}
