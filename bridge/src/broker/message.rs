//! An application message as the broker stores and forwards it.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use protocol::{Properties, QoS};

use crate::store::{Durability, MessageRecord, Op, Store};

/// One published message, shared by every subscriber it goes to (behind an `Arc`), so
/// fan-out never copies the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// The QoS it was published with; each subscriber gets at most its granted QoS.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// MQTT 5.0 properties forwarded to subscribers unchanged (payload format, content
    /// type, response topic, correlation data, user properties). Per-delivery ones
    /// (subscription identifiers, topic alias, the remaining expiry) are added on the way out.
    pub properties: Properties,
    /// When the message stops being deliverable (5.0 message expiry interval).
    pub expires_at: Option<Instant>,
    /// The publishing client, for the no-local subscription option.
    pub origin: Option<Arc<str>>,
    /// The message's id in the store, once it has been stored (once, however many
    /// persistent sessions queue it).
    pub stored_id: OnceLock<u64>,
}

impl Message {
    /// A message with no properties, expiry or origin (API publishes, `$SYS`, 3.1.1).
    pub fn new(topic: impl Into<String>, payload: Bytes, qos: QoS, retain: bool) -> Message {
        Message {
            topic: topic.into(),
            payload,
            qos,
            retain,
            properties: Properties::default(),
            expires_at: None,
            origin: None,
            stored_id: OnceLock::new(),
        }
    }

    /// Stores the message (the first time only) and returns its id in the store.
    pub fn store_in(&self, store: &Store, durability: &Durability) -> u64 {
        *self.stored_id.get_or_init(|| {
            let id = store.new_message_id();
            let bytes = crate::store::encode_message(&self.to_record());
            store.submit(Op::MessagePut { id, bytes }, durability);
            id
        })
    }

    /// The message as the store keeps it (expiry as wall-clock time).
    pub fn to_record(&self) -> MessageRecord {
        MessageRecord {
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            qos: self.qos,
            retain: self.retain,
            properties: self.properties.clone(),
            expires_at: self.expires_at.map(|at| {
                unix_ms_now() + at.saturating_duration_since(Instant::now()).as_millis() as u64
            }),
            origin: self.origin.as_deref().map(str::to_owned),
        }
    }

    /// A message read back from the store.
    pub fn from_record(record: &MessageRecord, stored_id: Option<u64>) -> Message {
        let stored = OnceLock::new();
        if let Some(id) = stored_id {
            let _ = stored.set(id);
        }
        Message {
            topic: record.topic.clone(),
            payload: record.payload.clone(),
            qos: record.qos,
            retain: record.retain,
            properties: record.properties.clone(),
            expires_at: record
                .expires_at
                .map(|at| Instant::now() + Duration::from_millis(at.saturating_sub(unix_ms_now()))),
            origin: record.origin.as_deref().map(Arc::from),
            stored_id: stored,
        }
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Seconds left of the message expiry interval, rounded up, for forwarding
    /// (MQTT-3.3.2-6: the interval is reduced by the time spent waiting).
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|at| {
            let left = at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX).max(1)
        })
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
