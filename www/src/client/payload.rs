//! Payload formats: what the user types into the publish form becomes bytes, and the bytes
//! of a message become something readable. Pure functions, tested natively.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// How a payload is typed (publish) or shown (messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// UTF-8 text.
    #[default]
    Text,
    /// UTF-8 text that must be valid JSON; shown pretty-printed.
    Json,
    /// Hexadecimal bytes, `48 65 6c 6c 6f` (spaces, `:` and a `0x` prefix allowed when typed).
    Hex,
    /// Standard base64 with padding.
    Base64,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Text, Format::Json, Format::Hex, Format::Base64];

    /// The value used in `<select>` elements (and in storage).
    pub fn key(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Json => "json",
            Format::Hex => "hex",
            Format::Base64 => "base64",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Format::Text => "Text",
            Format::Json => "JSON",
            Format::Hex => "Hex",
            Format::Base64 => "Base64",
        }
    }

    pub fn from_key(key: &str) -> Format {
        Format::ALL
            .into_iter()
            .find(|f| f.key() == key)
            .unwrap_or_default()
    }
}

/// Turns what the user typed into the bytes to publish, or says what is wrong with it.
pub fn encode(input: &str, format: Format) -> Result<Vec<u8>, String> {
    match format {
        Format::Text => Ok(input.as_bytes().to_vec()),
        Format::Json => match serde_json::from_str::<serde::de::IgnoredAny>(input) {
            Ok(_) => Ok(input.as_bytes().to_vec()),
            Err(e) => Err(format!("not valid JSON: {e}")),
        },
        Format::Hex => decode_hex(input),
        Format::Base64 => {
            let compact: String = input.chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD
                .decode(compact.as_bytes())
                .map_err(|e| format!("not valid base64: {e}"))
        }
    }
}

fn decode_hex(input: &str) -> Result<Vec<u8>, String> {
    let mut digits = Vec::with_capacity(input.len());
    for word in input.split(|c: char| c.is_whitespace() || c == ':' || c == ',') {
        let word = word
            .strip_prefix("0x")
            .or_else(|| word.strip_prefix("0X"))
            .unwrap_or(word);
        for c in word.chars() {
            match c.to_digit(16) {
                Some(d) => digits.push(d as u8),
                None => return Err(format!("'{c}' is not a hexadecimal digit")),
            }
        }
    }
    if digits.len() % 2 == 1 {
        return Err(format!(
            "odd number of hexadecimal digits ({}): each byte takes two",
            digits.len()
        ));
    }
    Ok(digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect())
}

/// What the message list shows for a payload. At most `limit` bytes are rendered (the rest
/// is counted in a note), so one huge message cannot stall the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub text: String,
    /// Set when the payload is not what the format expects (e.g. JSON view of non-JSON) or
    /// was cut short.
    pub note: Option<String>,
}

pub fn display(payload: &[u8], format: Format, limit: usize) -> Shown {
    let cut = payload.len() > limit;
    let bytes = if cut { &payload[..limit] } else { payload };
    let mut note = None;
    let text = match format {
        Format::Text => String::from_utf8_lossy(bytes).into_owned(),
        Format::Json => match (cut, serde_json::from_slice::<serde_json::Value>(bytes)) {
            (false, Ok(value)) => {
                serde_json::to_string_pretty(&value).unwrap_or_else(|_| lossy(bytes))
            }
            (true, _) => lossy(bytes),
            (false, Err(_)) => {
                note = Some("not JSON: shown as text".to_owned());
                lossy(bytes)
            }
        },
        Format::Hex => to_hex(bytes),
        Format::Base64 => STANDARD.encode(bytes),
    };
    if cut {
        note = Some(format!(
            "first {limit} of {} bytes shown",
            group_digits(payload.len() as u64)
        ));
    }
    Shown { text, note }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `48 65 6c 6c 6f`, sixteen bytes to a line; and `12,345`, counts people read at a glance:
/// the dashboard's formatting, under the names the client uses.
pub use crate::dashboard::format::{group as group_digits, hex as to_hex};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_utf8() {
        assert_eq!(encode("héllo", Format::Text).unwrap(), "héllo".as_bytes());
        assert_eq!(encode("", Format::Text).unwrap(), b"");
    }

    #[test]
    fn json_is_validated_and_sent_as_typed() {
        assert_eq!(
            encode(r#"{"t": 21.5}"#, Format::Json).unwrap(),
            br#"{"t": 21.5}"#
        );
        let err = encode(r#"{"t": }"#, Format::Json).unwrap_err();
        assert!(err.starts_with("not valid JSON"), "{err}");
        assert!(encode("", Format::Json).is_err());
    }

    #[test]
    fn hex_accepts_the_usual_spellings() {
        assert_eq!(encode("48656c6c6f", Format::Hex).unwrap(), b"Hello");
        assert_eq!(encode("48 65 6C\n6c 6f", Format::Hex).unwrap(), b"Hello");
        assert_eq!(encode("0x48 0x65", Format::Hex).unwrap(), b"He");
        assert_eq!(
            encode("de:ad:be:ef", Format::Hex).unwrap(),
            [0xde, 0xad, 0xbe, 0xef]
        );
        assert_eq!(encode("", Format::Hex).unwrap(), b"");
        assert!(encode("486", Format::Hex)
            .unwrap_err()
            .contains("odd number"));
        assert!(encode("4g", Format::Hex).unwrap_err().contains("'g'"));
    }

    #[test]
    fn base64_round_trip() {
        assert_eq!(encode("SGVsbG8=", Format::Base64).unwrap(), b"Hello");
        assert_eq!(encode("SGVs\nbG8=", Format::Base64).unwrap(), b"Hello");
        assert!(encode("SGVsbG8", Format::Base64).is_err());
        assert_eq!(display(b"Hello", Format::Base64, 100).text, "SGVsbG8=");
    }

    #[test]
    fn display_formats() {
        assert_eq!(display(b"hi", Format::Text, 100).text, "hi");
        assert_eq!(display(&[0xff, b'a'], Format::Text, 100).text, "\u{fffd}a");
        assert_eq!(display(b"Hello", Format::Hex, 100).text, "48 65 6c 6c 6f");
        let json = display(br#"{"a":[1,2]}"#, Format::Json, 100);
        assert_eq!(json.text, "{\n  \"a\": [\n    1,\n    2\n  ]\n}");
        assert_eq!(json.note, None);
        let not_json = display(b"plain", Format::Json, 100);
        assert_eq!(not_json.text, "plain");
        assert_eq!(not_json.note.as_deref(), Some("not JSON: shown as text"));
    }

    #[test]
    fn hex_wraps_every_sixteen_bytes() {
        let text = to_hex(&[0u8; 17]);
        assert_eq!(text.lines().count(), 2);
        assert_eq!(text.lines().next().unwrap().len(), 16 * 3 - 1);
    }

    #[test]
    fn big_payloads_are_cut() {
        let big = vec![b'x'; 5000];
        let shown = display(&big, Format::Text, 1000);
        assert_eq!(shown.text.len(), 1000);
        assert_eq!(
            shown.note.as_deref(),
            Some("first 1000 of 5,000 bytes shown")
        );
    }

    #[test]
    fn format_keys_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::from_key(f.key()), f);
        }
        assert_eq!(Format::from_key("nonsense"), Format::Text);
    }

    #[test]
    fn digit_grouping() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(1234567), "1,234,567");
    }
}
