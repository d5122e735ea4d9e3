//! deploy.sh's operator commands (`status`, `logs`, `rollback`, `install
//! --dry-run`) against a stand-in for ssh that records the remote command
//! lines, so what runs on the droplet is checked without a droplet (the
//! droplet tests run `install` and `push` for real).

use std::path::Path;
use std::process::Command;

use crate::common::{write, TempDir};

/// The stand-in: logs the remote command line, answers `id -u` as root,
/// `mktemp` with a directory, swallows uploads, and exits 78 for an
/// `install --dry-run` (as volspike does on a bad env file).
const FAKE_SSH: &str = r#"#!/bin/sh
printf '%s\n' "$2" >> "$FAKE_SSH_LOG"
case "$2" in
  *" id -u"*) echo 0 ;;
  *mktemp*) echo /var/tmp/volspike-install.test ;;
  *"cat >"*) cat >/dev/null ;;
  *" install "*"--dry-run"*) exit 78 ;;
esac
exit 0
"#;

/// Runs `deploy.sh args` with the stand-in; returns (exit code, stderr, the
/// remote command lines).
fn deploy(dir: &TempDir, args: &[&str]) -> (i32, String, Vec<String>) {
    let ssh = dir.join("fake-ssh");
    write(&ssh, FAKE_SSH);
    let _ = Command::new("chmod").arg("755").arg(&ssh).status();
    let log = dir.join("remote.log");
    let _ = std::fs::remove_file(&log);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .env("VOLSPIKE_SSH", &ssh)
        .env("FAKE_SSH_LOG", &log)
        .output()
        .expect("running deploy.sh");
    let remote = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        remote,
    )
}

#[test]
fn status_logs_and_rollback_run_the_right_remote_commands() {
    let dir = TempDir::new("deploy-sh");
    let (code, stderr, remote) = deploy(&dir, &["status", "droplet"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(remote, ["id -u", "/usr/local/bin/volspike status"]);

    let (code, stderr, remote) = deploy(&dir, &["logs", "droplet", "open_interest"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        remote.last().map(String::as_str),
        Some("journalctl -u volspike.service -n 200 --no-pager -o short-iso JOB=open_interest")
    );
    let (code, _, remote) = deploy(&dir, &["logs", "droplet", "-f"]);
    assert_eq!(code, 0);
    assert_eq!(
        remote.last().map(String::as_str),
        Some("journalctl -u volspike.service -n 200 --no-pager -o short-iso -f")
    );
    let (code, stderr, remote) = deploy(&dir, &["logs", "droplet", "open_intrest"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown job 'open_intrest'"), "{stderr}");
    assert!(remote.is_empty(), "nothing runs for a typo: {remote:?}");

    let (code, stderr, remote) = deploy(&dir, &["rollback", "droplet"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        remote.last().map(String::as_str),
        Some("/usr/local/bin/volspike self-update --rollback --yes")
    );
    let (code, stderr, _) = deploy(&dir, &["status"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("which HOST?"), "{stderr}");
}

#[test]
fn install_dry_run_passes_the_flag_and_the_exit_code() {
    let dir = TempDir::new("deploy-sh-install");
    let binary = dir.join("volspike");
    write(&binary, "#!/bin/sh\n");
    let _ = Command::new("chmod").arg("755").arg(&binary).status();
    let env = dir.join("volspike.env");
    write(&env, "BACKEND_URL=\n");
    let binary_arg = binary.to_string_lossy().into_owned();
    let env_arg = env.to_string_lossy().into_owned();
    let (code, stderr, remote) = deploy(
        &dir,
        &[
            "install",
            "droplet",
            "--binary",
            &binary_arg,
            "--env-file",
            &env_arg,
            "--dry-run",
        ],
    );
    assert_eq!(code, 78, "the dry run's verdict is passed on: {stderr}");
    assert!(
        remote.iter().any(|l| l
            == "/var/tmp/volspike-install.test/volspike install --env-file /var/tmp/volspike-install.test/volspike.env --dry-run"),
        "{remote:?}"
    );
    assert!(
        remote
            .iter()
            .any(|l| l.starts_with("rm -rf /var/tmp/volspike-install.test")),
        "the temporary directory is removed: {remote:?}"
    );
    assert!(stderr.contains("nothing was changed"), "{stderr}");
}
