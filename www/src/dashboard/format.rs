//! Pure formatting for the dashboard: counts, rates, bytes, durations, timestamps, and
//! the percent-encoding of URL parts. Numbers are written with integer arithmetic only,
//! so the wasm carries no float-formatting code.

/// `12,345`.
pub fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `x` rounded to tenths, as an integer count of tenths (never negative).
fn tenths(x: f64) -> u64 {
    if x.is_finite() && x > 0.0 {
        (x * 10.0).round() as u64
    } else {
        0
    }
}

/// `12.4`, `3`, `0.5`: one decimal at most, none when it is zero.
pub fn decimal1(x: f64) -> String {
    let t = tenths(x);
    if t.is_multiple_of(10) {
        group(t / 10)
    } else {
        format!("{}.{}", group(t / 10), t % 10)
    }
}

/// A per-second rate: one decimal below 100, whole (grouped) numbers above.
pub fn rate(x: f64) -> String {
    if x >= 100.0 {
        group((tenths(x) + 5) / 10)
    } else {
        decimal1(x)
    }
}

/// `512 B`, `1.5 KB`, `3.2 MB` (powers of 1024, one decimal).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut unit = 0;
    let mut div: u64 = 1024;
    while unit + 1 < UNITS.len() && n / div >= 1024 {
        div *= 1024;
        unit += 1;
    }
    // Tenths of the unit, rounded half up.
    let t = ((u128::from(n) * 10 + u128::from(div) / 2) / u128::from(div)) as u64;
    if t >= 10_235 && unit + 1 < UNITS.len() {
        // 1023.5 KB and up round to 1 MB.
        format!("1 {}", UNITS[unit + 1])
    } else if t >= 1000 {
        format!("{} {}", group((t + 5) / 10), UNITS[unit])
    } else if t.is_multiple_of(10) {
        format!("{} {}", t / 10, UNITS[unit])
    } else {
        format!("{}.{} {}", t / 10, t % 10, UNITS[unit])
    }
}

/// `45 s`, `12 min 5 s`, `3 h 12 min`, `2 d 4 h`: the two largest units.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m} min")
    } else if m > 0 {
        format!("{m} min {s} s")
    } else {
        format!("{s} s")
    }
}

/// Days since 1970-01-01 for a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Milliseconds since the epoch of an RFC 3339 time as the broker writes it
/// (`2026-11-25T10:44:00.123Z`; fraction and offset optional).
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = text.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match &text[i..] {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (num(i + 1, 2)? * 60 + num(i + 4, 2)?)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) - offset_min * 60) * 1000 + millis)
}

/// `2026-11-25 10:44:07` for `ms` since the epoch, shifted by `offset_minutes`.
pub fn date_time(ms: i64, offset_minutes: i64) -> String {
    let local = ms.div_euclid(1000) + offset_minutes * 60;
    let (days, secs) = (local.div_euclid(86_400), local.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `10:44` for `ms` since the epoch, shifted by `offset_minutes`.
pub fn hour_minute(ms: i64, offset_minutes: i64) -> String {
    let secs = (ms.div_euclid(1000) + offset_minutes * 60).rem_euclid(86_400);
    format!("{:02}:{:02}", secs / 3600, secs / 60 % 60)
}

/// `10:44:07` for `ms` since the epoch, shifted by `offset_minutes`.
pub fn time_of_day(ms: i64, offset_minutes: i64) -> String {
    let secs = (ms.div_euclid(1000) + offset_minutes * 60).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A time to show in a table: `10:44:07` when it is on the same local day as `now_ms`,
/// else `2026-11-24 10:44`.
pub fn short_time(ms: i64, now_ms: i64, offset_minutes: i64) -> String {
    let day = |t: i64| (t.div_euclid(1000) + offset_minutes * 60).div_euclid(86_400);
    if day(ms) == day(now_ms) {
        time_of_day(ms, offset_minutes)
    } else {
        let full = date_time(ms, offset_minutes);
        full[..full.len() - 3].to_owned()
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters: safe for a path
/// segment (a topic's `/` included) and for a query value.
pub fn encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
    out
}

/// Undoes [`encode`] (and `+` for a space, as forms write it); bad escapes stay as is.
pub fn decode(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `?a=1&b=x%2Fy`: the pairs whose value is not empty, encoded.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(key);
        out.push('=');
        out.push_str(&encode(value));
    }
    out
}

/// The `key=value` pairs of a query string (with or without its `?`), decoded.
pub fn parse_query(text: &str) -> Vec<(String, String)> {
    text.trim_start_matches('?')
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// `48 65 6c 6c 6f`, sixteen bytes to a line.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(if i % 16 == 0 { '\n' } else { ' ' });
        }
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// The first `max` characters of `text`, with `…` when cut, on one line.
pub fn preview(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// `1 subscription`, `3 subscriptions`.
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", group(n), if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(decimal1(0.0), "0");
        assert_eq!(decimal1(-3.0), "0");
        assert_eq!(decimal1(f64::NAN), "0");
        assert_eq!(decimal1(0.04), "0");
        assert_eq!(decimal1(0.05), "0.1");
        assert_eq!(decimal1(12.35), "12.4");
        assert_eq!(decimal1(3.0), "3");
        assert_eq!(decimal1(1234.5), "1,234.5");
        assert_eq!(rate(99.94), "99.9");
        assert_eq!(rate(100.4), "100");
        assert_eq!(rate(100.5), "101");
        assert_eq!(rate(12_345.0), "12,345");
        assert_eq!(plural(1, "client", "clients"), "1 client");
        assert_eq!(plural(1200, "client", "clients"), "1,200 clients");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1 KB");
        assert_eq!(bytes(1536), "1.5 KB");
        assert_eq!(bytes(10 * 1024 + 100), "10.1 KB");
        assert_eq!(bytes(1024 * 1024 - 1), "1 MB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024 / 2), "2.5 GB");
        assert_eq!(bytes(150 * 1024 * 1024), "150 MB");
        assert_eq!(bytes(u64::MAX), "16,384 PB");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0 s");
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(60), "1 min 0 s");
        assert_eq!(duration(725), "12 min 5 s");
        assert_eq!(duration(3 * 3600 + 12 * 60 + 9), "3 h 12 min");
        assert_eq!(duration(2 * 86_400 + 4 * 3600 + 59), "2 d 4 h");
    }

    #[test]
    fn times() {
        // 2024-01-01T13:45:07.089Z
        let ms = 1_704_116_707_089;
        assert_eq!(parse_rfc3339("2024-01-01T13:45:07.089Z"), Some(ms));
        assert_eq!(parse_rfc3339("2024-01-01T13:45:07Z"), Some(ms - 89));
        assert_eq!(parse_rfc3339("2024-01-01T13:45:07.0891234Z"), Some(ms));
        assert_eq!(parse_rfc3339("2024-01-01T13:45:07.5Z"), Some(ms - 89 + 500));
        assert_eq!(parse_rfc3339("2024-01-01T14:45:07.089+01:00"), Some(ms));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        for bad in [
            "",
            "2024-01-01",
            "2024-13-01T00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "x024-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(date_time(ms, 0), "2024-01-01 13:45:07");
        assert_eq!(date_time(ms, -14 * 60), "2023-12-31 23:45:07");
        assert_eq!(date_time(951_782_400_000, 0), "2000-02-29 00:00:00");
        assert_eq!(hour_minute(ms, 60), "14:45");
        assert_eq!(time_of_day(ms, 60), "14:45:07");
        assert_eq!(short_time(ms, ms + 3_600_000, 0), "13:45:07");
        assert_eq!(short_time(ms, ms + 86_400_000, 0), "2024-01-01 13:45");
        // Past local midnight it is another day.
        assert_eq!(short_time(ms, ms + 11 * 3_600_000, 0), "2024-01-01 13:45");
        assert_eq!(short_time(ms, ms + 11 * 3_600_000, -10 * 60), "03:45:07");
        assert_eq!(hour_minute(0, -30), "23:30");
    }

    #[test]
    fn url_parts() {
        assert_eq!(encode("topic_1"), "topic_1");
        assert_eq!(encode("a/b c#+?%"), "a%2Fb%20c%23%2B%3F%25");
        assert_eq!(encode("é"), "%C3%A9");
        for text in ["a/b c#+?%&=", "é/ü", "", "/lead/trail/"] {
            assert_eq!(decode(&encode(text)), text);
        }
        assert_eq!(decode("a+b%2"), "a b%2");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(
            query(&[("page", "2"), ("like_clientid", "a b"), ("ip", "")]),
            "?page=2&like_clientid=a%20b"
        );
        assert_eq!(query(&[("x", "")]), "");
        assert_eq!(
            parse_query("?topic=a%2Fb&clientid=&x"),
            vec![
                ("topic".to_owned(), "a/b".to_owned()),
                ("clientid".to_owned(), String::new()),
                ("x".to_owned(), String::new())
            ]
        );
    }

    #[test]
    fn payload_views() {
        assert_eq!(hex(b"Hello"), "48 65 6c 6c 6f");
        assert_eq!(hex(&[0; 17]).lines().count(), 2);
        assert_eq!(preview("hello", 10), "hello");
        assert_eq!(preview("hello\nworld", 7), "hello w…");
    }
}
