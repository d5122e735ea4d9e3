//! The dashboard as a person sees it: headless Chromium (Debian's
//! `chromium`, installed by tests/prereqs.sh) loads `GET /` from the real
//! binary fed by the fake Binance, runs the page's script, and the DOM it
//! leaves must have the expected rows in order with the right colours. A
//! screenshot is kept under `<target>/test-artifacts/dashboard.png`.
//!
//! Chromium missing is a failure, not a skip: CI must run this.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::market::{fake_binance, start_appliance, wait_for_table, TABLE};
use common::{http_get, wait_until, TempDir};

/// Longest a Chromium run may take on a busy 2-core machine.
const CHROMIUM_PATIENCE: Duration = Duration::from_secs(120);

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
/// Every host but loopback resolves to nothing, so the page (and Chromium's
/// own background features) cannot reach the network.
fn run_chromium(profile: &Path, url: &str, extra: &[&str]) -> String {
    let out_file = profile.with_extension("stdout");
    let err_file = profile.with_extension("stderr");
    let mut child = Command::new(chromium())
        .args([
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
            "--virtual-time-budget=5000",
        ])
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
    class: String,
    symbol: String,
    cells: Vec<String>,
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
            let cells = tr
                .split("<td")
                .skip(1)
                .map(|td| {
                    let inner = &td[td.find('>').map_or(0, |i| i + 1)..];
                    text_of(&inner[..inner.find("</td>").unwrap_or(inner.len())])
                })
                .collect();
            DomRow {
                class: attribute(tag, "class"),
                symbol: attribute(tag, "data-symbol"),
                cells,
            }
        })
        .collect()
}

/// The `background-color` of CSS rule `selector` in the page, as RGB.
fn rule_background(page: &str, selector: &str) -> (u8, u8, u8) {
    let rule = page
        .find(&format!("{selector} {{"))
        .map(|i| &page[i..])
        .and_then(|r| r.split('}').next())
        .unwrap_or_else(|| panic!("no CSS rule for {selector}"));
    let value = rule
        .split("background-color:")
        .nth(1)
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_else(|| panic!("{selector} sets no background-color: {rule}"));
    let hex = value
        .strip_prefix('#')
        .filter(|h| h.len() == 6)
        .unwrap_or_else(|| panic!("{selector}: expected #rrggbb, got {value}"));
    let channel = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex colour");
    (channel(0), channel(2), channel(4))
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
    let rows = market_rows(&dom);
    let symbols: Vec<&str> = rows.iter().map(|r| r.symbol.as_str()).collect();
    assert_eq!(symbols, TABLE, "rows in volume order; DOM:\n{dom}");
    assert_eq!(rows[0].class, "row-positive", "{rows:?}");
    assert_eq!(rows[1].class, "row-negative", "{rows:?}");
    assert_eq!(rows[2].class, "row-neutral", "{rows:?}");
    assert_eq!(rows[0].cells, ["1", "AAA", "$2.50B", "0.050%", "$2.5000"]);
    assert_eq!(
        rows[1].cells,
        ["2", "BBB", "$1.20B", "-0.050%", "$65,000.00"]
    );
    assert_eq!(
        rows[2].cells,
        ["3", "CCC", "$400.00M", "0.010%", "$0.500000"]
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

    // The classes map to green and red backgrounds.
    let (_, page) = http_get(&app.addr, "/").expect("GET /");
    let (r, g, b) = rule_background(&page, "tr.row-positive");
    assert!(
        g > r && g > b,
        "row-positive is not green: #{r:02x}{g:02x}{b:02x}"
    );
    let (r, g, b) = rule_background(&page, "tr.row-negative");
    assert!(
        r > g && r > b,
        "row-negative is not red: #{r:02x}{g:02x}{b:02x}"
    );

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
    let shot = artifacts_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &dir.join("chromium-shot"),
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
            "--hide-scrollbars",
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a real screenshot: {} bytes",
        png.len()
    );
    // A phone-sized one too: the page must stay usable at 390 px.
    let phone = artifacts_dir().join("dashboard-phone.png");
    run_chromium(
        &dir.join("chromium-phone"),
        &url,
        &[
            &format!("--screenshot={}", phone.display()),
            "--window-size=390,844",
            "--hide-scrollbars",
        ],
    );
    assert!(phone.is_file());
    eprintln!("screenshots: {} {}", shot.display(), phone.display());
}
