//! Public channel web preview (`https://t.me/s/<username>`): fetch and parse.
//!
//! The page lists a channel's recent posts (about 20, oldest first);
//! `?before=<id>` lists the ones before `id`. Each post is a
//! `div.tgme_widget_message[data-post="<channel>/<id>"]` holding the text
//! (`.tgme_widget_message_text`), the date (`time[datetime]`), the views
//! (`.tgme_widget_message_views`, "5.2K"), the media wraps and link previews.
//! The numeric channel id is in `data-peer="c<bare id>_<hash>"`.
//!
//! Parsed with `tl` (a real HTML parser, ~40 KB of the release binary, where
//! html5ever-based `scraper` costs ~1 MB). `tl` does not decode character
//! references, so [`decode_entities`] does. The page is someone else's markup:
//! anything we do not recognise is an error naming what is missing, never a
//! panic (the parse also runs under `catch_unwind` as a last guard).

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use super::{excerpt, push_link, Channel, Media, Post, TelegramError, MAX_RETRY_AFTER};

/// Time for one page.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest page read (a real one is ~100 KB).
const MAX_PAGE_BYTES: u64 = 4 * 1024 * 1024;
/// The Bot API id of a channel is -100 followed by its bare id.
const CHANNEL_ID_BASE: i64 = 1_000_000_000_000;

/// One parsed preview page.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewPage {
    /// The channel, when the page tells its numeric id (`data-peer`).
    pub channel: Option<Channel>,
    /// Posts in page order (oldest first).
    pub posts: Vec<Post>,
}

/// A client for the preview site.
#[derive(Clone, Debug)]
pub struct PreviewClient {
    /// Base URL without a trailing slash (`https://t.me/s`).
    base: String,
    /// Connection pool and timeouts.
    agent: ureq::Agent,
}

impl PreviewClient {
    /// A client for `base_url` (`TELEGRAM_PREVIEW_URL`).
    pub fn new(base_url: &str) -> PreviewClient {
        PreviewClient {
            base: base_url.trim_end_matches('/').to_string(),
            agent: crate::net::agent(REQUEST_TIMEOUT, 2),
        }
    }

    /// The page of `username`'s posts (before post `before`, when given).
    pub fn fetch(&self, username: &str, before: Option<i64>) -> Result<String, TelegramError> {
        let url = format!("{}/{}", self.base, username.trim_start_matches('@'));
        let mut request = self.agent.get(&url);
        if let Some(before) = before {
            request = request.query("before", before.to_string());
        }
        let mut response = request
            .call()
            .map_err(|e| TelegramError::Transport(format!("{url}: {e}")))?;
        let status = response.status().as_u16();
        if status == 429 {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(60);
            return Err(TelegramError::RateLimited {
                retry_after: Duration::from_secs(retry_after).min(MAX_RETRY_AFTER),
            });
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_PAGE_BYTES)
            .read_to_string()
            .map_err(|e| TelegramError::Transport(format!("{url}: {e}")))?;
        if !(200..300).contains(&status) {
            return Err(TelegramError::Api {
                code: status,
                description: format!("{url}: {}", excerpt(&body, None)),
            });
        }
        Ok(body)
    }
}

/// Parses a preview page. A page without the preview's markers, or a post
/// without its id or date, is an error: better no posts than posts with
/// made-up ids or dates, and a structure change must be loud in the log.
pub fn parse_page(html: &str) -> Result<PreviewPage, TelegramError> {
    match std::panic::catch_unwind(|| parse_page_inner(html)) {
        Ok(result) => result,
        Err(_) => Err(TelegramError::Unexpected(
            "preview page: the HTML parser gave up on this page".into(),
        )),
    }
}

fn parse_page_inner(html: &str) -> Result<PreviewPage, TelegramError> {
    let unexpected = |what: String| TelegramError::Unexpected(format!("preview page: {what}"));
    let html = close_void_tags(html);
    let dom = tl::parse(&html, tl::ParserOptions::default())
        .map_err(|e| unexpected(format!("not HTML: {e}")))?;
    let parser = dom.parser();
    let tags: Vec<&tl::HTMLTag> = dom.nodes().iter().filter_map(|n| n.as_tag()).collect();

    let messages: Vec<&tl::HTMLTag> = tags
        .iter()
        .copied()
        .filter(|t| t.attributes().is_class_member("tgme_widget_message"))
        .collect();
    let channel_page = tags.iter().any(|t| {
        let a = t.attributes();
        a.is_class_member("tgme_channel_history") || a.is_class_member("tgme_channel_info")
    });
    if messages.is_empty() && !channel_page {
        return Err(unexpected(
            "no div.tgme_widget_message and no channel header (the page structure changed?)".into(),
        ));
    }

    let mut posts = Vec::with_capacity(messages.len());
    let mut bare_id: Option<i64> = None;
    let mut username: Option<String> = None;
    for message in messages {
        let data_post = attr(message, "data-post")
            .ok_or_else(|| unexpected("a message without data-post".into()))?;
        let (name, id) = data_post
            .rsplit_once('/')
            .and_then(|(name, id)| Some((name.to_string(), id.parse::<i64>().ok()?)))
            .ok_or_else(|| unexpected(format!("data-post `{data_post}` is not channel/id")))?;
        username.get_or_insert(name);
        if bare_id.is_none() {
            bare_id = attr(message, "data-peer").and_then(|p| parse_peer(&p));
        }
        posts.push(parse_post(message, parser, id).map_err(|what| {
            unexpected(format!(
                "post {data_post}: {what} (the page structure changed?)"
            ))
        })?);
    }

    let title = tags
        .iter()
        .find(|t| {
            t.attributes()
                .is_class_member("tgme_channel_info_header_title")
        })
        .map(|t| text_of(t, parser))
        .or_else(|| meta_content(&tags, "og:title"))
        .filter(|t| !t.is_empty());
    let channel = bare_id.map(|bare| Channel {
        id: -(CHANNEL_ID_BASE + bare),
        title: title
            .clone()
            .or_else(|| username.clone())
            .unwrap_or_default(),
        username: username.clone(),
    });
    Ok(PreviewPage { channel, posts })
}

/// Void elements written `<br/>` (no space before the slash, as Telegram
/// writes line breaks) become `<br>`: tl 0.7 reads `br/` as the tag name, sees
/// no void element, and nests the rest of the page inside it.
fn close_void_tags(html: &str) -> Cow<'_, str> {
    const VOID: [&str; 8] = ["br", "hr", "img", "wbr", "input", "meta", "link", "source"];
    if !html.contains("/>") {
        return Cow::Borrowed(html);
    }
    let mut out = html.to_string();
    for name in VOID {
        for written in [
            format!("<{name}/>"),
            format!("<{}/>", name.to_ascii_uppercase()),
        ] {
            if out.contains(&written) {
                out = out.replace(&written, &format!("<{name}>"));
            }
        }
    }
    Cow::Owned(out)
}

/// One post: everything but the id comes from inside its element.
fn parse_post(message: &tl::HTMLTag, parser: &tl::Parser, id: i64) -> Result<Post, String> {
    let inside: Vec<&tl::HTMLTag> = message
        .children()
        .all(parser)
        .iter()
        .filter_map(|n| n.as_tag())
        .collect();
    let with_class = |class: &str| {
        inside
            .iter()
            .copied()
            .find(|t| t.attributes().is_class_member(class))
    };

    // A video's duration is a <time> too, without `datetime`.
    let datetime = inside
        .iter()
        .filter(|t| t.name().as_bytes() == b"time")
        .find_map(|t| attr(t, "datetime"))
        .ok_or("no time[datetime]")?;
    let date = parse_datetime(&datetime).ok_or_else(|| format!("bad datetime `{datetime}`"))?;

    let text_tag = with_class("tgme_widget_message_text");
    let text = text_tag
        .map(|t| text_of(t, parser))
        .filter(|t| !t.is_empty());

    let mut links = Vec::new();
    if let Some(text_tag) = text_tag {
        for a in text_tag
            .children()
            .all(parser)
            .iter()
            .filter_map(|n| n.as_tag())
            .filter(|t| t.name().as_bytes() == b"a")
        {
            // Hashtags and mentions are relative links to t.me itself.
            if let Some(href) = attr(a, "href").filter(|h| is_web_link(h)) {
                push_link(&mut links, &href);
            }
        }
    }
    for preview in inside.iter().filter(|t| {
        t.name().as_bytes() == b"a"
            && t.attributes()
                .is_class_member("tgme_widget_message_link_preview")
    }) {
        if let Some(href) = attr(preview, "href").filter(|h| is_web_link(h)) {
            push_link(&mut links, &href);
        }
    }

    let views = match with_class("tgme_widget_message_views") {
        Some(t) => {
            let shown = text_of(t, parser);
            Some(parse_count(&shown).ok_or_else(|| format!("views `{shown}` is not a count"))?)
        }
        None => None,
    };
    let sender_name = with_class("tgme_widget_message_from_author")
        .map(|t| text_of(t, parser))
        .filter(|s| !s.is_empty());

    let has = |class: &str| with_class(class).is_some();
    let media = if has("tgme_widget_message_sticker_wrap") {
        Some(Media::Sticker)
    } else if has("tgme_widget_message_voice_player") {
        Some(Media::Voice)
    } else if has("tgme_widget_message_video_player")
        || has("tgme_widget_message_roundvideo_player")
    {
        // GIFs use the same player on the page; they count as video here.
        Some(Media::Video)
    } else if has("tgme_widget_message_photo_wrap") {
        Some(Media::Photo)
    } else if has("tgme_widget_message_audio") {
        Some(Media::Audio)
    } else if has("tgme_widget_message_document") {
        Some(Media::Document)
    } else {
        None
    };

    Ok(Post {
        id,
        text,
        date,
        sender_name,
        views,
        forwards: None,
        media,
        links,
    })
}

/// An attribute's value, character references decoded.
fn attr(tag: &tl::HTMLTag, name: &str) -> Option<String> {
    let raw = tag.attributes().get(name).flatten()?;
    Some(decode_entities(&raw.as_utf8_str()).into_owned())
}

/// `content` of `<meta property="…">`.
fn meta_content(tags: &[&tl::HTMLTag], property: &str) -> Option<String> {
    tags.iter()
        .filter(|t| t.name().as_bytes() == b"meta")
        .find(|t| attr(t, "property").as_deref() == Some(property))
        .and_then(|t| attr(t, "content"))
}

/// `c1006503122_-64969…` → 1006503122.
fn parse_peer(peer: &str) -> Option<i64> {
    let digits = peer.strip_prefix('c')?.split('_').next()?;
    digits.parse().ok().filter(|n| *n > 0)
}

/// Whether `href` is an absolute web link (not `?q=%23tag` or `javascript:`).
fn is_web_link(href: &str) -> bool {
    let lower = href.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The visible text of `tag`: text nodes decoded, `<br>` as a newline,
/// surrounding whitespace trimmed.
fn text_of(tag: &tl::HTMLTag, parser: &tl::Parser) -> String {
    let mut out = String::new();
    collect_text(tag, parser, &mut out, 0);
    out.trim().to_string()
}

/// Deepest nesting followed: deeper markup is someone's mistake, and the
/// recursion must not run out of stack on it.
const MAX_DEPTH: usize = 64;

fn collect_text(tag: &tl::HTMLTag, parser: &tl::Parser, out: &mut String, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for handle in tag.children().top().iter() {
        match handle.get(parser) {
            Some(tl::Node::Raw(text)) => out.push_str(&decode_entities(&text.as_utf8_str())),
            Some(tl::Node::Tag(child)) => {
                let name = child.name().as_bytes();
                if name.eq_ignore_ascii_case(b"br") {
                    out.push('\n');
                } else if !name.eq_ignore_ascii_case(b"script")
                    && !name.eq_ignore_ascii_case(b"style")
                {
                    collect_text(child, parser, out, depth + 1);
                }
            }
            _ => {}
        }
    }
}

/// Decodes HTML character references: the named ones Telegram's pages use
/// and every numeric one. Unknown references are kept as written.
pub fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest[1..]
            .find(';')
            .filter(|end| *end <= 10)
            .and_then(|end| Some((decode_reference(&rest[1..1 + end])?, end + 2)));
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// The character of one reference without `&` and `;` (`amp`, `#39`, `#x27`).
fn decode_reference(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return char::from_u32(code);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "laquo" => '«',
        "raquo" => '»',
        "mdash" => '—',
        "ndash" => '–',
        "hellip" => '…',
        _ => return None,
    })
}

/// "842" → 842, "5.2K" → 5200, "1.3M" → 1300000 (how the page shows views).
pub fn parse_count(shown: &str) -> Option<u64> {
    let shown = shown.trim();
    let (number, factor) = match shown.chars().last()? {
        'K' | 'k' => (&shown[..shown.len() - 1], 1e3),
        'M' | 'm' => (&shown[..shown.len() - 1], 1e6),
        'B' | 'b' => (&shown[..shown.len() - 1], 1e9),
        _ => (shown, 1.0),
    };
    let value: f64 = number.trim().replace(',', "").parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    Some((value * factor).round() as u64)
}

/// `2025-12-04T12:00:00+00:00` (or `…Z`, with or without fractions) → time.
pub fn parse_datetime(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let base = s.get(..19)?;
    let t = humantime::parse_rfc3339(&format!("{base}Z")).ok()?;
    let mut zone = &s[19..];
    if let Some(frac) = zone.strip_prefix('.') {
        zone = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset_secs: i64 = match zone {
        "Z" | "z" | "" => 0,
        _ => {
            let sign = match zone.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = zone[1..].split_once(':')?;
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    // Local time = UTC + offset, so UTC = local − offset.
    if offset_secs >= 0 {
        t.checked_sub(Duration::from_secs(offset_secs as u64))
    } else {
        t.checked_add(Duration::from_secs(offset_secs.unsigned_abs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::iso;

    const PAGE: &str = include_str!("../../tests/fixtures/telegram/preview_marketfeed.html");
    const CHANGED: &str = include_str!("../../tests/fixtures/telegram/preview_changed.html");

    #[test]
    fn fixture_page_parses_to_the_expected_posts() {
        let page = parse_page(PAGE).expect("the fixture parses");
        assert_eq!(
            page.channel,
            Some(Channel {
                id: -1_001_234_567_890,
                username: Some("marketfeed".into()),
                title: "Market Feed".into(),
            })
        );
        let ids: Vec<i64> = page.posts.iter().map(|p| p.id).collect();
        assert_eq!(ids, [121, 122, 123, 125]);

        let cpi = &page.posts[0];
        assert_eq!(
            cpi.text.as_deref(),
            Some("🇺🇸 US CPI (YoY) Actual 2.9% & Expected 3.0%\nCore CPI \"cooler\" than expected — www.bls.gov/cpi #CPI")
        );
        assert_eq!(iso(cpi.date), "2025-12-04T13:30:00Z");
        assert_eq!(cpi.views, Some(5200));
        assert_eq!(cpi.forwards, None);
        assert_eq!(cpi.sender_name.as_deref(), Some("Ann Analyst"));
        assert_eq!(cpi.media, None);
        assert_eq!(cpi.links, ["https://www.bls.gov/cpi/"]);

        let chart = &page.posts[1];
        assert_eq!(chart.text.as_deref(), Some("Chart: 10Y yields vs DXY"));
        assert_eq!(chart.media, Some(Media::Photo));
        assert_eq!(chart.views, Some(842));
        assert_eq!(chart.sender_name, None);
        assert!(chart.links.is_empty());

        let video = &page.posts[2];
        assert_eq!(video.text, None);
        assert_eq!(video.media, Some(Media::Video));
        assert_eq!(video.views, Some(1_300_000));
        // The video's duration is a <time> too, without datetime: not the date.
        assert_eq!(iso(video.date), "2025-12-04T14:00:00Z");

        let doc = &page.posts[3];
        assert_eq!(doc.media, Some(Media::Document));
        assert_eq!(iso(doc.date), "2025-12-04T14:15:00Z");
        assert_eq!(
            doc.links,
            [
                "https://www.federalreserve.gov/monetarypolicy.htm",
                "https://www.reuters.com/markets/fed-minutes/"
            ]
        );
    }

    #[test]
    fn changed_structure_is_an_error_not_a_panic() {
        let err = parse_page(CHANGED).expect_err("unknown structure");
        assert!(err.to_string().contains("structure changed"), "{err}");

        // A post that lost its date is refused rather than dated to 1970.
        let undated = PAGE.replace("datetime=\"2025-12-04T13:45:10+00:00\"", "data-x=\"1\"");
        let err = parse_page(&undated).expect_err("undated post");
        assert!(err.to_string().contains("marketfeed/122"), "{err}");

        let unreadable_views = PAGE.replace(">842<", ">many<");
        assert!(parse_page(&unreadable_views).is_err());

        // Garbage and truncated pages: errors, never panics.
        for junk in [
            "",
            "<",
            "<div class=",
            "\u{0}\u{1}<<<>>>",
            &PAGE[..PAGE.len() / 2],
        ] {
            let _ = parse_page(junk);
        }
    }

    #[test]
    fn self_closed_line_breaks_do_not_swallow_the_page() {
        let html = r#"<div class="tgme_channel_info"></div>
            <div class="tgme_widget_message" data-post="c/1"><div class="tgme_widget_message_text">a<br/>b<BR/>c</div>
            <time datetime="2025-12-04T12:00:00+00:00"></time></div>
            <div class="tgme_widget_message" data-post="c/2"><time datetime="2025-12-04T12:01:00+00:00"></time></div>"#;
        let page = parse_page(html).expect("parses");
        assert_eq!(page.posts.len(), 2);
        assert_eq!(page.posts[0].text.as_deref(), Some("a\nb\nc"));
        assert_eq!(page.posts[1].text, None);
    }

    #[test]
    fn an_empty_channel_page_has_no_posts() {
        let empty = r#"<html><body><div class="tgme_channel_info"></div>
            <section class="tgme_channel_history"></section></body></html>"#;
        let page = parse_page(empty).expect("a channel page");
        assert!(page.posts.is_empty());
        assert_eq!(page.channel, None);
    }

    #[test]
    fn counts_as_the_page_shows_them() {
        assert_eq!(parse_count("842"), Some(842));
        assert_eq!(parse_count("5.2K"), Some(5200));
        assert_eq!(parse_count("12K"), Some(12_000));
        assert_eq!(parse_count("1.3M"), Some(1_300_000));
        assert_eq!(parse_count("lots"), None);
        assert_eq!(parse_count(""), None);
    }

    #[test]
    fn datetimes_with_offsets() {
        let t = |s| parse_datetime(s).map(iso);
        assert_eq!(
            t("2025-12-04T12:00:00+00:00").as_deref(),
            Some("2025-12-04T12:00:00Z")
        );
        assert_eq!(
            t("2025-12-04T14:30:00+02:30").as_deref(),
            Some("2025-12-04T12:00:00Z")
        );
        assert_eq!(
            t("2025-12-04T07:00:00.123-05:00").as_deref(),
            Some("2025-12-04T12:00:00Z")
        );
        assert_eq!(
            t("2025-12-04T12:00:00Z").as_deref(),
            Some("2025-12-04T12:00:00Z")
        );
        assert_eq!(t("yesterday"), None);
        assert_eq!(t("2025-12-04T12:00:00+2"), None);
    }

    #[test]
    fn character_references() {
        assert_eq!(decode_entities("a &amp; b"), "a & b");
        assert_eq!(decode_entities("&quot;x&#39;s&#x27;&quot;"), "\"x's'\"");
        assert_eq!(decode_entities("AT&T &bogus; &"), "AT&T &bogus; &");
        assert_eq!(decode_entities("plain"), "plain");
    }

    #[test]
    fn peer_ids() {
        assert_eq!(
            parse_peer("c1006503122_-6496929493087458329"),
            Some(1_006_503_122)
        );
        assert_eq!(parse_peer("u123_1"), None);
        assert_eq!(parse_peer("c_1"), None);
    }
}
