//! The `KEY=value` env-file format that systemd's `EnvironmentFile=` reads.
//!
//! We parse the same files by hand for commands run in a terminal
//! (`check-config`, `run --env-file`), so the rules follow what operators
//! already write: `#` comments, blank lines, optional single or double quotes,
//! and a tolerated `export ` prefix (left over from files that were `source`d).

use std::fmt;

/// One `KEY=value` assignment read from an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The variable name, as written.
    pub key: String,
    /// The value with surrounding quotes removed.
    pub value: String,
    /// 1-based line number, for messages that point at the file.
    pub line: usize,
}

/// A line that is neither blank, a comment, nor a valid assignment.
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

/// Parses an env file's text into assignments and per-line syntax errors.
///
/// Errors do not stop the parse: `check-config` wants every problem at once.
pub fn parse(text: &str) -> (Vec<Assignment>, Vec<SyntaxError>) {
    let mut assignments = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let trimmed = trimmed
            .strip_prefix("export ")
            .unwrap_or(trimmed)
            .trim_start();
        let Some((key, value)) = trimmed.split_once('=') else {
            errors.push(SyntaxError {
                line,
                reason: "expected KEY=value".into(),
            });
            continue;
        };
        let key = key.trim();
        if !is_valid_key(key) {
            errors.push(SyntaxError {
                line,
                reason: format!("`{key}` is not a valid variable name"),
            });
            continue;
        }
        match unquote(value.trim()) {
            Ok(value) => assignments.push(Assignment {
                key: key.to_string(),
                value,
                line,
            }),
            Err(reason) => errors.push(SyntaxError { line, reason }),
        }
    }
    (assignments, errors)
}

/// Names systemd accepts: letters, digits and `_`, not starting with a digit.
fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Removes one level of matching quotes; an unquoted value loses a trailing
/// ` # comment` the way shells and systemd treat it.
fn unquote(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(&q @ (b'"' | b'\'')) => {
            let rest = &value[1..];
            match rest.rfind(q as char) {
                Some(end)
                    if rest[end + 1..].trim().is_empty()
                        || rest[end + 1..].trim_start().starts_with('#') =>
                {
                    let inner = &rest[..end];
                    if q == b'"' {
                        Ok(inner.replace("\\\"", "\"").replace("\\\\", "\\"))
                    } else {
                        Ok(inner.to_string())
                    }
                }
                _ => Err(format!("unterminated {} quote", q as char)),
            }
        }
        _ => {
            let without_comment = match value.find(" #") {
                Some(pos) => &value[..pos],
                None => value,
            };
            Ok(without_comment.trim_end().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_comments_quotes_and_export() {
        let text = "# comment\n\nA=1\nexport B = \"two words\"\nC='single # kept'\nD=plain # trailing\nE=\n";
        let (vars, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        let pairs: Vec<_> = vars
            .iter()
            .map(|a| (a.key.as_str(), a.value.as_str(), a.line))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("A", "1", 3),
                ("B", "two words", 4),
                ("C", "single # kept", 5),
                ("D", "plain", 6),
                ("E", "", 7)
            ]
        );
    }

    #[test]
    fn reports_every_bad_line() {
        let (vars, errors) = parse("GOOD=1\nno equals here\n1BAD=x\nQ=\"open\n");
        assert_eq!(vars.len(), 1);
        let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
    }
}
