//! Install's plan on a temporary tree with a fake service manager, and its
//! file actions applied there.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::actions::{apply, create_dir, Action};
use super::failure as failure_of;
use super::machine::lookup_user;
use super::plan::{plan, BadEnvFile, Options, Plan};
use crate::service::fs::{effective_uid, parse_effective_uid};
use crate::service::paths::*;
use crate::service::ready::{classify, Progress};
use crate::service::systemctl::{UnitQuery, UnitState};

/// A service manager that knows only the units it is given.
struct FakeUnits(BTreeMap<String, UnitState>);

impl UnitQuery for FakeUnits {
    fn states(&self, units: &[String]) -> Result<Vec<UnitState>, String> {
        Ok(units
            .iter()
            .map(|u| {
                self.0
                    .get(u)
                    .cloned()
                    .unwrap_or_else(|| UnitState::not_found(u))
            })
            .collect())
    }
}

fn unit(id: &str, active: &str, enabled: &str, fragment: &str) -> UnitState {
    UnitState {
        id: id.into(),
        load_state: "loaded".into(),
        active_state: active.into(),
        sub_state: if active == "active" {
            "running".into()
        } else {
            "dead".into()
        },
        unit_file_state: enabled.into(),
        fragment_path: fragment.into(),
        invocation_id: if active == "active" {
            "inv1".into()
        } else {
            String::new()
        },
        ..UnitState::default()
    }
}

/// A unit of the old deployment, loaded from `/etc/systemd/system`, keyed
/// by its name for [`FakeUnits`].
fn legacy(id: &str, active: &str, enabled: &str) -> (String, UnitState) {
    let fragment = format!("/etc/systemd/system/{id}");
    (id.to_string(), unit(id, active, enabled, &fragment))
}

/// A scratch root with a source binary, removed when dropped.
struct Tree {
    /// The temporary root directory.
    root: PathBuf,
    /// Paths under `root`, owned by the test's own uid.
    layout: Layout,
    /// Install options reading `root/source-binary`.
    options: Options,
}

impl Tree {
    fn new(tag: &str) -> Tree {
        let root =
            std::env::temp_dir().join(format!("volspike-install-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("etc")).expect("mkdir");
        let source = root.join("source-binary");
        fs::write(&source, b"binary v1").expect("write");
        let uid = effective_uid().expect("uid");
        Tree {
            layout: Layout::under(&root, uid),
            options: Options {
                source_binary: source,
                env_file: None,
                keep_legacy: false,
                dry_run: false,
            },
            root,
        }
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.layout.path(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    }

    /// Applies the file actions, as if the systemd ones had succeeded.
    fn apply_files(&self, plan: &Plan) {
        for a in &plan.actions {
            match a {
                Action::InstallBinary { .. }
                | Action::WriteFile { .. }
                | Action::FixPermissions { .. } => {
                    apply(&self.layout, a).expect("apply");
                }
                Action::CreateDir { path, mode, .. } => {
                    create_dir(
                        &self.layout.path(path),
                        *mode,
                        (self.layout.owner_uid, self.layout.owner_uid),
                    )
                    .expect("mkdir");
                }
                Action::RetireUnit { copies, .. } => {
                    for (s, d) in copies {
                        fs::copy(s, d).expect("copy");
                    }
                }
                Action::CreateUser => {
                    self.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\nvolspike:x:998:998::/var/lib/volspike:/usr/sbin/nologin\n");
                }
                _ => {}
            }
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.actions
        .iter()
        .map(|a| match a {
            Action::CreateUser => "user",
            Action::CreateDir { .. } => "mkdir",
            Action::RetireUnit { .. } => "retire",
            Action::InstallBinary { .. } => "binary",
            Action::WriteFile { path, .. } if path == ENV_FILE => "env",
            Action::WriteFile { path, .. } if path == SOCKET_FILE => "socket",
            Action::WriteFile { .. } => "unit",
            Action::FixPermissions { .. } => "chmod",
            Action::DaemonReload => "reload",
            Action::Enable => "enable",
            Action::Start { .. } => "start",
            _ => "other",
        })
        .collect()
}

fn installed_service() -> UnitState {
    unit(SERVICE, "active", "enabled", UNIT_FILE)
}

fn listening_socket() -> UnitState {
    unit(SOCKET, "active", "enabled", SOCKET_FILE)
}

#[test]
fn fresh_machine_gets_everything_but_no_start_without_keys() {
    let t = Tree::new("fresh");
    t.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    let plan = plan(&t.layout, &t.options, &FakeUnits(BTreeMap::new())).expect("plan");
    assert_eq!(
        kinds(&plan),
        vec!["user", "mkdir", "binary", "mkdir", "env", "unit", "socket", "reload", "enable"]
    );
    assert_eq!(
        plan.missing_keys,
        vec!["BACKEND_URL", "ALERT_INGEST_API_KEY"]
    );
    assert!(!plan.config_ok());
    t.apply_files(&plan);
    let env = t.layout.path(ENV_FILE);
    let meta = fs::metadata(&env).expect("env written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(fs::read_to_string(&env)
        .expect("read")
        .contains("BACKEND_URL="));
}

#[test]
fn second_run_with_nothing_changed_is_empty() {
    let t = Tree::new("again");
    t.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    let env = t.root.join("given.env");
    fs::write(&env, "BACKEND_URL=http://127.0.0.1:9/\nALERT_INGEST_API_KEY=k\nVOLSPIKE_HTTP_ADDR=127.0.0.1:18080\n").expect("write");
    let options = Options {
        env_file: Some(env),
        ..t.options.clone()
    };
    let first = plan(&t.layout, &options, &FakeUnits(BTreeMap::new())).expect("plan");
    assert!(first.config_ok(), "{:?}", first.config_problems);
    assert_eq!(first.http_addr, "127.0.0.1:18080");
    assert_eq!(kinds(&first).last(), Some(&"start"));
    t.apply_files(&first);

    let running = FakeUnits(BTreeMap::from([
        (SERVICE.to_string(), installed_service()),
        (SOCKET.to_string(), listening_socket()),
    ]));
    let second = plan(&t.layout, &options, &running).expect("plan");
    assert!(second.actions.is_empty(), "{:?}", second.actions);

    // A new binary: copied (old one kept) and the service restarted once.
    fs::write(&t.options.source_binary, b"binary v2").expect("write");
    let third = plan(&t.layout, &options, &running).expect("plan");
    assert_eq!(kinds(&third), vec!["binary", "start"]);
    assert!(
        matches!(&third.actions[1], Action::Start { why, reopen_socket: false } if why == "binary changed")
    );
    t.apply_files(&third);
    assert_eq!(
        fs::read(t.layout.path(PREVIOUS_BINARY)).expect("previous"),
        b"binary v1"
    );
    assert_eq!(
        fs::read(t.layout.path(BINARY)).expect("binary"),
        b"binary v2"
    );
}

#[test]
fn a_stopped_service_is_started_and_loose_env_permissions_are_fixed() {
    let t = Tree::new("stopped");
    t.write(
        "/etc/passwd",
        "volspike:x:998:998::/var/lib/volspike:/usr/sbin/nologin\n",
    );
    let first = plan(&t.layout, &t.options, &FakeUnits(BTreeMap::new())).expect("plan");
    t.apply_files(&first);
    t.write(
        ENV_FILE,
        "BACKEND_URL=https://b.example\nALERT_INGEST_API_KEY=k\n",
    );
    fs::set_permissions(t.layout.path(ENV_FILE), fs::Permissions::from_mode(0o644)).expect("chmod");
    let stopped = unit(SERVICE, "failed", "enabled", UNIT_FILE);
    let plan = plan(
        &t.layout,
        &t.options,
        &FakeUnits(BTreeMap::from([
            (SERVICE.to_string(), stopped),
            (SOCKET.to_string(), listening_socket()),
        ])),
    )
    .expect("plan");
    assert_eq!(kinds(&plan), vec!["chmod", "start"]);
    // The socket is listening: only the service is started.
    assert!(matches!(
        &plan.actions[1],
        Action::Start {
            reopen_socket: false,
            ..
        }
    ));
}

#[test]
fn the_socket_is_opened_on_upgrade_and_moved_with_the_address() {
    let t = Tree::new("socket");
    t.write(
        "/etc/passwd",
        "volspike:x:998:998::/var/lib/volspike:/usr/sbin/nologin\n",
    );
    let env = t.root.join("given.env");
    let write_env = |port: u16| {
        fs::write(
            &env,
            format!("BACKEND_URL=http://127.0.0.1:9/\nALERT_INGEST_API_KEY=k\nVOLSPIKE_HTTP_ADDR=127.0.0.1:{port}\n"),
        )
        .expect("write")
    };
    write_env(18080);
    let options = Options {
        env_file: Some(env.clone()),
        ..t.options.clone()
    };
    let first = plan(&t.layout, &options, &FakeUnits(BTreeMap::new())).expect("plan");
    t.apply_files(&first);
    let socket_text = fs::read_to_string(t.layout.path(SOCKET_FILE)).expect("socket written");
    assert!(
        socket_text.contains("\nListenStream=127.0.0.1:18080\n"),
        "{socket_text}"
    );

    // An install from before socket activation: the service runs (and
    // holds the port itself), the socket unit is unknown to systemd.
    let pre_socket = FakeUnits(BTreeMap::from([(SERVICE.to_string(), installed_service())]));
    let upgrade = plan(&t.layout, &options, &pre_socket).expect("plan");
    assert_eq!(kinds(&upgrade), vec!["enable", "start"]);
    assert!(
        matches!(
            &upgrade.actions[1],
            Action::Start { why, reopen_socket: true } if why == "volspike.socket is not listening yet"
        ),
        "{:?}",
        upgrade.actions
    );

    // Both up; the address changes: the socket file is rewritten and
    // reopened (with the service stopped), on the new address.
    let running = FakeUnits(BTreeMap::from([
        (SERVICE.to_string(), installed_service()),
        (SOCKET.to_string(), listening_socket()),
    ]));
    write_env(18081);
    let moved = plan(&t.layout, &options, &running).expect("plan");
    assert_eq!(kinds(&moved), vec!["env", "socket", "reload", "start"]);
    assert!(
        matches!(
            moved.actions.last(),
            Some(Action::Start { why, reopen_socket: true })
                if why == "unit, env file changed; volspike.socket moves to 127.0.0.1:18081"
        ),
        "{:?}",
        moved.actions
    );
    t.apply_files(&moved);
    let socket_text = fs::read_to_string(t.layout.path(SOCKET_FILE)).expect("socket");
    assert!(
        socket_text.contains("\nListenStream=127.0.0.1:18081\n"),
        "{socket_text}"
    );
}

#[test]
fn legacy_units_are_retired_once_with_copies() {
    let t = Tree::new("legacy");
    t.write(
        "/etc/passwd",
        "volspike:x:998:998::/var/lib/volspike:/usr/sbin/nologin\n",
    );
    t.write(
        "/etc/systemd/system/binance-funding-ws.service",
        "[Service]\nExecStart=/usr/bin/python3 ws.py\n",
    );
    t.write(
        "/etc/systemd/system/oi-liquid-universe.timer",
        "[Timer]\nOnCalendar=hourly\n",
    );
    t.write(
        "/etc/systemd/system/oi-liquid-universe.service",
        "[Service]\nExecStart=/usr/bin/python3 oi.py\n",
    );
    t.write(
        UNIT_FILE,
        "[Service]\nExecStart=/home/trader/venv/bin/python -m volspike\n",
    );
    t.write(
        LEGACY_ENV_FILE,
        "export VOLSPIKE_API_URL=https://old.example\nexport VOLSPIKE_API_KEY=oldkey\n",
    );
    let units = FakeUnits(BTreeMap::from([
        (
            SERVICE.to_string(),
            unit(SERVICE, "active", "enabled", UNIT_FILE),
        ),
        legacy("binance-funding-ws.service", "active", "enabled"),
        legacy("oi-liquid-universe.timer", "active", "enabled"),
        legacy("oi-liquid-universe.service", "inactive", "static"),
    ]));
    let first = plan(&t.layout, &t.options, &units).expect("plan");
    assert_eq!(
        kinds(&first),
        vec![
            "mkdir", "mkdir", "retire", "retire", "retire", "binary", "mkdir", "env", "unit",
            "socket", "reload", "enable", "start"
        ]
    );
    assert!(first.config_ok(), "imported keys: {:?}", first.missing_keys);
    let timer = first.actions.iter().find_map(|a| match a {
        Action::RetireUnit {
            unit,
            copies,
            stop,
            disable,
            ..
        } if unit == "oi-liquid-universe.timer" => Some((copies.len(), stop.clone(), *disable)),
        _ => None,
    });
    assert_eq!(
        timer,
        Some((2, vec!["oi-liquid-universe.timer".to_string()], true)),
        "timer and its service are copied; only the running one stopped"
    );
    t.apply_files(&first);
    assert!(t
        .layout
        .path("/var/lib/volspike/legacy-units/volspike.service")
        .exists());

    // After install: legacy units disabled and stopped, copies kept.
    let after = FakeUnits(BTreeMap::from([
        (SERVICE.to_string(), installed_service()),
        (SOCKET.to_string(), listening_socket()),
        legacy("binance-funding-ws.service", "inactive", "disabled"),
        legacy("oi-liquid-universe.timer", "inactive", "disabled"),
        legacy("oi-liquid-universe.service", "inactive", "static"),
    ]));
    let second = plan(&t.layout, &t.options, &after).expect("plan");
    assert!(second.actions.is_empty(), "{:?}", second.actions);
}

#[test]
fn keep_legacy_warns_and_leaves_them() {
    let t = Tree::new("keep");
    t.write(
        "/etc/passwd",
        "volspike:x:998:998::/var/lib/volspike:/usr/sbin/nologin\n",
    );
    t.write(
        "/etc/systemd/system/user-alert-checker.service",
        "[Service]\nExecStart=/usr/bin/python3 x.py\n",
    );
    let units = FakeUnits(BTreeMap::from([legacy(
        "user-alert-checker.service",
        "active",
        "enabled",
    )]));
    let options = Options {
        keep_legacy: true,
        ..t.options.clone()
    };
    let plan = plan(&t.layout, &options, &units).expect("plan");
    assert!(!kinds(&plan).contains(&"retire"));
    assert!(plan
        .warnings
        .iter()
        .any(|w| w.contains("user-alert-checker.service") && w.contains("BOTH")));
}

#[test]
fn a_bad_env_file_argument_is_refused_naming_the_line() {
    let t = Tree::new("badenv");
    let env = t.root.join("bad.env");
    fs::write(&env, "BACKEND_URL=x\nthis is not an assignment\n").expect("write");
    let options = Options {
        env_file: Some(env.clone()),
        ..t.options.clone()
    };
    let err = plan(&t.layout, &options, &FakeUnits(BTreeMap::new())).expect_err("refused");
    // A bad --env-file is a configuration error: install exits 78.
    assert!(err.is::<BadEnvFile>(), "{err:#}");
    let err = format!("{err:#}");
    assert!(err.contains("bad.env") && err.contains("line 2"), "{err}");
    let missing = Options {
        env_file: Some(t.root.join("nope.env")),
        ..t.options.clone()
    };
    let err = plan(&t.layout, &missing, &FakeUnits(BTreeMap::new())).expect_err("refused");
    assert!(err.is::<BadEnvFile>(), "{err:#}");
    let err = format!("{err:#}");
    assert!(err.contains("nope.env"), "{err}");
}

#[test]
fn readiness_needs_a_new_invocation() {
    let mut s = unit(SERVICE, "failed", "enabled", UNIT_FILE);
    s.invocation_id = "old".into();
    // The old, failed invocation right after `restart --no-block`: wait.
    assert_eq!(classify(&s, "old"), Progress::Waiting);
    s.invocation_id = "new".into();
    s.active_state = "activating".into();
    s.sub_state = "start".into();
    assert_eq!(
        classify(&s, "old"),
        Progress::Waiting,
        "starting: wait for READY"
    );
    s.sub_state = "auto-restart".into();
    s.exec_main_status = "1".into();
    assert_eq!(classify(&s, "old"), Progress::Failed);
    assert!(failure_of(&s).contains("did not come up"));
    s.active_state = "failed".into();
    s.sub_state = "failed".into();
    s.exec_main_status = "78".into();
    assert_eq!(classify(&s, "old"), Progress::Failed);
    assert!(failure_of(&s).contains("status 78"));
    let up = installed_service();
    assert_eq!(classify(&up, ""), Progress::Ready);
}

#[test]
fn passwd_and_status_parsing() {
    let passwd = "root:x:0:0:root:/root:/bin/bash\nvolspike:x:997:995::/var/lib/volspike:/usr/sbin/nologin\n";
    assert_eq!(lookup_user(passwd, "volspike"), Some((997, 995)));
    assert_eq!(lookup_user(passwd, "volspik"), None);
    assert_eq!(
        parse_effective_uid("Name:\tx\nUid:\t1000\t0\t0\t0\n"),
        Some(0)
    );
}
