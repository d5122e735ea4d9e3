//! What install prints: the plan's findings, what to do when the env file is
//! incomplete, and the service's status and `/health` at the end.

use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{anyhow, Context};

use super::plan::Plan;
use crate::service::paths::{ENV_FILE, SERVICE};
use crate::service::ready;
use crate::service::systemctl;

/// Prints the plan's warnings and notes.
pub(super) fn print_findings(plan: &Plan) {
    for w in &plan.warnings {
        println!("WARNING: {w}");
    }
    for n in &plan.notes {
        println!("note: {n}");
    }
}

/// Prints what to do when the env file is incomplete.
pub(super) fn print_not_started(plan: &Plan) {
    println!();
    // A service already running keeps its old environment until restarted.
    let state = if plan.service.is_up() {
        format!("not restarted ({SERVICE} keeps running with its previous configuration)")
    } else {
        "not started".to_string()
    };
    if !plan.missing_keys.is_empty() {
        println!(
            "installed, but {state}: fill {} in {ENV_FILE}",
            plan.missing_keys.join(" and ")
        );
    } else {
        println!("installed, but {state}: {ENV_FILE} has problems");
    }
    for p in &plan.config_problems {
        println!("  - {p}");
    }
    println!("then run:");
    println!("  volspike check-config");
    println!("  systemctl restart volspike");
}

/// Prints `systemctl status` and `/health`.
pub(super) fn print_status(plan: &Plan) {
    println!();
    print!("{}", systemctl::status_text(SERVICE, 5));
    match fetch_health(&plan.http_addr) {
        Ok(health) => {
            println!();
            println!("GET http://{}/health:", plan.http_addr);
            let shown: String = health.chars().take(1500).collect();
            println!("{shown}");
        }
        Err(e) => println!("\n/health not reachable: {e:#}"),
    }
}

/// `GET /health` on the service's listen address (a wildcard one reached on
/// loopback): the status and body.
fn fetch_health(addr: &str) -> anyhow::Result<String> {
    let target: SocketAddr = addr
        .to_socket_addrs()
        .with_context(|| format!("VOLSPIKE_HTTP_ADDR `{addr}`"))?
        .next()
        .ok_or_else(|| anyhow!("VOLSPIKE_HTTP_ADDR `{addr}` resolves to nothing"))?;
    let (status, body) =
        ready::get_health(ready::connectable(target)).map_err(|e| anyhow!("{e}"))?;
    Ok(format!("HTTP {status}\n{}", body.trim()))
}
