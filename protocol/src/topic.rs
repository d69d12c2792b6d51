//! Topic names and topic filters: validation and matching, as MQTT 3.1.1 (section 4.7) and
//! MQTT 5.0 (section 4.7, 4.8.2) define them.
//!
//! This lives here rather than in the codec crate because the codec's own matcher lets
//! `+`/`#` at the first level match topics starting with `$`, which the spec forbids
//! (MQTT-4.7.2-1), and because the browser client and the broker must agree exactly.
//!
//! Vocabulary, as in the spec:
//! * a *topic name* is what a PUBLISH carries; it never contains wildcards;
//! * a *topic filter* is what a SUBSCRIBE carries; it may contain `+` and `#`;
//! * a *level* is what lies between two `/` separators (possibly nothing: `a//b` has an
//!   empty middle level, and `/a` has an empty first level).
//!
//! Every function here works on `&str` and never allocates: the broker calls [`matches`] and
//! the validators on its hot path.

use thiserror::Error;

/// The longest topic name or filter, in bytes: the spec encodes it as a UTF-8 string with a
/// two-byte length prefix (MQTT-1.5.3, 4.7.3).
pub const MAX_TOPIC_LEN: usize = 65_535;

/// The prefix that marks an MQTT 5 shared subscription (section 4.8.2).
pub const SHARED_PREFIX: &str = "$share/";

/// Why a topic name or filter is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    /// Topic names and filters must be at least one character long (MQTT-4.7.3-1).
    #[error("topic must not be empty")]
    Empty,
    /// The UTF-8 encoding is longer than the two-byte length prefix can express.
    #[error("topic is {0} bytes long; at most 65535 are allowed")]
    TooLong(usize),
    /// U+0000 is forbidden in every MQTT string (MQTT-4.7.3-2, MQTT-1.5.3-2).
    #[error("topic contains U+0000")]
    NullCharacter,
    /// Wildcards are only for subscriptions (MQTT-3.3.2-2).
    #[error("wildcards + and # are not allowed in a topic name")]
    WildcardInName,
    /// `#` must be the last character and either alone or right after a `/` (MQTT-4.7.1-2).
    #[error("# must be the last level and stand alone")]
    MisplacedMultiLevelWildcard,
    /// `+` must fill a whole level (MQTT-4.7.1-3).
    #[error("+ must occupy a whole level")]
    MisplacedSingleLevelWildcard,
    /// A `$share/{group}/{filter}` filter whose group or filter part is malformed
    /// (MQTT-4.8.2-1, MQTT-4.8.2-2). The string says what is wrong.
    #[error("invalid shared subscription: {0}")]
    InvalidSharedSubscription(&'static str),
}

/// The checks that names and filters share: length, emptiness and U+0000.
fn validate_common(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    // `len()` is the UTF-8 byte length, which is what the wire limit counts, not characters.
    if topic.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong(topic.len()));
    }
    if topic.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// Checks a topic name, the topic of a PUBLISH: non-empty, at most 65535 bytes, no U+0000 and
/// no wildcard character anywhere (not even inside a level: `a+b` is rejected too, because
/// the spec forbids the characters, not just wildcard levels).
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    validate_common(name)?;
    if name.contains(['+', '#']) {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks a topic filter, the topic of a SUBSCRIBE or UNSUBSCRIBE: non-empty, at most 65535
/// bytes, no U+0000, `#` only as the whole last level and `+` only as a whole level.
///
/// Empty levels are legal (`a//b`, `/a`, `a/`, `/`), and so is `$share/...`: whether such a
/// filter is a well-formed shared subscription is [`parse_shared`]'s business.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    validate_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        match level {
            "+" => {}
            "#" if levels.peek().is_some() => return Err(TopicError::MisplacedMultiLevelWildcard),
            "#" => {}
            // `#` is checked before `+` so that `a+#` reports the `#`, which cannot be fixed by
            // splitting the level, whereas `+` glued to text can.
            _ if level.contains('#') => return Err(TopicError::MisplacedMultiLevelWildcard),
            _ if level.contains('+') => return Err(TopicError::MisplacedSingleLevelWildcard),
            _ => {}
        }
    }
    Ok(())
}

/// Whether a (valid) filter contains a wildcard level, i.e. may match more than one topic.
pub fn is_wildcard(filter: &str) -> bool {
    filter.split('/').any(|level| level == "+" || level == "#")
}

/// Whether `filter` matches topic name `topic`, by the spec's rules (section 4.7):
///
/// * a literal level matches the identical level (case-sensitive, no normalisation);
/// * `+` matches exactly one level, which may be empty (`sport/+` matches `sport/` but not
///   `sport`);
/// * `#` matches its parent level and any number of levels below (`sport/#` matches `sport`,
///   `sport/` and `sport/tennis/player1`; `#` alone matches every topic);
/// * a topic starting with `$` is not matched by a filter whose first level is `+` or `#`
///   (MQTT-4.7.2-1), so that `#` subscribers do not receive `$SYS` traffic; filters that
///   spell the `$` level out (`$SYS/#`) do match.
///
/// Both arguments are assumed valid; invalid ones give an unspecified answer, never a panic.
/// Shared subscriptions must be stripped with [`parse_shared`] first.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');

    if topic.starts_with('$') {
        // Compare whole first levels, not first characters: only a wildcard *level* is excluded.
        let first = filter.split('/').next();
        if first == Some("+") || first == Some("#") {
            return false;
        }
    }

    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // `#` also matches when the topic has run out: that is the "parent level" rule.
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether `filter` is a shared subscription with no topic filter after its share name:
/// `$share/`, `$share/g`, `$share/g/`. MQTT 5.0 makes such a SUBSCRIBE malformed rather than
/// a refused filter (MQTT-4.8.2-2: the share name is followed by `/` and a topic filter),
/// whereas a bad share name with a filter (`$share//t`) is refused with reason 0x8F.
pub fn shared_without_filter(filter: &str) -> bool {
    filter.strip_prefix(SHARED_PREFIX).is_some_and(|rest| {
        rest.split_once('/')
            .is_none_or(|(_, inner)| inner.is_empty())
    })
}

/// Splits an MQTT 5 shared subscription `$share/{group}/{filter}` into its group (share name)
/// and its filter.
///
/// Returns `Ok(None)` for a filter that does not start with `$share/` (an ordinary filter,
/// which this function does not validate). For a shared one, the whole string must pass the
/// common checks (length, U+0000), the group must be non-empty and free of `+`, `#` and `/`
/// (MQTT-4.8.2-1), and the rest must be a non-empty valid filter (MQTT-4.8.2-2). Errors in
/// that inner filter are reported as the specific [`TopicError`] for it, except emptiness,
/// which is reported as [`TopicError::InvalidSharedSubscription`] since "topic must not be
/// empty" would confuse whoever sent `$share/g/`.
pub fn parse_shared(filter: &str) -> Result<Option<(&str, &str)>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARED_PREFIX) else {
        return Ok(None);
    };
    validate_common(filter)?;
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(TopicError::InvalidSharedSubscription(
            "expected $share/{share name}/{topic filter}",
        ));
    };
    if group.is_empty() {
        return Err(TopicError::InvalidSharedSubscription(
            "share name must not be empty",
        ));
    }
    if group.contains(['+', '#']) {
        return Err(TopicError::InvalidSharedSubscription(
            "share name must not contain + or #",
        ));
    }
    if inner.is_empty() {
        return Err(TopicError::InvalidSharedSubscription(
            "topic filter after the share name must not be empty",
        ));
    }
    validate_topic_filter(inner)?;
    Ok(Some((group, inner)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // ---------------------------------------------------------------- validation

    #[test]
    fn valid_names() {
        for name in [
            "a",
            "/",
            "//",
            "/a",
            "a/",
            "a//b",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "$SYS/broker/uptime",
            "$",
            " ",
            "ünïcödé/日本",
            "a b/c\td",
        ] {
            assert_eq!(validate_topic_name(name), Ok(()), "{name:?}");
        }
    }

    #[test]
    fn invalid_names() {
        use TopicError::*;
        for (name, err) in [
            ("", Empty),
            ("a\0b", NullCharacter),
            ("\0", NullCharacter),
            ("#", WildcardInName),
            ("+", WildcardInName),
            ("a/+", WildcardInName),
            ("a/#", WildcardInName),
            ("a+b", WildcardInName),
            ("a#", WildcardInName),
            ("sport/tennis/#", WildcardInName),
        ] {
            assert_eq!(validate_topic_name(name), Err(err), "{name:?}");
        }
    }

    #[test]
    fn length_limit_counts_bytes() {
        let max = "a".repeat(MAX_TOPIC_LEN);
        assert_eq!(validate_topic_name(&max), Ok(()));
        assert_eq!(validate_topic_filter(&max), Ok(()));
        let over = "a".repeat(MAX_TOPIC_LEN + 1);
        assert_eq!(
            validate_topic_name(&over),
            Err(TopicError::TooLong(MAX_TOPIC_LEN + 1))
        );
        assert_eq!(
            validate_topic_filter(&over),
            Err(TopicError::TooLong(MAX_TOPIC_LEN + 1))
        );
        // 40000 two-byte characters: fewer than 65535 characters but 80000 bytes.
        let wide = "é".repeat(40_000);
        assert_eq!(validate_topic_name(&wide), Err(TopicError::TooLong(80_000)));
    }

    #[test]
    fn valid_filters() {
        for filter in [
            "#",
            "+",
            "+/+",
            "/+",
            "+/",
            "a/#",
            "/#",
            "+/#",
            "a/+/b",
            "a/+/#",
            "sport/tennis/player1/#",
            "sport/#",
            "sport/+/player1",
            "sport/+",
            "a//b",
            "/a",
            "a/",
            "/",
            "$SYS/#",
            "$SYS/monitor/+",
            "$share/g/a",
        ] {
            assert_eq!(validate_topic_filter(filter), Ok(()), "{filter:?}");
        }
    }

    #[test]
    fn invalid_filters() {
        use TopicError::*;
        for (filter, err) in [
            ("", Empty),
            ("a/\0", NullCharacter),
            ("a#", MisplacedMultiLevelWildcard),
            ("#a", MisplacedMultiLevelWildcard),
            ("a/#/b", MisplacedMultiLevelWildcard),
            ("#/", MisplacedMultiLevelWildcard),
            ("#/#", MisplacedMultiLevelWildcard),
            ("##", MisplacedMultiLevelWildcard),
            ("sport/tennis#", MisplacedMultiLevelWildcard),
            ("sport/tennis/#/ranking", MisplacedMultiLevelWildcard),
            ("a+", MisplacedSingleLevelWildcard),
            ("+a", MisplacedSingleLevelWildcard),
            ("++", MisplacedSingleLevelWildcard),
            ("a/b+/c", MisplacedSingleLevelWildcard),
            ("sport+", MisplacedSingleLevelWildcard),
            ("+#", MisplacedMultiLevelWildcard),
        ] {
            assert_eq!(validate_topic_filter(filter), Err(err), "{filter:?}");
        }
    }

    #[test]
    fn wildcard_detection() {
        assert!(is_wildcard("#"));
        assert!(is_wildcard("+"));
        assert!(is_wildcard("a/+/b"));
        assert!(is_wildcard("a/#"));
        assert!(!is_wildcard("a/b"));
        assert!(!is_wildcard("/"));
        assert!(!is_wildcard("$SYS/x"));
    }

    // ---------------------------------------------------------------- matching

    #[track_caller]
    fn yes(filter: &str, topic: &str) {
        assert!(matches(filter, topic), "{filter:?} should match {topic:?}");
    }

    #[track_caller]
    fn no(filter: &str, topic: &str) {
        assert!(
            !matches(filter, topic),
            "{filter:?} should not match {topic:?}"
        );
    }

    #[test]
    fn spec_multi_level_examples() {
        // MQTT 3.1.1 section 4.7.1.2.
        yes("sport/tennis/player1/#", "sport/tennis/player1");
        yes("sport/tennis/player1/#", "sport/tennis/player1/ranking");
        yes(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
        );
        yes("sport/#", "sport");
        no("sport/tennis/player1/#", "sport/tennis/player2");
        no("sport/tennis/player1/#", "sport/tennis");
        yes("#", "sport/tennis/player1");
        yes("#", "/");
        yes("#", "a");
    }

    #[test]
    fn spec_single_level_examples() {
        // MQTT 3.1.1 section 4.7.1.3.
        yes("sport/tennis/+", "sport/tennis/player1");
        yes("sport/tennis/+", "sport/tennis/player2");
        no("sport/tennis/+", "sport/tennis/player1/ranking");
        yes("sport/+", "sport/");
        no("sport/+", "sport");
        yes("+/+", "/finance");
        yes("/+", "/finance");
        no("+", "/finance");
        yes("+/tennis/#", "sport/tennis/player1");
        yes("sport/+/player1", "sport/tennis/player1");
        no("sport/+/player1", "sport/tennis/player2");
    }

    #[test]
    fn spec_dollar_examples() {
        // MQTT 3.1.1 section 4.7.2.
        no("#", "$SYS");
        no("#", "$SYS/broker/uptime");
        no("+/monitor/Clients", "$SYS/monitor/Clients");
        yes("$SYS/#", "$SYS/monitor/Clients");
        yes("$SYS/monitor/+", "$SYS/monitor/Clients");
        yes("$SYS/#", "$SYS/broker/uptime");
        yes("$SYS/#", "$SYS");
        no("+", "$");
        no("+/#", "$x/y");
        yes("$", "$");
        // Only the first level is special: `$` deeper down is an ordinary character.
        yes("a/#", "a/$SYS");
        yes("a/+", "a/$x");
        yes("+/$x", "a/$x");
        // A `$` that is not at the very start does not trigger the rule.
        yes("#", "a$");
        yes("+", "a$");
    }

    #[test]
    fn parent_level_and_empty_levels() {
        yes("a/#", "a");
        yes("a/#", "a/");
        yes("a/#", "a/b/c");
        no("a/#", "ab");
        no("a/#", "b/a");
        yes("/#", "/");
        yes("/#", "/a");
        no("/#", "a");
        yes("+/#", "a");
        yes("+/#", "/");
        yes("a//b", "a//b");
        no("a//b", "a/b");
        yes("a/+/b", "a//b");
        yes("+", "");
        yes("/", "/");
        no("/", "//");
        yes("+/+", "/");
        no("+/+/+", "/");
        yes("a/", "a/");
        no("a/", "a");
        no("a", "a/");
    }

    #[test]
    fn literal_matching_is_exact() {
        yes("a/b", "a/b");
        no("a/b", "a/B");
        no("a/b", "a/b/c");
        no("a/b/c", "a/b");
        no("a", "b");
        no("ab", "a");
        no("a", "ab");
    }

    #[test]
    fn invalid_input_does_not_panic() {
        for (f, t) in [("", ""), ("a#", "a"), ("#/a", "x"), ("+", "#"), ("", "a")] {
            let _ = matches(f, t);
        }
    }

    // ---------------------------------------------------------------- shared subscriptions

    /// MQTT-4.8.2-2: these have no topic filter after the share name (a malformed
    /// SUBSCRIBE); the others have one, valid or not (a reason code per filter).
    #[test]
    fn shared_subscriptions_without_a_filter() {
        for filter in ["$share/", "$share/g", "$share/g/", "$share//"] {
            assert!(shared_without_filter(filter), "{filter:?}");
        }
        for filter in [
            "$share//t",
            "$share/g/t",
            "$share/g//",
            "$share/g/#/a",
            "$share",
            "a",
        ] {
            assert!(!shared_without_filter(filter), "{filter:?}");
        }
    }

    #[test]
    fn shared_subscriptions() {
        use TopicError::*;
        assert_eq!(parse_shared("$share/g/a/b"), Ok(Some(("g", "a/b"))));
        assert_eq!(parse_shared("$share/g/#"), Ok(Some(("g", "#"))));
        assert_eq!(parse_shared("$share/g/+/x"), Ok(Some(("g", "+/x"))));
        assert_eq!(parse_shared("$share/g//"), Ok(Some(("g", "/"))));
        assert_eq!(parse_shared("$share/g/$SYS/#"), Ok(Some(("g", "$SYS/#"))));
        assert_eq!(
            parse_shared("$share/consumer1/sport/tennis/+"),
            Ok(Some(("consumer1", "sport/tennis/+")))
        );
        assert_eq!(parse_shared("a/b"), Ok(None));
        assert_eq!(parse_shared("$share"), Ok(None));
        assert_eq!(parse_shared("$sharex/g/a"), Ok(None));
        assert_eq!(parse_shared("$SHARE/g/a"), Ok(None));
        assert_eq!(parse_shared("$SYS/#"), Ok(None));

        let shared_err = |f: &str| matches!(parse_shared(f), Err(InvalidSharedSubscription(_)));
        assert!(shared_err("$share/g"), "no filter part");
        assert!(shared_err("$share/"), "nothing at all");
        assert!(shared_err("$share//x"), "empty group");
        assert!(shared_err("$share/g/"), "empty filter");
        assert!(shared_err("$share/+/x"));
        assert!(shared_err("$share/#/x"));
        assert!(shared_err("$share/a+b/x"));
        assert!(shared_err("$share/a#/x"));
        assert_eq!(
            parse_shared("$share/g/a#"),
            Err(MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            parse_shared("$share/g/#/a"),
            Err(MisplacedMultiLevelWildcard)
        );
        assert_eq!(
            parse_shared("$share/g/a+"),
            Err(MisplacedSingleLevelWildcard)
        );
        assert_eq!(parse_shared("$share/g\0/a"), Err(NullCharacter));
        let long = format!("$share/g/{}", "a".repeat(MAX_TOPIC_LEN));
        assert_eq!(parse_shared(&long), Err(TooLong(long.len())));
    }

    #[test]
    fn error_messages() {
        assert_eq!(TopicError::Empty.to_string(), "topic must not be empty");
        assert_eq!(
            TopicError::NullCharacter.to_string(),
            "topic contains U+0000"
        );
        assert_eq!(
            TopicError::WildcardInName.to_string(),
            "wildcards + and # are not allowed in a topic name"
        );
        assert_eq!(
            TopicError::TooLong(70000).to_string(),
            "topic is 70000 bytes long; at most 65535 are allowed"
        );
    }

    // ---------------------------------------------------------------- properties

    /// An independent statement of the matching rules, written as "prefix + length" rather
    /// than level-by-level walking, so that a shared mistake is unlikely.
    fn reference_matches(filter: &[&str], topic: &[&str]) -> bool {
        let first_is_wildcard = matches!(filter.first(), Some(&"+") | Some(&"#"));
        if topic.first().is_some_and(|t| t.starts_with('$')) && first_is_wildcard {
            return false;
        }
        let level_ok = |(f, t): (&&str, &&str)| *f == "+" || f == t;
        match filter.split_last() {
            Some((&"#", prefix)) => {
                topic.len() >= prefix.len() && prefix.iter().zip(topic).all(level_ok)
            }
            _ => filter.len() == topic.len() && filter.iter().zip(topic).all(level_ok),
        }
    }

    fn name_level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "$SYS", "$x", "ab"])
    }

    fn filter_level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "$SYS", "$x", "+", "+"])
    }

    fn name_levels() -> impl Strategy<Value = Vec<&'static str>> {
        prop::collection::vec(name_level(), 1..5)
    }

    fn filter_levels() -> impl Strategy<Value = Vec<&'static str>> {
        (prop::collection::vec(filter_level(), 0..5), any::<bool>())
            .prop_map(|(mut v, hash)| {
                if hash || v.is_empty() {
                    v.push("#");
                }
                v
            })
            // A single empty level joins to "", which is not a filter at all.
            .prop_filter("filter must not be empty", |v| {
                v.len() > 1 || !v[0].is_empty()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn matches_agrees_with_reference(f in filter_levels(), t in name_levels()) {
            let filter = f.join("/");
            let topic = t.join("/");
            prop_assume!(!topic.is_empty());
            prop_assert_eq!(validate_topic_filter(&filter), Ok(()));
            prop_assert_eq!(
                matches(&filter, &topic),
                reference_matches(&f, &t),
                "filter {:?} topic {:?}", filter, topic
            );
        }

        // Filters made of literal levels only, compared against topics from the same
        // alphabet, so that exact matches are frequent rather than accidental.
        #[test]
        fn literal_filters_match_only_themselves(f in name_levels(), t in name_levels()) {
            let filter = f.join("/");
            let topic = t.join("/");
            prop_assume!(!topic.is_empty() && !filter.is_empty());
            prop_assert_eq!(matches(&filter, &topic), filter == topic);
            prop_assert!(matches(&topic, &topic));
            prop_assert!(!is_wildcard(&filter));
        }

        #[test]
        fn generated_names_are_valid(t in name_levels()) {
            let name = t.join("/");
            prop_assume!(!name.is_empty());
            prop_assert_eq!(validate_topic_name(&name), Ok(()));
            // Every name is also a valid (wildcard-free) filter.
            prop_assert_eq!(validate_topic_filter(&name), Ok(()));
        }

        #[test]
        fn names_with_a_wildcard_are_rejected(
            t in name_levels(),
            at in any::<prop::sample::Index>(),
            wildcard in prop::sample::select(vec!['+', '#']),
        ) {
            let mut name = t.join("/");
            // Insert at a char boundary chosen among all of them (the alphabet is ASCII, but
            // stay correct if it is ever widened).
            let boundaries: Vec<usize> =
                name.char_indices().map(|(i, _)| i).chain([name.len()]).collect();
            name.insert(*at.get(&boundaries), wildcard);
            prop_assert_eq!(validate_topic_name(&name), Err(TopicError::WildcardInName));
        }

        #[test]
        fn generated_filters_are_valid(f in filter_levels()) {
            let filter = f.join("/");
            prop_assert_eq!(validate_topic_filter(&filter), Ok(()));
            prop_assert_eq!(is_wildcard(&filter), f.iter().any(|l| *l == "+" || *l == "#"));
        }

        #[test]
        fn wildcard_glued_to_text_is_rejected(
            f in filter_levels(),
            at in any::<prop::sample::Index>(),
            wildcard in prop::sample::select(vec!['+', '#']),
            before in any::<bool>(),
        ) {
            // Glue a wildcard onto a literal non-empty level, which is never allowed.
            let mut f = f;
            if !f.iter().any(|l| !l.is_empty() && *l != "+" && *l != "#") {
                f.insert(0, "a");
            }
            let literal: Vec<usize> = f
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.is_empty() && **l != "+" && **l != "#")
                .map(|(i, _)| i)
                .collect();
            let i = *at.get(&literal);
            let mut levels: Vec<String> = f.iter().map(|l| l.to_string()).collect();
            if before {
                levels[i].insert(0, wildcard);
            } else {
                levels[i].push(wildcard);
            }
            let filter = levels.join("/");
            prop_assert!(validate_topic_filter(&filter).is_err(), "{:?}", filter);
        }

        #[test]
        fn hash_before_the_last_level_is_rejected(
            f in filter_levels(),
            at in any::<prop::sample::Index>(),
        ) {
            // `#` anywhere but last: take the levels without the trailing `#` and put one
            // in the middle; the filter still has a level after it.
            let mut levels = f.clone();
            levels.push("a");
            let i = at.index(levels.len() - 1);
            levels.insert(i, "#");
            let filter = levels.join("/");
            prop_assert_eq!(
                validate_topic_filter(&filter),
                Err(TopicError::MisplacedMultiLevelWildcard),
                "{:?}", filter
            );
        }

        #[test]
        fn shared_wraps_any_valid_filter(
            f in filter_levels(),
            group in "[a-zA-Z0-9_$-]{1,8}",
        ) {
            let inner = f.join("/");
            let shared = format!("$share/{group}/{inner}");
            prop_assert_eq!(parse_shared(&shared), Ok(Some((group.as_str(), inner.as_str()))));
        }
    }
}
