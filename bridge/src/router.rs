//! The subscription trie: which subscribers want a message published on a given topic.
//!
//! The broker keeps one [`Router`] behind a `parking_lot::RwLock`: every PUBLISH takes the
//! read lock and calls [`Router::for_each_match`], SUBSCRIBE/UNSUBSCRIBE take the write lock.
//! The router itself is therefore a plain single-threaded structure, tuned for reads.
//!
//! # Shape
//!
//! One node per filter level. A node has
//! * literal children keyed by level text (`HashMap<Box<str>, _>`, looked up with a `&str`
//!   borrowed from the topic, so routing allocates nothing per level),
//! * at most one `+` child,
//! * the subscribers whose filter *ends* at this node (`exact`), and
//! * the subscribers whose filter is this node's path followed by `/#` (`multi`).
//!
//! `#` is stored on its parent rather than as a child because it is always the last level and
//! matches the parent itself (`a/#` matches `a`): when routing reaches a node, its `multi`
//! subscribers match whatever remains of the topic, including nothing.
//!
//! # The `$` rule
//!
//! A topic starting with `$` is not matched by a filter whose first level is `+` or `#`
//! (MQTT-4.7.2-1), exactly as [`protocol::topic::matches`] decides. Only the root's `+` child
//! and `multi` set are affected, so routing applies the rule once at the root.
//!
//! # No recursion
//!
//! A valid topic or filter can have 65536 levels (65535 slashes). Recursing once per level
//! would let one client overflow a task's stack, so every walk here is a loop; routing keeps
//! an explicit stack of pending `+` branches, which does not allocate unless the trie has a
//! `+` where the topic goes.

use std::collections::HashMap;
use std::hash::Hash;
use std::str::Split;

/// One trie node; see the module documentation.
struct Node<K, V> {
    children: HashMap<Box<str>, Node<K, V>>,
    plus: Option<Box<Node<K, V>>>,
    /// Subscribers whose filter ends exactly here.
    exact: HashMap<K, V>,
    /// Subscribers whose filter is this node's path followed by `#`.
    multi: HashMap<K, V>,
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        // None of these allocate until something is inserted.
        Node {
            children: HashMap::new(),
            plus: None,
            exact: HashMap::new(),
            multi: HashMap::new(),
        }
    }

    /// How many child edges leave this node (literal and `+`).
    fn branches(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }

    /// The child for filter level `level` (`+` is the wildcard child), if any.
    fn child(&self, level: &str) -> Option<&Node<K, V>> {
        if level == "+" {
            self.plus.as_deref()
        } else {
            self.children.get(level)
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Node<K, V> {
        if level == "+" {
            self.plus.get_or_insert_with(|| Box::new(Node::new()))
        } else {
            // Look up first so that re-subscribing an existing path does not allocate a key.
            if !self.children.contains_key(level) {
                self.children.insert(level.into(), Node::new());
            }
            self.children.get_mut(level).expect("inserted above")
        }
    }

    fn remove_child(&mut self, level: &str) {
        if level == "+" {
            self.plus = None;
        } else {
            self.children.remove(level);
        }
    }
}

/// Dropping a trie recursively would take one stack frame per level, which a 65536-level
/// filter turns into a stack overflow; so children are moved onto a heap stack and dropped
/// one by one, each finding nothing left below it.
impl<K, V> Drop for Node<K, V> {
    fn drop(&mut self) {
        if self.branches() == 0 {
            return; // the common case for leaves: nothing to flatten, no Vec
        }
        let mut stack: Vec<Node<K, V>> = self.children.drain().map(|(_, n)| n).collect();
        stack.extend(self.plus.take().map(|p| *p));
        while let Some(mut node) = stack.pop() {
            stack.extend(node.children.drain().map(|(_, n)| n));
            stack.extend(node.plus.take().map(|p| *p));
        }
    }
}

/// Splits a (valid) filter into the levels that lead to its node, and whether it ends in `#`
/// (in which case its subscribers live in that node's `multi` set).
///
/// The path is `None` for `#` alone, whose node is the root: `Some("")` would be one empty
/// level, which is where `/#` lives.
fn path_of(filter: &str) -> (Option<&str>, bool) {
    if filter == "#" {
        (None, true)
    } else if let Some(prefix) = filter.strip_suffix("/#") {
        (Some(prefix), true)
    } else {
        (Some(filter), false)
    }
}

/// The levels of a path from [`path_of`], root first.
fn levels(path: Option<&str>) -> impl Iterator<Item = &str> + Clone {
    path.into_iter().flat_map(|p| p.split('/'))
}

/// Subscriptions indexed for routing: `K` identifies a subscriber (e.g. its client id as
/// `Arc<str>`), `V` is what it asked for (e.g. its QoS and options).
///
/// Filters must already be valid ([`protocol::topic::validate_topic_filter`]) and not shared
/// (`$share/...` must be unwrapped by the caller); a `$share/g/x` given as is would be treated
/// as an ordinary filter with literal levels `$share`, `g`, `x`.
pub struct Router<K, V> {
    root: Node<K, V>,
    /// (filter, subscriber) pairs.
    subscriptions: usize,
    /// Distinct filters with at least one subscriber.
    filters: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> Default for Router<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Router<K, V> {
    /// An empty router.
    pub fn new() -> Self {
        Router {
            root: Node::new(),
            subscriptions: 0,
            filters: 0,
        }
    }

    /// Adds or replaces `key`'s subscription to `filter`; returns the previous value if it
    /// replaced one.
    pub fn subscribe(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let (path, multi) = path_of(filter);
        let mut node = &mut self.root;
        for level in levels(path) {
            node = node.child_or_insert(level);
        }
        let set = if multi {
            &mut node.multi
        } else {
            &mut node.exact
        };
        let was_empty = set.is_empty();
        let previous = set.insert(key, value);
        if previous.is_none() {
            self.subscriptions += 1;
            if was_empty {
                self.filters += 1;
            }
        }
        previous
    }

    /// Removes `key`'s subscription to `filter`; returns the removed value. Prunes the trie
    /// nodes that no longer lead to any subscription.
    pub fn unsubscribe(&mut self, filter: &str, key: &K) -> Option<V> {
        let (path, multi) = path_of(filter);

        // First walk: remove the subscription.
        let mut node = &mut self.root;
        for level in levels(path) {
            node = node.child_mut(level)?;
        }
        let set = if multi {
            &mut node.multi
        } else {
            &mut node.exact
        };
        let removed = set.remove(key)?;
        self.subscriptions -= 1;
        if !set.is_empty() {
            // The filter still has subscribers, so its node stays and so do its ancestors.
            return Some(removed);
        }
        self.filters -= 1;

        // Second walk, read-only: find the topmost edge below which nothing is needed any more
        // (no subscribers and no other branch), so one `remove_child` drops the whole dead
        // chain. Two walks instead of a recursion keeps deep filters off the stack.
        let mut cut: Option<usize> = None; // depth of the first dead node of the dead tail
        let mut node = &self.root;
        let mut depth = 0;
        let mut path_levels = levels(path).peekable();
        while let Some(level) = path_levels.next() {
            node = node.child(level).expect("path exists: walked it above");
            depth += 1;
            let is_last = path_levels.peek().is_none();
            // A node on the path is dead if it holds no subscribers and no branch other than
            // the path itself (which, for the last node, means no branch at all).
            let dead = node.exact.is_empty()
                && node.multi.is_empty()
                && node.branches() == usize::from(!is_last);
            match (dead, cut) {
                (true, None) => cut = Some(depth),
                (false, _) => cut = None,
                (true, Some(_)) => {}
            }
        }

        if let Some(cut) = cut {
            // Third walk to the parent of the dead tail; mutable now, and only as deep as needed.
            let mut parent = &mut self.root;
            let mut path_levels = levels(path);
            for level in path_levels.by_ref().take(cut - 1) {
                parent = parent.child_mut(level).expect("path exists");
            }
            let edge = path_levels.next().expect("cut is within the path");
            parent.remove_child(edge);
        }
        Some(removed)
    }

    /// Calls `f` once for every (subscriber, value) whose filter matches `topic`. The same
    /// subscriber may appear several times if several of its filters match (`a/+` and `a/#`
    /// both match `a/b`): merging (e.g. taking the highest QoS) is the caller's business.
    ///
    /// `topic` should be a valid topic name; an invalid one gives an unspecified result, never
    /// a panic. Allocates nothing unless a `+` branch must be explored later.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&K, &V)) {
        self.for_each_matching_set(topic, |set| set.iter().for_each(|(k, v)| f(k, v)));
    }

    /// Calls `f` with the subscribers of every filter that matches `topic`, one set per
    /// filter: a subscriber appears at most once in a set, and in several sets when several
    /// of its filters match, which a caller merging per subscriber can find out by looking
    /// its key up in the other sets. Empty sets are skipped.
    pub fn for_each_matching_set<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a HashMap<K, V>)) {
        let mut emit = |set: &'a HashMap<K, V>| {
            if !set.is_empty() {
                f(set)
            }
        };

        // Branches still to explore: a node and the topic levels left after it. Filled only
        // when both a literal child and a `+` child match a level.
        let mut pending: Vec<(&'a Node<K, V>, Split<'_, char>)> = Vec::new();

        // The root is special: a `$` topic skips its wildcards (MQTT-4.7.2-1).
        let root = &self.root;
        let mut rest = topic.split('/');
        let first = rest.next().unwrap_or_default();
        let wildcards_allowed = !topic.starts_with('$');
        if wildcards_allowed {
            emit(&root.multi);
        }
        let plus = root.plus.as_deref().filter(|_| wildcards_allowed);
        let mut next = match (root.children.get(first), plus) {
            (Some(literal), Some(plus)) => {
                pending.push((plus, rest.clone()));
                Some((literal, rest))
            }
            (Some(node), None) | (None, Some(node)) => Some((node, rest)),
            (None, None) => None,
        };

        while let Some((mut node, mut rest)) = next.take().or_else(|| pending.pop()) {
            // Follow one branch down, deferring `+` alternatives to `pending`.
            loop {
                // `#` here matches whatever is left of the topic, even nothing (parent rule).
                emit(&node.multi);
                let Some(level) = rest.next() else {
                    emit(&node.exact);
                    break;
                };
                node = match (node.children.get(level), node.plus.as_deref()) {
                    (Some(literal), Some(plus)) => {
                        pending.push((plus, rest.clone()));
                        literal
                    }
                    (Some(child), None) | (None, Some(child)) => child,
                    (None, None) => break,
                };
            }
        }
    }

    /// Number of (filter, subscriber) pairs.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Number of distinct filters with at least one subscriber.
    pub fn filter_count(&self) -> usize {
        self.filters
    }

    /// Whether there are no subscriptions at all.
    pub fn is_empty(&self) -> bool {
        self.subscriptions == 0
    }

    /// Every (filter, key, value), for listings (admin API). Order unspecified. Allocates
    /// freely: this is not a hot path.
    pub fn subscriptions(&self) -> Vec<(String, K, V)> {
        let mut out = Vec::with_capacity(self.subscriptions);
        // (node, its filter path); `None` for the root, whose path has no levels, as opposed
        // to a depth-1 node for the empty level, whose path is "".
        let mut stack: Vec<(&Node<K, V>, Option<String>)> = vec![(&self.root, None)];
        while let Some((node, path)) = stack.pop() {
            let child_path = |level: &str| match &path {
                None => level.to_owned(),
                Some(p) => format!("{p}/{level}"),
            };
            if !node.multi.is_empty() {
                let filter = child_path("#");
                out.extend(
                    node.multi
                        .iter()
                        .map(|(k, v)| (filter.clone(), k.clone(), v.clone())),
                );
            }
            if let Some(p) = &path {
                out.extend(
                    node.exact
                        .iter()
                        .map(|(k, v)| (p.clone(), k.clone(), v.clone())),
                );
            }
            for (level, child) in &node.children {
                stack.push((child, Some(child_path(level))));
            }
            if let Some(plus) = &node.plus {
                stack.push((plus, Some(child_path("+"))));
            }
        }
        out
    }
}

impl<K, V> std::fmt::Debug for Router<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("subscriptions", &self.subscriptions)
            .field("filters", &self.filters)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use protocol::topic::{matches, validate_topic_filter};
    use std::collections::BTreeMap;

    type R = Router<&'static str, u8>;

    /// Every (key, value) matching `topic`, sorted, duplicates kept.
    fn routed<K: Eq + Hash + Clone + Ord, V: Clone + Ord>(
        r: &Router<K, V>,
        topic: &str,
    ) -> Vec<(K, V)> {
        let mut out = Vec::new();
        r.for_each_match(topic, |k, v| out.push((k.clone(), v.clone())));
        out.sort();
        out
    }

    /// Nodes in the trie, root included, to check pruning.
    fn node_count<K, V>(r: &Router<K, V>) -> usize {
        let mut stack = vec![&r.root];
        let mut n = 0;
        while let Some(node) = stack.pop() {
            n += 1;
            stack.extend(node.children.values());
            stack.extend(node.plus.as_deref());
        }
        n
    }

    fn router(subs: &[(&'static str, &'static str)]) -> R {
        let mut r = R::new();
        for (i, (filter, key)) in subs.iter().enumerate() {
            r.subscribe(filter, key, i as u8);
        }
        r
    }

    fn keys(r: &R, topic: &str) -> Vec<&'static str> {
        routed(r, topic).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn literal_filters() {
        let r = router(&[("a/b", "x"), ("a", "y"), ("a/b/c", "z"), ("a//b", "w")]);
        assert_eq!(keys(&r, "a/b"), ["x"]);
        assert_eq!(keys(&r, "a"), ["y"]);
        assert_eq!(keys(&r, "a/b/c"), ["z"]);
        assert_eq!(keys(&r, "a//b"), ["w"]);
        assert!(keys(&r, "a/").is_empty());
        assert!(keys(&r, "b").is_empty());
        assert!(keys(&r, "a/b/c/d").is_empty());
        assert!(keys(&r, "A/b").is_empty());
    }

    #[test]
    fn single_level_wildcard() {
        let r = router(&[("sport/+", "s"), ("+/+", "pp"), ("/+", "sp"), ("+", "p")]);
        assert_eq!(keys(&r, "sport/"), ["pp", "s"]);
        assert_eq!(keys(&r, "sport"), ["p"]);
        assert_eq!(keys(&r, "/finance"), ["pp", "sp"]);
        assert_eq!(keys(&r, "sport/tennis"), ["pp", "s"]);
        assert!(keys(&r, "sport/tennis/player1").is_empty());
        assert_eq!(keys(&r, ""), ["p"]);
    }

    #[test]
    fn multi_level_wildcard_matches_parent() {
        let r = router(&[
            ("sport/tennis/player1/#", "a"),
            ("sport/#", "b"),
            ("#", "c"),
        ]);
        assert_eq!(keys(&r, "sport/tennis/player1"), ["a", "b", "c"]);
        assert_eq!(keys(&r, "sport/tennis/player1/ranking"), ["a", "b", "c"]);
        assert_eq!(
            keys(&r, "sport/tennis/player1/score/wimbledon"),
            ["a", "b", "c"]
        );
        assert_eq!(keys(&r, "sport"), ["b", "c"]);
        assert_eq!(keys(&r, "sport/"), ["b", "c"]);
        assert_eq!(keys(&r, "sport/tennis/player2"), ["b", "c"]);
        assert_eq!(keys(&r, "other"), ["c"]);
        assert_eq!(keys(&r, "/"), ["c"]);
    }

    #[test]
    fn dollar_topics_skip_first_level_wildcards() {
        let r = router(&[
            ("#", "hash"),
            ("+/monitor/Clients", "plus"),
            ("+/#", "plushash"),
            ("$SYS/#", "sys"),
            ("$SYS/monitor/+", "sysplus"),
            ("$SYS", "sysexact"),
            ("a/+", "deep"),
        ]);
        assert_eq!(keys(&r, "$SYS/monitor/Clients"), ["sys", "sysplus"]);
        assert_eq!(keys(&r, "$SYS"), ["sys", "sysexact"]);
        assert!(keys(&r, "$other").is_empty());
        assert_eq!(keys(&r, "x/monitor/Clients"), ["hash", "plus", "plushash"]);
        // `$` below the first level is ordinary.
        assert_eq!(keys(&r, "a/$x"), ["deep", "hash", "plushash"]);
    }

    #[test]
    fn same_subscriber_several_filters() {
        let mut r = R::new();
        r.subscribe("a/+", "k", 1);
        r.subscribe("a/#", "k", 2);
        r.subscribe("a/b", "k", 0);
        assert_eq!(routed(&r, "a/b"), [("k", 0), ("k", 1), ("k", 2)]);
        assert_eq!(r.subscription_count(), 3);
        assert_eq!(r.filter_count(), 3);
        // One set per matching filter, which is how a caller merges per subscriber.
        let mut sets = Vec::new();
        r.for_each_matching_set("a/b", |set| sets.push(set.clone()));
        sets.sort_by_key(|set| set[&"k"]);
        assert_eq!(
            sets,
            [[("k", 0)].into(), [("k", 1)].into(), [("k", 2)].into()]
        );
        // A filter node left without subscribers (a/b, kept for a/b/c) gives no set.
        r.subscribe("a/b/c", "j", 3);
        r.unsubscribe("a/b", &"k");
        let mut count = 0;
        r.for_each_matching_set("a/b", |_| count += 1);
        assert_eq!(count, 2);
    }

    #[test]
    fn subscribe_replaces_and_counts() {
        let mut r = R::new();
        assert_eq!(r.subscribe("a/b", "k", 1), None);
        assert_eq!(r.subscribe("a/b", "k", 2), Some(1));
        assert_eq!(r.subscribe("a/b", "j", 0), None);
        assert_eq!(r.subscription_count(), 2);
        assert_eq!(r.filter_count(), 1);
        assert_eq!(routed(&r, "a/b"), [("j", 0), ("k", 2)]);
        assert_eq!(r.unsubscribe("a/b", &"k"), Some(2));
        assert_eq!(r.unsubscribe("a/b", &"k"), None);
        assert_eq!(r.unsubscribe("a/c", &"j"), None);
        assert_eq!(r.unsubscribe("a/b/c", &"j"), None);
        assert_eq!(r.unsubscribe("a/#", &"j"), None);
        assert_eq!(r.subscription_count(), 1);
        assert_eq!(r.filter_count(), 1);
    }

    #[test]
    fn unsubscribe_prunes() {
        let mut r = R::new();
        let filters = [
            "a/b/c",
            "a/b",
            "a/#",
            "#",
            "+",
            "+/+/#",
            "/",
            "a//b",
            "a/+/c",
            "$SYS/#",
            "a/b/c/d/e/f",
        ];
        for (i, f) in filters.iter().enumerate() {
            r.subscribe(f, "k", i as u8);
            r.subscribe(f, "j", i as u8);
        }
        assert_eq!(r.filter_count(), filters.len());
        assert_eq!(r.subscription_count(), 2 * filters.len());
        for f in filters {
            assert!(r.unsubscribe(f, &"k").is_some());
        }
        assert_eq!(r.filter_count(), filters.len());
        // Remove in an order that exercises both leaf-first and parent-first removal.
        for f in filters.iter().rev() {
            assert!(r.unsubscribe(f, &"j").is_some(), "{f}");
        }
        assert_eq!(r.filter_count(), 0);
        assert_eq!(r.subscription_count(), 0);
        assert!(r.is_empty());
        assert_eq!(node_count(&r), 1, "only the root is left");
    }

    #[test]
    fn pruning_keeps_what_is_still_needed() {
        let mut r = R::new();
        r.subscribe("a/b/c/d", "k", 0);
        r.subscribe("a/b", "k", 1);
        r.subscribe("a/x", "k", 2);
        assert_eq!(node_count(&r), 6); // root a b c d x
        r.unsubscribe("a/b/c/d", &"k");
        assert_eq!(node_count(&r), 4); // root a b x
        r.unsubscribe("a/b", &"k");
        assert_eq!(node_count(&r), 3); // root a x
        assert_eq!(keys(&r, "a/x"), ["k"]);
        r.subscribe("a/x/#", "k", 3);
        r.unsubscribe("a/x", &"k");
        assert_eq!(node_count(&r), 3, "a/x still carries a/x/#");
        assert_eq!(keys(&r, "a/x"), ["k"]);
        r.unsubscribe("a/x/#", &"k");
        assert_eq!(node_count(&r), 1);
    }

    #[test]
    fn subscriptions_listing_round_trips() {
        let filters = ["#", "a/#", "/", "a//b", "+", "+/+", "a", "/#", "$SYS/+"];
        let mut r = R::new();
        for (i, f) in filters.iter().enumerate() {
            r.subscribe(f, "k", i as u8);
        }
        let mut listed = r.subscriptions();
        listed.sort();
        let mut expected: Vec<_> = filters
            .iter()
            .enumerate()
            .map(|(i, f)| (f.to_string(), "k", i as u8))
            .collect();
        expected.sort();
        assert_eq!(listed, expected);
    }

    #[test]
    fn deep_topics_do_not_overflow_the_stack() {
        // 65535 slashes: the longest valid topic, with the most levels.
        let deep = "/".repeat(65_535);
        let mut r = R::new();
        r.subscribe(&deep, "exact", 0);
        r.subscribe(&format!("{}#", &deep[..65_533]), "hash", 0);
        r.subscribe("+/#", "plushash", 0);
        assert_eq!(keys(&r, &deep), ["exact", "hash", "plushash"]);
        assert_eq!(r.subscriptions().len(), 3);
        r.unsubscribe(&deep, &"exact");
        r.unsubscribe(&format!("{}#", &deep[..65_533]), &"hash");
        r.unsubscribe("+/#", &"plushash");
        assert_eq!(node_count(&r), 1);

        // Dropping a router that still holds a deep chain must not recurse either.
        let mut r = R::new();
        r.subscribe(&deep, "exact", 0);
        r.subscribe(&"+/".repeat(30_000), "plus", 0);
        drop(r);
    }

    #[test]
    fn works_with_arc_str_keys() {
        use std::sync::Arc;
        let mut r: Router<Arc<str>, u8> = Router::default();
        let id: Arc<str> = Arc::from("client-1");
        r.subscribe("a/+", id.clone(), 1);
        assert_eq!(routed(&r, "a/b"), [(id.clone(), 1)]);
        assert_eq!(r.unsubscribe("a/+", &id), Some(1));
        assert_eq!(
            format!("{r:?}"),
            "Router { subscriptions: 0, filters: 0, .. }"
        );
    }

    // ---------------------------------------------------------------- property test

    #[derive(Debug, Clone)]
    enum Op {
        Subscribe(String, u8, u8),
        Unsubscribe(String, u8),
    }

    fn level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "", "$SYS", "$x"])
    }

    fn filter() -> impl Strategy<Value = String> {
        let filter_level = prop_oneof![3 => level(), 1 => Just("+")];
        (prop::collection::vec(filter_level, 0..4), any::<bool>())
            .prop_map(|(mut v, hash)| {
                if hash || v.is_empty() {
                    v.push("#");
                }
                v.join("/")
            })
            .prop_filter("valid", |f| validate_topic_filter(f).is_ok())
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5)
            .prop_map(|v| v.join("/"))
            .prop_filter("non-empty", |t| !t.is_empty())
    }

    fn op(filters: Vec<String>) -> impl Strategy<Value = Op> {
        // Unsubscribes pick from the same small pool as subscribes so they often hit.
        let pick = prop::sample::select(filters);
        prop_oneof![
            3 => (pick.clone(), 0..4u8, any::<u8>()).prop_map(|(f, k, v)| Op::Subscribe(f, k, v)),
            2 => (pick, 0..4u8).prop_map(|(f, k)| Op::Unsubscribe(f, k)),
        ]
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(filter(), 1..12)
            .prop_flat_map(|filters| prop::collection::vec(op(filters), 0..60))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn agrees_with_brute_force(ops in ops(), topics in prop::collection::vec(topic(), 1..20)) {
            let mut r: Router<u8, u8> = Router::new();
            let mut model: BTreeMap<(String, u8), u8> = BTreeMap::new();
            for op in &ops {
                match op {
                    Op::Subscribe(f, k, v) => {
                        prop_assert_eq!(
                            r.subscribe(f, *k, *v),
                            model.insert((f.clone(), *k), *v)
                        );
                    }
                    Op::Unsubscribe(f, k) => {
                        prop_assert_eq!(r.unsubscribe(f, k), model.remove(&(f.clone(), *k)));
                    }
                }
            }
            prop_assert_eq!(r.subscription_count(), model.len());
            let distinct: std::collections::BTreeSet<&String> = model.keys().map(|(f, _)| f).collect();
            prop_assert_eq!(r.filter_count(), distinct.len());

            let mut listed = r.subscriptions();
            listed.sort();
            let expected: Vec<(String, u8, u8)> =
                model.iter().map(|((f, k), v)| (f.clone(), *k, *v)).collect();
            prop_assert_eq!(listed, expected);

            for t in &topics {
                let mut expected: Vec<(u8, u8)> = model
                    .iter()
                    .filter(|((f, _), _)| matches(f, t))
                    .map(|((_, k), v)| (*k, *v))
                    .collect();
                expected.sort();
                prop_assert_eq!(routed(&r, t), expected, "topic {:?}", t);
            }

            // Unsubscribing everything leaves only the root.
            for (f, k) in model.keys() {
                prop_assert!(r.unsubscribe(f, k).is_some());
            }
            prop_assert_eq!(r.filter_count(), 0);
            prop_assert_eq!(r.subscription_count(), 0);
            prop_assert_eq!(node_count(&r), 1);
        }
    }
}
