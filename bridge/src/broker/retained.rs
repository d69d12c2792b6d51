//! Retained messages: the last retained message per topic, handed to new subscribers.

use std::collections::HashMap;
use std::sync::Arc;

use protocol::topic;

use super::message::Message;

/// Topic → last retained message. Read on every subscribe, written on retained publishes.
#[derive(Debug, Default)]
pub struct RetainedStore {
    messages: HashMap<String, Arc<Message>>,
}

impl RetainedStore {
    /// Stores `message` as the topic's retained message, or clears it when the payload is
    /// empty (MQTT-3.3.1-10, -11).
    pub fn update(&mut self, message: &Arc<Message>) {
        if message.payload.is_empty() {
            self.messages.remove(&message.topic);
        } else {
            self.messages.insert(message.topic.clone(), message.clone());
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

    pub fn remove(&mut self, topic: &str) -> bool {
        self.messages.remove(topic).is_some()
    }

    pub fn all(&self) -> Vec<Arc<Message>> {
        self.messages.values().cloned().collect()
    }
}
