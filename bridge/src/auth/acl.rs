//! The ACL file: which topics each client may publish to, subscribe to and receive.
//!
//! The format is Mosquitto's `acl_file`, one rule per line:
//!
//! ```text
//! # Rules before the first `user` line apply to anonymous clients.
//! topic read public/#
//!
//! # Rules after `user NAME` apply to that user, until the next `user` line.
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret/#
//!
//! # Patterns apply to every client; %c is its client id, %u its user name.
//! pattern readwrite clients/%c/#
//! pattern read users/%u/#
//! ```
//!
//! `topic ACCESS FILTER` and `pattern ACCESS FILTER`: ACCESS is `read` (subscribe and
//! receive), `write` (publish), `readwrite`, or `deny` (neither, whatever other rules say),
//! and may be left out (readwrite). The filter is the rest of the line. Blank lines and
//! lines starting with `#` are ignored.
//!
//! Once an ACL file is configured, whatever no rule allows is refused. A subscription is
//! allowed when one read rule *covers* its filter (matches every topic the filter can
//! match: `a/#` covers `a/+/b`, `a/+` does not cover `a/#`) and no deny rule covers it;
//! every message is checked again against the concrete topic before delivery, so a
//! subscription to `#` only ever receives the topics its rules allow.
//!
//! A pattern is skipped for a client whose substituted value (client id for `%c`, user
//! name for `%u`) is empty or contains `/`, `+` or `#`: otherwise a client named `+` would
//! be given `clients/+/#`, everyone's topics. `%u` patterns never apply to anonymous
//! clients.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use protocol::topic::{matches, validate_topic_filter};

use super::FileError;
use crate::broker::{Action, Identity};

/// What a rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Permission {
    fn parse(word: &str) -> Option<Permission> {
        match word {
            "read" => Some(Permission::Read),
            "write" => Some(Permission::Write),
            "readwrite" => Some(Permission::ReadWrite),
            "deny" => Some(Permission::Deny),
            _ => None,
        }
    }

    fn reads(self) -> bool {
        matches!(self, Permission::Read | Permission::ReadWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Permission::Write | Permission::ReadWrite)
    }
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub permission: Permission,
    pub filter: String,
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    /// `topic` rules before the first `user` line.
    anonymous: Vec<Rule>,
    /// `topic` rules by user name.
    users: HashMap<String, Vec<Rule>>,
    /// `pattern` rules, for everyone, with `%c` and `%u` still in them.
    patterns: Vec<Rule>,
    /// Lines that load but probably do not mean what they say: `(1-based line, message)`.
    warnings: Vec<(usize, String)>,
}

impl Acl {
    /// Reads and parses an ACL file; errors name the file and the line.
    pub fn load(path: &Path) -> Result<Acl, FileError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| FileError::read("ACL file", path, e))?;
        Acl::parse(&text)
            .map_err(|(line, message)| FileError::parse("ACL file", path, line, message))
    }

    /// Parses ACL text; an error is `(1-based line, message)`.
    pub fn parse(text: &str) -> Result<Acl, (usize, String)> {
        let mut acl = Acl::default();
        // None: the anonymous section, before any `user` line.
        let mut user: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let number = index + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_word(line);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err((number, "`user` needs a user name".to_owned()));
                    }
                    user = Some(rest.to_owned());
                    acl.users.entry(rest.to_owned()).or_default();
                }
                "topic" | "pattern" => {
                    let rule = parse_rule(keyword, rest).map_err(|m| (number, m))?;
                    if let Some(warning) = misspelled_access(rest) {
                        acl.warnings.push((number, warning));
                    }
                    if keyword == "pattern" {
                        acl.patterns.push(rule);
                    } else {
                        match &user {
                            Some(name) => acl.users.entry(name.clone()).or_default().push(rule),
                            None => acl.anonymous.push(rule),
                        }
                    }
                }
                other => {
                    return Err((
                        number,
                        format!("unknown keyword {other:?}: expected `user`, `topic` or `pattern`"),
                    ))
                }
            }
        }
        Ok(acl)
    }

    /// Lines that load but probably do not mean what they say (a misspelled access word):
    /// `(1-based line, message)`.
    pub fn warnings(&self) -> &[(usize, String)] {
        &self.warnings
    }

    /// Number of rules, for the log line after a (re)load.
    pub fn rule_count(&self) -> usize {
        self.anonymous.len()
            + self.users.values().map(Vec::len).sum::<usize>()
            + self.patterns.len()
    }

    /// Whether some `user` section exists (so that user names matter).
    pub fn has_user_rules(&self) -> bool {
        !self.users.is_empty() || self.patterns.iter().any(|r| r.filter.contains("%u"))
    }

    /// Whether `who` may do `action` on `topic` (a topic name for publish and read, a filter
    /// for subscribe; shared subscriptions already stripped to their filter).
    pub fn allows(&self, who: Identity<'_>, action: Action, topic: &str) -> bool {
        let base = match who.username {
            None => self.anonymous.as_slice(),
            Some(name) => self.users.get(name).map_or(&[][..], Vec::as_slice),
        };
        let base = base
            .iter()
            .map(|rule| (rule.permission, Cow::Borrowed(rule.filter.as_str())));
        let patterns = self.patterns.iter().filter_map(|rule| {
            substitute(&rule.filter, who).map(|filter| (rule.permission, Cow::Owned(filter)))
        });
        let rules = base.chain(patterns);

        let applies = |filter: &str| match action {
            Action::Subscribe => covers(filter, topic),
            Action::Publish | Action::Read => matches(filter, topic),
        };
        let mut allowed = false;
        for (permission, filter) in rules {
            let grants = match action {
                Action::Publish => permission.writes(),
                Action::Subscribe | Action::Read => permission.reads(),
            };
            if permission == Permission::Deny {
                if applies(&filter) {
                    return false;
                }
            } else if grants && !allowed && applies(&filter) {
                allowed = true;
            }
        }
        allowed
    }
}

/// `(first word, rest trimmed)`.
fn split_word(line: &str) -> (&str, &str) {
    match line.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (line, ""),
    }
}

fn parse_rule(keyword: &str, rest: &str) -> Result<Rule, String> {
    let (first, after) = split_word(rest);
    let (permission, filter) = match Permission::parse(first) {
        Some(permission) => (permission, after),
        // Mosquitto: the access word may be left out, meaning readwrite.
        None => (Permission::ReadWrite, rest),
    };
    if filter.is_empty() {
        return Err(format!("`{keyword}` needs a topic filter"));
    }
    // Validated with the placeholders filled in, as the client will see it.
    let check = if keyword == "pattern" {
        filter.replace("%c", "c").replace("%u", "u")
    } else {
        filter.to_owned()
    };
    validate_topic_filter(&check).map_err(|e| format!("invalid topic filter {filter:?}: {e}"))?;
    Ok(Rule {
        permission,
        filter: filter.to_owned(),
    })
}

/// Why the first word of a rule without an access word looks like a misspelled one, if it
/// does. Mosquitto reads `topic dney a/#` as `readwrite` on the filter `dney a/#` (topics
/// may contain spaces, and the access word may be left out), which turns an intended deny
/// into a grant: the file loads, but with a warning.
fn misspelled_access(rest: &str) -> Option<String> {
    let (first, after) = split_word(rest);
    if Permission::parse(first).is_some() || after.is_empty() {
        return None;
    }
    let lower = first.to_lowercase();
    let near = ["read", "write", "readwrite", "deny"]
        .into_iter()
        .find(|word| lower == *word || edit_distance(&lower, word) <= 2)?;
    Some(format!(
        "{first:?} is not an access word (read, write, readwrite, deny), so this rule grants \
         readwrite on the filter {rest:?}; did you mean `{near}`?"
    ))
}

/// Levenshtein distance between two short words.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// A pattern's filter with `%c` and `%u` filled in for `who`, or `None` if it cannot apply.
fn substitute(pattern: &str, who: Identity<'_>) -> Option<String> {
    fn safe(value: &str) -> bool {
        !value.is_empty() && !value.contains(['/', '+', '#'])
    }
    // One pass, so that a client id containing `%u` is not substituted again.
    let mut filter = String::with_capacity(pattern.len() + 16);
    let mut rest = pattern;
    while let Some(at) = rest.find('%') {
        filter.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('c') {
            if !safe(who.client_id) {
                return None;
            }
            filter.push_str(who.client_id);
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('u') {
            filter.push_str(who.username.filter(|name| safe(name))?);
            rest = tail;
        } else {
            filter.push('%');
            rest = after;
        }
    }
    filter.push_str(rest);
    Some(filter)
}

/// Whether filter `rule` matches every topic that filter `sub` can match (both valid).
///
/// Level by level: `#` in the rule covers whatever is left of `sub`; `+` in the rule
/// covers `+` or any literal level; a literal level covers only the same literal. `#` in
/// `sub` is covered only by `#` in the rule. A rule with a leading wildcard does not cover a
/// `sub` whose first level is a literal starting with `$`, because such topics are not
/// matched by leading wildcards (MQTT-4.7.2-1); a leading wildcard in `sub` never matches
/// `$` topics either, so it is no problem there.
pub fn covers(rule: &str, sub: &str) -> bool {
    let mut rule_levels = rule.split('/');
    let mut sub_levels = sub.split('/');
    let mut first = true;
    loop {
        match (rule_levels.next(), sub_levels.next()) {
            (Some("#"), Some(s)) => return !(first && s.starts_with('$')),
            // `a/#` also matches `a` (the parent level), so it covers `sub` = `a`.
            (Some("#"), None) => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(s)) => {
                if first && s.starts_with('$') {
                    return false;
                }
            }
            (Some(r), Some(s)) => {
                if r != s {
                    return false;
                }
            }
            (None, None) => return true,
            // One ran out before the other: `sub` matches topics of another depth.
            _ => return false,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who<'a>(client_id: &'a str, username: Option<&'a str>) -> Identity<'a> {
        Identity {
            client_id,
            username,
        }
    }

    const EXAMPLE: &str = "\
# anonymous
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic write logs/alice

user bob
topic bob/#

pattern readwrite clients/%c/#
pattern read users/%u/inbox
";

    #[test]
    fn covers_examples() {
        let yes = [
            ("a/#", "a/+/b"),
            ("a/#", "a"),
            ("a/#", "a/#"),
            ("a/#", "a/b/c"),
            ("#", "#"),
            ("#", "a/+/#"),
            ("+", "+"),
            ("+", "a"),
            ("a/+", "a/b"),
            ("a/+", "a/+"),
            ("+/+", "a/+"),
            ("a/b", "a/b"),
            ("$SYS/#", "$SYS/broker/+"),
            ("#", "+/a"),
            ("a//#", "a//b"),
        ];
        for (rule, sub) in yes {
            assert!(covers(rule, sub), "{rule} should cover {sub}");
        }
        let no = [
            ("a/+", "a/#"),
            ("a/+", "a"),
            ("a/+", "a/b/c"),
            ("a/b", "a/+"),
            ("a/b", "a/#"),
            ("a/+/#", "a/#"),
            ("a", "a/b"),
            ("a/b", "a"),
            ("#", "$SYS/#"),
            ("+/#", "$SYS/x"),
            ("b/#", "a/#"),
            ("a/#", "+/#"),
            ("a/#", "#"),
        ];
        for (rule, sub) in no {
            assert!(!covers(rule, sub), "{rule} should not cover {sub}");
        }
    }

    #[test]
    fn covering_agrees_with_matching() {
        // If `rule` covers `sub`, every sample topic that `sub` matches, `rule` matches.
        let filters = [
            "#", "+", "a", "a/#", "a/+", "a/b", "+/b", "a/+/c", "a/b/#", "+/+", "$SYS/#", "a/",
            "a//b", "/#", "+/#",
        ];
        let topics = [
            "a", "a/b", "a/c", "a/b/c", "x/b", "a/x/c", "$SYS/x", "$SYS", "a/", "a//b", "/", "/a",
            "b", "x/y/z",
        ];
        for rule in filters {
            for sub in filters {
                if covers(rule, sub) {
                    for topic in topics {
                        if matches(sub, topic) {
                            assert!(
                                matches(rule, topic),
                                "{rule} covers {sub} but misses {topic}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn parses_sections_and_checks() {
        let acl = Acl::parse(EXAMPLE).unwrap();
        assert_eq!(acl.rule_count(), 7);
        let alice = who("c1", Some("alice"));
        assert!(acl.allows(alice, Action::Publish, "alice/x"));
        assert!(acl.allows(alice, Action::Subscribe, "alice/#"));
        assert!(acl.allows(alice, Action::Subscribe, "alice/+/y"));
        assert!(acl.allows(alice, Action::Read, "alice/x"));
        assert!(!acl.allows(alice, Action::Subscribe, "bob/#"));
        assert!(!acl.allows(alice, Action::Publish, "bob/x"));
        assert!(!acl.allows(alice, Action::Subscribe, "#"));
        // deny wins.
        assert!(!acl.allows(alice, Action::Publish, "alice/secret/x"));
        assert!(!acl.allows(alice, Action::Read, "alice/secret/x"));
        assert!(!acl.allows(alice, Action::Subscribe, "alice/secret/#"));
        // A subscription overlapping a deny rule is allowed; its deliveries are not.
        assert!(acl.allows(alice, Action::Subscribe, "alice/+/x"));
        // write only.
        assert!(acl.allows(alice, Action::Publish, "logs/alice"));
        assert!(!acl.allows(alice, Action::Subscribe, "logs/alice"));
        assert!(!acl.allows(alice, Action::Read, "logs/alice"));
        // Anonymous rules are not for users.
        assert!(!acl.allows(alice, Action::Read, "public/x"));
        // No access word: readwrite.
        let bob = who("c2", Some("bob"));
        assert!(acl.allows(bob, Action::Publish, "bob/x"));
        assert!(acl.allows(bob, Action::Read, "bob/x"));
        // Anonymous.
        let anon = who("c3", None);
        assert!(acl.allows(anon, Action::Subscribe, "public/#"));
        assert!(acl.allows(anon, Action::Read, "public/a"));
        assert!(!acl.allows(anon, Action::Publish, "public/a"));
        assert!(!acl.allows(anon, Action::Subscribe, "alice/#"));
        // A user without a section gets only the patterns.
        let carol = who("c4", Some("carol"));
        assert!(!acl.allows(carol, Action::Read, "public/a"));
        assert!(acl.allows(carol, Action::Publish, "clients/c4/x"));
    }

    #[test]
    fn patterns_substitute_client_id_and_user() {
        let acl = Acl::parse(EXAMPLE).unwrap();
        let alice = who("dev-1", Some("alice"));
        assert!(acl.allows(alice, Action::Publish, "clients/dev-1/status"));
        assert!(acl.allows(alice, Action::Subscribe, "clients/dev-1/#"));
        assert!(!acl.allows(alice, Action::Publish, "clients/dev-2/status"));
        assert!(acl.allows(alice, Action::Read, "users/alice/inbox"));
        assert!(!acl.allows(alice, Action::Publish, "users/alice/inbox"));
        assert!(!acl.allows(alice, Action::Read, "users/bob/inbox"));
        // Anonymous clients get %c patterns but not %u ones.
        let anon = who("dev-3", None);
        assert!(acl.allows(anon, Action::Publish, "clients/dev-3/x"));
        assert!(!acl.allows(anon, Action::Read, "users/%u/inbox"));
        // Wildcards or separators in the substituted value disable the pattern.
        for id in ["+", "#", "a/b", ""] {
            let sneaky = who(id, Some("x"));
            assert!(
                !acl.allows(sneaky, Action::Read, "clients/dev-1/status"),
                "client id {id:?}"
            );
            assert!(!acl.allows(sneaky, Action::Subscribe, "clients/+/#"));
        }
        let sneaky = who("c", Some("+"));
        assert!(!acl.allows(sneaky, Action::Read, "users/alice/inbox"));
        // A client id spelling `%u` is not substituted twice.
        let acl = Acl::parse("pattern readwrite x/%c/%u/%z\n").unwrap();
        let odd = who("%u", Some("alice"));
        assert!(acl.allows(odd, Action::Publish, "x/%u/alice/%z"));
        assert!(!acl.allows(odd, Action::Publish, "x/alice/alice/%z"));
    }

    #[test]
    fn empty_acl_denies_everything() {
        let acl = Acl::parse("# nothing\n\n").unwrap();
        assert!(!acl.allows(who("c", None), Action::Publish, "a"));
        assert!(!acl.allows(who("c", Some("u")), Action::Read, "a"));
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("topic read a/#\nfrobnicate x\n", 2, "unknown keyword"),
            ("user\n", 1, "user name"),
            ("\n\ntopic read\n", 3, "topic filter"),
            ("topic read a/#/b\n", 1, "invalid topic filter"),
            ("pattern write a/%c+/x\n", 1, "invalid topic filter"),
            ("topic\n", 1, "topic filter"),
        ];
        for (text, line, words) in cases {
            let (at, message) = Acl::parse(text).unwrap_err();
            assert_eq!(at, line, "{text:?}: {message}");
            assert!(message.contains(words), "{text:?}: {message}");
        }
    }

    #[test]
    fn topic_may_contain_spaces_and_access_word_is_optional() {
        let acl = Acl::parse("topic read my topic/#\ntopic other one\n").unwrap();
        let anon = who("c", None);
        assert!(acl.allows(anon, Action::Read, "my topic/x"));
        assert!(acl.allows(anon, Action::Publish, "other one"));
    }

    #[test]
    fn misspelled_access_words_load_with_a_warning() {
        let acl = Acl::parse(
            "user alice\ntopic dney alice/secret/#\ntopic Deny a/b\ntopic raed x\n\
             topic readwrite ok/#\ntopic my topic/#\npattern wirte p/%c\ntopic den\n",
        )
        .unwrap();
        let lines: Vec<usize> = acl.warnings().iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [2, 3, 4, 7]);
        let (_, message) = &acl.warnings()[0];
        assert!(
            message.contains("\"dney\" is not an access word"),
            "{message}"
        );
        assert!(message.contains("did you mean `deny`"), "{message}");
        // It still loads as Mosquitto reads it: readwrite on "dney alice/secret/#".
        let alice = Identity {
            client_id: "c",
            username: Some("alice"),
        };
        assert!(acl.allows(alice, Action::Publish, "dney alice/secret/x"));
        assert_eq!(edit_distance("readwrite", "readwirte"), 2);
        assert_eq!(edit_distance("", "deny"), 4);
    }
}
