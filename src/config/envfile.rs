//! The `KEY=value` env-file format that systemd's `EnvironmentFile=` reads,
//! read here by the same rules, so what `check-config` (and `run
//! --env-file`) see is what the service gets. The rules, as systemd's
//! parser applies them (docs/env-file.md has them with examples):
//!
//! - a line whose first non-blank character is `#` or `;` is a comment;
//!   nowhere else does `#` start one: `X=foo #bar` sets `foo #bar`;
//! - the key runs to `=`, blanks around it dropped; leading blanks of the
//!   value are dropped, and trailing blanks of its unquoted part;
//! - `'…'` keeps everything literally; `"…"` too, except that a backslash
//!   before `"`, `\`, `` ` `` or `$` yields that character and a backslash
//!   before anything else stays; a quote opens only where the value (or
//!   the part after a closing quote) starts, so `X="a"b` is `ab` while in
//!   `X=a"b"` the quotes are text; a quote may span lines;
//! - outside quotes a backslash yields the next character, and a backslash
//!   at the end of a line joins the next line (a continuation);
//! - `\r` ends a line like `\n`.
//!
//! Lines systemd ignores or misreads are reported rather than guessed at:
//! no `=`, a name that is not a variable name (such as `export X`), a quote
//! left open (systemd takes the rest of the file), and a comment ending in
//! `\` (systemd before v254, Debian 12's 252 among them, also comments out
//! the next line; later versions do not).

use std::fmt;
use std::io::Read;
use std::path::Path;

/// Env files are a few kilobytes; a bigger one is a mistake (or `/dev/zero`).
pub const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// One `KEY=value` assignment read from an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The variable name, as written.
    pub key: String,
    /// The value as systemd passes it (quotes and escapes resolved).
    pub value: String,
    /// 1-based line number where the assignment starts.
    pub line: usize,
}

/// A line that systemd would ignore or read differently than it looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Reads an env file for parsing: only a regular file (a FIFO would block
/// forever, a device like `/dev/zero` never end), at most
/// [`MAX_ENV_FILE_BYTES`], UTF-8 without a byte-order mark or NUL byte.
/// The error says what is wrong in terms of what systemd would do.
pub fn read_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let kind = |meta: &std::fs::Metadata| {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO (named pipe)"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        }
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read env file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "env file {shown} is {}, not a regular file",
            kind(&meta)
        ));
    }
    // Opened without blocking, and checked again once open: the path may
    // have been swapped for a FIFO in between.
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| format!("cannot read env file {shown}: {e}"))?
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read env file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!(
            "env file {shown} is {}, not a regular file",
            kind(&meta)
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_ENV_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read env file {shown}: {e}"))?;
    check_bytes(&bytes).map_err(|e| format!("env file {shown}: {e}"))
}

/// The checks of [`read_file`] on the bytes read.
pub fn check_bytes(bytes: &[u8]) -> Result<String, String> {
    if bytes.len() as u64 > MAX_ENV_FILE_BYTES {
        return Err(format!(
            "larger than {} KiB; an env file is a few lines",
            MAX_ENV_FILE_BYTES / 1024
        ));
    }
    let line_of = |at: usize| bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return Err(
            "starts with a UTF-8 byte-order mark (BOM): systemd reads it as part of the first name; save the file without BOM"
                .into(),
        );
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(format!(
            "NUL byte on line {}: systemd stops reading the file there",
            line_of(at)
        ));
    }
    String::from_utf8(bytes.to_vec()).map_err(|e| {
        format!(
            "invalid UTF-8 on line {}: systemd refuses the whole file",
            line_of(e.utf8_error().valid_up_to())
        )
    })
}

/// Where the parser is, as in systemd's own state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a key: blanks and blank lines.
    PreKey,
    /// In a key, before `=`.
    Key,
    /// After `=` or a closing quote.
    PreValue,
    /// In an unquoted part of a value.
    Value,
    /// After a backslash in an unquoted part.
    ValueEscape,
    /// Inside `'…'`.
    SingleQuote,
    /// Inside `"…"`.
    DoubleQuote,
    /// After a backslash inside `"…"`.
    DoubleQuoteEscape,
    /// In a comment line.
    Comment,
    /// After a backslash in a comment line.
    CommentEscape,
}

/// An assignment being read.
#[derive(Debug, Default)]
struct Pending {
    key: String,
    /// Length of `key` before its trailing blanks, if it has any.
    key_trim: Option<usize>,
    value: String,
    /// Length of `value` before trailing unquoted blanks, if any.
    value_trim: Option<usize>,
    line: usize,
}

/// systemd's blanks and line ends.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

fn is_newline(c: char) -> bool {
    matches!(c, '\n' | '\r')
}

/// Parses an env file's text into assignments and per-line problems.
///
/// Problems do not stop the parse: `check-config` wants every one at once.
pub fn parse(text: &str) -> (Vec<Assignment>, Vec<SyntaxError>) {
    let mut assignments = Vec::new();
    let mut errors = Vec::new();
    let mut state = State::PreKey;
    let mut pending = Pending::default();
    let mut line = 1;
    // Where the open quote started, for the error at the end.
    let mut quote_line = 0;
    let finish = |pending: &mut Pending,
                  assignments: &mut Vec<Assignment>,
                  errors: &mut Vec<SyntaxError>,
                  trim_value: bool| {
        let mut p = std::mem::take(pending);
        if let Some(n) = p.key_trim {
            p.key.truncate(n);
        }
        if trim_value {
            if let Some(n) = p.value_trim {
                p.value.truncate(n);
            }
        }
        if is_valid_key(&p.key) {
            assignments.push(Assignment {
                key: p.key,
                value: p.value,
                line: p.line,
            });
        } else {
            let hint = if p.key.starts_with("export ") {
                " (env files take no `export`)"
            } else {
                ""
            };
            errors.push(SyntaxError {
                line: p.line,
                reason: format!("`{}` is not a valid variable name{hint}", p.key),
            });
        }
    };
    for c in text.chars() {
        match state {
            State::PreKey => {
                if c == '#' || c == ';' {
                    state = State::Comment;
                } else if !is_blank(c) {
                    state = State::Key;
                    pending = Pending {
                        key: c.to_string(),
                        line,
                        ..Pending::default()
                    };
                }
            }
            State::Key => {
                if is_newline(c) {
                    errors.push(SyntaxError {
                        line: pending.line,
                        reason: format!(
                            "`{}` has no `=`: systemd ignores this line",
                            pending.key.trim_end()
                        ),
                    });
                    state = State::PreKey;
                } else if c == '=' {
                    state = State::PreValue;
                    pending.value_trim = None;
                } else {
                    if !is_blank(c) {
                        pending.key_trim = None;
                    } else if pending.key_trim.is_none() {
                        pending.key_trim = Some(pending.key.len());
                    }
                    pending.key.push(c);
                }
            }
            State::PreValue => {
                if is_newline(c) {
                    finish(&mut pending, &mut assignments, &mut errors, false);
                    state = State::PreKey;
                } else if c == '\'' {
                    state = State::SingleQuote;
                    quote_line = line;
                } else if c == '"' {
                    state = State::DoubleQuote;
                    quote_line = line;
                } else if c == '\\' {
                    state = State::ValueEscape;
                } else if !is_blank(c) {
                    state = State::Value;
                    pending.value.push(c);
                }
            }
            State::Value => {
                if is_newline(c) {
                    finish(&mut pending, &mut assignments, &mut errors, true);
                    state = State::PreKey;
                } else if c == '\\' {
                    state = State::ValueEscape;
                    pending.value_trim = None;
                } else {
                    if !is_blank(c) {
                        pending.value_trim = None;
                    } else if pending.value_trim.is_none() {
                        pending.value_trim = Some(pending.value.len());
                    }
                    pending.value.push(c);
                }
            }
            State::ValueEscape => {
                state = State::Value;
                // A backslash before a line end joins the next line.
                if !is_newline(c) {
                    pending.value.push(c);
                }
            }
            State::SingleQuote => {
                if c == '\'' {
                    state = State::PreValue;
                } else {
                    pending.value.push(c);
                }
            }
            State::DoubleQuote => {
                if c == '"' {
                    state = State::PreValue;
                } else if c == '\\' {
                    state = State::DoubleQuoteEscape;
                } else {
                    pending.value.push(c);
                }
            }
            State::DoubleQuoteEscape => {
                state = State::DoubleQuote;
                if matches!(c, '"' | '\\' | '`' | '$') {
                    pending.value.push(c);
                } else if c != '\n' {
                    pending.value.push('\\');
                    pending.value.push(c);
                }
            }
            State::Comment => {
                if c == '\\' {
                    state = State::CommentEscape;
                } else if is_newline(c) {
                    state = State::PreKey;
                }
            }
            State::CommentEscape => {
                if is_newline(c) {
                    errors.push(SyntaxError {
                        line,
                        reason: "a comment ends in `\\`: systemd before v254 (Debian 12 has 252) also treats the next line as comment; remove the backslash".into(),
                    });
                    state = State::PreKey;
                } else {
                    state = State::Comment;
                }
            }
        }
        if c == '\n' {
            line += 1;
        }
    }
    match state {
        State::SingleQuote | State::DoubleQuote | State::DoubleQuoteEscape => {
            errors.push(SyntaxError {
                line: quote_line,
                reason: format!(
                    "the quote opened here is never closed: systemd takes the rest of the file as the value of `{}`",
                    pending.key.trim_end()
                ),
            });
        }
        State::PreValue | State::ValueEscape => {
            finish(&mut pending, &mut assignments, &mut errors, false);
        }
        State::Value => finish(&mut pending, &mut assignments, &mut errors, true),
        State::Key => errors.push(SyntaxError {
            line: pending.line,
            reason: format!(
                "`{}` has no `=`: systemd ignores this line",
                pending.key.trim_end()
            ),
        }),
        State::PreKey | State::Comment | State::CommentEscape => {}
    }
    (assignments, errors)
}

/// Parses a file written for a shell to `source` (the old deployment's env
/// file, imported by `install`): as [`parse`], after dropping an `export `
/// prefix and, in unquoted values, a ` #` comment, which is what a shell
/// does with them and systemd does not.
pub fn parse_sourced(text: &str) -> (Vec<Assignment>, Vec<SyntaxError>) {
    let rewritten: Vec<String> = text
        .lines()
        .map(|raw| {
            let line = raw.trim_start();
            let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
            match line.split_once('=') {
                Some((key, value)) if !value.trim_start().starts_with(['"', '\'', '#']) => {
                    let value = value.find(" #").map_or(value, |at| &value[..at]);
                    format!("{key}={value}")
                }
                _ => line.to_string(),
            }
        })
        .collect();
    parse(&rewritten.join("\n"))
}

/// Names a program can read from its environment: letters, digits and
/// `_`, not starting with a digit.
fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String, usize)> {
        let (vars, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        vars.into_iter().map(|a| (a.key, a.value, a.line)).collect()
    }

    fn one(text: &str) -> String {
        let got = pairs(text);
        assert_eq!(got.len(), 1, "{text:?} → {got:?}");
        got[0].1.clone()
    }

    #[test]
    fn comments_only_at_line_start() {
        assert_eq!(one("X=foo #bar\n"), "foo #bar");
        assert_eq!(one("X=foo;bar"), "foo;bar");
        assert_eq!(one("  # comment\n ; also\nX=1"), "1");
        assert_eq!(one("X='single # kept'"), "single # kept");
    }

    #[test]
    fn blanks_quotes_and_escapes_as_systemd() {
        assert_eq!(one("  X  =   spaced value   \n"), "spaced value");
        assert_eq!(one("X=\"two words\"  "), "two words");
        // Quotes open only where a value (part) starts: after `b` they are text.
        assert_eq!(one("X=\"a\"b'c'"), "ab'c'");
        assert_eq!(one("X=\"a\"'b'"), "ab");
        assert_eq!(one("X=\"a\" b"), "ab");
        assert_eq!(one("X='no \\escapes \"here\"'"), "no \\escapes \"here\"");
        assert_eq!(one(r#"X="q\"d \\ \$ \` \n""#), "q\"d \\ $ ` \\n");
        assert_eq!(one("X=a\\ b\\#c"), "a b#c");
        assert_eq!(one("X=trailing\\ "), "trailing ");
        assert_eq!(one("X=\n"), "");
        assert_eq!(one("X="), "");
    }

    #[test]
    fn continuation_lines_and_multi_line_quotes() {
        assert_eq!(
            pairs("X=one \\\ntwo\nY=3"),
            [
                ("X".into(), "one two".into(), 1),
                ("Y".into(), "3".into(), 3)
            ]
        );
        assert_eq!(one("X=\"line one\nline two\""), "line one\nline two");
        assert_eq!(one("X=\"joined \\\nhere\""), "joined here");
        // CRLF files: `\r` ends the line.
        assert_eq!(
            pairs("A=1\r\nB=2\r\n"),
            [("A".into(), "1".into(), 1), ("B".into(), "2".into(), 2)]
        );
    }

    #[test]
    fn what_systemd_ignores_or_misreads_is_reported() {
        let (vars, errors) = parse(
            "GOOD=1\nno equals here\n1BAD=x\nexport B=2\n# note \\\nHIDDEN=on-debian-12\nQ=\"open\nREST=swallowed\n",
        );
        let keys: Vec<&str> = vars.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["GOOD", "HIDDEN"]);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 7], "{errors:?}");
        assert!(errors[2].reason.contains("no `export`"), "{errors:?}");
        assert!(errors[3].reason.contains("v254"), "{errors:?}");
        assert!(errors[4].reason.contains("never closed"), "{errors:?}");
    }

    #[test]
    fn sourced_files_read_as_a_shell_would() {
        let (vars, errors) =
            parse_sourced("export A=1\nB=two # note\nC='q # kept'\n  export D=\"x\"\n");
        assert!(errors.is_empty(), "{errors:?}");
        let got: Vec<(&str, &str)> = vars
            .iter()
            .map(|a| (a.key.as_str(), a.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [("A", "1"), ("B", "two"), ("C", "q # kept"), ("D", "x")]
        );
    }

    #[test]
    fn bytes_systemd_cannot_read_are_refused_clearly() {
        assert_eq!(check_bytes(b"A=1\n").as_deref(), Ok("A=1\n"));
        let bom = check_bytes(b"\xEF\xBB\xBFA=1\n").expect_err("BOM");
        assert!(bom.contains("byte-order mark"), "{bom}");
        let nul = check_bytes(b"A=1\nB=\x002\n").expect_err("NUL");
        assert!(nul.contains("NUL byte on line 2"), "{nul}");
        let bad = check_bytes(b"A=1\nB=\xff\n").expect_err("UTF-8");
        assert!(bad.contains("invalid UTF-8 on line 2"), "{bad}");
        let big = vec![b'#'; MAX_ENV_FILE_BYTES as usize + 1];
        assert!(check_bytes(&big).expect_err("size").contains("larger than"));
    }

    #[test]
    fn only_regular_files_are_read() {
        let tmp = crate::testkit::TempDir::new("envfile");
        let dir = tmp.path();
        let fifo = dir.join("fifo");
        let c_path = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path; mkfifo has no other preconditions.
        let made = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
        assert_eq!(made, 0, "mkfifo");
        // Would block forever if it were opened for a blocking read.
        let e = read_file(&fifo).expect_err("FIFO");
        assert!(e.contains("FIFO"), "{e}");
        let e = read_file(Path::new("/dev/zero")).expect_err("device");
        assert!(e.contains("a device"), "{e}");
        let e = read_file(dir).expect_err("directory");
        assert!(e.contains("a directory"), "{e}");
        let file = dir.join("ok.env");
        std::fs::write(&file, "A=1 #x\n").expect("write");
        assert_eq!(read_file(&file).as_deref(), Ok("A=1 #x\n"));
    }
}
