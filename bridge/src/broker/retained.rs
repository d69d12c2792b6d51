//! Retained messages: the last retained message per topic, handed to new subscribers.
//!
//! The store is bounded ([`RetainedStore::new`]): any client may retain, and retained
//! messages live in memory and on disk across restarts, so without a bound one client could
//! fill both. Replacing a topic's message or clearing it is always allowed (clearing is how
//! room is made); a new topic past the count, or any message past the bytes, is refused.
//! The broker's own `$SYS` topics (a fixed, small set) are not counted against the bounds.

use std::collections::HashMap;
use std::sync::Arc;

use protocol::topic;

use super::access::is_broker_topic;
use super::message::Message;

/// Why a retained message was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RetainedFull {
    #[error("the retained store holds its maximum of {0} messages")]
    Count(usize),
    #[error("the retained store would exceed its maximum of {0} bytes")]
    Bytes(usize),
}

/// Topic → last retained message. Read on every subscribe, written on retained publishes.
#[derive(Debug, Default)]
pub struct RetainedStore {
    messages: HashMap<String, Arc<Message>>,
    /// Messages and bytes (topic + payload) counted against the bounds.
    counted: usize,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
}

/// Bytes a retained message is counted for.
fn size(message: &Message) -> usize {
    message.topic.len() + message.payload.len()
}

impl RetainedStore {
    /// A store of at most `max_messages` messages and `max_bytes` bytes (0: no bound).
    pub fn new(max_messages: usize, max_bytes: usize) -> RetainedStore {
        RetainedStore {
            max_messages: if max_messages == 0 {
                usize::MAX
            } else {
                max_messages
            },
            max_bytes: if max_bytes == 0 {
                usize::MAX
            } else {
                max_bytes
            },
            ..RetainedStore::default()
        }
    }

    /// Stores `message` as the topic's retained message, or clears it when the payload is
    /// empty (MQTT-3.3.1-10, -11). `Err` when it would take the store past a bound: then
    /// nothing changes.
    pub fn update(&mut self, message: &Arc<Message>) -> Result<(), RetainedFull> {
        if message.payload.is_empty() {
            self.remove(&message.topic);
            return Ok(());
        }
        if !is_broker_topic(&message.topic) {
            let previous = self.messages.get(&message.topic);
            let freed = previous.map_or(0, |m| size(m));
            if previous.is_none() && self.counted >= self.max_messages {
                return Err(RetainedFull::Count(self.max_messages));
            }
            if (self.bytes - freed).saturating_add(size(message)) > self.max_bytes {
                return Err(RetainedFull::Bytes(self.max_bytes));
            }
        }
        self.put(message.clone());
        Ok(())
    }

    /// Puts back a message read from the store, whatever the bounds (they may have been
    /// lowered since): new topics are refused until the store is back under them.
    pub fn restore(&mut self, message: Arc<Message>) {
        self.put(message);
    }

    fn put(&mut self, message: Arc<Message>) {
        let counted = !is_broker_topic(&message.topic);
        if counted {
            self.counted += 1;
            self.bytes += size(&message);
        }
        if let Some(previous) = self.messages.insert(message.topic.clone(), message) {
            self.uncount(&previous);
        }
    }

    fn uncount(&mut self, message: &Message) {
        if !is_broker_topic(&message.topic) {
            self.counted -= 1;
            self.bytes -= size(message);
        }
    }

    /// Every retained message whose topic matches `filter`.
    pub fn matching(&self, filter: &str) -> Vec<Arc<Message>> {
        if !topic::is_wildcard(filter) {
            return self.messages.get(filter).cloned().into_iter().collect();
        }
        self.messages
            .values()
            .filter(|m| topic::matches(filter, &m.topic))
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Bytes (topic + payload) of the messages counted against the bounds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn remove(&mut self, topic: &str) -> bool {
        match self.messages.remove(topic) {
            Some(previous) => {
                self.uncount(&previous);
                true
            }
            None => false,
        }
    }

    pub fn all(&self) -> Vec<Arc<Message>> {
        self.messages.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::QoS;

    fn retained(topic: &str, payload: &str) -> Arc<Message> {
        Arc::new(Message::new(
            topic.to_owned(),
            payload.as_bytes().to_vec().into(),
            QoS::AtMostOnce,
            true,
        ))
    }

    #[test]
    fn new_topics_past_the_count_are_refused_replacing_and_clearing_are_not() {
        let mut store = RetainedStore::new(2, 0);
        store.update(&retained("a", "1")).unwrap();
        store.update(&retained("b", "1")).unwrap();
        assert_eq!(
            store.update(&retained("c", "1")),
            Err(RetainedFull::Count(2))
        );
        store.update(&retained("a", "2")).unwrap();
        store.update(&retained("$SYS/broker/uptime", "5")).unwrap();
        store.update(&retained("a", "")).unwrap();
        store.update(&retained("c", "1")).unwrap();
        assert_eq!(store.len(), 3);
    }

    #[test]
    fn bytes_are_bounded_and_given_back() {
        let mut store = RetainedStore::new(0, 10);
        store.update(&retained("t", "12345")).unwrap();
        assert_eq!(store.bytes(), 6);
        assert_eq!(
            store.update(&retained("u", "1234")),
            Err(RetainedFull::Bytes(10))
        );
        // A replacement counts the new size instead of the old one.
        store.update(&retained("t", "123456789")).unwrap();
        assert_eq!(store.bytes(), 10);
        assert!(store.remove("t"));
        assert_eq!(store.bytes(), 0);
        store.update(&retained("u", "1234")).unwrap();
    }

    #[test]
    fn restored_messages_may_exceed_the_bounds() {
        let mut store = RetainedStore::new(1, 0);
        store.restore(retained("a", "1"));
        store.restore(retained("b", "1"));
        assert_eq!(store.len(), 2);
        assert_eq!(
            store.update(&retained("c", "1")),
            Err(RetainedFull::Count(1))
        );
        store.update(&retained("a", "")).unwrap();
        store.update(&retained("b", "")).unwrap();
        store.update(&retained("c", "1")).unwrap();
    }
}
