//! The unit files `install` writes, and the old deployment's units it replaces.
//!
//! The units are templates kept in `packaging/volspike.service` and
//! `packaging/volspike.socket` (reviewed and tested as files, see
//! tests/droplet/smoke.sh) and compiled into the binary, so a binary copied
//! onto a droplet alone can install itself.

/// The unit template, placeholders `@BINARY@`, `@ENV_FILE@`, `@USER@`.
pub const SERVICE_TEMPLATE: &str = include_str!("../../packaging/volspike.service");

/// The socket unit template, placeholder `@LISTEN@`: systemd holds the HTTP
/// listener so that restarts and updates refuse no connection.
pub const SOCKET_TEMPLATE: &str = include_str!("../../packaging/volspike.socket");

/// Units of the Python deployment that the appliance replaces. Running them
/// next to it would post every alert twice. (`volspike.service` itself is
/// legacy only when it runs Python; see [`is_ours`].)
pub const LEGACY_UNITS: &[&str] = &[
    "binance-funding-ws.service",
    "binance-funding-api.service",
    "oi-realtime-poller.service",
    "user-alert-checker.service",
    "telegram-channel-poller.service",
    "volspike-dashboard.service",
    "funding-health-check.timer",
    "oi-liquid-universe.timer",
];

/// Values for the template's placeholders.
#[derive(Debug, Clone)]
pub struct UnitValues<'a> {
    /// Absolute path of the installed binary.
    pub binary: &'a str,
    /// Absolute path of the env file.
    pub env_file: &'a str,
    /// System user and group the service runs as.
    pub user: &'a str,
}

/// Renders the service unit; an error names a placeholder left unfilled
/// (a template edited without updating this function).
pub fn render_service(values: &UnitValues<'_>) -> Result<String, String> {
    render(SERVICE_TEMPLATE, values)
}

/// Renders the socket unit listening on `listen` (`VOLSPIKE_HTTP_ADDR`).
/// An address systemd would read differently from volspike is refused, so
/// the socket never holds another address than the one configured.
pub fn render_socket(listen: &str) -> Result<String, String> {
    let addr: std::net::SocketAddr = listen.trim().parse().map_err(|_| {
        format!("VOLSPIKE_HTTP_ADDR={listen:?} is not an address:port for volspike.socket")
    })?;
    let text = SOCKET_TEMPLATE.replace("@LISTEN@", &addr.to_string());
    if let Some(left) = leftover_placeholder(&text) {
        return Err(format!(
            "unit template (packaging/volspike.socket) has an unknown placeholder {left}"
        ));
    }
    Ok(text)
}

/// Renders `template` with `values`.
pub fn render(template: &str, values: &UnitValues<'_>) -> Result<String, String> {
    let text = template
        .replace("@BINARY@", values.binary)
        .replace("@ENV_FILE@", values.env_file)
        .replace("@USER@", values.user);
    if let Some(left) = leftover_placeholder(&text) {
        return Err(format!(
            "unit template (packaging/volspike.service) has an unknown placeholder {left}"
        ));
    }
    Ok(text)
}

/// The first `@NAME@` left in `text`, if any.
fn leftover_placeholder(text: &str) -> Option<String> {
    let mut rest = text;
    while let Some(start) = rest.find('@') {
        let after = &rest[start + 1..];
        match after.find('@') {
            Some(end) => {
                let name = &after[..end];
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
                {
                    return Some(format!("@{name}@"));
                }
                rest = &after[end..];
            }
            None => return None,
        }
    }
    None
}

/// The `ExecStart=` values of a unit file (there may be several).
pub fn exec_starts(unit_text: &str) -> Vec<&str> {
    unit_text
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("ExecStart"))
        .filter_map(|l| l.trim_start().strip_prefix('='))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect()
}

/// Whether a `volspike.service` found on the host is the appliance's own
/// (its ExecStart runs `binary`) rather than the Python deployment's.
pub fn is_ours(unit_text: &str, binary: &str) -> bool {
    exec_starts(unit_text).iter().any(|cmd| {
        // systemd prefixes such as `-`, `@`, `+`, `!` may precede the path.
        let path = cmd
            .trim_start_matches(['-', '@', '+', '!', ':'])
            .split_whitespace()
            .next()
            .unwrap_or("");
        path == binary
    })
}

/// Whether a unit's ExecStart runs Python (the old deployment).
pub fn runs_python(unit_text: &str) -> bool {
    exec_starts(unit_text)
        .iter()
        .any(|cmd| cmd.to_ascii_lowercase().contains("python"))
}

/// The service a timer starts (`x.timer` → `x.service`), whose file is kept
/// along with the timer's.
pub fn timer_service(unit: &str) -> Option<String> {
    unit.strip_suffix(".timer")
        .map(|base| format!("{base}.service"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALUES: UnitValues<'static> = UnitValues {
        binary: "/usr/local/bin/volspike",
        env_file: "/etc/volspike/volspike.env",
        user: "volspike",
    };

    #[test]
    fn the_shipped_template_renders_completely() {
        let unit = render_service(&VALUES).expect("renders");
        assert!(unit.contains("ExecStart=/usr/local/bin/volspike run"));
        assert!(unit.contains("EnvironmentFile=/etc/volspike/volspike.env"));
        assert!(unit.contains("User=volspike"));
        assert!(unit.contains("Type=notify"));
        assert!(unit.contains("RestartPreventExitStatus=78"));
        // Room for the HTTP connection cap and every thread the process starts.
        assert!(unit.contains("LimitNOFILE=2048"));
        assert!(unit.contains("TasksMax=128"));
        assert!(is_ours(&unit, VALUES.binary));
        assert!(!runs_python(&unit));
    }

    #[test]
    fn the_service_needs_the_socket_and_the_socket_holds_the_configured_address() {
        let unit = render_service(&VALUES).expect("renders");
        assert!(unit.contains("Requires=volspike.socket"));
        assert!(unit.contains("After=volspike.socket"));
        let socket = render_socket("127.0.0.1:8080").expect("renders");
        assert!(
            socket.contains("\nListenStream=127.0.0.1:8080\n"),
            "{socket}"
        );
        assert!(socket.contains("\nAccept=no\n"));
        assert!(socket.contains("WantedBy=sockets.target"));
        let v6 = render_socket(" [::1]:9000 ").expect("renders");
        assert!(v6.contains("\nListenStream=[::1]:9000\n"), "{v6}");
        // A bare port would make systemd listen on every interface.
        let err = render_socket("8080").expect_err("not an address");
        assert!(err.contains("VOLSPIKE_HTTP_ADDR"), "{err}");
    }

    #[test]
    fn an_unknown_placeholder_is_an_error() {
        let err = render("ExecStart=@BINARY@ @NEW_THING@\n", &VALUES).expect_err("left over");
        assert!(err.contains("@NEW_THING@"), "{err}");
        // An e-mail address is not a placeholder.
        assert!(render("Documentation=mailto:ops@example.com\n", &VALUES).is_ok());
    }

    #[test]
    fn python_units_are_recognised() {
        let legacy = "[Service]\nExecStart=/home/trader/venv/bin/python3 -m volspike.main\n";
        assert!(runs_python(legacy));
        assert!(!is_ours(legacy, VALUES.binary));
        let prefixed = "[Service]\nExecStart=-/usr/local/bin/volspike run --only x\n";
        assert!(is_ours(prefixed, VALUES.binary));
    }

    #[test]
    fn timers_name_their_service() {
        assert_eq!(
            timer_service("oi-liquid-universe.timer").as_deref(),
            Some("oi-liquid-universe.service")
        );
        assert_eq!(timer_service("a.service"), None);
    }
}
