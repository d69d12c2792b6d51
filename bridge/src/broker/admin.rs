//! Read-only views of the broker core for the admin API and `$SYS`, beyond the listings
//! in `mod.rs`. A child module, so it reads the private fields directly; nothing here
//! changes broker state.

use std::sync::Arc;

use super::{Broker, Message};

impl Broker {
    /// The retained message of one topic name, if any.
    pub fn retained_message(&self, topic: &str) -> Option<Arc<Message>> {
        // A filter with wildcards would match many; only the exact topic is wanted.
        if protocol::topic::is_wildcard(topic) {
            return None;
        }
        self.retained.read().matching(topic).into_iter().next()
    }

    /// Whether any subscription matches the topic name `topic` now. `$SYS` uses it to keep
    /// its own messages out of the "no subscribers" count.
    pub fn has_subscribers(&self, topic: &str) -> bool {
        let mut any = false;
        self.router.read().for_each_match(topic, |_, _| any = true);
        any
    }
}
