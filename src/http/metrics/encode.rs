//! A minimal writer of the Prometheus text exposition format (version
//! 0.0.4): `# HELP` / `# TYPE` once per family, then its samples. Small
//! enough that a metrics crate (and its registry, macros and globals) would
//! cost more binary than it saves code.

use std::fmt::Write;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets on restart); names end in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// `_sum` and `_count` samples (no quantiles here).
    Summary,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Summary => "summary",
        }
    }
}

/// Accumulates the exposition text.
#[derive(Debug, Default)]
pub struct Encoder {
    /// The text so far.
    out: String,
}

impl Encoder {
    /// Starts a family: its HELP and TYPE lines. Every sample written after
    /// it until the next family must belong to it.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.word());
    }

    /// One sample line: `name{label="value",…} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        self.out.push(' ');
        self.out.push_str(&number(value));
        self.out.push('\n');
    }

    /// A family with exactly one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// One unlabelled family per row of a table; a row whose value is
    /// `None` is left out (a point in time not reached yet: zero would read 1970).
    pub fn singles<'a, V: Into<Option<f64>>>(
        &mut self,
        rows: impl IntoIterator<Item = (&'a str, Kind, &'a str, V)>,
    ) {
        for (name, kind, help, value) in rows {
            if let Some(value) = value.into() {
                self.single(name, kind, help, value);
            }
        }
    }

    /// The finished text.
    pub fn finish(self) -> String {
        self.out
    }
}

/// Label values escape backslash, double quote and newline.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Go's ParseFloat spellings for the special values; Rust's Display for
/// the rest (never an exponent, always parseable).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_samples_and_escapes() {
        let mut e = Encoder::default();
        e.family("x_total", Kind::Counter, "Things\\done\nhere.");
        e.sample("x_total", &[("a", "q\"u\\o\nte")], 3.0);
        e.sample("x_total", &[], 0.5);
        e.single("y", Kind::Gauge, "Y.", f64::NAN);
        assert_eq!(
            e.finish(),
            "# HELP x_total Things\\\\done\\nhere.\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"u\\\\o\\nte\"} 3\nx_total 0.5\n\
             # HELP y Y.\n# TYPE y gauge\ny NaN\n"
        );
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(1e21), "1000000000000000000000");
    }
}
