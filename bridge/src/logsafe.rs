//! Client-supplied strings made safe to log.
//!
//! Client ids, user names, topics and dashboard log-in names come from whoever connects. Logged
//! raw, a newline forges a second log line, ANSI escapes repaint the operator's terminal and a
//! megabyte name fills the log. [`untrusted`] wraps such a string for `tracing`'s `%` so that
//! control characters are escaped (`\n`, `\u{1b}`) and the text is cut at
//! [`MAX_LOGGED_CHARS`] characters, with the length of what was cut said at the end.

use std::fmt;

/// Characters of a client-supplied string that reach the log; the rest is summarised.
pub const MAX_LOGGED_CHARS: usize = 128;

/// Characters of a message that may quote client-supplied strings (a protocol error naming
/// a bad topic, say) that reach the log.
pub const MAX_LOGGED_MESSAGE_CHARS: usize = 512;

/// A client-supplied string to be logged with `%`: see the module documentation.
#[derive(Clone, Copy)]
pub struct Untrusted<'a> {
    text: &'a str,
    max: usize,
    /// A value of its own (a log field): quoted when it has spaces, `=` or quotes, so that
    /// `x username=admin` cannot pass for two fields.
    field: bool,
}

/// Wraps `text` so that logging it (`%untrusted(text)`) escapes and truncates it.
pub fn untrusted(text: &str) -> Untrusted<'_> {
    Untrusted {
        text,
        max: MAX_LOGGED_CHARS,
        field: true,
    }
}

/// Wraps a message that may quote client-supplied strings (an error's text): escaped like
/// [`untrusted`], cut at [`MAX_LOGGED_MESSAGE_CHARS`], never quoted.
pub fn untrusted_message(text: &str) -> Untrusted<'_> {
    Untrusted {
        text,
        max: MAX_LOGGED_MESSAGE_CHARS,
        field: false,
    }
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = self.field
            && (self.text.is_empty()
                || self
                    .text
                    .chars()
                    .any(|c| c.is_whitespace() || c == '=' || c == '"'));
        if quoted {
            f.write_str("\"")?;
        }
        let mut chars = self.text.char_indices();
        for (_, c) in chars.by_ref().take(self.max) {
            if c.is_control() || c == '\\' || (quoted && c == '"') {
                write!(f, "{}", c.escape_debug())?;
            } else if is_invisible_format(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        if quoted {
            f.write_str("\"")?;
        }
        if let Some((at, _)) = chars.next() {
            write!(f, "…(+{} bytes)", self.text.len() - at)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = Untrusted {
            field: false,
            ..*self
        };
        f.write_str("\"")?;
        for c in inner.to_string().chars() {
            if c == '"' {
                f.write_str("\\\"")?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        f.write_str("\"")
    }
}

/// Characters that are not control characters but still change how a line reads: bidi
/// overrides and isolates (which can make a log line display in another order), the line
/// and paragraph separators, and zero-width characters.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn newlines_and_escapes_are_escaped() {
        let logged = untrusted("admin\n2026-12-08 INFO forged\u{1b}[31mred").to_string();
        assert_eq!(logged, "\"admin\\n2026-12-08 INFO forged\\u{1b}[31mred\"");
    }

    #[test]
    fn long_strings_are_cut_and_say_how_much() {
        let long = "x".repeat(1 << 20);
        let logged = untrusted(&long).to_string();
        assert_eq!(
            logged,
            format!(
                "{}…(+{} bytes)",
                "x".repeat(MAX_LOGGED_CHARS),
                (1 << 20) - MAX_LOGGED_CHARS
            )
        );
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        assert_eq!(
            untrusted("sensors/ü/温度/#").to_string(),
            "sensors/ü/温度/#"
        );
        assert_eq!(format!("{:?}", untrusted("a")), "\"a\"");
        assert_eq!(untrusted("bidi\u{202e}x").to_string(), "bidi\\u{202e}x");
    }

    #[test]
    fn a_field_cannot_pass_for_two() {
        assert_eq!(
            untrusted("x username=admin").to_string(),
            "\"x username=admin\""
        );
        assert_eq!(untrusted("say \"hi\"").to_string(), "\"say \\\"hi\\\"\"");
        assert_eq!(untrusted("").to_string(), "\"\"");
        assert_eq!(format!("{:?}", untrusted("a\"b")), "\"a\\\"b\"");
        // A message is not quoted, only escaped and cut.
        assert_eq!(
            untrusted_message("bad topic a b").to_string(),
            "bad topic a b"
        );
        let long = "y".repeat(2000);
        assert!(untrusted_message(&long).to_string().len() < MAX_LOGGED_MESSAGE_CHARS + 32);
    }

    proptest! {
        /// Whatever a client sends, the logged text is one line of bounded length.
        #[test]
        fn logged_text_is_one_bounded_line(text in any::<String>()) {
            let logged = untrusted(&text).to_string();
            prop_assert!(!logged.chars().any(|c| c.is_control()));
            prop_assert!(logged.chars().count() <= MAX_LOGGED_CHARS * 10 + 32);
        }
    }
}
