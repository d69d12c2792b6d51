//! An application message as the broker stores and forwards it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use protocol::{Properties, QoS};

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
