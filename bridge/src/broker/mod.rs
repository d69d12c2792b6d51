//! What every connection shares: the session registry, the router and the retained store.
//! (Being written: the interface below is fixed, the body is not.)

use std::sync::Arc;

/// Limits and policies of the broker core, filled from [`crate::config::Config`].
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// Largest packet (fixed header included) accepted from a client; a larger one closes
    /// the connection before its body is read.
    pub max_packet_size: usize,
    /// QoS 1/2 messages sent to one client and not yet acknowledged.
    pub max_inflight: usize,
    /// QoS 1/2 messages queued per session beyond the in-flight window (offline or slow);
    /// beyond it new messages are dropped and counted.
    pub max_queued_messages: usize,
    /// Whether QoS 0 messages are queued for offline persistent sessions (Mosquitto's
    /// `queue_qos0_messages`, off by default).
    pub queue_qos0_messages: bool,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            max_packet_size: 1024 * 1024,
            max_inflight: 32,
            max_queued_messages: 1000,
            queue_qos0_messages: false,
        }
    }
}

/// The shared core. Cheap to clone through its `Arc`.
pub struct Broker {
    pub settings: BrokerSettings,
}

impl Broker {
    pub fn new(settings: BrokerSettings) -> Arc<Broker> {
        Arc::new(Broker { settings })
    }
}
