//! Broker-wide counters, for the admin API, Prometheus and `$SYS`.
//!
//! Plain relaxed atomics: each counter is only ever added to, and readers want a recent
//! figure, not a consistent snapshot across counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// Control packet types are 1 to 15; index 0 stays unused.
const PACKET_TYPES: usize = 16;

#[derive(Debug, Default)]
pub struct Metrics {
    packets_in: [AtomicU64; PACKET_TYPES],
    packets_out: [AtomicU64; PACKET_TYPES],
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// PUBLISH packets received from clients (and wills, and API publishes).
    pub messages_received: AtomicU64,
    /// PUBLISH packets written to clients.
    pub messages_sent: AtomicU64,
    /// Messages that matched no subscription.
    pub messages_unrouted: AtomicU64,
    /// Messages dropped because a session's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// QoS 0 messages not kept for an offline session.
    pub dropped_offline_qos0: AtomicU64,
    /// Messages whose 5.0 expiry interval ran out before delivery.
    pub dropped_expired: AtomicU64,
    /// Messages larger than a 5.0 client's maximum packet size.
    pub dropped_too_large: AtomicU64,
    /// Queued or in-flight messages the reader's ACL refused when they were to be sent.
    pub dropped_not_authorized: AtomicU64,
    /// Retained publishes refused because the retained store was full.
    pub retained_refused: AtomicU64,
    /// Retained messages a new subscription matched but its session's queue had no room for.
    pub retained_dropped_on_subscribe: AtomicU64,
    /// SUBSCRIBE filters refused because the client held its maximum of subscriptions.
    pub subscriptions_refused: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// Connections closed for breaking the protocol.
    pub protocol_violations: AtomicU64,
    pub keep_alive_timeouts: AtomicU64,
}

/// A name per packet type, for listings; index = packet type.
pub const PACKET_NAMES: [&str; PACKET_TYPES] = [
    "reserved",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];

impl Metrics {
    pub fn packet_in(&self, packet_type: u8) {
        self.packets_in[usize::from(packet_type) % PACKET_TYPES].fetch_add(1, Ordering::Relaxed);
    }

    pub fn packet_out(&self, packet_type: u8) {
        self.packets_out_n(packet_type, 1);
    }

    /// Counts `n` packets of one type sent (one atomic add for a whole batch).
    pub fn packets_out_n(&self, packet_type: u8, n: u64) {
        if n > 0 {
            self.packets_out[usize::from(packet_type) % PACKET_TYPES]
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// (name, received, sent) per packet type.
    pub fn packets(&self) -> Vec<(&'static str, u64, u64)> {
        (1..PACKET_TYPES)
            .map(|i| {
                (
                    PACKET_NAMES[i],
                    self.packets_in[i].load(Ordering::Relaxed),
                    self.packets_out[i].load(Ordering::Relaxed),
                )
            })
            .collect()
    }
}
