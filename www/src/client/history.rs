//! The message history of one connection: capped (oldest dropped first, and counted),
//! filtered by topic, read newest first. Pure logic, tested natively.

use std::collections::VecDeque;
use std::rc::Rc;

use bytes::Bytes;
use protocol::topic::{is_wildcard, matches, parse_shared, validate_topic_filter};

use super::profile::Subscription;

/// How many messages a connection keeps.
pub const HISTORY_CAP: usize = 5_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received from the broker.
    In,
    /// Published from this page.
    Out,
}

/// One message in the list.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Unique within the page: the list's key.
    pub id: u64,
    pub dir: Direction,
    /// Milliseconds since the Unix epoch.
    pub time_ms: f64,
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub payload: Bytes,
    /// Palette index of the subscription it matched (received messages only).
    pub color: Option<u8>,
    /// MQTT 5.0 properties worth showing ("content-type: …"), empty for 3.1.1.
    pub meta: Vec<String>,
}

/// A capped history. `Clone` is cheap enough (entries are shared) to hand the list to the
/// view as a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    entries: VecDeque<Rc<Entry>>,
    cap: usize,
    /// Messages pushed out at the old end since the last clear.
    pub dropped: u64,
}

impl Default for History {
    fn default() -> Self {
        History::with_cap(HISTORY_CAP)
    }
}

impl History {
    pub fn with_cap(cap: usize) -> History {
        History {
            entries: VecDeque::with_capacity(cap.min(1024)),
            cap: cap.max(1),
            dropped: 0,
        }
    }

    pub fn push(&mut self, entry: Entry) {
        if self.entries.len() == self.cap {
            self.entries.pop_front();
            self.dropped += 1;
        }
        self.entries.push_back(Rc::new(entry));
    }

    #[cfg(test)]
    pub fn extend(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for e in entries {
            self.push(e);
        }
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.dropped = 0;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Newest first: at most `limit` of the entries `keep` accepts, and how many it
    /// accepts in all.
    pub fn newest(&self, limit: usize, keep: impl Fn(&Entry) -> bool) -> (Vec<Rc<Entry>>, usize) {
        let mut shown = Vec::with_capacity(limit.min(self.entries.len()));
        let mut count = 0;
        for e in self.entries.iter().rev() {
            if keep(e) {
                count += 1;
                if shown.len() < limit {
                    shown.push(e.clone());
                }
            }
        }
        (shown, count)
    }
}

/// What the topic filter box of the message list holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicQuery {
    All,
    /// Plain text: topics containing it.
    Substring(String),
    /// A valid MQTT filter with a wildcard: topics it matches.
    Filter(String),
}

impl TopicQuery {
    pub fn parse(text: &str) -> TopicQuery {
        let text = text.trim();
        if text.is_empty() {
            TopicQuery::All
        } else if is_wildcard(text) && validate_topic_filter(text).is_ok() {
            TopicQuery::Filter(text.to_owned())
        } else {
            TopicQuery::Substring(text.to_owned())
        }
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            TopicQuery::All => true,
            TopicQuery::Substring(s) => topic.contains(s.as_str()),
            TopicQuery::Filter(f) => matches(f, topic),
        }
    }

    /// A few words on how the box is read, for its hint.
    pub fn describe(&self) -> &'static str {
        match self {
            TopicQuery::All => "all topics",
            TopicQuery::Substring(_) => "topics containing the text",
            TopicQuery::Filter(_) => "topics the MQTT filter matches",
        }
    }
}

/// The palette colour of the first subscription whose filter matches `topic`.
pub fn color_for(subscriptions: &[Subscription], topic: &str) -> Option<u8> {
    subscriptions
        .iter()
        .find(|s| {
            let filter = match parse_shared(&s.filter) {
                Ok(Some((_, inner))) => inner,
                _ => s.filter.as_str(),
            };
            matches(filter, topic)
        })
        .map(|s| s.color)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64, topic: &str) -> Entry {
        Entry {
            id,
            dir: Direction::In,
            time_ms: 0.0,
            topic: topic.to_owned(),
            qos: 0,
            retain: false,
            dup: false,
            payload: Bytes::new(),
            color: None,
            meta: Vec::new(),
        }
    }

    #[test]
    fn the_oldest_are_dropped_and_counted() {
        let mut h = History::with_cap(3);
        h.extend((1..=5).map(|i| entry(i, "t")));
        assert_eq!(h.len(), 3);
        assert_eq!(h.dropped, 2);
        let (shown, count) = h.newest(10, |_| true);
        assert_eq!(count, 3);
        let ids: Vec<u64> = shown.iter().map(|e| e.id).collect();
        assert_eq!(ids, [5, 4, 3]);
        h.clear();
        assert!(h.is_empty());
        assert_eq!(h.dropped, 0);
    }

    #[test]
    fn newest_is_limited_but_counts_everything() {
        let mut h = History::default();
        assert_eq!(h.cap(), HISTORY_CAP);
        h.extend((0..1000).map(|i| entry(i, if i % 2 == 0 { "even" } else { "odd" })));
        let (shown, count) = h.newest(300, |e| e.topic == "odd");
        assert_eq!(count, 500);
        assert_eq!(shown.len(), 300);
        assert_eq!(shown[0].id, 999);
    }

    #[test]
    fn history_stays_capped_under_a_flood() {
        let mut h = History::default();
        h.extend((0..20_000).map(|i| entry(i, "flood")));
        assert_eq!(h.len(), HISTORY_CAP);
        assert_eq!(h.dropped, 15_000);
        assert_eq!(h.newest(1, |_| true).0[0].id, 19_999);
    }

    #[test]
    fn topic_queries() {
        assert_eq!(TopicQuery::parse("  "), TopicQuery::All);
        assert!(TopicQuery::All.matches("anything"));

        let q = TopicQuery::parse("temp");
        assert_eq!(q, TopicQuery::Substring("temp".into()));
        assert!(q.matches("sensors/1/temp"));
        assert!(!q.matches("sensors/1/humidity"));

        let q = TopicQuery::parse("sensors/+/temp");
        assert_eq!(q, TopicQuery::Filter("sensors/+/temp".into()));
        assert!(q.matches("sensors/1/temp"));
        assert!(!q.matches("sensors/1/2/temp"));
        assert!(!q.matches("xsensors/1/temp"));

        let q = TopicQuery::parse("#");
        assert!(q.matches("a/b"));
        assert!(!q.matches("$SYS/x"), "wildcards skip $ topics");

        // Not a valid filter: taken as text.
        assert_eq!(TopicQuery::parse("a+"), TopicQuery::Substring("a+".into()));
        assert!(TopicQuery::parse("a+").matches("xa+y"));
    }

    #[test]
    fn colours_follow_the_first_matching_subscription() {
        let sub = |filter: &str, color| Subscription {
            filter: filter.into(),
            color,
            ..Subscription::default()
        };
        let subs = [
            sub("sensors/+/temp", 1),
            sub("sensors/#", 2),
            sub("$share/g/jobs/#", 3),
        ];
        assert_eq!(color_for(&subs, "sensors/1/temp"), Some(1));
        assert_eq!(color_for(&subs, "sensors/1/hum"), Some(2));
        assert_eq!(color_for(&subs, "jobs/7"), Some(3));
        assert_eq!(color_for(&subs, "other"), None);
    }
}
