//! The dashboard as a person sees it: headless Chromium (Debian's
//! `chromium`, installed by tests/prereqs.sh) loads `GET /` from the real
//! binary fed by the fake Binance, runs the page's script, and the DOM it
//! leaves must have the expected rows in order with the right colours; the
//! sort and filter (driven through the URL fragment the column headers and
//! the search box write), the empty table and the phone layout too.
//! Screenshots are kept under `<target>/test-artifacts/`.
//!
//! Chromium missing is a failure, not a skip: CI must run this.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::cdp;
use crate::common::market::{fake_binance, start_appliance, wait_for_table, TABLE};
use crate::common::{http_get, wait_until, TempDir};
use serde_json::json;
use volspike_fakes::{FakeBinance, Market};

/// Longest a Chromium run may take on a busy 2-core machine.
const CHROMIUM_PATIENCE: Duration = Duration::from_secs(120);

/// Flags for every Chromium run. Every host but loopback resolves to
/// nothing, so the page (and Chromium's own background features) cannot
/// reach the network.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];

/// The Chromium binary, or a failure that says how to get it.
fn chromium() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    });
    match found {
        Some(path) => path,
        None => panic!(
            "chromium is not installed: run tests/prereqs.sh (it installs Debian's `chromium` package)"
        ),
    }
}

/// Runs headless Chromium on `url` with `extra` flags; returns stdout.
fn run_chromium(profile: &Path, url: &str, extra: &[&str]) -> String {
    let out_file = profile.with_extension("stdout");
    let err_file = profile.with_extension("stderr");
    let mut child = Command::new(chromium())
        .args(CHROMIUM_FLAGS)
        .arg("--virtual-time-budget=5000")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_file).expect("chromium stdout file"))
        .stderr(std::fs::File::create(&err_file).expect("chromium stderr file"))
        .spawn()
        .expect("starting chromium");
    let status = wait_until(CHROMIUM_PATIENCE, || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "chromium did not finish within {CHROMIUM_PATIENCE:?}; stderr:\n{}",
            std::fs::read_to_string(&err_file).unwrap_or_default()
        );
    };
    assert!(
        status.success(),
        "chromium failed ({status}); stderr:\n{}",
        std::fs::read_to_string(&err_file).unwrap_or_default()
    );
    std::fs::read_to_string(&out_file).unwrap_or_default()
}

/// Where screenshots go: `<target>/test-artifacts/`.
fn artifacts_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp
        .parent()
        .map(|target| target.join("test-artifacts"))
        .unwrap_or_else(|| tmp.join("test-artifacts"));
    std::fs::create_dir_all(&dir).expect("creating the artifacts directory");
    dir
}

/// One `<tr>` of the market table as Chromium serialized it.
#[derive(Debug)]
struct DomRow {
    symbol: String,
    cells: Vec<String>,
    /// Each cell's `class` attribute.
    classes: Vec<String>,
}

/// The value of attribute `name` inside one start tag.
fn attribute(tag: &str, name: &str) -> String {
    let needle = format!(" {name}=\"");
    tag.find(&needle)
        .map(|i| &tag[i + needle.len()..])
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// Text of the element starting at `html` (tags stripped).
fn text_of(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&amp;", "&").trim().to_string()
}

/// The rows of `<tbody id="market-rows">` in the dumped DOM.
fn market_rows(dom: &str) -> Vec<DomRow> {
    let start = dom
        .find("id=\"market-rows\"")
        .unwrap_or_else(|| panic!("no market table in the DOM:\n{dom}"));
    let body = &dom[start..];
    let body = &body[..body.find("</tbody>").unwrap_or(body.len())];
    body.split("<tr")
        .skip(1)
        .map(|tr| {
            let tag = &tr[..tr.find('>').unwrap_or(tr.len())];
            let (cells, classes) = tr
                .split("<td")
                .skip(1)
                .map(|td| {
                    let open = &td[..td.find('>').unwrap_or(td.len())];
                    let inner = &td[td.find('>').map_or(0, |i| i + 1)..];
                    (
                        text_of(&inner[..inner.find("</td>").unwrap_or(inner.len())]),
                        attribute(open, "class"),
                    )
                })
                .unzip();
            DomRow {
                symbol: attribute(tag, "data-symbol"),
                cells,
                classes,
            }
        })
        .collect()
}

/// The symbols of the market rows, in page order.
fn symbols(rows: &[DomRow]) -> Vec<&str> {
    rows.iter().map(|r| r.symbol.as_str()).collect()
}

/// The `#rrggbb` value of CSS custom property `name` in its first (light
/// theme) declaration, as RGB.
fn css_colour(page: &str, name: &str) -> (u8, u8, u8) {
    let value = page
        .split(&format!("{name}: "))
        .nth(1)
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_else(|| panic!("the page declares no {name}"));
    let hex = value
        .strip_prefix('#')
        .filter(|h| h.len() == 6)
        .unwrap_or_else(|| panic!("{name}: expected #rrggbb, got {value}"));
    let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex colour");
    (channel(0), channel(2), channel(4))
}

/// Whether the error banner is shown in the dumped DOM.
fn error_banner_shown(dom: &str) -> bool {
    let start = dom.find("id=\"error\"").expect("the error banner element");
    let tag = &dom[dom[..start].rfind('<').unwrap_or(0)..];
    let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
    !tag.contains("hidden")
}

/// Takes a screenshot of `url` at `size` (`"1280,900"`) into the artifacts
/// directory as `name` and checks it is a real PNG.
fn screenshot(profile: &Path, url: &str, size: &str, name: &str) -> PathBuf {
    let shot = artifacts_dir().join(name);
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        profile,
        url,
        &[
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size={size}"),
            "--hide-scrollbars",
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a real screenshot: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
    shot
}

#[test]
fn chromium_sees_the_table_colours_and_watchlist() {
    let dir = TempDir::new("dashboard");
    let fake = fake_binance();
    let app = start_appliance(&dir, &fake, &[]);
    wait_for_table(&app);
    let url = format!("http://{}/", app.addr);

    // The DOM after the page's script fetched /api/dashboard and drew.
    let dom = run_chromium(&dir.join("chromium-dom"), &url, &["--dump-dom"]);
    assert!(!error_banner_shown(&dom), "error banner shown:\n{dom}");
    let rows = market_rows(&dom);
    assert_eq!(symbols(&rows), TABLE, "rows in volume order; DOM:\n{dom}");
    // Columns: #, asset, price, 24h, volume, open interest, funding,
    // funding per year, next funding.
    let fixed = |r: &DomRow| r.cells[..8].to_vec();
    assert_eq!(
        fixed(&rows[0]),
        ["1", "AAA", "$2.5000", "0.00%", "$2.50B", "–", "+0.050%", "+54.75%"]
    );
    assert_eq!(
        fixed(&rows[1]),
        [
            "2",
            "BBB",
            "$65,000.00",
            "0.00%",
            "$1.20B",
            "–",
            "-0.050%",
            "-54.75%"
        ]
    );
    assert_eq!(
        fixed(&rows[2]),
        [
            "3",
            "CCC",
            "$0.500000",
            "0.00%",
            "$400.00M",
            "–",
            "+0.010%",
            "+10.95%"
        ]
    );
    // The next-funding countdown reads h:mm:ss.
    for r in &rows {
        let next = &r.cells[8];
        let parts: Vec<&str> = next.split(':').collect();
        assert!(
            parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
            "next funding {next:?} is not h:mm:ss"
        );
    }
    // Colour sits on the funding value, not on the row.
    assert!(rows[0].classes[6].split(' ').any(|c| c == "up"), "{rows:?}");
    assert!(
        rows[1].classes[6].split(' ').any(|c| c == "down"),
        "{rows:?}"
    );
    assert!(
        !rows[2].classes[6].contains("up") && !rows[2].classes[6].contains("down"),
        "{rows:?}"
    );
    assert!(
        !dom.contains("row-positive"),
        "whole rows are still painted"
    );
    // The appliance side was drawn too.
    assert!(
        dom.contains("data-job=\"funding_stream\""),
        "no job row in the DOM:\n{dom}"
    );
    assert!(
        dom.contains("href=\"/watchlist.txt\"") && dom.contains("download=\""),
        "no watchlist download link"
    );

    // The classes map to green and red text in the light theme, and the
    // page has a dark theme.
    let (_, page) = http_get(&app.addr, "/").expect("GET /");
    let (r, g, b) = css_colour(&page, "--up");
    assert!(g > r && g > b, "--up is not green: #{r:02x}{g:02x}{b:02x}");
    let (r, g, b) = css_colour(&page, "--down");
    assert!(r > g && r > b, "--down is not red: #{r:02x}{g:02x}{b:02x}");
    assert!(page.contains("@media (prefers-color-scheme: dark)"));

    // The watchlist the download link fetches.
    let (status, watchlist) = http_get(&app.addr, "/watchlist.txt").expect("GET /watchlist.txt");
    assert_eq!(status, 200);
    let lines: Vec<&str> = watchlist.lines().collect();
    assert_eq!(
        lines,
        [
            "BINANCE:AAAUSDT.P",
            "BINANCE:BBBUSDT.P",
            "BINANCE:CCCUSDT.P"
        ]
    );

    // A screenshot for people (CI keeps target/test-artifacts/).
    screenshot(
        &dir.join("chromium-shot"),
        &url,
        "1280,900",
        "dashboard.png",
    );
}

/// Sorting and filtering: the column headers and the search box write the
/// view into the URL fragment, and the page draws from it, so loading a
/// fragment is what a click or a keystroke does.
#[test]
fn chromium_sorts_and_filters() {
    let dir = TempDir::new("dashboard-sort");
    let fake = fake_binance();
    let app = start_appliance(&dir, &fake, &[]);
    wait_for_table(&app);
    let url = |fragment: &str| format!("http://{}/#{fragment}", app.addr);
    let dom_of = |profile: &str, fragment: &str| {
        run_chromium(&dir.join(profile), &url(fragment), &["--dump-dom"])
    };

    let dom = dom_of("by-funding", "sort=fundingRate&dir=asc");
    assert_eq!(
        symbols(&market_rows(&dom)),
        ["BBBUSDT", "CCCUSDT", "AAAUSDT"],
        "funding ascending"
    );
    assert!(
        dom.split("<th")
            .any(|th| th.contains("data-key=\"fundingRate\"")
                && th.contains("aria-sort=\"ascending\"")),
        "the funding header does not show the sort"
    );
    let dom = dom_of("by-price", "sort=price&dir=desc");
    assert_eq!(
        symbols(&market_rows(&dom)),
        ["BBBUSDT", "AAAUSDT", "CCCUSDT"],
        "price descending"
    );
    let dom = dom_of("by-asset", "sort=asset&dir=desc");
    assert_eq!(
        symbols(&market_rows(&dom)),
        ["CCCUSDT", "BBBUSDT", "AAAUSDT"],
        "asset descending"
    );

    // The filter matches symbols case-insensitively and keeps the sort.
    let dom = dom_of("filter", "q=cc");
    let rows = market_rows(&dom);
    assert_eq!(symbols(&rows), ["CCCUSDT"], "filter cc");
    assert_eq!(rows[0].cells[0], "3", "the rank stays the volume rank");
    assert!(dom.contains("1 of 3 symbols"), "the note counts the filter");
    let dom = dom_of("filter-none", "q=zzz");
    let rows = market_rows(&dom);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].cells[0].contains("No symbol matches"),
        "no explanation for an empty filter: {rows:?}"
    );
    assert!(!error_banner_shown(&dom), "error banner shown:\n{dom}");
}

/// Before any data (or with Binance unreachable) the table is empty: the
/// page explains it in a row and shows no error.
#[test]
fn chromium_explains_an_empty_table() {
    let dir = TempDir::new("dashboard-empty");
    let fake = FakeBinance::start(Market::new()).expect("starting the fake Binance");
    let app = start_appliance(&dir, &fake, &[]);
    let (status, body) = http_get(&app.addr, "/api/dashboard").expect("GET /api/dashboard");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(json["market"]["rows"].as_array().map(Vec::len), Some(0));
    let url = format!("http://{}/", app.addr);

    let dom = run_chromium(&dir.join("chromium-dom"), &url, &["--dump-dom"]);
    assert!(
        !error_banner_shown(&dom),
        "an empty table shows the error banner:\n{dom}"
    );
    let rows = market_rows(&dom);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].symbol.is_empty());
    assert!(
        rows[0].cells[0].starts_with("No market data yet")
            || rows[0].cells[0].starts_with("No USDT perpetual"),
        "no explanatory row: {rows:?}"
    );
    // The rest of the page was drawn: the job table and the WebSocket panel.
    assert!(dom.contains("data-job=\"funding_stream\""), "{dom}");
    screenshot(
        &dir.join("chromium-shot"),
        &url,
        "1280,700",
        "dashboard-empty.png",
    );
}

/// The delivery panel names what holds a backend back: a dead letter kept
/// from a previous run, and the pause after the backend refused the key
/// (401) on the post that run left pending.
#[test]
fn chromium_shows_dead_letters_and_a_paused_backend() {
    let dir = TempDir::new("dashboard-delivery");
    let outbox = dir.join("state").join("outbox").join("primary");
    std::fs::create_dir_all(outbox.join("dead")).expect("outbox folders");
    let post = |seq: u64| {
        json!({
            "seq": seq, "enqueued_ms": 1_764_770_700_000u64, "kind": "volume_alert",
            "path": "/api/volume-alerts/ingest", "auth": "Header", "key": null,
            "dedup_until_ms": 0, "coalesce": null, "label": format!("volume alert {seq}"),
            "body": {"symbol": "XUSDT"}
        })
    };
    let letter = json!({"post": post(1), "reason": "HTTP 400: bad symbol", "deadAtMs": 1_764_770_800_000u64});
    crate::common::write(
        &outbox.join("dead").join("0000000000000001.json"),
        &letter.to_string(),
    );
    crate::common::write(&outbox.join("0000000000000002.json"), &post(2).to_string());
    let backend = volspike_fakes::FakeBackend::start().expect("fake backend");
    backend.fail_next(1_000_000, 401);
    let fake = fake_binance();
    let url = backend.url();
    let app = crate::common::Running::start(
        &dir,
        &["--only", "funding_stream"],
        &[
            ("BINANCE_WS_URL", &fake.ws_url()),
            ("BINANCE_FAPI_URL", &fake.rest_url()),
            ("BACKEND_URL", &url),
            ("ALERT_INGEST_API_KEY", "refused-key"),
        ],
    );
    assert!(app.wait_http(), "HTTP never came up:\n{}", app.log_text());
    let paused = wait_until(Duration::from_secs(60), || {
        let (_, body) = http_get(&app.addr, "/api/dashboard").ok()?;
        let json: serde_json::Value = serde_json::from_str(&body).ok()?;
        json["appliance"]["delivery"]["primary"]["paused"]
            .is_string()
            .then_some(())
    });
    assert!(paused.is_some(), "never paused:\n{}", app.log_text());

    let dom = run_chromium(
        &dir.join("chromium-dom"),
        &format!("http://{}/", app.addr),
        &["--dump-dom"],
    );
    assert!(!error_banner_shown(&dom), "error banner shown:\n{dom}");
    let start = dom.find("id=\"backlog\"").expect("backlog panel");
    let end = dom[start..].find("</dl>").map_or(dom.len(), |e| start + e);
    let panel = text_of(&dom[start..end]);
    assert!(panel.contains("1 pending"), "{panel}");
    assert!(
        panel.contains("dead letters1 kept (volspike outbox list)"),
        "{panel}"
    );
    assert!(panel.contains("paused"), "{panel}");
    assert!(panel.contains("401"), "the pause names the answer: {panel}");
    // Volume alerts' latency row (none detected in this run).
    assert!(
        panel.contains("volume latencyevent → queued: no alert yet"),
        "{panel}"
    );
    assert!(
        dom[start..end].contains("class=\"trouble\""),
        "the pause stands out: {panel}"
    );
}

/// Clicking a column header sorts (a second click reverses), typing in the
/// search box filters: the real event handlers, through DevTools.
#[test]
fn chromium_clicks_sort_and_typing_filters() {
    let dir = TempDir::new("dashboard-click");
    let fake = fake_binance();
    let app = start_appliance(&dir, &fake, &[]);
    wait_for_table(&app);
    let mut browser = cdp::Browser::start(&chromium(), &dir.join("chromium"), CHROMIUM_FLAGS);
    browser.navigate(&format!("http://{}/", app.addr));
    let rows = "[...document.querySelectorAll('#market-rows tr')].map(r => r.dataset.symbol || r.textContent)";
    assert!(
        browser.wait_for("document.querySelectorAll('#market-rows tr[data-symbol]').length === 3"),
        "the table was never drawn"
    );
    browser.eval("document.querySelector('th[data-key=fundingRate]').click()");
    assert_eq!(
        browser.eval(rows),
        json!(["AAAUSDT", "CCCUSDT", "BBBUSDT"]),
        "first click: funding, highest first"
    );
    browser.eval("document.querySelector('th[data-key=fundingRate]').click()");
    assert_eq!(
        browser.eval(rows),
        json!(["BBBUSDT", "CCCUSDT", "AAAUSDT"]),
        "second click: lowest first"
    );
    assert_eq!(
        browser.eval("location.hash"),
        json!("#sort=fundingRate&dir=asc"),
        "the view is in the URL"
    );
    browser.eval(
        "const s = document.getElementById('search'); s.value = 'bb'; s.dispatchEvent(new Event('input'))",
    );
    assert_eq!(browser.eval(rows), json!(["BBBUSDT"]), "typed filter");
    // The next refresh keeps the sort and the filter.
    std::thread::sleep(std::time::Duration::from_secs(6));
    assert_eq!(browser.eval(rows), json!(["BBBUSDT"]), "after a refresh");
    assert_eq!(
        browser.eval("document.getElementById('error').hidden"),
        json!(true)
    );

    // The dark theme follows the system setting.
    let background = "getComputedStyle(document.body).backgroundColor";
    let light = browser.eval(background);
    browser.emulate_color_scheme("dark");
    let dark = browser.eval(background);
    assert_ne!(light, dark, "no dark theme");
    let channels: Vec<u32> = dark
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(", ")
        .filter_map(|c| c.parse().ok())
        .collect();
    assert!(
        channels.len() == 3 && channels.iter().all(|c| *c < 64),
        "the dark background is not dark: {dark}"
    );
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    let shot = artifacts_dir().join("dashboard-dark.png");
    std::fs::write(&shot, png).expect("writing the dark screenshot");
    eprintln!("screenshot: {}", shot.display());
}

/// At 390 px (a phone) the page has no sideways scroll and shows the
/// appliance's state before the market table.
#[test]
fn chromium_phone_layout_fits() {
    let dir = TempDir::new("dashboard-phone");
    let fake = fake_binance();
    let app = start_appliance(&dir, &fake, &[]);
    wait_for_table(&app);
    let mut browser = cdp::Browser::start(&chromium(), &dir.join("chromium"), CHROMIUM_FLAGS);
    browser.emulate_phone(390, 844);
    browser.navigate(&format!("http://{}/", app.addr));
    assert!(
        browser.wait_for("document.querySelectorAll('#market-rows tr[data-symbol]').length === 3"),
        "the table was never drawn"
    );
    let width = |b: &mut cdp::Browser, what: &str| {
        b.eval(&format!("document.documentElement.{what}"))
            .as_u64()
            .unwrap_or_else(|| panic!("no {what}"))
    };
    let client = width(&mut browser, "clientWidth");
    let scroll = width(&mut browser, "scrollWidth");
    assert_eq!(client, 390, "the emulated phone is not 390 px wide");
    assert!(
        scroll <= client,
        "sideways scroll on a phone: scrollWidth {scroll} > clientWidth {client}"
    );
    // The page's own record of the same check, after its last redraw.
    assert_eq!(
        browser.eval("document.documentElement.dataset.scrollWidth <= 390"),
        json!(true)
    );
    let top = |b: &mut cdp::Browser, id: &str| {
        b.eval(&format!(
            "document.getElementById('{id}').getBoundingClientRect().top"
        ))
        .as_f64()
        .unwrap_or_else(|| panic!("no {id}"))
    };
    let appliance = top(&mut browser, "appliance");
    let market = top(&mut browser, "market");
    assert!(
        appliance < market,
        "the appliance's state is not first on a phone: {appliance} vs {market}"
    );
    // Every market row fits on the screen: no cell is cut off at the right.
    let right = browser.eval(
        "Math.max(...[...document.querySelectorAll('#market-table td, #market-table th')].map(c => c.getBoundingClientRect().right))",
    );
    assert!(
        right.as_f64().is_some_and(|r| r <= 390.5),
        "a table cell ends at {right} px, beyond the 390 px screen"
    );
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    let shot = artifacts_dir().join("dashboard-phone.png");
    std::fs::write(&shot, png).expect("writing the phone screenshot");
    eprintln!("screenshot: {}", shot.display());
}
