//! Growing waits after repeated failures, per key (a source address, a user name).
//!
//! Both password checks (MQTT CONNECT and the dashboard's log-in) are slow on purpose
//! (argon2), which makes guessing expensive for an attacker and the checks expensive for
//! us. A [`Throttle`] lets each key fail a few times for free, then makes it wait before
//! its next check, twice as long after each further failure, up to a maximum. The map is
//! bounded: stale entries are swept when it grows, and at its cap the entry idle longest
//! makes room, so a flood of distinct keys costs a fixed amount of memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How a [`Throttle`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Failures allowed before the first wait.
    pub free_failures: u32,
    /// The first wait; each further failure doubles it.
    pub first_wait: Duration,
    /// The longest wait. A key quiet for twice this long starts over (and may be forgotten).
    pub max_wait: Duration,
    /// Keys tracked at most.
    pub max_keys: usize,
}

/// Forgets the entries a quiet spell forgave, then, if the map is still full, the tenth
/// idle longest (at least one): a flood of new keys costs one sweep per tenth of the map.
fn make_room<K: Hash + Eq>(entries: &mut HashMap<K, Failures>, rules: Rules, now: Instant) {
    entries.retain(|_, f| now.saturating_duration_since(f.last) <= rules.max_wait * 2);
    if entries.len() < rules.max_keys || entries.is_empty() {
        return;
    }
    let mut lasts: Vec<Instant> = entries.values().map(|f| f.last).collect();
    let nth = (rules.max_keys / 10).min(lasts.len() - 1);
    let (_, cutoff, _) = lasts.select_nth_unstable(nth);
    let cutoff = *cutoff;
    entries.retain(|_, f| f.last > cutoff);
}

/// A user name as a throttle key: a keyed hash (the key random per process), so that a
/// megabyte name costs the map 8 bytes and nobody can aim collisions.
#[derive(Debug, Default)]
pub struct NameKeys(std::collections::hash_map::RandomState);

impl NameKeys {
    pub fn key(&self, name: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.0, name)
    }
}

/// Failure counts and waits per key: see the module documentation.
#[derive(Debug)]
pub struct Throttle<K> {
    rules: Rules,
    entries: Mutex<HashMap<K, Failures>>,
}

#[derive(Debug)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

impl<K: Hash + Eq> Throttle<K> {
    pub fn new(rules: Rules) -> Throttle<K> {
        Throttle {
            rules,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(left)` while `key` must wait before its next check.
    pub fn wait(&self, key: &K) -> Result<(), Duration> {
        self.wait_at(key, Instant::now())
    }

    fn wait_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock();
        let Some(until) = entries.get(key).and_then(|f| f.blocked_until) else {
            return Ok(());
        };
        match until.saturating_duration_since(now) {
            left if left.is_zero() => Ok(()),
            left => Err(left),
        }
    }

    /// Counts a failure of `key`: from the `free_failures`th on, it must wait.
    pub fn failed(&self, key: K) {
        self.failed_at(key, Instant::now())
    }

    fn failed_at(&self, key: K, now: Instant) {
        let rules = self.rules;
        let mut entries = self.entries.lock();
        if entries.len() >= rules.max_keys && !entries.contains_key(&key) {
            make_room(&mut entries, rules, now);
        }
        let entry = entries.entry(key).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if now.saturating_duration_since(entry.last) > rules.max_wait * 2 {
            entry.count = 0;
            entry.blocked_until = None;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        if entry.count >= rules.free_failures {
            let doublings = (entry.count - rules.free_failures).min(16);
            let wait = rules
                .first_wait
                .saturating_mul(1 << doublings)
                .min(rules.max_wait);
            entry.blocked_until = Some(now + wait);
        }
    }

    /// Forgets `key`'s failures (it proved itself).
    pub fn succeeded(&self, key: &K) {
        self.entries.lock().remove(key);
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        free_failures: 3,
        first_wait: Duration::from_secs(2),
        max_wait: Duration::from_secs(60),
        max_keys: 4,
    };

    #[test]
    fn waits_start_after_the_free_failures_and_double() {
        let t = Throttle::new(RULES);
        let t0 = Instant::now();
        for _ in 0..2 {
            t.failed_at("k", t0);
            assert_eq!(t.wait_at(&"k", t0), Ok(()));
        }
        t.failed_at("k", t0);
        assert_eq!(t.wait_at(&"k", t0), Err(Duration::from_secs(2)));
        assert_eq!(t.wait_at(&"k", t0 + Duration::from_secs(2)), Ok(()));
        t.failed_at("k", t0 + Duration::from_secs(2));
        assert_eq!(
            t.wait_at(&"k", t0 + Duration::from_secs(2)),
            Err(Duration::from_secs(4))
        );
        assert_eq!(t.wait_at(&"other", t0), Ok(()));
        t.succeeded(&"k");
        assert_eq!(t.wait_at(&"k", t0 + Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn waits_stop_growing_at_the_maximum_and_quiet_forgives() {
        let t = Throttle::new(RULES);
        let t0 = Instant::now();
        for _ in 0..40 {
            t.failed_at(1, t0);
        }
        assert_eq!(t.wait_at(&1, t0), Err(RULES.max_wait));
        let later = t0 + RULES.max_wait * 3;
        t.failed_at(1, later);
        assert_eq!(
            t.wait_at(&1, later),
            Ok(()),
            "a fresh start after a quiet spell"
        );
    }

    #[test]
    fn the_map_is_bounded_and_the_oldest_key_goes_first() {
        let t = Throttle::new(RULES);
        let t0 = Instant::now();
        for key in 0..4u64 {
            for _ in 0..3 {
                t.failed_at(key, t0 + Duration::from_millis(key));
            }
        }
        t.failed_at(99, t0 + Duration::from_millis(10));
        assert_eq!(t.len(), 4);
        assert_eq!(t.wait_at(&0, t0), Ok(()), "key 0 was idle longest");
        assert!(t.wait_at(&3, t0).is_err());
        for key in 100..10_000u64 {
            t.failed_at(key, t0 + Duration::from_millis(key));
        }
        assert!(t.len() <= 4);
    }

    #[test]
    fn a_key_blocked_recently_is_not_what_a_flood_of_new_keys_evicts() {
        let t = Throttle::new(Rules {
            max_keys: 100,
            ..RULES
        });
        let t0 = Instant::now();
        for key in 0..1000u32 {
            t.failed_at(key, t0 + Duration::from_millis(u64::from(key)));
            assert!(t.len() <= 100);
        }
        let now = t0 + Duration::from_secs(2);
        for _ in 0..3 {
            t.failed_at(5000, now);
        }
        for key in 1000..1050u32 {
            t.failed_at(key, now + Duration::from_millis(u64::from(key)));
        }
        assert!(t.wait_at(&5000, now).is_err());
    }

    #[test]
    fn name_keys_are_fixed_size_and_distinct() {
        let keys = NameKeys::default();
        let huge = "A".repeat(1 << 20);
        assert_ne!(keys.key(&huge), keys.key("A"));
        assert_ne!(keys.key("admin"), keys.key("Admin"));
        assert_eq!(keys.key("admin"), keys.key("admin"));
    }
}
