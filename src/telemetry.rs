//! Logging: `tracing` to standard error, as text or JSON, filtered by `RUST_LOG`; log lines that a
//! caller's input can neither forge nor flood.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, one per event: control characters (newlines included) are escaped.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false);
    match format {
        LogFormat::Text => builder.with_writer(|| OneLine(io::stderr())).init(),
        LogFormat::Json => builder.with_writer(io::stderr).json().init(),
    }
}

/// Longest prefix (in characters) of a caller's value shown in a log line or a reply.
pub const SHOWN_CHARS: usize = 256;

/// A value a caller sent (a uid, a name, a kind, an error quoting the body), shown as its first
/// [`SHOWN_CHARS`] characters with control characters and quotes escaped, and how much was cut.
pub struct Untrusted<'a>(pub &'a str);

impl Untrusted<'_> {
    fn show(
        &self,
        f: &mut fmt::Formatter<'_>,
        escape: fn(char, &mut fmt::Formatter<'_>) -> fmt::Result,
    ) -> fmt::Result {
        let mut chars = self.0.char_indices();
        for (_, c) in chars.by_ref().take(SHOWN_CHARS) {
            escape(c, f)?;
        }
        match chars.next() {
            Some((cut_at, _)) => {
                write!(f, "…(+{})", crate::plural::counted((self.0.len() - cut_at) as u64, "byte", "bytes"))
            }
            None => Ok(()),
        }
    }
}

/// The prefix with control characters escaped, for a value shown as it is (a message).
impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.show(f, |c, f| if c.is_control() { write!(f, "{}", c.escape_default()) } else { f.write_char(c) })
    }
}

/// The prefix quoted, with quotes, backslashes and control characters escaped, as `{:?}` shows a
/// string.
impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        self.show(f, |c, f| if c == '\'' { f.write_char(c) } else { write!(f, "{}", c.escape_debug()) })?;
        f.write_str("\"")
    }
}

/// A writer of text log lines that escapes every control character of a line but its final
/// newline, so that a value with a newline cannot start a line of its own.
struct OneLine<W>(W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (line, newline) = match buf.strip_suffix(b"\n") {
            Some(line) => (line, "\n"),
            None => (buf, ""),
        };
        let mut escaped = String::with_capacity(buf.len() + 1);
        for c in String::from_utf8_lossy(line).chars() {
            if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                escaped.extend(c.escape_default());
            } else {
                escaped.push(c);
            }
        }
        escaped.push_str(newline);
        self.0.write_all(escaped.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_values_are_escaped_and_cut() {
        assert_eq!(Untrusted("plain-name").to_string(), "plain-name");
        assert_eq!(Untrusted("a \"b\"\nc").to_string(), r#"a "b"\nc"#);
        assert_eq!(format!("{:?}", Untrusted("a\"b\nc")), r#""a\"b\nc""#);
        let long = "x".repeat(SHOWN_CHARS + 1000);
        assert_eq!(Untrusted(&long).to_string(), format!("{}…(+1000 bytes)", "x".repeat(SHOWN_CHARS)));
        let one_over = "x".repeat(SHOWN_CHARS + 1);
        assert_eq!(Untrusted(&one_over).to_string(), format!("{}…(+1 byte)", "x".repeat(SHOWN_CHARS)));
    }

    #[test]
    fn a_text_line_stays_one_line() {
        let mut out = OneLine(Vec::new());
        out.write_all(b"INFO uid=a\nFORGED line\x1b[31m\r\n").expect("write");
        assert_eq!(String::from_utf8_lossy(&out.0), "INFO uid=a\\nFORGED line\\u{1b}[31m\\r\n");
    }
}
