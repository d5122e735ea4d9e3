//! Tests of reading and validating a whole configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::backend::kind::Kind;

use super::*;

fn sources(env: &[(&str, &str)], file: &str) -> Sources {
    Sources::from_text(env, file)
}

#[test]
fn old_generation_names_are_accepted() {
    let s = sources(
        &[],
        "VOLSPIKE_API_URL=https://b.example\nVOLSPIKE_API_KEY=k1\n",
    );
    let (config, _) = Config::from_sources(&s, Mode::default()).expect("valid");
    assert_eq!(config.backends.len(), 1);
    assert_eq!(config.backends[0].url, "https://b.example");
    assert_eq!(config.backends[0].key.expose(), "k1");
}

#[test]
fn environment_wins_over_file() {
    let s = sources(
        &[("BACKEND_URL", "https://env.example/")],
        "BACKEND_URL=https://file.example\nALERT_INGEST_API_KEY=k\n",
    );
    let (config, _) = Config::from_sources(&s, Mode::default()).expect("valid");
    assert_eq!(config.backends[0].url, "https://env.example");
}

#[test]
fn every_problem_is_listed() {
    let s = sources(
        &[],
        "VOLSPIKE_WEIGHT_CEILING_PCT=lots\nBINANCE_FAPI_URL=ftp://x\nVOLSPIKE_HTTP_ADDR=nowhere\nFOO_BAR=1\n",
    );
    let report = Config::from_sources(&s, Mode::default()).expect_err("invalid");
    let all = report.problems.join("\n");
    for needle in [
        "BACKEND_URL is required",
        "ALERT_INGEST_API_KEY is required",
        "VOLSPIKE_WEIGHT_CEILING_PCT",
        "BINANCE_FAPI_URL",
        "VOLSPIKE_HTTP_ADDR",
    ] {
        assert!(all.contains(needle), "missing {needle} in:\n{all}");
    }
    assert!(report.warnings.iter().any(|w| w.contains("FOO_BAR")));
}

#[test]
fn local_mode_needs_no_backend() {
    let s = sources(&[("HOME", "/home/newcomer")], "");
    let (config, _) = Config::from_sources(&s, Mode { local: true }).expect("valid");
    assert!(config.backends.is_empty());
    assert_eq!(
        config.state_dir,
        PathBuf::from("/home/newcomer/.local/state/volspike")
    );
    assert_eq!(config.http_addr.to_string(), "127.0.0.1:8080");
    assert_eq!(config.binance.ws_url, "wss://fstream.binance.com/market");
    assert_eq!(config.funding.stale_after, Duration::from_secs(180));
    assert_eq!(config.funding.silence, Duration::from_secs(30));
}

#[test]
fn binding_beyond_loopback_warns() {
    let s = sources(&[], "VOLSPIKE_HTTP_ADDR=0.0.0.0:8080\n");
    let (_, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("0.0.0.0:8080") && w.contains("no login")),
        "{:?}",
        report.warnings
    );
    let s = sources(&[], "VOLSPIKE_HTTP_ADDR=127.0.0.1:8080\n");
    let (_, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn check_config_shows_systemd_values_defaults_and_masked_urls() {
    let s = sources(
        &[],
        "BACKEND_URL=http://u:KEY@backend.example # not a comment\nALERT_INGEST_API_KEY=k\n",
    );
    let listing = effective(&s);
    let shown = |name: &str| {
        listing
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.shown.clone())
            .unwrap_or_else(|| panic!("{name} not listed"))
    };
    // systemd passes the whole line after `=`, ` #…` included.
    assert_eq!(
        shown("BACKEND_URL"),
        "http://u:****@backend.example # not a comment"
    );
    assert!(shown("VOLSPIKE_LIQUID_EXIT_USD").starts_with("50000000"));
    assert!(!listing.iter().any(|e| e.shown == "(not set)"));
    // The problem it causes quotes the URL masked too.
    let report = Config::from_sources(&s, Mode::default()).expect_err("a host with spaces");
    let text = format!("{:?}", report.problems);
    assert!(text.contains("u:****@") && !text.contains("KEY"), "{text}");
    assert!(text.contains("contains a blank"), "{text}");
}

#[test]
fn secrets_are_masked() {
    let s = sources(
        &[],
        "ALERT_INGEST_API_KEY=supersecret\nBACKEND_URL=https://b\n",
    );
    let listing = effective(&s);
    let key = listing
        .iter()
        .find(|e| e.name == "ALERT_INGEST_API_KEY")
        .expect("listed");
    assert_eq!(key.shown, "****");
    let (config, _) = Config::from_sources(&s, Mode::default()).expect("valid");
    assert!(!format!("{config:?}").contains("supersecret"));
}

#[test]
fn job_thresholds_default_to_jobs_md_and_are_validated() {
    let (config, _) = Config::from_sources(&sources(&[], ""), Mode { local: true }).expect("valid");
    assert_eq!(config.open_interest, OpenInterestConfig::default());
    assert_eq!(config.open_interest.poll, Duration::from_secs(30));
    assert_eq!(config.open_interest.min_contracts, 5_000.0);
    assert_eq!(config.open_interest.thresholds, [0.03, 0.05, 0.10]);
    assert_eq!(config.user_alerts.fast, Duration::from_secs(30));
    assert_eq!(config.user_alerts.free, Duration::from_secs(300));

    let s = sources(
        &[
            ("VOLSPIKE_OI_PCT_5M", "2.5"),
            ("VOLSPIKE_OI_MIN_CONTRACTS", "100"),
            ("VOLSPIKE_USER_ALERTS_FREE_SECS", "600"),
        ],
        "",
    );
    let (config, _) = Config::from_sources(&s, Mode { local: true }).expect("valid");
    assert!((config.open_interest.thresholds[0] - 0.025).abs() < 1e-12);
    assert_eq!(config.open_interest.min_contracts, 100.0);
    assert_eq!(config.user_alerts.free, Duration::from_secs(600));

    let s = sources(
        &[
            ("VOLSPIKE_OI_POLL_SECS", "1"),
            ("VOLSPIKE_OI_PCT_1H", "ten"),
            ("VOLSPIKE_USER_ALERTS_FAST_SECS", "0"),
        ],
        "",
    );
    let report = Config::from_sources(&s, Mode { local: true }).expect_err("invalid");
    let all = report.problems.join("\n");
    for needle in [
        "VOLSPIKE_OI_POLL_SECS",
        "VOLSPIKE_OI_PCT_1H",
        "VOLSPIKE_USER_ALERTS_FAST_SECS",
    ] {
        assert!(all.contains(needle), "missing {needle} in:\n{all}");
    }
}

#[test]
fn telegram_categories_default_and_override() {
    let s = sources(&[], "");
    let (config, _) = Config::from_sources(&s, Mode { local: true }).expect("valid");
    assert_eq!(config.telegram.categories["marketfeed"], "macro");
    assert_eq!(config.telegram.categories["watcherguru"], "crypto");

    let s = sources(
        &[(
            "TELEGRAM_CATEGORIES",
            "@MarketFeed=crypto, whale_alert=onchain",
        )],
        "",
    );
    let (config, _) = Config::from_sources(&s, Mode { local: true }).expect("valid");
    assert_eq!(config.telegram.categories.len(), 2);
    assert_eq!(config.telegram.categories["marketfeed"], "crypto");
    assert_eq!(config.telegram.categories["whale_alert"], "onchain");

    let s = sources(&[("TELEGRAM_CATEGORIES", "marketfeed")], "");
    let report = Config::from_sources(&s, Mode { local: true }).expect_err("invalid");
    assert!(report
        .problems
        .iter()
        .any(|p| p.contains("TELEGRAM_CATEGORIES")));
}

#[test]
fn the_old_pollers_names_are_honoured_and_said_so() {
    let s = sources(
        &[],
        "OI_SPIKE_THRESHOLD_PCT_5MIN=0.04\nOI_SPIKE_THRESHOLD_PCT_60MIN=0.12\nOI_ALERT_COOLDOWN_15MIN=1200\nOI_MIN_DELTA_CONTRACTS=1000\nOI_LOOKBACK_WINDOW_5MIN=300\nWS_FUNDING_ENABLED=true\n",
    );
    let (config, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
    let oi = &config.open_interest;
    assert!((oi.thresholds[0] - 0.04).abs() < 1e-12, "{oi:?}");
    assert!((oi.thresholds[1] - 0.05).abs() < 1e-12, "default kept");
    assert!((oi.thresholds[2] - 0.12).abs() < 1e-12, "{oi:?}");
    assert_eq!(oi.cooldowns[1], Duration::from_secs(1200));
    assert_eq!(oi.min_contracts, 1000.0);
    assert!(config.disabled_jobs.is_empty());
    let said = report.warnings.join("\n");
    for needle in [
        "OI_SPIKE_THRESHOLD_PCT_5MIN=0.04 (the old poller's fraction) is honoured as VOLSPIKE_OI_PCT_5M=4",
        "OI_ALERT_COOLDOWN_15MIN (the old poller's name) is honoured as VOLSPIKE_OI_COOLDOWN_15M_SECS",
        "OI_MIN_DELTA_CONTRACTS (the old poller's name) is honoured as VOLSPIKE_OI_MIN_CONTRACTS",
        "OI_LOOKBACK_WINDOW_5MIN (the old poller's name) is ignored",
        "WS_FUNDING_ENABLED=true is honoured",
    ] {
        assert!(said.contains(needle), "missing {needle:?} in:\n{said}");
    }
    assert!(!said.contains("unknown key"), "{said}");
    // check-config's listing shows the effective percent and its origin.
    let listing = effective(&s);
    let pct = listing
        .iter()
        .find(|e| e.name == "VOLSPIKE_OI_PCT_5M")
        .expect("listed");
    assert_eq!(pct.shown, "4 (from the old fraction 0.04)");
    assert!(matches!(&pct.origin, Some(Origin::File(n, 1)) if n == "OI_SPIKE_THRESHOLD_PCT_5MIN"));
    // Our own name wins over the old one.
    let both = sources(
        &[("VOLSPIKE_OI_PCT_5M", "2")],
        "OI_SPIKE_THRESHOLD_PCT_5MIN=0.04\n",
    );
    let (config, _) = Config::from_sources(&both, Mode { local: true }).expect("valid");
    assert!((config.open_interest.thresholds[0] - 0.02).abs() < 1e-12);
}

#[test]
fn ws_funding_enabled_false_switches_the_funding_stream_off() {
    let s = sources(&[], "WS_FUNDING_ENABLED=false\n");
    let (config, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
    assert_eq!(config.disabled_jobs, ["funding_stream"]);
    assert!(report
        .warnings
        .iter()
        .any(|w| w.contains("honoured as VOLSPIKE_DISABLED_JOBS=funding_stream")));
    let bad = sources(&[], "WS_FUNDING_ENABLED=perhaps\n");
    assert!(Config::from_sources(&bad, Mode { local: true }).is_err());
}

#[test]
fn the_old_alert_bot_token_never_reads_channels() {
    let s = sources(
        &[],
        "TELEGRAM_TOKEN=123:abc\nCHAT_ID=42\nTELEGRAM_CHANNELS=marketfeed,watcherguru\n",
    );
    let (config, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
    assert!(config.telegram.bot_token.is_some(), "still the alert bot");
    assert!(!config.telegram.ingest_with_bot);
    let said = report.warnings.join("\n");
    assert!(
        said.contains("TELEGRAM_TOKEN (the old alert bot's name) sends alert messages only (to TELEGRAM_ALERT_CHAT_ID); it does not read TELEGRAM_CHANNELS: those 2 channel(s) are read from their public web previews"),
        "{said}"
    );
    let s = sources(
        &[],
        "TELEGRAM_BOT_TOKEN=123:abc\nTELEGRAM_CHANNELS=marketfeed\n",
    );
    let (config, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
    assert!(config.telegram.ingest_with_bot);
    assert!(!report.warnings.iter().any(|w| w.contains("alert bot")));
}

#[test]
fn the_second_backend_takes_volume_alerts_only_unless_widened() {
    let dev = "BACKEND_URL=https://p.example\nALERT_INGEST_API_KEY=k\nVOLSPIKE_API_URL_DEV=https://d.example\nVOLSPIKE_API_KEY_DEV=kd\n";
    let (config, _) =
        Config::from_sources(&Sources::from_text(&[], dev), Mode::default()).expect("valid");
    assert!(config.backends[0].takes(Kind::Universe));
    assert_eq!(config.backends[1].kinds, Some(vec![Kind::VolumeAlert]));
    for kind in Kind::ALL {
        assert_eq!(config.backends[1].takes(kind), kind == Kind::VolumeAlert);
    }
    let widened = format!("{dev}VOLSPIKE_DEV_BACKEND_KINDS=volume_alert, oi_alert\n");
    let (config, _) =
        Config::from_sources(&Sources::from_text(&[], &widened), Mode::default()).expect("valid");
    assert_eq!(
        config.backends[1].kinds,
        Some(vec![Kind::VolumeAlert, Kind::OiAlert])
    );
    let all = format!("{dev}VOLSPIKE_DEV_BACKEND_KINDS=all\n");
    let (config, _) =
        Config::from_sources(&Sources::from_text(&[], &all), Mode::default()).expect("valid");
    assert_eq!(config.backends[1].kinds, None);
    let typo = format!("{dev}VOLSPIKE_DEV_BACKEND_KINDS=volume\n");
    assert!(Config::from_sources(&Sources::from_text(&[], &typo), Mode::default()).is_err());
}

#[test]
fn legacy_websocket_url_warns() {
    let s = sources(&[("BINANCE_WS_URL", "wss://fstream.binance.com")], "");
    let (_, report) = Config::from_sources(&s, Mode { local: true }).expect("valid");
    assert!(report.warnings.iter().any(|w| w.contains("legacy")));
}
